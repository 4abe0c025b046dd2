"""The agent's footprint with its flight side on: RSS and idle CPU of each agent process
(`swarm agent` with `[mavlink]`, telemetry_hz = 10) while it flies nothing new: its
built-in simulated copter streams positions at 10 Hz, the agent publishes
telemetry/<node> at 10 Hz, status every 2 s, Raft heartbeats (lan: every 50 ms) over a
real mosquitto on loopback. Issue 12's goals: <= 60 MB RSS, <= 3 % of one core.

Prints, per agent: CPU % of one core over the window (utime + stime from /proc), RSS
and peak RSS (VmRSS, VmHWM), and the telemetry rate the broker carried from it; then
the load average, so the figures can be judged against the machine's load.

    python bench/agent_footprint.py [--agents 5] [--hz 10] [--seconds 30] [--warmup 10]

The agents run with this interpreter, so the imports (and the RSS) are those of its
environment, and from compiled bytecode, as an installed agent does (the bench compiles
the checkout's modules first). For a drone's own figure, run it from an install like the Pi's (runtime
dependencies only, docs/deploy-pi.md):

    python -m venv /tmp/rt && /tmp/rt/bin/pip install --only-binary=:all: .
    /tmp/rt/bin/python bench/agent_footprint.py
"""

from __future__ import annotations

import argparse
import compileall
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_cluster import AgentCluster  # noqa: E402  (the agents' process harness)

from sitl.builtin import SimulatorServer, configs_for  # noqa: E402
from swarm.bus import topics  # noqa: E402
from swarm.bus.broker import LocalBroker  # noqa: E402
from swarm.bus.client import BrokerAddress, Bus, BusConfig, Received  # noqa: E402

GOAL_RSS_MB = 60.0
GOAL_CPU_PCT = 3.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _mem_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(line.split()[1]) / 1024
    return found.get("VmRSS", float("nan")), found.get("VmHWM", float("nan"))


class _TelemetryCount:
    """telemetry/<node> messages per node, counted from the broker."""

    def __init__(self, broker: LocalBroker, swarm: str) -> None:
        self.lock = threading.Lock()
        self.counts: dict[int, int] = {}
        self.bus = Bus(BusConfig(brokers=(BrokerAddress(broker.host, broker.port),),
                                 client_id="bench-footprint"))
        self.bus.subscribe(topics.wildcard(swarm, topics.Kind.TELEMETRY), self._on, qos=0)
        self.bus.start()
        if not self.bus.wait_connected(10):
            raise SystemExit("bench: cannot reach the broker")

    def _on(self, msg: Received) -> None:
        node = topics.parse(msg.topic).node
        if node is not None:
            with self.lock:
                self.counts[node] = self.counts.get(node, 0) + 1

    def snapshot(self) -> dict[int, int]:
        with self.lock:
            return dict(self.counts)


def _compile_sources() -> None:
    """Start the agents from compiled bytecode, as a drone does (pip compiles an
    installed package). This checkout may hold none (PYTHONDONTWRITEBYTECODE, a fresh
    clone), and an agent that compiles the project's modules at start-up keeps about
    2 MB more RSS: the compiler's freed memory stays in its heap. Written where Python
    itself would write it (__pycache__, ignored by git)."""
    for package in ("consensus", "swarm", "mavlink_bridge", "sitl"):
        if not compileall.compile_dir(str(ROOT / package), quiet=1):
            raise SystemExit(f"bench: cannot compile {package}/")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=5, choices=range(1, 11), metavar="1..10")
    p.add_argument("--hz", type=float, default=10.0, help="telemetry_hz of each agent")
    p.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    p.add_argument("--warmup", type=float, default=10.0, help="after every drone's telemetry flows")
    p.add_argument("--profile", choices=("lan", "radio"), default="lan")
    args = p.parse_args(argv)
    if not (0 < args.seconds <= 600 and 0 <= args.warmup <= 120):
        p.error("--seconds must be in (0, 600], --warmup in [0, 120]")
    _compile_sources()
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        broker = LocalBroker("mosquitto")
        broker.start()
        sim = SimulatorServer(configs_for(args.agents, speedup=1.0, time_to_ready_s=2.0,
                                          base_port=0))
        sim.start()
        cluster = AgentCluster(Path(tmp), broker, args.agents, profile=args.profile,
                               election_ticks=None)
        seen: _TelemetryCount | None = None
        try:
            for i, port in zip(cluster.ids, sim.ports):
                cluster.add_mavlink(i, f"tcp:127.0.0.1:{port}", sysid=i, telemetry_hz=args.hz)
            seen = _TelemetryCount(broker, cluster.swarm)
            cluster.start_all()
            watcher = cluster.client()
            cluster.wait_leader(watcher)
            deadline = time.monotonic() + 120
            while len(seen.snapshot()) < args.agents:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench: telemetry only from {sorted(seen.snapshot())}")
                time.sleep(0.2)
            time.sleep(args.warmup)
            return _measure(cluster, seen, args)
        finally:
            if seen is not None:
                seen.bus.close()
            cluster.close()
            sim.stop()
            broker.close()


def _measure(cluster: AgentCluster, seen: _TelemetryCount, args: argparse.Namespace) -> int:
    pids = {i: cluster.procs[i].pid for i in cluster.ids}
    cpu0 = {i: _cpu_s(pid) for i, pid in pids.items()}
    msgs0 = seen.snapshot()
    t0 = time.monotonic()
    time.sleep(args.seconds)
    dt = time.monotonic() - t0
    msgs1 = seen.snapshot()
    print(f"{args.agents} agents with [mavlink] (built-in copters), telemetry_hz = {args.hz:g}, "
          f"profile {args.profile}, mosquitto on loopback, fsync on; window {dt:.1f} s "
          f"after {args.warmup:g} s warm-up")
    # What the agents import depends on what is installed beside the project: a
    # development .venv (test extras) holds optional libraries the agent's own imports
    # pick up when present (python-dateutil for pymap3d, PySocks for paho); a drone's
    # install (docs/deploy-pi.md) holds only the runtime dependencies.
    print(f"  agents run by {sys.executable}")
    worst_cpu = worst_rss = 0.0
    for i, pid in pids.items():
        cpu = 100 * (_cpu_s(pid) - cpu0[i]) / dt
        rss, peak = _mem_mb(pid)
        rate = (msgs1.get(i, 0) - msgs0.get(i, 0)) / dt
        worst_cpu, worst_rss = max(worst_cpu, cpu), max(worst_rss, peak)
        print(f"  node {i}: {cpu:4.1f} % of a core, RSS {rss:5.1f} MB (peak {peak:5.1f} MB), "
              f"telemetry {rate:4.1f} Hz")
    load = os.getloadavg()
    print(f"  worst: {worst_cpu:.1f} % of a core (goal <= {GOAL_CPU_PCT:g} %), peak RSS "
          f"{worst_rss:.1f} MB (goal <= {GOAL_RSS_MB:g} MB); load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
