"""The evacuation map: the replicated state machine every drone applies the Raft log to.

:class:`EvacuationMap` implements the consensus StateMachine protocol
(``apply(index, data) -> bytes``, ``snapshot() -> bytes``, ``restore(bytes)``) and a
typed read side for the planner (``version``, ``zones``, ``routes``, ``survivors``,
``search_area``, ``drones``, or an immutable :class:`MapView` from ``view()``).

Determinism (Raft's State Machine Safety, paper section 5.4.3, only helps if applying
the same log gives the same state): apply reads nothing but its arguments and the
current state, never a clock or a random source; geometry is computed from the
canonical, rounded coordinates of commands; derived facts are recomputed from state,
and snapshot bytes contain only canonical command data, never derived floats.

Every apply is all-or-nothing: the next state is built aside and swapped in only when
the command was accepted, so a rejected command changes nothing, not even ``version``.
The published mappings are never mutated after publication (copy-on-write), so a
reader holding ``m.zones`` keeps a consistent picture while later entries are applied.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
import shapely
import shapely.errors

from .commands import (
    SURVIVOR_TRANSITIONS,
    Command,
    CommandError,
    DroneTask,
    LonLat,
    LonLatAlt,
    Launch,
    Recall,
    RemoveDrone,
    RemoveRoute,
    RemoveSurvivor,
    RemoveZone,
    ReportSurvivor,
    SetAssignment,
    Resume,
    SetDroneTask,
    SetRoute,
    SetSearchArea,
    SetZone,
    SurvivorStatus,
    UpdateSurvivor,
    ZoneStatus,
    canonical_json,
    encode_command,
    load_json,
    parse_command,
)
from ..geo import grow_polygon
from .exact import ExactPath, ExactRing, e7, point_covered, points_covered_e7, route_within

__all__ = [
    "DEFAULT_ROUTE_MARGIN_M",
    "MAX_DRONES",
    "MAX_ROUTES",
    "MAX_SURVIVORS",
    "MAX_ZONES",
    "SNAPSHOT_FORMAT",
    "ApplyResult",
    "Drone",
    "EvacuationMap",
    "MapView",
    "NO_RECALL",
    "LaunchOrder",
    "RecallState",
    "Route",
    "SearchArea",
    "Survivor",
    "Zone",
    "decode_result",
]

# A route passing closer than this to a burning or burned zone is unsafe: smoke, heat
# and spotting fires reach beyond a zone's mapped edge.
DEFAULT_ROUTE_MARGIN_M = 50.0
# Bounds on the map's size, so a flood of commands cannot exhaust a Raspberry Pi.
MAX_ZONES = 2_000
MAX_ROUTES = 500
MAX_SURVIVORS = 10_000
MAX_DRONES = 64
SNAPSHOT_FORMAT = "evacmap/4"  # 2: adds the assignment; 3: adds "recall"; 4: "launch"
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024

HAZARD_STATUSES = frozenset({ZoneStatus.BURNING, ZoneStatus.BURNED})

# The commands a snapshot lists entities as: each has an ``id`` (the snapshot sorts by
# it) and is the one command that recreates that entity.
_Keyed = TypeVar("_Keyed", SetZone, SetRoute, ReportSurvivor, SetDroneTask)


# ------------------------------------------------------------------ read-side types


@dataclass(frozen=True, slots=True)
class Zone:
    """A fire zone. ``polygon`` is the lon/lat shapely polygon of ``ring``; ``grown`` is
    it grown by the map's route margin (metres, local ENU frame), for display: whether
    a route comes within the margin is decided exactly (``exact``, see
    :mod:`swarm.evacmap.exact`)."""

    id: str
    ring: tuple[LonLat, ...]
    status: ZoneStatus
    source: str
    time_ms: int
    polygon: shapely.Polygon = field(compare=False, repr=False)
    margin_m: float = field(compare=False, repr=False)
    exact: ExactRing = field(compare=False, repr=False)

    @property
    def grown(self) -> shapely.Polygon:
        """The zone grown by the margin (computed on demand: display only)."""
        return grow_polygon(self.polygon, self.margin_m)

    @property
    def is_hazard(self) -> bool:
        """True while burning or burned (a cleared zone is safe again)."""
        return self.status in HAZARD_STATUSES

    def command(self) -> SetZone:
        return SetZone.rebuilt(self.id, self.ring, self.status, self.source, self.time_ms)


@dataclass(frozen=True, slots=True)
class Route:
    """An evacuation route. Derived: ``crosses`` (sorted ids of hazard zones whose grown
    polygon the route touches) and ``unsafe`` (crosses any)."""

    id: str
    path: tuple[LonLatAlt, ...]
    priority: int
    crosses: tuple[str, ...] = ()
    line: shapely.LineString = field(default=None, compare=False, repr=False)  # type: ignore[assignment]
    exact: ExactPath = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    @property
    def unsafe(self) -> bool:
        return bool(self.crosses)

    def command(self) -> SetRoute:
        return SetRoute.rebuilt(self.id, self.path, self.priority)


@dataclass(frozen=True, slots=True)
class Survivor:
    """A survivor sighting. Derived: ``inside`` (sorted ids of burning zones covering
    the position) and ``urgent`` (inside any, and not yet rescued)."""

    id: str
    position: LonLat
    count: int
    confidence: float
    reporter: str
    time_ms: int
    status: SurvivorStatus
    inside: tuple[str, ...] = ()
    point: shapely.Point = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    @property
    def urgent(self) -> bool:
        return bool(self.inside) and self.status is not SurvivorStatus.RESCUED

    def command(self) -> ReportSurvivor:
        return ReportSurvivor.rebuilt(
            self.id, self.position, self.count, self.confidence, self.reporter,
            self.time_ms, self.status,
        )


@dataclass(frozen=True, slots=True)
class SearchArea:
    ring: tuple[LonLat, ...]
    polygon: shapely.Polygon = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Drone:
    """A drone's entry: its task, liveness, whether it is busy, and home
    ([lon, lat, alt_m above mean sea level])."""

    id: str
    task: DroneTask
    alive: bool
    busy: bool
    home: LonLatAlt

    def command(self) -> SetDroneTask:
        return SetDroneTask.rebuilt(self.id, self.task, self.alive, self.busy, self.home)


@dataclass(frozen=True, slots=True)
class RecallState:
    """Which drones are recalled (``recall``/``resume`` commands): all of them, and/or
    the named ones."""

    all: bool = False
    drones: frozenset[str] = frozenset()

    def covers(self, drone_id: str) -> bool:
        """True when ``drone_id`` must return home (RTL)."""
        return self.all or drone_id in self.drones

    def to_json(self) -> dict[str, Any]:
        return {"all": self.all, "drones": sorted(self.drones)}


NO_RECALL = RecallState()


@dataclass(frozen=True, slots=True)
class LaunchOrder:
    """One drone's latest ``launch``: the map version that committed it (each launch is
    acted on once) and the operator's ``time_ms`` (it is obeyed only within the agent's
    launch window of that time)."""

    version: int
    time_ms: int

    def to_json(self, drone_id: str) -> dict[str, Any]:
        return {"drone": drone_id, "version": self.version, "time_ms": self.time_ms}


@dataclass(frozen=True, slots=True)
class MapView:
    """An immutable picture of the map at one version: what the planner reads.

    ``assignment_epoch`` counts the changes that alter who does what;
    ``assignment`` is the last committed :class:`SetAssignment` (None before the
    first), current when its ``epoch`` equals ``assignment_epoch``, stale otherwise.
    """

    version: int
    zones: Mapping[str, Zone]
    routes: Mapping[str, Route]
    survivors: Mapping[str, Survivor]
    search_area: SearchArea | None
    drones: Mapping[str, Drone]
    route_margin_m: float
    assignment_epoch: int = 0
    assignment: SetAssignment | None = None
    recall: RecallState = NO_RECALL
    #: Each launched drone's latest launch (cleared by a recall covering it).
    launches: Mapping[str, LaunchOrder] = field(
        default_factory=lambda: types.MappingProxyType({}))

    @property
    def assignment_is_current(self) -> bool:
        return self.assignment is not None and self.assignment.epoch == self.assignment_epoch


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What apply returned for one entry, decoded: ``ok`` and the map version after it,
    or the reason it was rejected."""

    ok: bool
    version: int | None = None
    error: str | None = None

    def encode(self) -> bytes:
        if self.ok:
            return canonical_json({"ok": True, "version": self.version})
        return canonical_json({"ok": False, "error": self.error})


