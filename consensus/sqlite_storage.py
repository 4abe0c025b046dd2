"""Durable Raft storage in SQLite (the standard library's ``sqlite3``).

The database is the node's stable storage in the sense of Raft Figure 2: the hard
state (current term, vote, commit), the log, and the latest snapshot. It implements
:class:`consensus.storage.Storage`, whose contract is that :meth:`apply_ready` is one
atomic, durable write made before the Ready's messages leave.

How that contract is met:

* WAL journal and ``synchronous=FULL``: a transaction is durable when COMMIT returns
  (SQLite syncs the WAL on every commit in this mode), and a crash at any instant
  leaves either the whole transaction or none of it (a torn WAL frame fails its
  checksum and is discarded on recovery, with everything after it).
* One ``BEGIN IMMEDIATE ... COMMIT`` per Ready: snapshot, then entries (truncating a
  conflicting suffix, §5.3), then hard state. So one fsync per batch, which is what an
  SD card on a Raspberry Pi can afford; and none for a batch that only moves the commit
  index (etcd's MustSync): such a transaction runs with ``synchronous=NORMAL``, stays
  atomic and ordered before every later synced one (the WAL is sequential), and if a
  power cut loses it the node restarts with a lower commit index, which it relearns
  from the leader (the commit index is not among Figure 2's persistent state).
* Every row carries the codec encoding of its value and a CRC-32 of it; the key
  columns (index, term) are duplicated in the encoding. On open, the whole store is
  checked (``PRAGMA quick_check``, checksums, contiguous indexes, non-decreasing terms,
  snapshot/log agreement, commit within the log) and any inconsistency raises
  :class:`StorageCorruptError` naming what is wrong. A node must never come up on a
  silently altered log: a forgotten vote or entry breaks Election Safety (§5.2) or
  Leader Completeness (§5.4).
* A database is created in a temporary file and renamed into place, so a crash during
  creation leaves no half-made store; an existing path that is empty or not this
  schema is corruption, never a fresh start (a fresh start would forget the vote).
* An exclusive lock is held while the store is open: a second process opening the same
  file (two agents given one data directory) fails at once.

Known limit: damage that cuts already-synced frames off the end of the WAL file is, to
SQLite, a crash before those transactions, and the store reopens at that earlier (whole-
batch) state; detecting it would need a record outside the file. The checks above catch
damage to the main database file.

Layout, as in :class:`consensus.storage.MemoryStorage`: ``log_start`` holds the index
and term of the last compacted entry (the "dummy" entry, so ``term(first_index()-1)``
stays answerable for the AppendEntries consistency check), ``entries`` the log after
it, ``snapshot`` the latest snapshot (its index is at or after ``log_start``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .codec import (
    DecodeError,
    decode_entry,
    decode_hard_state,
    decode_snapshot,
    encode_entry,
    encode_hard_state,
    encode_snapshot,
)
from .storage import (
    CompactedError,
    SnapshotOutOfDateError,
    Storage,
    StorageError,
    UnavailableError,
    _check_bounds,
    _check_contiguous,
    _check_follows,
)
from .types import ConfState, Entry, HardState, Snapshot, SnapshotMeta

__all__ = ["SCHEMA_VERSION", "StorageCorruptError", "SQLiteStorage", "SQLiteStats"]

#: Bumped on any incompatible change to the tables below.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE hard_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    body BLOB NOT NULL,
    crc INTEGER NOT NULL
);
CREATE TABLE log_start (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL
);
CREATE TABLE snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL,
    body BLOB NOT NULL,
    crc INTEGER NOT NULL
);
CREATE TABLE entries (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    body BLOB NOT NULL,
    crc INTEGER NOT NULL
);
"""

_TABLES = ("entries", "hard_state", "log_start", "schema_version", "snapshot")


