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
* Every persisted value is covered: each row (hard state, log start, snapshot, every
  entry) carries the codec encoding of its value and a CRC-32 of it, with the key
  columns (index, term) duplicated in the encoding; the schema version has its own
  CRC; the table catalogue must be exactly this schema's. On open, the whole store is
  checked (``PRAGMA quick_check``, the catalogue, checksums, single-row ids, contiguous
  indexes, non-decreasing terms, snapshot/log agreement, commit within the log;
  tests/consensus/test_sqlite_bitflips.py flips every bit) and any inconsistency raises
  :class:`StorageCorruptError` naming what is wrong. A node must never come up on a
  silently altered log: a forgotten vote or entry breaks Election Safety (§5.2) or
  Leader Completeness (§5.4).
* A database is created in a temporary file and renamed into place, so a crash during
  creation leaves no half-made store; an existing path that is empty or not this
  schema is corruption, never a fresh start (a fresh start would forget the vote).
* An exclusive lock is held while the store is open: a second process opening the same
  file (two agents given one data directory) fails at once.
* Every failure of the file is one documented error naming the path and what to do
  (:class:`StorageFileError` and its subclasses; docs/consensus.md): a read-only
  filesystem or a missing permission is never reported as corruption, a full disk
  never as a raw ``sqlite3.OperationalError``.

Known limit: damage that cuts already-synced frames off the end of the WAL file is, to
SQLite, a crash before those transactions, and the store reopens at that earlier (whole-
batch) state; detecting it would need a record outside the file. The checks above catch
damage to the main database file.

Layout, as in :class:`consensus.storage.MemoryStorage`: ``log_start`` holds the index
and term of the last compacted entry (and their checksummed encoding) (the "dummy" entry, so ``term(first_index()-1)``
stays answerable for the AppendEntries consistency check), ``entries`` the log after
it, ``snapshot`` the latest snapshot (its index is at or after ``log_start``).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
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

__all__ = [
    "SCHEMA_VERSION",
    "SQLiteStats",
    "SQLiteStorage",
    "StorageAccessError",
    "StorageCorruptError",
    "StorageFileError",
    "StorageFullError",
    "StorageIOError",
    "StorageInUseError",
    "StorageMissingError",
    "StorageVersionError",
]

#: Bumped on any incompatible change to the tables below. Version 2 added the checksums
#: of ``log_start`` and ``schema_version`` (version 1 left the compacted log start's term
#: unprotected: a flipped bit there opened silently and misled the consistency check).
SCHEMA_VERSION = 2
#: SQLite's page cache for the store, in KiB (``PRAGMA cache_size`` = -this). SQLite's
#: default is 2000 KiB per connection, and a node's writes fill it within a few thousand
#: entries: 1.7 MB of a 60 MB agent (issue 9; docs/agent.md, "Memory"). What the node
#: reads back is the tail it has just written (entries to apply, AppendEntries to a
#: follower a little behind), a few Readies of at most 64 KiB each, and the operating
#: system's page cache holds the rest of the file; a transaction larger than the cache
#: (a compaction's delete) spills its pages to the WAL early, which changes no outcome.
PAGE_CACHE_KIB = 512

