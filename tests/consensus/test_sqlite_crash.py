"""SQLiteStorage under process death: a real writer process is killed with SIGKILL at
seeded random points while it writes Ready batches, and the reopened store must hold
every batch the writer reported durable and no torn batch (it equals the in-memory
model after exactly the reported batches, or after one more that finished but was not
reported yet). Also counts the fsyncs a batch costs, with strace, when it is available.

Run as a script, this file is the writer: ``python test_sqlite_crash.py DB SEED``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.sqlite_storage import SQLiteStorage
from consensus.storage import MemoryStorage, Storage
from consensus.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta

from _storage_view import dump

CONF = ConfState.of([1, 2, 3])
REPO = Path(__file__).resolve().parents[2]


def batches(seed: int) -> Iterator[tuple[str, tuple[object, ...]]]:
    """An endless, seeded sequence of single-transaction writes a Raft driver makes:
    Ready batches (votes, appends, conflicting appends, commits, snapshot installs) and
    log compaction. Valid by construction; both the writer and the checker replay it."""
    rng = random.Random(seed)
    term, last, commit, snap, offset = 1, 0, 0, 0, 0
    while True:
        roll = rng.random()
        if roll < 0.8:
            start = last + 1
            if last > commit and rng.random() < 0.2:
                start = rng.randint(commit + 1, last)  # new leader overwrites the uncommitted tail
                term += 1
            n = rng.randint(1, 20)
            batch = [Entry(term, i, data=rng.randbytes(rng.randint(0, 300))) for i in range(start, start + n)]
            last = batch[-1].index
            commit = min(last, commit + rng.randint(0, 12))
            yield "apply_ready", (HardState(term, rng.randint(1, 3), commit), batch, None)
        elif roll < 0.88 and commit > snap:
            snap = rng.randint(snap + 1, commit)
            yield "create_snapshot", (snap, CONF, rng.randbytes(64))
        elif roll < 0.96 and snap > offset:
            offset = rng.randint(offset + 1, snap)
            yield "compact", (offset,)
        else:
            # A leader's InstallSnapshot far past our log.
            term += 1
            snap = offset = last = commit = last + rng.randint(1, 50)
            yield "apply_ready", (HardState(term, 0, commit), [], Snapshot(SnapshotMeta(snap, term, CONF), rng.randbytes(200)))


def apply(store: Storage, op: tuple[str, tuple[object, ...]]) -> None:
    name, args = op
    getattr(store, name)(*args)


def model_after(seed: int, n: int) -> MemoryStorage:
    mem = MemoryStorage(CONF)
    gen = batches(seed)
    for _ in range(n):
        apply(mem, next(gen))
    return mem


def _writer(db: str, seed: int, limit: int) -> None:
    store = SQLiteStorage(db, CONF)
    gen = batches(seed)
    for n in range(1, limit + 1):
        apply(store, next(gen))
        # Reported only after the write returned: from here on it must survive.
        os.write(1, f"{n}\n".encode())
    store.close()


def _run_and_kill(db: Path, seed: int, kill_after: int) -> int:
    """Start a writer, SIGKILL it once it has reported ``kill_after`` batches; return
    the highest batch it reported."""
    proc = subprocess.Popen(
        [sys.executable, __file__, str(db), str(seed), "100000"],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout is not None
    reported = 0
    try:
        for line in proc.stdout:
            reported = int(line)
            if reported >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        # Batches reported between our read and the kill are in the pipe: count them too.
        rest = proc.stdout.read()
        proc.wait(timeout=30)
    for line in rest.split():
        reported = max(reported, int(line))
    assert proc.returncode == -signal.SIGKILL, "the writer should have died by SIGKILL"
    return reported


def test_sigkill_mid_write_loses_no_reported_batch_and_tears_none(tmp_path: Path) -> None:
    rng = random.Random(99)
    for round_no in range(6):
        seed = rng.randrange(1 << 30)
        db = tmp_path / f"crash{round_no}.db"
        reported = _run_and_kill(db, seed, kill_after=rng.randint(1, 400))
        with SQLiteStorage(db, create=False) as s:
            got = dump(s)
        # The batch in flight at the kill may have committed without being reported.
        candidates = {n: dump(model_after(seed, n)) for n in (reported, reported + 1)}
        matches = [n for n, want in candidates.items() if want == got]
        assert matches, f"round {round_no} seed {seed}: store after kill matches neither batch {reported} nor {reported + 1}"


def test_killed_store_reopens_and_keeps_writing(tmp_path: Path) -> None:
    db = tmp_path / "again.db"
    seed = 5
    reported = _run_and_kill(db, seed, kill_after=50)
    with SQLiteStorage(db, create=False) as s:
        got = dump(s)
        n = next(n for n in (reported, reported + 1) if dump(model_after(seed, n)) == got)
        gen = batches(seed)
        for _ in range(n):
            next(gen)
        for _ in range(30):
            apply(s, next(gen))
    with SQLiteStorage(db, create=False) as s:
        assert dump(s) == dump(model_after(seed, n + 30))


def test_torn_write_ahead_log_tail_recovers_a_whole_batch_prefix(tmp_path: Path) -> None:
    # A power cut can leave the end of the WAL half written. Cut the WAL of a killed
    # writer at seeded random offsets: the store must reopen as exactly the state after
    # some whole number of batches, never a torn batch and never an error.
    seed = 77
    db = tmp_path / "torn.db"
    reported = _run_and_kill(db, seed, kill_after=150)
    wal = Path(f"{db}-wal")
    assert wal.exists() and wal.stat().st_size > 0
    pristine_db, pristine_wal = db.read_bytes(), wal.read_bytes()
    states = []  # the model after 0, 1, 2 ... batches
    mem = MemoryStorage(CONF)
    gen = batches(seed)
    states.append(dump(mem))
    for _ in range(reported + 1):
        apply(mem, next(gen))
        states.append(dump(mem))
    rng = random.Random(seed)
    recovered = []
    for _ in range(8):
        cut = rng.randrange(32, len(pristine_wal))
        db.write_bytes(pristine_db)
        wal.write_bytes(pristine_wal[:cut])
        Path(f"{db}-shm").unlink(missing_ok=True)
        with SQLiteStorage(db, create=False) as s:
            got = dump(s)
        assert got in states, f"WAL cut at {cut} bytes left a state that is no batch prefix"
        recovered.append(states.index(got))
    assert len(set(recovered)) > 1  # different cuts really lost different tails


def _strace_syncs(db: Path, body: str) -> int:
    """Sync system calls made by a process that opens ``db`` and runs ``body``."""
    script = (
        "import sys\n"
        "from consensus.sqlite_storage import SQLiteStorage\n"
        "from consensus.types import Entry, HardState\n"
        "s = SQLiteStorage(sys.argv[1])\n" + body + "s.close()\n"
    )
    proc = subprocess.run(
        ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync,sync_file_range", sys.executable, "-c", script, str(db)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    if proc.returncode != 0 and "ptrace" in proc.stderr.lower():
        pytest.skip("ptrace is not permitted here")
    assert proc.returncode == 0, proc.stderr
    return sum(int(m.group(1)) for m in re.finditer(
        r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(?:fsync|fdatasync|sync_file_range)\s*$", proc.stderr, re.M))


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_each_batch_costs_one_fsync_and_a_commit_only_batch_none(tmp_path: Path) -> None:
    db = tmp_path / "fsync.db"
    SQLiteStorage(db, CONF).close()  # creation's own syncs are not counted
    n = 100
    appends = _strace_syncs(db, (
        f"for b in range({n}):\n"
        "    s.apply_ready(HardState(1, 1, b * 10), [Entry(1, b * 10 + i + 1, data=b'z' * 200) for i in range(10)], None)\n"
    ))
    commits = _strace_syncs(db, (
        f"for b in range({n}):\n"
        f"    s.apply_ready(HardState(1, 1, {n * 10 - n} + b), [], None)\n"
    ))
    print(f"\n{appends} sync calls for {n} append batches ({appends / n:.2f} per batch); "
          f"{commits} for {n} commit-only batches")
    # One WAL sync per batch that must be durable, plus a few for the checkpoint at close.
    assert n <= appends <= n + 10
    assert commits <= 10
    with SQLiteStorage(db, create=False) as s:
        assert s.initial_state()[0].commit == n * 10 - 1


if __name__ == "__main__":
    _writer(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
