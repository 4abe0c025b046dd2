"""MemoryStorage: the Storage contract (etcd storage.go semantics)."""

from __future__ import annotations

import pytest

from consensus.storage import (
    CompactedError,
    MemoryStorage,
    SnapshotOutOfDateError,
    StorageError,
    UnavailableError,
)
from consensus.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta

CS = ConfState.of([1, 2, 3])


def _storage(n: int = 5) -> MemoryStorage:
    s = MemoryStorage(CS)
    s.apply_ready(HardState(1, 1, n), [Entry(1, i, data=b"%d" % i) for i in range(1, n + 1)], None)
    return s


def test_initial_state_is_bootstrap_configuration_and_empty_log():
    s = MemoryStorage(CS)
    assert s.initial_state() == (HardState(), CS)
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
    assert s.entries(1, 1) == []


def test_entries_range_and_size_limit():
    s = _storage()
    assert [e.index for e in s.entries(2, 5)] == [2, 3, 4]
    assert [e.index for e in s.entries(2, 6, max_bytes=1)] == [2]  # at least one
    assert [e.index for e in s.entries(2, 6, max_bytes=2 * 17)] == [2, 3]
    with pytest.raises(UnavailableError):
        s.entries(2, 7)
    with pytest.raises(CompactedError):
        s.entries(0, 2)


def test_append_truncates_a_conflicting_suffix():
    s = _storage()
    s.apply_ready(None, [Entry(2, 3), Entry(2, 4)], None)
    assert [(e.index, e.term) for e in s.entries(1, 5)] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert s.last_index() == 4


def test_append_with_a_gap_is_refused_and_changes_nothing():
    s = _storage()
    with pytest.raises(StorageError):
        s.apply_ready(HardState(9, 0, 0), [Entry(1, 9)], None)
    assert s.last_index() == 5 and s.hard_state() == HardState(1, 1, 5)


def test_snapshot_compact_and_term_of_the_dummy_entry():
    s = _storage()
    snap = s.create_snapshot(3, CS, b"state@3")
    assert snap.meta == SnapshotMeta(3, 1, CS)
    s.compact(3)
    assert (s.first_index(), s.last_index(), s.term(3)) == (4, 5, 1)
    with pytest.raises(CompactedError):
        s.term(2)
    with pytest.raises(SnapshotOutOfDateError):
        s.create_snapshot(2, CS, b"old")
    with pytest.raises(StorageError):
        s.compact(5)  # past the snapshot: those entries would be unrecoverable


def test_apply_snapshot_keeps_matching_suffix_else_discards_log():
    s = _storage()
    s.apply_ready(None, [], Snapshot(SnapshotMeta(3, 1, CS), b"s"))
    assert (s.first_index(), s.last_index()) == (4, 5)  # entries after it kept (§7)
    t = _storage()
    t.apply_ready(HardState(3, 0, 10), [], Snapshot(SnapshotMeta(10, 3, CS), b"s"))
    assert (t.first_index(), t.last_index(), t.term(10)) == (11, 10, 3)
    assert t.initial_state() == (HardState(3, 0, 10), CS)
    with pytest.raises(SnapshotOutOfDateError):
        t.apply_ready(None, [], Snapshot(SnapshotMeta(9, 3, CS), b"old"))


def test_snapshot_index_must_be_committed():
    s = MemoryStorage(CS)
    s.apply_ready(HardState(1, 0, 1), [Entry(1, 1), Entry(1, 2)], None)
    with pytest.raises(StorageError):
        s.create_snapshot(2, CS, b"")
