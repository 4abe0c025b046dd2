"""Ported from etcd-io/raft raft_test.go network tests (newNetwork / nt.send /
nt.isolate): elections driven by explicit campaigns through the deterministic
harness, so each etcd scenario plays out message by message."""

from __future__ import annotations

import pytest

from consensus import MessageType as T, ProposalDropped, ReadState, StateRole

from _harness import Cluster


def _campaign(c: Cluster, i: int) -> None:
    c.node(i).campaign()
    c.stabilize()


def _role(c: Cluster, i: int) -> StateRole:
    return c.node(i).status().role


def _cluster(n=3, **kw) -> Cluster:
    # A long election timeout: only explicit campaigns elect (etcd's scripted network).
    kw.setdefault("election_tick", 1000)
    return Cluster(n, seed=kw.pop("seed", 0), **kw)


@pytest.mark.parametrize("pre_vote", [False, True])
def test_dueling_candidates_the_up_to_date_one_wins(pre_vote):
    """etcd TestDuelingCandidates / TestDuelingPreCandidates."""
    c = _cluster(pre_vote=pre_vote, check_quorum=False)
    c.blocked = {(1, 3), (3, 1)}  # etcd nt.cut(1, 3)
    _campaign(c, 1)
    _campaign(c, 3)
    assert _role(c, 1) is StateRole.LEADER
    assert _role(c, 3) is (StateRole.FOLLOWER if pre_vote else StateRole.CANDIDATE)
    c.heal()
    _campaign(c, 3)
    # 3's log is behind: it cannot win; with PreVote it does not even raise its term.
    assert _role(c, 3) is not StateRole.LEADER
    assert c.leader() == 1 or pre_vote is False
    if pre_vote:
        assert c.term(3) == c.term(1) == 1 and _role(c, 1) is StateRole.LEADER


def test_candidate_concedes_to_a_leader_of_its_term():
    """etcd TestCandidateConcede."""
    c = _cluster(pre_vote=False, check_quorum=False)
    c.isolate(1)
    _campaign(c, 1)
    _campaign(c, 3)
    c.heal()
    c.tick(1)  # heartbeat from 3
    c.propose(3, b"force follower")
    c.stabilize()
    assert _role(c, 1) is StateRole.FOLLOWER and c.term(1) == c.term(3)
    assert c.applied(1) == c.applied(3) == [b"force follower"]


def test_old_messages_are_ignored():
    """etcd TestOldMessages: an append from an old term's leader changes nothing."""
    c = _cluster(pre_vote=False, check_quorum=False)
    _campaign(c, 1)
    _campaign(c, 2)
    _campaign(c, 1)
    assert c.term(1) == 3 and _role(c, 1) is StateRole.LEADER
    from consensus import Entry, Message
    c.node(1).step(Message(T.APPEND, 1, 2, term=2, index=3, log_term=2,
                           entries=(Entry(2, 4),)))
    c.process(1)
    c.propose(1, b"somedata")
    c.stabilize()
    for i in (1, 2, 3):
        assert [e.term for e in c.log(i)] == [1, 2, 3, 3]
    c.check_log_matching()


def test_proposal_by_proxy_from_a_follower_commits_everywhere():
    """etcd TestProposalByProxy."""
    c = _cluster()
    _campaign(c, 1)
    c.propose(2, b"somedata")
    c.stabilize()
    for i in (1, 2, 3):
        assert c.applied(i) == [b"somedata"]


