"""Ported from etcd-io/raft raft_test.go (and testdata/prevote, checkquorum,
confchange, snapshot_succeed_via_app_resp, probe_and_replicate): vote rules, PreVote,
learners, CheckQuorum and leases, ReadIndex, leadership transfer, membership,
snapshots, flow control and message validation — one node at a time with hand-made
messages, so each rule is checked in isolation."""

from __future__ import annotations

import pytest

from consensus import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    InvalidMessage,
    Message,
    MessageType as T,
    ProposalDropped,
    ReadState,
    Snapshot,
    SnapshotMeta,
    StateRole,
)
from consensus.codec import encode_conf_change
from consensus.progress import ProgressState
from consensus.raft import CAMPAIGN_TRANSFER
from consensus.types import HardState

from _etcd_unit import ents, make_leader, of, unit


def _ack_all(u, idx=None, peers=(2, 3)):
    idx = u.status().last_index if idx is None else idx
    out = []
    for f in peers:
        out += u.step(T.APPEND_RESP, f, term=u.term, index=idx)
    return out


# -- votes (§5.2, §5.4.1) and PreVote (thesis §9.6) ----------------------------------------

@pytest.mark.parametrize("role", ["follower", "candidate", "pre_candidate", "leader"])
@pytest.mark.parametrize("index,log_term,vote_for,reject", [
    # (a last log term beyond the request's term is refused as invalid: see below)
    (0, 0, 0, True), (0, 1, 0, True), (0, 2, 0, True),
    (1, 0, 0, True), (1, 1, 0, True), (1, 2, 0, True),
    (2, 0, 0, True), (2, 1, 0, True), (2, 2, 0, False),
    (3, 2, 0, False), (9, 2, 0, False),
    (3, 2, 2, False), (3, 2, 1, True),  # already voted: only for the same candidate
])
def test_recv_vote_same_term_in_every_role(role, index, log_term, vote_for, reject):
    """etcd TestRecvMsgVote: a vote request of our own term is granted only if we have
    not voted for someone else (and know no leader) and its log is up to date."""
    u = unit(1, term=2, vote=0, log=ents(2, 2))
    if role == "leader":
        make_leader(u)
        term = u.term
    elif role == "candidate":
        u.node.campaign(); u.drain()
        term = u.term
    elif role == "pre_candidate":
        u2 = unit(1, term=2, vote=vote_for, log=ents(2, 2), pre_vote=True)
        u2.node.campaign(); u2.drain()
        assert u2.role is StateRole.PRE_CANDIDATE
        u, term = u2, 2
    else:
        u = unit(1, term=2, vote=vote_for, log=ents(2, 2))
        term = 2
    out = u.step(T.VOTE, 2, term=term, index=index, log_term=log_term)
    (r,) = of(out, T.VOTE_RESP)
    if role in ("leader", "candidate"):
        assert r.reject  # they voted for themselves in this term
    else:
        assert r.reject is reject


def test_prevote_9_6_grant_changes_neither_term_nor_vote():
    u = unit(1, term=1, vote=3, log=ents(1))
    out = u.step(T.PRE_VOTE, 2, term=2, index=1, log_term=1)
    (r,) = of(out, T.PRE_VOTE_RESP)
    assert not r.reject and r.term == 2  # answered in the request's (future) term
    assert u.term == 1 and u.status().vote == 3
    assert u.storage.hard_state() == HardState(1, 3, 0)


def test_prevote_9_6_rejects_a_stale_log_without_changing_term():
    u = unit(1, term=1, log=ents(1, 1))
    out = u.step(T.PRE_VOTE, 2, term=5, index=1, log_term=1)
    (r,) = of(out, T.PRE_VOTE_RESP)
    assert r.reject and u.term == 1


def test_prevote_9_6_granted_even_after_voting_in_the_current_term_for_a_future_term():
    u = unit(1, term=3, vote=3, log=ents(1))
    out = u.step(T.PRE_VOTE, 2, term=4, index=1, log_term=1)
    (r,) = of(out, T.PRE_VOTE_RESP)
    assert not r.reject and u.status().vote == 3


def test_prevote_9_6_leader_ignores_a_late_granted_prevote_response_from_a_higher_term():
    """A granted pre-vote response carries the pre-candidate's future term; it says
    nothing about a real term and must not depose anyone who receives it late."""
    u = unit(1, term=1, pre_vote=True)
    make_leader(u)
    t = u.term
    u.step(T.PRE_VOTE_RESP, 2, term=t + 1)
    assert u.role is StateRole.LEADER and u.term == t


def test_prevote_9_6_follower_ignores_a_late_granted_prevote_response():
    u = unit(1, term=4, pre_vote=True)
    u.step(T.PRE_VOTE_RESP, 2, term=9)
    assert u.role is StateRole.FOLLOWER and u.term == 4


def test_prevote_9_6_rejection_from_a_higher_term_makes_the_precandidate_follow_that_term():
    u = unit(1, term=1, pre_vote=True)
    u.node.campaign(); u.drain()
    assert u.role is StateRole.PRE_CANDIDATE and u.term == 1
    u.step(T.PRE_VOTE_RESP, 2, term=7, reject=True)
    assert u.role is StateRole.FOLLOWER and u.term == 7


def test_prevote_9_6_precandidate_becomes_candidate_only_after_a_quorum_of_grants():
    u = unit(1, peers=(1, 2, 3, 4, 5), term=1, pre_vote=True)
    u.node.campaign()
    out = u.drain()
    pv = of(out, T.PRE_VOTE)
    assert len(pv) == 4 and all(m.term == 2 for m in pv) and u.term == 1
    assert u.storage.hard_state().term == 1  # nothing to persist for a pre-vote
    u.step(T.PRE_VOTE_RESP, 2, term=2)
    assert u.role is StateRole.PRE_CANDIDATE
    out = u.step(T.PRE_VOTE_RESP, 3, term=2)
    assert u.role is StateRole.CANDIDATE and u.term == 2 and u.status().vote == 1
    assert len(of(out, T.VOTE)) == 4


