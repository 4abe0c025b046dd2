"""Ready/Advance edge cases (etcd rawnode_test.go, node_test.go, and the
async_storage_writes datadriven test's ideas), checked against our durability
contract (docs/consensus.md): a Ready's content is fixed once returned; inputs fed
between ready() and advance() are neither lost nor half-persisted; a message never
promises more than storage holds when it leaves; a node never hands the state machine
an entry its own storage does not hold; restart honours Config.applied."""

from __future__ import annotations

import random

import pytest

from consensus import Config, Entry, MemoryStorage, Message, MessageType as T, RawNode, Ready
from consensus.log import LogError
from consensus.types import HardState, StateRole

from _etcd_unit import ents, make_leader, of, unit
from _harness import Cluster


def test_ready_is_frozen_while_inputs_arrive_before_advance():
    u = unit(1)
    make_leader(u)
    u.step(T.APPEND_RESP, 2, term=1, index=1)
    u.node.propose(b"a")
    rd = u.node.ready()
    snapshot = (rd.entries, rd.messages, rd.committed_entries, rd.hard_state)
    # Inputs between ready() and advance() (allowed by the contract).
    u.node.propose(b"b")
    u.node.step(Message(T.APPEND_RESP, 1, 2, term=1, index=2))
    u.node.tick()
    assert (rd.entries, rd.messages, rd.committed_entries, rd.hard_state) == snapshot
    assert [e.data for e in rd.entries] == [b"a"]
    u.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
    u.node.advance(rd)
    rd2 = u.node.ready()
    # b was appended after rd was taken: it is offered now, exactly once, and the commit
    # of a (acked in between) comes with it.
    assert [e.data for e in rd2.entries] == [b"b"]
    assert [e.data for e in rd2.committed_entries] == [b"a"]
    u.storage.apply_ready(rd2.hard_state, rd2.entries, rd2.snapshot)
    u.node.advance(rd2)
    assert [e.data for e in u.storage.entries(1, 4)] == [b"", b"a", b"b"]


def test_entries_truncated_between_ready_and_advance_are_offered_again():
    u = unit(2, term=1, log=ents(1))
    u.node.step(Message(T.APPEND, 2, 1, term=1, index=1, log_term=1,
                        entries=(Entry(1, 2), Entry(1, 3))))
    rd = u.node.ready()
    assert [(e.term, e.index) for e in rd.entries] == [(1, 2), (1, 3)]
    # A new leader replaces index 3 before the driver persisted rd.
    u.node.step(Message(T.APPEND, 2, 3, term=2, index=2, log_term=1, entries=(Entry(2, 3),)))
    u.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
    u.node.advance(rd)
    rd2 = u.node.ready()
    assert (2, 3) in [(e.term, e.index) for e in rd2.entries]
    u.storage.apply_ready(rd2.hard_state, rd2.entries, rd2.snapshot)
    u.node.advance(rd2)
    assert u.log_terms() == [1, 1, 2]


def test_snapshot_arriving_between_ready_and_advance_supersedes_the_entries():
    from consensus import ConfState, Snapshot, SnapshotMeta
    u = unit(2, term=1, log=ents(1))
    u.node.step(Message(T.APPEND, 2, 1, term=1, index=1, log_term=1, entries=(Entry(1, 2),)))
    rd = u.node.ready()
    snap = Snapshot(SnapshotMeta(10, 1, ConfState.of([1, 2, 3])), b"s")
    u.node.step(Message(T.SNAPSHOT, 2, 1, term=1, snapshot=snap, snapshot_done=True))
    u.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
    u.node.advance(rd)
    rd2 = u.node.ready()
    assert rd2.snapshot is not None and rd2.snapshot.meta.index == 10
    u.storage.apply_ready(rd2.hard_state, rd2.entries, rd2.snapshot)
    u.node.advance(rd2)
    assert u.status().commit == 10 and u.status().applied == 10


