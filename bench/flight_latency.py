"""Latency from a committed map update to "every flight controller holds the new mission".

Real processes: N agent processes (``python -m swarm agent`` with ``[mavlink]``) on a
real mosquitto, each connected to one built-in simulated copter (on the ground, real
time). Each update moves a burned zone across the search area (so every drone's fence
and mission change); the clock stops when every ``plan/<node>`` (retained, published
after MISSION_ACK and read-back) says ``fc_map_version`` >= the update's index (and,
a second figure, when every ``status/<node>`` says ``fc.map_version_held`` so). Each
plan document's ``timing_ms`` says where the agent's time went (plan worker wait, plan,
fire check, upload, read-back verify); printed for the last FC of each update.
Measured from the commit reply (the client's node applied the entry) and from the
moment the proposal was sent.

    python bench/flight_latency.py [--agents 3] [--updates 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_cluster import AgentCluster  # noqa: E402
from sitl.builtin import SimulatorServer, configs_for  # noqa: E402
from swarm.bus.broker import LocalBroker  # noqa: E402
from swarm.geo import LocalFrame  # noqa: E402

HOME = (-35.363261, 149.165230, 584.0)


def _square(frame: LocalFrame, x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[round(v, 7) for v in frame.point_to_geodetic(x, y)]
            for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(agents: int, updates: int) -> None:
    held: dict[int, int] = {}
    status_held: dict[int, int] = {}  # fc.map_version_held in status/<node>
    # (node, map version) -> (when its plan document arrived, the agent's timing_ms)
    arrivals: dict[tuple[int, int], tuple[float, dict[str, float | None]]] = {}
    breakdown: dict[str, list[float]] = {}
    changed = threading.Condition()
    with tempfile.TemporaryDirectory() as tmp, LocalBroker("mosquitto") as broker, \
            SimulatorServer(configs_for(agents, time_to_ready_s=2.0, home=HOME, base_port=0,
                                        spacing_m=30.0)) as sim:
        cluster = AgentCluster(Path(tmp), broker, agents, swarm="bench")
        for i in cluster.ids:
            cluster.add_mavlink(i, sim.endpoints[i - 1], sysid=i)

        def on_message(c, u, m) -> None:
            try:
                doc = json.loads(m.payload)
                node = int(doc["node"])
                if "/status/" in m.topic:
                    fc_version = (doc.get("fc") or {}).get("map_version_held")
                    if isinstance(fc_version, int):
                        with changed:
                            status_held[node] = max(status_held.get(node, 0), fc_version)
                            changed.notify_all()
                    return
                version = doc.get("fc_map_version")
            except (ValueError, KeyError, TypeError, AttributeError):
                return
            if isinstance(version, int):
                with changed:
                    held[node] = max(held.get(node, 0), version)
                    if isinstance(doc.get("timing_ms"), dict):
                        arrivals.setdefault((node, version), (time.perf_counter(), doc["timing_ms"]))
                    changed.notify_all()

        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-flight-plans")
        sub.on_message = on_message
        sub.connect(broker.host, broker.port)
        sub.subscribe("swarm/bench/plan/+", 1)
        sub.subscribe("swarm/bench/status/+", 1)
        sub.loop_start()

        def wait_all(index: int, timeout: float, where: dict[int, int] = held) -> float | None:
            deadline = time.monotonic() + timeout
            with changed:
                while not (len(where) == agents and min(where.values()) >= index):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    changed.wait(left)
            return time.perf_counter()

        try:
            cluster.start_all()
            client = cluster.client(timeout_s=20.0)
            cluster.wait_leader(client, timeout=90)
            frame = LocalFrame(HOME[0], HOME[1])
            reply = client.propose({"type": "set_search_area",
                                    "polygon": _square(frame, -300, 100, 300, 700)})
            assert reply.committed, reply.message
            if wait_all(reply.body["index"], 120) is None:
                raise SystemExit(f"first plans did not reach every FC: {held}\n{cluster.logs()}")
            from_commit: list[float] = []
            in_status: list[float] = []
            from_send: list[float] = []
            for k in range(updates):
                y = 200 + (k % 5) * 80
                t_send = time.perf_counter()
                reply = client.propose({"type": "set_zone", "id": "moving-burn", "status": "burned",
                                        "polygon": _square(frame, -150, y, 150, y + 60),
                                        "source": "bench", "time_ms": k + 1})
                t_commit = time.perf_counter()
                assert reply.committed, reply.message
                done = wait_all(reply.body["index"], 60)
                if done is None:
                    raise SystemExit(f"update {k}: not every FC holds it within 60 s: {held}")
                from_commit.append((done - t_commit) * 1000)
                from_send.append((done - t_send) * 1000)
                shown = wait_all(reply.body["index"], 60, status_held)
                if shown is not None:
                    in_status.append((shown - t_commit) * 1000)
                with changed:
                    this = {n: arrivals.get((n, reply.body["index"])) for n in cluster.ids}
                # The last FC to hold it decides the figure: where did its time go?
                got = {n: a for n, a in this.items() if a is not None}
                if got:
                    last_node = max(got, key=lambda n: got[n][0])
                    at, timing = got[last_node]
                    breakdown.setdefault("last FC: commit reply -> plan doc", []).append(
                        (at - t_commit) * 1000)
                    for name, value in timing.items():
                        if isinstance(value, (int, float)):
                            breakdown.setdefault(f"last FC: {name}", []).append(float(value))
                    for n, (a, t) in got.items():
                        breakdown.setdefault("any FC: commit reply -> plan doc", []).append(
                            (a - t_commit) * 1000)
        finally:
            cluster.close()
            sub.loop_stop()
            sub.disconnect()
    print(f"flight latency: {agents} agents + {agents} built-in copters (ground, real time), "
          f"{updates} zone updates")
    for name, values in (("commit reply -> all FCs hold", from_commit),
                         ("proposal sent -> all FCs hold", from_send),
                         (f"commit reply -> all {agents} status say so", in_status)):
        if not values:
            continue
        print(f"  {name:36s} p50 {statistics.median(values):7.1f} ms  p99 {_pct(values, 0.99):7.1f} ms  "
              f"max {max(values):7.1f} ms")
    print("  where the time goes (the agents' timing_ms in plan/<node>; queued = node thread's"
          " hand-off -> plan worker starts):")
    for name, values in breakdown.items():
        print(f"    {name:36s} p50 {statistics.median(values):7.1f} ms  p99 {_pct(values, 0.99):7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3, choices=range(1, 8), metavar="N")
    parser.add_argument("--updates", type=int, default=30)
    args = parser.parse_args()
    if not 1 <= args.updates <= 1000:
        parser.error("--updates must be in 1..1000")
    run(args.agents, args.updates)


if __name__ == "__main__":
    main()
