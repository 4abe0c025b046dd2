"""Real agent processes (``python -m swarm agent``) on a real broker, for process-level
tests: configs in a temporary folder, start / SIGKILL / SIGTERM / SIGSTOP / SIGCONT
one node, wait for a leader, read each node's metrics.

Liveness waits are generous and bounded (the test machine is loaded); the tests'
safety assertions are strict.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from swarm.bus import topics
from swarm.bus.broker import LocalBroker, free_port
from swarm.bus.client import BrokerAddress, Bus, BusConfig, Received
from swarm.bus.keys import generate_key_file
from swarm.client import SwarmClient

from fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]

#: Timing for tests: the lan profile's 10 ms tick with a longer election timeout
#: (300-600 ms), so a loaded 2-core machine does not start elections by itself.
TEST_ELECTION_TICKS = 30


def zone(zid: str, lon: float = -122.1, lat: float = 37.4, status: str = "burning") -> dict[str, Any]:
    d = 0.005
    return {"type": "set_zone", "id": zid, "status": status, "source": "test", "time_ms": 1,
            "polygon": [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat]]}


def assert_no_divergence(statuses: dict[int, dict[str, Any]]) -> None:
    """Safety, checked on every poll: two nodes that report the same applied index hold
    the same state (committed entries are the same on every node and applied
    deterministically), whatever else differs between them (one may be a stale
    retained status). Each status's index and hash are taken together on its node."""
    seen: dict[int, tuple[int, str]] = {}
    for n, s in statuses.items():
        if "applied" not in s or "map_sha256" not in s:
            continue  # an offline status carries no state
        applied, digest = s["applied"], s["map_sha256"]
        if applied in seen and seen[applied][1] != digest:
            raise AssertionError(f"replicas diverged: nodes {seen[applied][0]} and {n} applied "
                                 f"index {applied} and hold different states "
                                 f"({seen[applied][1][:12]} != {digest[:12]})")
        seen.setdefault(applied, (n, digest))


