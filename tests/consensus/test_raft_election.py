"""Leader election (Raft §5.2, §5.4.1; thesis §6.2 CheckQuorum, §9.6 PreVote)."""

from __future__ import annotations

import random


from consensus import Config, ConfState, MemoryStorage, Message, MessageType, RawNode, StateRole
from consensus.types import Entry, HardState

from _harness import Cluster


def test_election_5_2_initial_election_and_term_stability():
    c = Cluster(3, seed=1)
    lead = c.elect()
    term = c.term(lead)
    assert term >= 1
    # With a healthy network the leader keeps heartbeating: no new election, no new term.
    c.tick(200)
    assert c.leader() == lead
    assert all(c.term(i) == term for i in (1, 2, 3))
    assert all(c.node(i).status().lead == lead for i in (1, 2, 3))


def test_election_5_2_randomized_timeout_is_in_election_tick_to_twice():
    seen = set()
    for seed in range(60):
        s = MemoryStorage(ConfState.of([1, 2, 3]))
        n = RawNode(Config(id=1, election_tick=10, rng=random.Random(seed)), s)
        ticks = 0
        while n.status().role is StateRole.FOLLOWER:
            n.tick()
            ticks += 1
            assert ticks < 20, "timeout must be below 2*election_tick"
        seen.add(ticks)
    assert min(seen) >= 10
    assert len(seen) > 5  # actually randomized


def test_election_5_2_reelection_after_leader_loss():
    c = Cluster(3, seed=2)
    old = c.elect()
    old_term = c.term(old)
    c.crash(old)
    new = c.elect()
    assert new != old and c.term(new) > old_term
    # The old leader rejoins as a follower and does not disturb the new leader.
    c.restart(old)
    c.tick(50)
    assert c.leader() == new
    assert c.node(old).status().role is StateRole.FOLLOWER
    assert c.node(old).status().lead == new


def test_election_5_2_no_leader_without_quorum():
    c = Cluster(3, seed=3)
    lead = c.elect()
    others = [i for i in (1, 2, 3) if i != lead]
    c.crash(others[0])
    c.crash(lead)
    c.tick(300)
    assert c.leaders() == []
    # Quorum restored: a leader again.
    c.restart(lead)
    c.elect()


def test_election_5_2_many_elections_in_a_seven_node_cluster():
    c = Cluster(7, seed=4)
    rng = random.Random(4)
    c.elect()
    down: list[int] = []
    for _ in range(15):
        # Crash up to three nodes (a quorum of four always remains), including the leader.
        if len(down) == 3:
            c.restart(down.pop(0))
        lead = c.leader()
        assert lead is not None
        c.crash(lead)
        down.append(lead)
        if len(down) < 3 and rng.random() < 0.5:
            victim = rng.choice([i for i in c.live() if i not in down])
            c.crash(victim)
            down.append(victim)
        c.elect(max_ticks=1000)
    # Election Safety held throughout (the harness asserts it on every Ready).
    assert len(c.leader_of_term) >= 16


def test_election_5_4_1_voter_denies_candidate_with_less_up_to_date_log():
    # Node 1 holds an entry of term 2; a candidate whose last entry is older loses its vote.
    s = MemoryStorage(ConfState.of([1, 2, 3]))
    s.apply_ready(HardState(2, 0, 0), [Entry(1, 1), Entry(2, 2)], None)
    n = RawNode(Config(id=1, rng=random.Random(0)), s)
    n.step(Message(MessageType.VOTE, to=1, frm=2, term=3, index=5, log_term=1))
    rd = n.ready()
    (resp,) = rd.messages
    assert resp.type is MessageType.VOTE_RESP and resp.reject
    n.advance(rd)
    # Same last term with a longer or equal log: granted.
    n.step(Message(MessageType.VOTE, to=1, frm=3, term=3, index=2, log_term=2))
    rd = n.ready()
    (resp,) = rd.messages
    assert not resp.reject and rd.hard_state is not None and rd.hard_state.vote == 3