def test_prevote_9_6_precandidate_with_a_quorum_of_rejections_returns_to_follower():
    u = unit(1, term=1, pre_vote=True)
    u.node.campaign(); u.drain()
    u.step(T.PRE_VOTE_RESP, 2, term=1, reject=True)
    u.step(T.PRE_VOTE_RESP, 3, term=1, reject=True)
    assert u.role is StateRole.FOLLOWER and u.term == 1


def test_candidate_ignores_a_vote_response_of_an_earlier_term():
    u = unit(1, term=1)
    u.node.campaign(); u.drain()  # term 2
    u.node.campaign(); u.drain()  # term 3 (stuck candidate times out again)
    assert u.term == 3
    u.step(T.VOTE_RESP, 2, term=2)
    assert u.role is StateRole.CANDIDATE


def test_candidate_does_not_count_votes_from_non_members():
    u = unit(1, term=1)
    u.node.campaign(); u.drain()
    u.step(T.VOTE_RESP, 7, term=2)
    u.step(T.VOTE_RESP, 8, term=2)
    assert u.role is StateRole.CANDIDATE


def test_campaign_while_leader_keeps_its_term():
    u = unit(1)
    make_leader(u)
    t = u.term
    u.node.campaign(); u.drain()
    assert u.role is StateRole.LEADER and u.term == t


# -- learners (thesis §4.2.1) --------------------------------------------------------------

def test_learner_never_campaigns_on_election_timeout():
    u = unit(3, peers=(1, 2), learners=(3,))
    out = u.tick(100)
    assert u.role is StateRole.FOLLOWER and u.term == 0
    assert not of(out, T.VOTE) and not of(out, T.PRE_VOTE)


def test_learner_ignores_timeout_now_and_campaign():
    u = unit(3, peers=(1, 2), learners=(3,), term=1)
    out = u.step(T.TIMEOUT_NOW, 1, term=1)
    u.node.campaign()
    out += u.drain()
    assert u.role is StateRole.FOLLOWER and u.term == 1 and not of(out, T.VOTE)


def test_learner_vote_is_not_counted_by_the_candidate():
    u = unit(1, peers=(1, 2, 3), learners=(4, 5))
    u.node.campaign(); u.drain()
    u.step(T.VOTE_RESP, 4, term=1)
    u.step(T.VOTE_RESP, 5, term=1)
    assert u.role is StateRole.CANDIDATE
    u.step(T.VOTE_RESP, 2, term=1)
    assert u.role is StateRole.LEADER


def test_learner_acknowledgements_do_not_commit():
    u = unit(1, peers=(1, 2, 3), learners=(4, 5))
    make_leader(u)
    u.step(T.APPEND_RESP, 4, term=1, index=1)
    u.step(T.APPEND_RESP, 5, term=1, index=1)
    assert u.status().commit == 0
    u.step(T.APPEND_RESP, 2, term=1, index=1)
    assert u.status().commit == 1


def test_leader_replicates_to_learners():
    u = unit(1, peers=(1, 2), learners=(3,))
    out = make_leader(u)
    assert of(out, T.APPEND, to=3)


# -- CheckQuorum and leader leases (thesis §6.2, §4.2.3) ------------------------------------

def test_check_quorum_leader_steps_down_without_recent_activity():
    u = unit(1, check_quorum=True)
    make_leader(u)
    u.tick(10)
    assert u.role is StateRole.LEADER  # first round: everybody counts as fresh
    u.tick(10)
    assert u.role is StateRole.FOLLOWER


def test_check_quorum_uses_activity_of_the_last_election_timeout_only():
    u = unit(1, check_quorum=True, peers=(1, 2, 3))
    make_leader(u)
    for _ in range(3):
        u.tick(5)
        u.step(T.HEARTBEAT_RESP, 2, term=u.term)
        u.tick(5)
        assert u.role is StateRole.LEADER
    # Node 2 was heard only at the start of this round; a later silent round deposes.
    u.step(T.HEARTBEAT_RESP, 2, term=u.term)
    u.tick(10)
    assert u.role is StateRole.LEADER
    u.tick(10)
    assert u.role is StateRole.FOLLOWER


def test_check_quorum_learner_activity_does_not_keep_a_leader():
    u = unit(1, check_quorum=True, peers=(1, 2, 3), learners=(4,))
    make_leader(u)
    u.tick(10)
    for _ in range(10):
        u.step(T.HEARTBEAT_RESP, 4, term=u.term)
        u.tick(1)
    assert u.role is StateRole.FOLLOWER


def test_check_quorum_lease_follower_ignores_vote_requests_while_it_hears_a_leader():
    u = unit(2, term=1, check_quorum=True)
    u.step(T.HEARTBEAT, 1, term=1)
    out = u.step(T.VOTE, 3, term=5, index=10, log_term=5)
    assert out == [] and u.term == 1 and u.status().lead == 1
    out = u.step(T.PRE_VOTE, 3, term=5, index=10, log_term=5)
    assert out == [] and u.term == 1


def test_check_quorum_lease_expires_after_an_election_timeout_without_a_leader():
    u = unit(2, term=1, check_quorum=True)
    u.step(T.HEARTBEAT, 1, term=1)
    # The election timer fires in [10, 20); stop just short of the minimum, a lease
    # still holds; a vote with a transfer context bypasses it.
    u.tick(9)
    assert u.step(T.VOTE, 3, term=5, index=10, log_term=5) == []
    out = u.step(T.VOTE, 3, term=5, index=10, log_term=5, context=CAMPAIGN_TRANSFER)
    (r,) = of(out, T.VOTE_RESP)
    assert not r.reject and u.term == 5


