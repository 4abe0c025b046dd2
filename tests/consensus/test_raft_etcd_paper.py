"""Ported from etcd-io/raft raft_paper_test.go: the Raft paper's rules (§5.1–§5.4),
one node at a time, with hand-made messages."""

from __future__ import annotations

import pytest

from consensus import Entry, MessageType as T, ProposalDropped, StateRole
from consensus.types import HardState

from _etcd_unit import ents, make_leader, of, unit


# -- §5.1 terms --------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["follower", "candidate", "leader"])
def test_5_1_any_role_adopts_a_higher_term_and_becomes_follower(role):
    u = unit(1, term=1)
    if role == "candidate":
        u.node.campaign(); u.drain()
    elif role == "leader":
        make_leader(u)
    u.step(T.APPEND, 2, term=5, index=0, log_term=0)
    assert u.role is StateRole.FOLLOWER and u.term == 5 and u.status().lead == 2


def test_5_1_stale_term_messages_are_ignored():
    u = unit(2, term=3, log=ents(1, 2, 2))
    out = u.step(T.APPEND, 1, term=2, index=3, log_term=2, entries=(Entry(2, 4),), commit=3)
    assert u.status().last_index == 3 and u.status().commit == 0
    # With check_quorum off and pre_vote off there is no reply at all (etcd).
    assert out == []


def test_5_2_node_starts_as_follower():
    u = unit(1)
    assert u.role is StateRole.FOLLOWER and u.term == 0


def test_5_2_leader_broadcasts_heartbeat_every_heartbeat_tick():
    u = unit(1)
    make_leader(u)
    out = u.tick(1)
    hb = of(out, T.HEARTBEAT)
    assert sorted(m.to for m in hb) == [2, 3]
    assert all(m.term == u.term for m in hb)


@pytest.mark.parametrize("start", ["follower", "candidate"])
def test_5_2_election_timeout_starts_an_election_voting_for_self(start):
    u = unit(1, term=1)
    if start == "candidate":
        u.node.campaign(); u.drain()
    t0 = u.term
    out = u.tick(20)
    assert u.role is StateRole.CANDIDATE and u.term >= t0 + 1
    assert u.status().vote == 1
    votes = of(out, T.VOTE)
    assert {m.to for m in votes} == {2, 3}


@pytest.mark.parametrize("size,votes,role", [
    (1, {}, StateRole.LEADER),
    (3, {2: True, 3: True}, StateRole.LEADER),
    (3, {2: True}, StateRole.LEADER),
    (5, {2: True, 3: True, 4: True, 5: True}, StateRole.LEADER),
    (5, {2: True, 3: True}, StateRole.LEADER),
    (3, {2: False, 3: False}, StateRole.FOLLOWER),
    (5, {2: False, 3: False, 4: False}, StateRole.FOLLOWER),
    (3, {}, StateRole.CANDIDATE),
    (5, {2: True}, StateRole.CANDIDATE),
    (5, {2: False, 3: False}, StateRole.CANDIDATE),
])
def test_5_2_leader_election_in_one_round(size, votes, role):
    u = unit(1, peers=range(1, size + 1))
    u.node.campaign(); u.drain()
    for frm, granted in votes.items():
        u.step(T.VOTE_RESP, frm, term=1, reject=not granted)
    assert u.role is role
    assert u.term == 1


@pytest.mark.parametrize("vote,frm,reject", [
    (0, 2, False), (0, 3, False), (2, 2, False), (3, 3, False), (2, 3, True), (3, 2, True),
])
def test_5_2_follower_grants_at_most_one_vote_per_term(vote, frm, reject):
    u = unit(1, term=1, vote=vote)
    out = u.step(T.VOTE, frm, term=1, index=0, log_term=0)
    (resp,) = of(out, T.VOTE_RESP)
    assert resp.reject is reject and resp.term == 1
    assert u.storage.hard_state().vote == (vote or frm)


def test_5_2_a_vote_granted_is_durable_before_the_response_leaves():
    u = unit(1, term=1)
    u.node.step(__import__("consensus").Message(T.VOTE, to=1, frm=2, term=2))
    rd = u.node.ready()
    assert of(rd.messages, T.VOTE_RESP) and rd.hard_state == HardState(2, 2, 0) and rd.must_sync
    u.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
    u.node.advance(rd)


