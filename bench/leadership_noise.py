"""Signal-aware leadership under noisy link scores: how often does leadership move?

Runs the seeded simulator (real driver, no faults, one client) with every node's link
score noisy around a base, two nodes' bases nearly equal (the worst case for flapping),
and prints score-driven transfers per simulated hour (a tick is 10 ms, the agent's
``lan`` profile), beside the bound the policy guarantees (one per
``leader_transfer_interval_ticks`` of a leader) and the time for leadership to follow a
change in signal (the best node's link drops, another's rises).

    python bench/leadership_noise.py [--minutes 5] [--noise 0.1] [--seeds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.sim.cluster import SimConfig, Simulation  # noqa: E402

TICK_S = 0.010


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--minutes", type=float, default=5.0, help="simulated minutes per seed")
    p.add_argument("--noise", type=float, default=0.1, help="score noise (the margin is 0.1)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--interval", type=int, default=500, help="leader_transfer_interval_ticks")
    args = p.parse_args()
    if args.minutes <= 0 or not 0 <= args.noise <= 1 or args.seeds < 1 or args.interval < 20:
        p.error("--minutes > 0, --noise in [0, 1], --seeds >= 1, --interval >= 20")
    cfg = SimConfig(faults=frozenset(), link_scores=True, clients=1, score_noise=args.noise,
                    score_transfer_interval=args.interval, score_dwell_ticks=50)
    ticks = int(args.minutes * 60 / TICK_S)
    t0 = time.perf_counter()
    total = 0
    follow: list[int] = []
    for seed in range(args.seeds):
        sim = Simulation(seed, cfg)
        assert sim.scores is not None
        sim.scores.base = {1: 0.8, 2: 0.82, 3: 0.4, 4: 0.35, 5: 0.3}
        for _ in range(ticks):
            sim.step()
        noisy = sim.counts["score transfers"]
        total += noisy
        # Follow a change: the current leader's link collapses, node 5's becomes best.
        leader = sim._leader()
        sim.scores.base = {i: 0.3 for i in sim.scores.base}
        sim.scores.base[5] = 0.95
        for t in range(1, 20 * args.interval):
            sim.step()
            if sim._leader() == 5:
                follow.append(t)
                break
        print(f"seed {seed}: {noisy} transfers in {args.minutes:g} min; "
              f"leader n{leader} -> n5 after the change in {follow[-1] if follow else 'never'} ticks")
    hours = args.seeds * ticks * TICK_S / 3600
    print(f"noise ±{args.noise}, margin 0.1, dwell 50 ticks, interval {args.interval} ticks ({args.interval * TICK_S:g} s)")
    print(f"score-driven transfers per simulated hour: {total / hours:.1f} "
          f"(bound {3600 / (args.interval * TICK_S):.0f}; {total} in {hours * 60:.0f} simulated minutes)")
    if follow:
        follow.sort()
        print(f"leadership follows a change in signal: median {follow[len(follow) // 2] * TICK_S:.2f} s, "
              f"worst {follow[-1] * TICK_S:.2f} s ({len(follow)}/{args.seeds} runs)")
    print(f"elapsed: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
