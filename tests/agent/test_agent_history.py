"""The process-level history check: concurrent writes and linearizable reads from
several client *processes* (tests/agent/history_client.py, each its own MQTT connection
and exactly-once session) while a bounded schedule of every fault of issue 9 runs
against three agent processes on a real mosquitto:

SIGKILL of the leader, of a follower, and of every node at once (each restarted from
its SQLite store); SIGSTOP of the leader past an election timeout, then SIGCONT; a
broker restart; and, through a fault-injecting TCP proxy on each drone's link, a delay,
a cut and a heal of the leader's link, then silent losses of it (a blackhole both ways,
then of broker -> agent only), each healed, as a rule, before either end's keepalive
gives up, so the connection resumes and delivers what it held, late: the old term's
traffic and the clients' requests.

Each zone the clients touch is a register (a write is ``set_zone`` with a value unique
across clients in ``time_ms``; a read is the ReadIndex read of that one item). The
merged history, invocation and completion on CLOCK_MONOTONIC, unknown outcomes as
pending, goes through the project's checker (consensus/sim/linearizability.py) with a
final linearizable read of the whole map appended: 0 violations, and UNKNOWN (budget
exhausted) fails too. Then every acknowledged write is on the map and every node holds
the same state. On failure the histories and the checker's account are kept in
out/history-<time>/ for reading."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consensus.sim.linearizability import Operation, OpKind, Verdict, check_kv_history
from swarm.bus.broker import LocalBroker
from swarm.client import SwarmClient

from agent_cluster import ROOT, AgentCluster
from fault_proxy import FaultProxy

pytestmark = pytest.mark.timeout(300)

CLIENTS = 3
#: Each client's bound on one operation (its retries and hedges included). The short
#: ones give up during an election or a pause, so the history holds writes of unknown
#: outcome (pending: they may still commit later) as well as acknowledged ones.
OP_TIMEOUTS_S = (10.0, 3.0, 1.0)
HISTORY_CLIENT = Path(__file__).with_name("history_client.py")


def _now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def _operations(lines: list[dict[str, Any]]) -> list[Operation]:
    ops = []
    for d in lines:
        if d["kind"] == "put":
            ops.append(Operation(d["client"], OpKind.PUT, d["key"], d["call"], d["ret"],
                                 value=d["value"]))
        else:
            ops.append(Operation(d["client"], OpKind.GET, d["key"], d["call"], d["ret"],
                                 output=d.get("output") if d["ret"] is not None else None))
    return ops


def _keep(tmp: Path, cluster: AgentCluster, account: str) -> Path:
    """Copy the histories, the agents' logs and the checker's account to out/."""
    dest = ROOT / "out" / f"history-{time.strftime('%Y%m%dT%H%M%S')}"
    dest.mkdir(parents=True, exist_ok=True)
    for f in [*tmp.glob("history-*.jsonl"), *tmp.glob("client-*.log"), *tmp.glob("drone-*.log"),
              *tmp.glob("faults.jsonl"), *tmp.glob("final.json")]:
        shutil.copy(f, dest / f.name)
    (dest / "checker.txt").write_text(account)
    return dest


def test_client_processes_across_every_fault_are_linearizable(tmp_path: Path,
                                                              mosquitto: LocalBroker) -> None:
    cluster = AgentCluster(tmp_path, mosquitto, 3)
    proxies = {i: FaultProxy(mosquitto.host, mosquitto.port) for i in cluster.ids}
    clients: list[subprocess.Popen[bytes]] = []
    stop_file = tmp_path / "stop"
    pin_file = tmp_path / "pin"   # names the paused leader while clients 2, 3 aim at it
    faults: list[dict[str, Any]] = []
    try:
        for i, proxy in proxies.items():
            cluster.route_broker(i, mosquitto, proxy.host, proxy.port)
        cluster.start_all()
        watcher = cluster.client()
        cluster.wait_leader(watcher)
        for n in range(1, CLIENTS + 1):
            log = open(tmp_path / f"client-{n}.log", "wb")
            clients.append(subprocess.Popen(
                [sys.executable, str(HISTORY_CLIENT), "--broker", cluster.broker_list()[0],
                 "--swarm", cluster.swarm, "--client", str(n), "--seed", "9",
                 "--out", str(tmp_path / f"history-{n}.jsonl"), "--stop", str(stop_file),
                 "--max-s", "150", "--op-timeout-s", str(OP_TIMEOUTS_S[n - 1]),
                 "--pin", str(pin_file), *(["--pinnable"] if n > 1 else [])],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT))
            log.close()

        def fault(name: str, action: Callable[[], object]) -> None:
            faults.append({"fault": name, "t": _now()})
            action()

        def completed_since(n: int, t: float) -> int:
            path = tmp_path / f"history-{n}.jsonl"
            text = path.read_text() if path.exists() else ""
            return sum(1 for line in text.splitlines()
                       if line.endswith("}") and (r := json.loads(line)["ret"]) is not None
                       and r > t)

        def settle(among: list[int] | None = None, ops_s: float = 1.0) -> int:
            """A leader agreed by ``among``, then every client completes an operation
            (bounded, generous waits), then ``ops_s`` more of operations: each fault
            meets a working cluster and busy clients."""
            t0 = _now()
            leader = cluster.wait_leader(watcher, among=among, timeout=60)
            deadline = time.monotonic() + 60
            while not all(completed_since(n, t0) for n in range(1, CLIENTS + 1)):
                assert time.monotonic() < deadline, \
                    f"a client completed nothing for 60 s after {faults[-1:]}\n{cluster.logs()}"
                time.sleep(0.2)
            time.sleep(ops_s)
            return leader

        started = _now()
        time.sleep(2.0)
        leader = settle()
        # SIGKILL of the leader, restarted from its store.
        fault(f"sigkill leader {leader}", lambda: cluster.kill(leader))
        settle([i for i in cluster.ids if i != leader])
        fault(f"restart {leader}", lambda: cluster.start(leader))
        leader = settle()
        # SIGKILL of a follower.
        follower = next(i for i in cluster.ids if i != leader)
        fault(f"sigkill follower {follower}", lambda: cluster.kill(follower))
        time.sleep(1.5)
        fault(f"restart {follower}", lambda: cluster.start(follower))
        leader = settle()
        # SIGSTOP of the leader past an election timeout (300-600 ms), then SIGCONT.
        # Clients 2 and 3 send to the paused node alone meanwhile: their requests wait
        # in its socket and meet a deposed leader when it wakes (client 1 goes on with
        # the new leader, so writes commit while the old one sleeps).
        fault(f"sigstop leader {leader}", lambda: cluster.signal(leader, signal.SIGSTOP))
        pin_file.write_text(str(leader))
        time.sleep(3.0)
        fault(f"sigcont {leader}", lambda: cluster.signal(leader, signal.SIGCONT))
        time.sleep(0.5)   # the pinned requests' replies, from the resumed node
        pin_file.unlink()
        leader = settle()
        # Broker restart (same port; the proxies reconnect upstream as agents retry).
        fault("broker kill", mosquitto.kill)
        time.sleep(1.0)
        fault("broker start", lambda: mosquitto.start())
        assert watcher._bus.wait_connected(30)
        leader = settle()
        # The leader's link: delayed, then cut (a new leader), then healed.
        fault(f"proxy delay 50 ms {leader}", lambda: proxies[leader].delay(0.05))
        time.sleep(2.0)
        fault(f"proxy cut {leader}", lambda: proxies[leader].cut())
        settle([i for i in cluster.ids if i != leader])
        fault(f"proxy heal {leader}", lambda: proxies[leader].heal())
        leader = settle()
        # The leader's link lost silently (nothing flows, nothing closed), both ways and
        # then broker -> agent only (its heartbeats still reach the followers until
        # CheckQuorum deposes it); healed, as a rule, within the keepalive (5 s: paho
        # gives up after ~10 s, mosquitto after 7.5 s or more), so the held connection
        # resumes (on a slow settle the heal is a reconnect instead: checked the same).
        for up, down in ((True, True), (False, True)):
            name = "both ways" if up else "down"
            fault(f"proxy blackhole {name} {leader}",
                  lambda: proxies[leader].blackhole(up=up, down=down))
            settle([i for i in cluster.ids if i != leader], ops_s=0.5)
            fault(f"proxy heal {leader}", lambda: proxies[leader].heal())
            leader = settle()
        # Every node SIGKILLed at once, then all restarted.
        def kill_all() -> None:
            for i in cluster.ids:
                cluster.kill(i)

        fault("sigkill all", kill_all)
        time.sleep(1.0)
        fault("restart all", cluster.start_all)
        settle(ops_s=3.0)
        faults.append({"fault": "stop clients", "t": _now()})
        stop_file.touch()
        for p in clients:
            p.wait(60)
        faults_s = _now() - started
        assert [p.returncode for p in clients] == [0] * CLIENTS, \
            [(tmp_path / f"client-{n}.log").read_text() for n in range(1, CLIENTS + 1)]
        (tmp_path / "faults.jsonl").write_text("".join(json.dumps(f) + "\n" for f in faults))

        # Merge the histories; end with one linearizable read of the whole map.
        lines = [json.loads(line) for n in range(1, CLIENTS + 1)
                 for line in (tmp_path / f"history-{n}.jsonl").read_text().splitlines()]
        history = _operations(lines)
        statuses = cluster.wait_converged(watcher, timeout=90)
        assert len({s["map_sha256"] for s in statuses.values()}) == 1
        call = _now()
        reply = watcher.read(timeout_s=60)
        ret = _now()
        assert reply.status == "ok", reply.body
        final = {f["properties"]["id"]: str(f["properties"]["time_ms"])
                 for f in reply.body["map"]["features"] if f["properties"]["kind"] == "zone"}
        (tmp_path / "final.json").write_text(json.dumps(final))
        keys = {o.key for o in history}
        history += [Operation("final", OpKind.GET, k, call, ret, output=final.get(k))
                    for k in sorted(keys)]

        result = check_kv_history(history, timeout_s=60)
        acked = {o.key: o.value for o in history if o.kind is OpKind.PUT and not o.pending}
        fresh_acked = {k for k in acked if k not in ("k1", "k2")}
        account = (f"{result.describe()}\nfaults: {faults}\n"
                   f"lost fresh writes: {sorted(k for k in fresh_acked if final.get(k) != acked[k])}")
        if result.verdict is not Verdict.OK or any(final.get(k) != acked[k] for k in fresh_acked):
            kept = _keep(tmp_path, cluster, account)
            pytest.fail(f"{account}\nkept in {kept}")
        puts = [o for o in history if o.kind is OpKind.PUT]
        gets = [o for o in history if o.kind is OpKind.GET and not o.pending]
        print(f"\nhistory: {len(puts)} writes ({sum(not o.pending for o in puts)} acknowledged, "
              f"{sum(o.pending for o in puts)} unknown), {len(gets)} reads answered, "
              f"{len(lines) - len(puts) - len(gets) + len(keys)} reads unanswered; "
              f"{result.steps} search steps; faults {faults_s:.1f} s")
        # Enough happened for the check to mean something (settle() saw every client
        # complete operations between every two faults).
        assert len([o for o in puts if not o.pending]) >= 30 and len(gets) >= 30
        # Every node's state is the same (whole state-machine hash at one applied index).
        statuses = cluster.wait_converged(watcher, timeout=90)
        assert len({s["map_sha256"] for s in statuses.values()}) == 1
    finally:
        stop_file.touch()
        for p in clients:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        cluster.close()
        for proxy in proxies.values():
            proxy.close()
