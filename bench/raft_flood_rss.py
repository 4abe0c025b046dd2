"""An agent's RSS under a flood of garbage Raft payloads from a client with no key
(issue 9: the agent within 60 MB RSS; docs/benchmarks.md, "RSS after load").

Starts a real mosquitto and ``--nodes`` real agents, waits for a leader and an idle
moment, then publishes ``--count`` payloads of ``--bytes`` random bytes (no envelope,
no key) to ``swarm/<swarm>/raft/<target>`` as fast as the broker takes them. Prints the
target's RSS and anonymous RSS (VmRSS, RssAnon from /proc) before, the peak sampled
every few ms during the flood, and ``--after`` seconds after its last payload reached
the broker; then what the target counted (dropped by the inbox, rejected by the
envelope opener) and whether its term and log moved.

    python bench/raft_flood_rss.py [--nodes 3] [--target leader|follower]
        [--count 150] [--bytes 2097152] [--after 5]

The agents run with this interpreter from compiled bytecode (bench/agent_footprint.py,
``_compile_sources``), as an installed agent does.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_cluster import AgentCluster  # noqa: E402  (the agents' process harness)
from agent_footprint import _compile_sources  # noqa: E402  (bench/, this script's folder)

from swarm.bus import topics  # noqa: E402
from swarm.bus.broker import LocalBroker  # noqa: E402


def _mem_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, RssAnon) in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "RssAnon"):
            found[key] = int(line.split()[1]) / 1024
    return found.get("VmRSS", float("nan")), found.get("RssAnon", float("nan"))


class _Sampler:
    """The peak of (VmRSS, RssAnon) of one process, sampled every ``period_s``."""

    def __init__(self, pid: int, period_s: float = 0.005) -> None:
        self.pid, self.period_s = pid, period_s
        self.peak = (0.0, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            rss, anon = _mem_mb(self.pid)
            self.peak = (max(self.peak[0], rss), max(self.peak[1], anon))

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join()
        return self.peak


def _flood(host: str, port: int, topic: str, count: int, size: int, gap_s: float) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    rng = random.Random(9)
    rogue = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-flood",
                        protocol=paho.MQTTv5)
    rogue.connect(host, port)
    rogue.loop_start()
    try:
        # A few distinct payloads reused: generating 300 MiB of randomness would
        # dominate the run.
        payloads = [rng.randbytes(size) for _ in range(4)]
        infos = []
        for k in range(count):
            infos.append(rogue.publish(topic, payloads[k % len(payloads)], 1))
            if gap_s:
                time.sleep(gap_s)
        for info in infos:
            info.wait_for_publish(60)
    finally:
        rogue.disconnect()
        rogue.loop_stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3, choices=range(1, 8), metavar="1..7")
    p.add_argument("--target", choices=("leader", "follower"), default="follower")
    p.add_argument("--count", type=int, default=150)
    p.add_argument("--bytes", type=int, default=2 * 1024 * 1024)
    p.add_argument("--after", type=float, default=5.0, help="seconds after the flood")
    p.add_argument("--gap", type=float, default=0.0,
                   help="seconds between two payloads (0: back to back)")
    p.add_argument("--idle", type=float, default=3.0, help="seconds idle before it")
    args = p.parse_args(argv)
    if not (1 <= args.count <= 10000 and 1 <= args.bytes <= 4 * 1024 * 1024
            and 0 <= args.after <= 120 and 0 <= args.idle <= 120 and 0 <= args.gap <= 10):
        p.error("--count in [1, 10000], --bytes in [1, 4 MiB], --after/--idle in [0, 120], "
                "--gap in [0, 10]")
    _compile_sources()
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        broker = LocalBroker("mosquitto")
        broker.start()
        cluster = AgentCluster(Path(tmp), broker, args.nodes)
        try:
            cluster.start_all()
            client = cluster.client()
            leader = cluster.wait_leader(client)
            target = leader if args.target == "leader" or args.nodes == 1 else \
                next(i for i in cluster.ids if i != leader)
            before_status = cluster.wait_converged(client)[target]
            time.sleep(args.idle)
            pid = cluster.procs[target].pid
            rss0, anon0 = _mem_mb(pid)
            sampler = _Sampler(pid)
            t0 = time.monotonic()
            _flood(broker.host, broker.port, topics.raft(cluster.swarm, target),
                   args.count, args.bytes, args.gap)
            flood_s = time.monotonic() - t0
            time.sleep(args.after)
            rss1, anon1 = _mem_mb(pid)
            peak = sampler.stop()
            after_status = cluster.wait_converged(client)[target]
            time.sleep(2.5)   # metrics follow the status period (2 s)
            m = cluster.metrics(target)
            print(f"{args.nodes} agents, mosquitto on loopback; node {target} "
                  f"({'leader' if target == leader else 'follower'}) flooded with "
                  f"{args.count} x {args.bytes} B of garbage in {flood_s:.1f} s "
                  f"(gap {args.gap:g} s)")
            print(f"  agents run by {sys.executable}")
            print(f"  RSS before {rss0:.1f} MB (anon {anon0:.1f}), peak {peak[0]:.1f} MB "
                  f"(anon {peak[1]:.1f}), {args.after:g} s after {rss1:.1f} MB (anon {anon1:.1f})")
            counted = {k: v for k, v in m.items()
                       if k.startswith(("swarm_raft_messages_dropped_total",
                                        "swarm_raft_messages_rejected_total")) and v}
            for k, v in sorted(counted.items()):
                print(f"  {k} {v:g}")
            moved = [k for k in ("term", "last_index", "commit", "map_sha256")
                     if before_status[k] != after_status[k]]
            print(f"  term/log/map moved: {moved or 'no'}")
            load = os.getloadavg()
            print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
                  f"{os.cpu_count()} cores")
        finally:
            cluster.close()
            broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
