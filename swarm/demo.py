"""The main job: five simulated drones agree, through Raft, on one evacuation map.

Each drone is a consensus ``RawNode`` over a ``MemoryStorage`` with an
``EvacuationMap`` wrapped in the exactly-once ``SessionStateMachine``. Everything runs
in one process, in virtual time (ticks of ``tick_ms`` virtual milliseconds), driven
by one seeded ``random.Random``: the same seed gives the same run, byte for byte.

Each node runs under the project's one Ready driver (:class:`consensus.driver.Driver`,
the same loop the simulator and the agent use), which keeps the Ready contract
(docs/consensus.md, Raft paper Figure 2): a Ready's snapshot, entries and hard state
are persisted *before* its messages go on the wire; then the snapshot is installed and
committed entries applied; then ``advance``; then log compaction. Messages travel as
bytes (the consensus codec) through a small exchange with 1-3 ticks of latency (so
they also arrive reordered). A crash is a power cut: the driver, its state machine and
anything unsent are dropped; only the storage survives, and a restart rebuilds the
node from it.

Each drone proposes through its own client session (Raft thesis section 6.3, the
sans-I/O :class:`consensus.session.SessionClient`): it registers, numbers its
commands, and retries on a timeout through the same session, so a command caught in a
leader crash is applied exactly once.

Who does what is decided once and committed (issue 13): whenever the leader's map
says the committed assignment is stale (:func:`swarm.planner.needs_assignment`), the
leader proposes :func:`swarm.planner.propose_assignment` through its own session, and
every drone plans its own path from its committed share.

The wildfire story is in :mod:`swarm.scenario`. At the end the demo prints the agreed
map, a hash of every node's snapshot and of its committed assignment (they must be
identical), each drone's plan from the planner (computed on every node from the
committed assignment: also identical), and writes the GeoJSON map and the per-drone
QGroundControl ``.plan`` / ``QGC WPL 110`` files into the output folder.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from consensus import (
    Config,
    ConfState,
    Entry,
    MemoryStorage,
    Message,
    ProposalDropped,
    SessionStateMachine,
    Snapshot,
    StateRole,
    decode_message,
    encode_message,
)
from consensus.driver import AppliedEntry, Driver, DriverConfig, DriverObserver, LeaderChange
from consensus.session import Completed, GaveUp, SessionClient
from consensus.session import decode_result as decode_session_result

from .evacmap import (
    ApplyResult,
    CommandError,
    DroneTask,
    EvacuationMap,
    MapView,
    SetDroneTask,
    decode_result,
    encode_command,
    geojson_bytes,
    parse_command,
    rfc7946_problems,
)
from .planner import (
    GeoPoint,
    PlanResult,
    VehicleState,
    assignment_hash,
    needs_assignment,
    plan_all,
    propose_assignment,
    write_qgc_plan,
    write_wpl,
)
from .scenario import (
    START_TIME_MS,
    CrashLeader,
    MarkCrashedDrone,
    Propose,
    ProposeRaw,
    RestartCrashed,
    Scenario,
    Wait,
    wildfire_scenario,
)

__all__ = ["DemoConfig", "DemoError", "DemoResult", "NodeReport", "run_demo"]

MIN_NODES, MAX_NODES = 3, 10


class DemoError(RuntimeError):
    """The demo could not complete (a bounded wait ran out, or nodes disagree)."""


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """How the demo runs. Times are in virtual ticks."""

    seed: int = 1
    nodes: int = 5
    out_dir: Path = Path("out")
    tick_ms: int = 10
    election_tick: int = 10  # 100-200 ms election timeout at 10 ms per tick (Raft §5.2)
    heartbeat_tick: int = 1
    retry_ticks: int = 40  # a client re-proposes a command unanswered this long
    snapshot_every: int = 4  # applied entries between state-machine snapshots
    compact_keep: int = 0  # entries kept behind a snapshot when compacting
    phase_timeout_ticks: int = 3_000
    write_files: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or not (
            MIN_NODES <= self.nodes <= MAX_NODES
        ):
            raise ValueError(f"nodes must be an integer from {MIN_NODES} to {MAX_NODES}, "
                             f"got {self.nodes!r}")
        for name in ("tick_ms", "election_tick", "heartbeat_tick", "retry_ticks",
                     "snapshot_every", "phase_timeout_ticks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One node at the end of the run."""

    name: str
    node_id: int
    role: str
    term: int
    applied: int
    map_version: int
    map_sha256: str  # of EvacuationMap.snapshot()
    fsm_sha256: str  # of the session-wrapped state machine's snapshot
    plans_sha256: str  # of this node's plans for every drone
    assignment_sha256: str | None  # of the committed set_assignment this node holds


