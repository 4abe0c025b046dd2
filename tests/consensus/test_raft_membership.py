"""Membership changes one server at a time (thesis §4.1-§4.2), learners, leader
removal, and leadership transfer (thesis §3.10)."""

from __future__ import annotations

import pytest

from consensus import ConfChange, ConfChangeType, ConfState, MessageType, ProposalDropped, StateRole

from _harness import Cluster

ADD_VOTER, ADD_LEARNER, REMOVE = (ConfChangeType.ADD_VOTER, ConfChangeType.ADD_LEARNER,
                                  ConfChangeType.REMOVE_NODE)


def _change(c: Cluster, lead: int, typ: ConfChangeType, node: int) -> None:
    c.node(lead).propose_conf_change(ConfChange(typ, node))
    c.process(lead)
    c.stabilize()
    c.tick(2)


def test_membership_4_2_1_learner_catches_up_then_is_promoted():
    c = Cluster(3, seed=50, extra=[4])
    lead = c.elect()
    for k in range(20):
        c.propose(lead, b"m%d" % k)
    c.stabilize()
    # A brand-new server may not vote before it has the log (thesis §4.2.1).
    with pytest.raises(ProposalDropped, match="learner"):
        c.node(lead).propose_conf_change(ConfChange(ADD_VOTER, 4))
    _change(c, lead, ADD_LEARNER, 4)
    assert c.node(lead).conf_state() == ConfState((1, 2, 3), (4,))
    assert c.applied(4) == c.applied(lead)  # caught up as a non-voter
    assert c.node(4).status().role is StateRole.FOLLOWER
    _change(c, lead, ADD_VOTER, 4)
    for i in (1, 2, 3, 4):
        assert c.node(i).conf_state() == ConfState((1, 2, 3, 4), ())
    # Four voters: a quorum is three; with two down nothing commits.
    others = [i for i in (1, 2, 3, 4) if i != lead]
    c.crash(others[0])
    c.crash(others[1])
    commit = c.node(lead).status().commit
    c.propose(lead, b"needs-three")
    c.tick(3)
    assert c.node(lead).status().commit == commit


def test_membership_learner_that_has_not_caught_up_is_not_promoted():
    c = Cluster(3, seed=51, extra=[4])
    lead = c.elect()
    _change(c, lead, ADD_LEARNER, 4)
    c.crash(4)
    for k in range(10):
        c.propose(lead, b"x%d" % k)
    c.stabilize()
    with pytest.raises(ProposalDropped, match="caught up"):
        c.node(lead).propose_conf_change(ConfChange(ADD_VOTER, 4))


def test_membership_4_1_one_change_at_a_time():
    c = Cluster(3, seed=52, extra=[4, 5])
    lead = c.elect()
    others = [i for i in (1, 2, 3) if i != lead]
    for i in others:
        c.isolate(i)  # the first change cannot commit
    c.node(lead).propose_conf_change(ConfChange(ADD_LEARNER, 4))
    with pytest.raises(ProposalDropped, match="not yet committed"):
        c.node(lead).propose_conf_change(ConfChange(ADD_LEARNER, 5))


def test_membership_change_takes_effect_on_append_and_reverts_when_truncated():
    # thesis §4.1: servers use the latest configuration in their log; a configuration
    # entry removed by a new leader takes its configuration with it.
    c = Cluster(5, seed=53)
    old = c.elect()
    rest = [i for i in range(1, 6) if i != old]
    minority = rest[0]
    c.partition([old, minority], rest[1:])
    victim = rest[-1]
    c.node(old).propose_conf_change(ConfChange(REMOVE, victim))
    c.process(old)
    c.stabilize()
    # In force on the old leader and the follower that appended it, though uncommitted.
    assert victim not in c.node(old).conf_state().voters
    assert victim not in c.node(minority).conf_state().voters
    # The majority side elects a leader and makes its own change.
    new = c.elect()
    assert new in rest[1:]
    c.tick(5)
    _change(c, new, REMOVE, minority)
    c.heal()
    c.tick(30)
    expected = ConfState.of([i for i in range(1, 6) if i != minority])
    for i in range(1, 6):
        if i != minority:
            assert c.node(i).conf_state() == expected, i
    c.check_log_matching()
    c.check_state_machine_safety()


def test_membership_change_under_partition_commits_only_with_a_quorum():
    c = Cluster(5, seed=54, extra=[6])
    lead = c.elect()
    others = [i for i in range(1, 6) if i != lead]
    c.partition([lead, others[0], 6], others[1:])  # leader side has 2 of 5 voters
    c.node(lead).propose_conf_change(ConfChange(ADD_LEARNER, 6))
    c.process(lead)
    c.stabilize()
    c.tick(3)
    st = c.node(lead).status()
    assert st.commit < st.last_index  # not committed without a majority of voters
    c.heal()
    c.tick(40)
    lead = c.elect()
    # Either the change was preserved and committed or discarded; all agree.
    confs = {c.node(i).conf_state() for i in range(1, 7)}
    assert len(confs) == 1
    c.check_log_matching()