def decode_result(data: bytes) -> ApplyResult:
    """Decode apply's result bytes (raises CommandError if they are not a result)."""
    obj = load_json(data, 1 << 20, "result")
    if isinstance(obj, dict) and obj.get("ok") is True and set(obj) == {"ok", "version"}:
        if isinstance(obj["version"], int) and not isinstance(obj["version"], bool):
            return ApplyResult(ok=True, version=obj["version"])
    if isinstance(obj, dict) and obj.get("ok") is False and set(obj) == {"ok", "error"}:
        if isinstance(obj["error"], str):
            return ApplyResult(ok=False, error=obj["error"])
    raise CommandError("result: not an evacuation-map apply result")


# ------------------------------------------------------------------ state and steps


@dataclass(frozen=True, slots=True)
class _SurvivorIndex:
    """Every survivor's position in degE7, as one array (row i is ``ids[i]``), kept
    copy-on-write beside the survivors: a zone change finds the few survivors its
    bounding box can touch with one vectorised test, instead of visiting them all."""

    ids: tuple[str, ...] = ()
    e7: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))

    @staticmethod
    def _row(position: LonLat) -> np.ndarray:
        return np.array([[e7(position[0]), e7(position[1])]], dtype=np.int64)

    def added(self, survivor_id: str, position: LonLat) -> _SurvivorIndex:
        return _SurvivorIndex((*self.ids, survivor_id), np.vstack([self.e7, self._row(position)]))

    def moved(self, survivor_id: str, position: LonLat) -> _SurvivorIndex:
        points = self.e7.copy()
        points[self.ids.index(survivor_id)] = self._row(position)[0]
        return _SurvivorIndex(self.ids, points)

    def removed(self, survivor_id: str) -> _SurvivorIndex:
        row = self.ids.index(survivor_id)
        return _SurvivorIndex(self.ids[:row] + self.ids[row + 1:], np.delete(self.e7, row, axis=0))

    @classmethod
    def of(cls, survivors: Mapping[str, Survivor]) -> _SurvivorIndex:
        index = cls()
        if survivors:
            index = cls(tuple(survivors), np.array(
                [[e7(s.position[0]), e7(s.position[1])] for s in survivors.values()],
                dtype=np.int64))
        return index

    def within(self, *boxes: tuple[int, int, int, int]) -> np.ndarray:
        """Rows inside any of the (west, south, east, north) degE7 boxes."""
        p = self.e7
        mask = np.zeros(len(p), dtype=bool)
        for west, south, east, north in boxes:
            mask |= (p[:, 0] >= west) & (p[:, 0] <= east) & (p[:, 1] >= south) & (p[:, 1] <= north)
        return np.flatnonzero(mask)


