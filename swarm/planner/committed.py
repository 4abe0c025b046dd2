"""The committed assignment: the leader computes who does what once, every drone flies it.

Floating-point geometry (GEOS, pymap3d, numpy) may differ in the last bit between a Pi
and an x86 machine, or between library versions; a near-tie then flips and two drones
both believe they own a survivor, or neither does (issue 13). So the decision is taken
once, by the leader, and committed to the Raft log as a ``set_assignment`` map command
carrying the map's assignment epoch; each drone then plans only its own path from its
committed share (paths may differ in the last bit between machines: harmless).

The leader's side (pure functions of a map view):

* :func:`needs_assignment` — True when no committed assignment matches the map's
  current ``assignment_epoch`` (a fresh map, or one changed since);
* :func:`propose_assignment` — the ``SetAssignment`` to propose, computed with the
  float geometry of :func:`swarm.planner.assignment.assign` at that epoch. Apply
  rejects it if the map moved on before it committed (propose again).

Every drone's side: :func:`share_of` (used by the planner through ``prepare``) turns
the committed command into the planner's :class:`Assignment`. The rule when none is
current: keep flying the last committed share (sector while still available,
survivors still waiting for confirmation); never invent a new split. With none
committed yet, a drone has no work (``awaiting_assignment``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import numpy as np
import shapely
import shapely.errors
import shapely.validation

from ..evacmap.commands import (
    MAX_POLYGON_VERTICES,
    MAX_REASON_CHARS,
    MAX_SECTOR_POLYGONS,
    SetAssignment,
    encode_command,
    sector_polygon_problem,
)
from ..geo import LocalFrame
from .assignment import Assignment, assign
from .model import PlannerConfig, PlannerMap

__all__ = ["assignment_hash", "needs_assignment", "propose_assignment", "share_of"]

_COORD_DIGITS = 7  # the map's resolution (degE7)
AWAITING = "no assignment committed yet: awaiting the leader's first"


def needs_assignment(view: Any) -> bool:
    """True when the leader should propose an assignment: none is committed, or the
    committed one was computed at an older assignment epoch. ``view`` is an
    ``EvacuationMap``, a ``MapView`` or a committed :class:`PlannerMap`."""
    assignment = getattr(view, "assignment", None)
    return assignment is None or assignment.epoch != view.assignment_epoch


def propose_assignment(view: Any, config: PlannerConfig | None = None) -> SetAssignment:
    """The assignment the leader proposes for ``view`` (an ``EvacuationMap``, a
    ``MapView`` or a :class:`PlannerMap`), at the view's assignment epoch.

    Sectors are rounded to the map's 1e-7 degree (a polygon that rounding would make
    invalid is repaired, or dropped when it is a sliver); reasons are cut to the
    command's limit."""
    from .from_map import planner_map  # lazily: from_map -> planner -> this module

    pmap = view if isinstance(view, PlannerMap) else planner_map(view)
    computed = assign(replace(pmap, committed=False), config)
    sectors: dict[str, list[list[list[list[float]]]]] = {}
    for drone_id, geometry in computed.sectors.items():
        polygons = _command_polygons(geometry)
        if polygons:
            sectors[drone_id] = polygons
    survivors = {d: list(ids) for d, ids in computed.survivors.items() if ids}
    unserved = {item: reason[:MAX_REASON_CHARS] for item, reason in computed.unserved.items()}
    # The command validates and normalises its JSON-shaped arguments.
    return SetAssignment(pmap.assignment_epoch, sectors, survivors, unserved)  # type: ignore[arg-type]


def assignment_hash(view: Any) -> str | None:
    """SHA-256 of the committed assignment's canonical bytes (None if none): equal on
    every drone that applied the same log, whatever its floating point."""
    assignment = getattr(view, "assignment", None)
    if assignment is None:
        return None
    return hashlib.sha256(encode_command(assignment)).hexdigest()


