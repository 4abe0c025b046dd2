"""Every persisted field is covered by a checksum or a cross-check (issue 8): flip each
bit of a small SQLite store in turn; each copy must either read back exactly the state
that was written (and go on working: a write and a reopen give what they give on the
pristine copy) or refuse to open with StorageCorruptError. Nothing else: no other
exception, no silently different state.

The store is small (six 4 KiB pages: the catalogue, and one page per table) but holds
every kind of row: a hard state, a compacted log start, a snapshot, entries of two
terms, the schema version. Enumeration is by what the bytes are (parsed from the
SQLite file format, https://www.sqlite.org/fileformat.html §1.6):

* CI: every bit of every live byte of the Raft tables' pages (page headers, cell
  pointers, rows), plus a seeded sample of the catalogue page (the file header and
  sqlite_master) and of the unallocated bytes.
* ``pytest --soak``: every bit of the whole file, page by page (about 200,000 copies,
  10-15 minutes on one core; ``-n 2`` spreads the pages).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from consensus.sqlite_storage import SQLiteStorage, StorageCorruptError
from consensus.types import ConfState, Entry, HardState

from _storage_view import dump

CONF = ConfState.of([1, 2, 3])
PAGE = 4096
#: The CI sample sizes (seeded, so a failure replays).
CATALOGUE_SAMPLE = 600
FREE_SAMPLE = 200


def _build(db: Path) -> None:
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(HardState(2, 1, 4), [Entry(1, 1, data=b"a"), Entry(1, 2, data=b"b"),
                                           Entry(2, 3, data=b"c"), Entry(2, 4, data=b"d"),
                                           Entry(2, 5, data=b"e")], None)
        s.create_snapshot(3, CONF, b"snap")
        s.compact(2)  # the log start (index 2, term 1) is a row of its own


def _after_write(s: SQLiteStorage) -> None:
    s.apply_ready(HardState(3, 2, 6), [Entry(3, 6, data=b"f")], None)


@dataclass(frozen=True)
class Layout:
    """Byte offsets of the store file by what they hold."""

    size: int
    #: Page headers, cell pointer arrays and cell contents of the Raft tables' pages.
    rows: tuple[int, ...]
    #: Page 1: the 100-byte file header and sqlite_master (the table catalogue).
    catalogue: tuple[int, ...]
    #: Unallocated space (between the cell pointers and the cell contents) and freed cells.
    free: tuple[int, ...]


def _layout(raw: bytes) -> Layout:
    assert len(raw) % PAGE == 0
    rows: list[int] = []
    catalogue: list[int] = []
    free: list[int] = []
    for p in range(len(raw) // PAGE):
        base = p * PAGE
        hdr = base + (100 if p == 0 else 0)
        kind = raw[hdr]
        assert kind in (2, 5, 10, 13), f"page {p + 1} is not a b-tree page (type {kind})"
        ncells = int.from_bytes(raw[hdr + 3:hdr + 5], "big")
        content = int.from_bytes(raw[hdr + 5:hdr + 7], "big") or 65536
        pointers_end = hdr + (12 if kind in (2, 5) else 8) + 2 * ncells
        # Freeblocks: cells freed inside the content area, chained from header bytes 1-2
        # (each starts with the next one's offset and its own size).
        freed: set[int] = set()
        block = int.from_bytes(raw[hdr + 1:hdr + 3], "big")
        while block:
            size = int.from_bytes(raw[base + block + 2:base + block + 4], "big")
            freed.update(range(base + block + 4, base + block + size))  # its link stays live
            block = int.from_bytes(raw[base + block:base + block + 2], "big")
        live = [o for o in range(base, base + PAGE)
                if not pointers_end <= o < base + content and o not in freed]
        (catalogue if p == 0 else rows).extend(live)
        free.extend(sorted(set(range(pointers_end, base + content)) | freed))
    return Layout(len(raw), tuple(rows), tuple(catalogue), tuple(free))


@dataclass
class Store:
    pristine: bytes
    state: tuple[object, ...]
    after_write: tuple[object, ...]
    layout: Layout
    workdir: Path


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    # Copies go to tmpfs when there is one: the test opens thousands of them.
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    workdir = Path(tempfile.mkdtemp(prefix="raft-bitflip-", dir=base))
    try:
        db = workdir / "pristine.db"
        _build(db)
        assert sorted(p.name for p in workdir.iterdir()) == ["pristine.db"], "WAL not checkpointed on close"
        pristine = db.read_bytes()
        with SQLiteStorage(db) as s:
            state = dump(s)
            _after_write(s)
        with SQLiteStorage(db) as s:
            after = dump(s)
        yield Store(pristine, state, after, _layout(pristine), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _check_flips(store: Store, bits: list[int]) -> tuple[int, int]:
    """Flip each bit (an absolute bit offset) in its own copy; return (opened, refused)."""
    db = store.workdir / "flipped.db"
    opened = refused = 0
    for bit in bits:
        raw = bytearray(store.pristine)
        raw[bit // 8] ^= 1 << (bit % 8)
        for leftover in store.workdir.glob("flipped.db*"):
            leftover.unlink()
        db.write_bytes(bytes(raw))
        where = f"bit {bit % 8} of byte {bit // 8} (page {bit // 8 // PAGE + 1}, offset {bit // 8 % PAGE})"
        try:
            with SQLiteStorage(db, create=False) as s:
                assert dump(s) == store.state, f"{where}: opened with different state"
                _after_write(s)
            with SQLiteStorage(db, create=False) as s:
                assert dump(s) == store.after_write, f"{where}: a write after opening went wrong"
            opened += 1
        except StorageCorruptError:
            refused += 1
        except Exception as exc:  # the point of the test: nothing but StorageCorruptError
            raise AssertionError(f"{where}: {type(exc).__name__}: {exc}") from exc
    return opened, refused


def _bits(offsets: tuple[int, ...]) -> list[int]:
    return [8 * o + b for o in offsets for b in range(8)]


def test_every_bit_of_the_raft_rows_is_covered(store: Store) -> None:
    bits = _bits(store.layout.rows)
    opened, refused = _check_flips(store, bits)
    print(f"\n{len(bits)} flips in the Raft tables' pages: {refused} refused, {opened} harmless")
    # Almost all of these bytes are values, checksums or the b-tree structure around them
    # (the harmless few: the ignored stored copy of an INTEGER PRIMARY KEY and the like).
    assert refused > 0.95 * len(bits)


def test_a_sample_of_the_catalogue_and_free_space_is_covered(store: Store) -> None:
    rng = random.Random(8)
    bits = rng.sample(_bits(store.layout.catalogue), CATALOGUE_SAMPLE) + \
        rng.sample(_bits(store.layout.free), FREE_SAMPLE)
    opened, refused = _check_flips(store, bits)
    print(f"\n{len(bits)} sampled flips in the catalogue and free space: {refused} refused, {opened} harmless")
    assert refused > 0


@pytest.mark.soak
@pytest.mark.parametrize("page", range(1, 7))
def test_every_bit_of_the_file_is_covered(store: Store, page: int) -> None:
    assert store.layout.size == 6 * PAGE
    offsets = tuple(range((page - 1) * PAGE, page * PAGE))
    opened, refused = _check_flips(store, _bits(offsets))
    print(f"\npage {page}: {refused} refused, {opened} harmless")
