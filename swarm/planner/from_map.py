"""The planner's entry points from the replicated map.

``assign_tasks(evac_map)`` and ``plan_for_drone(evac_map, drone_id, vehicle_state,
config)`` accept an ``EvacuationMap`` (its current view is taken once, so a map being
applied to concurrently cannot tear the picture) or a ``MapView``, convert it into the
planner's own :class:`PlannerMap`, and run the pure assignment and planner on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from .assignment import Assignment, assign
from .model import (
    DroneInfo,
    GeoPoint,
    PlannerConfig,
    PlannerMap,
    PlanResult,
    RouteInfo,
    SurvivorInfo,
    VehicleState,
    ZoneInfo,
)
from .planner import plan, prepare

__all__ = ["assign_tasks", "plan_all", "plan_for_drone", "planner_map"]


class _MapLike(Protocol):
    """The read side of swarm.evacmap (EvacuationMap or MapView). Read-only members:
    a frozen MapView's fields and EvacuationMap's properties both satisfy them."""

    @property
    def version(self) -> int: ...
    @property
    def zones(self) -> Mapping[str, Any]: ...
    @property
    def routes(self) -> Mapping[str, Any]: ...
    @property
    def survivors(self) -> Mapping[str, Any]: ...
    @property
    def search_area(self) -> Any: ...
    @property
    def drones(self) -> Mapping[str, Any]: ...


def planner_map(evac_map: _MapLike) -> PlannerMap:
    """The planner's picture of an ``EvacuationMap`` or ``MapView``."""
    view = evac_map.view() if hasattr(evac_map, "view") else evac_map
    recall = getattr(view, "recall", None)
    zones = tuple(ZoneInfo(z.id, z.polygon, bool(z.is_hazard)) for z in view.zones.values())
    survivors = tuple(
        SurvivorInfo(s.id, GeoPoint(lat=s.position[1], lon=s.position[0]), count=s.count,
                     status=str(s.status), urgent=bool(s.urgent), time_ms=s.time_ms)
        for s in view.survivors.values())
    drones = tuple(
        DroneInfo(d.id, GeoPoint(lat=d.home[1], lon=d.home[0], alt=d.home[2]), alive=d.alive,
                  busy=d.busy, task=str(d.task), recalled=recall is not None and recall.covers(d.id))
        for d in view.drones.values())
    routes = tuple(
        RouteInfo(r.id, tuple(GeoPoint(lat=p[1], lon=p[0], alt=p[2]) for p in r.path),
                  unsafe=bool(r.unsafe))
        for r in view.routes.values())
    area = view.search_area.polygon if view.search_area is not None else None
    return PlannerMap(version=view.version, search_area=area, zones=zones,
                      survivors=survivors, drones=drones, routes=routes, committed=True,
                      assignment=getattr(view, "assignment", None),
                      assignment_epoch=getattr(view, "assignment_epoch", 0))


def assign_tasks(evac_map: _MapLike, config: PlannerConfig | None = None) -> Assignment:
    """Sectors and survivors per free drone, computed here from the map (rules in
    swarm.planner.assignment): what the leader proposes (see
    :func:`swarm.planner.committed.propose_assignment`). Drones fly the committed one."""
    return assign(replace(planner_map(evac_map), committed=False), config)


def plan_for_drone(evac_map: _MapLike, drone_id: str, vehicle_state: VehicleState,
                   config: PlannerConfig | None = None) -> PlanResult:
    """One drone's plan at the map's current version."""
    return plan(planner_map(evac_map), drone_id, vehicle_state, config)


def plan_all(evac_map: _MapLike, vehicle_states: Mapping[str, VehicleState],
             config: PlannerConfig | None = None) -> dict[str, PlanResult]:
    """Plans for several drones from one picture of the map, sharing the geometry
    (frame, assignment, fences) that does not depend on the vehicle. Keys in sorted
    order; each plan equals ``plan_for_drone`` for that drone."""
    view = planner_map(evac_map)
    config = config or PlannerConfig()
    context = prepare(view, config)
    return {d: plan(view, d, vehicle_states[d], config, context) for d in sorted(vehicle_states)}
