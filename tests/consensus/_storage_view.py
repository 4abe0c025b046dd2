"""Everything a Storage exposes, as one comparable value: for differential tests
(MemoryStorage against SQLiteStorage, a store against its model after a crash)."""

from __future__ import annotations

from consensus.storage import Storage


def dump(s: Storage) -> tuple[object, ...]:
    """Hard state, configuration, snapshot, bounds, every term from the snapshot's on,
    and every entry."""
    first, last = s.first_index(), s.last_index()
    hs, cs = s.initial_state()
    return (
        hs,
        cs,
        s.snapshot(),
        first,
        last,
        [s.term(i) for i in range(first - 1, last + 1)],
        s.entries(first, last + 1),
    )
