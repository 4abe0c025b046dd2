"""Who does what: sectors and survivors per available drone, by reachable path cost.

Computed by the leader and committed to the map (``set_assignment``, see
:mod:`swarm.planner.committed`), so drones never have to agree on floating point;
every drone then flies its committed share. The rules:

1. **Available drones** are those alive, not busy, and not returning (a drone whose
   task is ``return`` only goes home: work given to it would be lost), in id order.
2. **Frame**: a local East-North frame at the centre of the search area's bounding
   box (or, without a search area, of every zone, survivor and drone home).
3. **Reach**: each available drone starts from its home, or from the nearest point
   out of the buffered zones when its home is inside one (the planner's first leg).
   A drone whose every way out crosses fire it is not in can serve nothing (a reason
   says so). Drones are grouped by the free space they share: two drones are in one
   group when the planner's visibility graph (:func:`~swarm.planner.routing.route`)
   joins their starts.
4. **Sectors**: the search area minus the zones' node polygons falls into pieces;
   each piece belongs to the first group (in drone id order) that can reach it, and
   a piece no group reaches is reported unserved with a reason. When one group
   reaches everything, its territory is the whole search area; otherwise each
   group's territory is the pieces it reaches, holes filled, each point going to the
   innermost piece around it. A territory is cut into as many equal-area strips as
   its group has drones, along the search area's long axis (the longer side of its
   minimum rotated rectangle), by cuts perpendicular to that axis placed by
   bisection on area; strip i goes to the group's i-th drone.
5. **Survivors to confirm** (status "reported") are taken urgent first, then more
   people first, then oldest report, then id. Each goes to exactly one available
   drone that can reach it: the one with the least cost, the length of the shortest
   safe path from its start to the survivor (to the nearest safe point when the
   survivor is inside a buffered zone) plus the survivor's distance from the drone's
   sector (zero inside it: the detour from the drone's own work), among those
   holding fewer than ``max_survivors_per_drone``; when all that can reach it are
   full, the nearest of them. Ties go to the smaller drone id. A survivor no drone
   can reach is unserved, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import shapely
import shapely.affinity

from ..geo import LocalFrame
from .model import PlannerConfig, PlannerMap
from .obstacles import Obstacles, build_obstacles
from .routing import path_length, route

__all__ = ["Assignment", "assign", "map_frame"]

Point = tuple[float, float]
_BISECTION_STEPS = 60
# Pieces of the search area smaller than this are slivers between zones, not work.
_MIN_PIECE_M2 = 1.0
WHOLE_AREA_IN_ZONES = "the whole search area lies inside buffered zones"


@dataclass(frozen=True, slots=True)
class Assignment:
    """Sectors and survivors per drone, and what could not be served, at one map version.

    ``sectors`` are lon/lat polygons or multipolygons (x = lon); ``sectors_enu`` the
    same in ``frame``. ``survivors`` maps each available drone id to its survivor ids
    in visiting priority order. ``unserved`` maps an item (``"survivor:<id>"``,
    ``"search_area:<n>"``) to why no drone has it; ``drone_reasons`` says why an
    available drone was given nothing.
    """

    map_version: int
    frame: LocalFrame | None
    free_drones: tuple[str, ...]
    sectors: Mapping[str, shapely.Geometry] = field(compare=False)
    sectors_enu: Mapping[str, shapely.Geometry] = field(compare=False)
    survivors: Mapping[str, tuple[str, ...]] = field(compare=False)
    unserved: Mapping[str, str] = field(compare=False, default_factory=lambda: MappingProxyType({}))
    drone_reasons: Mapping[str, str] = field(compare=False,
                                             default_factory=lambda: MappingProxyType({}))

    def survivor_owner(self, survivor_id: str) -> str | None:
        for drone_id, ids in self.survivors.items():
            if survivor_id in ids:
                return drone_id
        return None


def map_frame(view: PlannerMap) -> LocalFrame | None:
    """The map's shared metric frame (rule 2); None for a map with nothing in it."""
    if view.search_area is not None:
        return LocalFrame.around(view.search_area)
    parts: list[shapely.Geometry] = [z.polygon for z in view.zones]
    parts += [shapely.Point(s.position.lon, s.position.lat) for s in view.survivors]
    parts += [shapely.Point(d.home.lon, d.home.lat) for d in view.drones]
    if not parts:
        return None
    return LocalFrame.around(shapely.GeometryCollection(parts))


