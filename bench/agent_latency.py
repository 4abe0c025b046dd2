"""Where a commit's milliseconds go: N real agents (`swarm agent`, fsync on) on mosquitto
on loopback, one synchronous client, one outstanding request (docs/benchmarks.md,
"Commit path").

The agents run with SWARM_LATENCY_TRACE (swarm/agent/trace.py): each records when a
command passed each stage. One clock (CLOCK_MONOTONIC) serves every process, so each
command's stages line up into one timeline, from the client's publish through the
leader, the first follower to acknowledge, and back:

  client publish -> leader: request off the bus -> node thread -> AppendEntries out
  (the leader's own write runs alongside) -> follower: off the bus -> node thread ->
  write begun -> done (fsync) -> acknowledgement out -> leader: off the bus -> stepped
  (waits for the leader's own write) -> applied -> reply out -> client has the reply.

Prints the commit latency (p50/p99), then the p50/p90 of every stage; the stages add
up to the total. Also the fsync figure of this disk, measured alone, as the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from bisect import bisect_left
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_cluster import AgentCluster, zone  # noqa: E402

from swarm.agent.trace import ENV  # noqa: E402
from swarm.bus.broker import LocalBroker  # noqa: E402

Marks = dict[str, list[float]]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _load(path: Path) -> Marks:
    marks: Marks = defaultdict(list)
    for line in path.read_text().splitlines():
        t, stage = line.split(" ", 1)
        marks[stage].append(float(t))
    for ts in marks.values():
        ts.sort()
    return marks


def _first(marks: Marks, stage: str, after: float, before: float) -> float | None:
    ts = marks.get(stage, [])
    i = bisect_left(ts, after)
    return ts[i] if i < len(ts) and ts[i] <= before else None


def _fsync_floor(folder: Path, n: int = 200) -> list[float]:
    """fdatasync of a 4 KiB append (SQLite's WAL frame) on the agents' disk, alone."""
    out = []
    fd = os.open(folder / "fsync-probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n):
            os.write(fd, b"f" * 4120)
            t = time.perf_counter()
            os.fdatasync(fd)
            out.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
    return out


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _node_thread_waits(pid: int) -> int:
    """Voluntary context switches of an agent's node thread (its main thread): each is a
    sleep that some input or timer had to wake."""
    for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def timeline(ops: list[tuple[float, float]], traces: dict[int, Marks]) -> dict[str, list[float]]:
    """Per stage, its duration in ms for every command whose whole path was traced."""
    stages: dict[str, list[float]] = defaultdict(list)
    for t0, t1 in ops:
        leader = next((n for n, m in traces.items()
                       if _first(m, "reply_pub", t0, t1) is not None
                       and any(_first(m, s, t0, t1) for s in m if s.startswith("app_send:"))), None)
        if leader is None:
            continue
        lm = traces[leader]
        req_net = _first(lm, "req_net", t0, t1)
        req_step = _first(lm, "req_step", t0, t1)
        sends = [x for s in lm if s.startswith("app_send:") for x in [_first(lm, s, t0, t1)] if x]
        if req_net is None or req_step is None or not sends:
            continue
        app_send = min(sends)
        l_end = _first(lm, "persist_end", app_send, t1)
        # The follower whose acknowledgement the leader stepped first.
        acks = []
        for f, fm in traces.items():
            if f == leader:
                continue
            step = _first(lm, f"ack_step:{f}", app_send, t1)
            if step is not None:
                acks.append((step, f))
        if not acks or l_end is None:
            continue
        ack_step, f = min(acks)
        fm = traces[f]
        f_net = _first(fm, "app_net", app_send - 0.001, t1)
        f_step = _first(fm, "app_step", app_send - 0.001, t1)
        f_begin = _first(fm, "persist_begin", app_send - 0.001, t1)
        f_end = _first(fm, "persist_end", app_send - 0.001, t1)
        f_ack = _first(fm, f"ack_send:{leader}", app_send - 0.001, t1)
        ack_net = _first(lm, f"ack_net:{f}", app_send, t1)
        applied = _first(lm, "applied", ack_step, t1)
        reply = _first(lm, "reply_pub", applied or t1, t1)
        chain = [("client publish -> leader has it (broker hop)", t0, req_net),
                 ("leader: paho thread -> node thread", req_net, req_step),
                 ("leader: propose -> AppendEntries out", req_step, app_send),
                 ("AppendEntries -> follower has it (broker hop)", app_send, f_net),
                 ("follower: paho thread -> node thread", f_net, f_step),
                 ("follower: step -> write begins", f_step, f_begin),
                 ("follower: write (fsync)", f_begin, f_end),
                 ("follower: write done -> ack out", f_end, f_ack),
                 ("ack -> leader has it (broker hop)", f_ack, ack_net),
                 ("leader: paho thread -> ack stepped", ack_net, ack_step),
                 ("leader: ack stepped -> applied", ack_step, applied),
                 ("leader: applied -> reply out", applied, reply),
                 ("reply -> client has it (broker hop)", reply, t1)]
        if any(a is None or b is None for _, a, b in chain):
            continue
        for name, a, b in chain:
            assert a is not None and b is not None
            stages[name].append((b - a) * 1000)
        l_begin = _first(lm, "persist_begin", req_step, t1)
        if l_begin is not None:
            stages["(alongside) leader: write (fsync)"].append((l_end - l_begin) * 1000)
        stages["(alongside) leader: AppendEntries out -> own write done"].append(
            (l_end - app_send) * 1000)
        hb = _first(lm, "hs_begin", ack_step, t1)
        he = _first(lm, "hs_end", ack_step, t1)
        if hb and he and applied and he < applied:
            stages["(part) leader: ack stepped -> commit write begins"].append((hb - ack_step) * 1000)
            stages["(part) leader: commit-index write"].append((he - hb) * 1000)
            stages["(part) leader: commit write done -> applied"].append((applied - he) * 1000)
        busy = [s for s in lm.get("status_end", []) if t0 <= s <= t1]
        stages["(count) leader status builds inside the op"].append(len(busy))
    return stages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--ops", type=int, default=300)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--state-machine", choices=("map", "register"), default="map",
                   help="map: each command a set_zone (the product); register: a put of 32 "
                        "characters (the consensus path without the map's geometry)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        folder = Path(tmp)
        traces_dir = folder / "traces"
        traces_dir.mkdir()
        floor = _fsync_floor(folder)
        os.environ[ENV] = str(traces_dir)
        broker = LocalBroker("mosquitto")
        broker.start()
        cluster = AgentCluster(folder, broker, args.nodes, election_ticks=None,
                               state_machine=args.state_machine)
        try:
            cluster.start_all()
            watcher = cluster.client()
            cluster.wait_leader(watcher)
            time.sleep(1.0)
            client = cluster.client()
            client.register()
            ops = []
            pids = {f"agent {i}": p.pid for i, p in cluster.procs.items()}
            if broker._proc is not None:
                pids["mosquitto"] = broker._proc.pid
            cpu0: dict[str, float] = {}
            for k in range(args.warmup + args.ops):
                if k == args.warmup:
                    cpu0 = {name: _cpu_s(pid) for name, pid in pids.items()}
                    waits0 = {i: _node_thread_waits(p.pid) for i, p in cluster.procs.items()}
                    cpu0["client (this process)"] = time.process_time()
                    began = time.monotonic()
                t0 = time.monotonic()
                command = (zone(f"l{k}") if args.state_machine == "map" else
                           {"type": "put", "key": f"k{k % 50}", "value": f"{k:032d}"})
                assert client.propose(command).committed
                if k >= args.warmup:
                    ops.append((t0, time.monotonic()))
            cpu = {name: _cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
            cpu["client (this process)"] = time.process_time() - cpu0["client (this process)"]
            waits = {i: _node_thread_waits(p.pid) - waits0[i] for i, p in cluster.procs.items()}
            elapsed = time.monotonic() - began
            for i in cluster.ids:
                cluster.stop(i)
        finally:
            cluster.close()
            broker.close()
            os.environ.pop(ENV, None)
        traces = {i: _load(traces_dir / f"trace-{i}.txt") for i in cluster.ids}
    total = [(b - a) * 1000 for a, b in ops]
    print(f"{args.nodes} agents ({args.state_machine}), profile lan, mosquitto on loopback, fsync on, "
          f"{len(ops)} commands at 1 outstanding (after {args.warmup} warm-up)")
    print(f"  commit latency: p50 {_pct(total, 0.5):.2f} ms, p99 {_pct(total, 0.99):.2f} ms")
    print(f"  this disk alone: fdatasync of a 4 KiB append p50 {statistics.median(floor):.2f} ms, "
          f"p90 {_pct(floor, 0.9):.2f} ms")
    # CPU time per command (idle work, heartbeats and status, included: ~3 % of a core).
    leader = max((n for n in cpu if n.startswith("agent")), key=lambda n: cpu[n])
    print(f"  CPU per command (ms; over {elapsed:.1f} s, {len(ops)} commands; the busiest agent "
          "is the leader): " + ", ".join(
              f"{name}{' (leader)' if name == leader else ''} {1000 * c / len(ops):.2f}"
              for name, c in cpu.items()))
    print("  node-thread sleeps per command (voluntary context switches; the fsync, the "
          "SQLite lock and the socket writes count too): " + ", ".join(
              f"agent {i}{' (leader)' if f'agent {i}' == leader else ''} {n / len(ops):.1f}"
              for i, n in waits.items()))
    stages = timeline(ops, traces)
    n = len(next(iter(stages.values()), []))
    if not n:
        print("  no command was traced end to end: the trace hooks (swarm/agent/trace.py) "
              "or this script's stage names are broken")
        return 1
    print(f"  stages (ms, p50 / p90) of the {n} commands traced end to end:")
    for name, values in stages.items():
        print(f"    {name:<58} {_pct(values, 0.5):6.2f} / {_pct(values, 0.9):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
