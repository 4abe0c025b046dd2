"""Who does what, computed by every drone from the agreed map alone.

No messages are needed for the drones to agree on their tasks: the assignment is a
pure, deterministic function of the map (Raft gives every drone the same map at the
same version), so each drone computes the same answer. The rules:

1. **Free drones** are those alive and not busy, taken in sorted id order.
2. **Frame**: a local East-North frame at the centre of the search area's bounding
   box (or, without a search area, of every zone, survivor and drone home).
3. **Sectors**: the search area is cut into as many equal-area strips as there are
   free drones, along its long axis (the longer side of its minimum rotated
   rectangle), by cuts perpendicular to that axis placed by bisection on area. Strips
   are numbered along the axis (from the end the axis direction, normalised to
   [0, 180) degrees, points away from) and strip i goes to the i-th free drone. When
   a drone dies, is removed or becomes busy, the same rule over the remaining drones
   redistributes its sector: the strips always cover the whole search area.
4. **Survivors to confirm** (status "reported") are taken urgent first, then more
   people first, then oldest report, then id. Each goes to exactly one free drone:
   the one nearest to it (distance from the survivor to the drone's sector, zero when
   inside; or to the drone's home when there is no search area), among those holding
   fewer than ``max_survivors_per_drone`` survivors; when all are full, the nearest
   of all. Ties go to the smaller drone id.
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

__all__ = ["Assignment", "assign", "map_frame"]

_BISECTION_STEPS = 60


@dataclass(frozen=True, slots=True)
class Assignment:
    """Sectors and survivors per drone at one map version.

    ``sectors`` are lon/lat polygons (x = lon); ``sectors_enu`` the same in ``frame``.
    ``survivors`` maps each drone id to its survivor ids in visiting priority order.
    """

    map_version: int
    frame: LocalFrame | None
    free_drones: tuple[str, ...]
    sectors: Mapping[str, shapely.Geometry] = field(compare=False)
    sectors_enu: Mapping[str, shapely.Geometry] = field(compare=False)
    survivors: Mapping[str, tuple[str, ...]] = field(compare=False)

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


def assign(view: PlannerMap, config: PlannerConfig | None = None) -> Assignment:
    """Apply the rules above to ``view``."""
    config = config or PlannerConfig()
    frame = map_frame(view)
    free = tuple(d.id for d in view.drones if d.free)
    sectors_enu: dict[str, shapely.Geometry] = {}
    if frame is not None and view.search_area is not None and free:
        area = frame.geometry_to_enu(view.search_area)
        for drone_id, strip in zip(free, _strips(area, len(free))):
            sectors_enu[drone_id] = strip
    sectors: dict[str, shapely.Geometry] = {}
    if sectors_enu:
        assert frame is not None
        # One pymap3d call for all sectors.
        geo = frame.geometry_to_geodetic(np.array(list(sectors_enu.values()), dtype=object))
        sectors = dict(zip(sectors_enu, geo))
    survivors = _assign_survivors(view, frame, free, sectors_enu, config)
    return Assignment(
        map_version=view.version, frame=frame, free_drones=free,
        sectors=MappingProxyType(sectors), sectors_enu=MappingProxyType(sectors_enu),
        survivors=MappingProxyType(survivors),
    )


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


def _strips(area: shapely.Geometry, k: int) -> list[shapely.Geometry]:
    """``area`` cut into ``k`` equal-area strips across its long axis, in axis order."""
    angle = _long_axis_angle(area)
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


def _assign_survivors(view: PlannerMap, frame: LocalFrame | None, free: tuple[str, ...],
                      sectors_enu: Mapping[str, shapely.Geometry],
                      config: PlannerConfig) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {d: [] for d in free}
    if frame is None or not free:
        return {}
    pending = sorted((s for s in view.survivors if s.needs_confirmation),
                     key=lambda s: (not s.urgent, -s.count, s.time_ms, s.id))
    homes = {d.id: shapely.Point(frame.point_to_enu(d.home.lon, d.home.lat))
             for d in view.drones if d.id in out}
    for s in pending:
        p = shapely.Point(frame.point_to_enu(s.position.lon, s.position.lat))

        def distance(drone_id: str) -> float:
            target = sectors_enu.get(drone_id, homes[drone_id])
            return float(target.distance(p))

        open_ = [d for d in free if len(out[d]) < config.max_survivors_per_drone] or list(free)
        chosen = min(open_, key=lambda d: (distance(d), d))
        out[chosen].append(s.id)
    return {d: tuple(v) for d, v in out.items()}
