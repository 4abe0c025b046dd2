"""``swarm sim``: the seeded fault simulation of the Raft core (the same tool as
``python -m consensus.sim``; see consensus/sim/cli.py)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from consensus.sim.cli import main as sim_main

    return sim_main(argv, prog="swarm sim")