def test_ack_leaves_in_the_same_ready_as_the_entries_it_acknowledges():
    u = unit(2, term=1)
    u.node.step(Message(T.APPEND, 2, 1, term=1, index=0, log_term=0,
                        entries=(Entry(1, 1), Entry(1, 2)), commit=2))
    rd = u.node.ready()
    (r,) = of(rd.messages, T.APPEND_RESP)
    assert r.index == 2 and [e.index for e in rd.entries] == [1, 2] and rd.must_sync
    # Committed entries are handed out in the same Ready that persists them: applying
    # them is safe only because the driver persists first (durability contract rule 3).
    assert [e.index for e in rd.committed_entries] == [1, 2]
    u.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
    u.node.advance(rd)


def test_leader_counts_its_own_unpersisted_entry_but_hands_it_out_with_its_persist():
    u = unit(1, peers=(1,))
    make_leader(u)
    u.node.propose(b"x")
    rd = u.node.ready()
    assert [e.data for e in rd.entries] == [b"x"]
    assert [e.data for e in rd.committed_entries] == [b"x"]
    assert rd.hard_state is not None and rd.hard_state.commit == 2
    u.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
    u.node.advance(rd)


def test_restart_with_applied_index_skips_already_applied_entries():
    s = MemoryStorage(__import__("consensus").ConfState.of([1, 2, 3]))
    s.apply_ready(HardState(1, 0, 3), ents(1, 1, 1, 1), None)
    n = RawNode(Config(id=1, seed=1, applied=2), s)
    rd = n.ready()
    assert [e.index for e in rd.committed_entries] == [3]
    n.advance(rd)
    n2 = RawNode(Config(id=1, seed=1), s)
    rd = n2.ready()
    assert [e.index for e in rd.committed_entries] == [1, 2, 3]


def test_restart_with_applied_beyond_the_stored_commit_is_refused():
    s = MemoryStorage(__import__("consensus").ConfState.of([1, 2, 3]))
    s.apply_ready(HardState(1, 0, 2), ents(1, 1, 1), None)
    with pytest.raises((LogError, ValueError)):
        RawNode(Config(id=1, seed=1, applied=3), s)


def test_restart_keeps_term_vote_and_log_and_starts_as_follower():
    u = unit(1)
    make_leader(u)
    u.node.propose(b"x"); u.drain()
    n = RawNode(Config(id=1, seed=3, pre_vote=False), u.storage)
    st = n.status()
    assert (st.term, st.vote, st.last_index, st.role) == (1, 1, 2, StateRole.FOLLOWER)


class _ContractCluster(Cluster):
    """Harness whose driver feeds inputs between ready() and advance() (some messages
    to this node are stepped before the Ready is persisted), and which checks, when a
    Ready's messages leave, that they promise only what storage now holds."""

    interleave = 0.5

    def _interleave_point(self) -> int:
        # Where the inputs go: before persisting, after sending, or after applying.
        return self.rng.randrange(3) if self.rng.random() < self.interleave else -1

    def _check_persisted(self, i: int, rd: Ready) -> None:
        s = self.views[i].storage
        hs = s.hard_state()
        assert hs.commit <= s.last_index()
        for m in rd.messages:
            if m.type is T.VOTE_RESP and not m.reject:
                # §5.2: the vote is durable before it is announced.
                assert hs.term > m.term or (hs.term == m.term and hs.vote == m.to), (m, hs)
            if m.type is T.APPEND_RESP and not m.reject and m.term == hs.term:
                # Figure 2: entries acknowledged are durable when the ack leaves.
                assert s.last_index() >= m.index, (m, s.last_index())
            if m.type is T.VOTE:
                assert hs.term >= m.term and (hs.term > m.term or hs.vote == i)
            if m.type in (T.APPEND, T.HEARTBEAT) and m.term == hs.term:
                # A commit index told to others is durable here first: a leader
                # counts its own unpersisted entry, but announces the commit only
                # after its own copy is on disk (else a crash could lose an entry
                # a follower already applied).
                assert m.commit <= hs.commit <= s.last_index(), (m, hs)
        snap_idx = s.snapshot().meta.index
        for e in rd.committed_entries:
            # Apply only what this node's own storage holds (etcd: applied entries
            # must be locally durable).
            if e.index > snap_idx:
                assert s.term(e.index) == e.term, (i, e)

    def _interleave(self, i: int) -> None:
        n = self.views[i].node
        assert n is not None
        mine = [m for m in self.queue if m.to == i][:3]
        for m in mine:
            self.queue.remove(m)
            if (m.frm, m.to) not in self.blocked:
                n.step(m)
        if self.rng.random() < 0.3:
            n.tick()