def test_election_5_2_one_vote_per_term_survives_restart():
    s = MemoryStorage(ConfState.of([1, 2, 3]))
    n = RawNode(Config(id=1, rng=random.Random(0)), s)
    n.step(Message(MessageType.VOTE, to=1, frm=2, term=5))
    rd = n.ready()
    s.apply_ready(rd.hard_state, rd.entries, rd.snapshot)  # durable before the reply
    assert not rd.messages[0].reject
    # Crash and restart: the vote for 2 in term 5 is remembered; 3 is refused.
    n = RawNode(Config(id=1, rng=random.Random(0)), s)
    n.step(Message(MessageType.VOTE, to=1, frm=3, term=5))
    assert n.ready().messages[0].reject


def test_election_costs_o_n_messages():
    for size in (3, 5, 7, 9):
        c = Cluster(size, seed=size, pre_vote=True)
        c.sent.clear()
        c.sent_total = 0
        c.node(1).campaign()
        c.stabilize()
        assert c.leader() == 1
        # Per follower: PreVote, Vote, the no-op AppendEntries, the AppendEntries telling
        # the new commit index, and a reply to each: 8 messages, so O(N) in total.
        assert c.sent_total <= 8 * (size - 1), (size, dict(c.sent))


def test_idle_leader_message_rate_is_bounded():
    n = 5
    c = Cluster(n, seed=5, heartbeat_tick=2)
    c.elect()
    c.tick(20)
    c.sent_total = 0
    ticks = 100
    c.tick(ticks)
    # One heartbeat and one reply per follower per heartbeat interval, nothing else.
    assert c.sent_total <= (ticks // 2) * 2 * (n - 1)
    assert c.sent_total >= (ticks // 2) * (n - 1)


def test_prevote_9_6_prevents_term_inflation_by_a_rejoining_node():
    c = Cluster(3, seed=6, pre_vote=True)
    lead = c.elect()
    term = c.term(lead)
    lonely = next(i for i in (1, 2, 3) if i != lead)
    c.isolate(lonely)
    c.tick(200)  # many election timeouts alone
    assert c.term(lonely) == term  # pre-votes fail, the term is untouched
    c.heal()
    c.tick(30)
    assert c.leader() == lead and c.term(lead) == term


def test_without_prevote_a_rejoining_node_inflates_terms_and_disrupts():
    c = Cluster(3, seed=6, pre_vote=False, check_quorum=False)
    lead = c.elect()
    term = c.term(lead)
    lonely = next(i for i in (1, 2, 3) if i != lead)
    c.isolate(lonely)
    c.tick(200)
    assert c.term(lonely) > term + 5
    c.heal()
    c.tick(60)
    assert c.term(c.elect()) > term  # the leader was deposed by the higher term


def test_check_quorum_6_2_isolated_leader_steps_down():
    c = Cluster(5, seed=7, check_quorum=True)
    lead = c.elect()
    c.isolate(lead)
    # Within two election timeouts the leader notices it hears no quorum.
    c.tick(2 * 10 + 1)
    assert c.node(lead).status().role is StateRole.FOLLOWER
    new = c.elect()
    assert new != lead


def test_check_quorum_lease_followers_ignore_disruptive_vote_requests():
    c = Cluster(3, seed=8, check_quorum=True, pre_vote=False)
    lead = c.elect()
    term = c.term(lead)
    follower = next(i for i in (1, 2, 3) if i != lead)
    # A vote request from a higher term while the follower hears its leader (thesis
    # §4.2.3): ignored — no reply, no new term, no vote.
    c.node(follower).step(Message(MessageType.VOTE, to=follower, frm=next(i for i in (1, 2, 3) if i not in (lead, follower)),
                                  term=term + 5, index=100, log_term=term))
    c.process(follower)
    assert c.term(follower) == term
    assert not any(m.type is MessageType.VOTE_RESP for m in c.queue)


def test_prevote_with_check_quorum_a_campaigning_follower_cannot_disrupt():
    c = Cluster(3, seed=8, check_quorum=True, pre_vote=True)
    lead = c.elect()
    term = c.term(lead)
    other = next(i for i in (1, 2, 3) if i != lead)
    c.node(other).campaign()
    c.stabilize()
    c.tick(30)
    assert c.leader() == lead and c.term(lead) == term