# Every value the store holds is covered: a CRC-32 over the codec encoding of each row
# (whose key columns are duplicated in the encoding and cross-checked), a CRC of the
# schema version, singleton rows checked for their id, and the catalogue compared with
# this text.
_SCHEMA = """
CREATE TABLE schema_version (
    version INTEGER NOT NULL,
    crc INTEGER NOT NULL
);
CREATE TABLE hard_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    body BLOB NOT NULL,
    crc INTEGER NOT NULL
);
CREATE TABLE log_start (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL,
    body BLOB NOT NULL,
    crc INTEGER NOT NULL
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

_STATEMENTS = [stmt.strip() for stmt in _SCHEMA.split(";") if stmt.strip()]
#: The catalogue (sqlite_master) this schema makes: (type, name, tbl_name, sql) per table,
#: sorted by name. SQLite keeps each CREATE statement's text as written.
_CATALOGUE = sorted(
    ("table", stmt.split()[2], stmt.split()[2], stmt) for stmt in _STATEMENTS
)

#: SQLite primary result codes (https://www.sqlite.org/rescode.html) that say what kind of
#: failure an sqlite3.Error is; everything else is treated as damage.
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 13, 14

#: Python exceptions that reading a damaged catalogue or row can raise (a NULL where a
#: name belongs, text that is not UTF-8, an integer out of range ...): damage, reported as
#: StorageCorruptError, never as themselves.
_DAMAGE = (TypeError, ValueError, UnicodeError, OverflowError, IndexError, KeyError, AttributeError)


class StorageFileError(StorageError):
    """A failure of the database file itself (not of the caller's input). Every one
    names ``path`` (the file or directory concerned), ``problem`` (what went wrong) and
    ``remedy`` (what the operator should do); docs/consensus.md lists them all.
    Nothing acknowledged is lost by any of them: a write that fails is rolled back whole,
    and the node must stop (it cannot make its Ready durable) rather than go on."""

    def __init__(self, path: str | os.PathLike[str], problem: str, remedy: str) -> None:
        super().__init__(f"raft storage {os.fspath(path)!r}: {problem}. {remedy}")
        self.path = os.fspath(path)
        self.problem = problem
        self.remedy = remedy


class StorageCorruptError(StorageFileError):
    """The database on disk is damaged or inconsistent; the node must not start on it.

    Recovery is an operator decision (restore a backup, or wipe the node and re-add it as
    a new member), never an automatic one.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        StorageError.__init__(self, f"raft storage {os.fspath(path)!r} is corrupt: {problem}")
        self.path = os.fspath(path)
        self.problem = problem
        self.remedy = ("Do not start the node on it: restore a backup, or wipe this node's "
                       "data and re-add it to the cluster as a new member")


class StorageAccessError(StorageFileError):
    """The store cannot be read or written as it must be: a read-only filesystem, or a
    missing permission on the file or its directory (SQLite creates ``-wal`` and
    ``-shm`` files beside it). The data is intact: fix the mount or the permissions and
    restart; do not wipe anything."""


class StorageFullError(StorageFileError):
    """No space left (or quota exceeded) on the filesystem holding the store. The failed
    write was rolled back; free space and restart the node."""


class StorageIOError(StorageFileError):
    """The operating system reported an I/O error (a failing SD card or disk). The failed
    write was rolled back; check the device (dmesg), restart, and replace the card if it
    happens again (then re-add the node with fresh storage)."""


class StorageInUseError(StorageFileError):
    """Another process (or connection) holds the store: two agents given one data
    directory. Stop the other one; each node needs its own store."""


class StorageVersionError(StorageFileError):
    """The store was written with a schema this build does not read (an older or a newer
    build). Run a build that reads it; the data is intact."""


class StorageMissingError(StorageFileError):
    """``create=False`` and there is no store at the path: a restarting node whose data
    vanished must not silently start blank (it would forget its vote)."""


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


def _version_crc(version: object) -> int:
    return _crc(b"raft sqlite schema %d" % version) if type(version) is int else -1


def _describe(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None)
        return f"SQLite {name}: {exc}" if name else f"SQLite: {exc}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} (errno {errno.errorcode.get(exc.errno or 0, exc.errno)})"
    return f"{type(exc).__name__}: {exc}"


class SQLiteStorage(Storage):
    """Raft storage in one SQLite database file.

    Open with ``SQLiteStorage(path, conf_state)``: a missing file is created with an
    empty log and a bootstrap snapshot carrying ``conf_state`` (the initial
    configuration); an existing one is opened and fully checked, and ``conf_state`` is
    ignored. ``create=False`` refuses to create (a restarting node whose database
    vanished must not silently start blank).

    Every failure of the file is a :class:`StorageFileError` subclass naming the path and
    what to do (docs/consensus.md): damage :class:`StorageCorruptError`, a read-only
    filesystem or a missing permission :class:`StorageAccessError`, a full disk
    :class:`StorageFullError`, a device error :class:`StorageIOError`, another process
    holding it :class:`StorageInUseError`, another schema :class:`StorageVersionError`,
    a missing store with ``create=False`` :class:`StorageMissingError`. Invalid writes
    (the caller's bug) raise plain :class:`StorageError` and change nothing.

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
        try:
            self._open(conf_state, create)
        except (sqlite3.Error, OSError) as exc:
            raise self._failure(exc, "open the store") from None
        except _DAMAGE as exc:
            raise self._corrupt(f"unreadable ({_describe(exc)})") from None

    # --- opening --------------------------------------------------------------------

    def _open(self, conf_state: ConfState | None, create: bool) -> None:
        wal = Path(f"{self.path}-wal")
        if not self.path.exists():
            if wal.exists() and wal.stat().st_size > 0:
                raise StorageCorruptError(self.path, "database file is missing but its write-ahead log exists")
            if not create:
                raise StorageMissingError(
                    self.path, "does not exist",
                    "A restarting node must not start blank (it would forget its vote): restore the "
                    "file, or wipe this node and re-add it to the cluster as a new member")
            self._create(conf_state or ConfState())
        elif self.path.stat().st_size == 0:
            raise StorageCorruptError(self.path, "database file is empty (truncated to zero bytes)")
        else:
            self._check_file_header()
        self._db = sqlite3.connect(os.fspath(self.path), isolation_level=None, check_same_thread=False)
        try:
            self._configure()
            self._load_and_check()
        except BaseException:
            self._db.close()
            raise

    def _create(self, conf_state: ConfState) -> None:
        """Make a new database beside the target and rename it into place, so the path
        holds either nothing or a complete store (rename is atomic on POSIX). If that
        fails (a full disk, a read-only directory), nothing is left behind."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".creating")
        leftovers = (tmp, Path(f"{tmp}-journal"), Path(f"{tmp}-wal"), Path(f"{tmp}-shm"))
        for stale in leftovers:
            stale.unlink(missing_ok=True)
        try:
            db = sqlite3.connect(os.fspath(tmp), isolation_level=None)
            try:
                db.execute("PRAGMA synchronous=FULL")
                db.execute("BEGIN")
                for stmt in _STATEMENTS:
                    db.execute(stmt)
                db.execute("INSERT INTO schema_version (version, crc) VALUES (?, ?)",
                           (SCHEMA_VERSION, _version_crc(SCHEMA_VERSION)))
                hs = encode_hard_state(HardState())
                db.execute("INSERT INTO hard_state (id, body, crc) VALUES (1, ?, ?)", (hs, _crc(hs)))
                start = encode_entry(Entry(0, 0))
                db.execute("INSERT INTO log_start (id, idx, term, body, crc) VALUES (1, 0, 0, ?, ?)",
                           (start, _crc(start)))
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
        except BaseException as exc:
            for leftover in leftovers:
                try:
                    leftover.unlink(missing_ok=True)
                except OSError:
                    pass  # a read-only directory: nothing could have been created there
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise self._failure(exc, "create the store") from None
            raise
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)  # make the rename itself durable
        finally:
            os.close(dfd)

    def _check_file_header(self) -> None:
        """The SQLite file header's magic and format versions (fileformat.html §1.3):
        bytes 18 and 19 are 1 (rollback journal, a store just created) or 2 (WAL), and
        equal. A damaged one would otherwise open read-only, and every later write fail
        as if the filesystem refused it."""
        with open(self.path, "rb") as f:
            header = f.read(100)
        if len(header) < 100 or header[:16] != b"SQLite format 3\x00":
            raise StorageCorruptError(self.path, "not an SQLite database (file header damaged)")
        write_version, read_version = header[18], header[19]
        if write_version not in (1, 2) or read_version != write_version:
            raise StorageCorruptError(
                self.path, f"file header says format versions {write_version}/{read_version} (expected 2/2)")

    def _configure(self) -> None:
        db = self._db
        # One node, one store: hold an exclusive lock for as long as the store is open,
        # so a second process pointed at the same file (two agents sharing a config)
        # fails at once instead of the two voting from one hard state.
        db.execute("PRAGMA busy_timeout=0")
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        db.execute("BEGIN IMMEDIATE")
        db.execute("COMMIT")
        if str(mode).lower() != "wal":
            raise StorageAccessError(
                self.path, f"cannot enable the WAL journal (SQLite answered {mode!r})",
                "The node needs read and write access to the file and its directory (for the -wal "
                "file), on a filesystem that supports shared memory maps (not a network mount)")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
        # Never let SQLite "repair" by guessing; we check and fail loudly instead.
        db.execute("PRAGMA cell_size_check=ON")

    def _corrupt(self, problem: str) -> StorageCorruptError:
        return StorageCorruptError(self.path, problem)

    def _failure(self, exc: BaseException, doing: str) -> StorageFileError:
        """The documented error for an SQLite or OS failure while ``doing``."""
        if isinstance(exc, StorageFileError):
            return exc
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        err = exc.errno if isinstance(exc, OSError) else None
        what = _describe(exc)
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return StorageInUseError(self.path, f"cannot {doing}: it is in use by another process or "
                                     f"connection ({what})",
                                     "Stop the other process: each node needs a store of its own")
        if primary in (_SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM, _SQLITE_IOERR, _SQLITE_FULL) \
                or err is not None:
            if err in (errno.ENOSPC, errno.EDQUOT) or primary == _SQLITE_FULL or self._no_space():
                return StorageFullError(
                    self.path, f"cannot {doing}: no space left on the filesystem holding "
                    f"{os.fspath(self.path.parent)!r} ({self._free_bytes()} bytes available; {what})",
                    "The failed write was rolled back and nothing acknowledged is lost: free space "
                    "there (or raise the quota), then restart the node")
            access = self._access_problem()
            if access is not None or err in (errno.EROFS, errno.EACCES, errno.EPERM) \
                    or primary in (_SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM):
                return StorageAccessError(
                    self.path, f"cannot {doing}: {access or 'access denied'} ({what})",
                    "The data is intact, do not wipe it: remount the filesystem read-write, or give "
                    "the node's user read and write permission on the file and on its directory "
                    "(SQLite creates the -wal and -shm files there), then restart the node")
            return StorageIOError(
                self.path, f"cannot {doing}: the device reported an I/O error ({what})",
                "The failed write was rolled back: check the device (dmesg), restart the node, and "
                "if it happens again replace the card and re-add the node with fresh storage")
        return self._corrupt(f"SQLite reports: {exc}")

    def _free_bytes(self) -> int | str:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return "unknown"
        return st.f_bavail * st.f_frsize

    def _no_space(self) -> bool:
        free = self._free_bytes()
        return isinstance(free, int) and free == 0

    def _access_problem(self) -> str | None:
        """Why this process cannot write the store, if a reason can be seen (root ignores
        file modes, so those are read from the mode bits as well as os.access)."""
        directory = self.path.parent
        try:
            if os.statvfs(directory).f_flag & os.ST_RDONLY:
                return f"the filesystem holding {os.fspath(directory)!r} is mounted read-only"
        except OSError as exc:
            return f"cannot inspect {os.fspath(directory)!r}: {exc.strerror}"
        uid = os.geteuid()
        problems = []
        for target, what, need in ((directory, "directory", os.R_OK | os.W_OK | os.X_OK),
                                   (self.path, "file", os.R_OK | os.W_OK)):
            try:
                mode = target.stat().st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                problems.append(f"cannot inspect the {what} {os.fspath(target)!r}: {exc.strerror}")
                continue
            if not os.access(target, need):
                problems.append(f"the {what} {os.fspath(target)!r} (mode {stat.filemode(mode)}) lacks "
                                f"read and write permission for uid {uid}")
        return "; ".join(problems) or None

    def _load_and_check(self) -> None:
        db = self._db
        rows = db.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in rows] != ["ok"]:
            raise self._corrupt("PRAGMA quick_check failed: " + "; ".join(str(r[0]) for r in rows[:5]))
        catalogue = sorted(
            db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"), key=lambda r: repr(r)
        )
        if catalogue != sorted(_CATALOGUE, key=lambda r: repr(r)):
            if any(r[1] == "schema_version" for r in catalogue):
                # Another build's store (older or newer) says so in its version row.
                self._check_schema_version()
            names = sorted(repr(r[1]) for r in catalogue)
            raise self._corrupt("the table catalogue is not this schema's (unexpected tables or table "
                                "definitions; tables " + ", ".join(names) + ")")
        self._check_schema_version()

        hs_body, hs_crc = self._singleton("hard_state", "body, crc")
        hard_state = self._decode(decode_hard_state, "hard state", self._verified("hard state", hs_body, hs_crc))

        s_idx, s_term, s_body, s_crc = self._singleton("log_start", "idx, term, body, crc")
        start = self._decode(decode_entry, "log start", self._verified("log start", s_body, s_crc))
        if (start.index, start.term) != (s_idx, s_term) or type(s_idx) is not int or type(s_term) is not int:
            raise self._corrupt(
                f"log_start row says index {s_idx!r} term {s_term!r} but its body says "
                f"index {start.index} term {start.term}"
            )
        offset, offset_term = start.index, start.term

        s_idx, s_term, s_body, s_crc = self._singleton("snapshot", "idx, term, body, crc")
        snapshot = self._decode(decode_snapshot, "snapshot", self._verified("snapshot", s_body, s_crc))
        if (snapshot.meta.index, snapshot.meta.term) != (s_idx, s_term) \
                or type(s_idx) is not int or type(s_term) is not int:
            raise self._corrupt(
                f"snapshot row says index {s_idx!r} term {s_term!r} but its body says "
                f"index {snapshot.meta.index} term {snapshot.meta.term}"
            )

        terms = [offset_term]
        expected = offset + 1
        prev_term = offset_term
        for idx, term, body, crc in db.execute("SELECT idx, term, body, crc FROM entries ORDER BY idx"):
            if idx != expected or type(idx) is not int:
                if type(idx) is int and idx <= offset:
                    raise self._corrupt(f"entry {idx} is at or before the compacted index {offset}")
                raise self._corrupt(f"log has a gap: entry {expected} is missing (next stored is {idx!r})")
            entry = self._decode(decode_entry, f"entry {idx}", self._verified(f"entry {idx}", body, crc))
            if (entry.index, entry.term) != (idx, term) or type(term) is not int:
                raise self._corrupt(
                    f"entry row {idx} (term {term!r}) holds the encoding of entry {entry.index} (term {entry.term})"
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

    def _check_schema_version(self) -> None:
        rows = self._db.execute("SELECT * FROM schema_version").fetchall()
        if len(rows) != 1:
            raise self._corrupt(f"schema_version has {len(rows)} rows, expected 1")
        row = rows[0]
        version = row[0]
        if len(row) == 2 and row[1] != _version_crc(version):
            raise self._corrupt(f"schema version {version!r}: checksum mismatch")
        if len(row) == 1 and version == 1:
            raise StorageVersionError(
                self.path, "has schema version 1 (before the log-start checksum); this build reads "
                f"version {SCHEMA_VERSION}",
                "Run the build that wrote it, or wipe this node's data and re-add it to the cluster "
                "as a new member (it catches up from the leader)")
        if len(row) != 2:
            raise self._corrupt(f"schema_version has {len(row)} columns, expected 2")
        if version != SCHEMA_VERSION:
            raise StorageVersionError(
                self.path, f"has schema version {version}; this build reads version {SCHEMA_VERSION}",
                "Run a build that reads that version; the data is intact")

    def _singleton(self, table: str, columns: str) -> tuple[object, ...]:
        """The one row of a single-row table, which must have id 1 (every update names
        id 1: a row under another id would make them silently write nothing)."""
        rows = self._db.execute(f"SELECT id, {columns} FROM {table}").fetchall()
        if len(rows) != 1:
            raise self._corrupt(f"{table} has {len(rows)} rows, expected 1")
        if rows[0][0] != 1 or type(rows[0][0]) is not int:
            raise self._corrupt(f"{table} row has id {rows[0][0]!r}, expected 1")
        return tuple(rows[0][1:])

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
            try:
                return self._read_entries(lo, hi, max_bytes)
            except (sqlite3.Error, OSError) as exc:
                raise self._failure(exc, "read the log") from None

    def _read_entries(self, lo: int, hi: int, max_bytes: int | None) -> list[Entry]:
        out: list[Entry] = []
        size = 0
        expected = lo
        for idx, body in self._db.execute(
            "SELECT idx, body FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi)
        ):
            if idx != expected:
                raise self._corrupt(f"entry {expected} is missing from the log")
            if type(body) is not bytes:
                raise self._corrupt(f"entry {idx}: stored value is {type(body).__name__}, not bytes")
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
            statements: list[tuple[str, tuple[object, ...]]] = []
            written = 0
            if replace_snapshot:
                body = encode_snapshot(snap)
                written += len(body)
                statements.append(("UPDATE snapshot SET idx = ?, term = ?, body = ?, crc = ? WHERE id = 1",
                                   (snap.meta.index, snap.meta.term, body, _crc(body))))
                if drop_all_entries:
                    statements.append(("DELETE FROM entries", ()))
                else:
                    statements.append(("DELETE FROM entries WHERE idx <= ?", (offset,)))
                statements.append(_log_start_update(offset, terms[0]))
            rows: list[tuple[object, ...]] = []
            if new:
                statements.append(("DELETE FROM entries WHERE idx >= ?", (new[0].index,)))
                for e in new:
                    body = encode_entry(e)
                    written += len(body)
                    rows.append((e.index, e.term, body, _crc(body)))
            if hard_state is not None:
                body = encode_hard_state(hard_state)
                written += len(body)
                hs_update = ("UPDATE hard_state SET body = ?, crc = ? WHERE id = 1", (body, _crc(body)))
            self._write(statements, written, sync=must_sync, doing="write a Ready batch", rows=rows,
                        after=[hs_update] if hard_state is not None else [])
            self._offset, self._terms, self._snapshot = offset, terms, snap
            if hard_state is not None:
                self._hard_state = hard_state
            self.stats.entries_written += len(new)

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
                len(body), doing="record a snapshot",
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
                [("DELETE FROM entries WHERE idx <= ?", (index,)), _log_start_update(index, term)],
                0, doing="compact the log",
            )
            self._terms = self._terms[index - offset :]
            self._offset = index

    def _write(self, statements: list[tuple[str, tuple[object, ...]]], nbytes: int, *, doing: str,
               sync: bool = True, rows: Sequence[tuple[object, ...]] = (),
               after: Sequence[tuple[str, tuple[object, ...]]] = ()) -> None:
        """One transaction: ``statements``, then ``rows`` inserted into entries, then
        ``after``. All or nothing; a failure is rolled back and raised as the documented
        error for it. ``sync=False`` (a batch that only moves the commit index) commits
        without an fsync (see the module docstring)."""
        db = self._db
        try:
            if not sync:
                db.execute("PRAGMA synchronous=NORMAL")
            try:
                db.execute("BEGIN IMMEDIATE")
                for sql, args in statements:
                    db.execute(sql, args)
                if rows:
                    db.executemany("INSERT INTO entries (idx, term, body, crc) VALUES (?, ?, ?, ?)", rows)
                for sql, args in after:
                    db.execute(sql, args)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # SQLite already rolled back (as it does on a full disk, for example)
                raise
            finally:
                if not sync:
                    db.execute("PRAGMA synchronous=FULL")
        except (sqlite3.Error, OSError) as exc:
            raise self._failure(exc, doing) from None
        self.stats.transactions += 1
        self.stats.synced_transactions += sync
        self.stats.bytes_written += nbytes


def _log_start_update(index: int, term: int) -> tuple[str, tuple[object, ...]]:
    """The compacted log start (the "dummy" entry), checksummed like every other row."""
    body = encode_entry(Entry(term, index))
    return ("UPDATE log_start SET idx = ?, term = ?, body = ?, crc = ? WHERE id = 1",
            (index, term, body, _crc(body)))