def _fault_step(c: Cluster, rng: random.Random, *, crash: float, restart: float,
                partition: float, heal: float) -> None:
    """One random fault: the arguments are cumulative probability thresholds. A crash
    keeps at least 4 nodes up; a partition splits 2 nodes from the rest."""
    r = rng.random()
    live = c.live()
    if r < crash and len(live) > 3:
        c.crash(rng.choice(live))
    elif r < restart:
        c.restart_crashed()
    elif r < partition:
        ids = list(c.views)
        rng.shuffle(ids)
        c.partition(ids[:2], ids[2:])
    elif r < heal:
        c.heal()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("pre_vote,check_quorum", [(True, True), (False, False)])
def test_ready_contract_holds_when_inputs_arrive_between_ready_and_advance(
        seed, pre_vote, check_quorum):
    c = _ContractCluster(5, seed=1000 + seed, pre_vote=pre_vote, check_quorum=check_quorum)
    rng = random.Random(seed)
    c.drop_rate = 0.05
    c.reorder = True
    k = 0
    for step in range(120):
        _fault_step(c, rng, crash=0.05, restart=0.12, partition=0.17, heal=0.25)
        lead = c.leader()
        if lead is not None:
            try:
                k += 1
                c.node(lead).propose(b"v%d" % k)
                c.process(lead)
            except Exception as exc:  # ProposalDropped only
                assert type(exc).__name__ == "ProposalDropped"
            if rng.random() < 0.2:
                c.compact(lead)
        c.tick(rng.randrange(1, 4))
    c.heal()
    c.restart_crashed()
    c.drop_rate = 0.0
    c.tick(60)
    c.check_state_machine_safety()
    c.check_log_matching()
    # The run did real work (not a vacuous pass): commands were applied everywhere.
    assert min(len(c.applied(i)) for i in c.views) > 10


@pytest.mark.parametrize("seed", range(8))
def test_tight_flow_control_limits_keep_safety_and_converge_after_heal(seed):
    """The simulator runs default limits; here every byte/count budget is tiny
    (etcd raft_flow_control_test.go, max_committed_size, uncommitted-size tests) and
    heartbeats are sparse, under drops, reordering, partitions and crashes. After the
    network heals every node must converge on the same applied sequence."""
    c = _ContractCluster(
        5, seed=2000 + seed, max_inflight_msgs=2, max_inflight_bytes=150, max_size_per_msg=40,
        max_uncommitted_bytes=400, max_committed_bytes_per_ready=60, heartbeat_tick=3,
        election_tick=15, snapshot_chunk_bytes=16)
    rng = random.Random(seed)
    c.drop_rate = 0.1
    c.reorder = True
    k = 0
    for step in range(150):
        _fault_step(c, rng, crash=0.04, restart=0.1, partition=0.14, heal=0.22)
        lead = c.leader()
        if lead is not None:
            for _ in range(rng.randrange(1, 4)):
                k += 1
                try:
                    c.node(lead).propose(b"v%03d" % k)
                except Exception as exc:
                    assert type(exc).__name__ == "ProposalDropped"
            c.process(lead)
            if rng.random() < 0.3:
                for i in c.live():
                    c.compact(i)
        c.tick(rng.randrange(1, 4))
    c.heal()
    c.restart_crashed()
    c.drop_rate = 0.0
    def _proposed() -> bool:
        # A leader may still hold a full uncommitted tail from its time in a minority
        # (max_uncommitted_bytes): ProposalDropped then, and the client retries.
        lead = c.leader()
        if lead is None:
            return False
        try:
            c.node(lead).propose(b"final")
        except Exception as exc:
            assert type(exc).__name__ == "ProposalDropped"
            return False
        c.process(lead)
        return True

    c.run_until(_proposed, 2000)
    c.run_until(lambda: all(c.applied(i)[-1:] == [b"final"] for i in c.views), 2000)
    c.check_state_machine_safety()
    c.check_log_matching()
    assert len({tuple(c.applied(i)) for i in c.views}) == 1