def test_check_quorum_leader_lease_rejects_disruptive_votes():
    u = unit(1, check_quorum=True)
    make_leader(u)
    t = u.term
    u.step(T.VOTE, 2, term=t + 5, index=100, log_term=t)
    assert u.role is StateRole.LEADER and u.term == t


def test_check_quorum_stale_leader_learns_newer_term_from_a_follower_reply():
    u = unit(2, term=5, check_quorum=True)
    out = u.step(T.APPEND, 1, term=3, index=0, log_term=0)
    (r,) = of(out, T.APPEND_RESP)
    assert r.term == 5 and r.to == 1


# -- §5.3 follower side details --------------------------------------------------------------

def test_heartbeat_commit_is_capped_at_the_follower_log_and_never_decreases():
    u = unit(2, term=1, log=ents(1, 1, 1), commit=1)
    u.step(T.HEARTBEAT, 1, term=1, commit=2)
    assert u.status().commit == 2
    u.step(T.HEARTBEAT, 1, term=1, commit=1)
    assert u.status().commit == 2
    u.step(T.HEARTBEAT, 1, term=1, commit=99)
    assert u.status().commit == 3


def test_leader_heartbeat_commit_is_capped_at_each_follower_match():
    u = unit(1)
    make_leader(u)
    u.step(T.APPEND_RESP, 2, term=1, index=1)
    assert u.status().commit == 1
    out = u.tick(1)
    hb = {m.to: m.commit for m in of(out, T.HEARTBEAT)}
    assert hb == {2: 1, 3: 0}


def test_leader_probes_backwards_with_the_follower_hint():
    u = unit(1, term=3, log=ents(1, 1, 2, 2, 3, 3, 3))
    make_leader(u)  # term 4, no-op at 8
    out = u.step(T.APPEND_RESP, 2, term=4, index=7, reject=True, reject_hint=2, log_term=1)
    # Our entries with term <= 1 end at 2: probe right after that, skipping terms 2-3.
    (a,) = of(out, T.APPEND, to=2)
    assert (a.index, a.log_term) == (2, 1)


def test_stale_rejection_in_replicate_state_is_ignored():
    u = unit(1)
    make_leader(u)
    u.step(T.APPEND_RESP, 2, term=1, index=1)
    u.node.propose(b"a"); u.drain()
    u.node.propose(b"b"); u.drain()
    pr = u.status().progress[2]
    assert pr.state is ProgressState.REPLICATE and pr.next == 4
    u.step(T.APPEND_RESP, 2, term=1, index=0, reject=True, reject_hint=0)
    assert u.status().progress[2].next == 4


# -- §5.4.2 via a full log ---------------------------------------------------------------

def test_follower_never_commits_beyond_what_the_leader_vouched_for():
    u = unit(2, term=1, log=ents(1, 1, 1, 1))
    # Leader (term 2) matches only up to 2 and carries no entries; commit 4 in its message.
    u.step(T.APPEND, 1, term=2, index=2, log_term=1, commit=4)
    assert u.status().commit == 2


# -- ReadIndex (thesis §6.4) ---------------------------------------------------------------

def test_read_index_new_leader_defers_reads_until_it_commits_in_its_term():
    u = unit(1, term=1, log=ents(1, 1), commit=1)
    make_leader(u)
    u.node.read_index(b"r1")
    out = u.drain()
    assert u.reads == [] and not [m for m in out if m.context == b"r1"]
    out = u.step(T.APPEND_RESP, 2, term=u.term, index=3)  # the no-op commits
    assert u.status().commit == 3
    hb = of(out, T.HEARTBEAT)
    assert hb and all(m.context == b"r1" for m in hb)
    assert u.reads == []
    u.step(T.HEARTBEAT_RESP, 3, term=u.term, context=b"r1")
    assert u.reads == [ReadState(3, b"r1")]


def test_read_index_forwarded_read_is_also_deferred_then_answered():
    u = unit(1, term=1, log=ents(1), commit=1)
    make_leader(u)
    u.step(T.READ_INDEX, 2, context=b"f")
    out = _ack_all(u)
    out += u.step(T.HEARTBEAT_RESP, 3, term=u.term, context=b"f")
    (r,) = of(out, T.READ_INDEX_RESP)
    assert r.to == 2 and r.index == 2 and r.context == b"f"


def test_read_index_needs_a_quorum_of_voter_acks_in_the_current_round():
    u = unit(1, peers=(1, 2, 3, 4, 5), learners=(6,))
    make_leader(u)
    _ack_all(u, peers=(2, 3, 4, 5))
    u.node.read_index(b"r"); u.drain()
    u.step(T.HEARTBEAT_RESP, 2, term=u.term, context=b"r")
    u.step(T.HEARTBEAT_RESP, 6, term=u.term, context=b"r")  # learner: does not count
    u.step(T.HEARTBEAT_RESP, 3, term=u.term, context=b"old")  # another round
    u.step(T.HEARTBEAT_RESP, 4, term=u.term)  # no round
    assert u.reads == []
    u.step(T.HEARTBEAT_RESP, 5, term=u.term, context=b"r")
    assert u.reads == [ReadState(1, b"r")]


def test_read_index_later_round_confirms_earlier_reads():
    u = unit(1)
    make_leader(u)
    _ack_all(u)
    u.node.read_index(b"a"); u.drain()
    u.node.propose(b"w"); u.drain()
    _ack_all(u)
    u.node.read_index(b"b"); u.drain()
    u.step(T.HEARTBEAT_RESP, 2, term=u.term, context=b"b")
    assert u.reads == [ReadState(1, b"a"), ReadState(2, b"b")]


