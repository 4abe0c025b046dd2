"""``python -m swarm.sim``: the evacuation map on the seeded consensus simulator.

The same options as ``python -m consensus.sim`` (seeds, faults, nodes, steps, storage,
codec...), with the evacuation-map application (:mod:`swarm.sim.workload`) running on
every node beside the key-value clients, and its assignment checks. ``--soak`` runs
many seeds (:data:`SOAK_SEEDS` from ``--start``). A failing seed prints the command
that replays it, trace included; the same seed gives the same trace, byte for byte.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from consensus.sim.cli import build_parser, main as sim_main
from consensus.sim.cluster import SimConfig

from .workload import EvacuationMapApp

__all__ = ["PROG", "SOAK_SEEDS", "main"]

PROG = "python -m swarm.sim"
SOAK_SEEDS = 500
#: Fewer key-value clients than the core's simulator: the map workload is the point.
DEFAULT_CLIENTS = 2
DEFAULT_SEEDS = 20
#: A map snapshot is kilobytes, the core's 64-byte chunks are sized for its tiny
#: key-value store: at one chunk in flight a transfer would outlast the quiet period.
#: Still several chunks per snapshot, so chunked InstallSnapshot is exercised.
BASE = SimConfig(snapshot_chunk_bytes=1024)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(PROG)
    parser.description = ("Deterministic fault-injection simulation of the evacuation map on "
                          "Raft: committed-assignment checks beside the core's safety and "
                          "linearizability checks.")
    parser.add_argument("--soak", action="store_true",
                        help=f"run {SOAK_SEEDS} seeds (unless --seeds or --seed says otherwise)")
    parser.set_defaults(clients=DEFAULT_CLIENTS, seeds=DEFAULT_SEEDS)
    args = list(sys.argv[1:] if argv is None else argv)
    soak = "--soak" in args
    if soak:
        args.remove("--soak")
        if not any(a in ("--seeds", "--seed") or a.startswith(("--seeds=", "--seed="))
                   for a in args):
            args += ["--seeds", str(SOAK_SEEDS)]
    return sim_main(args, PROG, app=EvacuationMapApp, parser=parser, base=BASE)
