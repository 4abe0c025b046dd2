"""SQLiteStorage write throughput and sync cost, for the Raspberry Pi SD-card budget:
Ready batches per second, entries per second, and sync system calls (fsync/fdatasync)
per batch, counted by strace when it is installed (otherwise only SQLite transactions
are reported: one WAL sync each under synchronous=FULL).

    python bench/consensus_storage.py [--seconds 3] [--dir /path/on/the/target/disk]

Run it on the disk that matters: /tmp may be a RAM disk, where a sync costs nothing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consensus.sqlite_storage import SQLiteStorage  # noqa: E402
from consensus.types import ConfState, Entry, HardState  # noqa: E402

_SYNC_RE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$", re.M)


def _write(path: Path, batch: int, payload: int, seconds: float | None, batches: int | None) -> tuple[int, float, int]:
    """Write batches until the time or count runs out; return (batches, elapsed, synced
    transactions). ``batch`` entries per Ready; 0 means commit-index-only Readies."""
    data = b"x" * payload
    with SQLiteStorage(path, ConfState.of([1, 2, 3])) as s:
        if batch == 0 and s.last_index() == 0:
            s.apply_ready(HardState(1, 1, 0), [Entry(1, i, data=data) for i in range(1, 100_001)], None)
        tx0 = s.stats.synced_transactions
        last = s.last_index()
        commit = 0
        n = 0
        t0 = time.perf_counter()
        while True:
            if batch == 0:
                commit = min(commit + 1, last)
                s.apply_ready(HardState(1, 1, commit), [], None)
            else:
                ents = [Entry(1, last + i + 1, data=data) for i in range(batch)]
                last += batch
                s.apply_ready(HardState(1, 1, last), ents, None)
            n += 1
            if batches is not None and n >= batches:
                break
            if seconds is not None and time.perf_counter() - t0 >= seconds:
                break
        return n, time.perf_counter() - t0, s.stats.synced_transactions - tx0


def _count_syncs(path: Path, batch: int, payload: int, batches: int) -> int | None:
    if shutil.which("strace") is None:
        return None
    # Creation (and, for commit-only batches, the initial log) is not counted.
    if batch == 0:
        _write(path, 0, payload, None, 1)
    else:
        SQLiteStorage(path, ConfState.of([1, 2, 3])).close()
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from pathlib import Path\n"
            "from bench.consensus_storage import _write\n"
            f"_write(Path({str(path)!r}), {batch}, {payload}, None, {batches})\n")
    proc = subprocess.run(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", sys.executable, "-c", code],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    if proc.returncode != 0:
        return None
    return sum(int(m.group(1)) for m in _SYNC_RE.finditer(proc.stderr))


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description="SQLiteStorage append throughput and syncs per batch")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--payload", type=int, default=100)
    p.add_argument("--dir", type=Path, default=None, help="directory on the disk to measure")
    args = p.parse_args()
    if args.seconds <= 0 or args.payload < 0:
        p.error("--seconds must be positive and --payload non-negative")
    if args.dir is not None and not args.dir.is_dir():
        p.error(f"--dir {args.dir} is not a directory")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"SQLiteStorage (WAL, synchronous=FULL) in {tmp}, entries of {args.payload} B")
        print(f"{'entries/batch':>13} {'batches/s':>10} {'entries/s':>10} {'synced tx':>9} {'syncs/batch':>12}")
        for batch in (1, 10, 100, 0):
            db = Path(tmp) / f"tput{batch}.db"
            n, dt, tx = _write(db, batch, args.payload, args.seconds, None)
            sync_db = Path(tmp) / f"sync{batch}.db"
            syncs = _count_syncs(sync_db, batch, args.payload, 200)
            per = f"{syncs / 200:.2f}" if syncs is not None else "n/a"
            label = str(batch) if batch else "commit only"
            print(f"{label:>13} {n / dt:>10.0f} {n * batch / dt:>10.0f} {tx / n:>9.2f} {per:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