def test_read_index_isolated_leader_never_answers():
    u = unit(1, check_quorum=True)
    make_leader(u)
    _ack_all(u)
    u.node.read_index(b"r"); u.drain()
    u.tick(50)
    assert u.reads == [] and u.role is not StateRole.LEADER


def test_read_index_deposed_leader_drops_pending_reads():
    u = unit(1)
    make_leader(u)
    _ack_all(u)
    u.node.read_index(b"r"); u.drain()
    u.step(T.APPEND, 2, term=u.term + 1, index=1, log_term=1)
    # An ack of the old round now (old term) must not release the read.
    u.step(T.HEARTBEAT_RESP, 3, term=u.term, context=b"r")
    assert u.reads == []


def test_read_index_follower_forwards_and_without_leader_refuses():
    u = unit(2)
    with pytest.raises(ProposalDropped):
        u.node.read_index(b"x")
    u.step(T.HEARTBEAT, 1, term=1)
    u.node.read_index(b"x")
    (m,) = of(u.drain(), T.READ_INDEX)
    assert m.to == 1 and m.context == b"x" and m.term == 0
    u.step(T.READ_INDEX_RESP, 1, term=1, index=0, context=b"x")
    assert u.reads == [ReadState(0, b"x")]


# -- leadership transfer (thesis §3.10) -----------------------------------------------------

def _replicating_leader(**kw):
    u = unit(1, **kw)
    make_leader(u)
    _ack_all(u)
    return u


def test_transfer_to_up_to_date_follower_sends_timeout_now_at_once():
    u = _replicating_leader()
    u.node.transfer_leader(2)
    (m,) = of(u.drain(), T.TIMEOUT_NOW)
    assert m.to == 2 and u.status().lead_transferee == 2


def test_transfer_drops_proposals_while_in_progress():
    u = _replicating_leader()
    u.node.transfer_leader(2); u.drain()
    with pytest.raises(ProposalDropped):
        u.node.propose(b"x")
    u.step(T.PROPOSE, 3, entries=(Entry(0, 0, EntryKind.NORMAL, b"fwd"),))
    assert u.status().last_index == 1


def test_transfer_to_a_lagging_follower_catches_it_up_first():
    u = unit(1)
    make_leader(u)
    u.step(T.APPEND_RESP, 2, term=1, index=1)
    u.node.propose(b"a"); u.drain()
    u.step(T.APPEND_RESP, 3, term=1, index=1)  # 3 is behind: match 1 < last 2
    u.node.transfer_leader(3)
    out = u.drain()
    assert not of(out, T.TIMEOUT_NOW)
    out = u.step(T.APPEND_RESP, 3, term=1, index=2)
    (m,) = of(out, T.TIMEOUT_NOW)
    assert m.to == 3


def test_transfer_to_self_is_a_no_op():
    u = _replicating_leader()
    u.node.transfer_leader(1)
    assert not of(u.drain(), T.TIMEOUT_NOW) and u.status().lead_transferee == 0
    u.node.propose(b"still accepted")


@pytest.mark.parametrize("target", [9, 4])
def test_transfer_to_a_non_member_or_learner_is_refused(target):
    u = unit(1, learners=(4,))
    make_leader(u)
    with pytest.raises(ProposalDropped):
        u.node.transfer_leader(target)
    assert u.status().lead_transferee == 0


def test_transfer_aborts_after_an_election_timeout():
    u = _replicating_leader()
    u.node.transfer_leader(2); u.drain()
    u.tick(9)
    assert u.status().lead_transferee == 2
    u.tick(1)
    assert u.status().lead_transferee == 0 and u.role is StateRole.LEADER
    u.node.propose(b"accepted again")


def test_transfer_second_request_to_the_same_node_does_not_extend_the_timeout():
    u = _replicating_leader()
    u.node.transfer_leader(2); u.drain()
    u.tick(5)
    u.node.transfer_leader(2); u.drain()
    u.tick(5)
    assert u.status().lead_transferee == 0


def test_transfer_second_request_to_another_node_retargets():
    u = _replicating_leader()
    u.node.transfer_leader(2); u.drain()
    u.node.transfer_leader(3)
    (m,) = of(u.drain(), T.TIMEOUT_NOW)
    assert m.to == 3 and u.status().lead_transferee == 3


def test_transfer_target_campaigns_at_once_bypassing_prevote_with_a_transfer_context():
    u = unit(2, term=1, pre_vote=True, check_quorum=True)
    u.step(T.HEARTBEAT, 1, term=1)
    out = u.step(T.TIMEOUT_NOW, 1, term=1)
    votes = of(out, T.VOTE)
    assert u.role is StateRole.CANDIDATE and u.term == 2
    assert votes and all(m.context == CAMPAIGN_TRANSFER for m in votes)


def test_transfer_forwarded_by_a_follower_reaches_the_leader():
    u = _replicating_leader()
    (m,) = of(u.step(T.TRANSFER_LEADER, 3, index=3), T.TIMEOUT_NOW)
    assert m.to == 3


def test_transfer_aborted_when_target_is_removed():
    u = _replicating_leader()
    u.node.propose(b"x"); u.drain()  # 2 and 3 lag at 1
    u.node.transfer_leader(3); u.drain()
    assert u.status().lead_transferee == 3
    # Removing 3 needs the transfer finished first (proposals are refused): abort it by timeout
    u.tick(10)
    u.node.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 3)) if hasattr(
        ConfChangeType, "REMOVE_NODE") else u.node.propose_conf_change(
        ConfChange(ConfChangeType.REMOVE, 3))
    u.drain()
    assert 3 not in u.node.conf_state().voters


