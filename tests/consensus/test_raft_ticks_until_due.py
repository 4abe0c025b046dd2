"""``ticks_until_due`` (Raft, RawNode, Driver): the ticks before the one it names only
count, so a timer may sleep through them and fire them together just before the next
input (the agent's node thread does, issue 12). Checked at every tick of seeded runs
with elections, partitions, crashes, proposals and link-score-driven transfers: a tick
predicted quiet never produces a Ready or changes role, term or leader; and an idle
follower's named tick is exactly its election timeout firing.
"""

from __future__ import annotations

import pytest

from consensus import Config, MemoryStorage
from consensus.driver import Driver, DriverConfig
from consensus.raft import IDLE_FOREVER_TICKS, ProposalDropped
from consensus.types import ConfState, StateRole

from _harness import Cluster, RecordingFSM


def _state(c: Cluster, i: int) -> tuple[StateRole, int, int, int, int]:
    st = c.node(i).status()
    return st.role, st.term, st.lead, st.lead_transferee, st.score_transfers


def _tick_checked(c: Cluster, stats: dict[str, int]) -> None:
    """One tick of every live node, checking each prediction; then deliver."""
    for i in c.live():
        c.process(i)  # as a driver does before it sleeps: nothing left to handle
        n = c.node(i)
        due = n.ticks_until_due()
        assert due >= 1
        before = _state(c, i)
        n.tick()
        if due > 1:
            stats["quiet"] += 1
            assert not n.has_ready(), f"node {i}: a tick predicted quiet ({due}) acted"
            assert _state(c, i) == before
        elif before[0] is StateRole.FOLLOWER and n.status().role is not StateRole.FOLLOWER:
            stats["campaigned on time"] += 1
        c.process(i)
    c.stabilize()


@pytest.mark.parametrize("seed", range(6))
def test_ticks_predicted_quiet_only_count(seed: int) -> None:
    c = Cluster(5, seed=seed, election_tick=10, heartbeat_tick=3, check_quorum=True,
                pre_vote=True, leadership_by_link_score=True, link_score_dwell_ticks=4,
                leader_transfer_interval_ticks=20, poor_link_election_delay_ticks=6)
    rng = c.rng
    stats = {"quiet": 0, "campaigned on time": 0}
    for step in range(1500):
        _tick_checked(c, stats)
        r = rng.random()
        live = c.live()
        if r < 0.05:
            c.node(rng.choice(live)).set_link_score(rng.random())
        elif r < 0.08 and (leader := c.leader()) is not None:
            try:
                c.propose(leader, b"x%d" % step)
            except ProposalDropped:
                pass  # a leadership transfer is under way (thesis §3.10)
        elif r < 0.09:
            c.isolate(rng.choice(live))
        elif r < 0.10:
            c.heal()
        elif r < 0.105 and len(live) > 3:
            c.crash(rng.choice(live))
        elif r < 0.115:
            c.restart_crashed()
    # The predictions were exercised: most ticks slept through, and followers' election
    # timeouts fired exactly at the tick named.
    assert stats["quiet"] > 1500 * 5 // 2
    assert stats["campaigned on time"] > 0
    c.check_state_machine_safety()


def test_an_idle_follower_names_its_election_timeout_and_a_leader_its_heartbeat() -> None:
    c = Cluster(3, seed=3, election_tick=10, heartbeat_tick=3, check_quorum=True, pre_vote=True)
    leader = c.elect()
    c.stabilize()
    follower = next(i for i in c.live() if i != leader)
    raft = c.node(follower)._raft
    assert c.node(follower).ticks_until_due() == raft.randomized_election_timeout - raft.election_elapsed
    lead = c.node(leader)._raft
    assert c.node(leader).ticks_until_due() == min(
        3 - lead.heartbeat_elapsed, 10 - lead.election_elapsed)


def test_a_learner_never_needs_a_tick() -> None:
    c = Cluster([1, 2, 3], seed=1, learners=[4], election_tick=10, heartbeat_tick=3)
    c.elect()
    c.stabilize()
    assert c.node(4).ticks_until_due() == IDLE_FOREVER_TICKS


class _NullTransport:
    def send(self, messages: object) -> None:
        pass


def test_driver_names_an_outstanding_reads_expiry() -> None:
    # A single voter leads at once; its read is released on the next Ready, so ask the
    # read and look before processing. Heartbeats far apart: the read's expiry is first.
    d = Driver(Config(id=1, election_tick=50, heartbeat_tick=40),
               MemoryStorage(ConfState.of([1])), RecordingFSM(), _NullTransport(),
               DriverConfig(read_timeout_ticks=7))
    d.raw.campaign()
    d.process()
    assert d.ticks_until_due() > 7
    d.read_index(b"r1")
    assert d.ticks_until_due() == 7
    for _ in range(3):
        d.tick()
    assert d.ticks_until_due() == 4
