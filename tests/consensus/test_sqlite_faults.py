"""The right error for each storage failure (issue 8), against the real conditions, not
mocks: a read-only filesystem and a full disk are tmpfs mounts in a mount namespace
this test creates (``unshare -m`` as root, ``unshare -rm`` otherwise); missing
permissions are file modes, with the override capabilities dropped when the tests run
as root (root ignores modes otherwise).

* A healthy store on a read-only filesystem, or without write permission, is
  StorageAccessError naming the path and the permission: never "corrupt, wipe the
  node", and the store opens unchanged once writable again.
* A full disk is StorageFullError naming the place and what to do; creating a store on
  a full disk leaves no ``.creating`` file behind; the last batch written before the
  disk filled is all there after space is freed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pytest

from consensus import SQLiteStorage, StorageAccessError, StorageFullError, StorageIOError
from consensus.types import ConfState, HardState

CHILD = Path(__file__).with_name("_storage_fault_child.py")
CONF = ConfState.of([1, 2, 3])


@lru_cache(maxsize=None)
def _namespace_prefix() -> tuple[str, ...] | None:
    """The command prefix that runs a shell in a new mount namespace where it may mount
    tmpfs, or None when this machine allows neither kind."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for prefix in ((unshare, "-m"), (unshare, "-r", "-m")):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                               capture_output=True, timeout=30)
        if probe.returncode == 0:
            return prefix
    return None


needs_mount_namespace = pytest.mark.skipif(
    _namespace_prefix() is None,
    reason="needs a mount namespace to mount a real read-only or full filesystem "
    "(unshare -m as root, or unprivileged user namespaces); the file-mode test still runs")


def _in_namespace(script: str, mountpoint: Path, size: str) -> list[dict[str, object]]:
    """Run ``script`` (sh) in a fresh mount namespace with a tmpfs of ``size`` mounted
    on ``mountpoint``; $CHILD runs the child with its arguments. Returns its JSON lines."""
    prefix = _namespace_prefix()
    assert prefix is not None
    child = f"{sys.executable} {CHILD}"
    body = f"set -e\nmount -t tmpfs -o size={size},mode=0755 tmpfs {mountpoint}\nCHILD='{child}'\n{script}"
    proc = subprocess.run([*prefix, "sh", "-c", body], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.fixture
def mountpoint() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="raft-fault-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- read-only ---------------------------------------------------------------------------


@needs_mount_namespace
def test_a_healthy_store_on_a_read_only_filesystem_is_an_access_error(mountpoint: Path) -> None:
    db = mountpoint / "raft.db"
    out = _in_namespace(f"""
$CHILD open {db}
mount -o remount,ro {mountpoint}
$CHILD open {db}
$CHILD check {db}
mount -o remount,rw {mountpoint}
$CHILD check {db}
""", mountpoint, "1m")
    created, refused, refused_read, reopened = out
    assert created["error"] is None and created["term"] == 1
    for o in (refused, refused_read):
        assert o["error"] == "StorageAccessError", o
        assert o["path"] == str(db)
        assert "mounted read-only" in str(o["problem"])
        assert "do not wipe" in str(o["remedy"]) and "corrupt" not in str(o["message"])
    assert reopened == created  # intact: nothing was changed by the refused opens


def _without_override(cmd: list[str]) -> list[str]:
    """Root ignores file modes; drop the capabilities that let it, so modes apply."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv(1): file modes cannot be made to apply")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--", *cmd]


def _child(action: str, db: Path) -> dict[str, object]:
    proc = subprocess.run(_without_override([sys.executable, str(CHILD), action, str(db)]),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("locked", ["file", "directory", "both"])
def test_a_store_without_write_permission_is_an_access_error_naming_it(mountpoint: Path, locked: str) -> None:
    db = mountpoint / "data" / "raft.db"
    with SQLiteStorage(db, CONF) as s:
        s.apply_ready(HardState(4, 2, 0), [], None)
    directory = db.parent
    try:
        if locked in ("file", "both"):
            db.chmod(0o444)
        if locked in ("directory", "both"):
            directory.chmod(0o555)
        out = _child("open", db)
        assert out["error"] == "StorageAccessError", out
        assert out["path"] == str(db)
        named = str(directory) if locked == "directory" else str(db)
        assert named in str(out["problem"]) and "permission" in str(out["problem"])
        assert "do not wipe" in str(out["remedy"]) and "corrupt" not in str(out["message"])
    finally:
        directory.chmod(0o755)
        db.chmod(0o644)
    with SQLiteStorage(db) as s:
        assert s.initial_state()[0] == HardState(4, 2, 0)


# --- full disk ---------------------------------------------------------------------------


@needs_mount_namespace
def test_creating_a_store_on_a_full_disk_is_a_full_error_and_leaves_nothing(mountpoint: Path) -> None:
    db = mountpoint / "raft.db"
    (out,) = _in_namespace(f"""
$CHILD open {db}
ls -A {mountpoint} >&2
test -z "$(ls -A {mountpoint})"
""", mountpoint, "8k")
    assert out["error"] == "StorageFullError", out
    assert out["path"] == str(db) and "cannot create the store: no space left" in str(out["problem"])
    assert str(mountpoint) in str(out["problem"])
    assert "free space" in str(out["remedy"])


@needs_mount_namespace
def test_a_full_disk_mid_run_is_a_full_error_and_loses_nothing_written(mountpoint: Path) -> None:
    db = mountpoint / "raft.db"
    filled, on_full, after = _in_namespace(f"""
$CHILD fill {db}
$CHILD check {db}
rm {mountpoint}/ballast
$CHILD open {db}
test -z "$(ls -A {mountpoint} | grep creating)"
""", mountpoint, "320k")
    assert filled["error"] == "StorageFullError", filled
    assert filled["path"] == str(db)
    assert f"cannot write a Ready batch: no space left on the filesystem holding '{mountpoint}'" in str(filled["problem"])
    last_ok = filled["last_ok"]
    assert isinstance(last_ok, int) and last_ok > 5
    # The failed batch was rolled back; the storage object still answers with what is there.
    assert filled["still"] == {"term": 1, "commit": 0, "last_index": last_ok}
    # Opening again while still full is either fine or the same documented error.
    assert on_full["error"] in (None, "StorageFullError"), on_full
    # Space freed: everything written before the disk filled is there, and writes work.
    assert after["error"] is None, after
    assert after["last_index"] == last_ok and after["term"] == 2


def test_the_documented_errors_are_distinct_and_carry_what_to_do() -> None:
    classes = (StorageAccessError, StorageFullError, StorageIOError)
    assert len({c.__mro__[1] for c in classes}) == 1  # siblings under StorageFileError
    e = StorageFullError("/data", "no space left", "free space")
    assert (e.path, e.problem, e.remedy) == ("/data", "no space left", "free space")
    assert "/data" in str(e) and "free space" in str(e)
