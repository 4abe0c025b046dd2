"""The wildfire demo on real processes: ``swarm demo``.

What runs: ``launch/demo.yaml`` through the launcher (:class:`swarm.launch.Launcher`,
the one process supervisor): an MQTT broker (mosquitto when installed, the embedded one
otherwise), five built-in simulated copters, five ``swarm agent`` processes agreeing on
the map through Raft over that broker, and the ground-station web page. Ports are
picked free on loopback, state lives in a fresh temporary folder, so a run never
collides with another swarm on the machine and always starts afresh.

What happens: the wildfire story of :mod:`swarm.scenario` (the same one the
virtual-time demo plays, ``swarm demo-virtual``) is played through
:class:`swarm.client.SwarmClient`: each reporting drone has its own client session
(exactly-once through retries), fires appear and grow, survivors are reported, garbled
commands are refused by the agents' validation, and mid-run the **leader's agent is
SIGKILLed** with commands in flight; the launcher respawns it (its respawn policy) and
it catches up from its SQLite store and the new leader.

What is measured, from the agents' own retained ``status/<node>`` topics (docs/protocol.md)
stamped on arrival: leaders elected (distinct terms), failover time (SIGKILL to the first
status of a new leader in a higher term), the restarted node's catch-up time, commits,
and at the end, once every node has applied the same index, the **disagreements**: nodes
whose ``map_sha256`` (snapshot of map and session table) differs from the others', or
that could not be checked. A non-zero count fails the run.

Threads: the launcher's loop runs on the main thread (it owns the signal handlers: Ctrl-C
and SIGTERM stop every child, escalating to SIGKILL); the scenario runs on a worker
thread and, when it is done, asks the launcher to stop the way a user would, with
SIGTERM to this process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swarm.bus import topics
from swarm.bus.broker import free_port
from swarm.bus.client import BrokerAddress, Bus, BusConfig, Received
from swarm.client import ClientError, Reply, SwarmClient
from swarm.demo_flyaway import SecondGroundStation, pilot_route
from swarm.demo_tracks import TrackChecker
from swarm.evacmap import DroneTask, SetDroneTask, encode_command
from swarm.launch import Launcher, LaunchError, load_launch
from swarm.geo import LocalFrame
from swarm.scenario import (
    ORIGIN_LAT,
    ORIGIN_LON,
    CrashLeader,
    MarkCrashedDrone,
    Propose,
    ProposeRaw,
    RestartCrashed,
    Scenario,
    Wait,
    wildfire_scenario,
)

__all__ = ["DEMO_LAUNCH_FILE", "LiveDemoConfig", "LiveDemoError", "LiveDemoResult",
           "NodeView", "run_live_demo"]

#: The launch file the demo runs (shipped with the repository, next to the package).
DEMO_LAUNCH_FILE = Path(__file__).resolve().parent.parent / "launch" / "demo.yaml"
NODES = 5                    # demo.yaml runs five agents
SWARM_ID = "wildfire"
_PREFERRED_GCS_PORT = 8080
_WAIT_TICK_S = 0.05          # one scenario Wait tick, in wall-clock seconds
_COMMAND_TIMEOUT_S = 45.0    # one proposal, retries included (a failover in between)
# The copters fly 4x faster than real time (the simulator's speed-up), so the survey,
# the fly-away and the way home fit in about two minutes.
COPTER_SPEEDUP = 4.0
# The operator's pre-flight setup: ArduCopter's circle fence (FENCE_RADIUS, 300 m by
# default) must hold the search area (its far corner is 2.2 km from the staging area)
# and the fly-away, or enabling the fences with the first zone sends every drone
# beyond 300 m home (docs/flight.md).
FENCE_RADIUS_M = 3000.0
# The drone flown out of radio range goes this far south-west of its home (away from
# the scenario's fires, which lie north-east of the staging area): its SiK radio's fade
# margin falls to about 20 dB (sitl/radio.py; link score about 0.65), while the best
# placed of the others, surveying near the staging area, keep 0.9 or more: more than
# the leadership margin ([leadership] margin, 0.1) for longer than its dwell.
FLYAWAY_M = 2000.0
FLYAWAY_ALT_M = 30.0
FLYAWAY_SPEED_MS = 20.0      # ArduCopter's WPNAV_SPEED maximum
LEADERSHIP_MARGIN = 0.1
AIRBORNE_M = 5.0             # above home: flying, not standing or landing
# Recall to every drone on the ground: about 50 s at 4x from the far side of the area.
LANDING_TIMEOUT_S = 150.0


class LiveDemoError(RuntimeError):
    """The demo could not be run (the swarm did not come up, a step timed out ...)."""


@dataclass(frozen=True, slots=True)
class LiveDemoConfig:
    seed: int = 1
    #: Scenario play time in seconds: the phases are spread over it (0: back to back).
    duration_s: float = 60.0
    #: Ground-station port; None: 8080 when free, else any free port.
    gcs_port: int | None = None
    #: Where the launcher's log (every node's output) is written.
    out_dir: Path = Path("out")
    #: Bound on bringing the swarm up (all agents online and a leader).
    startup_timeout_s: float = 120.0
    #: Bound on every liveness wait inside the run (failover, catch-up, convergence).
    settle_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node's latest status as the demo saw it at the end."""

    node: int
    online: bool
    role: str
    term: int
    applied: int
    map_version: int
    map_sha256: str | None
    fc_map_version: int | None
    #: SHA-256 of the committed assignment this node holds (None before the first).
    assignment_sha256: str | None = None


