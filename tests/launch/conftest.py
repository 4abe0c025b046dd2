"""The ``launch`` fixture: start launcher runs, and always clean up after them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from launch_harness import LaunchRun


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., LaunchRun]]:
    runs: list[LaunchRun] = []

    def start(text: str | Path, *extra: str) -> LaunchRun:
        run = LaunchRun(tmp_path, text, *extra)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.cleanup()