def assign(view: PlannerMap, config: PlannerConfig | None = None,
           obstacles: Obstacles | None = None) -> Assignment:
    """Apply the rules above to ``view``. ``obstacles`` (from
    :func:`~swarm.planner.obstacles.build_obstacles` on this view, config and
    :func:`map_frame`) saves rebuilding them."""
    config = config or PlannerConfig()
    frame = map_frame(view)
    free = tuple(d.id for d in view.drones if d.free)
    if frame is None:
        return Assignment(view.version, None, free, MappingProxyType({}), MappingProxyType({}),
                          MappingProxyType({}))
    if obstacles is None:
        obstacles = build_obstacles(view, frame, config)
    reach = _Reach(obstacles, config)
    drone_reasons: dict[str, str] = {}
    starts: dict[str, Point] = {}
    for d in view.drones:
        if d.id not in free:
            continue
        start, why = _start_of(obstacles, frame.point_to_enu(d.home.lon, d.home.lat))
        if start is None:
            drone_reasons[d.id] = why
        else:
            starts[d.id] = start
    groups = _groups(reach, starts)
    unserved: dict[str, str] = {}
    sectors_enu: dict[str, shapely.Geometry] = {}
    if view.search_area is not None:
        area = frame.geometry_to_enu(view.search_area)
        if not free:
            unserved["search_area"] = "no available drone (alive, not busy, not returning, not recalled)"
        elif not groups:
            unserved["search_area"] = "no available drone can leave its home safely"
        else:
            sectors_enu = _sectors(area, obstacles, reach, groups, starts, unserved, frame)
    sectors: dict[str, shapely.Geometry] = {}
    if sectors_enu:
        # One pymap3d call for all sectors.
        geo = frame.geometry_to_geodetic(np.array(list(sectors_enu.values()), dtype=object))
        sectors = dict(zip(sectors_enu, geo))
    survivors = _assign_survivors(view, frame, obstacles, reach, free, starts, sectors_enu,
                                  config, unserved)
    for drone_id in free:
        if drone_id not in drone_reasons and drone_id not in sectors and not survivors.get(drone_id):
            drone_reasons[drone_id] = "no sector and no survivor for it"
    return Assignment(
        map_version=view.version, frame=frame, free_drones=free,
        sectors=MappingProxyType(sectors), sectors_enu=MappingProxyType(sectors_enu),
        survivors=MappingProxyType(survivors), unserved=MappingProxyType(dict(sorted(unserved.items()))),
        drone_reasons=MappingProxyType(dict(sorted(drone_reasons.items()))),
    )


class _Reach:
    """Safe path lengths through the planner's visibility graph, memoised."""

    def __init__(self, obstacles: Obstacles, config: PlannerConfig) -> None:
        self.obstacles = obstacles
        self.budget = config.max_route_expansions
        self._cache: dict[tuple[Point, Point], float] = {}

    def cost(self, a: Point, b: Point) -> float:
        """Length of the shortest safe path from a to b; inf when there is none."""
        key = (a, b)
        if key not in self._cache:
            path = route(self.obstacles, a, b, self.budget)
            self._cache[key] = math.inf if path is None else path_length(path)
        return self._cache[key]


def _start_of(obstacles: Obstacles, home: Point) -> tuple[Point | None, str]:
    """Where a drone at ``home`` starts its work (the planner's first leg), or None
    and why it cannot leave."""
    if not obstacles.zones_containing(home):
        return home, ""
    exit_point = obstacles.nearest_free_point(home)
    if obstacles.in_fire(home) or not obstacles.crosses_fire(home, exit_point):
        return exit_point, ""
    return None, "its home is enclosed by fire: every way out crosses a zone"


def _groups(reach: _Reach, starts: Mapping[str, Point]) -> list[list[str]]:
    """Drones sharing free space (rule 3), each group in id order, groups ordered by
    their first drone."""
    groups: list[list[str]] = []
    for drone_id in sorted(starts):
        for group in groups:
            if reach.cost(starts[group[0]], starts[drone_id]) < math.inf:
                group.append(drone_id)
                break
        else:
            groups.append([drone_id])
    return groups


def _sectors(area: shapely.Geometry, obstacles: Obstacles, reach: _Reach,
             groups: list[list[str]], starts: Mapping[str, Point], unserved: dict[str, str],
             frame: LocalFrame) -> dict[str, shapely.Geometry]:
    """Rule 4: each group's territory cut into one strip per drone."""
    free = area if obstacles.empty else shapely.difference(area, obstacles.nodes_near(area))
    pieces = [p for p in shapely.get_parts(free) if p.area >= _MIN_PIECE_M2]
    if not pieces:
        unserved["search_area"] = WHOLE_AREA_IN_ZONES
        return {}
    owner: list[int | None] = []
    for piece in pieces:
        inside = shapely.get_coordinates(shapely.point_on_surface(piece))[0]
        rep = (float(inside[0]), float(inside[1]))
        found = None
        for g, group in enumerate(groups):
            if reach.cost(starts[group[0]], rep) < math.inf:
                found = g
                break
        owner.append(found)
    for n, (piece, piece_owner) in enumerate(zip(pieces, owner)):
        if piece_owner is None:
            c = piece.centroid
            lon, lat = frame.point_to_geodetic(c.x, c.y)
            unserved[f"search_area:{n}"] = (
                f"{piece.area:.0f} m2 of the search area around ({lat:.5f}, {lon:.5f}) "
                "cannot be reached by any available drone without crossing a zone")
    territories: dict[int, shapely.Geometry]
    if len(groups) == 1 and all(o == 0 for o in owner):
        territories = {0: area}
    else:
        # Holes filled (zones inside a territory are surveyed around, as everywhere);
        # nested pieces (the unburned hole of a ring of fire) go to the innermost.
        filled = [shapely.Polygon(p.exterior) for p in pieces]
        order = sorted(range(len(pieces)), key=lambda i: (filled[i].area, i))
        taken: list[shapely.Geometry] = []
        parts: dict[int, list[shapely.Geometry]] = {}
        for i in order:
            own = filled[i] if not taken else shapely.difference(filled[i], shapely.union_all(taken))
            taken.append(filled[i])
            group_of = owner[i]
            if group_of is not None and not own.is_empty:
                parts.setdefault(group_of, []).append(shapely.intersection(own, area))
        territories = {k: shapely.union_all(p) for k, p in parts.items()}
    out: dict[str, shapely.Geometry] = {}
    angle = _long_axis_angle(area)
    for g in sorted(territories):
        group = groups[g]
        for drone_id, strip in zip(group, _strips(territories[g], len(group), angle)):
            if strip.area >= _MIN_PIECE_M2:
                out[drone_id] = strip
    return out
