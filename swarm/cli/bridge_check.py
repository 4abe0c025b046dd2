"""``swarm bridge-check CONNECTION``: check the wiring to a flight controller (the same
tool as ``python -m mavlink_bridge``; see mavlink_bridge/__main__.py)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from mavlink_bridge.__main__ import main as bridge_main

    return bridge_main(list(argv) if argv is not None else None, prog="swarm bridge-check")
