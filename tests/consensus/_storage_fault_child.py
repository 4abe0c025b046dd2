"""Child process for tests/consensus/test_sqlite_faults.py: one storage action against a
real filesystem condition the parent set up (a read-only mount, a full tmpfs, file modes
with the process's override capabilities dropped), printed as one JSON line.

    python _storage_fault_child.py ACTION PATH

``open``: open (create if missing) and write one hard state; ``fill``: create, put a
64 KiB ballast file beside the store, then append 4 KiB entries until a write fails;
``check``: open and report what the store holds.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from consensus import ConfState, Entry, HardState, SQLiteStorage, StorageError  # noqa: E402

CONF = ConfState.of([1, 2, 3])


def _error(exc: StorageError) -> dict[str, object]:
    return {"error": type(exc).__name__, "message": str(exc), "path": getattr(exc, "path", None),
            "problem": getattr(exc, "problem", None), "remedy": getattr(exc, "remedy", None)}


def _state(s: SQLiteStorage) -> dict[str, object]:
    hs, _ = s.initial_state()
    return {"term": hs.term, "commit": hs.commit, "last_index": s.last_index()}


def main(action: str, path: Path) -> dict[str, object]:
    if action == "fill":
        with SQLiteStorage(path, CONF) as s:
            (path.parent / "ballast").write_bytes(b"\0" * 65536)
            last_ok = s.last_index()
            for i in range(1, 100_000):
                try:
                    s.apply_ready(HardState(1, 0, 0), [Entry(1, i, data=os.urandom(4096))], None)
                except StorageError as exc:
                    out = _error(exc)
                    out["last_ok"] = last_ok
                    out["still"] = _state(s)
                    return out
                last_ok = i
        return {"error": None}
    try:
        with SQLiteStorage(path, CONF) as s:
            if action == "open":
                hs, _ = s.initial_state()
                s.apply_ready(HardState(hs.term + 1, 0, hs.commit), [], None)
            return {"error": None, **_state(s)}
    except StorageError as exc:
        return _error(exc)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]))), flush=True)