def share_of(view: PlannerMap, frame: LocalFrame | None) -> Assignment:
    """The planner's :class:`Assignment` from ``view``'s committed assignment: every
    drone's share as committed, restricted to what still holds (see the module
    docstring). Sector polygons are converted into ``frame`` locally."""
    available = tuple(d.id for d in view.drones if d.free)
    committed = view.assignment
    empty: Mapping[str, Any] = MappingProxyType({})
    if committed is None or frame is None:
        waiting_for = dict.fromkeys(available, AWAITING) if committed is None else {}
        return Assignment(view.version, frame, available, empty, empty, empty,
                          drone_reasons=MappingProxyType(waiting_for))
    stale = committed.epoch != view.assignment_epoch
    waiting = {s.id for s in view.survivors if s.needs_confirmation}
    sectors: dict[str, shapely.Geometry] = {}
    for drone_id, polygons in committed.sectors:
        if drone_id in available:
            sectors[drone_id] = shapely.MultiPolygon(
                [shapely.Polygon(rings[0], rings[1:]) for rings in polygons])
    survivors = {d: tuple(x for x in ids if x in waiting)
                 for d, ids in committed.survivors if d in available}
    sectors_enu = {}
    if sectors:
        enu = frame.geometry_to_enu(np.array(list(sectors.values()), dtype=object))
        sectors_enu = dict(zip(sectors, enu))
    reasons: dict[str, str] = {}
    if stale:
        note = (f"the committed assignment (epoch {committed.epoch}) is stale (map at "
                f"epoch {view.assignment_epoch}): flying the last committed share")
        reasons = dict.fromkeys(available, note)
    return Assignment(
        view.version, frame, available, MappingProxyType(sectors),
        MappingProxyType(sectors_enu), MappingProxyType(survivors),
        unserved=MappingProxyType(dict(committed.unserved)),
        drone_reasons=MappingProxyType(reasons),
    )


def _command_polygons(geometry: shapely.Geometry) -> list[list[list[list[float]]]]:
    """A lon/lat (multi)polygon as the command's polygons: rings rounded to 1e-7
    degree, consecutive repeats dropped, each polygon valid after rounding."""
    out: list[list[list[list[float]]]] = []
    for part in shapely.get_parts(geometry):
        if not isinstance(part, shapely.Polygon) or part.is_empty:
            continue
        for attempt in (part, shapely.validation.make_valid(_rounded_polygon(part) or part)):
            rings = _rounded_rings(attempt) if isinstance(attempt, shapely.Polygon) else None
            if rings is not None:
                out.append(rings)
                break
    return out[:MAX_SECTOR_POLYGONS]


def _rounded_rings(polygon: shapely.Polygon) -> list[list[list[float]]] | None:
    rings = []
    for ring in [polygon.exterior, *polygon.interiors]:
        coords = shapely.get_coordinates(ring)
        if len(coords) - 1 > MAX_POLYGON_VERTICES:
            simplified = shapely.simplify(shapely.Polygon(ring), 1e-6, preserve_topology=True)
            coords = shapely.get_coordinates(simplified.exterior)
        points: list[list[float]] = []
        for x, y in coords[:-1]:
            p = [round(float(x), _COORD_DIGITS) + 0.0, round(float(y), _COORD_DIGITS) + 0.0]
            if not points or p != points[-1]:
                points.append(p)
        while len(points) > 1 and points[0] == points[-1]:
            points.pop()
        if len(points) < 3 or len(points) > MAX_POLYGON_VERTICES:
            if ring is polygon.exterior:
                return None
            continue  # a hole that collapses is dropped
        rings.append(points)
    # The map's own exact rule (degE7 integers), not GEOS: what passes here the map
    # accepts on every drone.
    if sector_polygon_problem(rings) is not None:
        return None
    return rings


def _rounded_polygon(polygon: shapely.Polygon) -> shapely.Polygon | None:
    def rnd(coords):
        return [(round(float(x), _COORD_DIGITS), round(float(y), _COORD_DIGITS))
                for x, y in coords]
    try:
        return shapely.Polygon(rnd(polygon.exterior.coords),
                               [rnd(h.coords) for h in polygon.interiors])
    except (ValueError, shapely.errors.GEOSException):
        return None