class AgentCluster:
    def __init__(self, tmp: Path, broker: LocalBroker | Iterable[LocalBroker], n: int, *,
                 swarm: str = "test", mqtt: str = "5", extra: str = "",
                 profile: str = "lan", election_ticks: int | None = TEST_ELECTION_TICKS,
                 state_machine: str = "map", log_format: str = "text",
                 keepalive_s: int = 5) -> None:
        self.tmp = tmp
        self.log_format = log_format
        self.brokers = [broker] if isinstance(broker, LocalBroker) else list(broker)
        self.n = n
        self.swarm = swarm
        self.mqtt = mqtt
        self.profile = profile
        self.election_ticks = election_ticks
        self.state_machine = state_machine
        #: [bus] keepalive_s: paho's MQTT keepalive, and so the broker's timeout (1.5x).
        self.keepalive_s = keepalive_s
        self.key_file = tmp / "swarm.key"
        if not self.key_file.exists():
            generate_key_file(self.key_file)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.metrics_ports = {i: free_port() for i in self.ids}
        for i in self.ids:
            self.config_path(i).write_text(self._config(i, extra))
        self._clients: list[SwarmClient] = []

    @property
    def ids(self) -> list[int]:
        return list(range(1, self.n + 1))

    def broker_list(self) -> list[str]:
        return [f"{b.host}:{b.port}" for b in self.brokers]

    def prefer(self, i: int, brokers: list[LocalBroker]) -> None:
        """Give node ``i`` its own broker list (order of preference)."""
        listed = ", ".join(f'"{b.host}:{b.port}"' for b in brokers)
        text = self.config_path(i).read_text()
        start = text.index("brokers = [")
        end = text.index("]", start)
        self.config_path(i).write_text(text[:start] + f"brokers = [{listed}" + text[end:])

    def config_path(self, i: int) -> Path:
        return self.tmp / f"drone-{i}.toml"

    def data_dir(self, i: int) -> Path:
        return self.tmp / f"data-{i}"

    def log_path(self, i: int) -> Path:
        return self.tmp / f"drone-{i}.log"

    def add_mavlink(self, i: int, connection: str, sysid: int = 1,
                    telemetry_hz: float | None = None) -> None:
        """Give agent ``i`` a flight controller: its config's ``[mavlink]`` section."""
        hz = "" if telemetry_hz is None else f"telemetry_hz = {telemetry_hz:g}\n"
        with open(self.config_path(i), "a") as f:
            f.write(f'\n[mavlink]\nconnection = "{connection}"\nsysid = {sysid}\n{hz}')

    def route_broker(self, i: int, broker: LocalBroker, host: str, port: int) -> None:
        """Send agent ``i``'s traffic for ``broker`` to ``host:port`` instead (a fault
        proxy in front of it)."""
        path = self.config_path(i)
        path.write_text(path.read_text().replace(f'"{broker.host}:{broker.port}"',
                                                 f'"{host}:{port}"'))

    def _config(self, i: int, extra: str) -> str:
        brokers = ", ".join(f'"{b}"' for b in self.broker_list())
        return f"""
[node]
id = {i}
data_dir = "data-{i}"
voters = {self.ids}
state_machine = "{self.state_machine}"
[swarm]
id = "{self.swarm}"
key_file = "swarm.key"
[bus]
brokers = [{brokers}]
protocol = "{self.mqtt}"
keepalive_s = {self.keepalive_s}
reconnect_min_s = 0.05
reconnect_max_s = 1.0
[timing]
profile = "{self.profile}"
{"" if self.election_ticks is None else f"election_ticks = {self.election_ticks}"}
[metrics]
listen = "127.0.0.1:{self.metrics_ports[i]}"
[log]
level = "info"
format = "{self.log_format}"
{extra}
"""

    # -- processes -----------------------------------------------------------------------

    def start(self, i: int) -> None:
        assert i not in self.procs or self.procs[i].poll() is not None, f"node {i} runs"
        log = open(self.log_path(i), "ab")
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "swarm", "agent", "--config", str(self.config_path(i))],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()

    def start_all(self) -> None:
        for i in self.ids:
            self.start(i)

    def signal(self, i: int, sig: signal.Signals) -> None:
        self.procs[i].send_signal(sig)

    def kill(self, i: int) -> None:
        p = self.procs[i]
        p.kill()
        p.wait(10)

    def stop(self, i: int, timeout: float = 20.0) -> int:
        """SIGTERM and wait: the exit status of a clean shutdown."""
        p = self.procs[i]
        p.send_signal(signal.SIGTERM)
        return p.wait(timeout)

    def alive(self, i: int) -> bool:
        return i in self.procs and self.procs[i].poll() is None

    def close(self) -> None:
        for c in self._clients:
            c.close()
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- drone-{i}\n{self.log_path(i).read_text(errors='replace')[-3000:]}"
                         for i in self.ids if self.log_path(i).exists())

    # -- observation -------------------------------------------------------------------

    def client(self, **kwargs: Any) -> SwarmClient:
        c = SwarmClient(self.broker_list(), self.swarm, protocol=self.mqtt, **kwargs)
        c.connect()
        self._clients.append(c)
        return c

    def metrics(self, i: int) -> dict[str, float]:
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_ports[i]}/metrics", timeout=5).read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)", line)
            if m and not line.startswith("#"):
                out[m.group(1)] = float(m.group(2))
        return out

    def metrics_with_status(self, client: SwarmClient, i: int,
                            timeout: float = 30.0) -> tuple[dict[str, float], dict[str, Any]]:
        """Node ``i``'s metrics and its status at the same applied index. A node
        refreshes its metrics snapshot each time it publishes its status, so either may
        be a moment ahead of the other when the node applied something meanwhile (a
        late retry of a command answered from the session cache): poll, bounded."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics(i)
            status = client.statuses(wait_s=0.5).get(i, {})
            if m.get("swarm_raft_applied_index") == status.get("applied"):
                return m, status
            if time.monotonic() > deadline:
                raise AssertionError(f"node {i}: metrics at applied "
                                     f"{m.get('swarm_raft_applied_index')}, its status at "
                                     f"{status.get('applied')}, for {timeout} s")
            time.sleep(0.2)

    def wait_leader(self, client: SwarmClient, among: Iterable[int] | None = None,
                    timeout: float = 60.0, not_in: Iterable[int] = ()) -> int:
        """Wait until the online nodes of ``among`` (default all) report one leader in
        one term, the leader among them and not in ``not_in``; return it."""
        among = set(self.ids if among is None else among)
        excluded = set(not_in)
        deadline = time.monotonic() + timeout
        last: dict[int, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            last = client.statuses(wait_s=0.5)
            live = [s for n, s in last.items() if n in among and s.get("online")]
            if len(live) == len(among):
                leaders = {(s.get("leader"), s.get("term")) for s in live}
                if len(leaders) == 1:
                    leader, _ = leaders.pop()
                    if leader in among and leader not in excluded:
                        return int(leader)
            time.sleep(0.2)
        raise AssertionError(f"no agreed leader among {sorted(among)} within {timeout} s: "
                             f"{ {n: (s.get('role'), s.get('term'), s.get('leader')) for n, s in last.items()} }"
                             f"\n{self.logs()}")

    def wait_converged(self, client: SwarmClient, among: Iterable[int] | None = None,
                       timeout: float = 60.0) -> dict[int, dict[str, Any]]:
        """Wait until the nodes of ``among`` have one commit index, have applied all of
        it, and hold the same state there (the state machine's snapshot hash: map and
        session table); return their statuses. Hashes are only comparable at one
        applied index: later entries may change the session table and not the map (a
        retried command answered from the cache), so compare maps across indexes.

        The one index is at least the leader's commit index at the call (a linearizable
        read's ``read_index``): statuses are published at a bounded rate and retained,
        so every node's last one can agree on an index from before the caller's last
        acknowledged write, and converging there would compare the caller's later
        reads with stale statuses."""
        among = set(self.ids if among is None else among)
        deadline = time.monotonic() + timeout
        floor = self._read_index(client, deadline)
        last: dict[int, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            last = {n: s for n, s in client.statuses(wait_s=0.5).items() if n in among}
            assert_no_divergence(last)
            if len(last) == len(among) and all(s.get("online") for s in last.values()):
                if len({(s["commit"], s["applied"], s["map_sha256"])
                        for s in last.values()}) == 1 \
                        and all(s["applied"] == s["commit"] >= floor for s in last.values()):
                    return last
            time.sleep(0.2)
        raise AssertionError(f"nodes {sorted(among)} did not converge at index {floor} or "
                             f"later within {timeout} s: "
                             f"{ {n: (s.get('applied'), s.get('map_sha256', '')[:8]) for n, s in last.items()} }"
                             f"\n{self.logs()}")

    def _read_index(self, client: SwarmClient, deadline: float) -> int:
        """The leader's commit index now: a linearizable read's ``read_index``, retried
        (an election may be under way) until ``deadline``."""
        reply = None
        while time.monotonic() < deadline:
            reply = client.read(timeout_s=max(1.0, deadline - time.monotonic()))
            if reply.status == "ok":
                return int(reply.body["read_index"])
            time.sleep(0.2)
        raise AssertionError(f"no linearizable read within the deadline: "
                             f"{reply.body if reply else None}\n{self.logs()}")


class StatusLog:
    """Every status and event the swarm publishes, stamped on arrival (its own MQTT
    connection, so nothing is sampled away between two polls)."""

    def __init__(self, cluster: AgentCluster, client_id: str = "status-log") -> None:
        broker = cluster.brokers[0]
        self.lock = threading.Lock()
        self.statuses: list[tuple[float, int, dict[str, Any]]] = []
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.latest: dict[int, dict[str, Any]] = {}
        self.n = cluster.n
        self.bus = Bus(BusConfig(brokers=(BrokerAddress(broker.host, broker.port),),
                                 client_id=client_id))
        self.bus.subscribe(topics.wildcard(cluster.swarm, topics.Kind.STATUS), self._status, qos=1)
        self.bus.subscribe(topics.events(cluster.swarm), self._event, qos=1)
        self.bus.start()
        assert self.bus.wait_connected(10)

    def _status(self, msg: Received) -> None:
        node = topics.parse(msg.topic).node
        body = json.loads(msg.payload)
        assert node is not None
        with self.lock:
            self.statuses.append((time.monotonic(), node, body))
            self.latest[node] = body

    def _event(self, msg: Received) -> None:
        with self.lock:
            self.events.append((time.monotonic(), json.loads(msg.payload)))

    def leader(self) -> tuple[int, int] | None:
        """(leader, term) that every online node agrees on, else None."""
        with self.lock:
            live = [s for s in self.latest.values() if s.get("online")]
        views = {(s.get("leader"), s.get("term")) for s in live}
        if len(live) == self.n and len(views) == 1:
            leader, term = views.pop()
            if leader and term is not None:
                return int(leader), int(term)
        return None

    def snapshot(self) -> dict[int, dict[str, Any]]:
        with self.lock:
            return dict(self.latest)

    def close(self) -> None:
        self.bus.close()


# -- a silent link loss: when each end noticed ----------------------------------------

def _log_time(line: str) -> float:
    """The wall-clock time of one agent log line (``%(asctime)s``: local time, ms)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


