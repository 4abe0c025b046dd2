"""The agent as a process: N real agents (`swarm agent`, fsync on) on mosquitto on
loopback, driven by swarm.client (docs/benchmarks.md, "Agent").

Prints, in one run: each agent's idle CPU (% of one core) and RSS; committed map
commands per second with W outstanding requests (W synchronous clients, one
outstanding request each) and the p50/p99 commit latency at 1 outstanding, as the
client sees it (request published -> committed reply); failover time (SIGKILL of the
leader -> the next committed write) over --kills kills, for the chosen profile.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_cluster import AgentCluster, zone  # noqa: E402

from swarm.bus.broker import LocalBroker  # noqa: E402


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--profile", choices=("lan", "radio"), default="lan")
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--latency-ops", type=int, default=200)
    p.add_argument("--outstanding", default="1,10,50", help="comma list of W")
    p.add_argument("--seconds", type=float, default=5.0, help="per throughput point")
    p.add_argument("--kills", type=int, default=5)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        broker = LocalBroker("mosquitto")
        broker.start()
        cluster = AgentCluster(Path(tmp), broker, args.nodes, profile=args.profile,
                               election_ticks=None)
        try:
            return _run(cluster, args)
        finally:
            cluster.close()
            broker.close()


def _run(cluster: AgentCluster, args: argparse.Namespace) -> int:
    cluster.start_all()
    watcher = cluster.client()
    cluster.wait_leader(watcher)
    print(f"{args.nodes} agents, profile {args.profile}, mosquitto on loopback, fsync on")
    time.sleep(2)
    pids = {i: cluster.procs[i].pid for i in cluster.ids}
    before = {i: _cpu_s(pid) for i, pid in pids.items()}
    t0 = time.monotonic()
    time.sleep(args.idle_seconds)
    dt = time.monotonic() - t0
    for i, pid in pids.items():
        print(f"  idle: node {i}: {100 * (_cpu_s(pid) - before[i]) / dt:.1f} % of a core, "
              f"RSS {_rss_mb(pid):.1f} MB")

    client = cluster.client()
    client.register()
    lat = []
    for k in range(args.latency_ops):
        t = time.monotonic()
        assert client.propose(zone(f"l{k}")).committed
        lat.append((time.monotonic() - t) * 1000)
    print(f"  commit latency, 1 outstanding, {len(lat)} ops: p50 {_pct(lat, 0.5):.2f} ms, "
          f"p99 {_pct(lat, 0.99):.2f} ms")

    for w in (int(x) for x in args.outstanding.split(",")):
        clients = [cluster.client() for _ in range(w)]
        for c in clients:
            c.register()
        done = [0] * w
        stop = threading.Event()

        def work(n: int) -> None:
            k = 0
            while not stop.is_set():
                if clients[n].propose(zone(f"w{w}-{n}-{k % 50}")).committed:
                    done[n] += 1
                k += 1

        threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(w)]
        t = time.monotonic()
        for th in threads:
            th.start()
        time.sleep(args.seconds)
        stop.set()
        for th in threads:
            th.join(30)
        print(f"  throughput, {w} outstanding: {sum(done) / (time.monotonic() - t):.0f} "
              "committed commands/s")
        for c in clients:
            c.close()

    times = []
    for k in range(args.kills):
        leader = cluster.wait_leader(watcher)
        t = time.monotonic()
        cluster.kill(leader)
        reply = client.propose(zone(f"f{k}"), timeout_s=60)
        if reply.committed:
            times.append((time.monotonic() - t) * 1000)
        cluster.start(leader)
        cluster.wait_converged(watcher)
    if times:
        print(f"  failover (SIGKILL of the leader -> next committed write), {len(times)} kills: "
              f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
