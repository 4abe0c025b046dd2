"""How fast the Raft core replaces a crashed leader, in logical ticks, and what an
election costs in messages.

For each seed: elect a leader, let it run, crash it, then count ticks until a new
leader has committed its no-op (the cluster accepts writes again). Ticks convert to
time by the driver's tick period (the swarm agent's default is printed alongside).
Every node runs under the project's Ready driver (consensus.driver) over MemoryStorage;
the network delivers instantly, so the figure is the protocol's own floor: one
election timeout (randomized in [election_tick, 2*election_tick), §5.2) plus rounds.
"msgs" is every message sent from the crash until the new leader serves (the
survivors' election plus the new leader's first AppendEntries round).

    python bench/consensus_election.py [--seeds 200] [--election-tick 10] [--tick-ms 10]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from bench.support.instant_net import InstantNet  # noqa: E402
from consensus.config import Config  # noqa: E402
from consensus.types import StateRole  # noqa: E402


def _net(n: int, seed: int, election_tick: int, pre_vote: bool) -> InstantNet:
    rng = random.Random(seed)
    return InstantNet([Config(id=i, election_tick=election_tick, heartbeat_tick=1, pre_vote=pre_vote,
                              rng=random.Random(rng.random())) for i in range(1, n + 1)])


def _serving_leader(net: InstantNet) -> int | None:
    for i, d in net.drivers.items():
        if d is None:
            continue
        st = d.raw.status()
        if st.role is StateRole.LEADER and st.commit == st.last_index and \
                d.raw._raft.log.zero_term_on_error(st.commit) == st.term:  # noqa: SLF001
            return i
    return None


def _measure(n: int, seed: int, election_tick: int, pre_vote: bool) -> tuple[int, int]:
    net = _net(n, seed, election_tick, pre_vote)
    for _ in range(50 * election_tick):
        net.tick()
        if _serving_leader(net) is not None:
            break
    lead = _serving_leader(net)
    assert lead is not None
    for _ in range(5):
        net.tick()
    net.drivers[lead] = None  # crash
    net.messages = 0
    for ticks in range(1, 50 * election_tick):
        net.tick()
        new = _serving_leader(net)
        if new is not None:
            return ticks, net.messages
    raise RuntimeError(f"no new leader (n={n}, seed={seed})")


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description="leader fail-over time of the Raft core")
    p.add_argument("--seeds", type=int, default=200)
    p.add_argument("--election-tick", type=int, default=10)
    p.add_argument("--tick-ms", type=float, default=10.0,
                   help="driver tick period used to convert ticks to milliseconds")
    args = p.parse_args()
    if args.seeds < 1 or args.election_tick < 2 or args.tick_ms <= 0:
        p.error("--seeds >= 1, --election-tick >= 2, --tick-ms > 0")
    print(f"leader crash -> new leader serving writes; {args.seeds} seeds, "
          f"election_tick={args.election_tick}, heartbeat_tick=1, instant network")
    print(f"{'nodes':>5} {'prevote':>7} {'median':>7} {'p95':>5} {'max':>5} "
          f"{'median ms':>10} {'max ms':>7} {'msgs':>6}")
    for n in (3, 5, 7):
        for pre_vote in (True, False):
            ticks, msgs = [], []
            for seed in range(args.seeds):
                t, m = _measure(n, seed, args.election_tick, pre_vote)
                ticks.append(t)
                msgs.append(m)
            ticks.sort()
            p95 = ticks[int(0.95 * (len(ticks) - 1))]
            med = statistics.median(ticks)
            print(f"{n:>5} {str(pre_vote):>7} {med:>7.1f} {p95:>5} {ticks[-1]:>5} "
                  f"{med * args.tick_ms:>10.0f} {ticks[-1] * args.tick_ms:>7.0f} "
                  f"{statistics.median(msgs):>6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