@pytest.mark.parametrize("kind", [T.APPEND, T.HEARTBEAT])
def test_5_2_candidate_falls_back_on_append_from_a_leader_of_its_term(kind):
    u = unit(1, term=1)
    u.node.campaign(); u.drain()
    assert u.role is StateRole.CANDIDATE and u.term == 2
    if kind is T.APPEND:
        u.step(T.APPEND, 2, term=2, index=0, log_term=0)
    else:
        u.step(T.HEARTBEAT, 2, term=2)
    assert u.role is StateRole.FOLLOWER and u.term == 2 and u.status().lead == 2


def test_5_2_election_timeouts_are_randomized_across_nodes():
    seen = set()
    for seed in range(40):
        u = unit(1, seed=seed)
        for k in range(1, 30):
            u.tick()
            if u.role is StateRole.CANDIDATE:
                seen.add(k)
                break
    assert min(seen) >= 10 and max(seen) < 20 and len(seen) > 3


# -- §5.3 log replication -----------------------------------------------------------------

def test_5_3_leader_replicates_a_proposal_to_every_follower():
    u = unit(1)
    make_leader(u)
    # the no-op at index 1 is in flight; ack it so both followers are in replicate state
    for f in (2, 3):
        u.step(T.APPEND_RESP, f, term=1, index=1)
    u.node.propose(b"some data")
    out = of(u.drain(), T.APPEND)
    assert {m.to for m in out} == {2, 3}
    for m in out:
        assert (m.index, m.log_term) == (1, 1) and m.commit == 1
        assert [(e.term, e.index, e.data) for e in m.entries] == [(1, 2, b"some data")]


def test_5_3_leader_commits_once_a_majority_acknowledges():
    u = unit(1)
    make_leader(u)
    u.node.propose(b"x")
    u.drain()
    assert u.status().commit == 0
    u.step(T.APPEND_RESP, 2, term=1, index=2)
    assert u.status().commit == 2
    assert [e.data for e in u.applied] == [b"", b"x"]


@pytest.mark.parametrize("size,acks,committed", [
    (1, set(), True), (3, set(), False), (3, {2}, True), (3, {2, 3}, True),
    (5, set(), False), (5, {2}, False), (5, {2, 3}, True), (5, {2, 3, 4, 5}, True),
])
def test_5_3_leader_acknowledges_commit_only_with_a_majority(size, acks, committed):
    u = unit(1, peers=range(1, size + 1))
    make_leader(u)
    u.node.propose(b"x"); u.drain()
    for a in acks:
        u.step(T.APPEND_RESP, a, term=1, index=2)
    assert (u.status().commit == 2) is committed


def test_5_3_leader_commit_also_commits_preceding_entries_of_its_term_and_earlier():
    prior = ents(2, 2)
    u = unit(1, log=prior, term=2)
    make_leader(u)
    assert u.term == 3
    u.node.propose(b"x"); u.drain()
    u.step(T.APPEND_RESP, 2, term=3, index=4)
    assert u.status().commit == 4
    assert [e.index for e in u.applied] == [1, 2, 3, 4]


def test_5_3_follower_commit_is_min_of_leader_commit_and_last_new_entry():
    # Figure 2 AppendEntries rule 5: commitIndex = min(leaderCommit, index of last new entry)
    u = unit(2, term=1, log=ents(1, 1, 1))  # entries 1..3 of term 1, possibly stale after 1
    u.step(T.APPEND, 1, term=1, index=1, log_term=1, entries=(Entry(1, 2),), commit=3)
    # The leader vouched only for entries up to 2; entry 3 may not match its log.
    assert u.status().commit == 2
    assert [e.index for e in u.applied] == [1, 2]


@pytest.mark.parametrize("index,log_term,reject,hint", [
    (0, 0, False, None), (2, 2, False, None),  # match
    (2, 1, True, 1), (3, 3, True, 2),  # term mismatch (hint skips term 2) / missing entry
])
def test_5_3_follower_checks_append_entries_consistency(index, log_term, reject, hint):
    u = unit(2, term=2, log=ents(1, 2))
    out = u.step(T.APPEND, 1, term=3, index=index, log_term=log_term, commit=0)
    (r,) = of(out, T.APPEND_RESP)
    assert r.reject is reject
    if reject:
        assert r.reject_hint == hint and r.index == index


