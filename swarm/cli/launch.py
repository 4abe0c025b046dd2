"""``swarm launch FILE [name:=value ...]``: run a ROS-style launch file (swarm/launch/,
docs/launch.md)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from swarm.launch.cli import main as launch_main

    return launch_main(argv, prog="swarm launch")
