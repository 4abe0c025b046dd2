"""The four packages, and the tests' own helper modules (fixtures, harnesses, stand-in
vehicles and clients), type-check clean under mypy, so a type error (a None or a wrong
command kind reaching an attribute access, a list where a frozen tuple is promised)
fails the suite rather than waiting for a code path to hit it in flight, or for a
helper to pass a test by accident."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("consensus", "swarm", "mavlink_bridge", "sitl")


def _test_helpers() -> list[str]:
    """Every module under tests/ that is not itself a test file. The test files are
    left out: pytest's fixtures arrive as untyped arguments, so mypy would check little
    in them beyond what running them does."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py")
                  if not p.name.startswith("test_") and p.name != "__init__.py")


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not importable; install the test extra: pip install -e '.[test]'",
)
def test_packages_type_check_with_no_errors(tmp_path: Path) -> None:
    # A fresh cache under tmp_path: the run cannot be satisfied by a stale cache, and
    # leaves nothing behind in the working tree.
    proc = subprocess.run(
        # --explicit-package-bases: tests/ has no __init__.py, so its conftest.py files
        # are told apart by their paths (tests.conftest, tests.gcs.conftest, ...).
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--explicit-package-bases",
         "--cache-dir", str(tmp_path / "mypy_cache"), *PACKAGES, *_test_helpers()],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, f"mypy found errors:\n{proc.stdout}{proc.stderr}"
