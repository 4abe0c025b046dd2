"""How fast the Raft core replaces a crashed leader, in logical ticks, and what an
election costs in messages.

For each seed: elect a leader, let it run, crash it, then count ticks until a new
leader has committed its no-op (the cluster accepts writes again). Ticks convert to
time by the driver's tick period (the swarm agent's default is printed alongside).
The network delivers instantly, so the figure is the protocol's own floor: one
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.config import Config  # noqa: E402
from consensus.rawnode import RawNode  # noqa: E402
from consensus.storage import MemoryStorage  # noqa: E402
from consensus.types import ConfState, Message, StateRole  # noqa: E402


class _Net:
    def __init__(self, n: int, seed: int, election_tick: int, pre_vote: bool) -> None:
        ids = list(range(1, n + 1))
        conf = ConfState.of(ids)
        rng = random.Random(seed)
        self.storages = {i: MemoryStorage(conf) for i in ids}
        self.nodes: dict[int, RawNode | None] = {
            i: RawNode(Config(id=i, election_tick=election_tick, heartbeat_tick=1,
                              pre_vote=pre_vote, rng=random.Random(rng.random())),
                       self.storages[i])
            for i in ids
        }
        self.messages = 0

    def pump(self) -> None:
        for _ in range(10_000):
            outbox: list[Message] = []
            for i, node in self.nodes.items():
                while node is not None and node.has_ready():
                    rd = node.ready()
                    self.storages[i].apply_ready(rd.hard_state, rd.entries, rd.snapshot)
                    outbox.extend(rd.messages)
                    node.advance(rd)
            if not outbox:
                return
            self.messages += len(outbox)
            for m in outbox:
                target = self.nodes.get(m.to)
                if target is not None:
                    target.step(m)
        raise RuntimeError("network did not quiesce")

    def tick(self) -> None:
        for node in self.nodes.values():
            if node is not None:
                node.tick()
        self.pump()

    def serving_leader(self) -> int | None:
        for i, node in self.nodes.items():
            if node is None:
                continue
            st = node.status()
            if st.role is StateRole.LEADER and st.commit == st.last_index and \
                    node._raft.log.zero_term_on_error(st.commit) == st.term:  # noqa: SLF001
                return i
        return None


def _measure(n: int, seed: int, election_tick: int, pre_vote: bool) -> tuple[int, int]:
    net = _Net(n, seed, election_tick, pre_vote)
    for _ in range(50 * election_tick):
        net.tick()
        if net.serving_leader() is not None:
            break
    lead = net.serving_leader()
    assert lead is not None
    for _ in range(5):
        net.tick()
    net.nodes[lead] = None  # crash
    net.messages = 0
    for ticks in range(1, 50 * election_tick):
        net.tick()
        new = net.serving_leader()
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
