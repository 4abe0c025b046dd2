"""Shared builders for the planner tests (no tests here): scenes drawn in metres in a
fixed local frame, and a checker that replays a mission's legs in that frame."""

from __future__ import annotations

import numpy as np
import shapely

from mavlink_bridge.plan import CMD_NAV_RETURN_TO_LAUNCH, FRAME_MISSION, MissionItem
from swarm.planner import (
    DroneInfo,
    GeoPoint,
    LocalFrame,
    PlannerConfig,
    PlannerMap,
    PlanResult,
    SurvivorInfo,
    VehicleState,
    ZoneInfo,
)

# Canberra, near ArduPilot SITL's default location.
ORIGIN = LocalFrame(-35.363261, 149.165230)


def poly(points, frame: LocalFrame = ORIGIN) -> shapely.Polygon:
    """A lon/lat polygon from vertices given in metres (east, north) of ``frame``."""
    pts = np.asarray(points, dtype=float)
    lon, lat = frame.to_geodetic(pts[:, 0], pts[:, 1])
    return shapely.Polygon(np.column_stack([lon, lat]))


def rect(x0, y0, x1, y1) -> shapely.Polygon:
    return poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def gp(east: float, north: float, alt: float = 0.0) -> GeoPoint:
    lon, lat = ORIGIN.point_to_geodetic(east, north)
    return GeoPoint(lat, lon, alt)


def drones(*ids: str, home=(0.0, -600.0), **flags) -> tuple[DroneInfo, ...]:
    return tuple(DroneInfo(i, gp(*home, 584.0), **flags) for i in ids)


def vehicle(east: float, north: float, alt: float = 0.0, home=(0.0, -600.0),
            battery: float | None = 95.0) -> VehicleState:
    return VehicleState(gp(east, north), alt, gp(*home, 584.0), battery)


def zone(zid: str, polygon: shapely.Polygon, hazard: bool = True) -> ZoneInfo:
    return ZoneInfo(zid, polygon, hazard)


def survivor(sid: str, east: float, north: float, **kw) -> SurvivorInfo:
    return SurvivorInfo(sid, gp(east, north), **kw)


def item_xy(item: MissionItem, frame: LocalFrame) -> tuple[float, float]:
    return frame.point_to_enu(item.y / 1e7, item.x / 1e7)


def mission_legs(result: PlanResult, frame: LocalFrame, start: GeoPoint,
                 home: GeoPoint) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Every horizontal leg the vehicle flies, from its position through each item's
    position (degE7, as uploaded) and, for RTL, to home."""
    here = frame.point_to_enu(start.lon, start.lat)
    legs = []
    for item in result.plan.mission:
        if item.command == CMD_NAV_RETURN_TO_LAUNCH:
            nxt = frame.point_to_enu(home.lon, home.lat)
        elif item.frame == FRAME_MISSION:
            continue
        else:
            nxt = item_xy(item, frame)
        legs.append((here, nxt))
        here = nxt
    return legs


def buffered_union(view: PlannerMap, frame: LocalFrame, config: PlannerConfig) -> shapely.Geometry:
    """The hazard zones grown by the safety margin, computed independently of the planner
    (64 segments per quarter circle: within 0.03% of the true disc-grown zone)."""
    grown = [frame.geometry_to_enu(z.polygon).buffer(config.safety_margin_m, quad_segs=64)
             for z in view.zones if z.hazard]
    return shapely.union_all(grown) if grown else shapely.GeometryCollection()


def fence_polygons(items):
    """Group fence vertex items into polygons by their vertex count (param1)."""
    out, i = [], 0
    while i < len(items):
        n = int(items[i].param1)
        out.append(items[i:i + n])
        i += n
    return out


def intrusion(legs, forbidden: shapely.Geometry) -> float:
    """Total length of the legs inside ``forbidden`` (0 when they stay out)."""
    if forbidden.is_empty:
        return 0.0
    total = 0.0
    for a, b in legs:
        seg = shapely.LineString([a, b]) if a != b else shapely.Point(a).buffer(1e-9)
        inter = seg.intersection(forbidden)
        total += inter.length if a != b else (0.0 if inter.is_empty else 1.0)
    return total
