"""``swarm sitl``: simulated copters, built-in or real ArduPilot SITL (the same tool as
``python -m sitl``; see sitl/__main__.py)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from sitl.__main__ import main as sitl_main

    return sitl_main(argv, prog="swarm sitl")
