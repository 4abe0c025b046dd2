"""Throughput of the Raft core itself: entries committed (and applied on every node)
per second of wall-clock time, with the network and disk taken out of the way (an
in-memory storage, messages handed over directly), so the figure is the ceiling of the
core under its Ready driver (consensus.driver, what every user runs): if it is far above what the MQTT bus and the SD card allow, the core is not the
bottleneck.

* unbatched: one proposal at a time, each waiting for its commit before the next;
* batched: ``--batch`` proposals at once (the leader sends them in one AppendEntries);
* "+codec": every message also goes through the msgpack wire codec and back, as it
  would on the bus.

    python bench/consensus_throughput.py [--entries 3000] [--batch 64] [--payload 100]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support.instant_net import InstantNet  # noqa: E402
from consensus.config import Config  # noqa: E402
from consensus.types import StateRole  # noqa: E402


class _Cluster:
    def __init__(self, n: int, codec: bool) -> None:
        self.net = InstantNet([Config(id=i, election_tick=10, heartbeat_tick=1, max_inflight_msgs=4096,
                                      rng=random.Random(i)) for i in range(1, n + 1)], codec=codec)
        self.leader = self.net.drivers[1]
        assert self.leader is not None
        self.leader.raw.campaign()
        for _ in range(20):
            self.net.pump()
            if self.leader.raw.status().role is StateRole.LEADER:
                break
        assert self.leader.raw.status().role is StateRole.LEADER, "node 1 did not win the election"
        self.net.pump()

    @property
    def messages(self) -> int:
        return self.net.messages

    def pump(self) -> None:
        self.net.pump()

    def min_applied(self) -> int:
        return min(d.applied for d in self.net.live())


def _run(n: int, entries: int, batch: int, payload: int, codec: bool) -> tuple[float, float, float]:
    c = _Cluster(n, codec)
    data = b"x" * payload
    leader = c.leader
    start_index = c.min_applied()
    target = start_index + entries
    msgs0 = c.messages
    t0, c0 = time.perf_counter(), time.process_time()
    while c.min_applied() < target:
        k = min(batch, target - leader.raw.status().last_index)
        if k > 0:
            leader.propose_many([data] * k)
        before = c.min_applied()
        c.pump()
        if c.min_applied() == before:
            leader.tick()  # only if stuck: a heartbeat carries the commit index on
            c.pump()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return entries / dt, entries / max(cpu, 1e-9), (c.messages - msgs0) / entries


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description="Raft core throughput in the simulator")
    p.add_argument("--entries", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--payload", type=int, default=100)
    args = p.parse_args()
    if args.entries < 1 or args.batch < 1 or args.payload < 0:
        p.error("--entries and --batch must be positive, --payload non-negative")
    print(f"entries committed and applied on every node per second ({args.entries} entries of "
          f"{args.payload} B; in-memory storage, direct delivery)")
    print("(entries/s: per wall-clock second; per CPU s: per second of this process's CPU time,\n"
          " the figure to compare on a shared, loaded machine)")
    print(f"{'nodes':>5} {'mode':<22} {'entries/s':>10} {'per CPU s':>10} {'msgs/entry':>11}")
    for n in (3, 5):
        for label, batch, codec in (
            ("unbatched", 1, False),
            (f"batched x{args.batch}", args.batch, False),
            ("unbatched +codec", 1, True),
            (f"batched x{args.batch} +codec", args.batch, True),
        ):
            count = args.entries if batch > 1 else max(200, args.entries // 5)
            rate, per_cpu, mpe = _run(n, count, batch, args.payload, codec)
            print(f"{n:>5} {label:<22} {rate:>10.0f} {per_cpu:>10.0f} {mpe:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
