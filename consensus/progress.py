"""What a leader knows about each follower's log (etcd-io/raft ``tracker/progress.go``).

A follower's progress is in one of three states:

* PROBE: the leader does not know where the follower's log matches; it sends one
  AppendEntries at a time and waits for the reply (or a heartbeat reply) before the
  next, backtracking ``next`` on each rejection (§5.3).
* REPLICATE: the logs match up to ``match``; the leader streams entries optimistically
  (``next`` advances on send), bounded by the in-flight window.
* SNAPSHOT: the follower needs entries the leader has compacted; the leader streams an
  InstallSnapshot in chunks (thesis §5.3) and sends no entries until it is installed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .inflights import Inflights
from .types import Snapshot

__all__ = ["ProgressState", "Progress", "ProgressStatus"]


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class ProgressStatus:
    """A read-only view of one follower's progress, for status() and tests."""

    match: int
    next: int
    state: ProgressState
    recent_active: bool
    is_learner: bool
    inflight: int
    snapshot_index: int
    snapshot_offset: int


class Progress:
    """One follower as seen from the leader. Mutated only by the leader's step code."""

    __slots__ = ("match", "next", "state", "pending_snapshot", "snapshot_offset",
                 "snapshot_stalled", "sent_commit", "recent_active", "probe_sent", "inflights",
                 "is_learner")

    def __init__(self, next_index: int, max_inflight: int, max_inflight_bytes: int,
                 is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        #: The snapshot being streamed in SNAPSHOT state (kept fixed for the transfer,
        #: even if storage takes a newer one meanwhile) and how many bytes are acked.
        self.pending_snapshot: Snapshot | None = None
        self.snapshot_offset = 0
        #: Heartbeat replies received since the snapshot transfer last progressed; a
        #: stalled transfer (a lost chunk or acknowledgement) is retransmitted.
        self.snapshot_stalled = 0
        #: Highest commit index told to the follower (AppendEntries or heartbeat): an
        #: empty AppendEntries is worth sending only to tell it a newer one.
        self.sent_commit = 0
        #: Heard from since the last CheckQuorum round (thesis §6.2).
        self.recent_active = False
        #: PROBE: an AppendEntries is outstanding; send no more until a reply.
        self.probe_sent = False
        self.inflights = Inflights(max_inflight, max_inflight_bytes)
        self.is_learner = is_learner

    # -- state transitions -----------------------------------------------------------

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = None
        self.snapshot_offset = 0
        self.snapshot_stalled = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT and self.pending_snapshot is not None:
            # After a snapshot, resume right after it (or after match if further on).
            pending = self.pending_snapshot.meta.index
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot: Snapshot) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot

    # -- events ----------------------------------------------------------------------

    def sent_entries(self, count: int, nbytes: int) -> None:
        """An AppendEntries with ``count`` entries (``nbytes``) was just sent."""
        if self.state is ProgressState.REPLICATE:
            if count > 0:
                self.next += count
                self.inflights.add(self.next - 1, nbytes)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def maybe_update(self, n: int) -> bool:
        """The follower acknowledged holding entries up to ``n``. Returns whether this
        was news (a stale or duplicated ack returns False)."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        self.next = max(self.next, n + 1)
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an AppendEntries whose previous index was ``rejected``;
        it hints its log may match up to ``match_hint``. Returns False for stale
        rejections (§5.3 fast backtracking, etcd MaybeDecrTo)."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # stale: we already know it matches past this
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # a rejection of a probe we no longer have outstanding
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Whether the leader must hold back AppendEntries to this follower."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def status(self) -> ProgressStatus:
        snap = self.pending_snapshot
        return ProgressStatus(
            match=self.match, next=self.next, state=self.state,
            recent_active=self.recent_active, is_learner=self.is_learner,
            inflight=self.inflights.count(),
            snapshot_index=snap.meta.index if snap is not None else 0,
            snapshot_offset=self.snapshot_offset,
        )

    def __repr__(self) -> str:
        return (f"Progress(match={self.match}, next={self.next}, state={self.state.value}, "
                f"inflight={self.inflights.count()})")