@dataclass(frozen=True, slots=True)
class DemoResult:
    seed: int
    ticks: int
    tick_ms: int
    leaders: tuple[tuple[int, int, str], ...]  # (tick, term, drone) each time one is elected
    crashed: str | None
    crash_tick: int | None
    new_leader: str | None
    failover_ticks: int | None  # from the crash to the next leader's election
    catch_up: str | None  # "snapshot" or "log": how the restarted drone caught up
    nodes: tuple[NodeReport, ...]
    view: MapView
    results: tuple[tuple[str, str, ApplyResult | None], ...]  # (drone, what, result)
    rejected_before_proposing: tuple[str, ...]
    retries: int
    cached_replies: int
    applies_checked: int  # applies checked for State Machine Safety (Raft §5.4.3)
    lost_with_crash: tuple[str, ...]
    # The leader's set_assignment proposals: committed, and rejected by apply as
    # superseded (the map changed before they committed; the next one followed).
    assignments_committed: int
    assignments_superseded: int
    plans: dict[str, PlanResult]  # the leader's plans, by drone
    files: tuple[Path, ...]

    @property
    def identical(self) -> bool:
        """Every node holds the same map, session table, committed assignment and plans."""
        return (len({n.map_sha256 for n in self.nodes}) == 1
                and len({n.fsm_sha256 for n in self.nodes}) == 1
                and len({n.assignment_sha256 for n in self.nodes}) == 1
                and len({n.plans_sha256 for n in self.nodes}) == 1)


# ------------------------------------------------------------------- the exchange


class _Exchange:
    """In-process message exchange: bytes in, bytes out, 1-3 ticks of latency."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._queue: list[tuple[int, int, int, bytes]] = []  # (due, seq, to, payload)
        self._seq = 0
        self.sent = 0

    def send(self, to: int, payload: bytes, now: int) -> None:
        self._seq += 1
        self.sent += 1
        heapq.heappush(self._queue, (now + self._rng.randint(1, 3), self._seq, to, payload))

    def due(self, now: int) -> list[tuple[int, bytes]]:
        out = []
        while self._queue and self._queue[0][0] <= now:
            _, _, to, payload = heapq.heappop(self._queue)
            out.append((to, payload))
        return out


# -------------------------------------------------------------------- drones


@dataclass
class _Op:
    drone: str
    what: str
    payload: bytes
    seq: int = 0
    result: ApplyResult | None = None
    done: bool = False
    lost: bool = False


@dataclass
class _Drone:
    name: str
    nid: int
    storage: MemoryStorage
    driver: Driver | None = None
    evac: EvacuationMap | None = None
    fsm: SessionStateMachine | None = None
    #: The drone's client side of its session (volatile: lost in a crash), and the
    #: operations it carries, by request number.
    client: SessionClient | None = None
    ops: dict[int, _Op] = field(default_factory=dict)
    role: StateRole = StateRole.FOLLOWER
    incarnation: int = 0
    snapshots_installed: int = 0

    @property
    def up(self) -> bool:
        return self.driver is not None

    @property
    def applied(self) -> int:
        return self.driver.applied if self.driver is not None else 0


class _DroneLink:
    """The driver's transport: the drone's messages, encoded, into the exchange."""

    def __init__(self, demo: _Demo) -> None:
        self._demo = demo

    def send(self, messages: Sequence[Message]) -> None:
        demo = self._demo
        for m in messages:
            demo.net.send(m.to, encode_message(m), demo.now)


class _DroneObserver(DriverObserver):
    """What the demo watches on one drone's driver."""

    def __init__(self, demo: _Demo, drone: _Drone) -> None:
        self._demo, self._drone = demo, drone

    def snapshot_installed(self, driver: Driver, snapshot: Snapshot, applied_before: int) -> None:
        d = self._drone
        d.snapshots_installed += 1
        self._demo.log(f"{d.name} installs a snapshot at index {snapshot.meta.index} "
                       f"(map version {d.evac.version if d.evac else '?'})")

    def applied(self, driver: Driver, entry: AppliedEntry) -> None:
        self._demo._check_state_machine_safety(
            self._drone, Entry(entry.term, entry.index, entry.kind, entry.data))
        if entry.result is not None:
            self._demo._deliver(self._drone, entry.index, entry.result)

    def leadership_changed(self, driver: Driver, change: LeaderChange) -> None:
        self._demo._observe_role(self._drone, change.role)


