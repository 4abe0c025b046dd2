"""The last check before a plan reaches the flight controller: does it cross fire?

The planner routes around buffered hazard zones; this check is deliberately separate
from it (a different, simpler computation over the map's own zone polygons), so a
planner bug cannot pass its own test. A plan is refused when the path the aircraft
would fly (from where it is now, through every mission item with a position, in order)
intersects any ``burning`` or ``burned`` zone of the map version it was planned from.
Straight legs in longitude/latitude are straight enough at these scales (zones are at
most 100 km across, docs/map.md) for an intersection test.

A recall's RTL is not planned: ArduCopter flies a straight line home. Before commanding
it, :func:`hazards_near_line` asks whether that line passes within the planner's
safety margin of a hazard zone (measured in metres, in a local frame at the start).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import shapely

from swarm.geo import LocalFrame

from mavlink_bridge.plan import CMD_NAV_LAND, CMD_NAV_LOITER_TIME, CMD_NAV_LOITER_TURNS, \
    CMD_NAV_LOITER_UNLIM, CMD_NAV_TAKEOFF, CMD_NAV_WAYPOINT, MissionItem

__all__ = ["flown_path", "hazards_crossed", "hazards_near_line"]

# Navigation commands the vehicle flies to (their x/y are a destination).
_FLOWN_TO = frozenset({CMD_NAV_WAYPOINT, CMD_NAV_TAKEOFF, CMD_NAV_LAND, CMD_NAV_LOITER_UNLIM,
                       CMD_NAV_LOITER_TURNS, CMD_NAV_LOITER_TIME, 82})  # 82: SPLINE_WAYPOINT


def flown_path(start_lon_lat: tuple[float, float],
               mission: Sequence[MissionItem]) -> list[tuple[float, float]]:
    """(lon, lat) points the aircraft flies through: ``start``, then each navigation
    item with a position (a takeoff at 0, 0 climbs in place)."""
    points = [start_lon_lat]
    for item in mission:
        if item.command in _FLOWN_TO and (item.x, item.y) != (0, 0):
            points.append((item.lon, item.lat))
    return points


def hazards_crossed(start_lon_lat: tuple[float, float], mission: Sequence[MissionItem],
                    zones: Mapping[str, Any]) -> list[str]:
    """Ids of the hazard zones (``is_hazard``; ``polygon`` in lon/lat) the flown path
    touches, sorted. A start inside a zone counts only if the path goes deeper than
    leaving it: the aircraft is already there, and the planner's first leg leaves."""
    points = flown_path(start_lon_lat, mission)
    if len(points) < 2:
        return []
    crossed = []
    start = shapely.Point(start_lon_lat)
    for zid in sorted(zones):
        zone = zones[zid]
        if not zone.is_hazard:
            continue
        polygon = zone.polygon
        legs = points
        if polygon.covers(start):
            # Already inside: the first leg is the way out; judge the rest of the path.
            legs = points[1:]
            if len(legs) < 2:
                if polygon.covers(shapely.Point(legs[0])):
                    crossed.append(zid)
                continue
        if polygon.intersects(shapely.LineString(legs)):
            crossed.append(zid)
    return crossed


def hazards_near_line(start_lon_lat: tuple[float, float], end_lon_lat: tuple[float, float],
                      zones: Mapping[str, Any], margin_m: float) -> list[str]:
    """Ids of the hazard zones (``is_hazard``; ``polygon`` in lon/lat) that the straight
    line from ``start`` to ``end`` passes within ``margin_m`` metres of, sorted: RTL's
    line home must keep the margin every planned path keeps (position error, the turn
    into RTL, a telemetry position a moment old)."""
    frame = LocalFrame(start_lon_lat[1], start_lon_lat[0])
    line = shapely.LineString([(0.0, 0.0), frame.point_to_enu(*end_lon_lat)])
    near = []
    for zid in sorted(zones):
        zone = zones[zid]
        if zone.is_hazard:
            outline: Any = frame.geometry_to_enu(zone.polygon)
            if outline.distance(line) < margin_m:
                near.append(zid)
    return near