@pytest.mark.parametrize("index,log_term,new,want_terms", [
    (2, 2, [(3, 3)], [1, 2, 3]),
    (1, 1, [(3, 2), (4, 3)], [1, 3, 4]),
    (0, 0, [(1, 1)], [1, 2]),
    (0, 0, [(3, 1)], [3]),
])
def test_5_3_follower_truncates_conflicting_entries_and_appends(index, log_term, new, want_terms):
    u = unit(2, term=2, log=ents(1, 2))
    es = tuple(Entry(n[0], index + 1 + k) for k, n in enumerate(new))
    u.step(T.APPEND, 1, term=4, index=index, log_term=log_term, entries=es)
    assert u.log_terms() == want_terms


def test_5_3_follower_never_truncates_a_committed_entry_on_a_stale_append():
    # etcd handleAppendEntries: an append whose prev index is below our commit answers
    # with our commit index instead of touching the log.
    u = unit(2, term=2, log=ents(1, 2, 2), commit=3)
    out = u.step(T.APPEND, 1, term=2, index=1, log_term=1, entries=(Entry(2, 2),), commit=1)
    (r,) = of(out, T.APPEND_RESP)
    assert not r.reject and r.index == 3
    assert u.log_terms() == [1, 2, 2]


# Figure 7: the leader (term 8) brings each follower's log to match its own.
_LEADER_LOG = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
_FIG7 = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(_FIG7))
def test_5_3_figure_7_leader_brings_every_follower_log_into_line(case):
    from _harness import Cluster
    from consensus import ConfState, MemoryStorage

    lead_log = ents(*_LEADER_LOG)
    fol_log = ents(*_FIG7[case])
    ld = unit(1, log=lead_log, term=8, commit=len(lead_log) - 2 if case != "b" else 4)
    fl = unit(2, log=fol_log, term=8)
    # node 3 votes for the leader but otherwise stays silent (etcd uses a blackhole)
    ld.node.campaign()
    inbox = ld.drain()
    ld.step(T.VOTE_RESP, 3, term=ld.term)
    ld.drain()
    assert ld.role is StateRole.LEADER
    inbox += ld.tick(1)
    for _ in range(200):
        to_f = [m for m in inbox if m.to == 2]
        if not to_f:
            break
        back = []
        for m in to_f:
            fl.node.step(m)
            back.extend(fl.drain())
        inbox = []
        for m in back:
            if m.type is T.VOTE_RESP or m.term <= ld.term:
                ld.node.step(m)
                inbox.extend(ld.drain())
    assert fl.log_terms()[: len(ld.log_terms())] == ld.log_terms()
    assert len(fl.log_terms()) == len(ld.log_terms())


# -- §5.4 safety -------------------------------------------------------------------------

@pytest.mark.parametrize("log_term,index,reject", [
    # voter's log: [1, 2] (last term 2, last index 2)
    (0, 0, True), (1, 1, True), (1, 5, True), (2, 1, True),
    (2, 2, False), (2, 3, False), (3, 0, False), (3, 1, False),
])
def test_5_4_1_voter_grants_only_to_an_at_least_as_up_to_date_log(log_term, index, reject):
    u = unit(1, term=2, log=ents(1, 2))
    out = u.step(T.VOTE, 2, term=3, index=index, log_term=log_term)
    (r,) = of(out, T.VOTE_RESP)
    assert r.reject is reject
    assert u.term == 3  # the term is adopted either way (§5.1)
    assert u.storage.hard_state().vote == (0 if reject else 2)


@pytest.mark.parametrize("ack_index,committed", [(1, 0), (2, 0), (3, 3)])
def test_5_4_2_leader_only_commits_entries_of_its_current_term_by_counting(ack_index, committed):
    u = unit(1, term=2, log=ents(1, 2))
    make_leader(u)  # term 3, no-op at 3
    u.step(T.APPEND_RESP, 2, term=3, index=ack_index)
    assert u.status().commit == committed


def test_5_4_2_a_replica_of_an_old_term_entry_never_commits_it_without_a_current_term_entry():
    u = unit(1, term=2, log=ents(1, 2))
    make_leader(u)
    # Both followers hold the old entries only.
    u.step(T.APPEND_RESP, 2, term=3, index=2)
    u.step(T.APPEND_RESP, 3, term=3, index=2)
    assert u.status().commit == 0