class _Demo:
    def __init__(self, config: DemoConfig, say: Callable[[str], None]) -> None:
        self.cfg = config
        self.say = say
        self.rng = random.Random(config.seed)
        self.now = 0
        self.net = _Exchange(self.rng)
        names = [f"drone-{i}" for i in range(1, config.nodes + 1)]
        self.scenario: Scenario = wildfire_scenario(config.seed, names)
        conf = ConfState.of(tuple(range(1, config.nodes + 1)))
        self.drones = {i: _Drone(name, i, MemoryStorage(conf))
                       for i, name in enumerate(names, start=1)}
        self.by_name = {d.name: d for d in self.drones.values()}
        self.ops: list[_Op] = []
        self.leaders: list[tuple[int, int, str]] = []
        self.retries = 0
        self.cached_replies = 0
        self.rejected: list[str] = []
        self.crashed: _Drone | None = None
        self.crash_tick: int | None = None
        self.restarted = False
        self._rotation = 0
        self._assigning: _Op | None = None  # the leader's assignment proposal in flight
        self.assignment_ops: list[_Op] = []
        self.applied_at: dict[int, tuple[int, bytes, str]] = {}  # index -> term, digest, by
        self.applies_checked = 0
        for d in self.drones.values():
            self._start(d)

    # -- time and text

    def stamp(self) -> str:
        return f"{self.now * self.cfg.tick_ms / 1000:7.2f}s"

    def log(self, text: str) -> None:
        self.say(f"[dim]{self.stamp()}[/dim] {text}")

    def scenario_time_ms(self) -> int:
        return START_TIME_MS + self.now * self.cfg.tick_ms

    # -- node lifecycle

    def _start(self, d: _Drone) -> None:
        """Boot (or reboot) a drone from its storage, as after a power cut: the driver
        restores the state machine from the stored snapshot and rebuilds the node."""
        evac = EvacuationMap()
        fsm = SessionStateMachine(evac)
        d.evac, d.fsm = evac, fsm
        d.role = StateRole.FOLLOWER
        d.snapshots_installed = 0
        d.driver = Driver(
            Config(id=d.nid, election_tick=self.cfg.election_tick,
                   heartbeat_tick=self.cfg.heartbeat_tick,
                   rng=random.Random(self.rng.getrandbits(64))),
            d.storage, fsm, _DroneLink(self),
            DriverConfig(snapshot_every=self.cfg.snapshot_every, compact_keep=self.cfg.compact_keep),
            _DroneObserver(self, d),
        )
        d.incarnation += 1
        # One command in flight per drone (window 1): the session would apply
        # pipelined commands exactly once even when they commit out of order, but it
        # does not order them, and a drone's scenario commands build on each other.
        d.client = SessionClient(f"{d.name}#{d.incarnation}".encode(),
                                 retry_ticks=self.cfg.retry_ticks, window=1)
        d.ops = {}

    def crash(self, d: _Drone) -> None:
        for op in d.ops.values():
            op.lost = True
            op.done = True
        assert d.driver is not None
        d.driver.stop()
        d.driver = d.evac = d.fsm = d.client = None
        d.ops = {}
        d.role = StateRole.FOLLOWER

    # -- one tick

    def tick(self) -> None:
        self.now += 1
        for to, payload in self.net.due(self.now):
            d = self.drones[to]
            if d.driver is not None:
                d.driver.step(decode_message(payload))
        for d in self.drones.values():
            if d.driver is not None:
                d.driver.tick()
        self._leader_assigns()
        self._clients_act()
        for d in self.drones.values():
            if d.driver is not None:
                d.driver.process()

    def _leader_assigns(self) -> None:
        """The leader commits who does what whenever its map says the committed
        assignment is stale (one proposal in flight; a proposal overtaken by another
        change is rejected by apply as superseded, and the next one follows)."""
        if self._assigning is not None and not self._assigning.done:
            return
        lead = self.leader()
        if lead is None or lead.evac is None or lead.client is None \
                or not needs_assignment(lead.evac):
            return
        command = propose_assignment(lead.evac)
        self.log(f"{lead.name} (leader) proposes the assignment for epoch {command.epoch}")
        op = _Op(lead.name, f"assignment (epoch {command.epoch})", encode_command(command))
        self.assignment_ops.append(op)  # not a scenario command: reported on its own
        lead.ops[lead.client.submit(op.payload)] = op
        self._assigning = op

    def _check_state_machine_safety(self, d: _Drone, entry: Entry) -> None:
        """State Machine Safety (Raft §5.4.3): no two nodes ever apply different
        entries at the same index. Checked on every apply of the run."""
        digest = hashlib.sha256(bytes([entry.kind]) + entry.data).digest()
        seen = self.applied_at.setdefault(entry.index, (entry.term, digest, d.name))
        if seen[:2] != (entry.term, digest):
            raise DemoError(f"state machine safety violated at index {entry.index}: "
                            f"{d.name} applies term {entry.term}, {seen[2]} applied "
                            f"term {seen[0]}")
        self.applies_checked += 1

    def _observe_role(self, d: _Drone, role: StateRole) -> None:
        if role is StateRole.LEADER and d.role is not StateRole.LEADER:
            assert d.driver is not None
            term = d.driver.raw.status().term
            self.leaders.append((self.now, term, d.name))
            self.log(f"[bold green]{d.name} is leader[/bold green] (term {term})")
        d.role = role

    # -- client sessions

    def _deliver(self, d: _Drone, index: int, data: bytes) -> None:
        """A committed entry's result, seen by the drone whose node applied it; only
        the client that proposed it (same session, matched by client id and sequence
        number) takes notice."""
        client = d.client
        if client is None:
            return
        client.on_result(decode_session_result(data))
        for event in client.events():
            op = d.ops.pop(event.request)
            op.done = True
            if isinstance(event, Completed):
                op.seq = event.seq
                if event.result.cached:
                    self.cached_replies += 1
                op.result = decode_result(event.result.payload)
                if op.result.ok:
                    self.log(f"  ✓ {op.drone}: {op.what} [dim](index {index})[/dim]")
                else:
                    self.log(f"  [red]✗ {op.drone}: {op.what}: {op.result.error}[/red]")
            elif isinstance(event, GaveUp) and event.reason == "session_expired" \
                    and event.applied is False:
                # Known not applied (its session expired first): submit it again under
                # the client's next session (thesis §6.3).
                op.done = False
                d.ops[client.submit(op.payload)] = op
            else:
                self.log(f"  [red]? {op.drone}: {op.what}: gave up ({event.reason}); "
                         f"outcome unknown[/red]")

    def _clients_act(self) -> None:
        for d in self.drones.values():
            client, driver = d.client, d.driver
            if client is None or driver is None:
                continue
            client.tick()
            for proposal in client.poll():
                if proposal.is_retry and proposal.seq:
                    self.retries += 1
                try:
                    driver.propose(proposal.data)
                except ProposalDropped:
                    pass  # no leader known yet: the retry timer tries again

    def submit(self, drone: str, what: str, payload: bytes) -> None:
        d = self.by_name[drone]
        if not d.up:
            stand_in = next(x for x in self.drones.values() if x.up)
            self.log(f"{drone} is down; {stand_in.name} proposes instead")
            d = stand_in
        assert d.client is not None
        op = _Op(d.name, what, payload)
        self.ops.append(op)
        d.ops[d.client.submit(payload)] = op

    # -- the scenario

    def leader(self) -> _Drone | None:
        # After a partition heals two nodes may briefly both think they lead; the one
        # with the higher term is the real leader (Raft §5.1).
        best: _Drone | None = None
        best_term = -1
        for d in self.drones.values():
            if d.driver is not None and d.role is StateRole.LEADER:
                term = d.driver.raw.status().term
                if term > best_term:
                    best, best_term = d, term
        return best

    def _follower(self) -> str:
        """A live drone that is not the leader, rotating through them in id order."""
        candidates = [d for d in self.drones.values() if d.up and d.role is not StateRole.LEADER]
        choice = candidates[self._rotation % len(candidates)]
        self._rotation += 1
        return choice.name

    def run_until(self, done: Callable[[], bool], why: str, limit: int | None = None) -> None:
        for _ in range(limit or self.cfg.phase_timeout_ticks):
            if done():
                return
            self.tick()
        if not done():
            raise DemoError(f"timed out after {limit or self.cfg.phase_timeout_ticks} "
                            f"ticks waiting for {why}")

    def run_scenario(self) -> None:
        self.log(f"{len(self.drones)} drones boot; electing a leader")
        self.run_until(lambda: self.leader() is not None, "the first leader")
        for number, phase in enumerate(self.scenario.phases, start=1):
            self.say("")
            self.log(f"[bold]Phase {number}: {phase.title}[/bold]")
            for action in phase.actions:
                self._act(action)
            self.run_until(lambda: all(op.done for op in self.ops),
                           f"phase {number}'s commands to commit")

    def _act(self, action: object) -> None:
        if isinstance(action, Propose):
            by = action.by if action.by is not None else self._follower()
            self.log(f"{by} proposes: {action.note}")
            self.submit(by, action.note, encode_command(action.command))
        elif isinstance(action, ProposeRaw):
            d = self.by_name[action.by]
            try:
                command = parse_command(action.obj)
                if d.evac is not None:
                    d.evac.check(command)  # against this drone's own (possibly stale) map
            except CommandError as exc:
                self.rejected.append(str(exc))
                self.log(f"{action.by} tries {action.note}: [yellow]rejected before "
                         f"proposing[/yellow]: {exc}")
            else:
                self.submit(action.by, action.note, encode_command(command))
        elif isinstance(action, CrashLeader):
            self.run_until(lambda: self.leader() is not None, "a leader to crash")
            victim = self.leader()
            assert victim is not None
            self.crashed, self.crash_tick = victim, self.now
            self.crash(victim)
            self.log(f"[bold red]{victim.name} (leader) crashes[/bold red]: {action.note}")
            self.run_until(lambda: self.leader() is not None, "a new leader")
        elif isinstance(action, MarkCrashedDrone):
            assert self.crashed is not None
            name = self.crashed.name
            by = next(d.name for d in self.drones.values() if d.up and d is not self.crashed)
            self.log(f"{by} proposes: {name} {'alive' if action.alive else 'down'} "
                     f"({action.note})")
            command = SetDroneTask(name, DroneTask.SEARCH if action.alive else DroneTask.IDLE,
                                   action.alive, False, self.scenario.homes[name])
            self.submit(by, f"{name} marked {'alive' if action.alive else 'down'}",
                        encode_command(command))
        elif isinstance(action, RestartCrashed):
            assert self.crashed is not None
            self._start(self.crashed)
            self.restarted = True
            self.log(f"[bold]{self.crashed.name} restarts[/bold] from its storage "
                     f"(applied {self.crashed.applied}): {action.note}")
        elif isinstance(action, Wait):
            for _ in range(action.ticks):
                self.tick()
        else:  # pragma: no cover - the Action union is closed
            raise TypeError(f"unknown scenario action {action!r}")

    def settle(self) -> None:
        """Run until every node has applied everything the leader has committed."""

        def settled() -> bool:
            lead = self.leader()
            if lead is None:
                return False
            assert lead.driver is not None
            status = lead.driver.raw.status()
            return lead.evac is not None and not needs_assignment(lead.evac) \
                and status.commit == status.last_index and all(
                    d.applied == status.commit for d in self.drones.values() if d.up)

        self.run_until(settled, "every node to apply the last entry")


