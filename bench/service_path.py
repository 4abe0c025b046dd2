"""The leader's per-command work in the client service and the session layer, in
process: a one-voter Driver (memory storage, no bus, no SQLite), the register, and
batched proposals as bench/agent_cluster.py sends them (docs/benchmarks.md, "The whole
bench on another new machine").

Prints microseconds per put (the minimum over ``--runs`` runs of ``--batches`` batches
of ``--batch`` puts): request parsing, admission, the register's parse at intake, the
session envelope, Raft's propose/commit in memory, the session's batch apply, the
register's apply, settling each put and encoding the batch's reply. What the agent adds
on top (paho, sealing, SQLite, the followers) is not in this figure. ``--profile``
prints cProfile's top functions of one run instead.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from test_agent_service import Node, _register  # noqa: E402

from swarm.agent.register import Register  # noqa: E402


def run(batches: int, size: int, profile: bool = False) -> float:
    """Seconds per put of ``batches`` batch requests of ``size`` puts each."""
    node = Node(machine=Register())
    session = _register(node)
    seq = 0
    payloads = []
    for b in range(batches):
        commands = []
        for _ in range(size):
            seq += 1
            commands.append({"seq": seq, "command": {"type": "put", "key": f"k{seq % 50}",
                                                     "value": f"{seq:032d}"}})
        payloads.append(json.dumps({"v": 1, "id": f"b{b}", "op": "propose", "session": session,
                                    "ack": seq - size + 1, "commands": commands}).encode())
    prof = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if prof is not None:
        prof.enable()
    for payload in payloads:
        node.service.on_request(payload, "client/r", b"c")
        node.run()
        replies = node.service.outbox
        assert len(replies) == 1 and b'"batch"' in replies[0].payload, replies
        node.service.outbox = []
    if prof is not None:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return (time.perf_counter() - started) / (batches * size)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--batch", type=int, default=64, help="puts per request (<= 64)")
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    if not 1 <= args.batch <= 64 or args.batches < 1 or args.runs < 1:
        p.error("--batch must be 1..64, --batches and --runs at least 1")
    if args.profile:
        run(args.batches, args.batch, profile=True)
        return 0
    best = min(run(args.batches, args.batch) for _ in range(args.runs))
    print(f"service + session path, register, batches of {args.batch}: "
          f"{best * 1e6:.2f} us per put (min of {args.runs} runs of {args.batches} batches)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