# -- membership (thesis §4.1–§4.2) --------------------------------------------------------

def _remove(node):
    t = getattr(ConfChangeType, "REMOVE_NODE", None) or getattr(ConfChangeType, "REMOVE")
    return ConfChange(t, node)


def test_membership_commit_index_recomputed_when_a_slow_voter_is_removed():
    u = unit(1, peers=(1, 2, 3, 4))
    make_leader(u)
    _ack_all(u, peers=(2, 3, 4))
    u.node.propose(b"x"); u.drain()
    u.step(T.APPEND_RESP, 2, term=1, index=2)
    assert u.status().commit == 1  # 2 of 4
    u.node.propose_conf_change(_remove(4)); u.drain()
    # Config {1,2,3} is in force as soon as it is in the log: 2 of 3 hold entry 2.
    assert u.status().commit == 2


def test_membership_removed_node_vote_no_longer_counts():
    u = unit(1, peers=(1, 2, 3))
    make_leader(u)
    _ack_all(u)
    u.node.propose_conf_change(_remove(3)); u.drain()
    u.step(T.APPEND_RESP, 2, term=1, index=2)
    assert u.node.conf_state().voters == (1, 2)
    # A new election in the smaller configuration: 3's grant means nothing.
    v = unit(2, peers=(1, 2), term=1)
    v.node.campaign(); v.drain()
    v.step(T.VOTE_RESP, 3, term=2)
    assert v.role is StateRole.CANDIDATE
    v.step(T.VOTE_RESP, 1, term=2)
    assert v.role is StateRole.LEADER


def test_membership_one_pending_change_at_a_time():
    u = unit(1, peers=(1, 2, 3))
    make_leader(u)
    _ack_all(u)
    u.node.propose_conf_change(_remove(3)); u.drain()
    with pytest.raises(ProposalDropped):
        u.node.propose_conf_change(_remove(2))


def test_membership_change_refused_before_the_leader_commits_in_its_term():
    u = unit(1, peers=(1, 2, 3))
    make_leader(u)
    with pytest.raises(ProposalDropped):
        u.node.propose_conf_change(_remove(3))


def test_membership_forwarded_conf_change_is_dropped():
    u = _replicating_leader()
    cc = encode_conf_change(_remove(3))
    u.step(T.PROPOSE, 2, entries=(Entry(0, 0, EntryKind.CONF_CHANGE, cc),))
    assert u.status().last_index == 1 and 3 in u.node.conf_state().voters


def test_membership_follower_reverts_configuration_when_the_entry_is_truncated():
    cc = encode_conf_change(_remove(3))
    u = unit(2, term=1, log=ents(1))
    u.step(T.APPEND, 1, term=1, index=1, log_term=1,
           entries=(Entry(1, 2, EntryKind.CONF_CHANGE, cc),), commit=1)
    assert u.node.conf_state().voters == (1, 2)
    # A new leader (term 2) never had that entry: it overwrites index 2.
    u.step(T.APPEND, 3, term=2, index=1, log_term=1, entries=(Entry(2, 2),), commit=1)
    assert u.node.conf_state().voters == (1, 2, 3)


def test_membership_promoting_a_lagging_learner_is_refused():
    u = unit(1, peers=(1, 2, 3), learners=(4,))
    make_leader(u)
    _ack_all(u)
    with pytest.raises(ProposalDropped):
        u.node.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, 4))
    u.step(T.APPEND_RESP, 4, term=1, index=1)
    u.node.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, 4))
    u.drain()
    assert 4 in u.node.conf_state().voters


# -- snapshots (§7) -------------------------------------------------------------------------

def _snap_msg(index, term, voters=(1, 2, 3), data=b"state", leader_term=None, to=2):
    snap = Snapshot(SnapshotMeta(index, term, ConfState.of(voters)), data)
    return Message(T.SNAPSHOT, to=to, frm=1, term=leader_term or term, snapshot=snap,
                   snapshot_offset=0, snapshot_done=True)


def test_snapshot_restore_on_follower_replaces_its_log():
    u = unit(2, term=1, log=ents(1, 1))
    u.node.step(_snap_msg(11, 11))
    rd = u.node.ready()
    assert rd.snapshot is not None and rd.snapshot.meta.index == 11
    assert rd.committed_entries == ()
    (r,) = of(rd.messages, T.APPEND_RESP)
    assert r.index == 11 and not r.reject
    u.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
    u.node.advance(rd)
    st = u.status()
    assert st.commit == 11 and st.last_index == 11 and st.applied == 11


def test_snapshot_older_than_commit_is_ignored():
    u = unit(2, term=2, log=ents(1, 1, 2), commit=3)
    out = []
    u.node.step(_snap_msg(2, 1, leader_term=2))
    rd = u.node.ready()
    assert rd.snapshot is None
    (r,) = of(rd.messages, T.APPEND_RESP)
    assert r.index == 3
    u.node.advance(rd)


def test_snapshot_matching_our_log_only_fast_forwards_commit():
    u = unit(2, term=2, log=ents(1, 1, 2), commit=1)
    u.node.step(_snap_msg(3, 2))
    rd = u.node.ready()
    assert rd.snapshot is None and u.status().commit == 3 and u.status().last_index == 3
    u.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
    u.node.advance(rd)


