"""Log replication (Raft §5.3, §5.4.2 and Figure 8), flow control and batching."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from consensus import Config, ConfState, MemoryStorage, MessageType, ProposalDropped, RawNode
from consensus.progress import ProgressState
from consensus.types import StateRole

from _harness import Cluster


def _all_applied(c: Cluster, datas: list[bytes], ids=None) -> bool:
    return all(c.applied(i)[-len(datas):] == datas for i in (ids or c.live()))


def test_replication_5_3_basic_agreement():
    c = Cluster(5, seed=10)
    lead = c.elect()
    for k in range(10):
        c.propose(lead, b"cmd%d" % k)
        c.stabilize()
        # Each command is committed and applied everywhere, in order, before the next.
        assert all(c.applied(i) == [b"cmd%d" % j for j in range(k + 1)] for i in c.live())
    c.check_log_matching()
    c.check_state_machine_safety()


def test_replication_5_3_agreement_despite_a_failed_follower():
    c = Cluster(3, seed=11)
    lead = c.elect()
    f = next(i for i in (1, 2, 3) if i != lead)
    c.crash(f)
    c.propose(lead, b"a")
    c.propose(lead, b"b")
    c.tick(2)
    assert _all_applied(c, [b"a", b"b"])
    # The follower comes back and catches up.
    c.restart(f)
    c.tick(5)
    assert c.applied(f) == [b"a", b"b"]
    c.check_log_matching()


def test_replication_5_3_no_commit_without_majority():
    c = Cluster(5, seed=12)
    lead = c.elect()
    commit_before = c.node(lead).status().commit
    for i in [i for i in range(1, 6) if i != lead][:3]:
        c.crash(i)
    c.propose(lead, b"lonely")
    c.tick(3)
    assert c.node(lead).status().commit == commit_before
    assert all(b"lonely" not in c.applied(i) for i in c.views)


def test_replication_concurrent_proposals_are_all_committed_once_in_one_order():
    c = Cluster(3, seed=13)
    lead = c.elect()
    datas = [b"p%d" % k for k in range(60)]
    rng = random.Random(13)
    # Clients at every node propose at once (followers forward to the leader).
    for d in datas:
        c.node(rng.choice([1, 2, 3])).propose(d)
    c.stabilize()
    c.tick(3)
    applied = c.applied(lead)
    assert sorted(applied) == sorted(datas) and len(set(applied)) == 60
    assert all(c.applied(i) == applied for i in (1, 2, 3))


def test_replication_5_4_partitioned_old_leader_rejoins_and_its_uncommitted_entries_are_discarded():
    c = Cluster(5, seed=14)
    old = c.elect()
    c.propose(old, b"committed")
    c.stabilize()
    rest = [i for i in range(1, 6) if i != old]
    c.partition([old], rest)
    for k in range(5):
        c.propose(old, b"lost%d" % k)  # accepted by the old leader, never committed
    c.stabilize()
    new = c.elect()
    assert new in rest
    c.propose(new, b"after")
    c.stabilize()
    c.heal()
    c.tick(20)
    assert c.leader() == new
    for i in range(1, 6):
        assert c.applied(i) == [b"committed", b"after"]
        assert not any(e.data.startswith(b"lost") for e in c.log(i))
    c.check_log_matching()


def test_replication_5_3_fast_backup_over_fifty_divergent_entries_in_few_round_trips():
    c = Cluster(5, seed=15)
    old = c.elect()
    rest = [i for i in range(1, 6) if i != old]
    c.partition([old], rest)
    for k in range(60):
        c.propose(old, b"stale%d" % k)  # 60 divergent entries on the old leader
    c.stabilize()
    new = c.elect()
    for k in range(60):
        c.propose(new, b"fresh%d" % k)
    c.stabilize()
    # A further leader change: the next leader starts with next = its last index + 1
    # for every follower, so it must find where the old leader's log diverges.
    c.crash(new)
    newer = c.elect()
    assert newer not in (old, new)
    rejections = []
    c.filter = lambda m: (rejections.append(m) or m) if (
        m.type is MessageType.APPEND_RESP and m.reject) else m
    c.heal()
    c.tick(10)
    assert c.applied(old)[-60:] == [b"fresh%d" % k for k in range(60)]
    # The old leader's first rejection hints past its whole divergent term: one round
    # trip, not sixty (§5.3 "the leader can decrement nextIndex to bypass all of the
    # conflicting entries in that term"; etcd findConflictByTerm).
    assert 1 <= len(rejections) <= 2, rejections
    c.check_log_matching()


def test_replication_5_3_lagging_follower_catches_up_in_one_rejection():
    c = Cluster(3, seed=16)
    lead = c.elect()
    f = next(i for i in (1, 2, 3) if i != lead)
    c.isolate(f)
    for k in range(80):
        c.propose(lead, b"x%d" % k)
    c.stabilize()
    c.heal()
    # Force a fresh probe: a new leader term has the follower probing from the end.
    rejections = []
    c.filter = lambda m: (rejections.append(m) or m) if (
        m.type is MessageType.APPEND_RESP and m.reject) else m
    c.tick(10)
    assert c.applied(f) == c.applied(lead)
    assert len(rejections) <= 1


def test_figure_8_leader_does_not_commit_a_previous_term_entry_by_counting():
    # The exact scenario of Figure 8 (§5.4.2), scripted message by message.
    c = Cluster(5, seed=17, pre_vote=False, check_quorum=False)
    c.node(1).campaign()
    c.stabilize()  # (a) S1 leads term 1; its no-op at index 1 is everywhere.
    assert c.leader() == 1
    t1 = c.term(1)
    c.partition([1, 2], [3, 4, 5])
    c.propose(1, b"X")  # index 2, term t1, reaches only S2
    c.stabilize()
    assert [e.data for e in c.log(2)][-1] == b"X"
    # (b) S5 is elected by S3, S4, S5 and appends its own index-2 entry, which
    # reaches no one.
    c.partition([1, 2], [3, 4, 5])
    c.filter = lambda m: None if (m.frm == 5 and m.type is MessageType.APPEND) else m
    c.node(5).campaign()
    c.stabilize()
    assert c.node(5).status().role is StateRole.LEADER
    c.crash(5)
    c.filter = None
    # (c) S1 is elected again (term t3) and replicates X to S3, so X sits on a majority
    # (S1, S2, S3). Deliver X alone (without S1's new no-op) to S2 and S3.
    c.crash(1)
    c.restart(1)
    c.heal()
    c.isolate(5)

    def only_x(m):
        if m.frm == 1 and m.type is MessageType.APPEND and m.entries:
            if m.to == 4:
                return None
            return replace(m, entries=tuple(e for e in m.entries if e.index <= 2))
        return m

    c.filter = only_x
    for _ in range(3):  # S3/S4 voted for S5 in its term: S1 may need a second try
        c.node(1).campaign()
        c.stabilize()
        if c.node(1).status().role is StateRole.LEADER:
            break
    assert c.node(1).status().role is StateRole.LEADER
    t3 = c.term(1)
    assert t3 > t1
    assert sum(1 for i in (1, 2, 3) if any(e.data == b"X" for e in c.log(i))) == 3
    # X is on a majority but from an older term: it must NOT be committed.
    assert c.node(1).status().commit < 2
    assert all(b"X" not in c.applied(i) for i in c.views)
    # (d) S1 crashes; S5 returns and wins with votes of S2, S3, S4 (its last term is
    # newer), then overwrites X everywhere. This is safe precisely because X was
    # never committed.
    c.crash(1)
    c.filter = None
    c.heal()
    c.isolate(1)
    c.restart(5)
    for _ in range(3):
        c.node(5).campaign()
        c.stabilize()
        if c.node(5).status().role is StateRole.LEADER:
            break
    assert c.node(5).status().role is StateRole.LEADER
    c.propose(5, b"Y")
    c.stabilize()
    c.tick(2)
    for i in (2, 3, 4, 5):
        assert b"X" not in [e.data for e in c.log(i)]
        assert c.applied(i) == [b"Y"]
    c.check_state_machine_safety()


def _figure_8_randomized(seed: int, drop_rate: float, iterations: int) -> None:
    c = Cluster(5, seed=seed)
    c.drop_rate = drop_rate
    c.reorder = drop_rate > 0
    rng = random.Random(seed)
    c.elect(max_ticks=2000)
    proposed = 0
    for _ in range(iterations):
        lead = c.leader()
        if lead is not None:
            try:
                c.propose(lead, b"v%d" % proposed)
                proposed += 1
            except ProposalDropped:
                pass
        c.tick(rng.randrange(1, 12))
        if lead is not None and rng.random() < 0.5:
            c.crash(lead)
        if len(c.live()) < 3:
            down = [i for i in c.views if i not in c.live()]
            c.restart(rng.choice(down))
        c.check_state_machine_safety()
    c.restart_crashed()
    c.drop_rate = 0.0
    c.reorder = False
    lead = c.elect(max_ticks=2000)
    c.propose(lead, b"final")
    c.tick(20)
    final = c.applied(lead)
    assert final[-1] == b"final"
    assert all(c.applied(i) == final for i in c.views)
    c.check_log_matching()
    c.check_state_machine_safety()


def test_figure_8_reliable_network_random_leader_crashes():
    _figure_8_randomized(seed=18, drop_rate=0.0, iterations=120)


def test_figure_8_unreliable_network_random_leader_crashes():
    _figure_8_randomized(seed=19, drop_rate=0.1, iterations=120)


def test_churn_random_crashes_restarts_and_partitions_keep_agreement():
    c = Cluster(5, seed=20)
    rng = random.Random(20)
    acknowledged: list[bytes] = []
    c.elect(max_ticks=2000)
    for step in range(150):
        r = rng.random()
        live = c.live()
        if r < 0.15 and len(live) > 3:
            c.crash(rng.choice(live))
        elif r < 0.3:
            down = [i for i in c.views if i not in live]
            if down:
                c.restart(rng.choice(down))
        elif r < 0.4:
            ids = list(c.views)
            rng.shuffle(ids)
            c.partition(ids[:2], ids[2:])
        elif r < 0.5:
            c.heal()
        target = rng.choice(c.live())
        try:
            c.propose(target, b"c%d" % step)
        except ProposalDropped:
            pass
        c.tick(rng.randrange(1, 6))
        c.check_state_machine_safety()
        # Remember everything any node applied: it must survive to the end.
        for i in c.views:
            for d in c.applied(i):
                if d not in acknowledged:
                    acknowledged.append(d)
    c.heal()
    c.restart_crashed()
    lead = c.elect(max_ticks=2000)
    c.propose(lead, b"end")
    c.tick(30)
    final = c.applied(lead)
    assert all(c.applied(i) == final for i in c.views)
    assert set(acknowledged) <= set(final)
    c.check_log_matching()


def test_batching_many_proposals_travel_in_one_append_per_follower():
    c = Cluster(3, seed=21)
    lead = c.elect()
    c.sent.clear()
    c.node(lead).propose_many([b"b%d" % k for k in range(100)])
    for k in range(100):
        c.node(lead).propose(b"c%d" % k)
    c.process(lead)
    appends = [m for m in c.queue if m.type is MessageType.APPEND]
    assert len(appends) == 2 and all(len(m.entries) == 200 for m in appends)
    c.stabilize()
    assert len(c.applied(lead)) == 200


def test_max_size_per_msg_splits_appends():
    c = Cluster(3, seed=22, max_size_per_msg=1000)
    lead = c.elect()
    c.node(lead).propose_many([bytes(100) for _ in range(50)])  # ~5.8 KB of entries
    c.process(lead)
    first = [m for m in c.queue if m.type is MessageType.APPEND]
    assert all(sum(e.size() for e in m.entries) <= 1000 for m in first)
    sizes = []
    c.filter = lambda m: (sizes.append(sum(e.size() for e in m.entries)) or m) if (
        m.type is MessageType.APPEND) else m
    c.stabilize()
    assert all(s <= 1000 for s in sizes)
    assert all(len(c.applied(i)) == 50 for i in (1, 2, 3))


@pytest.mark.parametrize("limit", ["count", "bytes"])
def test_inflight_window_bounds_unacknowledged_appends(limit):
    kw = dict(max_inflight_msgs=4) if limit == "count" else dict(
        max_inflight_msgs=1000, max_inflight_bytes=500)
    c = Cluster(3, seed=23, max_size_per_msg=120, **kw)
    lead = c.elect()
    f = next(i for i in (1, 2, 3) if i != lead)
    # Hold every acknowledgement from the follower: the leader must stop at the window.
    c.filter = lambda m: None if (m.frm == f and m.type is MessageType.APPEND_RESP) else m
    for k in range(40):
        c.node(lead).propose(bytes(84))  # 100 bytes counted per entry
        c.process(lead)
    c.stabilize()
    pr = c.node(lead).status().progress[f]
    assert pr.state is ProgressState.REPLICATE
    if limit == "count":
        assert pr.inflight == 4
    else:
        assert 5 <= pr.inflight <= 6  # stops once >= 500 bytes are in flight
    c.filter = None
    c.tick(5)
    assert len(c.applied(f)) == 40


def test_max_uncommitted_bytes_refuses_proposals_until_commits_drain():
    c = Cluster(3, seed=24, max_uncommitted_bytes=1000, check_quorum=False)
    lead = c.elect()
    followers = [i for i in (1, 2, 3) if i != lead]
    for i in followers:
        c.crash(i)
    c.propose(lead, bytes(600))
    c.propose(lead, bytes(300))
    with pytest.raises(ProposalDropped, match="uncommitted"):
        c.node(lead).propose(bytes(200))
    # The followers return, the tail commits and is applied: room again.
    for i in followers:
        c.restart(i)
    c.tick(5)
    assert len(c.applied(lead)) == 2
    c.propose(lead, bytes(200))
    c.stabilize()
    assert len(c.applied(lead)) == 3


def test_follower_forwards_proposals_and_candidate_drops_them():
    s = MemoryStorage(ConfState.of([1, 2, 3]))
    n = RawNode(Config(id=1, rng=random.Random(1), pre_vote=False), s)
    with pytest.raises(ProposalDropped):
        n.propose(b"no leader known")
    n.campaign()
    with pytest.raises(ProposalDropped):
        n.propose(b"candidate")
