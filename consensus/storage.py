"""Stable storage for a Raft node: the interface the core reads through, the write
side the driver calls once per Ready, and :class:`MemoryStorage`, its in-memory twin.

Layout (etcd-io/raft ``storage.go``): storage holds a snapshot (possibly the empty
bootstrap snapshot at index 0, which carries the initial configuration), the log
entries after it, and the hard state. ``first_index()`` is ``snapshot.index + 1``;
``term(snapshot.index)`` is still answerable (the "dummy" entry), which is what the
AppendEntries consistency check (§5.3) needs for the first entry after a compaction.

Durability contract (what an implementation promises; SQLiteStorage is the real one):

* :meth:`Storage.apply_ready` is ONE atomic, durable write: when it returns, the
  snapshot (if any), then the entries (replacing any conflicting suffix), then the
  hard state are all on stable storage, or, if it raises or the process dies, none of
  them are. Raft's safety rests on it: a vote or an acknowledged entry that is
  forgotten after a crash lets two leaders be elected in one term (§5.2) or a
  committed entry be lost (§5.4). The driver must call it before sending the
  messages of the same Ready, because those messages (votes, AppendEntries replies)
  promise the state being written.
* Reads (``entries``, ``term`` ...) see everything previously written.
* :meth:`create_snapshot` and :meth:`compact` are the driver's log compaction (§7):
  the application snapshot at an applied index becomes the storage snapshot, then
  entries up to it may be discarded. Each is atomic and durable.
"""

from __future__ import annotations

import abc
import threading
from typing import Sequence

from .types import MAX_INDEX, MAX_TERM, ConfState, Entry, HardState, Snapshot, SnapshotMeta

__all__ = [
    "StorageError",
    "CompactedError",
    "UnavailableError",
    "SnapshotOutOfDateError",
    "Storage",
    "MemoryStorage",
    "entries_size_limited",
]


class StorageError(Exception):
    """Storage cannot answer (or the stored data is inconsistent)."""


class CompactedError(StorageError):
    """The requested index is before the first retained entry (it was compacted)."""


class UnavailableError(StorageError):
    """The requested index is after the last stored entry."""


class SnapshotOutOfDateError(StorageError):
    """A snapshot older than the one already stored was offered."""


def entries_size_limited(entries: Sequence[Entry], max_bytes: int | None) -> list[Entry]:
    """The longest prefix of ``entries`` within ``max_bytes``, but never empty when
    ``entries`` is not (so a single large entry still makes progress, as in etcd)."""
    if max_bytes is None or not entries:
        return list(entries)
    out: list[Entry] = []
    size = 0
    for e in entries:
        size += e.size()
        if out and size > max_bytes:
            break
        out.append(e)
    return out


