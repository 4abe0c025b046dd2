"""The evacuation map on the seeded consensus simulator (issue 13).

:class:`EvacuationMapApp` plugs into :mod:`consensus.sim` (its :class:`SimApp` hooks):
every simulated node runs the real :class:`~swarm.evacmap.EvacuationMap` behind the
session state machine, next to the simulator's key-value store, under the same faults
(drops, duplicates, reordering, partitions, crashes and restarts, slow disks, clock
skew, membership changes, leadership transfers).

Two kinds of proposer, each through its own client session as in the real swarm:

* **the operator** (the ground station and the drones' reports, scripted from the
  seed): drones join, leave, go busy, return and come back; fire zones appear, grow,
  burn out and are cleared; survivors are reported, confirmed, rescued, withdrawn;
  recall and resume. One command at a time, built from what some node's map shows
  (so some are refused by the map, as in life);
* **an agent per node**: while its node leads, when the committed assignment is
  missing or stale (:func:`swarm.agent.assigner.wants_assignment`, the agent's rule) it
  proposes :func:`swarm.planner.propose_assignment` of its own map, once per (term,
  epoch), as :class:`swarm.agent.assigner.LeaderAssignment` does, submitting it 0-4
  ticks after the view it was computed from (its worker thread), and dropping it if
  the node no longer leads. A node's agent dies with the node and starts afresh (new
  session) when it restarts.

Checked at every index a node applies (:mod:`swarm.sim.checks`): every node that
applied the index holds the same committed assignment, map version and epoch; when the
committed assignment changes, it is current (never stale), it is one a leader
proposed, and every waiting survivor and the search area are owned by exactly one
available drone or unserved with a reason. A current assignment the map refuses is a
violation too (the planner and the map disagree). At the end the simulator compares
every replica's whole state (map included) and the key-value checks run as usual.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from consensus.driver import AppliedEntry
from consensus.session import Completed, GaveUp, SessionClient, SessionResult
from consensus.sim.app import app_payload
from consensus.types import StateRole
from swarm.agent.assigner import wants_assignment
from swarm.evacmap import (
    Command,
    DroneTask,
    EvacuationMap,
    MapView,
    Recall,
    RemoveDrone,
    RemoveSurvivor,
    RemoveZone,
    ReportSurvivor,
    Resume,
    SetAssignment,
    SetDroneTask,
    SetSearchArea,
    SetZone,
    SurvivorStatus,
    UpdateSurvivor,
    ZoneStatus,
    decode_result,
    encode_command,
)
from swarm.planner import propose_assignment

from .checks import AssignmentLedger, assignment_problems, stale_problem

if TYPE_CHECKING:
    from consensus.sim.cluster import Simulation

__all__ = ["EvacuationMapApp", "MapWorkload", "ProposeFn"]

ProposeFn = Callable[[MapView], SetAssignment]

START_TIME_MS = 1_764_208_800_000
# The scenario's ground, in degE7 integers (every coordinate is an integer / 1e7, so
# the commands' bytes are the same on every machine).
_LON0, _LAT0 = -1_200_000_000, 380_000_000
_AREA_HALF_LON, _AREA_HALF_LAT = 110_000, 90_000  # about 1.9 km x 2 km


_UNSEEN = object()


def _deg(e7: int) -> float:
    return e7 / 1e7  # correctly rounded: the same double everywhere


@dataclass(frozen=True)
class MapWorkload:
    """Shape of the scripted operator workload."""

    max_drones: int = 5
    max_zones: int = 4
    max_survivors: int = 8
    #: Chance per tick that the operator, when idle, sends its next command.
    command_rate: float = 0.25
    retry_ticks: int = 30
    #: The agent computes an assignment on a worker thread (LatestWins): it is
    #: submitted 0 to this many ticks after the view it was computed from, so the map
    #: may have moved on meanwhile (superseded proposals).
    compute_ticks: int = 4


@dataclass
class _Agent:
    """The proposer of one node incarnation: its session and what it last proposed."""

    client: SessionClient
    proposed: tuple[int, int] | None = None  # (term, epoch)
    requests: dict[int, int] = field(default_factory=dict)  # request -> epoch
    #: An assignment being computed off the node thread: (ready at tick, its key, it).
    computing: tuple[int, tuple[int, int], SetAssignment] | None = None


class EvacuationMapApp:
    """The :class:`consensus.sim.app.SimApp` running the evacuation map (see the
    module docstring). ``propose`` is the leader's proposal function: the planner's
    own by default; tests pass a broken one to show the checks catch it."""

    def __init__(self, seed: int, workload: MapWorkload | None = None, *,
                 propose: ProposeFn = propose_assignment) -> None:
        self.workload = workload or MapWorkload()
        # Its own random stream, from the seed: the fault schedule's stream is the
        # simulator's, so the two stay independent and replay together.
        self.rng = random.Random(f"swarm.sim/{seed}")
        self.propose = propose
        self.operator = SessionClient(b"operator", retry_ticks=self.workload.retry_ticks, window=1)
        self._operator_request: tuple[int, str] | None = None
        self._agents: dict[int, _Agent] = {}
        self._incarnation: dict[int, int] = {}
        self.ledger = AssignmentLedger()
        self._proposed_digests: set[str] = set()
        self._last_assignment: dict[int, object] = {}
        self._checked_at: set[int] = set()
        self._time_ms = START_TIME_MS
        self._next_id = 0
        self.area_set = False
        self.checks = 0

    # ---- SimApp hooks

    def state_machine(self) -> EvacuationMap:
        return EvacuationMap()

    def act(self, sim: Simulation) -> None:
        self._operator_act(sim)
        for nid in sim.ids:
            if sim.driver(nid) is not None:
                self._agent_act(sim, nid)

    def node_down(self, sim: Simulation, nid: int) -> None:
        # The agent process dies with its node: its session and its proposals are gone.
        self._agents.pop(nid, None)
        self._last_assignment.pop(nid, None)

    def restored(self, sim: Simulation, nid: int) -> None:
        # Its map was replaced by a snapshot: not an entry applied here.
        self._last_assignment.pop(nid, None)

    def settled(self, sim: Simulation) -> bool:
        """Nothing in flight that can still commit, and the leader's map holds a current
        assignment (or needs none).

        Only agents on members of the leader's configuration count, as in the core's
        own rule (removed nodes no longer hear from the leader): a node removed from
        the cluster, typically a leader removing itself, can keep a proposal in its
        session for ever, retried and dropped at its node, which knows no leader. That
        proposal cannot commit and nothing waits for it: its successor proposes for
        the current epoch itself. Counting it made 18 of 500 soak seeds (from 5000)
        report "not converged" although the map and its assignment had converged."""
        leader = sim.leader()
        if leader is None or self.operator.pending():
            return False
        lead_driver = sim.driver(leader)
        assert lead_driver is not None
        members = set(lead_driver.raw.status().conf_state.members())
        if any(a.client.pending() or a.computing is not None
               for nid, a in self._agents.items() if nid in members):
            return False
        machine = sim.app_machine(leader)
        return machine is not None and not wants_assignment(machine.view())

    def applied(self, sim: Simulation, nid: int, entry: AppliedEntry,
                result: SessionResult | None) -> str | None:
        if result is not None:
            problem = self._deliver(sim, result)
            if problem is not None:
                return problem
        machine: EvacuationMap | None = sim.app_machine(nid)
        if machine is None:
            return None
        problem = self.ledger.observe(nid, entry.index, machine)
        if problem is not None:
            return problem
        before = self._last_assignment.get(nid, _UNSEEN)
        if before is not machine.assignment:
            self._last_assignment[nid] = machine.assignment
            if before is _UNSEEN:
                return None  # (re)started or restored: what it restored was checked where applied
            # Checked where it was applied (this entry changed the map): one restored
            # from a snapshot was checked where it was applied, and may be stale by now.
            if machine.assignment is not None and machine.version == entry.index \
                    and entry.index not in self._checked_at:
                self._checked_at.add(entry.index)
                return self._check(sim, machine.view(), entry.index)
        return None

    def final_check(self, sim: Simulation) -> str | None:
        sim.counts["assignment checks (ownership, staleness)"] = self.checks
        sim.counts["assignment digests compared across nodes"] = self.ledger.compared
        # Every up node at the same applied index holds the same assignment, also one
        # that only installed a snapshot since (the ledger sees applied entries).
        held: dict[int, tuple[int, str]] = {}
        for nid in sim.up_nodes():
            driver, machine = sim.driver(nid), sim.app_machine(nid)
            assert driver is not None and machine is not None
            digest = self.ledger.digest(machine)
            first = held.setdefault(driver.applied, (nid, digest))
            if first[1] != digest:
                return (f"at the end, nodes {first[0]} and {nid} applied up to "
                        f"{driver.applied} but hold different committed assignments")
        leader = sim.leader()
        machine = sim.app_machine(leader) if leader is not None else None
        if machine is not None and machine.assignment is not None and \
                machine.assignment.epoch == machine.assignment_epoch:
            sim.counts["runs ending with a current assignment"] += 1
            problems = assignment_problems(machine.view())
            if problems:
                return "the final committed assignment: " + "; ".join(problems[:3])
        return None

    # ---- checks

    def _check(self, sim: Simulation, view: MapView, index: int) -> str | None:
        self.checks += 1
        assert view.assignment is not None
        stale = stale_problem(view)
        if stale is not None:
            return f"index {index}: {stale}"
        digest = hashlib.sha256(encode_command(view.assignment)).hexdigest()
        if digest not in self._proposed_digests:
            return f"index {index}: the committed assignment is not one a leader proposed"
        problems = assignment_problems(view)
        if problems:
            return f"index {index} (map version {view.version}): " + "; ".join(problems[:3])
        return None

    # ---- results

    def _deliver(self, sim: Simulation, result: SessionResult) -> str | None:
        self.operator.on_result(result)
        for event in self.operator.events():
            sim.counts["map commands answered"] += 1
            if isinstance(event, Completed):
                outcome = decode_result(event.result.payload)
                sim.counts["map commands accepted" if outcome.ok else "map commands refused"] += 1
            else:
                sim.counts["map commands given up"] += 1
            self._operator_request = None
        for nid in sorted(self._agents):
            agent = self._agents[nid]
            agent.client.on_result(result)
            for event in agent.client.events():
                epoch = agent.requests.pop(event.request, None)
                if not isinstance(event, Completed):
                    sim.counts["assignments given up"] += 1
                    continue
                outcome = decode_result(event.result.payload)
                if outcome.ok:
                    sim.counts["assignments committed"] += 1
                elif outcome.error is not None and outcome.error.startswith("set_assignment.epoch"):
                    sim.counts["assignments refused as stale or superseded"] += 1
                else:
                    return (f"the map refused n{nid}'s assignment for epoch {epoch} although "
                            f"it was current: {outcome.error}")
        return None

    # ---- the agents

    def _agent_act(self, sim: Simulation, nid: int) -> None:
        agent = self._agents.get(nid)
        if agent is None:
            k = self._incarnation[nid] = self._incarnation.get(nid, 0) + 1
            agent = self._agents[nid] = _Agent(SessionClient(
                b"agent-n%d.%d" % (nid, k), retry_ticks=self.workload.retry_ticks, window=1))
        agent.client.tick()
        driver = sim.driver(nid)
        machine: EvacuationMap | None = sim.app_machine(nid)
        assert driver is not None and machine is not None
        status = driver.raw.status()
        leading = status.role is StateRole.LEADER
        if leading and agent.computing is None:
            view = machine.view()
            key = (status.term, view.assignment_epoch)
            if wants_assignment(view) and agent.proposed != key:
                ready = sim.now + self.rng.randint(0, self.workload.compute_ticks)
                agent.computing = (ready, key, self.propose(view))
        if agent.computing is not None and sim.now >= agent.computing[0]:
            _, key, command = agent.computing
            agent.computing = None
            # As LeaderAssignment._propose: dropped if this node no longer leads.
            if leading and agent.proposed != key:
                data = encode_command(command)
                digest = hashlib.sha256(data).hexdigest()
                self._proposed_digests.add(digest)
                agent.requests[agent.client.submit(app_payload(data))] = command.epoch
                agent.proposed = key
                sim.counts["assignments proposed"] += 1
                sim.log(f"n{nid} (leader, term {status.term}) proposes the assignment for "
                        f"epoch {command.epoch} ({digest[:12]})")
        for proposal in agent.client.poll():
            if not sim.propose(nid, proposal.data):
                agent.client.dropped(proposal.seq)

    # ---- the operator

    def _operator_act(self, sim: Simulation) -> None:
        client = self.operator
        client.tick()
        self._time_ms += 100
        if self._operator_request is None and not sim.quiet and client.client_id is not None \
                and self.rng.random() < self.workload.command_rate:
            view = self._some_view(sim)
            if view is not None:
                command = self._next_command(view)
                request = client.submit(app_payload(encode_command(command)))
                self._operator_request = (request, command.TYPE)
                sim.counts[f"map {command.TYPE} sent"] += 1
                sim.log(f"operator sends {command.TYPE}")
        proposals = client.poll()
        if not proposals:
            return
        target = sim.leader()
        up = sim.up_nodes()
        if target is None or self.rng.random() < 0.2:
            if not up:
                for proposal in proposals:
                    client.dropped(proposal.seq)
                return
            target = self.rng.choice(up)
        for proposal in proposals:
            if not sim.propose(target, proposal.data):
                client.dropped(proposal.seq)

    def _some_view(self, sim: Simulation) -> MapView | None:
        """What the operator sees: the map of some up node (maybe behind)."""
        up = sim.up_nodes()
        if not up:
            return None
        machine: EvacuationMap | None = sim.app_machine(self.rng.choice(up))
        return machine.view() if machine is not None else None

    def _fresh(self, prefix: str) -> str:
        self._next_id += 1
        return f"{prefix}{self._next_id}"

    def _point(self, margin: int = 0) -> tuple[int, int]:
        rng = self.rng
        return (_LON0 + rng.randint(-_AREA_HALF_LON + margin, _AREA_HALF_LON - margin),
                _LAT0 + rng.randint(-_AREA_HALF_LAT + margin, _AREA_HALF_LAT - margin))

    def _ring(self, centre: tuple[int, int], radius: int) -> list[list[float]]:
        """An octagon-like star around ``centre`` (radius in degE7), always simple."""
        rng = self.rng
        offsets = [(2, 0), (1, 1), (0, 2), (-1, 1), (-2, 0), (-1, -1), (0, -2), (1, -1)]
        ring = []
        for ox, oy in offsets:
            r = radius * rng.randint(80, 120) // 200
            ring.append([_deg(centre[0] + ox * r), _deg(centre[1] + oy * r)])
        return ring

    def _drone(self, drone_id: str, task: DroneTask, alive: bool, busy: bool,
               home: tuple[float, ...] | None = None) -> SetDroneTask:
        if home is None:
            lon, lat = self._point()
            home = (_deg(lon), _deg(_LAT0 - _AREA_HALF_LAT - 2_000 + lat % 1000), 300.0)
        return SetDroneTask(drone_id, task, alive, busy, list(home))  # type: ignore[arg-type]

    def _next_command(self, view: MapView) -> Command:
        rng, w = self.rng, self.workload
        if view.search_area is None and not self.area_set:
            self.area_set = True
            return SetSearchArea([
                [_deg(_LON0 - _AREA_HALF_LON), _deg(_LAT0 - _AREA_HALF_LAT)],
                [_deg(_LON0 + _AREA_HALF_LON), _deg(_LAT0 - _AREA_HALF_LAT)],
                [_deg(_LON0 + _AREA_HALF_LON), _deg(_LAT0 + _AREA_HALF_LAT)],
                [_deg(_LON0 - _AREA_HALF_LON), _deg(_LAT0 + _AREA_HALF_LAT)],
            ])  # type: ignore[arg-type]
        drones = sorted(view.drones)
        zones = sorted(view.zones)
        survivors = sorted(view.survivors)
        t = self._time_ms
        roll = rng.random()
        if roll < 0.12 or not drones:
            if len(drones) < w.max_drones:
                return self._drone(self._fresh("drone-"), DroneTask.SEARCH, True, False)
            roll = 0.12 + rng.random() * 0.88
        if roll < 0.30 and drones:
            d = view.drones[rng.choice(drones)]
            change = rng.random()
            if change < 0.25:  # leaves (lost, or taken off the map)
                if rng.random() < 0.4:
                    return RemoveDrone(d.id)
                return self._drone(d.id, d.task, False, d.busy, d.home)
            if change < 0.5:
                return self._drone(d.id, d.task, d.alive, not d.busy, d.home)
            if change < 0.75:
                task = DroneTask.SEARCH if d.task is DroneTask.RETURN else DroneTask.RETURN
                return self._drone(d.id, task, d.alive, d.busy, d.home)
            return self._drone(d.id, d.task, True, d.busy, d.home)  # comes back
        if roll < 0.50:
            if zones and (len(zones) >= w.max_zones or rng.random() < 0.5):
                z = view.zones[rng.choice(zones)]
                if rng.random() < 0.2:
                    return RemoveZone(z.id)
                status = rng.choice([ZoneStatus.BURNING, ZoneStatus.BURNING, ZoneStatus.BURNED,
                                     ZoneStatus.CLEARED])
                return SetZone(z.id, z.ring, status, "operator", t)
            centre = self._point(margin=10_000)
            return SetZone(self._fresh("z"), self._ring(centre, rng.randint(2_000, 6_000)),  # type: ignore[arg-type]
                           ZoneStatus.BURNING, "operator", t)
        if roll < 0.80:
            waiting = [s for s in survivors if view.survivors[s].status is not SurvivorStatus.RESCUED]
            if waiting and (len(survivors) >= w.max_survivors or rng.random() < 0.45):
                s = view.survivors[rng.choice(waiting)]
                change = rng.random()
                if change < 0.15:
                    return RemoveSurvivor(s.id)
                nxt = SurvivorStatus.CONFIRMED if s.status is SurvivorStatus.REPORTED \
                    else SurvivorStatus.RESCUED
                if change < 0.6:
                    return UpdateSurvivor(s.id, "operator", t, status=nxt)
                return UpdateSurvivor(s.id, "operator", t, count=rng.randint(1, 6))
            if len(survivors) >= w.max_survivors:
                return RemoveSurvivor(rng.choice(survivors))
            lon, lat = self._point()
            return ReportSurvivor(self._fresh("s"), [_deg(lon), _deg(lat)],  # type: ignore[arg-type]
                                  rng.randint(1, 6), rng.randint(1, 100) / 100, "operator", t)
        if roll < 0.90 and drones:
            if view.recall.all or view.recall.drones:
                if view.recall.all or rng.random() < 0.5:
                    return Resume()
                return Resume(tuple(sorted(view.recall.drones)[:1]))
            if rng.random() < 0.3:
                return Recall()
            return Recall((rng.choice(drones),))
        if drones:
            # Telemetry restating a drone's entry: accepted, must not churn the epoch.
            d = view.drones[rng.choice(drones)]
            return self._drone(d.id, d.task, d.alive, d.busy, d.home)
        return self._drone(self._fresh("drone-"), DroneTask.SEARCH, True, False)
