"""Configuration of one Raft node (etcd-io/raft ``Config``), validated on construction."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .types import MAX_INDEX, MAX_NODE_ID

__all__ = ["Config", "ConfigError"]


class ConfigError(ValueError):
    """A configuration value is out of range."""


@dataclass(frozen=True)
class Config:
    """How one node behaves. Times are in ticks: the driver calls ``tick()`` at a fixed
    period (e.g. every 10 ms), so ``election_tick=10`` is a 100-200 ms election timeout.

    ``rng`` is the node's only source of randomness (election timeout jitter, §5.2):
    pass a seeded ``random.Random`` for reproducible runs. When ``rng`` is not given, one
    is built from ``seed`` *and* ``id``, so nodes sharing a seed (the default 0) still draw
    different election timeouts: identical timeouts would make every election a split vote.
    """

    id: int
    #: Election timeout base: followers wait a random [election_tick, 2*election_tick)
    #: ticks without hearing from a leader before campaigning (§5.2).
    election_tick: int = 10
    #: A leader sends heartbeats every heartbeat_tick ticks (< election_tick, §5.2).
    heartbeat_tick: int = 1
    #: Run a PreVote round before a real election (thesis §9.6).
    pre_vote: bool = True
    #: A leader steps down if a quorum has not been heard from for an election
    #: timeout; followers ignore vote requests while they hear a leader (thesis §6.2).
    check_quorum: bool = True
    #: Byte budget of the entries in one AppendEntries (at least one entry is sent).
    max_size_per_msg: int = 1024 * 1024
    #: At most this many AppendEntries in flight to one follower in replicate state.
    max_inflight_msgs: int = 256
    #: At most this many entry bytes in flight to one follower (0 = no byte limit).
    max_inflight_bytes: int = 0
    #: A leader refuses proposals while the uncommitted tail exceeds this (0 = no limit).
    max_uncommitted_bytes: int = 0
    #: Byte budget of the committed entries handed out in one Ready (0 = no limit; at
    #: least one entry is always given). Bounds memory when a restarted node replays a
    #: long committed log, which matters on a small companion computer.
    max_committed_bytes_per_ready: int = 0
    #: InstallSnapshot chunk size in bytes (thesis §5.3 "chunks").
    snapshot_chunk_bytes: int = 256 * 1024
    #: Index already applied to the state machine before this start (the snapshot
    #: index when the application restored from it); 0 = the storage snapshot's index.
    applied: int = 0
    seed: int = 0
    rng: random.Random | None = field(default=None, compare=False)
    #: Signal-aware leadership (consensus/leadership.py, docs/consensus.md): the leader
    #: hands over to a caught-up voter whose link score (RawNode.set_link_score) beats its
    #: own by ``link_score_margin`` for ``link_score_dwell_ticks`` leader ticks, at most
    #: once per ``leader_transfer_interval_ticks``; and a node with a poor score waits up
    #: to ``poor_link_election_delay_ticks`` longer before campaigning. Off by default.
    leadership_by_link_score: bool = False
    #: How much better (in score units, [0, 1]) a follower's link must be.
    link_score_margin: float = 0.1
    #: How long it must stay better, in leader ticks.
    link_score_dwell_ticks: int = 50
    #: At most one score-driven transfer per this many ticks of one leader (a new leader
    #: waits this long before its first): bounds transfers per hour whatever the noise.
    leader_transfer_interval_ticks: int = 500
    #: Extra election delay for a score of 0, scaled down linearly to none for 1.
    poor_link_election_delay_ticks: int = 10

    def __post_init__(self) -> None:
        if type(self.id) is not int or not 1 <= self.id <= MAX_NODE_ID:
            raise ConfigError(f"id must be a node id in [1, {MAX_NODE_ID}], got {self.id!r}")
        if self.heartbeat_tick < 1:
            raise ConfigError("heartbeat_tick must be at least 1")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError("election_tick must be greater than heartbeat_tick (§5.2)")
        if self.max_size_per_msg < 1:
            raise ConfigError("max_size_per_msg must be positive")
        if self.max_inflight_msgs < 1:
            raise ConfigError("max_inflight_msgs must be positive")
        if (self.max_inflight_bytes < 0 or self.max_uncommitted_bytes < 0
                or self.max_committed_bytes_per_ready < 0):
            raise ConfigError("byte limits must be non-negative (0 means no limit)")
        if self.snapshot_chunk_bytes < 1:
            raise ConfigError("snapshot_chunk_bytes must be positive")
        if not (isinstance(self.link_score_margin, (int, float)) and 0 < self.link_score_margin <= 1):
            raise ConfigError(f"link_score_margin must be in (0, 1], got {self.link_score_margin!r}")
        if self.link_score_dwell_ticks < 1:
            raise ConfigError("link_score_dwell_ticks must be at least 1")
        if self.leadership_by_link_score and self.leader_transfer_interval_ticks < 2 * self.election_tick:
            # A transfer is abandoned after an election timeout (thesis §3.10); the next
            # one may start only after that, with room for the new leader to settle.
            raise ConfigError("leader_transfer_interval_ticks must be at least 2 * election_tick")
        if self.poor_link_election_delay_ticks < 0 or (
                self.leadership_by_link_score
                and self.poor_link_election_delay_ticks > 10 * self.election_tick):
            raise ConfigError("poor_link_election_delay_ticks must be in [0, 10 * election_tick]")
        if type(self.applied) is not int or not 0 <= self.applied <= MAX_INDEX:
            raise ConfigError(f"applied must be a log index in [0, {MAX_INDEX}], got {self.applied!r}")

    def make_rng(self) -> random.Random:
        if self.rng is not None:
            return self.rng
        return random.Random(self.seed * (MAX_NODE_ID + 1) + self.id)