def _long_axis_angle(area: shapely.Geometry) -> float:
    rect = shapely.minimum_rotated_rectangle(area)
    if not isinstance(rect, shapely.Polygon):
        return 0.0
    c = np.asarray(rect.exterior.coords)
    e0, e1 = c[1] - c[0], c[2] - c[1]
    axis = e0 if np.hypot(*e0) >= np.hypot(*e1) else e1
    angle = math.atan2(float(axis[1]), float(axis[0]))
    # Normalise the direction to [0, pi) so the strip order does not depend on which
    # corner GEOS started the rectangle from.
    angle %= math.pi
    if math.isclose(angle, math.pi, abs_tol=1e-12):
        angle = 0.0
    return angle


def _strips(area: shapely.Geometry, k: int, angle: float) -> list[shapely.Geometry]:
    """``area`` cut into ``k`` equal-area strips across the axis at ``angle``, in axis
    order."""
    rotated = shapely.affinity.rotate(area, -angle, origin=(0.0, 0.0), use_radians=True)
    xmin, ymin, xmax, ymax = rotated.bounds
    total = rotated.area
    cuts = [xmin]
    for i in range(1, k):
        target = total * i / k
        lo, hi = cuts[-1], xmax
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2.0
            if shapely.clip_by_rect(rotated, xmin - 1.0, ymin - 1.0, mid, ymax + 1.0).area < target:
                lo = mid
            else:
                hi = mid
        cuts.append((lo + hi) / 2.0)
    cuts.append(xmax)
    strips = []
    for a, b in zip(cuts, cuts[1:]):
        # clip_by_rect is fast and its area is right (good for bisection), but GEOS does
        # not promise a valid polygon from it; the strips themselves use a full overlay.
        piece = shapely.intersection(rotated, shapely.box(a, ymin - 1.0, b, ymax + 1.0))
        strips.append(shapely.affinity.rotate(piece, angle, origin=(0.0, 0.0), use_radians=True))
    return strips


def _assign_survivors(view: PlannerMap, frame: LocalFrame, obstacles: Obstacles, reach: _Reach,
                      free: tuple[str, ...], starts: Mapping[str, Point],
                      sectors_enu: Mapping[str, shapely.Geometry], config: PlannerConfig,
                      unserved: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Rule 5."""
    out: dict[str, list[str]] = {d: [] for d in free}
    pending = sorted((s for s in view.survivors if s.needs_confirmation),
                     key=lambda s: (not s.urgent, -s.count, s.time_ms, s.id))
    able = sorted(starts)
    for s in pending:
        if not free:
            unserved[f"survivor:{s.id}"] = "no available drone (alive, not busy, not returning, not recalled)"
            continue
        target = frame.point_to_enu(s.position.lon, s.position.lat)
        if obstacles.zones_containing(target):
            target = obstacles.nearest_free_point(target)
        costs = _costs_in_order(reach, starts, sectors_enu, able, target)
        if not costs:
            unserved[f"survivor:{s.id}"] = (
                "no available drone can reach it without crossing a zone" if able
                else "no available drone can leave its home safely")
            continue
        open_ = [(c, d) for c, d in costs if len(out[d]) < config.max_survivors_per_drone]
        out[min(open_ or costs)[1]].append(s.id)
    return {d: tuple(v) for d, v in out.items()}


def _costs_in_order(reach: _Reach, starts: Mapping[str, Point],
                    sectors_enu: Mapping[str, shapely.Geometry], able: list[str],
                    target: Point) -> list[tuple[float, str]]:
    """(path cost, drone) for every drone that can reach ``target``, cheapest first
    (ties by drone id). Routes are memoised per (start, target)."""
    found: list[tuple[float, str]] = []
    for d in able:
        cost = reach.cost(starts[d], target)
        if cost < math.inf:
            sector = sectors_enu.get(d)
            if sector is not None:
                cost += float(sector.distance(shapely.Point(target)))
            found.append((cost, d))
    return sorted(found)
