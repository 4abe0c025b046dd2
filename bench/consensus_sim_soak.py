"""Soak the Raft core in the deterministic simulator: 10,000 random fault schedules by
default (5 nodes, every fault), each checked for safety after every step and for
linearizability and durability at the end. Prints the count, the violations (with
replay commands), the slowest seed and the time taken.

    python bench/consensus_sim_soak.py                      # 10,000 seeds, one process
    python bench/consensus_sim_soak.py --seeds 2000 --jobs 2

Seeds are independent, so ``--jobs`` runs them in worker processes; the result does not
depend on the number of jobs (each seed is deterministic).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.sim.cli import parse_faults  # noqa: E402
from consensus.sim.cluster import ALL_FAULTS, SimConfig, SimResult, run_seed  # noqa: E402

_CFG: SimConfig | None = None


def _init(cfg: SimConfig) -> None:
    global _CFG
    _CFG = cfg


def _one(seed: int) -> tuple[int, bool, str | None, str, float, int, str, dict[str, int]]:
    assert _CFG is not None
    r: SimResult = run_seed(seed, _CFG)
    return (seed, r.ok, r.violation, r.linearizability, r.seconds, r.committed, r.replay_command, r.counts)


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10_000)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--steps", type=int, default=SimConfig().steps)
    p.add_argument("--faults", type=parse_faults, default=ALL_FAULTS)
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args()
    if args.seeds < 1 or args.jobs < 1 or args.start < 0:
        p.error("--seeds and --jobs must be positive, --start non-negative")
    cfg = SimConfig(nodes=args.nodes, steps=args.steps, faults=args.faults)
    seeds = range(args.start, args.start + args.seeds)
    t0 = time.perf_counter()
    if args.jobs == 1:
        _init(cfg)
        results = [_one(s) for s in seeds]
    else:
        with multiprocessing.Pool(args.jobs, initializer=_init, initargs=(cfg,)) as pool:
            results = pool.map(_one, seeds, chunksize=50)
    elapsed = time.perf_counter() - t0
    bad = [r for r in results if not r[1]]
    unknown = sum(1 for r in results if r[3] == "unknown")
    slow = max(results, key=lambda r: r[4])
    exercised: Counter[str] = Counter()
    for r in results:
        exercised.update(r[7])
    print(f"seeds: {len(results)} ({args.start}..{args.start + args.seeds - 1}), nodes {args.nodes}, "
          f"steps {args.steps}, faults {','.join(sorted(args.faults)) or 'none'}")
    print(f"violations: {len(bad)}")
    print(f"linearizability unknown: {unknown}")
    print(f"slowest seed: {slow[0]} ({slow[4]:.3f} s)")
    print(f"committed entries: {sum(r[5] for r in results)}")
    print(f"elapsed: {elapsed:.1f} s with {args.jobs} job(s) ({elapsed / len(results) * 1000:.1f} ms per seed)")
    print("exercised: " + ", ".join(f"{k} {v}" for k, v in sorted(exercised.items())))
    for seed, _, violation, _, _, _, replay, _ in bad[:20]:
        print(f"  seed {seed}: {violation}\n    replay: {replay}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