@dataclass(frozen=True)
class Noticed:
    """Seconds from the fault's start until each end gave up on the connection."""

    raft_bus: float      # the agent's Raft connection (the one with the Last Will)
    client_bus: float | None   # its client-request connection, if it gave up yet
    broker: float        # mosquitto: it published the node's Last Will

    def __str__(self) -> str:
        client = "-" if self.client_bus is None else f"{self.client_bus:.2f}"
        return (f"agent's Raft connection noticed after {self.raft_bus:.2f} s (client "
                f"connection {client} s), broker after {self.broker:.2f} s")


def wait_noticed(cluster: AgentCluster, status_log: StatusLog, node: int, wall0: float,
                 mono0: float, log_from: int, timeout: float = 90.0) -> Noticed:
    """Wait (bounded) until both ends gave up on ``node``'s Raft connection after a
    silent link loss that began at ``wall0`` (time.time) / ``mono0`` (monotonic): the
    agent (its bus logs ``<client id>: lost broker`` past ``log_from`` characters of its
    log) and the broker (``status_log`` saw the node's Last Will: ``online`` false)."""
    raft_id = f"{cluster.swarm}-node-{node}"
    deadline = time.monotonic() + timeout
    agent = client = broker = None
    while agent is None or broker is None:
        assert time.monotonic() < deadline, \
            f"node {node}: agent noticed after {agent}, broker after {broker}\n{cluster.logs()}"
        text = cluster.log_path(node).read_text(errors="replace")[log_from:]
        for line in text.splitlines():
            if agent is None and f"{raft_id}: lost broker" in line:
                agent = _log_time(line) - wall0
            if client is None and f"{raft_id}-clients: lost broker" in line:
                client = _log_time(line) - wall0
        if broker is None:
            with status_log.lock:
                offline = [t for t, n, s in status_log.statuses
                           if n == node and t > mono0 and s.get("online") is False]
            if offline:
                broker = offline[0] - mono0
        time.sleep(0.2)
    return Noticed(agent, client, broker)