# ----------------------------------------------------------------------- planning


def _home(lon_lat_alt: tuple[float, float, float]) -> GeoPoint:
    lon, lat, alt = lon_lat_alt
    return GeoPoint(lat=lat, lon=lon, alt=alt)


def _plans(view: MapView, homes: dict[str, tuple[float, float, float]]) -> dict[str, PlanResult]:
    states = {}
    for name in sorted(view.drones):
        home = _home(homes.get(name, view.drones[name].home))
        states[name] = VehicleState(position=home, relative_alt_m=0.0, home=home,
                                    battery_pct=100.0)
    return plan_all(view, states)


def _plans_digest(plans: dict[str, PlanResult],
                  homes: dict[str, tuple[float, float, float]]) -> str:
    h = hashlib.sha256()
    for name in sorted(plans):
        h.update(name.encode())
        h.update(str(plans[name].status).encode())
        h.update(write_qgc_plan(plans[name].plan, _home(homes[name])).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------- the run


def run_demo(config: DemoConfig, say: Callable[[str], None] | None = None) -> DemoResult:
    """Run the whole demo; ``say`` receives progress lines (rich markup)."""
    demo = _Demo(config, say or (lambda _text: None))
    demo.run_scenario()
    demo.settle()
    crashed = demo.crashed
    new_leader = None
    failover = None
    if demo.crash_tick is not None:
        after = [(t, term, name) for t, term, name in demo.leaders if t > demo.crash_tick]
        if after:
            new_leader, failover = after[0][2], after[0][0] - demo.crash_tick

    homes = demo.scenario.homes
    reports = []
    plans_by_node: dict[str, dict[str, PlanResult]] = {}
    for d in demo.drones.values():
        assert d.driver is not None and d.evac is not None and d.fsm is not None
        status = d.driver.raw.status()
        plans_by_node[d.name] = _plans(d.evac.view(), homes)
        reports.append(NodeReport(
            name=d.name, node_id=d.nid, role=status.role.value, term=status.term,
            applied=d.applied, map_version=d.evac.version,
            map_sha256=hashlib.sha256(d.evac.snapshot()).hexdigest(),
            fsm_sha256=hashlib.sha256(d.fsm.snapshot()).hexdigest(),
            plans_sha256=_plans_digest(plans_by_node[d.name], homes),
            assignment_sha256=assignment_hash(d.evac),
        ))
    lead = demo.leader()
    assert lead is not None and lead.evac is not None
    view = lead.evac.view()
    plans = plans_by_node[lead.name]

    files: list[Path] = []
    if config.write_files:
        files = _write_outputs(config.out_dir, view, plans, homes)

    return DemoResult(
        seed=config.seed, ticks=demo.now, tick_ms=config.tick_ms,
        leaders=tuple(demo.leaders),
        crashed=crashed.name if crashed else None, crash_tick=demo.crash_tick,
        new_leader=new_leader, failover_ticks=failover,
        catch_up=None if not (crashed and demo.restarted) else (
            "snapshot" if crashed.snapshots_installed else "log"),
        nodes=tuple(reports), view=view,
        results=tuple((op.drone, op.what, op.result) for op in demo.ops if not op.lost),
        rejected_before_proposing=tuple(demo.rejected),
        retries=demo.retries, cached_replies=demo.cached_replies,
        applies_checked=demo.applies_checked,
        lost_with_crash=tuple(op.what for op in demo.ops if op.lost),
        assignments_committed=sum(1 for op in demo.assignment_ops
                                  if op.result is not None and op.result.ok),
        assignments_superseded=sum(1 for op in demo.assignment_ops
                                   if op.result is not None and not op.result.ok),
        plans=plans, files=tuple(files),
    )


def _write_outputs(out_dir: Path, view: MapView, plans: dict[str, PlanResult],
                   homes: dict[str, tuple[float, float, float]]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = geojson_bytes(view)
    problems = rfc7946_problems(json.loads(data))
    if problems:  # our own export breaking RFC 7946 is a bug, not something to ship
        raise DemoError(f"GeoJSON export breaks RFC 7946: {problems[:3]}")
    files = [_write(out_dir / "map.geojson", data)]
    for name in sorted(plans):
        home = _home(homes[name])
        files.append(_write(out_dir / f"{name}.plan",
                            write_qgc_plan(plans[name].plan, home).encode()))
        files.append(_write(out_dir / f"{name}.waypoints",
                            write_wpl(plans[name].plan, home).encode()))
    return files


def _write(path: Path, data: bytes) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
