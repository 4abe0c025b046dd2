"""The Raft log seen by the core (etcd-io/raft ``log.go``): stable storage below,
the unstable tail above, the commit and applied indexes on top.

Invariant: ``applied <= committed <= last_index()``; ``committed`` never decreases
(committed entries are never lost or changed, §5.4).
"""

from __future__ import annotations

from typing import Sequence

from .log_unstable import Unstable
from .storage import CompactedError, Storage, UnavailableError, entries_size_limited
from .types import Entry, Snapshot

__all__ = ["RaftLog", "LogError"]


class LogError(RuntimeError):
    """An operation would violate a log invariant: a bug in the caller or corrupt
    storage. The core stops rather than diverge."""


class RaftLog:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Everything before the storage snapshot is committed and applied (§7).
        self.committed = first - 1
        self.applied = first - 1

    def __repr__(self) -> str:
        return (f"RaftLog(committed={self.committed}, applied={self.applied}, "
                f"unstable.offset={self.unstable.offset}, unstable={len(self.unstable.entries)})")

    # -- indexes and terms ------------------------------------------------------------

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, i: int) -> int:
        """Term of entry ``i``; raises CompactedError / UnavailableError outside the
        range [first_index()-1, last_index()]."""
        dummy = self.first_index() - 1
        if i < dummy:
            raise CompactedError(f"index {i} compacted")
        if i > self.last_index():
            raise UnavailableError(f"index {i} beyond last index {self.last_index()}")
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        return self.storage.term(i)

    def zero_term_on_error(self, i: int) -> int:
        try:
            return self.term(i)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, t: int) -> bool:
        try:
            return self.term(i) == t
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """§5.4.1: a candidate's log is at least as up-to-date as ours if its last term
        is greater, or equal with an index at least as large."""
        lt = self.last_term()
        return term > lt or (term == lt and last_index >= self.last_index())

    # -- appending ------------------------------------------------------------------

    def maybe_append(self, index: int, log_term: int, committed: int,
                     ents: Sequence[Entry]) -> tuple[int, list[Entry]] | None:
        """AppendEntries receiver rules (Figure 2, §5.3): if our entry at ``index``
        has ``log_term``, drop conflicting entries, append the new ones, advance the
        commit index. Return the last index the leader's message vouches for and the
        entries actually written (the caller tracks configuration entries in them);
        None when the consistency check fails."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        appended: list[Entry] = []
        if ci != 0:
            if ci <= self.committed:
                raise LogError(f"entry {ci} conflicts with committed entry (committed "
                               f"{self.committed}): a safety violation")
            appended = list(ents[ci - (index + 1):])
            self.append(appended)
        # Only entries the leader vouched for may be committed by its commit index.
        self.commit_to(min(committed, last_new))
        return last_new, appended

    def append(self, ents: Sequence[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise LogError(f"append after {after} would overwrite committed {self.committed}")
        self.unstable.truncate_and_append(list(ents))
        return self.last_index()

    def find_conflict(self, ents: Sequence[Entry]) -> int:
        """Index of the first entry in ``ents`` that we lack or that conflicts (same
        index, different term); 0 if we hold them all."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= ``index`` whose term is <= ``term``, and that term.

        A follower that rejects AppendEntries(prev=(index, term)) returns this as a
        hint: every entry after it certainly conflicts with the leader, so the leader
        can skip a whole term per round trip (§5.3 "optimization", etcd)."""
        while index > 0:
            try:
                our = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if our <= term:
                return index, our
            index -= 1
        return 0, 0

    # -- reading -----------------------------------------------------------------------

    def entries(self, lo: int, max_bytes: int | None = None) -> list[Entry]:
        if lo > self.last_index():
            return []
        return self.slice(lo, self.last_index() + 1, max_bytes)

    def all_entries(self) -> list[Entry]:
        return self.entries(self.first_index())

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi) limited to ``max_bytes`` (at least one). Raises
        CompactedError if ``lo`` is compacted."""
        if lo > hi:
            raise LogError(f"invalid slice [{lo}, {hi})")
        fi = self.first_index()
        if lo < fi:
            raise CompactedError(f"entries from {lo} compacted (first index {fi})")
        if hi > self.last_index() + 1:
            raise LogError(f"slice [{lo}, {hi}) beyond last index {self.last_index()}")
        if lo == hi:
            return []
        out: list[Entry] = []
        uoff = self.unstable.offset
        if lo < uoff:
            out = self.storage.entries(lo, min(hi, uoff), max_bytes)
            if len(out) < min(hi, uoff) - lo:
                return out  # hit the byte limit inside stable storage
        if hi > uoff:
            out.extend(self.unstable.slice(max(lo, uoff), hi))
        return entries_size_limited(out, max_bytes)

    def unstable_entries(self) -> list[Entry]:
        return list(self.unstable.entries)

    def has_pending_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def next_committed_entries(self, max_bytes: int | None = None) -> list[Entry]:
        """Committed entries not yet applied (none while a snapshot waits to be
        installed: the state machine must be restored first)."""
        if self.has_pending_snapshot():
            return []
        lo = max(self.applied + 1, self.first_index())
        if self.committed + 1 > lo:
            return self.slice(lo, self.committed + 1, max_bytes)
        return []

    def has_next_committed_entries(self) -> bool:
        if self.has_pending_snapshot():
            return False
        return self.committed + 1 > max(self.applied + 1, self.first_index())

    # -- commit / apply / stable -------------------------------------------------------

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to ``max_index`` only if that entry is from ``term`` (§5.4.2: a
        leader commits only entries of its current term by counting replicas)."""
        if max_index > self.committed and self.zero_term_on_error(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def commit_to(self, to: int) -> None:
        if to > self.committed:
            if to > self.last_index():
                raise LogError(f"commit index {to} beyond last index {self.last_index()}")
            self.committed = to

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if i > self.committed or i < self.applied:
            raise LogError(f"applied {i} out of range [{self.applied}, {self.committed}]")
        self.applied = i

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def restore(self, snap: Snapshot) -> None:
        """Replace the log with a snapshot (§7 InstallSnapshot receiver rule 6-8)."""
        self.committed = snap.meta.index
        self.unstable.restore(snap)