def new_leader_after(status_log: StatusLog, mono0: float, among: list[int], term: int) -> float:
    """Seconds from the fault to the first status of a leader of ``among`` in a later
    term (as published: an upper bound on the election's own time); NaN if none seen."""
    with status_log.lock:
        times = [t for t, n, s in status_log.statuses if n in among and t > mono0
                 and s.get("role") == "leader" and s.get("term", 0) > term]
    return times[0] - mono0 if times else float("nan")


@contextmanager
def proxied_cluster(tmp: Path, broker: LocalBroker, n: int = 3, **options: Any
                    ) -> Iterator[tuple[AgentCluster, dict[int, FaultProxy], StatusLog]]:
    """``n`` agents started, each reaching ``broker`` through its own fault-injecting
    proxy, and a StatusLog straight to the broker (not through a proxy); everything
    closed on exit. ``options`` go to AgentCluster."""
    cluster = AgentCluster(tmp, broker, n, **options)
    proxies = {i: FaultProxy(broker.host, broker.port) for i in cluster.ids}
    log: StatusLog | None = None
    try:
        for i, proxy in proxies.items():
            cluster.route_broker(i, broker, proxy.host, proxy.port)
        log = StatusLog(cluster)
        cluster.start_all()
        yield cluster, proxies, log
    finally:
        cluster.close()
        if log is not None:
            log.close()
        for proxy in proxies.values():
            proxy.close()
