"""Ported from etcd-io/raft storage_test.go (term, entries, first/last index, compact,
create/apply snapshot, append with truncation), run against both storages, plus a
seeded differential run: MemoryStorage and SQLiteStorage must agree on every read
after every write, and a reopened SQLite store must equal the one that wrote it."""

from __future__ import annotations

import random

import pytest

from consensus import (
    CompactedError,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    SQLiteStorage,
    Snapshot,
    SnapshotMeta,
    StorageError,
    UnavailableError,
)

from _storage_view import dump

CS = ConfState.of([1, 2, 3])


@pytest.fixture(params=["memory", "sqlite"])
def make(request, tmp_path):
    made = []

    def _make():
        if request.param == "memory":
            return MemoryStorage(CS)
        s = SQLiteStorage(tmp_path / f"raft{len(made)}.db", CS)
        made.append(s)
        return s

    yield _make
    for s in made:
        s.close()


def _filled(make, terms=(3, 4, 5), start=3):
    """etcd's fixture: a snapshot at 3 (term 3), entries 4 and 5 (terms 4, 5)."""
    s = make()
    s.apply_ready(HardState(5, 0, 0), [], Snapshot(SnapshotMeta(start, terms[0], CS), b"s"))
    s.apply_ready(HardState(5, 0, 5), [Entry(t, start + k) for k, t in enumerate(terms)][1:], None)
    return s


@pytest.mark.parametrize("index,want", [(2, CompactedError), (3, 3), (4, 4), (5, 5),
                                        (6, UnavailableError)])
def test_storage_term(make, index, want):
    s = _filled(make)
    if isinstance(want, type):
        with pytest.raises(want):
            s.term(index)
    else:
        assert s.term(index) == want


@pytest.mark.parametrize("lo,hi,max_bytes,want", [
    (2, 6, None, CompactedError), (3, 4, None, CompactedError),
    (4, 5, None, [4]), (4, 6, None, [4, 5]),
    (4, 6, 0, [4]),  # at least one entry even over the byte limit
    (4, 7, None, UnavailableError),
])
def test_storage_entries(make, lo, hi, max_bytes, want):
    s = _filled(make)
    if isinstance(want, type):
        with pytest.raises(want):
            s.entries(lo, hi, max_bytes)
    else:
        assert [e.index for e in s.entries(lo, hi, max_bytes)] == want


def test_storage_first_and_last_index(make):
    s = _filled(make)
    assert (s.first_index(), s.last_index()) == (4, 5)
    s.apply_ready(None, [Entry(5, 6)], None)
    assert s.last_index() == 6
    s.create_snapshot(4, CS, b"x") if s.hard_state().commit >= 4 else None
    s.compact(4)
    assert s.first_index() == 5


@pytest.mark.parametrize("index,ok", [(2, False), (3, False), (4, True), (5, True)])
def test_storage_compact(make, index, ok):
    s = _filled(make)
    s.create_snapshot(5, CS, b"x")
    if not ok:
        with pytest.raises(CompactedError):
            s.compact(index)
        return
    s.compact(index)
    assert s.first_index() == index + 1 and s.term(index) == {4: 4, 5: 5}[index]


@pytest.mark.parametrize("ents,want_terms", [
    ([(3, 3), (4, 4), (5, 5)], [3, 4, 5]),  # same: nothing changes
    ([(3, 3), (6, 4), (6, 5)], [3, 6, 6]),  # conflict at 4: truncate and replace
    ([(3, 3), (4, 4), (5, 5), (5, 6)], [3, 4, 5, 5]),  # extend
    ([(3, 2), (3, 3), (5, 4)], [3, 5]),  # starts inside the snapshot: those are ignored
    ([(6, 4)], [3, 6]),  # truncate at 4
    ([(6, 6)], [3, 4, 5, 6]),  # directly after
])
def test_storage_append(make, ents, want_terms):
    s = _filled(make)
    s.apply_ready(None, [Entry(t, i) for t, i in ents], None)
    assert [s.term(i) for i in range(3, s.last_index() + 1)] == want_terms


