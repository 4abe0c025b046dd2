"""Command line of the simulator: ``python -m consensus.sim`` (also ``swarm sim``).

Runs a range of seeds (``--start S --seeds N``: seeds S .. S+N-1), each a random fault
schedule against an N-node cluster, and prints how many ran, how many broke a safety
property or linearizability, the first failing seed with the command that replays it,
and the slowest seed. ``--seed S`` runs exactly seed S (the replay of one run; add
``--verbose`` for its trace).

Options are never abbreviated (``allow_abbrev=False``): with prefix matching,
``--seed 40`` used to mean ``--seeds 40`` and silently ran forty seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from consensus.sim.app import SimApp
from consensus.sim.cluster import ALL_FAULTS, SimConfig, SimResult, run_seed

__all__ = ["main", "parse_faults"]


def parse_faults(text: str) -> frozenset[str]:
    """``all``, ``none``, or a comma-separated subset of :data:`ALL_FAULTS`."""
    text = text.strip()
    if text == "all":
        return ALL_FAULTS
    if text == "none":
        return frozenset()
    names = [n.strip() for n in text.split(",")]
    unknown = sorted(n for n in names if n not in ALL_FAULTS)
    if unknown or not all(names):
        raise argparse.ArgumentTypeError(
            f"unknown fault(s) {', '.join(repr(n) for n in unknown) or repr(text)}; "
            f"choose from: all, none, or {','.join(sorted(ALL_FAULTS))}"
        )
    return frozenset(names)


def _int_in(lo: int, hi: int | None, what: str):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, got {v}")
        return v

    return parse


def _unit(what: str):  # type: ignore[no-untyped-def]
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not 0.0 <= v <= 1.0:
            raise argparse.ArgumentTypeError(f"{what} must be between 0 and 1, got {v}")
        return v

    return parse


def build_parser(prog: str = "python -m consensus.sim") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False,
        description="Deterministic fault-injection simulation of the Raft core with safety "
        "and linearizability checks.",
    )
    p.add_argument("--nodes", type=_int_in(1, 9, "--nodes"), default=5, help="cluster size (1-9, default 5)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seed", type=_int_in(0, 2**63 - 1, "--seed"), default=None,
                       help="run (replay) exactly this one seed")
    which.add_argument("--seeds", type=_int_in(1, None, "--seeds"), default=100,
                       help="how many seeds to run, from --start (default 100)")
    p.add_argument("--start", type=_int_in(0, 2**63 - 1, "--start"), default=None,
                   help="first seed of the range (default 0)")
    p.add_argument(
        "--faults",
        type=parse_faults,
        default=ALL_FAULTS,
        help=f"'all', 'none', or a comma list of: {','.join(sorted(ALL_FAULTS))} (default all)",
    )
    p.add_argument("--steps", type=_int_in(10, 10_000_000, "--steps"), default=SimConfig().steps,
                   help=f"virtual ticks per run (default {SimConfig().steps})")
    p.add_argument("--clients", type=_int_in(1, 64, "--clients"), default=SimConfig().clients,
                   help=f"simulated clients (default {SimConfig().clients})")
    p.add_argument("--storage", choices=("memory", "sqlite"), default="memory",
                   help="node storage: in memory, or SQLite files in a temporary directory "
                   "(a crash closes the file, a restart recovers from it)")
    p.add_argument("--codec", action="store_true",
                   help="pass every message through the msgpack wire codec")
    p.add_argument("--link-scores", action="store_true",
                   help="every node reports a seeded link score and runs the signal-aware "
                   "leadership policy (consensus/leadership.py)")
    p.add_argument("--score-noise", type=_unit("--score-noise"), default=SimConfig().score_noise,
                   help=f"with --link-scores: noise added to each score every tick (default {SimConfig().score_noise})")
    p.add_argument("--score-change-rate", type=_unit("--score-change-rate"), default=SimConfig().score_change_rate,
                   help="with --link-scores: per-tick chance that one node's base score jumps (default 0)")
    p.add_argument("--verbose", action="store_true",
                   help="print the full event trace (only for one seed: --seed N)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    return p


def _summary(results: Sequence[SimResult], elapsed: float) -> list[str]:
    bad = [r for r in results if not r.ok]
    unknown = [r for r in results if r.linearizability == "unknown"]
    slowest = max(results, key=lambda r: r.seconds)
    lines = [
        f"runs: {len(results)}",
        f"violations: {len(bad)}",
        f"linearizability unknown (search budget exhausted): {len(unknown)}",
        f"committed entries: {sum(r.committed for r in results)}, client ops: "
        f"{sum(r.ops for r in results)} ({sum(r.acked for r in results)} acknowledged)",
        f"not converged after the quiet period (liveness, not a safety violation): "
        f"{sum(1 for r in results if not r.converged)}",
        f"slowest seed: {slowest.seed} ({slowest.seconds:.3f} s)",
        f"elapsed: {elapsed:.1f} s ({elapsed / len(results) * 1000:.1f} ms per run)",
    ]
    unconverged = [r for r in results if not r.converged]
    if unconverged:
        lines.append("not converged seeds: " + ", ".join(str(r.seed) for r in unconverged[:20])
                     + (" ..." if len(unconverged) > 20 else "")
                     + f" (replay: {unconverged[0].replay_command})")
    if bad:
        first = bad[0]
        lines.append(f"first failing seed: {first.seed}: {first.violation}")
        lines.append(f"replay: {first.replay_command}")
    else:
        lines.append("first failing seed: none")
    return lines


def main(argv: Sequence[str] | None = None, prog: str = "python -m consensus.sim", *,
         app: Callable[[int], SimApp] | None = None,
         parser: argparse.ArgumentParser | None = None, base: SimConfig | None = None) -> int:
    """Run the seeds the arguments name. ``app(seed)`` builds an application to run
    beside the key-value clients (consensus/sim/app.py) for each seed; ``parser`` is
    :func:`build_parser`'s, possibly with the application's defaults; ``base`` holds
    the settings the options do not set (the application's, e.g. its snapshot chunk
    size; replays use the same program, so the same ``base``)."""
    parser = parser or build_parser(prog)
    args = parser.parse_args(argv)
    if args.seed is not None:
        if args.start is not None:
            parser.error("--seed N runs one seed: it cannot be combined with --start")
        args.start, args.seeds = args.seed, 1
    elif args.start is None:
        args.start = 0
    if args.verbose and args.seeds != 1:
        parser.error("--verbose prints one run's trace: use it with --seed N")
    cfg = dataclasses.replace(base or SimConfig(), nodes=args.nodes, steps=args.steps, faults=args.faults, clients=args.clients,
                    storage=args.storage, wire_codec=args.codec, link_scores=args.link_scores,
                    score_noise=args.score_noise, score_change_rate=args.score_change_rate)
    results: list[SimResult] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="raft-sim-") as tmp:
        for seed in range(args.start, args.start + args.seeds):
            res = run_seed(seed, cfg, trace=args.verbose, storage_dir=tmp if args.storage == "sqlite" else None,
                           app=app(seed) if app is not None else None, prog=prog)
            _report(res, args)
            results.append(res)
    elapsed = time.perf_counter() - t0
    for line in _summary(results, elapsed):
        print(line)
    return 1 if any(not r.ok for r in results) else 0


def _report(res: SimResult, args: argparse.Namespace) -> None:
    if args.verbose:
        for line in res.trace:
            print(line)
    if not res.ok and not args.quiet:
        print(f"seed {res.seed}: VIOLATION {res.violation}", flush=True)
        if res.details:
            print(res.details, flush=True)
        print(f"  replay: {res.replay_command}", flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