def test_snapshot_leader_sends_snapshot_when_log_is_compacted_then_replicates_after_ack():
    u = unit(1)
    make_leader(u)
    u.step(T.APPEND_RESP, 2, term=1, index=1)
    for k in range(5):
        u.node.propose(b"e%d" % k); u.drain()
        u.step(T.APPEND_RESP, 2, term=1, index=u.status().last_index)
    commit = u.status().commit
    u.storage.create_snapshot(commit, u.node.conf_state_at(commit), b"app")
    u.storage.compact(commit)
    out = u.step(T.HEARTBEAT_RESP, 3, term=1)  # 3 needs entries from 1, now compacted
    (s,) = of(out, T.SNAPSHOT, to=3)
    assert s.snapshot.meta.index == commit and s.snapshot_done
    assert u.status().progress[3].state is ProgressState.SNAPSHOT
    # etcd snapshot_succeed_via_app_resp: the follower's append ack ends the transfer.
    u.step(T.APPEND_RESP, 3, term=1, index=commit)
    pr = u.status().progress[3]
    assert pr.state is ProgressState.REPLICATE and pr.match == commit and pr.next == commit + 1


def test_snapshot_follower_in_snapshot_state_gets_no_appends():
    u = unit(1)
    make_leader(u)
    u.step(T.APPEND_RESP, 2, term=1, index=1)
    u.node.propose(b"a"); u.drain()
    u.step(T.APPEND_RESP, 2, term=1, index=2)
    u.storage.create_snapshot(2, u.node.conf_state_at(2), b"app")
    u.storage.compact(2)
    u.step(T.HEARTBEAT_RESP, 3, term=1)
    u.node.propose(b"b")
    out = u.drain()
    assert not of(out, T.APPEND, to=3) and of(out, T.APPEND, to=2)


# -- flow control (etcd raft_flow_control_test.go) --------------------------------------------

def test_flow_control_full_inflights_window_stops_appends_until_acked():
    u = unit(1, max_inflight_msgs=3)
    make_leader(u)
    u.step(T.APPEND_RESP, 2, term=1, index=1)
    sent = []
    for k in range(10):
        u.node.propose(b"%d" % k)
        sent += of(u.drain(), T.APPEND, to=2)
    assert len(sent) == 3
    assert u.status().progress[2].inflight == 3
    out = u.step(T.APPEND_RESP, 2, term=1, index=sent[0].entries[-1].index)
    more = of(out, T.APPEND, to=2)
    # The freed slot is used at once, carrying everything not yet sent.
    assert len(more) == 1 and more[0].entries[-1].index == u.status().last_index


def test_flow_control_heartbeat_response_frees_one_slot_of_a_full_window():
    u = unit(1, max_inflight_msgs=2)
    make_leader(u)
    u.step(T.APPEND_RESP, 2, term=1, index=1)
    for k in range(4):
        u.node.propose(b"%d" % k); u.drain()
    assert u.status().progress[2].inflight == 2
    out = u.step(T.HEARTBEAT_RESP, 2, term=1)
    assert len(of(out, T.APPEND, to=2)) == 1


def test_flow_control_probe_sends_one_append_until_a_reply():
    u = unit(1)
    make_leader(u)
    out = []
    for k in range(3):
        u.node.propose(b"%d" % k)
        out += of(u.drain(), T.APPEND, to=2)
    assert out == []  # the no-op probe is outstanding
    out = u.step(T.HEARTBEAT_RESP, 2, term=1)
    assert len(of(out, T.APPEND, to=2)) == 1


def test_flow_control_message_size_limit_splits_appends():
    u = unit(1, max_size_per_msg=100, max_inflight_msgs=100)
    make_leader(u)
    u.step(T.APPEND_RESP, 2, term=1, index=1)
    u.node.propose_many([b"x" * 60 for _ in range(5)])
    apps = of(u.drain(), T.APPEND, to=2)
    # Each entry is 76 bytes: one per message. Like etcd, a broadcast sends one message
    # per follower; an acknowledgement then fills the in-flight window.
    assert [len(a.entries) for a in apps] == [1]
    apps += of(u.step(T.APPEND_RESP, 2, term=1, index=apps[0].entries[-1].index), T.APPEND, to=2)
    assert [len(a.entries) for a in apps] == [1] * 5
    assert [a.entries[0].index for a in apps] == [2, 3, 4, 5, 6]


# -- message validation ------------------------------------------------------------------

@pytest.mark.parametrize("build", [
    lambda: Message(T.APPEND, to=1, frm=2, term=0),
    lambda: Message(T.VOTE, to=1, frm=2, term=0),
    lambda: Message(T.PROPOSE, to=1, frm=2, term=3, entries=(Entry(0, 0),)),
    lambda: Message(T.APPEND, to=1, frm=2, term=2, index=0, log_term=0,
                    entries=(Entry(3, 1),)),  # entry term beyond the message term
    lambda: Message(T.APPEND, to=1, frm=2, term=2, index=0, log_term=0,
                    entries=(Entry(1, 1), Entry(1, 3))),  # gap
    lambda: Message(T.APPEND, to=1, frm=2, term=2, index=4, log_term=2,
                    entries=(Entry(1, 5),)),  # term goes backwards
    lambda: Message(T.HEARTBEAT, to=1, frm=2, term=1, entries=(Entry(1, 1),)),
    lambda: Message(T.VOTE, to=1, frm=2, term=2, index=1, log_term=3),  # log term > term
    lambda: Message(T.PRE_VOTE, to=1, frm=2, term=2, index=9, log_term=9),
    lambda: Message(T.APPEND, to=1, frm=2, term=2, index=1, log_term=5),
    lambda: Message(T.SNAPSHOT, to=1, frm=2, term=2, snapshot_done=True,
                    snapshot=Snapshot(SnapshotMeta(5, 1, ConfState.of([], [1, 2])), b"")),
    lambda: Message(T.APPEND, to=3, frm=2, term=1),  # not for us
    lambda: Message(T.APPEND, to=1, frm=1, term=1),  # from ourselves
])
def test_invalid_messages_raise_and_change_nothing(build):
    u = unit(1, term=1, log=ents(1))
    before = (u.status(), u.storage.hard_state())
    with pytest.raises(InvalidMessage):
        u.node.step(build())
    assert not u.node.has_ready()
    assert (u.status(), u.storage.hard_state()) == before


