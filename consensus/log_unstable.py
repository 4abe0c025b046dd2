"""The part of the log not yet on stable storage (etcd-io/raft ``log_unstable.go``):
entries appended since the last Ready, and a snapshot received from the leader that
the driver has not persisted yet. ``offset`` is the index of ``entries[0]``."""

from __future__ import annotations

from .types import Entry, Snapshot

__all__ = ["Unstable"]


class Unstable:
    __slots__ = ("snapshot", "entries", "offset")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        """The first log index, if a pending snapshot determines it."""
        if self.snapshot is not None:
            return self.snapshot.meta.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.meta.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.meta.index == i:
                return self.snapshot.meta.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].term

    def stable_to(self, i: int, t: int) -> None:
        """Entries up to ``i`` (of term ``t``) are now durable. Ignored if the entry at
        ``i`` was since replaced (its term differs) or is part of a pending snapshot."""
        gt = self.maybe_term(i)
        if gt is None or i < self.offset:
            return
        if gt == t:
            del self.entries[: i + 1 - self.offset]
            self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.meta.index == i:
            self.snapshot = None

    def restore(self, snap: Snapshot) -> None:
        self.offset = snap.meta.index + 1
        self.entries = []
        self.snapshot = snap

    def truncate_and_append(self, ents: list[Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)  # the common case: directly after
        elif after <= self.offset:
            # Replace everything unstable; the caller has checked the prefix matches.
            self.offset = after
            self.entries = list(ents)
        else:
            # Keep [offset, after), then append.
            self.entries = self.entries[: after - self.offset] + list(ents)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        if lo > hi or lo < self.offset or hi > self.offset + len(self.entries):
            raise IndexError(f"unstable slice [{lo}, {hi}) out of bounds "
                             f"[{self.offset}, {self.offset + len(self.entries)})")
        return self.entries[lo - self.offset: hi - self.offset]