class Storage(abc.ABC):
    """What the Raft core needs from stable storage, plus the driver's write side.

    Read side (called by the core, never blocks on the network):

    * ``initial_state()`` – the persisted hard state and the configuration as of the
      stored snapshot (the core replays CONF_CHANGE entries after it).
    * ``entries(lo, hi, max_bytes)`` – entries ``[lo, hi)``; raises
      :class:`CompactedError` if ``lo <= snapshot index``, :class:`UnavailableError`
      if ``hi > last_index() + 1``.
    * ``term(i)`` – term of entry ``i`` for ``snapshot index <= i <= last_index()``.
    * ``first_index()``, ``last_index()``, ``snapshot()``.

    Write side (called by the driver, once per Ready, before sending its messages):
    ``apply_ready``, then ``create_snapshot`` / ``compact`` for log compaction.
    """

    # -- read side -------------------------------------------------------------------

    @abc.abstractmethod
    def initial_state(self) -> tuple[HardState, ConfState]: ...

    @abc.abstractmethod
    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]: ...

    @abc.abstractmethod
    def term(self, index: int) -> int: ...

    @abc.abstractmethod
    def first_index(self) -> int: ...

    @abc.abstractmethod
    def last_index(self) -> int: ...

    @abc.abstractmethod
    def snapshot(self) -> Snapshot: ...

    # -- write side ------------------------------------------------------------------

    @abc.abstractmethod
    def apply_ready(self, hard_state: HardState | None, entries: Sequence[Entry],
                    snapshot: Snapshot | None) -> None:
        """Durably and atomically: install ``snapshot`` (discarding the log it covers,
        keeping later entries only if they match its index and term), then append
        ``entries`` (first truncating stored entries at and after ``entries[0].index``),
        then set ``hard_state``. ``None``/empty parts are skipped. ``entries`` must be
        contiguous and must start at most at ``last_index() + 1``."""

    @abc.abstractmethod
    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the application's snapshot ``data`` taken at applied ``index`` (which
        must be stored and committed) with the configuration in force at ``index``.
        Raises :class:`SnapshotOutOfDateError` if ``index`` is older than the current
        snapshot. Does not discard entries: :meth:`compact` does."""

    @abc.abstractmethod
    def compact(self, index: int) -> None:
        """Discard entries up to and including ``index`` (which must be at or below the
        snapshot index, so they stay recoverable from the snapshot)."""


class MemoryStorage(Storage):
    """Storage in memory, for tests and the simulator.

    It models a disk that survives a process crash: keep the object, drop the
    :class:`~consensus.rawnode.RawNode`, build a new one over the same storage.
    Every write is all-or-nothing (validated before mutating anything).
    """

    def __init__(self, conf_state: ConfState | None = None) -> None:
        # _ents[0] is the dummy entry at the snapshot index, carrying its term.
        self._lock = threading.Lock()
        self._hard_state = HardState()
        self._snapshot = Snapshot(SnapshotMeta(0, 0, conf_state or ConfState()))
        self._ents: list[Entry] = [Entry(0, 0)]

    # -- read side -------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        with self._lock:
            return self._hard_state, self._snapshot.meta.conf_state

    def hard_state(self) -> HardState:
        with self._lock:
            return self._hard_state

    def first_index(self) -> int:
        with self._lock:
            return self._ents[0].index + 1

    def last_index(self) -> int:
        with self._lock:
            return self._ents[0].index + len(self._ents) - 1

    def term(self, index: int) -> int:
        with self._lock:
            offset = self._ents[0].index
            if index < offset:
                raise CompactedError(f"index {index} compacted (snapshot at {offset})")
            if index - offset >= len(self._ents):
                raise UnavailableError(f"index {index} beyond last index "
                                       f"{offset + len(self._ents) - 1}")
            return self._ents[index - offset].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        with self._lock:
            offset = self._ents[0].index
            if lo <= offset:
                raise CompactedError(f"entries from {lo} compacted (snapshot at {offset})")
            last = offset + len(self._ents) - 1
            if hi > last + 1:
                raise UnavailableError(f"entries up to {hi - 1} beyond last index {last}")
            if lo > hi:
                raise ValueError(f"invalid range [{lo}, {hi})")
            return entries_size_limited(self._ents[lo - offset:hi - offset], max_bytes)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    # -- write side ------------------------------------------------------------------

    def apply_ready(self, hard_state: HardState | None, entries: Sequence[Entry],
                    snapshot: Snapshot | None) -> None:
        with self._lock:
            _check_bounds(hard_state, entries, snapshot)
            ents = list(self._ents)
            snap = self._snapshot
            if snapshot is not None and not snapshot.is_empty():
                if snapshot.meta.index <= snap.meta.index:
                    raise SnapshotOutOfDateError(
                        f"snapshot at {snapshot.meta.index} is not newer than {snap.meta.index}")
                snap = snapshot
                offset = ents[0].index
                i = snapshot.meta.index - offset
                keep: list[Entry] = []
                if i < len(ents) and ents[i].term == snapshot.meta.term:
                    keep = ents[i + 1:]  # §7: retain entries following a matching prefix
                ents = [Entry(snapshot.meta.term, snapshot.meta.index)] + keep
            if entries:
                _check_contiguous(entries)
                offset = ents[0].index
                first = entries[0].index
                last = offset + len(ents) - 1
                if first > last + 1:
                    raise StorageError(f"entries start at {first}, leaving a gap after {last}")
                if first <= offset:
                    # Entries the snapshot already covers are dropped (they are committed).
                    entries = [e for e in entries if e.index > offset]
                if entries:
                    k = entries[0].index - offset
                    _check_follows(ents[k - 1].term, entries[0])
                    ents = ents[:k] + list(entries)
            self._ents = ents
            self._snapshot = snap
            if hard_state is not None:
                self._hard_state = hard_state

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        with self._lock:
            if index <= self._snapshot.meta.index:
                raise SnapshotOutOfDateError(
                    f"snapshot at {index} is not newer than {self._snapshot.meta.index}")
            offset = self._ents[0].index
            last = offset + len(self._ents) - 1
            if index > last:
                raise UnavailableError(f"snapshot index {index} beyond last index {last}")
            if index > self._hard_state.commit:
                raise StorageError(f"snapshot index {index} is not committed "
                                   f"(commit {self._hard_state.commit})")
            snap = Snapshot(SnapshotMeta(index, self._ents[index - offset].term, conf_state),
                            bytes(data))
            self._snapshot = snap
            return snap

    def compact(self, index: int) -> None:
        with self._lock:
            offset = self._ents[0].index
            if index <= offset:
                raise CompactedError(f"already compacted to {offset}")
            if index > self._snapshot.meta.index:
                raise StorageError(f"cannot compact to {index} past the snapshot at "
                                   f"{self._snapshot.meta.index}")
            i = index - offset
            self._ents = [Entry(self._ents[i].term, index)] + self._ents[i + 1:]


def _check_bounds(hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None) -> None:
    """Both storages refuse terms and indexes beyond types.MAX_TERM / MAX_INDEX (what
    SQLite stores), so a node behaves the same over either."""
    values: list[tuple[str, int, int]] = []
    if hard_state is not None:
        values += [("hard state term", hard_state.term, MAX_TERM),
                   ("hard state commit", hard_state.commit, MAX_INDEX)]
    if snapshot is not None:
        values += [("snapshot index", snapshot.meta.index, MAX_INDEX),
                   ("snapshot term", snapshot.meta.term, MAX_TERM)]
    for e in entries:
        if isinstance(e, Entry):  # _check_contiguous names the other case
            values += [("entry index", e.index, MAX_INDEX), ("entry term", e.term, MAX_TERM)]
    for name, value, bound in values:
        if value > bound:
            raise StorageError(f"{name} {value} exceeds the largest storable value {bound} (2**63 - 1)")


def _check_contiguous(entries: Sequence[Entry]) -> None:
    """Both storages refuse the same malformed batches (shared by SQLiteStorage)."""
    for e in entries:
        if not isinstance(e, Entry):
            raise StorageError(f"entries must be Entry values, got {type(e).__name__}")
    for a, b in zip(entries, entries[1:]):
        if b.index != a.index + 1 or b.term < a.term:
            raise StorageError(f"entries not contiguous: {a.index}@{a.term} then "
                               f"{b.index}@{b.term}")


def _check_follows(prev_term: int, first: Entry) -> None:
    """A batch may not start below the term of the stored entry before it (§5.3: terms
    never decrease along a log); the core would refuse such a log at restart."""
    if first.term < prev_term:
        raise StorageError(f"entry {first.index} has term {first.term}, behind the term "
                           f"{prev_term} of the entry before it")