@dataclass
class LiveDemoResult:
    gcs_url: str
    broker: str
    log_file: Path
    commits: int = 0                  # scenario commands committed
    rejected: list[str] = field(default_factory=list)   # refused commands and why
    unknown: list[str] = field(default_factory=list)    # outcome unknown (timeout)
    leaders: list[tuple[float, int, int]] = field(default_factory=list)  # (s, term, node)
    crashed: int | None = None
    failover_s: float | None = None
    #: SIGKILL to the respawned node's first status: respawn delay + start + broker.
    back_online_s: float | None = None
    #: SIGKILL to its first status with ``applied`` >= the leader's ``commit`` then.
    catch_up_s: float | None = None
    missions_converged_s: float | None = None   # None: no plan/<node> carries fc_map_version
    final_index: int = 0
    nodes: list[NodeView] = field(default_factory=list)
    disagreements: int = 0
    #: Nodes whose committed-assignment hash is not the majority's, or missing.
    assignment_disagreements: int = 0
    #: Drones that flew into a committed burning/burned zone (swarm/demo_tracks.py).
    zone_violations: list[dict[str, Any]] = field(default_factory=list)
    #: Drones inside a zone when it came in force (the fire reached them; informational).
    zone_caught: list[dict[str, Any]] = field(default_factory=list)
    #: Telemetry positions checked per drone; a drone with none could not be checked.
    positions_checked: dict[int, int] = field(default_factory=dict)
    unchecked_tracks: list[int] = field(default_factory=list)
    missing_features: list[str] = field(default_factory=list)
    #: The committed ``launch``: its index, and how long until every drone flew AUTO.
    launch: dict[str, Any] | None = None
    #: Per drone: telemetry samples airborne, of those in AUTO, highest altitude (m).
    flight: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: The drone flown out of radio range and the hand-over it caused (None: not done).
    radio_handover: dict[str, Any] | None = None
    recalled: bool = False            # the final recall committed
    #: Recall to every drone landed and disarmed (None: not all of them, in the bound).
    landed_s: float | None = None
    #: Per drone: how far from its home it landed (m); absent: not landed.
    landed_from_home_m: dict[int, float] = field(default_factory=dict)
    launcher_status: int = 0
    completed: bool = False
    error: str | None = None
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON (written to <out>/demo-summary.json for scripts)."""
        body = asdict(self)
        body["log_file"] = str(self.log_file)
        body["elections"] = self.elections
        body["ok"] = self.ok
        return body

    @property
    def elections(self) -> int:
        return len(self.leaders)

    @property
    def ok(self) -> bool:
        return (self.completed and self.error is None and self.disagreements == 0
                and self.assignment_disagreements == 0
                and not self.zone_violations and not self.unchecked_tracks
                and self.launch is not None and self.radio_handover is not None
                and self.recalled and self.landed_s is not None
                and not self.missing_features and not self.unknown)


# -- the swarm as its status topics show it ---------------------------------------------


@dataclass
class FlightSeen:
    """What one drone's telemetry showed: samples armed and above ``AIRBORNE_M``, of
    those in AUTO (flying its committed mission), and the highest altitude."""

    airborne: int = 0
    auto: int = 0
    max_alt_m: float = 0.0


@dataclass
class _Seen:
    body: dict[str, Any]
    at: float                           # time.monotonic() on arrival


class SwarmMonitor:
    """Every node's latest retained status and plan, stamped on arrival, and each
    (term, leader) the swarm announced, in order; every drone's telemetry track checked
    against the committed map's hazard zones (:class:`TrackChecker`). Payloads from the
    bus are validated (JSON objects from a parsable topic); anything else is ignored."""

    def __init__(self, broker: str, swarm: str, on_change: Callable[[], None]) -> None:
        self.swarm = swarm
        self._lock = threading.Lock()
        self.status: dict[int, _Seen] = {}
        self.plans: dict[int, _Seen] = {}
        self.leaders: dict[int, tuple[float, int]] = {}   # term -> (arrival, leader)
        # node -> [(arrival, fc_map_version)], appended when the version changes
        self.fc_history: dict[int, list[tuple[float, int]]] = {}
        self.tracks = TrackChecker()
        self.telemetry: dict[int, _Seen] = {}
        # node -> where it first stood (lat, lon) and what its telemetry showed in flight
        self.first_fix: dict[int, tuple[float, float]] = {}
        self.flight: dict[int, FlightSeen] = {}
        # Every status as it arrived (bounded): the hand-over is read back from it.
        self.history: deque[tuple[float, int, dict[str, Any]]] = deque(maxlen=50_000)
        # A restarted node being watched: (node, killed at) -> arrival stamps of its
        # first status back online and of its first caught-up status (the figures are
        # taken from the status stream as it arrives, not when the scenario asks).
        self._watch: tuple[int, float] | None = None
        self._went_offline = False     # the killed process's will (online: false) seen
        self.back_online_at: float | None = None
        self.caught_up_at: float | None = None
        self._on_change = on_change
        self._bus = Bus(BusConfig(brokers=(BrokerAddress.parse(broker),),
                                  client_id=f"demo-monitor-{os.getpid()}"))
        self._bus.subscribe(topics.wildcard(swarm, topics.Kind.STATUS), self._on_status, qos=1)
        self._bus.subscribe(topics.wildcard(swarm, topics.Kind.PLAN), self._on_plan, qos=1)
        self._bus.subscribe(topics.wildcard(swarm, topics.Kind.TELEMETRY), self._on_telemetry,
                            qos=0)
        self._bus.subscribe(topics.map_topic(swarm), self._on_map, qos=1)

    def start(self, timeout_s: float) -> None:
        self._bus.start()
        if not self._bus.wait_connected(timeout_s):
            self._bus.close()
            raise LiveDemoError(f"the demo's monitor could not reach the broker in {timeout_s:g} s")

    def close(self) -> None:
        self._bus.close()

    @staticmethod
    def _decode(msg: Received) -> tuple[int, dict[str, Any]] | None:
        try:
            topic = topics.parse(msg.topic)
            body = json.loads(msg.payload)
        except (topics.TopicError, ValueError):
            return None
        if topic.node is None or not isinstance(body, dict):
            return None
        return topic.node, body

    def _on_status(self, msg: Received) -> None:
        decoded = self._decode(msg)
        if decoded is None:
            return
        node, body = decoded
        now = time.monotonic()
        with self._lock:
            self.status[node] = _Seen(body, now)
            self.history.append((now, node, body))
            self._catch_up_seen(node, body, now)
            term, leader = body.get("term"), body.get("leader")
            if (body.get("online") and body.get("role") == "leader" and leader == node
                    and type(term) is int and term not in self.leaders):
                self.leaders[term] = (now, node)
        self._on_change()

    def watch_restart(self, node: int, killed_at: float) -> None:
        """Stamp ``node``'s return after a kill at ``killed_at`` (see _catch_up_seen)."""
        with self._lock:
            self._watch = (node, killed_at)
            self.back_online_at = self.caught_up_at = None
            self._went_offline = False

    def _catch_up_seen(self, node: int, body: dict[str, Any], now: float) -> None:
        """Under the lock: the watched node's first status online after the kill, and
        its first with ``applied`` at or beyond the highest ``commit`` any leader
        announced so far (the log it missed, and what was committed meanwhile)."""
        if self._watch is None or node != self._watch[0] or now < self._watch[1]:
            return
        if not body.get("online"):
            # The broker's will for the killed connection: what follows is the new
            # process (a status the old one had in flight is not mistaken for it).
            self._went_offline = True
            return
        if not self._went_offline:
            return
        if self.back_online_at is None:
            self.back_online_at = now
        if self.caught_up_at is None:
            commit = max((_int(s.body.get("commit")) for s in self.status.values()
                          if s.body.get("online") and s.body.get("role") == "leader"), default=0)
            if commit > 0 and _int(body.get("applied")) >= commit:
                self.caught_up_at = now

    def restart_seen(self) -> tuple[float | None, float | None]:
        with self._lock:
            return self.back_online_at, self.caught_up_at

    def _on_plan(self, msg: Received) -> None:
        decoded = self._decode(msg)
        if decoded is not None:
            node, body = decoded
            now = time.monotonic()
            fc = body.get("fc_map_version")
            with self._lock:
                self.plans[node] = _Seen(body, now)
                history = self.fc_history.setdefault(node, [])
                if type(fc) is int and (not history or history[-1][1] != fc):
                    history.append((now, fc))
            self._on_change()

    def _on_telemetry(self, msg: Received) -> None:
        decoded = self._decode(msg)
        if decoded is not None:
            node, body = decoded
            now = time.monotonic()
            lat, lon, alt = _num(body.get("lat")), _num(body.get("lon")), _num(body.get("alt_rel_m"))
            with self._lock:
                self.telemetry[node] = _Seen(body, now)
                self.tracks.position(node, now, body.get("lon"), body.get("lat"))
                if lat is not None and lon is not None:
                    self.first_fix.setdefault(node, (lat, lon))
                    seen = self.flight.setdefault(node, FlightSeen())
                    if body.get("armed") is True and alt is not None and alt > AIRBORNE_M:
                        seen.airborne += 1
                        seen.max_alt_m = max(seen.max_alt_m, alt)
                        if body.get("mode") == "AUTO":
                            seen.auto += 1

    def _on_map(self, msg: Received) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            doc = None
        now = time.monotonic()
        with self._lock:
            self.tracks.map_update(now, doc)

    def telemetry_of(self, node: int) -> dict[str, Any] | None:
        with self._lock:
            seen = self.telemetry.get(node)
        return seen.body if seen else None

    def home_of(self, node: int) -> tuple[float, float] | None:
        """Where ``node`` stood when its first position arrived (lat, lon): its home."""
        with self._lock:
            return self.first_fix.get(node)

    def flights(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return {n: asdict(f) for n, f in sorted(self.flight.items())}

    def hazards(self) -> list[tuple[tuple[float, float], ...]]:
        with self._lock:
            return self.tracks.current_hazards()

    def history_since(self, since: float) -> list[tuple[float, int, dict[str, Any]]]:
        with self._lock:
            return [h for h in self.history if h[0] >= since]

    def unpositioned(self) -> list[int]:
        """Drones of which no telemetry position has arrived yet."""
        with self._lock:
            return self.tracks.unchecked(range(1, NODES + 1))

    def fc_holds_since(self, node: int, version: int) -> float | None:
        """When ``node``'s flight controller first held a plan of ``version`` or later."""
        with self._lock:
            history = list(self.fc_history.get(node, ()))
        return next((at for at, v in history if v >= version), None)

    # -- queries (thread-safe snapshots) ----------------------------------------------

    def snapshot(self) -> tuple[dict[int, _Seen], dict[int, _Seen], dict[int, tuple[float, int]]]:
        with self._lock:
            return dict(self.status), dict(self.plans), dict(self.leaders)

    def online(self) -> list[int]:
        status, _, _ = self.snapshot()
        return sorted(n for n, s in status.items() if s.body.get("online"))

    def leader(self) -> tuple[int, int] | None:
        """(leader node, term) of the highest term whose leader is online and says so."""
        status, _, _ = self.snapshot()
        best = None
        for n, s in status.items():
            b = s.body
            if b.get("online") and b.get("role") == "leader" and type(b.get("term")) is int:
                if best is None or b["term"] > best[1]:
                    best = (n, b["term"])
        return best

    def fc_map_version(self, node: int) -> int | None:
        _, plans, _ = self.snapshot()
        seen = plans.get(node)
        value = seen.body.get("fc_map_version") if seen else None
        return value if type(value) is int else None

    def views(self) -> list[NodeView]:
        status, _, _ = self.snapshot()
        out = []
        for n in range(1, NODES + 1):
            b = status[n].body if n in status else {}
            out.append(NodeView(n, bool(b.get("online")), str(b.get("role", "-")),
                                _int(b.get("term")), _int(b.get("applied")),
                                _int(b.get("map_version")), _str(b.get("map_sha256")),
                                self.fc_map_version(n), _assignment_sha(b)))
        return out


def _int(value: object) -> int:
    return value if type(value) is int else 0


def _num(value: object) -> float | None:
    """A finite JSON number as float, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


_M_PER_DEG = 111_320.0


def _offset(origin: tuple[float, float], north_m: float, east_m: float) -> tuple[float, float]:
    lat, lon = origin
    return lat + north_m / _M_PER_DEG, lon + east_m / (_M_PER_DEG * math.cos(math.radians(lat)))


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Ground distance (equirectangular: these are a few km at most)."""
    dn = (b[0] - a[0]) * _M_PER_DEG
    de = (b[1] - a[1]) * _M_PER_DEG * math.cos(math.radians((a[0] + b[0]) / 2))
    return math.hypot(dn, de)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _assignment_sha(status: dict[str, Any]) -> str | None:
    """The status's committed-assignment hash (``assignment.sha256``, docs/protocol.md)."""
    assignment = status.get("assignment")
    return _str(assignment.get("sha256")) if isinstance(assignment, dict) else None


def count_disagreements(views: list[NodeView],
                        key: Callable[[NodeView], str | None] = lambda v: v.map_sha256) -> int:
    """Nodes whose hash (``key``: the map snapshot's by default, or the committed
    assignment's) is not the majority's, plus nodes that could not be checked (offline,
    or no hash): an unchecked node is not counted as agreeing."""
    hashes = [key(v) for v in views if v.online and key(v)]
    if not hashes:
        return len(views)
    majority = max(set(hashes), key=hashes.count)
    return sum(1 for v in views if not (v.online and key(v) == majority))


# -- ports and launch -------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_free_port = free_port


def _free_copter_base(exclude: set[int]) -> int:
    """A base port B with B, B+10, ... B+40 free, and each one's + 2 and + 3 (SITL's
    SERIAL1 and SERIAL2: the second ground station's port) (ArduPilot SITL's scheme,
    demo.yaml)."""
    for _ in range(200):
        base = _free_port()
        ports = [base + 10 * i + k for i in range(NODES) for k in (0, 2, 3)]
        if ports[-1] < 65536 and not exclude & set(ports) and all(map(_port_free, ports)):
            return base
    raise LiveDemoError("found no block of free loopback ports for the five copters")


# -- the run -----------------------------------------------------------------------------


class _Player:
    """Plays the scenario on the running swarm (the worker thread)."""

    def __init__(self, config: LiveDemoConfig, launcher: Launcher, monitor: SwarmMonitor,
                 result: LiveDemoResult, broker: str, log: Callable[[str], None],
                 stop: threading.Event, fc_base: int) -> None:
        self.config = config
        self.fc_base = fc_base
        self.launcher = launcher
        self.monitor = monitor
        self.result = result
        self.broker = broker
        self.log = log
        self.stop = stop
        self.t0 = time.monotonic()
        self.scenario: Scenario = wildfire_scenario(
            config.seed, [f"drone-{i}" for i in range(1, NODES + 1)])
        self.clients: dict[str, SwarmClient] = {}
        self.workers: dict[str, ThreadPoolExecutor] = {}
        self.pending: list[tuple[str, Future[Reply]]] = []
        self.crashed_at: float | None = None
        self.frame = LocalFrame(ORIGIN_LAT, ORIGIN_LON)   # the scenario's metres
        self.flyaway: Future[None] | None = None
        self.last_commit_at: float | None = None   # the scenario's last command's outcome

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- waits --------------------------------------------------------------------------

    def _wait(self, what: str, done: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if self.stop.is_set():
                raise LiveDemoError(f"stopped while waiting for {what}")
            if time.monotonic() > deadline:
                raise LiveDemoError(f"timed out after {timeout_s:g} s waiting for {what}")
            time.sleep(0.05)

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(max(0.0, seconds)):
            raise LiveDemoError("stopped")

    # -- proposing ----------------------------------------------------------------------

    def _client(self, who: str) -> tuple[SwarmClient, ThreadPoolExecutor]:
        if who not in self.clients:
            client = SwarmClient([self.broker], SWARM_ID, client_id=f"demo-{who}-{os.getpid()}",
                                 timeout_s=_COMMAND_TIMEOUT_S)
            client.connect()
            self.clients[who] = client
            self.workers[who] = ThreadPoolExecutor(1, thread_name_prefix=f"demo-{who}")
        return self.clients[who], self.workers[who]

    def _submit(self, who: str, note: str, command: bytes | dict[str, Any]) -> None:
        client, worker = self._client(who)
        self.pending.append((f"{who}: {note}", worker.submit(client.propose, command)))

    def _collect(self) -> None:
        for what, future in self.pending:
            # Poll, so a stop (Ctrl-C: the launcher is already stopping the swarm) is
            # not held up by a proposal retrying against nodes that are gone.
            deadline = time.monotonic() + _COMMAND_TIMEOUT_S + 15
            while not future.done() and time.monotonic() < deadline:
                if self.stop.wait(0.1):
                    raise LiveDemoError("stopped with proposals in flight")
            try:
                reply = future.result(timeout=0)
            except (ClientError, TimeoutError) as exc:
                self.result.unknown.append(f"{what}: {exc}")
                self.log(f"[red]{what}: no outcome ({exc})[/red]")
                continue
            if reply.committed:
                self.result.commits += 1
                self.log(f"  committed at index {reply.body.get('index')}: {what}"
                         + (f" [dim](after {reply.attempts} attempts)[/dim]"
                            if reply.attempts > 1 else ""))
            elif reply.code in ("invalid", "bad_request"):
                self.result.rejected.append(f"{what}: {reply.message}")
                self.log(f"  [yellow]refused[/yellow] ({reply.code}): {what}: {reply.message}")
            else:
                self.result.unknown.append(f"{what}: {reply.code}: {reply.message}")
                self.log(f"  [red]outcome unknown[/red]: {what}: {reply.code}: {reply.message}")
        self.pending.clear()
        self.last_commit_at = time.monotonic()

    # -- the story ----------------------------------------------------------------------

    def run(self) -> None:
        cfg = self.config
        # Up means flying-ready too: a position from every drone (its flight controller
        # has a GPS fix), so every track is checked from the start of the story.
        self.log(f"waiting for {NODES} agents, a leader and a position from every drone")
        self._wait(f"{NODES} agents online, a leader and a position from every drone",
                   lambda: (len(self.monitor.online()) == NODES
                            and self.monitor.leader() is not None
                            and not self.monitor.unpositioned()),
                   cfg.startup_timeout_s)
        lead = self.monitor.leader()
        self.log(f"swarm up after {self.elapsed():.1f} s: leader drone-{lead[0] if lead else '?'}")
        self._preflight()
        play_start = time.monotonic()
        phases = self.scenario.phases
        pilot = ThreadPoolExecutor(1, thread_name_prefix="demo-pilot")
        try:
            for i, phase in enumerate(phases):
                # Spread the phases over the duration: the gaps are when the copters fly.
                self._sleep(play_start + cfg.duration_s * i / len(phases) - time.monotonic())
                self.log(f"[bold]== {phase.title}[/bold]")
                for action in phase.actions:
                    self._act(action)
                self._collect()
                if i == 0:
                    self._launch()      # the search area and the drones are on the map
                    # Then the leader's copter is flown out of radio range while the story
                    # goes on (the leader has led since start-up: a hand-over is due once
                    # it has led one [leadership] interval); the leader is killed after.
                    self.flyaway = pilot.submit(self._fly_out_of_range)
            self._flyaway_done()
        finally:
            pilot.shutdown(wait=False, cancel_futures=True)
        self._sleep(play_start + cfg.duration_s - time.monotonic())
        self._recall()
        self._home()
        self._converge()

    def _pilot(self, node: int) -> SecondGroundStation:
        """A second ground station on ``node``'s copter (its SERIAL1, fc port + 2)."""
        try:
            return SecondGroundStation("127.0.0.1", self.fc_base + 10 * (node - 1) + 2, node)
        except OSError as exc:
            raise LiveDemoError(f"cannot reach drone-{node}'s copter on its SERIAL1 port: "
                                f"{exc}") from exc

    def _preflight(self) -> None:
        """The operator's pre-flight setup on every copter: a circle fence that holds
        the search area (see FENCE_RADIUS_M)."""
        for node in range(1, NODES + 1):
            station = self._pilot(node)
            try:
                station.set_param("FENCE_RADIUS", FENCE_RADIUS_M)
            except OSError as exc:
                raise LiveDemoError(f"drone-{node}'s SERIAL1 link failed: {exc}") from exc
            finally:
                station.close()
        self.log(f"pre-flight: every copter's circle fence set to {FENCE_RADIUS_M / 1000:g} km")

    def _launch(self) -> None:
        """Take-off: once every flight controller holds a plan to fly (the committed
        assignment's share), the operator commits ``launch`` (time_ms = now: each agent
        obeys it once, within its launch window); each agent arms its copter and flies
        its mission in AUTO. Fails the run unless every drone is seen airborne in AUTO."""
        self.log("[bold]== Take-off[/bold]")

        def ready() -> bool:
            _, plans, _ = self.monitor.snapshot()
            return all(n in plans and plans[n].body.get("status") == "ok"
                       and plans[n].body.get("mission")
                       and plans[n].body.get("fc_map_version") == plans[n].body.get("map_version")
                       for n in range(1, NODES + 1))
        self._wait("every flight controller to hold a plan to fly", ready,
                   self.config.settle_timeout_s)
        committed = self.result.commits
        self._submit("reporter", "launch: every drone takes off and flies its share",
                     {"type": "launch", "time_ms": int(time.time() * 1000)})
        sent_at = time.monotonic()
        self._collect()
        if self.result.commits != committed + 1:
            raise LiveDemoError("the launch command did not commit")

        def flying() -> bool:
            return all(self._mode(n) == "AUTO" and self._altitude(n) > AIRBORNE_M
                       for n in range(1, NODES + 1))
        try:
            self._wait("every drone airborne in AUTO after the launch", flying,
                       self.config.settle_timeout_s)
        except LiveDemoError as exc:
            status, _, _ = self.monitor.snapshot()
            why = {n: {k: fc.get(k) for k in ("launch_waits", "fence_problem") if fc.get(k)}
                   for n, fc in ((n, s.body.get("fc")) for n, s in sorted(status.items()))
                   if isinstance(fc, dict)}
            raise LiveDemoError(f"{exc} (the agents say: {why})") from exc
        self.result.launch = {"airborne_auto_s": round(time.monotonic() - sent_at, 3)}
        self.log(f"[green]all {NODES} drones airborne in AUTO[/green] "
                 f"{self.result.launch['airborne_auto_s']:.1f} s after the launch, flying "
                 "their committed sectors")

    def _fly_out_of_range(self) -> None:
        """The leader's copter is taken off its survey by a pilot (a second ground
        station on the copter's SERIAL1) and flown away from its ground-station radio,
        around the fires; its RADIO_STATUS fades, its agent's link score falls, and
        best-signal leadership moves to a better-placed drone. It hovers there until the
        recall brings it home. Fails the run unless leadership moves within the bound."""
        self.log("[bold]== A drone flies out of radio range[/bold]")
        self._wait("a leader", lambda: self.monitor.leader() is not None,
                   self.config.settle_timeout_s)
        lead = self.monitor.leader()
        assert lead is not None
        far, term = lead
        home, here = self.monitor.home_of(far), self._position(far)
        if home is None or here is None:
            raise LiveDemoError(f"no telemetry position from drone-{far}")
        target = _offset(home, -FLYAWAY_M / math.sqrt(2), -FLYAWAY_M / math.sqrt(2))
        route = pilot_route(self.frame, (here[1], here[0]), (target[1], target[0]),
                            self.monitor.hazards())
        if route is None:
            raise LiveDemoError(f"no way out for drone-{far} clear of the fires")
        pilot = self._pilot(far)
        try:
            self.log(f"a pilot takes drone-{far} (leader, term {term}) off its survey and flies "
                     f"it {FLYAWAY_M / 1000:g} km south-west of its ground-station radio"
                     + (f", around the fires ({len(route) - 1} turns)" if len(route) > 1 else ""))
            if self._altitude(far) > AIRBORNE_M:
                self._repeat(pilot.guided, lambda: self._mode(far) == "GUIDED",
                             f"drone-{far} to take GUIDED", 30.0)
            else:   # its survey is over and it has landed: off again
                self._repeat(lambda: pilot.take_off(FLYAWAY_ALT_M),
                             lambda: self._altitude(far) >= FLYAWAY_ALT_M - 5,
                             f"drone-{far} to take off", 60.0)
            pilot.set_speed(FLYAWAY_SPEED_MS)
            sent_at = time.monotonic()
            transfers_before = self._transfers(far)
            next_report = [sent_at + 5.0]

            def moved() -> bool:
                now = time.monotonic()
                if now >= next_report[0]:
                    next_report[0] = now + 5.0
                    where = self._position(far)
                    self.log(f"  drone-{far}: "
                             + ("" if where is None else f"{_distance_m(home, where):.0f} m out, ")
                             + "link scores " + ", ".join(
                                 f"{n}: {v}" for n, v in self._scores().items()))
                _, _, leaders = self.monitor.snapshot()
                # (an election under load may move it even before the drone sets off)
                return any(t > term and n != far for t, (at, n) in leaders.items())

            for lon, lat in route[:-1]:      # around the fires, corner by corner
                self._repeat(lambda: pilot.goto(lat, lon, FLYAWAY_ALT_M),
                             lambda: moved() or (lambda p: p is not None and _distance_m(
                                 (lat, lon), p) < 60)(self._position(far)),
                             f"drone-{far} to fly round the fires", 120.0)
            def out_and_moved() -> bool:   # out of range too, even if an election came first
                where = self._position(far)
                return moved() and where is not None and _distance_m(home, where) >= 1000
            self._repeat(lambda: pilot.goto(target[0], target[1], FLYAWAY_ALT_M), out_and_moved,
                         f"leadership to move off drone-{far} flown out of range", 150.0)
            _, _, leaders = self.monitor.snapshot()
            moved_at, new = min((at, n) for t, (at, n) in leaders.items()
                                if t > term and n != far)
            away = self._position(far)
            gap_at = self._score_gap_since(far, sent_at)
            # A score transfer (TimeoutNow from the far leader: best-signal leadership), or
            # an election (the far leader went unheard for an election timeout: load).
            until = time.monotonic() + 10.0     # its status after the hand-over (bounded)
            while self._role(far) == "leader" and time.monotonic() < until:
                self._sleep(0.1)
            by = "transfer" if self._transfers(far) > transfers_before else "election"
            if moved_at < sent_at:
                by = "election before it set off"
            figures: dict[str, Any] = {
                "node": far, "new_leader": new, "term": term, "by": by,
                "led_for_s": None if self.led_since(far, term) is None
                else round(moved_at - self.led_since(far, term), 3),  # type: ignore[operator]
                "set_off_to_handover_s": round(max(0.0, moved_at - sent_at), 3),
                "gap_to_handover_s": None if gap_at is None else round(moved_at - gap_at, 3),
                "distance_m": None if away is None else round(_distance_m(home, away)),
                "scores": self._scores(),
            }
            self.result.radio_handover = figures
            self.log(f"[green]drone-{new} leads[/green] (by "
                     + ("best-signal transfer" if by == "transfer" else f"an {by}") + ") "
                     f"{max(0.0, moved_at - sent_at):.1f} s after drone-{far} set off"
                     + ("" if gap_at is None else f", {moved_at - gap_at:.1f} s after its score "
                        "fell below another's by the margin")
                     + ("" if away is None else f", {figures['distance_m']} m out")
                     + "; it hovers there until the recall")
        finally:
            pilot.close()

    def _transfers(self, node: int) -> int:
        """Leadership hand-overs ``node`` started as leader (``score_transfers``)."""
        status, _, _ = self.monitor.snapshot()
        return _int(status[node].body.get("score_transfers")) if node in status else 0

    def _role(self, node: int) -> str | None:
        status, _, _ = self.monitor.snapshot()
        return _str(status[node].body.get("role")) if node in status else None

    def led_since(self, node: int, term: int) -> float | None:
        _, _, leaders = self.monitor.snapshot()
        seen = leaders.get(term)
        return seen[0] if seen and seen[1] == node else None

    def _home(self) -> None:
        """The recall brings every drone home: wait (bounded) until each has landed and
        disarmed, and note how far from its home."""
        recalled_at = time.monotonic()

        def landed(n: int) -> bool:
            seen = self.monitor.telemetry_of(n)
            return bool(seen) and seen.get("armed") is False and self._altitude(n) < 1.0  # type: ignore[union-attr]
        try:
            self._wait("every drone to land at home after the recall",
                       lambda: all(landed(n) for n in range(1, NODES + 1)), LANDING_TIMEOUT_S)
        except LiveDemoError as exc:
            self.log(f"[red]{exc}[/red]")
        for n in range(1, NODES + 1):
            home, where = self.monitor.home_of(n), self._position(n)
            if landed(n) and home is not None and where is not None:
                self.result.landed_from_home_m[n] = round(_distance_m(home, where), 1)
        if len(self.result.landed_from_home_m) == NODES:
            self.result.landed_s = round(time.monotonic() - recalled_at, 3)
            self.log(f"[green]every drone landed[/green] {self.result.landed_s:.1f} s after the "
                     "recall, within "
                     f"{max(self.result.landed_from_home_m.values()):.0f} m of its home")

    def _repeat(self, act: Callable[[], None], done: Callable[[], bool], what: str,
                timeout_s: float) -> None:
        """``act`` (an idempotent command) every 2 s until ``done``, bounded."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                act()
            except OSError as exc:
                raise LiveDemoError(f"{what}: the copter's SERIAL1 link failed: {exc}") from exc
            until = min(deadline, time.monotonic() + 2.0)
            while time.monotonic() < until:
                if done():
                    return
                self._sleep(0.1)
            if time.monotonic() >= deadline:
                raise LiveDemoError(f"timed out after {timeout_s:g} s waiting for {what}")

    def _position(self, node: int) -> tuple[float, float] | None:
        seen = self.monitor.telemetry_of(node)
        if seen is None:
            return None
        lat, lon = _num(seen.get("lat")), _num(seen.get("lon"))
        return (lat, lon) if lat is not None and lon is not None else None

    def _mode(self, node: int) -> str | None:
        seen = self.monitor.telemetry_of(node)
        return _str(seen.get("mode")) if seen else None

    def _altitude(self, node: int) -> float:
        seen = self.monitor.telemetry_of(node)
        alt = _num(seen.get("alt_rel_m")) if seen else None
        return alt if alt is not None else 0.0

    def _leader_id(self) -> int | str:
        lead = self.monitor.leader()
        return lead[0] if lead else "?"

    def _scores(self) -> dict[str, float | None]:
        status, _, _ = self.monitor.snapshot()
        return {str(n): _num(s.body.get("link_score")) for n, s in sorted(status.items())}

    def _score_gap_since(self, far: int, since: float) -> float | None:
        """When the far leader first reported a follower's score above its own by the
        leadership margin (the moment a transfer becomes due, before the dwell)."""
        for at, node, body in self.monitor.history_since(since):
            if node != far or body.get("role") != "leader":
                continue
            own, theirs = _num(body.get("link_score")), body.get("link_scores")
            if own is not None and isinstance(theirs, dict):
                scores = [v for v in map(_num, theirs.values()) if v is not None]
                if scores and max(scores) >= own + LEADERSHIP_MARGIN:
                    return at
        return None

    def _recall(self) -> None:
        """The end of the story: every drone ordered home (``recall``: RTL on each FC)."""
        self.log("[bold]== Recall[/bold]")
        self._submit("reporter", "every drone recalled home", {"type": "recall"})
        committed = self.result.commits
        self._collect()
        self.result.recalled = self.result.commits == committed + 1

    def _act(self, action: object) -> None:
        if isinstance(action, Propose):
            self._submit(action.by or "reporter", action.note, encode_command(action.command))
        elif isinstance(action, ProposeRaw):
            self._submit(action.by, action.note, dict(action.obj))
        elif isinstance(action, Wait):
            self._sleep(action.ticks * _WAIT_TICK_S)
        elif isinstance(action, CrashLeader):
            self._crash_leader(action.note)
        elif isinstance(action, MarkCrashedDrone):
            assert self.result.crashed is not None
            name = f"drone-{self.result.crashed}"
            command = SetDroneTask(name, DroneTask.SEARCH if action.alive else DroneTask.IDLE,
                                   action.alive, False, self.scenario.homes[name])
            self._submit("reporter", f"{name} marked {'alive' if action.alive else 'down'}",
                         encode_command(command))
        elif isinstance(action, RestartCrashed):
            self._catch_up(action.note)
        else:  # pragma: no cover - the Action union is closed
            raise TypeError(f"unknown scenario action {action!r}")

    def _flyaway_done(self) -> None:
        """Wait (bounded by the step's own waits) for the fly-away; its error fails the run."""
        if self.flyaway is None:
            return
        while not self.flyaway.done():
            self._sleep(0.1)
        self.flyaway.result()

    def _crash_leader(self, note: str) -> None:
        # The leader that took over from the drone flown out of range is the one killed.
        self._flyaway_done()
        self._wait("a leader to kill", lambda: self.monitor.leader() is not None,
                   self.config.settle_timeout_s)
        lead = self.monitor.leader()
        assert lead is not None
        victim, term = lead
        node = self.launcher.by_name.get(f"drone-{victim}")
        proc = node.proc if node is not None else None
        if proc is None:
            raise LiveDemoError(f"the launcher runs no process for drone-{victim}")
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        self.crashed_at = killed_at
        self.result.crashed = victim
        self.monitor.watch_restart(victim, killed_at)
        self.log(f"[bold red]SIGKILL drone-{victim}[/bold red] (leader, term {term}, "
                 f"pid {proc.pid}): {note}")

        def new_leader() -> bool:
            _, _, leaders = self.monitor.snapshot()
            return any(t > term and n != victim and at > killed_at
                       for t, (at, n) in leaders.items())
        self._wait("a new leader", new_leader, self.config.settle_timeout_s)
        _, _, leaders = self.monitor.snapshot()
        at, n = min((at, n) for t, (at, n) in leaders.items() if t > term and n != victim)
        self.result.failover_s = at - killed_at
        self.log(f"[green]drone-{n} leads[/green] {1000 * (at - killed_at):.0f} ms after the kill")

    def _catch_up(self, note: str) -> None:
        victim, killed_at = self.result.crashed, self.crashed_at
        assert victim is not None and killed_at is not None
        self.log(f"drone-{victim} is respawned by the launcher: {note}")

        # Usually long done: the launcher respawned it while the story went on.
        self._wait(f"drone-{victim} to come back and catch up",
                   lambda: self.monitor.restart_seen()[1] is not None,
                   self.config.settle_timeout_s)
        back, caught = self.monitor.restart_seen()
        assert back is not None and caught is not None
        self.result.back_online_s = back - killed_at
        self.result.catch_up_s = caught - killed_at
        self.log(f"[green]drone-{victim} back[/green] {self.result.back_online_s:.1f} s and "
                 f"[green]caught up[/green] {self.result.catch_up_s:.1f} s after the kill")

    def _converge(self) -> None:
        """Wait until every node applied the leader's commit, then compare hashes."""
        last_change = time.monotonic()

        def converged() -> bool:
            views = self.monitor.views()
            lead = self.monitor.leader()
            if lead is None or not all(v.online for v in views):
                return False
            status, _, _ = self.monitor.snapshot()
            commit = _int(status[lead[0]].body.get("commit"))
            return all(v.applied == commit for v in views) and \
                len({v.map_sha256 for v in views}) == 1
        try:
            self._wait("every node to apply the same index", converged,
                       self.config.settle_timeout_s)
        except LiveDemoError as exc:
            self.log(f"[red]{exc}[/red]")
        views = self.monitor.views()
        self.result.nodes = views
        self.result.final_index = max((v.applied for v in views), default=0)
        self.result.disagreements = count_disagreements(views)
        self.result.assignment_disagreements = count_disagreements(
            views, key=lambda v: v.assignment_sha256)
        self._check_map()
        # The map version, not the log index: elections' empty entries version nothing.
        self._missions(self.last_commit_at or last_change,
                       max((v.map_version for v in views), default=0))

    def _check_map(self) -> None:
        """Every feature the scenario created is in the agreed map (a linearizable read)."""
        expected = set()
        for phase in self.scenario.phases:
            for action in phase.actions:
                if isinstance(action, Propose):
                    body = action.command.to_json()
                    kind = {"set_zone": "zone", "set_route": "route",
                            "report_survivor": "survivor"}.get(str(body.get("type")))
                    if kind:
                        expected.add(f"{kind}:{body['id']}")
        client, _ = self._client("reporter")
        try:
            _, geojson = client.read_map()
        except ClientError as exc:
            self.result.missing_features = sorted(expected)
            self.log(f"[red]could not read the agreed map: {exc}[/red]")
            return
        have = {f.get("id") for f in geojson.get("features", []) if isinstance(f, dict)}
        self.result.missing_features = sorted(expected - have)

    def _missions(self, since: float, version: int) -> None:
        """Time until every flight controller holds the final map's plan, when the agents
        publish ``fc_map_version`` on plan/<node>; otherwise left None."""
        if not any(self.monitor.fc_map_version(n) is not None for n in range(1, NODES + 1)):
            return
        try:
            self._wait("every flight controller to hold the final plan",
                       lambda: all(self.monitor.fc_holds_since(n, version) is not None
                                   for n in range(1, NODES + 1)), self.config.settle_timeout_s)
            held = [self.monitor.fc_holds_since(n, version) for n in range(1, NODES + 1)]
            self.result.missions_converged_s = max(0.0, max(h for h in held if h) - since)
        except LiveDemoError as exc:
            self.log(f"[yellow]{exc}[/yellow]")

    def close(self) -> None:
        for worker in self.workers.values():
            worker.shutdown(wait=False, cancel_futures=True)
        for client in self.clients.values():
            client.close()


def _track_figures(result: LiveDemoResult, tracks: TrackChecker, t0: float) -> None:
    """The no-drone-in-a-burned-zone check's outcome, into the summary (the monitor is
    closed: nothing changes the checker any more)."""
    result.zone_violations = [e.to_json(t0) for e in tracks.violations]
    result.zone_caught = [e.to_json(t0) for e in tracks.caught]
    result.positions_checked = {n: tracks.positions.get(n, 0) for n in range(1, NODES + 1)}
    result.unchecked_tracks = tracks.unchecked(range(1, NODES + 1))


def run_live_demo(config: LiveDemoConfig, log: Callable[[str], None],
                  on_change: Callable[[], None] = lambda: None,
                  on_ready: Callable[[LiveDemoResult, SwarmMonitor], None] = lambda r, m: None,
                  ) -> LiveDemoResult:
    """Run the demo (blocks; call from the main thread: the launcher owns SIGINT/SIGTERM).

    ``log`` receives progress lines (rich markup); ``on_change`` is called on every
    status or plan received; ``on_ready`` once the monitor is connected."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    broker_port = _free_port()
    gcs_port = config.gcs_port
    if gcs_port is None:
        gcs_port = _PREFERRED_GCS_PORT if _port_free(_PREFERRED_GCS_PORT) else _free_port()
    elif not _port_free(gcs_port):
        raise LiveDemoError(f"ground-station port {gcs_port} is in use")
    fc_base = _free_copter_base({broker_port, gcs_port})
    data = Path(tempfile.mkdtemp(prefix="swarm-demo-"))
    try:
        description = load_launch(DEMO_LAUNCH_FILE, {
            "broker_port": str(broker_port), "gcs_port": str(gcs_port),
            "fc_base_port": str(fc_base), "data": str(data), "swarm": SWARM_ID,
            "speedup": f"{COPTER_SPEEDUP:g}"})
    except LaunchError as exc:
        raise LiveDemoError(f"{DEMO_LAUNCH_FILE}: {exc}") from exc
    broker = f"127.0.0.1:{broker_port}"
    log_file = config.out_dir / "demo-launch.log"
    result = LiveDemoResult(gcs_url=f"http://127.0.0.1:{gcs_port}/", broker=broker,
                            log_file=log_file)
    started = time.monotonic()
    stop = threading.Event()
    with open(log_file, "w", encoding="utf-8") as out:
        launcher = Launcher(description, out=out, colour=False)

        def play() -> None:
            monitor: SwarmMonitor | None = None
            player: _Player | None = None
            try:
                # The launcher installs its signal handlers when its loop starts (it sets
                # run_dir then); only then may this thread stop it with SIGTERM.
                while launcher.run_dir is None and not stop.is_set():
                    time.sleep(0.02)
                monitor = SwarmMonitor(broker, SWARM_ID, on_change)
                deadline = time.monotonic() + config.startup_timeout_s
                while True:   # the broker is itself a node the launcher is starting
                    try:
                        monitor.start(2.0)
                        break
                    except LiveDemoError:
                        if stop.is_set() or time.monotonic() > deadline:
                            raise
                        monitor = SwarmMonitor(broker, SWARM_ID, on_change)
                on_ready(result, monitor)
                player = _Player(config, launcher, monitor, result, broker, log, stop, fc_base)
                player.run()
                result.completed = True
            except LiveDemoError as exc:
                result.error = str(exc)
            except Exception as exc:  # noqa: BLE001 - reported, and the swarm still stops
                result.error = f"{type(exc).__name__}: {exc}"
            finally:
                if player is not None:
                    player.close()
                if monitor is not None:
                    if not result.nodes:
                        result.nodes = monitor.views()
                    _, _, leaders = monitor.snapshot()
                    result.leaders = sorted((at - started, t, n) for t, (at, n) in leaders.items())
                    monitor.close()
                    _track_figures(result, monitor.tracks, started)
                    result.flight = monitor.flights()
                if not stop.is_set():
                    log("scenario over: stopping the swarm")
                    os.kill(os.getpid(), signal.SIGTERM)

        worker = threading.Thread(target=play, name="demo-scenario", daemon=True)
        # The launcher restores the handlers it found when its loop ends; the worker's
        # SIGTERM may land just then, so what it finds must not be the default (which
        # would end this process before the summary).
        original = signal.signal(signal.SIGTERM, lambda signum, frame: None)
        worker.start()
        try:
            result.launcher_status = launcher.run()
        finally:
            stop.set()
            worker.join(timeout=_COMMAND_TIMEOUT_S + 30)
            signal.signal(signal.SIGTERM, original)
    shutil.rmtree(data, ignore_errors=True)
    if result.error is None and not result.completed:
        result.error = "the swarm stopped before the scenario ended"
    result.elapsed_s = time.monotonic() - started
    summary = config.out_dir / "demo-summary.json"
    summary.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return result