def test_storage_append_with_a_gap_is_refused(make):
    s = _filled(make)
    with pytest.raises(StorageError):
        s.apply_ready(None, [Entry(5, 7)], None)
    assert s.last_index() == 5


def test_storage_append_below_the_previous_term_is_refused(make):
    # Regression: MemoryStorage used to accept this (SQLiteStorage refused it), leaving
    # a log whose terms decrease, which the core refuses at restart.
    s = _filled(make)
    with pytest.raises(StorageError, match="behind the term"):
        s.apply_ready(None, [Entry(4, 6)], None)
    assert [s.term(i) for i in range(3, s.last_index() + 1)] == [3, 4, 5]


def test_storage_create_snapshot_and_apply_older_snapshot(make):
    s = _filled(make)
    snap = s.create_snapshot(4, ConfState.of([1, 2]), b"data")
    assert (snap.meta.index, snap.meta.term, snap.data) == (4, 4, b"data")
    assert s.snapshot() == snap
    with pytest.raises(StorageError):
        s.apply_ready(None, [], Snapshot(SnapshotMeta(4, 4, CS), b"old"))


def test_storage_apply_snapshot_keeps_a_matching_suffix_and_drops_a_conflicting_one(make):
    s = _filled(make)
    s.apply_ready(None, [], Snapshot(SnapshotMeta(4, 4, CS), b"m"))
    assert (s.first_index(), s.last_index(), s.term(5)) == (5, 5, 5)
    s2 = _filled(make)
    s2.apply_ready(None, [], Snapshot(SnapshotMeta(5, 9, CS), b"c"))
    assert (s2.first_index(), s2.last_index(), s2.term(5)) == (6, 5, 9)


@pytest.mark.parametrize("seed", range(6))
def test_memory_and_sqlite_storage_agree_on_random_histories(tmp_path, seed):
    rng = random.Random(seed)
    mem = MemoryStorage(CS)
    path = tmp_path / "raft.db"
    sql = SQLiteStorage(path, CS)
    term = 1
    try:
        for step in range(150):
            op = rng.random()
            try:
                if op < 0.6:
                    last = mem.last_index()
                    first = max(mem.first_index(), mem.hard_state().commit + 1)
                    start = rng.randint(first, last + 1)
                    if rng.random() < 0.2:
                        term += 1
                    ents = [Entry(term, start + k, data=bytes([rng.randrange(256)]) * rng.randrange(4))
                            for k in range(rng.randrange(0, 5))]
                    new_last = start + len(ents) - 1 if ents else last
                    commit = rng.randint(mem.hard_state().commit, max(mem.hard_state().commit,
                                                                      min(new_last, last)))
                    hs = HardState(term, rng.choice([0, 1, 2]), commit)
                    for s in (mem, sql):
                        s.apply_ready(hs, ents, None)
                elif op < 0.75:
                    c = mem.hard_state().commit
                    if c > mem.snapshot().meta.index:
                        idx = rng.randint(mem.snapshot().meta.index + 1, c)
                        for s in (mem, sql):
                            s.create_snapshot(idx, CS, b"snap%d" % step)
                elif op < 0.85:
                    si = mem.snapshot().meta.index
                    if si >= mem.first_index():
                        idx = rng.randint(mem.first_index(), si)
                        for s in (mem, sql):
                            s.compact(idx)
                else:
                    # A leader's snapshot arriving: ahead of our log or inside it.
                    idx = mem.last_index() + rng.randint(-2, 3)
                    if idx > mem.snapshot().meta.index and idx > mem.hard_state().commit:
                        try:
                            t = mem.term(idx)
                        except (CompactedError, UnavailableError):
                            t = term
                        t = t if rng.random() < 0.5 else term
                        snap = Snapshot(SnapshotMeta(idx, t, CS), b"remote%d" % step)
                        hs = HardState(max(term, t), 0, idx)
                        term = max(term, t)
                        for s in (mem, sql):
                            s.apply_ready(hs, [], snap)
            except AssertionError:
                raise
            assert dump(mem) == dump(sql), step
            if rng.random() < 0.1:
                sql.close()
                sql = SQLiteStorage(path, create=False)
                assert dump(mem) == dump(sql), ("reopen", step)
    finally:
        sql.close()