class StorageCorruptError(StorageError):
    """The database on disk is damaged or inconsistent; the node must not start on it.

    ``path`` is the database file, ``problem`` what was found. Recovery is an operator
    decision (restore a backup, or wipe the node and re-add it as a new member), never
    an automatic one.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"raft storage {os.fspath(path)!r} is corrupt: {problem}")
        self.path = os.fspath(path)
        self.problem = problem


@dataclass
class SQLiteStats:
    """Counters for the write path. Each committed transaction is one WAL sync under
    ``synchronous=FULL`` (plus a database sync at each automatic checkpoint)."""

    transactions: int = 0
    #: Transactions that needed an fsync (entries, snapshot, term or vote changed).
    synced_transactions: int = 0
    entries_written: int = 0
    bytes_written: int = 0


def _crc(body: bytes) -> int:
    return zlib.crc32(body)


class SQLiteStorage(Storage):
    """Raft storage in one SQLite database file.

    Open with ``SQLiteStorage(path, conf_state)``: a missing file is created with an
    empty log and a bootstrap snapshot carrying ``conf_state`` (the initial
    configuration); an existing one is opened and fully checked, and ``conf_state`` is
    ignored. ``create=False`` refuses to create (a restarting node whose database
    vanished must not silently start blank).

    Thread-safe: one lock serializes all access to the connection.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        conf_state: ConfState | None = None,
        *,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.stats = SQLiteStats()
        self._lock = threading.Lock()
        wal = Path(f"{self.path}-wal")
        if not self.path.exists():
            if wal.exists() and wal.stat().st_size > 0:
                raise StorageCorruptError(self.path, "database file is missing but its write-ahead log exists")
            if not create:
                raise StorageError(f"raft storage {os.fspath(self.path)!r} does not exist")
            self._create(conf_state or ConfState())
        elif self.path.stat().st_size == 0:
            raise StorageCorruptError(self.path, "database file is empty (truncated to zero bytes)")
        try:
            self._db = sqlite3.connect(os.fspath(self.path), isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise StorageCorruptError(self.path, f"cannot open: {exc}") from None
        try:
            self._configure()
            self._load_and_check()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StorageCorruptError(self.path, f"SQLite reports: {exc}") from None
        except StorageError:
            self._db.close()
            raise

    # --- opening --------------------------------------------------------------------

    def _create(self, conf_state: ConfState) -> None:
        """Make a new database beside the target and rename it into place, so the path
        holds either nothing or a complete store (rename is atomic on POSIX)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".creating")
        for stale in (tmp, Path(f"{tmp}-journal"), Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            stale.unlink(missing_ok=True)
        db = sqlite3.connect(os.fspath(tmp), isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            hs = encode_hard_state(HardState())
            db.execute("INSERT INTO hard_state (id, body, crc) VALUES (1, ?, ?)", (hs, _crc(hs)))
            db.execute("INSERT INTO log_start (id, idx, term) VALUES (1, 0, 0)")
            snap = encode_snapshot(Snapshot(SnapshotMeta(0, 0, conf_state)))
            db.execute(
                "INSERT INTO snapshot (id, idx, term, body, crc) VALUES (1, 0, 0, ?, ?)", (snap, _crc(snap))
            )
            db.execute("COMMIT")
        finally:
            db.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)  # make the rename itself durable
        finally:
            os.close(dfd)

    def _configure(self) -> None:
        db = self._db
        # One node, one store: hold an exclusive lock for as long as the store is open,
        # so a second process pointed at the same file (two agents sharing a config)
        # fails at once instead of the two voting from one hard state.
        db.execute("PRAGMA busy_timeout=0")
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("BEGIN IMMEDIATE")
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StorageError(
                    f"raft storage {os.fspath(self.path)!r} is in use by another process or connection"
                ) from None
            raise
        if str(mode).lower() != "wal":
            raise StorageError(f"raft storage {os.fspath(self.path)!r}: cannot enable WAL journal (got {mode!r})")
        db.execute("PRAGMA synchronous=FULL")
        # Never let SQLite "repair" by guessing; we check and fail loudly instead.
        db.execute("PRAGMA cell_size_check=ON")

    def _corrupt(self, problem: str) -> StorageCorruptError:
        return StorageCorruptError(self.path, problem)

    def _load_and_check(self) -> None:
        db = self._db
        rows = db.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in rows] != ["ok"]:
            raise self._corrupt("PRAGMA quick_check failed: " + "; ".join(str(r[0]) for r in rows[:5]))
        tables = sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        if tables != sorted(_TABLES):
            raise self._corrupt(f"unexpected tables {tables} (expected {sorted(_TABLES)})")
        versions = db.execute("SELECT version FROM schema_version").fetchall()
        if len(versions) != 1:
            raise self._corrupt(f"schema_version has {len(versions)} rows, expected 1")
        if versions[0][0] != SCHEMA_VERSION:
            raise StorageError(
                f"raft storage {os.fspath(self.path)!r} has schema version {versions[0][0]!r}; "
                f"this build reads version {SCHEMA_VERSION}"
            )

        hs_rows = db.execute("SELECT id, body, crc FROM hard_state").fetchall()
        if len(hs_rows) != 1:
            raise self._corrupt(f"hard_state has {len(hs_rows)} rows, expected 1")
        hard_state = decode_hard_state(self._verified("hard state", hs_rows[0][1], hs_rows[0][2]))

        start_rows = db.execute("SELECT idx, term FROM log_start").fetchall()
        if len(start_rows) != 1:
            raise self._corrupt(f"log_start has {len(start_rows)} rows, expected 1")
        offset, offset_term = start_rows[0]
        if type(offset) is not int or type(offset_term) is not int or offset < 0 or offset_term < 0:
            raise self._corrupt(f"log_start holds invalid index/term {offset!r}/{offset_term!r}")

        snap_rows = db.execute("SELECT idx, term, body, crc FROM snapshot").fetchall()
        if len(snap_rows) != 1:
            raise self._corrupt(f"snapshot has {len(snap_rows)} rows, expected 1")
        s_idx, s_term, s_body, s_crc = snap_rows[0]
        snapshot = self._decode(decode_snapshot, "snapshot", self._verified("snapshot", s_body, s_crc))
        if (snapshot.meta.index, snapshot.meta.term) != (s_idx, s_term):
            raise self._corrupt(
                f"snapshot row says index {s_idx} term {s_term} but its body says "
                f"index {snapshot.meta.index} term {snapshot.meta.term}"
            )

        terms = [offset_term]
        expected = offset + 1
        prev_term = offset_term
        for idx, term, body, crc in db.execute("SELECT idx, term, body, crc FROM entries ORDER BY idx"):
            if idx != expected:
                if idx <= offset:
                    raise self._corrupt(f"entry {idx} is at or before the compacted index {offset}")
                raise self._corrupt(f"log has a gap: entry {expected} is missing (next stored is {idx})")
            entry = self._decode(decode_entry, f"entry {idx}", self._verified(f"entry {idx}", body, crc))
            if (entry.index, entry.term) != (idx, term):
                raise self._corrupt(
                    f"entry row {idx} (term {term}) holds the encoding of entry {entry.index} (term {entry.term})"
                )
            if term < prev_term:
                raise self._corrupt(f"log terms decrease: entry {idx} has term {term} after term {prev_term}")
            terms.append(term)
            prev_term = term
            expected += 1
        last = offset + len(terms) - 1

        if not offset <= snapshot.meta.index <= last:
            raise self._corrupt(
                f"snapshot index {snapshot.meta.index} is outside the log's range [{offset}, {last}]"
            )
        if terms[snapshot.meta.index - offset] != snapshot.meta.term:
            raise self._corrupt(
                f"snapshot at index {snapshot.meta.index} has term {snapshot.meta.term} but the log "
                f"has term {terms[snapshot.meta.index - offset]} there"
            )
        if hard_state.commit > last:
            raise self._corrupt(
                f"hard state commit index {hard_state.commit} is beyond the last log index {last} "
                "(committed entries are missing)"
            )
        if hard_state.term < prev_term:
            raise self._corrupt(f"hard state term {hard_state.term} is behind the last entry's term {prev_term}")

        self._hard_state = hard_state
        self._snapshot = snapshot
        self._offset = offset
        self._terms = terms

    def _verified(self, what: str, body: object, crc: object) -> bytes:
        if type(body) is not bytes:
            raise self._corrupt(f"{what}: stored value is {type(body).__name__}, not bytes")
        if type(crc) is not int or _crc(body) != crc:
            raise self._corrupt(f"{what}: checksum mismatch (stored {crc!r}, computed {_crc(body)})")
        return body

    def _decode(self, fn, what: str, body: bytes):  # type: ignore[no-untyped-def]
        try:
            return fn(body)
        except DecodeError as exc:
            raise self._corrupt(f"{what}: undecodable ({exc})") from None

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "SQLiteStorage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- read side -------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        with self._lock:
            return self._hard_state, self._snapshot.meta.conf_state

    def hard_state(self) -> HardState:
        with self._lock:
            return self._hard_state

    def first_index(self) -> int:
        with self._lock:
            return self._offset + 1

    def last_index(self) -> int:
        with self._lock:
            return self._offset + len(self._terms) - 1

    def term(self, index: int) -> int:
        with self._lock:
            offset = self._offset
            if index < offset:
                raise CompactedError(f"index {index} compacted (log starts after {offset})")
            if index - offset >= len(self._terms):
                raise UnavailableError(f"index {index} beyond last index {offset + len(self._terms) - 1}")
            return self._terms[index - offset]

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        with self._lock:
            offset = self._offset
            last = offset + len(self._terms) - 1
            if lo <= offset:
                raise CompactedError(f"entries from {lo} compacted (log starts after {offset})")
            if hi > last + 1:
                raise UnavailableError(f"entries up to {hi - 1} beyond last index {last}")
            if lo > hi:
                raise ValueError(f"invalid range [{lo}, {hi})")
            out: list[Entry] = []
            size = 0
            expected = lo
            for idx, body in self._db.execute(
                "SELECT idx, body FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi)
            ):
                if idx != expected:
                    raise self._corrupt(f"entry {expected} is missing from the log")
                try:
                    e = decode_entry(body)
                except DecodeError as exc:
                    raise self._corrupt(f"entry {idx}: undecodable ({exc})") from None
                if e.index != idx:
                    raise self._corrupt(f"entry row {idx} holds the encoding of entry {e.index}")
                size += e.size()
                if max_bytes is not None and out and size > max_bytes:
                    break
                out.append(e)
                expected += 1
            else:
                if expected != hi:
                    raise self._corrupt(f"entry {expected} is missing from the log")
            return out

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    # --- write side ------------------------------------------------------------------

    def apply_ready(
        self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None
    ) -> None:
        with self._lock:
            # Work out the new state in memory first: any invalid input raises here,
            # before the database or the caches are touched.
            _check_bounds(hard_state, entries, snapshot)
            offset, terms, snap = self._offset, self._terms, self._snapshot
            replace_snapshot = False
            drop_all_entries = False
            if snapshot is not None and not snapshot.is_empty():
                meta = snapshot.meta
                if meta.index <= snap.meta.index:
                    raise SnapshotOutOfDateError(f"snapshot at {meta.index} is not newer than {snap.meta.index}")
                i = meta.index - offset
                if i < len(terms) and terms[i] == meta.term:
                    terms = terms[i:]  # §7: keep entries following a matching prefix
                else:
                    terms = [meta.term]
                    drop_all_entries = True
                offset = meta.index
                snap = snapshot
                replace_snapshot = True
            new: list[Entry] = []
            if entries:
                _check_contiguous(entries)
                first = entries[0].index
                last = offset + len(terms) - 1
                if first > last + 1:
                    raise StorageError(f"entries start at {first}, leaving a gap after {last}")
                new = [e for e in entries if e.index > offset]  # the snapshot covers the rest
                if new:
                    keep = new[0].index - offset
                    _check_follows(terms[keep - 1], new[0])
                    terms = terms[:keep] + [e.term for e in new]
            if hard_state is not None:
                new_last = offset + len(terms) - 1
                if hard_state.commit > new_last:
                    raise StorageError(
                        f"hard state commit {hard_state.commit} is beyond the last index {new_last}"
                    )
            if not replace_snapshot and not new and hard_state is None:
                return

            must_sync = replace_snapshot or bool(new) or (
                hard_state is not None
                and (hard_state.term, hard_state.vote) != (self._hard_state.term, self._hard_state.vote)
            )
            db = self._db
            written = 0
            if not must_sync:
                db.execute("PRAGMA synchronous=NORMAL")
            try:
                db.execute("BEGIN IMMEDIATE")
                if replace_snapshot:
                    body = encode_snapshot(snap)
                    written += len(body)
                    db.execute(
                        "UPDATE snapshot SET idx = ?, term = ?, body = ?, crc = ? WHERE id = 1",
                        (snap.meta.index, snap.meta.term, body, _crc(body)),
                    )
                    if drop_all_entries:
                        db.execute("DELETE FROM entries")
                    else:
                        db.execute("DELETE FROM entries WHERE idx <= ?", (offset,))
                    db.execute("UPDATE log_start SET idx = ?, term = ? WHERE id = 1", (offset, terms[0]))
                if new:
                    db.execute("DELETE FROM entries WHERE idx >= ?", (new[0].index,))
                    rows = []
                    for e in new:
                        body = encode_entry(e)
                        written += len(body)
                        rows.append((e.index, e.term, body, _crc(body)))
                    db.executemany("INSERT INTO entries (idx, term, body, crc) VALUES (?, ?, ?, ?)", rows)
                if hard_state is not None:
                    body = encode_hard_state(hard_state)
                    written += len(body)
                    db.execute("UPDATE hard_state SET body = ?, crc = ? WHERE id = 1", (body, _crc(body)))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                if not must_sync:
                    db.execute("PRAGMA synchronous=FULL")
            self._offset, self._terms, self._snapshot = offset, terms, snap
            if hard_state is not None:
                self._hard_state = hard_state
            self.stats.transactions += 1
            self.stats.synced_transactions += must_sync
            self.stats.entries_written += len(new)
            self.stats.bytes_written += written

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        with self._lock:
            if index <= self._snapshot.meta.index:
                raise SnapshotOutOfDateError(f"snapshot at {index} is not newer than {self._snapshot.meta.index}")
            last = self._offset + len(self._terms) - 1
            if index > last:
                raise UnavailableError(f"snapshot index {index} beyond last index {last}")
            if index > self._hard_state.commit:
                raise StorageError(f"snapshot index {index} is not committed (commit {self._hard_state.commit})")
            if not isinstance(conf_state, ConfState):
                raise StorageError("conf_state must be a ConfState")
            snap = Snapshot(SnapshotMeta(index, self._terms[index - self._offset], conf_state), bytes(data))
            body = encode_snapshot(snap)
            self._write(
                [("UPDATE snapshot SET idx = ?, term = ?, body = ?, crc = ? WHERE id = 1",
                  (index, snap.meta.term, body, _crc(body)))],
                len(body),
            )
            self._snapshot = snap
            return snap

    def compact(self, index: int) -> None:
        with self._lock:
            offset = self._offset
            if index <= offset:
                raise CompactedError(f"already compacted to {offset}")
            if index > self._snapshot.meta.index:
                raise StorageError(
                    f"cannot compact to {index} past the snapshot at {self._snapshot.meta.index}"
                )
            term = self._terms[index - offset]
            self._write(
                [
                    ("DELETE FROM entries WHERE idx <= ?", (index,)),
                    ("UPDATE log_start SET idx = ?, term = ? WHERE id = 1", (index, term)),
                ],
                0,
            )
            self._terms = self._terms[index - offset :]
            self._offset = index

    def _write(self, statements: list[tuple[str, tuple[object, ...]]], nbytes: int) -> None:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            for sql, args in statements:
                db.execute(sql, args)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.stats.transactions += 1
        self.stats.synced_transactions += 1
        self.stats.bytes_written += nbytes