@dataclass(frozen=True, slots=True)
class _State:
    version: int
    zones: Mapping[str, Zone]
    routes: Mapping[str, Route]
    survivors: Mapping[str, Survivor]
    search_area: SearchArea | None
    drones: Mapping[str, Drone]
    assignment_epoch: int = 0
    assignment: SetAssignment | None = None
    recall: RecallState = NO_RECALL
    launches: Mapping[str, LaunchOrder] = field(
        default_factory=lambda: types.MappingProxyType({}))
    survivor_index: _SurvivorIndex = _SurvivorIndex()


_EMPTY = _State(
    version=0,
    zones=types.MappingProxyType({}),
    routes=types.MappingProxyType({}),
    survivors=types.MappingProxyType({}),
    search_area=None,
    drones=types.MappingProxyType({}),
)


def _available(state: _State, drone: Drone) -> bool:
    """May be given work (the planner's rule: alive, not busy, not returning, not
    recalled)."""
    return (drone.alive and not drone.busy and drone.task is not DroneTask.RETURN
            and not state.recall.covers(drone.id))


def _check_assignment(state: _State, command: SetAssignment) -> None:
    """Reject an assignment that is stale, superseded, or does not fit the map: it is
    applied whole or not at all."""
    if command.epoch != state.assignment_epoch:
        raise CommandError(
            f"set_assignment.epoch: computed at assignment epoch {command.epoch}, but the "
            f"map is at epoch {state.assignment_epoch}"
            + (" (superseded by later changes)" if command.epoch < state.assignment_epoch
               else " (not reached yet)"))
    for where, drone_ids in (("sectors", [d for d, _ in command.sectors]),
                             ("survivors", [d for d, _ in command.survivors])):
        for drone_id in drone_ids:
            drone = state.drones.get(drone_id)
            if drone is None or not _available(state, drone):
                raise CommandError(f"set_assignment.{where}.{drone_id}: not an available drone "
                                   "(alive, not busy, not returning, not recalled) on the map")
    pending = {k for k, v in state.survivors.items() if v.status is SurvivorStatus.REPORTED}
    given = {x for _, ids in command.survivors for x in ids}
    unserved = {item.split(":", 1)[1] for item, _ in command.unserved
                if item.startswith("survivor:")}
    if given - pending:
        raise CommandError(f"set_assignment.survivors: {sorted(given - pending)[:5]} are not "
                           "survivors waiting for confirmation")
    if unserved - pending:
        raise CommandError(f"set_assignment.unserved: {sorted(unserved - pending)[:5]} are not "
                           "survivors waiting for confirmation")
    if pending - given - unserved:
        raise CommandError(f"set_assignment: survivors {sorted(pending - given - unserved)[:5]} "
                           "are neither assigned nor unserved")


