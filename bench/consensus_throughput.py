"""Throughput of the Raft core itself: entries committed (and applied on every node)
per second of wall-clock time, with the network and disk taken out of the way (an
in-memory storage, messages handed over directly), so the figure is the core's own
ceiling: if it is far above what the MQTT bus and the SD card allow, the core is not the
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

from consensus.codec import decode_message, encode_message  # noqa: E402
from consensus.config import Config  # noqa: E402
from consensus.rawnode import RawNode  # noqa: E402
from consensus.storage import MemoryStorage  # noqa: E402
from consensus.types import ConfState, Message, StateRole  # noqa: E402


class _Cluster:
    def __init__(self, n: int, codec: bool) -> None:
        ids = list(range(1, n + 1))
        conf = ConfState.of(ids)
        self.codec = codec
        self.storages = {i: MemoryStorage(conf) for i in ids}
        self.nodes = {
            i: RawNode(Config(id=i, election_tick=10, heartbeat_tick=1, max_inflight_msgs=4096,
                              rng=random.Random(i)), self.storages[i])
            for i in ids
        }
        self.applied = {i: 0 for i in ids}
        self.messages = 0
        self.nodes[1].campaign()
        for _ in range(20):
            self.pump()
            if self.nodes[1].status().role is StateRole.LEADER:
                break
        assert self.nodes[1].status().role is StateRole.LEADER, "node 1 did not win the election"
        self.pump()

    def pump(self) -> None:
        """Handle every Ready and deliver every message until the cluster is idle."""
        while True:
            outbox: list[Message] = []
            for i, node in self.nodes.items():
                while node.has_ready():
                    rd = node.ready()
                    self.storages[i].apply_ready(rd.hard_state, rd.entries, rd.snapshot)
                    outbox.extend(rd.messages)
                    if rd.committed_entries:
                        self.applied[i] = rd.committed_entries[-1].index
                    node.advance(rd)
            if not outbox:
                return
            self.messages += len(outbox)
            for m in outbox:
                if self.codec:
                    m = decode_message(encode_message(m))
                self.nodes[m.to].step(m)

    def min_applied(self) -> int:
        return min(self.applied.values())


def _run(n: int, entries: int, batch: int, payload: int, codec: bool) -> tuple[float, float]:
    c = _Cluster(n, codec)
    data = b"x" * payload
    leader = c.nodes[1]
    start_index = c.min_applied()
    target = start_index + entries
    msgs0 = c.messages
    t0 = time.perf_counter()
    while c.min_applied() < target:
        k = min(batch, target - c.nodes[1].status().last_index)
        if k > 0:
            leader.propose_many([data] * k)
        before = c.min_applied()
        c.pump()
        if c.min_applied() == before:
            leader.tick()  # only if stuck: a heartbeat carries the commit index on
            c.pump()
    dt = time.perf_counter() - t0
    return entries / dt, (c.messages - msgs0) / entries


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
    print(f"{'nodes':>5} {'mode':<22} {'entries/s':>10} {'msgs/entry':>11}")
    for n in (3, 5):
        for label, batch, codec in (
            ("unbatched", 1, False),
            (f"batched x{args.batch}", args.batch, False),
            ("unbatched +codec", 1, True),
            (f"batched x{args.batch} +codec", args.batch, True),
        ):
            count = args.entries if batch > 1 else max(200, args.entries // 5)
            rate, mpe = _run(n, count, batch, args.payload, codec)
            print(f"{n:>5} {label:<22} {rate:>10.0f} {mpe:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