def test_membership_4_2_2_removed_leader_steps_down_after_commit_and_does_not_disrupt():
    c = Cluster(5, seed=55)
    lead = c.elect()
    term = c.term(lead)
    c.propose(lead, b"before")
    c.stabilize()
    c.node(lead).propose_conf_change(ConfChange(REMOVE, lead))
    c.process(lead)
    c.stabilize()
    # It stepped down once the change committed, handing over with TimeoutNow.
    assert c.node(lead).status().role is StateRole.FOLLOWER
    new = c.elect(max_ticks=50)
    assert new != lead and c.term(new) == term + 1
    c.propose(new, b"after")
    c.stabilize()
    c.tick(100)
    # The removed node neither campaigns nor raises terms.
    assert c.leader() == new and c.term(new) == term + 1
    for i in range(1, 6):
        if i != lead:
            assert c.applied(i) == [b"before", b"after"]
            assert lead not in c.node(i).conf_state().voters


def test_membership_removed_follower_stops_receiving_entries():
    c = Cluster(3, seed=56)
    lead = c.elect()
    gone = next(i for i in (1, 2, 3) if i != lead)
    _change(c, lead, REMOVE, gone)
    seen = []
    c.filter = lambda m: (seen.append(m) or m) if m.to == gone else m
    c.propose(lead, b"x")
    c.tick(30)
    assert seen == []
    assert c.node(gone).status().term == c.term(lead)


def test_transfer_3_10_leadership_to_an_up_to_date_follower():
    c = Cluster(3, seed=57)
    lead = c.elect()
    term = c.term(lead)
    target = next(i for i in (1, 2, 3) if i != lead)
    c.node(lead).transfer_leader(target)
    c.process(lead)
    c.stabilize()
    assert c.leader() == target and c.term(target) == term + 1
    c.propose(target, b"new-leader-writes")
    c.stabilize()
    assert all(c.applied(i) == [b"new-leader-writes"] for i in (1, 2, 3))


def test_transfer_3_10_catches_up_a_lagging_target_first_and_blocks_proposals():
    c = Cluster(3, seed=58)
    lead = c.elect()
    target = next(i for i in (1, 2, 3) if i != lead)
    c.isolate(target)
    for k in range(10):
        c.propose(lead, b"t%d" % k)
    c.stabilize()
    c.node(lead).transfer_leader(target)
    with pytest.raises(ProposalDropped, match="transfer"):
        c.node(lead).propose(b"during-transfer")
    c.heal()
    c.tick(3)
    assert c.leader() == target
    assert c.applied(target)[:10] == [b"t%d" % k for k in range(10)]


def test_transfer_3_10_aborts_after_an_election_timeout():
    c = Cluster(3, seed=59)
    lead = c.elect()
    target = next(i for i in (1, 2, 3) if i != lead)
    c.crash(target)
    c.node(lead).transfer_leader(target)
    c.tick(10 + 1)
    assert c.leader() == lead
    assert c.node(lead).status().lead_transferee == 0
    c.propose(lead, b"accepted-again")  # proposals flow again
    c.stabilize()
    assert c.applied(lead) == [b"accepted-again"]


def test_transfer_requested_at_a_follower_is_forwarded():
    c = Cluster(3, seed=60)
    lead = c.elect()
    f = next(i for i in (1, 2, 3) if i != lead)
    c.node(f).transfer_leader(f)
    c.process(f)
    c.stabilize()
    assert c.leader() == f


def test_transfer_vote_requests_bypass_the_check_quorum_lease():
    c = Cluster(3, seed=61, check_quorum=True, pre_vote=True)
    lead = c.elect()
    target = next(i for i in (1, 2, 3) if i != lead)
    votes = []
    c.filter = lambda m: (votes.append(m) or m) if m.type is MessageType.VOTE else m
    c.node(lead).transfer_leader(target)
    c.process(lead)
    c.stabilize()
    assert c.leader() == target
    assert votes and all(m.context == b"transfer" for m in votes)


def test_membership_node_holding_the_only_copy_of_its_own_removal_can_still_finish_it():
    # Two voters; the leader appends its own removal but the entry reaches no one,
    # then it restarts. Its longer log means the other voter cannot win, so the
    # removed node itself must campaign (it is still a voter as of its commit index),
    # commit the change with the other's vote, and step down (thesis §4.2.2).
    c = Cluster([1, 2], seed=62)
    c.node(1).campaign()
    c.stabilize()
    assert c.leader() == 1
    c.filter = lambda m: None if m.frm == 1 and m.type is MessageType.APPEND else m
    c.node(1).propose_conf_change(ConfChange(REMOVE, 1))
    c.process(1)
    c.stabilize()
    c.crash(1)
    c.restart(1)
    c.filter = None
    assert c.node(1).conf_state().voters == (2,)
    assert c.node(2).conf_state().voters == (1, 2)
    c.run_until(lambda: c.leader() == 2 and c.node(2).conf_state().voters == (2,), 300)
    assert c.node(1).status().role is StateRole.FOLLOWER
    c.propose(2, b"alone")
    c.stabilize()
    assert c.applied(2) == [b"alone"]