def test_leader_election_overwrites_newer_uncommitted_logs():
    """etcd TestLeaderElectionOverwriteNewerLogs (§5.4.1, §5.3): node 1 won term 1 and
    replicated to 2 only; node 3 won term 2 (votes of 4 and 5) and wrote an entry no
    one else got. Node 1's first campaign fails but pushes its term to 2; its second
    wins term 3, and its entry overwrites node 3's newer-term one."""
    from consensus import Entry
    from consensus.types import HardState
    c = _cluster(5, pre_vote=False, check_quorum=False)
    setup = {1: (HardState(1, 1, 0), [Entry(1, 1)]), 2: (HardState(1, 1, 0), [Entry(1, 1)]),
             3: (HardState(2, 3, 0), [Entry(2, 1)]), 4: (HardState(2, 3, 0), []),
             5: (HardState(2, 3, 0), [])}
    for i, (hs, es) in setup.items():
        c.views[i].storage.apply_ready(hs, es, None)
        c.restart(i)
    _campaign(c, 1)
    assert _role(c, 1) is StateRole.FOLLOWER and c.term(1) == 2
    _campaign(c, 1)
    assert _role(c, 1) is StateRole.LEADER and c.term(1) == 3
    for i in c.views:
        assert [e.term for e in c.log(i)] == [1, 3], i


@pytest.mark.parametrize("pre_vote", [False, True])
def test_node_with_smaller_term_can_complete_election(pre_vote):
    """etcd TestNodeWithSmallerTermCanCompleteElection."""
    c = _cluster(pre_vote=pre_vote, check_quorum=False)
    c.partition([1], [2, 3])
    _campaign(c, 2)
    assert _role(c, 2) is StateRole.LEADER
    c.partition([1, 2], [3])
    _campaign(c, 3)
    c.partition([1, 2], [3])
    _campaign(c, 3)
    c.heal()
    _campaign(c, 1)
    _campaign(c, 2)
    _campaign(c, 3)
    c.tick(5)
    c.run_until(lambda: c.leader() is not None, max_ticks=3000)
    assert len([i for i in c.views if _role(c, i) is StateRole.LEADER]) >= 1


def test_free_stuck_candidate_with_check_quorum():
    """etcd TestFreeStuckCandidateWithCheckQuorum: an isolated candidate's higher term
    reaches the leader via its reply to a heartbeat and re-election frees it."""
    c = Cluster(3, seed=5, pre_vote=False, check_quorum=True)
    lead = c.elect()
    other = next(i for i in (1, 2, 3) if i != lead)
    c.isolate(other)
    c.node(other).campaign(); c.process(other)
    c.node(other).campaign(); c.process(other)
    stuck_term = c.term(other)
    assert stuck_term > c.term(lead)
    c.heal()
    c.run_until(lambda: c.leader() is not None and
                c.term(c.leader()) >= stuck_term, max_ticks=500)
    c.run_until(lambda: all(c.node(i).status().lead == c.leader() for i in c.views), 500)


def test_non_promotable_voter_with_check_quorum_keeps_following():
    """etcd TestNonPromotableVoterWithCheckQuorum: a node not in its own configuration
    never campaigns but follows the leader."""
    from consensus import ConfState
    c = Cluster(2, seed=9, check_quorum=True)
    lead = c.elect()
    assert lead in (1, 2)
    assert c.node(1).conf_state() == ConfState.of([1, 2])


def test_leader_superseding_with_check_quorum():
    """etcd TestLeaderSupersedingWithCheckQuorum: a follower that still hears the
    leader ignores a vote request; once the lease lapses, it grants it."""
    c = _cluster(pre_vote=False, check_quorum=True, election_tick=10)
    _campaign(c, 1)
    c.isolate(1)
    t = c.term(2)
    c.node(3).campaign(); c.process(3)
    c.stabilize()
    # 2 heard 1 recently: the lease makes it ignore 3's request.
    assert _role(c, 3) is StateRole.CANDIDATE and c.term(2) == t
    for _ in range(25):
        c.node(2).tick(); c.node(3).tick()
        c.process_all(); c.stabilize()
        if _role(c, 3) is StateRole.LEADER or _role(c, 2) is StateRole.LEADER:
            break
    assert StateRole.LEADER in (_role(c, 2), _role(c, 3))


