"""Linearizable reads by ReadIndex (thesis §6.4)."""

from __future__ import annotations

import pytest

from consensus import MessageType, ProposalDropped, ReadState, StateRole

from _harness import Cluster


def test_read_index_6_4_leader_serves_after_a_heartbeat_round():
    c = Cluster(3, seed=70)
    lead = c.elect()
    c.propose(lead, b"w1")
    c.stabilize()
    commit = c.node(lead).status().commit
    c.node(lead).read_index(b"r1")
    c.process(lead)
    # Not yet: leadership must first be confirmed by a quorum.
    assert c.views[lead].read_states == []
    hb = [m for m in c.queue if m.type is MessageType.HEARTBEAT]
    assert hb and all(m.context == b"r1" for m in hb)
    c.stabilize()
    assert c.views[lead].read_states == [ReadState(commit, b"r1")]


def test_read_index_6_4_follower_forwards_to_the_leader():
    c = Cluster(3, seed=71)
    lead = c.elect()
    c.propose(lead, b"w1")
    c.stabilize()
    f = next(i for i in (1, 2, 3) if i != lead)
    c.node(f).read_index(b"from-follower")
    c.process(f)
    c.stabilize()
    (rs,) = c.views[f].read_states
    assert rs.request_ctx == b"from-follower"
    assert rs.index == c.node(lead).status().commit
    # The follower serves only once it has applied rs.index (the driver's job):
    assert c.views[f].applied_index >= rs.index


def test_read_index_6_4_deposed_leader_under_partition_never_serves_a_stale_read():
    # CheckQuorum off: the old leader keeps believing it leads (a "paused" leader).
    c = Cluster(5, seed=72, check_quorum=False)
    old = c.elect()
    c.propose(old, b"v1")
    c.stabilize()
    rest = [i for i in range(1, 6) if i != old]
    c.partition([old, rest[0]], rest[1:])
    new = c.elect_among(rest[1:])
    c.propose(new, b"v2")  # the old leader does not know v2 exists
    c.stabilize()
    assert c.node(old).status().role is StateRole.LEADER
    c.node(old).read_index(b"stale?")
    c.process(old)
    c.tick(30)
    assert c.views[old].read_states == []  # no quorum confirms it: no read
    c.heal()
    c.tick(10)
    # It learnt the new term and stepped down; the read was never answered.
    assert c.node(old).status().role is StateRole.FOLLOWER
    assert c.views[old].read_states == []
    # A read now, anywhere, reflects v2.
    c.node(new).read_index(b"fresh")
    c.process(new)
    c.stabilize()
    (rs,) = c.views[new].read_states
    assert rs.index >= max(e.index for e in c.log(new) if e.data == b"v2")


def test_read_index_paused_leader_resumes_and_does_not_serve():
    c = Cluster(3, seed=73, check_quorum=False)
    old = c.elect()
    # Pause the leader: it stops being ticked and hears nothing (a GC pause, a stall).
    c.isolate(old)
    new = c.elect_among([i for i in (1, 2, 3) if i != old])
    c.propose(new, b"written-while-paused")
    c.stabilize()
    c.heal()
    # The paused leader wakes up and immediately serves a read request.
    c.node(old).read_index(b"wakeup")
    c.process(old)
    c.stabilize()
    assert c.views[old].read_states == []
    assert c.node(old).status().role is StateRole.FOLLOWER


def test_read_index_6_4_new_leader_defers_reads_until_it_commits_in_its_term():
    c = Cluster(3, seed=74, pre_vote=False)
    c.node(1).campaign()
    # Let the votes through but hold the new leader's AppendEntries (its no-op).
    held = []
    c.filter = lambda m: (held.append(m) or None) if m.type is MessageType.APPEND else m
    c.stabilize()
    assert c.node(1).status().role is StateRole.LEADER
    c.node(1).read_index(b"early")
    c.process(1)
    c.stabilize()
    assert c.views[1].read_states == []  # commit index of its term unknown yet
    c.filter = None
    for m in held:
        c.queue.append(m)
    c.stabilize()
    c.tick(1)
    (rs,) = c.views[1].read_states
    noop = c.node(1).status().commit
    assert rs.index == noop and rs.request_ctx == b"early"


def test_read_index_without_a_known_leader_is_refused():
    c = Cluster(3, seed=75)
    with pytest.raises(ProposalDropped):
        c.node(1).read_index(b"nobody")


def test_read_index_queue_at_a_leader_without_quorum_is_bounded():
    c = Cluster(3, seed=76, check_quorum=False)
    lead = c.elect()
    c.isolate(lead)
    for k in range(4096):
        c.node(lead).read_index(b"q%d" % k)
    with pytest.raises(ProposalDropped, match="too many reads"):
        c.node(lead).read_index(b"one-too-many")


def test_read_index_many_reads_share_one_heartbeat_round():
    c = Cluster(3, seed=77)
    lead = c.elect()
    for k in range(50):
        c.node(lead).read_index(b"b%d" % k)
    c.process(lead)
    heartbeats = [m for m in c.queue if m.type is MessageType.HEARTBEAT]
    assert len(heartbeats) == 2 and all(m.context == b"b49" for m in heartbeats)
    c.stabilize()
    assert [rs.request_ctx for rs in c.views[lead].read_states] == [b"b%d" % k for k in range(50)]