@pytest.mark.parametrize("field", ["index", "term", "commit", "log_term"])
def test_negative_fields_are_refused_at_construction(field):
    with pytest.raises(ValueError):
        Message(T.APPEND, to=1, frm=2, **{"term": 1, field: -1})


def test_huge_valid_append_is_accepted_and_acknowledged_once():
    u = unit(2, term=1)
    es = tuple(Entry(1, i) for i in range(1, 5001))
    out = u.step(T.APPEND, 1, term=1, index=0, log_term=0, entries=es, commit=5000)
    (r,) = of(out, T.APPEND_RESP)
    assert r.index == 5000 and u.status().commit == 5000 and len(u.applied) == 5000


def test_responses_from_unknown_nodes_are_ignored_by_the_leader():
    u = _replicating_leader()
    st = u.status()
    u.step(T.APPEND_RESP, 9, term=u.term, index=1)
    u.step(T.HEARTBEAT_RESP, 9, term=u.term, context=b"x")
    u.step(T.SNAPSHOT_RESP, 9, term=u.term, index=1)
    assert u.status() == st


def test_append_ack_beyond_the_leader_log_is_ignored():
    u = _replicating_leader()
    u.step(T.APPEND_RESP, 2, term=u.term, index=10**9)
    assert u.status().progress[2].match == 1


# -- more of raft_test.go: progress bookkeeping ---------------------------------------------

@pytest.mark.parametrize("index,reject,reject_hint,log_term,want", [
    (1, True, 1, 1, (0, 3, ProgressState.PROBE)),   # stale: we probe at 2, not 1
    (2, True, 1, 1, (0, 2, ProgressState.PROBE)),   # follower holds only 1: probe at 1
    (2, True, 0, 0, (0, 1, ProgressState.PROBE)),   # follower holds nothing
    (3, False, 0, 0, (3, 4, ProgressState.REPLICATE)),  # accepted: replicate
    (2, False, 0, 0, (2, 3, ProgressState.REPLICATE)),  # an older ack still teaches match
])
def test_leader_append_response_updates_progress(index, reject, reject_hint, log_term, want):
    """etcd TestLeaderAppResp, adapted: the leader's log is [1, 1] plus its no-op of term
    2 at 3; a fresh follower's progress starts at next = 3 (last index before the no-op,
    as etcd) and the no-op probe went out with prev 2."""
    u = unit(1, term=1, log=ents(1, 1))
    make_leader(u)
    pr = u.status().progress[2]
    assert (pr.match, pr.next, pr.state) == (0, 3, ProgressState.PROBE)
    u.step(T.APPEND_RESP, 2, term=u.term, index=index, reject=reject,
           reject_hint=reject_hint, log_term=log_term)
    pr = u.status().progress[2]
    assert (pr.match, pr.next if pr.state is ProgressState.PROBE else pr.match + 1,
            pr.state) == want


def test_probe_resumes_on_heartbeat_response():
    """etcd TestProgressResumeByHeartbeatResp: a paused probe is unpaused by a
    heartbeat reply."""
    u = unit(1)
    make_leader(u)
    u.node.propose(b"a"); u.drain()
    assert not of(u.drain(), T.APPEND, to=2)
    out = u.step(T.HEARTBEAT_RESP, 2, term=1)
    (a,) = of(out, T.APPEND, to=2)
    assert a.index == 0 and [e.index for e in a.entries] == [1, 2]


def test_uncommitted_entry_limit_drops_proposals_until_commit():
    """etcd TestUncommittedEntryLimit: max_uncommitted_bytes bounds the uncommitted
    tail; an entry larger than the limit is accepted when nothing is uncommitted."""
    u = unit(1, max_uncommitted_bytes=10)
    make_leader(u)
    u.node.propose(b"x" * 6); u.drain()
    with pytest.raises(ProposalDropped):
        u.node.propose(b"y" * 6)
    u.step(T.APPEND_RESP, 2, term=1, index=2)  # commits and applies 'x'
    u.node.propose(b"y" * 6); u.drain()
    u.step(T.APPEND_RESP, 2, term=1, index=3)
    u.node.propose(b"z" * 50)  # alone over the limit, but nothing else uncommitted
    u.drain()


def test_commit_pagination_limits_committed_bytes_per_ready():
    """etcd TestCommitPagination: committed entries come in bounded Readys, in order,
    each entry exactly once."""
    u = unit(1, peers=(1,), max_committed_bytes_per_ready=20)
    make_leader(u)
    u.node.propose_many([b"%02d" % k + b"." * 8 for k in range(6)])
    sizes = []
    for _ in range(20):
        if not u.node.has_ready():
            break
        rd = u.node.ready()
        u.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
        sizes.append(len(rd.committed_entries))
        u.applied.extend(rd.committed_entries)
        u.node.advance(rd)
    assert [e.index for e in u.applied] == list(range(1, 8))
    assert max(sizes) < 7 and len([s for s in sizes if s]) > 1


def test_restore_ignores_a_snapshot_behind_the_commit_index():
    """etcd TestRestoreIgnoreSnapshot."""
    u = unit(2, term=1, log=ents(1, 1, 1), commit=1)
    from consensus import ConfState, Snapshot, SnapshotMeta
    snap = Snapshot(SnapshotMeta(1, 1, ConfState.of([1, 2])), b"s")
    u.step(T.SNAPSHOT, 1, term=1, snapshot=snap, snapshot_done=True)
    assert u.status().last_index == 3 and u.node.conf_state().voters == (1, 2, 3)


