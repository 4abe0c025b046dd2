"""A mixed swarm on one machine: real agent processes over a real broker, some of them
on emulated aarch64 (deploy/pi/emulate-aarch64.sh), the rest on this x86 machine; plays
the wildfire scenario's map commands through the client protocol and checks that every
node, whatever its architecture, ends with the same map snapshot, the same committed
assignment and the same GeoJSON export of its own map.

    deploy/pi/emulate-aarch64.sh mixed [NODES] [AARCH64_IDS]     # e.g. mixed 3 3

(the script passes the emulated python and its environment). This is the by-hand check
of docs/map.md, "Checking a mixed Pi/x86 swarm by hand", done for you: `swarm status
--json` on a real swarm shows the same fields. A developer tool, not run by CI.

The agents run without flight controllers (the map and its assignment only) on the
"radio" timing profile (1-2 s elections), which tolerates the emulated nodes' slowness.
The process harness is the tests' own (tests/agent/agent_cluster.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_cluster import AgentCluster  # noqa: E402  (the tests' process harness)

from swarm.bus.broker import LocalBroker, find_mosquitto  # noqa: E402
from swarm.client import SwarmClient  # noqa: E402
from swarm.evacmap import encode_command  # noqa: E402
from swarm.scenario import Propose, wildfire_scenario  # noqa: E402

_STABLE_POLLS = 4  # consecutive identical polls, 1 s apart: the leader has stopped proposing


class MixedCluster(AgentCluster):
    """AgentCluster whose nodes in ``emulated`` run under ``emulated_python``."""

    def __init__(self, tmp: Path, broker: LocalBroker, n: int, *, emulated: set[int],
                 emulated_python: str) -> None:
        super().__init__(tmp, broker, n, swarm="mixed", profile="radio", election_ticks=None)
        self.emulated = emulated
        self.emulated_python = emulated_python

    def start(self, i: int) -> None:
        if i not in self.emulated:
            super().start(i)
            return
        with open(self.log_path(i), "ab") as log:
            self.procs[i] = subprocess.Popen(
                [self.emulated_python, "-m", "swarm", "agent", "--config",
                 str(self.config_path(i))],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})


def _scenario_commands(seed: int, n: int) -> list[dict[str, Any]]:
    """The virtual demo's map commands in order (its crashes and the proposals it
    rejects before proposing are left out: this run is about agreement, not faults;
    its second report of one survivor stays in and is rejected by apply, as designed)."""
    names = [f"drone-{i}" for i in range(1, n + 1)]
    return [json.loads(encode_command(action.command))
            for phase in wildfire_scenario(seed, names).phases
            for action in phase.actions if isinstance(action, Propose)]


def _row(s: dict[str, Any]) -> tuple[Any, ...]:
    found = s.get("assignment")
    assignment: dict[str, Any] = found if isinstance(found, dict) else {}
    return (s.get("applied"), s.get("map_sha256"), assignment.get("sha256"),
            assignment.get("current"))


def _wait_stable(cluster: MixedCluster, client: SwarmClient,
                 timeout: float) -> dict[int, dict[str, Any]]:
    """Statuses once every node reports the same applied index, map hash and current
    committed assignment for _STABLE_POLLS polls in a row."""
    deadline = time.monotonic() + timeout
    seen: list[tuple[Any, ...]] = []
    last: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        last = client.statuses(wait_s=1.0)
        rows = {n: _row(s) for n, s in last.items() if n in cluster.ids and s.get("online")}
        agreed = (len(rows) == cluster.n and len(set(rows.values())) == 1)
        state = next(iter(rows.values())) if agreed else None
        if state is not None and state[2] is not None and state[3] is True:
            seen.append(state)
            if len(seen) >= _STABLE_POLLS and len(set(seen[-_STABLE_POLLS:])) == 1:
                return last
        else:
            seen.clear()
    raise AssertionError(f"no stable agreement within {timeout} s: "
                         f"{ {n: _row(s) for n, s in last.items()} }\n{cluster.logs()}")


def run(n: int, emulated: set[int], emulated_python: str, seed: int, out: Path,
        timeout: float, aarch64_first: bool = False) -> dict[str, Any]:
    if find_mosquitto() is None:
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    out.mkdir(parents=True, exist_ok=True)
    broker = LocalBroker("mosquitto")  # the ground station's broker: this x86 machine
    broker.start()
    cluster = MixedCluster(out, broker, n, emulated=emulated, emulated_python=emulated_python)
    started = time.monotonic()
    try:
        client = cluster.client(timeout_s=120.0, attempt_timeout_s=5.0)
        if aarch64_first:
            # The emulated nodes (a quorum) elect one of them before the others start,
            # so the first assignments are computed on aarch64.
            for i in sorted(emulated):
                cluster.start(i)
            first = cluster.wait_leader(client, among=emulated, timeout=timeout)
            print(f"first leader: node {first} (aarch64) after "
                  f"{time.monotonic() - started:.0f} s", flush=True)
        for i in cluster.ids:
            if not cluster.alive(i):
                cluster.start(i)
        leader = cluster.wait_leader(client, timeout=timeout)
        print(f"leader: node {leader} after {time.monotonic() - started:.0f} s", flush=True)
        replies = []
        for command in _scenario_commands(seed, n):
            reply = client.propose(command)
            replies.append((command["type"], command.get("id"), reply.status,
                            reply.body.get("result", reply.body.get("message"))))
        print(f"proposed {len(replies)} commands: "
              f"{sum(1 for r in replies if r[2] == 'committed')} committed", flush=True)
        statuses = _wait_stable(cluster, client, timeout)
        nodes = {}
        for i in cluster.ids:
            reply = client.request(i, {"op": "read"}, timeout_s=60.0)
            geojson = json.dumps(reply.body.get("map"), sort_keys=True, separators=(",", ":"))
            s = statuses[i]
            nodes[str(i)] = {
                "machine": "aarch64 (emulated)" if i in emulated else platform.machine(),
                "role": s.get("role"), "term": s.get("term"), "applied": s.get("applied"),
                "leader_changes": s.get("leader_changes"),
                "map_sha256": s.get("map_sha256"),
                "assignment_sha256": s["assignment"]["sha256"],
                "assignment_epoch": s["assignment"]["epoch"],
                "read": reply.status,
                "geojson_sha256": hashlib.sha256(geojson.encode()).hexdigest(),
            }
        elapsed = time.monotonic() - started
        exits = {str(i): cluster.stop(i, timeout=60.0) for i in cluster.ids}
    finally:
        cluster.close()
        broker.close()
    equal = all(len({v[key] for v in nodes.values()}) == 1
                for key in ("applied", "map_sha256", "assignment_sha256", "geojson_sha256"))
    return {"seed": seed, "nodes": nodes, "commands": [list(r) for r in replies],
            "equal": equal and all(v["read"] == "ok" for v in nodes.values()),
            "seconds": round(elapsed, 1), "sigterm_exit_codes": exits}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixed_swarm.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--aarch64", type=int, nargs="+", default=[3],
                        help="node ids run on emulated aarch64 (default 3)")
    parser.add_argument("--emulated-python", required=True,
                        help="the emulated interpreter (emulate-aarch64.sh's wrapper)")
    parser.add_argument("--aarch64-first", action="store_true",
                        help="start the emulated nodes first (they must be a quorum), so "
                             "an aarch64 node leads while the first assignments are made")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True, help="folder for configs, logs, stores")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="bound on each wait (leader, agreement), seconds")
    args = parser.parse_args(argv)
    if not 3 <= args.nodes <= 9 or not set(args.aarch64) <= set(range(1, args.nodes + 1)):
        parser.error("3 to 9 nodes, and --aarch64 ids among them")
    if args.aarch64_first and 2 * len(set(args.aarch64)) <= args.nodes:
        parser.error("--aarch64-first needs the emulated nodes to be a majority")
    result = run(args.nodes, set(args.aarch64), args.emulated_python, args.seed, args.out,
                 args.timeout, args.aarch64_first)
    (args.out / "mixed-summary.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    print(f"{'node':5} {'machine':20} {'role':9} {'applied':8} {'map sha256':17} "
          f"{'assignment sha256':18} {'epoch':6} geojson sha256 (its own map)")
    for i, v in sorted(result["nodes"].items()):
        print(f"{i:5} {v['machine']:20} {v['role']:9} {v['applied']!s:8} "
              f"{v['map_sha256'][:16]:17} {str(v['assignment_sha256'])[:16]:18} "
              f"{v['assignment_epoch']!s:6} {v['geojson_sha256'][:16]}")
    print(f"{result['seconds']} s; agents' exit codes on SIGTERM: {result['sigterm_exit_codes']}")
    print("EQUAL on every node" if result["equal"] else "NOT EQUAL: see above")
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
