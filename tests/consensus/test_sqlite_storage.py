"""SQLiteStorage (consensus/sqlite_storage.py) against real database files: it behaves
exactly like its in-memory twin, survives restart exactly, rejects bad writes without
changing anything, and refuses to open a damaged or inconsistent store."""

from __future__ import annotations

import random
import sqlite3
import zlib
from pathlib import Path

import pytest

from consensus.codec import encode_hard_state, encode_snapshot
from consensus.sqlite_storage import PAGE_CACHE_KIB, SCHEMA_VERSION, SQLiteStorage, StorageCorruptError, \
    StorageVersionError
from consensus.storage import (
    CompactedError,
    MemoryStorage,
    SnapshotOutOfDateError,
    StorageError,
    UnavailableError,
)
from consensus.types import ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta

from _storage_view import dump

CONF = ConfState.of([1, 2, 3])


def ents(term: int, lo: int, hi: int, tag: bytes = b"e") -> list[Entry]:
    return [Entry(term, i, data=tag + str(i).encode()) for i in range(lo, hi + 1)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "raft.db"


# --- behaviour ----------------------------------------------------------------------------


def test_new_store_holds_bootstrap_configuration_and_empty_log(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        assert s.initial_state() == (HardState(), CONF)
        assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
        assert s.entries(1, 1) == []


def test_wal_mode_full_sync_and_the_bounded_page_cache_are_in_force(db: Path) -> None:
    SQLiteStorage(db, CONF).close()
    with SQLiteStorage(db) as s:
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        # Negative: KiB (SQLite's default, -2000, was 1.7 MB of an agent's RSS).
        assert s._db.execute("PRAGMA cache_size").fetchone()[0] == -PAGE_CACHE_KIB


def test_restart_recovers_exactly(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(HardState(1, 1, 0), ents(1, 1, 20), None)
        s.apply_ready(HardState(2, 3, 8), ents(2, 9, 12, b"x"), None)  # truncates 9..20
        s.create_snapshot(5, CONF, b"state@5")
        s.compact(4)
        before = dump(s)
    with SQLiteStorage(db) as s:
        assert dump(s) == before
        assert s.first_index() == 5 and s.last_index() == 12 and s.term(4) == 1
        assert s.entries(9, 13)[0].data == b"x9"


def test_conflicting_append_truncates_the_suffix(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(None, ents(1, 1, 10), None)
        s.apply_ready(None, ents(3, 4, 5, b"new"), None)
        assert s.last_index() == 5
        assert [e.term for e in s.entries(1, 6)] == [1, 1, 1, 3, 3]


def test_installing_a_snapshot_keeps_a_matching_log_suffix_only(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(None, ents(1, 1, 10), None)
        snap = Snapshot(SnapshotMeta(6, 1, CONF), b"s6")
        s.apply_ready(HardState(1, 0, 6), [], snap)
        assert (s.first_index(), s.last_index()) == (7, 10)  # §7: entries after a match stay
        s.apply_ready(HardState(4, 0, 20), [], Snapshot(SnapshotMeta(20, 4, CONF), b"s20"))
        assert (s.first_index(), s.last_index(), s.term(20)) == (21, 20, 4)
    with SQLiteStorage(db) as s:
        assert s.snapshot().data == b"s20" and s.last_index() == 20


def test_entries_are_limited_by_bytes_but_never_empty(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(None, [Entry(1, i, data=b"x" * 100) for i in range(1, 11)], None)
        assert len(s.entries(1, 11, max_bytes=250)) == 2
        assert len(s.entries(1, 11, max_bytes=1)) == 1
        assert len(s.entries(1, 11)) == 10


def test_out_of_range_reads_raise_like_memory_storage(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(HardState(1, 0, 5), ents(1, 1, 10), None)
        s.create_snapshot(5, CONF, b"")
        s.compact(5)
        with pytest.raises(CompactedError):
            s.term(4)
        with pytest.raises(CompactedError):
            s.entries(5, 7)
        with pytest.raises(UnavailableError):
            s.entries(6, 12)
        with pytest.raises(UnavailableError):
            s.term(11)


def test_invalid_writes_raise_and_change_nothing(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(HardState(2, 1, 3), ents(2, 1, 5), None)
        s.create_snapshot(3, CONF, b"s")
        before = dump(s)
        tx = s.stats.transactions
        bad_calls = [
            lambda: s.apply_ready(None, ents(2, 8, 9), None),  # gap after last index
            lambda: s.apply_ready(None, [Entry(2, 6), Entry(2, 8)], None),  # not contiguous
            lambda: s.apply_ready(None, [Entry(1, 6)], None),  # term goes backwards
            lambda: s.apply_ready(HardState(2, 1, 9), [], None),  # commit beyond the log
            lambda: s.apply_ready(None, [], Snapshot(SnapshotMeta(2, 2, CONF))),  # older snapshot
            lambda: s.create_snapshot(3, CONF, b""),  # not newer
            lambda: s.create_snapshot(4, CONF, b""),  # not committed
            lambda: s.compact(4),  # past the snapshot
            lambda: s.apply_ready(None, [Entry(2**63, 6)], None),  # beyond SQLite integers
        ]
        for call in bad_calls:
            with pytest.raises((StorageError, SnapshotOutOfDateError)):
                call()
            assert dump(s) == before
        assert s.stats.transactions == tx
    with SQLiteStorage(db) as s:
        assert dump(s) == before


def test_a_store_in_use_cannot_be_opened_twice(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(HardState(1, 1, 0), ents(1, 1, 3), None)
        with pytest.raises(StorageError, match="in use by another"):
            SQLiteStorage(db)
        s.apply_ready(HardState(1, 1, 3), [], None)  # the owner is unaffected
    with SQLiteStorage(db) as s:  # and the lock goes with close()
        assert s.initial_state()[0] == HardState(1, 1, 3)


def test_missing_store_is_not_recreated_when_create_is_false(db: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        SQLiteStorage(db, CONF, create=False)
    assert not db.exists()


def test_commit_only_batches_are_written_without_sync_then_full_sync_resumes(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(HardState(1, 1, 0), ents(1, 1, 10), None)
        s.apply_ready(HardState(1, 1, 5), [], None)  # commit only: relearnable
        s.apply_ready(HardState(1, 1, 8), [], None)
        assert (s.stats.transactions, s.stats.synced_transactions) == (3, 1)
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
        s.apply_ready(HardState(2, 0, 8), [], None)  # a new term must be durable
        assert s.stats.synced_transactions == 2
    with SQLiteStorage(db) as s:
        assert s.initial_state()[0] == HardState(2, 0, 8)


def test_one_transaction_per_ready_batch(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        for b in range(10):
            s.apply_ready(HardState(1, 1, b * 5), ents(1, b * 5 + 1, b * 5 + 5), None)
        s.apply_ready(None, [], None)  # nothing to write: no transaction
        assert s.stats.transactions == 10
        assert s.stats.entries_written == 50


# --- parity with MemoryStorage on random operation sequences ------------------------------


def _random_op(rng: random.Random, mem: MemoryStorage, term: int) -> tuple[str, tuple[object, ...], int]:
    """One operation a Raft driver could issue given what the store holds now (some
    deliberately invalid), and the term it used."""
    last, commit, snap = mem.last_index(), mem.hard_state().commit, mem.snapshot().meta.index
    roll = rng.random()
    if roll < 0.55:
        start = last + 1
        if last > commit and rng.random() < 0.3:
            start = rng.randint(commit + 1, last)  # a new leader overwrites an uncommitted suffix
            term += 1
        batch = [Entry(term, i, EntryKind.NORMAL, rng.randbytes(rng.randint(0, 40)))
                 for i in range(start, start + rng.randint(0, 6))]
        new_last = batch[-1].index if batch else last
        new_commit = min(new_last, commit + rng.randint(0, 3))
        hs = HardState(term, rng.randint(0, 3), new_commit) if rng.random() < 0.8 else None
        return "apply_ready", (hs, batch, None), term
    if roll < 0.7:
        return "create_snapshot", (rng.randint(max(1, snap - 2), commit + 2), CONF, rng.randbytes(8)), term
    if roll < 0.8:
        return "compact", (rng.randint(mem.first_index() - 1, snap + 1),), term
    if roll < 0.9:
        idx = max(0, last + rng.randint(-3, 5))
        term += rng.randint(0, 1)
        snap_term = term if idx > last else mem.term(idx) if idx >= mem.first_index() - 1 else term
        hs = HardState(term, 0, max(idx, commit))
        return "apply_ready", (hs, [], Snapshot(SnapshotMeta(idx, snap_term, CONF), b"s")), term
    return "apply_ready", (None, [Entry(term, last + rng.randint(2, 4))], None), term  # a gap


def test_matches_memory_storage_on_random_operations(tmp_path: Path) -> None:
    for seed in range(6):
        rng = random.Random(seed)
        mem = MemoryStorage(CONF)
        path = tmp_path / f"parity{seed}.db"
        sql = SQLiteStorage(path, CONF)
        term = 1
        for step in range(150):
            name, args, term = _random_op(rng, mem, term)
            outcomes = []
            for store in (mem, sql):
                try:
                    getattr(store, name)(*args)
                    outcomes.append(None)
                except StorageError as exc:
                    outcomes.append(type(exc).__name__)
            assert outcomes[0] == outcomes[1], (seed, step, name, args, outcomes)
            assert dump(sql) == dump(mem), (seed, step, name, args)
        sql.close()
        with SQLiteStorage(path) as reopened:
            assert dump(reopened) == dump(mem)


# --- integrity checks on open ----------------------------------------------------------


def _filled(db: Path, n: int = 120) -> None:
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(HardState(3, 2, n // 2), [Entry(3, i, data=b"MARKER-%04d" % i + b"." * 150) for i in range(1, n + 1)], None)


def _tamper(db: Path, sql: str, args: tuple[object, ...] = ()) -> None:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA ignore_check_constraints=ON")  # damage does not ask permission
    con.execute(sql, args)
    con.close()


def test_zero_length_database_file_is_corrupt_not_new(db: Path) -> None:
    _filled(db)
    db.write_bytes(b"")
    with pytest.raises(StorageCorruptError, match="empty"):
        SQLiteStorage(db, CONF)


def test_truncated_database_file_gives_a_clear_error(db: Path) -> None:
    _filled(db)
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(StorageCorruptError) as info:
        SQLiteStorage(db, CONF)
    assert str(db) in str(info.value)


def test_flipped_byte_in_an_entry_is_caught_by_its_checksum(db: Path) -> None:
    _filled(db)
    raw = bytearray(db.read_bytes())
    pos = raw.index(b"MARKER-0042")
    raw[pos + 8] ^= 0x01
    db.write_bytes(bytes(raw))
    with pytest.raises(StorageCorruptError, match="entry 42: checksum mismatch"):
        SQLiteStorage(db, CONF)


def test_random_byte_corruption_is_detected_or_harmless(db: Path) -> None:
    _filled(db)
    with SQLiteStorage(db) as s:
        original = dump(s)
    pristine = db.read_bytes()
    rng = random.Random(1234)
    detected = 0
    for _ in range(40):
        raw = bytearray(pristine)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        db.write_bytes(bytes(raw))
        try:
            with SQLiteStorage(db) as s:
                state = dump(s)
        except StorageCorruptError:
            detected += 1
            continue
        # Undetected damage must be damage to nothing the store holds (free space).
        assert state == original
    assert detected > 0


def test_missing_entry_in_the_middle_is_a_gap(db: Path) -> None:
    _filled(db)
    _tamper(db, "DELETE FROM entries WHERE idx = 50")
    with pytest.raises(StorageCorruptError, match="gap: entry 50 is missing"):
        SQLiteStorage(db)


def test_lost_tail_below_the_commit_index_is_corrupt(db: Path) -> None:
    _filled(db)
    _tamper(db, "DELETE FROM entries WHERE idx > 40")  # commit is 60
    with pytest.raises(StorageCorruptError, match="commit index 60 is beyond the last log index 40"):
        SQLiteStorage(db)


def test_entry_row_that_disagrees_with_its_encoding_is_corrupt(db: Path) -> None:
    _filled(db)
    _tamper(db, "UPDATE entries SET term = 4 WHERE idx = 120")
    with pytest.raises(StorageCorruptError, match="entry row 120"):
        SQLiteStorage(db)


def test_snapshot_disagreeing_with_the_log_is_corrupt(db: Path) -> None:
    _filled(db)
    body = encode_snapshot(Snapshot(SnapshotMeta(10, 2, CONF)))  # log has term 3 at 10
    _tamper(db, "UPDATE snapshot SET idx = 10, term = 2, body = ?, crc = ?", (body, zlib.crc32(body)))
    with pytest.raises(StorageCorruptError, match="snapshot at index 10 has term 2 but the log has term 3"):
        SQLiteStorage(db)


def test_hard_state_term_behind_the_log_is_corrupt(db: Path) -> None:
    _filled(db)
    body = encode_hard_state(HardState(1, 0, 5))
    _tamper(db, "UPDATE hard_state SET body = ?, crc = ?", (body, zlib.crc32(body)))
    with pytest.raises(StorageCorruptError, match="hard state term 1 is behind"):
        SQLiteStorage(db)


def test_newer_schema_version_is_refused(db: Path) -> None:
    _filled(db)
    newer = SCHEMA_VERSION + 1
    _tamper(db, "UPDATE schema_version SET version = ?, crc = ?",
            (newer, zlib.crc32(b"raft sqlite schema %d" % newer)))
    with pytest.raises(StorageVersionError, match=f"schema version {newer}; this build reads"):
        SQLiteStorage(db)


def test_a_damaged_schema_version_is_corrupt_not_another_version(db: Path) -> None:
    _filled(db)
    _tamper(db, "UPDATE schema_version SET version = version + 4")  # bit 2 flipped: 2 -> 6
    with pytest.raises(StorageCorruptError, match="schema version 6: checksum mismatch"):
        SQLiteStorage(db)


def test_a_version_1_store_is_refused_with_what_to_do(db: Path) -> None:
    con = sqlite3.connect(db, isolation_level=None)
    con.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        CREATE TABLE hard_state (id INTEGER PRIMARY KEY CHECK (id = 1), body BLOB NOT NULL, crc INTEGER NOT NULL);
        CREATE TABLE log_start (id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL, term INTEGER NOT NULL);
        CREATE TABLE snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL,
                               term INTEGER NOT NULL, body BLOB NOT NULL, crc INTEGER NOT NULL);
        CREATE TABLE entries (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, body BLOB NOT NULL,
                              crc INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
    """)
    con.close()
    with pytest.raises(StorageVersionError, match="schema version 1") as info:
        SQLiteStorage(db)
    assert "re-add" in info.value.remedy and info.value.path == str(db)


def test_the_compacted_log_start_term_is_checksummed(db: Path) -> None:
    # Issue 8: lowering the term of the last compacted entry by one bit opened without
    # error, and the AppendEntries consistency check then used the wrong term.
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(HardState(3, 1, 8), ents(2, 1, 4) + ents(3, 5, 10), None)
        s.create_snapshot(8, CONF, b"s")
        s.compact(6)
        assert s.term(6) == 3
    _tamper(db, "UPDATE log_start SET term = term - 1")  # bit 0 flipped, 3 -> 2: still <= every later term
    with pytest.raises(StorageCorruptError, match="log_start row says index 6 term 2 but its body says index 6 term 3"):
        SQLiteStorage(db)


def test_the_log_start_row_must_agree_with_its_body(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(HardState(3, 1, 8), ents(3, 1, 10), None)
        s.create_snapshot(8, CONF, b"s")
        s.compact(6)
    _tamper(db, "UPDATE log_start SET idx = 5")
    with pytest.raises(StorageCorruptError, match="log_start row says index 5"):
        SQLiteStorage(db)


@pytest.mark.parametrize("table", ["hard_state", "log_start", "snapshot"])
def test_a_single_row_table_whose_row_lost_its_id_is_corrupt(db: Path, table: str) -> None:
    # Every update names id 1; a row under another id would make them write nothing.
    # (quick_check sees the CHECK constraint; the loader checks the id as well.)
    _filled(db)
    _tamper(db, f"UPDATE {table} SET id = 3")
    with pytest.raises(StorageCorruptError, match=f"CHECK constraint failed in {table}|{table} row has id 3"):
        SQLiteStorage(db)


@pytest.mark.parametrize("damage", [
    "UPDATE sqlite_master SET name = NULL WHERE name = 'entries'",
    "UPDATE sqlite_master SET name = 7 WHERE name = 'snapshot'",
    "UPDATE sqlite_master SET name = CAST(X'fffe41' AS TEXT) WHERE name = 'log_start'",
    "UPDATE sqlite_master SET sql = CAST(X'c328' AS TEXT) WHERE name = 'hard_state'",
    "UPDATE sqlite_master SET sql = replace(sql, 'CHECK (id = 1)', 'CHECK (id = 2)') WHERE name = 'hard_state'",
    "UPDATE sqlite_master SET type = 'view' WHERE name = 'entries'",
    "UPDATE sqlite_master SET tbl_name = NULL WHERE name = 'entries'",
    "DELETE FROM sqlite_master WHERE name = 'log_start'",
], ids=["null-name", "integer-name", "non-utf8-name", "non-utf8-sql", "altered-check", "view",
        "null-tbl-name", "missing-table"])
def test_damage_to_the_table_catalogue_is_corrupt_never_a_python_error(db: Path, damage: str) -> None:
    # Issue 8: catalogue damage raised TypeError or UnicodeDecodeError.
    _filled(db)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA writable_schema=ON")
    con.execute(damage)
    con.close()
    with pytest.raises(StorageCorruptError) as info:
        SQLiteStorage(db)
    assert info.value.path == str(db)
    assert "restore a backup" in info.value.remedy


def test_a_foreign_database_is_refused(db: Path) -> None:
    _tamper(db, "CREATE TABLE something_else (x)")
    with pytest.raises(StorageCorruptError, match="unexpected tables"):
        SQLiteStorage(db, CONF)


def test_garbage_file_is_refused(db: Path) -> None:
    db.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(StorageCorruptError):
        SQLiteStorage(db, CONF)


def test_database_missing_while_its_wal_remains_is_refused(db: Path) -> None:
    Path(f"{db}-wal").write_bytes(b"\x37\x7f\x06\x82" + b"\x00" * 100)
    with pytest.raises(StorageCorruptError, match="write-ahead log exists"):
        SQLiteStorage(db, CONF)


@pytest.mark.parametrize("offset, bit", [(18, 0), (18, 1), (19, 0), (19, 2)])
def test_a_damaged_format_version_in_the_file_header_is_corrupt_not_read_only(db: Path, offset: int, bit: int) -> None:
    # Found by the whole-file bit-flip run (pytest --soak): write version 2 -> 3 made
    # SQLite open the store read-only, and the first write then looked like a permission
    # problem (StorageAccessError) instead of damage.
    _filled(db)
    raw = bytearray(db.read_bytes())
    raw[offset] ^= 1 << bit
    db.write_bytes(bytes(raw))
    with pytest.raises(StorageCorruptError, match="file header says format versions"):
        SQLiteStorage(db)