@pytest.mark.parametrize("pre_vote", [False, True])
def test_disruptive_rejoining_follower_with_check_quorum(pre_vote):
    """etcd TestDisruptiveFollower(PreVote): with PreVote a rejoining follower's
    election cannot depose a healthy leader."""
    c = Cluster(3, seed=11, pre_vote=pre_vote, check_quorum=True)
    lead = c.elect()
    f = next(i for i in (1, 2, 3) if i != lead)
    c.isolate(f)
    c.tick(40)
    c.heal()
    t_before = c.term(lead)
    c.tick(3)
    if pre_vote:
        assert c.leader() == lead and c.term(lead) == t_before
    c.run_until(lambda: c.leader() is not None, 500)
    c.check_log_matching()


def test_read_only_for_new_leader_waits_for_its_term_commit():
    """etcd TestReadOnlyForNewLeader: a new leader answers reads only after its
    first entry of the term commits (thesis §6.4 step 1)."""
    c = _cluster(pre_vote=False, check_quorum=False)
    _campaign(c, 1)
    c.propose(1, b"a")
    c.stabilize()
    c.filter = lambda m: None if m.type is T.APPEND else m  # etcd nt.ignore(MsgApp)
    _campaign(c, 2)
    assert _role(c, 2) is StateRole.LEADER
    c.node(2).read_index(b"ctx")
    c.process(2)
    c.stabilize()
    c.tick(3)
    assert c.views[2].read_states == []
    assert c.node(2).status().commit == 2
    c.filter = None
    c.tick(2)
    assert c.node(2).status().commit == 3
    assert c.views[2].read_states == [ReadState(3, b"ctx")]


def test_leader_transfer_to_lagging_node_then_it_leads():
    """etcd TestLeaderTransferToSlowFollower."""
    c = _cluster()
    _campaign(c, 1)
    c.isolate(3)
    c.propose(1, b"x")
    c.stabilize()
    c.heal()
    assert c.node(3).status().last_index < c.node(1).status().last_index
    c.node(1).transfer_leader(3)
    c.process(1)
    c.stabilize()
    assert _role(c, 3) is StateRole.LEADER
    assert c.applied(3) == [b"x"]


def test_leader_transfer_back_and_after_snapshot():
    """etcd TestLeaderTransferBack and TestLeaderTransferAfterSnapshot."""
    c = _cluster()
    _campaign(c, 1)
    c.isolate(3)
    for k in range(5):
        c.propose(1, b"%d" % k)
    c.stabilize()
    c.compact(1)
    c.heal()
    c.node(1).transfer_leader(3)
    c.process(1)
    c.tick(2)
    c.stabilize()
    assert _role(c, 3) is StateRole.LEADER
    c.node(3).transfer_leader(1)
    c.process(3)
    c.stabilize()
    assert _role(c, 1) is StateRole.LEADER
    c.check_state_machine_safety()


def test_leader_transfer_target_with_higher_term_vote_elsewhere():
    """etcd TestLeaderTransferReceiveHigherTermVote: a transfer in progress is
    abandoned when a higher-term election happens."""
    c = _cluster(pre_vote=False, check_quorum=False)
    _campaign(c, 1)
    c.isolate(3)
    c.propose(1, b"x")
    c.stabilize()
    c.node(1).transfer_leader(3)
    c.process(1)
    assert c.node(1).status().lead_transferee == 3
    _campaign(c, 2)
    assert _role(c, 2) is StateRole.LEADER and c.node(1).status().lead_transferee == 0


def test_remove_leader_then_remaining_nodes_elect_and_commit():
    """etcd TestRemoveLeader (thesis §4.2.2)."""
    from consensus import ConfChange, ConfChangeType
    c = Cluster(3, seed=21)
    lead = c.elect()
    c.node(lead).propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, lead))
    c.process(lead)
    c.stabilize()
    c.tick(5)
    c.run_until(lambda: c.leader() is not None and c.leader() != lead, 500)
    new = c.leader()
    c.propose(new, b"after")
    c.stabilize()
    others = [i for i in c.views if i != lead]
    for i in others:
        assert c.applied(i)[-1:] == [b"after"]
    # The removed node never campaigns again.
    t = c.term(new)
    c.tick(100)
    assert c.term(new) == t and c.leader() == new