def test_chunked_snapshot_install_is_atomic_at_the_last_chunk():
    from consensus import ConfState, Snapshot, SnapshotMeta
    u = unit(2, term=1, log=ents(1))
    meta = SnapshotMeta(20, 1, ConfState.of([1, 2, 3]))
    out = u.step(T.SNAPSHOT, 1, term=1, snapshot=Snapshot(meta, b"abc"), snapshot_offset=0)
    (r,) = of(out, T.SNAPSHOT_RESP)
    assert r.snapshot_offset == 3 and u.status().commit == 0 and u.status().last_index == 1
    # An out-of-order chunk is refused and says where we are.
    out = u.step(T.SNAPSHOT, 1, term=1, snapshot=Snapshot(meta, b"zzz"), snapshot_offset=9)
    (r,) = of(out, T.SNAPSHOT_RESP)
    assert r.reject and r.snapshot_offset == 3
    u.node.step(Message(T.SNAPSHOT, 2, 1, term=1, snapshot=Snapshot(meta, b"def"),
                        snapshot_offset=3, snapshot_done=True))
    rd = u.node.ready()
    assert rd.snapshot is not None and rd.snapshot.data == b"abcdef"
    u.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
    u.node.advance(rd)
    assert u.status().commit == 20


def test_leader_ignores_append_response_from_an_older_term():
    """etcd TestMsgAppRespWaitReset / stale responses: an ack from before our term is
    dropped by the term check."""
    u = unit(1, term=1, log=ents(1))
    make_leader(u)  # term 2
    u.step(T.APPEND_RESP, 2, term=1, index=2)
    assert u.status().progress[2].match == 0 and u.status().commit == 0


def test_check_quorum_6_2_repeated_transfer_requests_do_not_postpone_step_down():
    """thesis §6.2: a leader that hears no quorum for an election timeout steps down.
    etcd resets the CheckQuorum timer (electionElapsed) on every transfer request, so a
    partitioned leader whose application keeps retargeting a transfer (e.g. 'hand off
    to the healthiest peer', alternating) would never step down. The transfer has its
    own timer here."""
    u = unit(1, check_quorum=True)
    make_leader(u)
    _ack_all(u)
    u.node.propose(b"x"); u.drain()  # followers lag: each transfer must wait
    for k in range(12):
        if u.role is not StateRole.LEADER:
            break
        u.node.transfer_leader(2 if k % 2 else 3); u.drain()
        u.tick(5)
    assert u.role is not StateRole.LEADER


def test_single_voter_with_prevote_becomes_leader_at_once():
    """etcd TestSingleNodePreCampaign."""
    u = unit(1, peers=(1,), pre_vote=True)
    u.node.campaign(); u.drain()
    assert u.role is StateRole.LEADER and u.term == 1


def test_restore_voter_to_learner_stops_it_campaigning():
    """etcd TestRestoreVoterToLearner / TestLearnerReceiveSnapshot."""
    u = unit(3, term=1, log=ents(1))
    snap = Snapshot(SnapshotMeta(5, 1, ConfState.of([1, 2], [3])), b"s")
    u.step(T.SNAPSHOT, 1, term=1, snapshot=snap, snapshot_done=True)
    assert u.node.conf_state().learners == (3,)
    out = u.tick(100)
    assert not of(out, T.VOTE) and u.role is StateRole.FOLLOWER


def test_restore_learner_promotion_lets_it_campaign():
    """etcd TestRestoreLearnerPromotion."""
    u = unit(3, peers=(1, 2), learners=(3,), term=1, log=ents(1))
    snap = Snapshot(SnapshotMeta(5, 1, ConfState.of([1, 2, 3])), b"s")
    u.step(T.SNAPSHOT, 1, term=1, snapshot=snap, snapshot_done=True)
    out = u.tick(40)
    assert of(out, T.VOTE)


def test_leader_does_not_stream_a_snapshot_to_an_inactive_follower():
    """etcd TestIgnoreProvidingSnap: a follower not heard from since the last
    CheckQuorum round gets no snapshot until it answers."""
    u = unit(1, peers=(1, 2, 3), check_quorum=True)
    make_leader(u)
    u.step(T.APPEND_RESP, 2, term=1, index=1)
    u.node.propose(b"a"); u.drain()
    u.step(T.APPEND_RESP, 2, term=1, index=2)
    u.storage.create_snapshot(2, u.node.conf_state_at(2), b"app")
    u.storage.compact(2)
    for _ in range(10):  # one CheckQuorum round: 2 answers, 3 stays silent
        u.step(T.HEARTBEAT_RESP, 2, term=1)
        u.tick(1)
    assert u.role is StateRole.LEADER and not u.status().progress[3].recent_active
    u.node.propose(b"b")
    assert not of(u.drain(), T.SNAPSHOT)
    out = u.step(T.HEARTBEAT_RESP, 3, term=1)
    assert of(out, T.SNAPSHOT, to=3)


def test_transfer_to_self_cancels_a_transfer_in_progress():
    """etcd stepLeader MsgTransferLeader: an earlier transfer is aborted before the
    'transfer to self' is ignored, so proposals are accepted again at once."""
    u = _replicating_leader()
    u.node.propose(b"x"); u.drain()  # followers lag: the transfer waits
    u.node.transfer_leader(2); u.drain()
    assert u.status().lead_transferee == 2
    u.node.transfer_leader(1)
    assert u.status().lead_transferee == 0
    u.node.propose(b"accepted")
