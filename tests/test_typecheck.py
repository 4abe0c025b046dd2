"""The four packages type-check clean under mypy, so a type error (a None or a wrong
command kind reaching an attribute access, a list where a frozen tuple is promised)
fails the suite rather than waiting for a code path to hit it in flight."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("consensus", "swarm", "mavlink_bridge", "sitl")


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not importable; install the test extra: pip install -e '.[test]'",
)
def test_packages_type_check_with_no_errors(tmp_path: Path) -> None:
    # A fresh cache under tmp_path: the run cannot be satisfied by a stale cache, and
    # leaves nothing behind in the working tree.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports",
         "--cache-dir", str(tmp_path / "mypy_cache"), *PACKAGES],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, f"mypy found errors:\n{proc.stdout}{proc.stderr}"