def _frozen(d: dict[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(d)


class _Geometry:
    """Derived-fact computation, parameterised by the route margin."""

    def __init__(self, margin_m: float) -> None:
        self.margin_m = margin_m

    def zone(self, command: SetZone) -> Zone:
        polygon = shapely.Polygon(command.polygon)
        return Zone(
            command.id, command.polygon, command.status, command.source, command.time_ms,
            polygon, self.margin_m, ExactRing(command.polygon),
        )

    def route_crosses(self, path: ExactPath, zones: Mapping[str, Zone]) -> tuple[str, ...]:
        return tuple(sorted(z.id for z in zones.values()
                            if z.is_hazard and route_within(z.exact, path, self.margin_m)))

    @staticmethod
    def survivor_inside(position: LonLat, zones: Mapping[str, Zone]) -> tuple[str, ...]:
        # covers: a survivor on the fire's mapped edge counts as inside.
        return tuple(sorted(z.id for z in zones.values() if z.status is ZoneStatus.BURNING
                            and point_covered(z.exact, *position)))

    def route(self, command: SetRoute, zones: Mapping[str, Zone]) -> Route:
        flat = [p[:2] for p in command.path]
        path = ExactPath(flat)
        return Route(
            command.id, command.path, command.priority, self.route_crosses(path, zones),
            shapely.LineString(flat), path,
        )

    def survivor(self, record: ReportSurvivor, zones: Mapping[str, Zone]) -> Survivor:
        point = shapely.Point(record.position)
        return Survivor(
            record.id, record.position, record.count, record.confidence, record.reporter,
            record.time_ms, record.status, self.survivor_inside(record.position, zones), point,
        )

    def rederive_after_zone_change(
        self, zone_id: str, zone: Zone | None, state: _State
    ) -> tuple[Mapping[str, Route], Mapping[str, Survivor]]:
        """Routes and survivors with derived facts updated for one zone set/removed.

        Incremental: only the changed zone is tested, against all routes and the
        survivors its bounding box (or the old zone's) holds (found at once in the
        survivor index; both with exact predicates, swarm.evacmap.exact), and only
        entries whose facts change are replaced. The result equals a full
        recomputation (property-tested).
        """
        if zone is not None and zone.is_hazard:
            route_hits = {k: route_within(zone.exact, r.exact, self.margin_m)
                          for k, r in state.routes.items()}
        else:
            route_hits = dict.fromkeys(state.routes, False)
        routes = _updated(state.routes, zone_id, route_hits, "crosses")
        # Only survivors in the new zone's box can become inside it, and only those in
        # the old zone's box can be inside it now (inside is decided exactly, box first).
        index = state.survivor_index
        burning = zone is not None and zone.status is ZoneStatus.BURNING
        old = state.zones.get(zone_id)
        boxes = [z.exact.bounds for z in (zone if burning else None, old)
                 if z is not None and z.status is ZoneStatus.BURNING]
        rows = index.within(*boxes) if boxes and index.ids else np.zeros(0, dtype=np.int64)
        keys = [index.ids[i] for i in rows.tolist()]
        if burning and keys:
            assert zone is not None
            covered = points_covered_e7(zone.exact, index.e7[rows])
            survivor_hits = {k: bool(c) for k, c in zip(keys, covered)}
        else:
            survivor_hits = dict.fromkeys(keys, False)
        survivors = _updated(state.survivors, zone_id, survivor_hits, "inside")
        return routes, survivors


def _updated(items: Mapping[str, Any], zone_id: str, hits: dict[str, bool],
             attribute: str) -> Mapping[str, Any]:
    """``items`` with ``zone_id`` added to/removed from each item's ``attribute`` (a
    sorted tuple of zone ids) according to ``hits``; the same mapping if none change."""
    changed: dict[str, Any] = {}
    for key, hit in hits.items():
        item = items[key]
        current: tuple[str, ...] = getattr(item, attribute)
        if hit == (zone_id in current):
            continue
        ids = set(current)
        if hit:
            ids.add(zone_id)
        else:
            ids.discard(zone_id)
        changed[key] = replace(item, **{attribute: tuple(sorted(ids))})
    if not changed:
        return items
    merged = dict(items)
    merged.update(changed)
    return _frozen(merged)


def _with(mapping: Mapping[str, Any], key: str, value: Any) -> Mapping[str, Any]:
    copy = dict(mapping)
    copy[key] = value
    return _frozen(copy)


def _without(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    copy = dict(mapping)
    del copy[key]
    return _frozen(copy)


def _require_known(mapping: Mapping[str, Any], key: str, where: str, noun: str) -> None:
    if key not in mapping:
        raise CommandError(f"{where}.id: no {noun} {key!r} on the map")


def _require_room(mapping: Mapping[str, Any], key: str, limit: int, where: str, noun: str) -> None:
    if key not in mapping and len(mapping) >= limit:
        raise CommandError(f"{where}: the map already holds the maximum of {limit} {noun}")


# Commands that never change who does what (routes only shape rally points; a launch
# only lets the drones fly the work they have).
_WORK_NEUTRAL = (SetRoute, RemoveRoute, SetAssignment, Launch)


def _step(state: _State, command: Command, geo: _Geometry, version: int) -> _State:
    """The next state after ``command``, or CommandError if the map rejects it.

    Pure: ``state`` is not modified. The assignment epoch advances on every accepted
    command that may change who does what (drones, search area, zones, survivors),
    unless it restates what the map already holds (a drone's unchanged entry, say), so
    re-committed telemetry does not churn the assignment.
    """
    after = _apply_step(state, command, geo, version)
    if not isinstance(command, _WORK_NEUTRAL) and _work_changed(state, after, command):
        after = replace(after, assignment_epoch=state.assignment_epoch + 1)
    return after


def _work_changed(before: _State, after: _State, command: Command) -> bool:
    match command:
        case SetDroneTask():
            return before.drones.get(command.id) != after.drones.get(command.id)
        case SetZone():
            old = before.zones.get(command.id)
            return old is None or (old.ring, old.status) != (command.polygon, command.status)
        case SetSearchArea():
            return before.search_area is None or before.search_area.ring != command.polygon
        case Recall() | Resume():
            # A recalled drone is not available for work: who does what changes when
            # the set of drones it covers does (a repeated recall changes nothing).
            return any(before.recall.covers(d) != after.recall.covers(d) for d in after.drones)
    return True


def _apply_step(state: _State, command: Command, geo: _Geometry, version: int) -> _State:
    match command:
        case SetZone():
            _require_room(state.zones, command.id, MAX_ZONES, "set_zone", "zones")
            zone = geo.zone(command)
            routes, survivors = geo.rederive_after_zone_change(command.id, zone, state)
            return replace(
                state, version=version, zones=_with(state.zones, command.id, zone),
                routes=routes, survivors=survivors,
            )
        case RemoveZone():
            _require_known(state.zones, command.id, "remove_zone", "zone")
            routes, survivors = geo.rederive_after_zone_change(command.id, None, state)
            return replace(
                state, version=version, zones=_without(state.zones, command.id),
                routes=routes, survivors=survivors,
            )
        case SetRoute():
            _require_room(state.routes, command.id, MAX_ROUTES, "set_route", "routes")
            route = geo.route(command, state.zones)
            return replace(state, version=version, routes=_with(state.routes, command.id, route))
        case RemoveRoute():
            _require_known(state.routes, command.id, "remove_route", "route")
            return replace(state, version=version, routes=_without(state.routes, command.id))
        case ReportSurvivor():
            if command.id in state.survivors:
                raise CommandError(
                    f"report_survivor.id: survivor {command.id!r} is already reported "
                    "(use update_survivor to change it)"
                )
            _require_room(state.survivors, command.id, MAX_SURVIVORS, "report_survivor",
                          "survivors")
            survivor = geo.survivor(command, state.zones)
            return replace(
                state, version=version,
                survivors=_with(state.survivors, command.id, survivor),
                survivor_index=state.survivor_index.added(command.id, survivor.position),
            )
        case UpdateSurvivor():
            _require_known(state.survivors, command.id, "update_survivor", "survivor")
            old = state.survivors[command.id]
            status = command.status if command.status is not None else old.status
            if status not in SURVIVOR_TRANSITIONS[old.status]:
                raise CommandError(
                    f"update_survivor.status: cannot go from {old.status.value!r} to "
                    f"{status.value!r} (status only moves reported -> confirmed -> rescued)"
                )
            record = ReportSurvivor(
                command.id,
                command.position if command.position is not None else old.position,
                command.count if command.count is not None else old.count,
                command.confidence if command.confidence is not None else old.confidence,
                command.reporter,
                command.time_ms,
                status,
            )
            survivor = geo.survivor(record, state.zones)
            index = state.survivor_index
            if survivor.position != old.position:
                index = index.moved(command.id, survivor.position)
            return replace(
                state, version=version,
                survivors=_with(state.survivors, command.id, survivor), survivor_index=index,
            )
        case RemoveSurvivor():
            _require_known(state.survivors, command.id, "remove_survivor", "survivor")
            return replace(
                state, version=version, survivors=_without(state.survivors, command.id),
                survivor_index=state.survivor_index.removed(command.id),
            )
        case SetSearchArea():
            area = SearchArea(command.polygon, shapely.Polygon(command.polygon))
            return replace(state, version=version, search_area=area)
        case SetDroneTask():
            _require_room(state.drones, command.id, MAX_DRONES, "set_drone_task", "drones")
            drone = Drone(command.id, command.task, command.alive, command.busy, command.home)
            return replace(state, version=version, drones=_with(state.drones, command.id, drone))
        case RemoveDrone():
            _require_known(state.drones, command.id, "remove_drone", "drone")
            recall = replace(state.recall, drones=state.recall.drones - {command.id})
            launches = {d: o for d, o in state.launches.items() if d != command.id}
            return replace(state, version=version, drones=_without(state.drones, command.id),
                           recall=recall, launches=_frozen(launches))
        case SetAssignment():
            _check_assignment(state, command)
            return replace(state, version=version, assignment=command)
        case Recall():
            # A recall also cancels the launch of every drone it covers.
            if command.drones is None:
                return replace(state, version=version, recall=replace(state.recall, all=True),
                               launches=_frozen({}))
            for drone_id in command.drones:
                _require_known(state.drones, drone_id, "recall.drones", "drone")
            recall = replace(state.recall, drones=state.recall.drones | set(command.drones))
            launches = {d: o for d, o in state.launches.items() if not recall.covers(d)}
            return replace(state, version=version, recall=recall, launches=_frozen(launches))
        case Launch():
            if command.drones is None:
                if not state.drones:
                    raise CommandError("launch: no drone on the map to launch")
                if state.recall.all:
                    raise CommandError("launch: every drone is recalled; resume first")
                targets = [d for d in state.drones if not state.recall.covers(d)]
            else:
                for drone_id in command.drones:
                    _require_known(state.drones, drone_id, "launch.drones", "drone")
                    if state.recall.covers(drone_id):
                        raise CommandError(f"launch.drones: drone {drone_id!r} is recalled; "
                                           "resume it first")
                targets = list(command.drones)
            order = LaunchOrder(version, command.time_ms)
            launches = dict(state.launches)
            launches.update(dict.fromkeys(targets, order))
            return replace(state, version=version, launches=_frozen(launches))
        case Resume():
            if command.drones is None:
                return replace(state, version=version, recall=NO_RECALL)
            if state.recall.all:
                raise CommandError("resume.drones: all drones are recalled; a resume without "
                                   "'drones' ends that recall")
            for drone_id in command.drones:
                if drone_id not in state.recall.drones:
                    raise CommandError(f"resume.drones: drone {drone_id!r} is not recalled")
            recall = replace(state.recall, drones=state.recall.drones - set(command.drones))
            return replace(state, version=version, recall=recall)
    raise CommandError(f"command: {type(command).__name__} is not a map command")


def _snapshot_bytes(s: _State) -> bytes:
    return canonical_json({
        "format": SNAPSHOT_FORMAT,
        "version": s.version,
        "search_area": None if s.search_area is None else [list(p) for p in s.search_area.ring],
        "zones": [s.zones[k].command().to_json() for k in sorted(s.zones)],
        "routes": [s.routes[k].command().to_json() for k in sorted(s.routes)],
        "survivors": [s.survivors[k].command().to_json() for k in sorted(s.survivors)],
        "drones": [s.drones[k].command().to_json() for k in sorted(s.drones)],
        "assignment_epoch": s.assignment_epoch,
        "assignment": None if s.assignment is None else s.assignment.to_json(),
        "recall": s.recall.to_json(),
        "launch": [s.launches[d].to_json(d) for d in sorted(s.launches)],
    })


# ------------------------------------------------------------------------- the map


class EvacuationMap:
    """The replicated evacuation map (consensus StateMachine protocol + read side).

    ``route_margin_m`` is configuration, not state: every drone must use the same value
    (it shapes derived facts, not snapshots).
    """

    def __init__(self, route_margin_m: float = DEFAULT_ROUTE_MARGIN_M) -> None:
        if not (isinstance(route_margin_m, (int, float)) and 0 <= route_margin_m <= 10_000):
            raise ValueError(f"route_margin_m={route_margin_m!r} must be in [0, 10000] metres")
        self._geo = _Geometry(float(route_margin_m))
        self._state = _EMPTY
        self._last_index = 0

    # ---- read side

    @property
    def version(self) -> int:
        """Log index of the last entry that changed the map (0 when empty). Entries
        rejected by validation change nothing, so they leave the version as it was."""
        return self._state.version

    @property
    def zones(self) -> Mapping[str, Zone]:
        return self._state.zones

    @property
    def routes(self) -> Mapping[str, Route]:
        return self._state.routes

    @property
    def survivors(self) -> Mapping[str, Survivor]:
        return self._state.survivors

    @property
    def search_area(self) -> SearchArea | None:
        return self._state.search_area

    @property
    def drones(self) -> Mapping[str, Drone]:
        return self._state.drones

    @property
    def recall(self) -> RecallState:
        return self._state.recall

    @property
    def route_margin_m(self) -> float:
        return self._geo.margin_m

    @property
    def assignment_epoch(self) -> int:
        """Counts the accepted changes that may alter who does what (see _step)."""
        return self._state.assignment_epoch

    @property
    def assignment(self) -> SetAssignment | None:
        """The last committed assignment (stale when its epoch is behind)."""
        return self._state.assignment

    def view(self) -> MapView:
        """An immutable picture of the current map, safe to hand to another thread."""
        s = self._state
        return MapView(
            s.version, s.zones, s.routes, s.survivors, s.search_area, s.drones,
            self._geo.margin_m, s.assignment_epoch, s.assignment, s.recall, s.launches,
        )

    # ---- write side

    def check(self, command: Command) -> None:
        """Raise CommandError if applying ``command`` now would be rejected (unknown id,
        illegal status change, map full). Call before proposing; apply checks again,
        since the map may change between proposal and commit."""
        _step(self._state, command, self._geo, self._state.version + 1)

    def apply(self, index: int, data: bytes) -> bytes:
        """Apply the committed entry at log ``index``; return the result bytes
        (``{"ok":true,"version":N}`` or ``{"error":"...","ok":false}``, see
        :func:`decode_result`).

        An invalid command is not an exception: it is committed, so every drone must
        reach the same verdict and the same (unchanged) state. Raises ValueError only
        if the caller breaks the contract by applying indices out of order.
        """
        if isinstance(index, bool) or not isinstance(index, int) or index <= self._last_index:
            raise ValueError(
                f"apply index {index!r} must be an int greater than the last applied "
                f"index {self._last_index} (entries are applied once, in log order)"
            )
        self._last_index = index
        try:
            command = parse_command(data)
            state = _step(self._state, command, self._geo, index)
        except CommandError as exc:
            return ApplyResult(ok=False, error=str(exc)).encode()
        except (ValueError, TypeError, ArithmeticError, shapely.errors.GEOSException) as exc:
            # Not expected (parse_command raises only CommandError, property-tested
            # over arbitrary bytes), but an exception here would be raised again by
            # every replica on every restart (a crash loop): reject the entry instead.
            # The state is unchanged since the next one was being built aside.
            return ApplyResult(ok=False, error=f"command: rejected ({type(exc).__name__}: "
                                                f"{str(exc)[:200]})").encode()
        self._state = state
        return ApplyResult(ok=True, version=index).encode()

    def apply_command(self, index: int, command: Command) -> ApplyResult:
        """Convenience for local use and tests: encode, apply, decode."""
        return decode_result(self.apply(index, encode_command(command)))

    # ---- snapshot and restore

    def snapshot(self) -> bytes:
        """Canonical bytes of the whole map: the same command sequence gives the same
        bytes on every drone. Holds command data only (derived facts are recomputed)."""
        return _snapshot_bytes(self._state)

    def restore(self, data: bytes) -> None:
        """Replace the map with a snapshot. Every part is validated as a command would
        be; on any error CommandError is raised and the map is left unchanged."""
        obj = load_json(data, MAX_SNAPSHOT_BYTES, "snapshot")
        if not isinstance(obj, dict):
            raise CommandError("snapshot: expected a JSON object")
        expected = {"format", "version", "search_area", "zones", "routes", "survivors", "drones",
                    "assignment_epoch", "assignment", "recall", "launch"}
        if set(obj) != expected:
            extra, missing = set(obj) - expected, expected - set(obj)
            raise CommandError(
                f"snapshot: unexpected keys {sorted(extra)} / missing keys {sorted(missing)}"
            )
        if obj["format"] != SNAPSHOT_FORMAT:
            raise CommandError(
                f"snapshot.format: {str(obj['format'])[:40]!r} is not {SNAPSHOT_FORMAT!r}"
            )
        version = obj["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise CommandError("snapshot.version: expected a non-negative integer")

        def entries(key: str, cls: type[_Keyed], limit: int) -> list[_Keyed]:
            items = obj[key]
            if not isinstance(items, list):
                raise CommandError(f"snapshot.{key}: expected a list")
            if len(items) > limit:
                raise CommandError(f"snapshot.{key}: {len(items)} entries exceed {limit}")
            commands: list[_Keyed] = []
            for i, item in enumerate(items):
                try:
                    command = parse_command(item) if isinstance(item, dict) else None
                except CommandError as exc:
                    raise CommandError(f"snapshot.{key}[{i}]: {exc}") from None
                if not isinstance(command, cls):
                    raise CommandError(f"snapshot.{key}[{i}]: expected a {cls.TYPE} object")
                commands.append(command)
            ids = [c.id for c in commands]
            if ids != sorted(set(ids)):
                raise CommandError(f"snapshot.{key}: ids must be unique and sorted")
            return commands

        zones_in = entries("zones", SetZone, MAX_ZONES)
        routes_in = entries("routes", SetRoute, MAX_ROUTES)
        survivors_in = entries("survivors", ReportSurvivor, MAX_SURVIVORS)
        drones_in = entries("drones", SetDroneTask, MAX_DRONES)
        area = None
        if obj["search_area"] is not None:
            try:
                area_cmd = SetSearchArea(obj["search_area"])
            except CommandError as exc:
                raise CommandError(f"snapshot.search_area: {exc}") from None
            area = SearchArea(area_cmd.polygon, shapely.Polygon(area_cmd.polygon))

        epoch = obj["assignment_epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise CommandError("snapshot.assignment_epoch: expected a non-negative integer")
        assignment: SetAssignment | None = None
        if obj["assignment"] is not None:
            try:
                parsed = parse_command(obj["assignment"]) \
                    if isinstance(obj["assignment"], dict) else None
            except CommandError as exc:
                raise CommandError(f"snapshot.assignment: {exc}") from None
            if not isinstance(parsed, SetAssignment) or parsed.epoch > epoch:
                raise CommandError("snapshot.assignment: expected a set_assignment object "
                                   "of an epoch not beyond assignment_epoch")
            assignment = parsed

        recall = _recall_from_snapshot(obj["recall"], {c.id for c in drones_in})
        launches = _launches_from_snapshot(obj["launch"], {c.id for c in drones_in}, version)
        geo = self._geo
        zones = {c.id: geo.zone(c) for c in zones_in}
        state = _State(
            version=version,
            zones=_frozen(zones),
            routes=_frozen({c.id: geo.route(c, zones) for c in routes_in}),
            survivors=(survivors := _frozen({c.id: geo.survivor(c, zones) for c in survivors_in})),
            search_area=area,
            drones=_frozen({
                c.id: Drone(c.id, c.task, c.alive, c.busy, c.home) for c in drones_in
            }),
            assignment_epoch=epoch,
            assignment=assignment,
            recall=recall,
            survivor_index=_SurvivorIndex.of(survivors),
            launches=_frozen(launches),
        )
        canonical = _snapshot_bytes(state)
        if canonical != bytes(data):
            # Accepting a non-canonical encoding would let two drones holding "the same"
            # map disagree on its bytes; snapshots are always written canonically.
            raise CommandError("snapshot: not in canonical form (sorted keys, rounded values)")
        self._state = state
        self._last_index = version


def _recall_from_snapshot(obj: object, drone_ids: set[str]) -> RecallState:
    if not isinstance(obj, dict) or set(obj) != {"all", "drones"} \
            or not isinstance(obj["all"], bool) or not isinstance(obj["drones"], list):
        raise CommandError('snapshot.recall: expected {"all": bool, "drones": [ids]}')
    if not obj["drones"]:
        return RecallState(obj["all"])
    try:
        named = Recall(tuple(obj["drones"])).drones or ()
    except CommandError as exc:
        raise CommandError(f"snapshot.recall: {exc}") from None
    unknown = set(named) - drone_ids
    if unknown:
        raise CommandError(f"snapshot.recall: recalls drones not on the map: {sorted(unknown)}")
    return RecallState(obj["all"], frozenset(named))


def _launches_from_snapshot(obj: object, drone_ids: set[str], version: int) -> dict[str, LaunchOrder]:
    where = "snapshot.launch"
    if not isinstance(obj, list) or len(obj) > MAX_DRONES:
        raise CommandError(f'{where}: expected a list of {{"drone", "version", "time_ms"}}, '
                           f"at most {MAX_DRONES}")
    out: dict[str, LaunchOrder] = {}
    for i, item in enumerate(obj):
        if not isinstance(item, dict) or set(item) != {"drone", "version", "time_ms"}:
            raise CommandError(f'{where}[{i}]: expected {{"drone", "version", "time_ms"}}')
        drone = item["drone"]
        # A str first: a list or object there is unhashable (TypeError, not the
        # ValueError a snapshot's installer expects of a bad snapshot).
        if not isinstance(drone, str) or drone not in drone_ids:
            raise CommandError(f"{where}[{i}].drone: {str(drone)[:80]!r} is not on the map")
        v = item["version"]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= version:
            raise CommandError(f"{where}[{i}].version: expected a map version in 1..{version}")
        try:
            t = Launch(item["time_ms"]).time_ms
        except CommandError as exc:
            raise CommandError(f"{where}[{i}]: {exc}") from None
        out[drone] = LaunchOrder(v, t)
    return out
