"""Cost of sealing and opening Raft envelopes (HMAC-SHA256 + msgpack + the core's codec)
per envelope, for the message shapes the agent sends most (docs/benchmarks.md, "Bus")."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus.types import Entry, EntryKind, Message, MessageType  # noqa: E402
from swarm.bus.envelope import EnvelopeOpener, EnvelopeSealer, Opened  # noqa: E402
from swarm.bus.keys import Keyring, SwarmKey  # noqa: E402


def shapes() -> dict[str, list[Message]]:
    def entries(n: int, size: int) -> tuple[Entry, ...]:
        return tuple(Entry(7, 100 + i, EntryKind.NORMAL, b"e" * size) for i in range(n))
    return {
        "heartbeat": [Message(MessageType.HEARTBEAT, to=2, frm=1, term=7, commit=99)],
        "vote": [Message(MessageType.VOTE, to=2, frm=1, term=7, log_term=6, index=99)],
        "append 1x200B": [Message(MessageType.APPEND, to=2, frm=1, term=7, log_term=7, index=99,
                                  entries=entries(1, 200), commit=99)],
        "append 64x200B": [Message(MessageType.APPEND, to=2, frm=1, term=7, log_term=7, index=99,
                                   entries=entries(64, 200), commit=99)],
        "append 4x64KiB": [Message(MessageType.APPEND, to=2, frm=1, term=7, log_term=7, index=99,
                                   entries=entries(4, 65536), commit=99)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per shape and direction")
    args = parser.parse_args(argv)
    ring = Keyring(SwarmKey(bytes(range(32))))
    print(f"{'shape':<16} {'bytes':>8} {'seal us':>9} {'open us':>9} {'open MB/s':>10}")
    for name, msgs in shapes().items():
        sealer = EnvelopeSealer("fire", 1, ring, 1)
        n = 0
        t0 = time.perf_counter()
        envs = []
        while time.perf_counter() - t0 < args.seconds:
            envs.append(sealer.seal(2, msgs)[0])
            n += 1
            if len(envs) > 5000:
                envs = envs[-1:] + envs[:0]
        seal_us = (time.perf_counter() - t0) / n * 1e6
        # Fresh envelopes to open (each counter once; a replay would be rejected early).
        sealer = EnvelopeSealer("fire", 1, ring, 2)
        opener = EnvelopeOpener("fire", 2, ring, clock=time.monotonic)
        batch = [sealer.seal(2, msgs)[0] for _ in range(max(50, min(n, 20000)))]
        t0 = time.perf_counter()
        for env in batch:
            assert isinstance(opener.open(env), Opened)
        open_us = (time.perf_counter() - t0) / len(batch) * 1e6
        size = len(batch[0])
        print(f"{name:<16} {size:>8} {seal_us:>9.1f} {open_us:>9.1f} {size / open_us:>10.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
