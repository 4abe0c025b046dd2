"""Persistence across restarts (Raft Figure 2 "persistent state", §5.1, §5.4)."""

from __future__ import annotations

import random

import pytest

from consensus import Config, ConfState, MemoryStorage, RawNode, StateRole, StorageError
from consensus.types import Entry, HardState

from _harness import Cluster


def _write(c: Cluster, lead: int, n: int, tag: str) -> list[bytes]:
    datas = [f"{tag}{k}".encode() for k in range(n)]
    for d in datas:
        c.propose(lead, d)
    c.stabilize()
    c.tick(2)
    return datas


def test_persistence_restart_of_all_nodes_recovers_everything_committed():
    c = Cluster(3, seed=30)
    lead = c.elect()
    before = _write(c, lead, 10, "a")
    terms = {i: c.term(i) for i in (1, 2, 3)}
    for i in (1, 2, 3):
        c.crash(i)
    for i in (1, 2, 3):
        c.restart(i)
        # Term and vote come back from storage (never go backwards, §5.1).
        assert c.term(i) == terms[i]
    lead = c.elect()
    after = _write(c, lead, 3, "b")
    for i in (1, 2, 3):
        assert c.applied(i) == before + after  # re-applied from the durable log
    c.check_log_matching()


def test_persistence_restart_of_the_leader():
    c = Cluster(5, seed=31)
    lead = c.elect()
    before = _write(c, lead, 5, "a")
    c.crash(lead)
    new = c.elect()
    more = _write(c, new, 5, "b")
    c.restart(lead)
    c.tick(10)
    assert c.applied(lead) == before + more
    assert c.node(lead).status().role is StateRole.FOLLOWER


def test_persistence_restart_of_subsets_repeatedly():
    c = Cluster(5, seed=32)
    rng = random.Random(32)
    expected: list[bytes] = []
    for round_ in range(8):
        lead = c.elect(max_ticks=2000)
        expected += _write(c, lead, 3, f"r{round_}-")
        subset = rng.sample(sorted(c.views), 2)
        for i in subset:
            c.crash(i)
        c.tick(rng.randrange(1, 30))
        for i in subset:
            c.restart(i)
    c.tick(20)
    for i in c.views:
        assert c.applied(i) == expected
    c.check_log_matching()


def test_persistence_commit_index_lets_a_restarted_node_reapply_without_a_leader():
    c = Cluster(3, seed=33)
    lead = c.elect()
    datas = _write(c, lead, 4, "x")
    f = next(i for i in (1, 2, 3) if i != lead)
    for i in (1, 2, 3):
        c.crash(i)
    c.restart(f)
    c.process(f)
    # HardState.commit is durable, so entries up to it apply at once (etcd behaviour).
    assert c.applied(f) == datas


@pytest.mark.parametrize("hard_state, entries, why", [
    (HardState(1, 1, 5), [], "commit"),  # commit 5 but no entries
    (HardState(2, 1, 0), [Entry(2, 1), Entry(1, 2)], "decreases"),
    (HardState(1, 1, 0), [Entry(1, 1), Entry(3, 2)], "beyond the stored term"),
])
def test_persistence_inconsistent_storage_is_refused_at_start(hard_state, entries, why):
    # What no correct history writes (a corrupt or mis-written store) stops the node
    # with a clear error instead of letting it vote or acknowledge on a false log.
    s = MemoryStorage(ConfState.of([1, 2, 3]))
    s._ents = [Entry(0, 0), *entries]  # bypass MemoryStorage's own write checks
    s._hard_state = hard_state
    with pytest.raises(StorageError, match=why):
        RawNode(Config(id=1, rng=random.Random(0)), s)


def test_persistence_replay_after_restart_is_paced_by_the_ready_byte_budget():
    c = Cluster(3, seed=34, max_committed_bytes_per_ready=200)
    lead = c.elect()
    datas = _write(c, lead, 30, "entry-")  # ~22 bytes each, 30 entries
    f = next(i for i in (1, 2, 3) if i != lead)
    c.crash(f)
    c.restart(f)
    sizes = []
    node = c.node(f)
    while node.has_ready():
        rd = node.ready()
        c.views[f].storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
        sizes.append(sum(e.size() for e in rd.committed_entries))
        for e in rd.committed_entries:
            if e.data:
                c.views[f].fsm.apply(e.index, e.data)
        node.advance(rd)
    assert len(sizes) > 3 and all(s <= 200 for s in sizes)
    assert c.applied(f) == datas
