"""The mission planner: a pure function from (map, drone, vehicle state) to a plan.

``plan(view, drone_id, vehicle)`` reads nothing but its arguments (no clock, no
randomness, no I/O) and returns a :class:`~swarm.planner.model.PlanResult` whose
mission is already in MAVLink terms (mavlink_bridge.plan), so every drone that plans
from the same map version and the same vehicle state gets the same bytes to upload.

Mission shape (item 0, home, is prepended by the uploader):

1. MAV_CMD_NAV_TAKEOFF to the survey altitude at the vehicle's position;
2. for each survivor assigned to this drone, urgent first: transit legs around the
   zones, then MAV_CMD_NAV_LOITER_TIME over the survivor (or over the nearest safe
   point when the survivor is inside a buffered zone). Survivors come before the
   survey: a report waiting for confirmation is worth more than area coverage;
3. the lawnmower survey of the drone's sector, clipped to stay out of the zones, with
   the gaps between survey segments routed around them;
4. a transit leg back to home, then MAV_CMD_NAV_RETURN_TO_LAUNCH. The route home is
   flown as waypoints because ArduPilot's RTL flies a straight line, which could cross
   a zone; by the time RTL starts the vehicle is already over home.

Every leg keeps clear of every keep-out polygon (fence grown by the fence clearance),
which contains the zone grown by the safety margin. When home cannot be reached
without crossing one, the plan is NO_SAFE_PATH and the mission holds
(MAV_CMD_NAV_LOITER_UNLIM where the vehicle is, or nothing if it is on the ground);
unreachable survivors are skipped with a reason and also make the plan NO_SAFE_PATH.
The exclusion fences and rally points go with every plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import shapely

from mavlink_bridge.plan import (
    CMD_NAV_LAND,
    CMD_NAV_LOITER_TIME,
    CMD_NAV_LOITER_UNLIM,
    CMD_NAV_RALLY_POINT,
    CMD_NAV_RETURN_TO_LAUNCH,
    CMD_NAV_TAKEOFF,
    CMD_NAV_WAYPOINT,
    FRAME_GLOBAL_RELATIVE_ALT,
    FRAME_MISSION,
    MissionItem,
    MissionPlan,
)

from .assignment import WHOLE_AREA_IN_ZONES, Assignment, assign, map_frame
from .committed import AWAITING, share_of
from ..geo import LocalFrame
from .model import PlannerConfig, PlannerMap, PlanResult, PlanStatus, VehicleState
from .obstacles import Obstacles, build_obstacles
from .routing import path_length, route
from .survey import lawnmower

__all__ = ["PlanContext", "hold_instead", "plan", "prepare"]

Point = tuple[float, float]
_SAME_POINT_M = 0.5
# Items kept free for the route home when deciding whether another task still fits.
_HOME_ROUTE_RESERVE = 32


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What every drone's plan at one map version shares: frame, assignment, obstacles.

    Built by :func:`prepare`; pass it to :func:`plan` to plan several drones from one
    map version without redoing the shared geometry. Same content as if ``plan``
    built it itself.
    """

    map_version: int
    config: PlannerConfig
    frame: LocalFrame | None
    assignment: Assignment
    obstacles: Obstacles | None


def prepare(view: PlannerMap, config: PlannerConfig | None = None) -> PlanContext:
    """The per-version work shared by every drone's plan (see :class:`PlanContext`)."""
    config = config or PlannerConfig()
    frame = map_frame(view)
    obstacles = build_obstacles(view, frame, config) if frame is not None else None
    # A picture of the replicated map plans from the committed assignment only (the
    # leader's set_assignment), never from a split computed here (issue 13).
    assignment = share_of(view, frame) if view.committed else assign(view, config, obstacles)
    return PlanContext(view.version, config, frame, assignment, obstacles)


def hold_instead(result: PlanResult, vehicle: VehicleState, config: PlannerConfig,
                 reason: str) -> PlanResult:
    """``result`` with its mission replaced by the hold a NO_SAFE_PATH plan flies
    (MAV_CMD_NAV_LOITER_UNLIM where the vehicle is, or no mission on the ground), for a
    plan that must not be flown (the flight side's fire check refused it: docs/flight.md).
    Its fences and rally points stay: they are the map's, not the refused path's."""
    reasons = (*result.reasons, reason)
    hold = _hold_where_it_is(vehicle, config)
    status = PlanStatus.NO_SAFE_PATH
    plan = replace(result.plan, mission=tuple(hold),
                   note=_note(result.drone_id, result.map_version, status, reasons),
                   resume_index=_resume_index(hold, vehicle.relative_alt_m > config.airborne_alt_m))
    return replace(result, status=status, plan=plan, reasons=reasons, survivors=(),
                   path_length_m=0.0)


def _hold_where_it_is(vehicle: VehicleState, config: PlannerConfig) -> list[MissionItem]:
    """The hold: loiter where the vehicle is when airborne, nothing on the ground."""
    if vehicle.relative_alt_m <= config.airborne_alt_m:
        return []
    # Hold exactly where the vehicle is (its own degE7 position, not a round trip
    # through the frame).
    return [MissionItem.at(CMD_NAV_LOITER_UNLIM, vehicle.position.lat, vehicle.position.lon,
                           vehicle.relative_alt_m, frame=FRAME_GLOBAL_RELATIVE_ALT)]


def _note(drone_id: str, version: int, status: PlanStatus, reasons: Sequence[str]) -> str:
    return f"{drone_id}@{version}: {status.value}" + (f" ({'; '.join(reasons)})" if reasons else "")


def _resume_index(mission: Sequence[MissionItem], airborne: bool) -> int | None:
    """Where a plan replacing a mission in flight continues (MissionPlan.resume_index):
    after its first item, the takeoff placed where the vehicle is now (which a flying
    copter must not climb in place for). A lone item (a hold) is flown itself."""
    return (1 if len(mission) > 1 else 0) if airborne and mission else None


@dataclass
class _Leg:
    """A mission under construction, in the local frame."""

    points: list[tuple[Point, str, str]]  # (xy, kind "wp"/"loiter", label)
    length: float = 0.0

    def add_path(self, path: list[Point], last_kind: str = "wp", label: str = "") -> None:
        for i, p in enumerate(path[1:], start=1):
            kind = last_kind if i == len(path) - 1 else "wp"
            prev = self.points[-1][0]
            self.length += math.dist(prev, p)
            if math.dist(prev, p) < _SAME_POINT_M and kind == "wp":
                continue
            self.points.append((p, kind, label))

    @property
    def here(self) -> Point:
        return self.points[-1][0]


def plan(view: PlannerMap, drone_id: str, vehicle: VehicleState,
         config: PlannerConfig | None = None, context: PlanContext | None = None) -> PlanResult:
    """Plan ``drone_id``'s mission from ``view`` (see the module docstring).

    ``context`` (from :func:`prepare` on this same view and config) skips the shared
    per-version geometry; the result is identical with or without it.
    """
    if not isinstance(drone_id, str):
        raise TypeError(f"drone_id must be a str, got {type(drone_id).__name__}")
    if not isinstance(vehicle, VehicleState):
        raise TypeError("vehicle must be a VehicleState")
    config = config or (context.config if context is not None else PlannerConfig())
    if context is None:
        context = prepare(view, config)
    elif context.map_version != view.version or context.config != config:
        raise ValueError(f"plan context is for map version {context.map_version} and its own "
                         f"config; this is map version {view.version}")
    frame = context.frame or LocalFrame(vehicle.home.lat, vehicle.home.lon)
    obstacles = context.obstacles
    if obstacles is None:
        obstacles = build_obstacles(view, frame, config)
    reasons: list[str] = []
    start = frame.point_to_enu(vehicle.position.lon, vehicle.position.lat)
    home = frame.point_to_enu(vehicle.home.lon, vehicle.home.lat)
    # A fence around the vehicle would put it in breach the moment it is uploaded and
    # hand control to the autopilot's fence action (ArduPilot FENCE_ACTION, typically
    # RTL: a straight line that may cross fire). Leave such fences out of this plan
    # (PlanResult.fences_left_out); the flight side re-plans once the vehicle is out.
    around = obstacles.fences_containing(start)
    if around:
        reasons.append("fence(s) of " + ", ".join(obstacles.zone_ids[i] for i in around)
                       + " left out: the vehicle is inside them")
    rally = _rally_items(view, vehicle, obstacles, frame, config)

    airborne = vehicle.relative_alt_m > config.airborne_alt_m

    def result(status: PlanStatus, mission: list[MissionItem], survivors=(), length=0.0):
        fence, fence_enable = _fence_items(obstacles, around, [p for p, _, _ in leg.points],
                                           config, reasons)
        return PlanResult(drone_id, view.version, status,
                          MissionPlan(tuple(mission), fence, tuple(rally), fence_enable,
                                      _note(drone_id, view.version, status, reasons),
                                      resume_index=_resume_index(mission, airborne)),
                          tuple(reasons), tuple(survivors), length,
                          tuple(item for i in around for item in obstacles.fence_items[i]))

    drone = view.drone(drone_id)
    leg = _Leg([(start, "start", "")])
    if drone is not None and drone.alive and drone.busy:
        # Another task owns the vehicle (an operator, a confirmation flight): no
        # mission to upload over it, and no return either; the fences and rally
        # points are current and go up as always.
        reasons.append(f"drone {drone_id} is busy (task {drone.task}): its mission is left "
                       "as it is")
        return result(PlanStatus.BUSY, [])

    inside = obstacles.zones_containing(start)
    trapped = False
    if inside:
        exit_point = obstacles.nearest_free_point(start)
        # Leaving by the shortest way is right inside a margin or inside the fire itself;
        # it is not when the way out crosses fire the vehicle is not already in (a drone
        # in the unburned hole of a ring of fire): then it holds.
        if obstacles.in_fire(start) or not obstacles.crosses_fire(start, exit_point):
            reasons.append(f"vehicle is inside the buffered zone(s) {', '.join(inside)}: first "
                           f"leg leaves by the shortest way ({math.dist(start, exit_point):.0f} m)")
            leg.add_path([start, exit_point])
        else:
            reasons.append(f"vehicle is enclosed by the zone(s) {', '.join(inside)}: every way "
                           "out crosses fire")
            trapped = True

    # A home inside a buffered zone is no place to land: the mission ends by landing
    # at the nearest safe point instead (outside every keep-out, so outside every
    # fence), which is also the first rally point, so an autopilot RTL (battery or
    # link failsafe) goes there rather than into the fire (docs/planner.md).
    home_target = home
    home_inside = obstacles.zones_containing(home)
    if home_inside:
        home_target = obstacles.nearest_free_point(home)
        reasons.append(f"home is inside the buffered zone(s) {', '.join(home_inside)}: "
                       f"landing at the nearest safe point, {math.dist(home, home_target):.0f} m "
                       "from home, which is also the first rally point")
        land_lon, land_lat = frame.point_to_geodetic(*home_target)
        rally.insert(0, MissionItem.at(CMD_NAV_RALLY_POINT, land_lat, land_lon, config.rally_alt_m,
                                       frame=FRAME_GLOBAL_RELATIVE_ALT))
        del rally[config.max_rally_points:]

    home_path = None if trapped else route(obstacles, leg.here, home_target,
                                           config.max_route_expansions)
    anchor = len(leg.points) - 1  # where home_path starts
    if home_path is None:
        reasons.append("no safe path home: every way out crosses a buffered zone; holding")
        return result(PlanStatus.NO_SAFE_PATH, _hold_where_it_is(vehicle, config))

    # What this drone should do, from the shared assignment.
    survivors: tuple[str, ...] = ()
    sector = None
    if drone is None:
        reasons.append(f"drone {drone_id} is not in the map")
    elif not drone.alive:
        reasons.append(f"drone {drone_id} is marked dead in the map")
    elif drone.recalled:
        reasons.append("recalled: going home (its work goes to the others until resumed)")
    elif drone.task == "return":
        reasons.append("task is return: going home")
    else:
        survivors = context.assignment.survivors.get(drone_id, ())
        sector = context.assignment.sectors_enu.get(drone_id)
        if not survivors and sector is None:
            why = context.assignment.unserved.get("search_area") \
                or context.assignment.drone_reasons.get(drone_id) \
                or "no sector (no search area) and no survivor to confirm"
            reasons.append(why)
        elif drone_id in context.assignment.drone_reasons:
            reasons.append(context.assignment.drone_reasons[drone_id])  # e.g. stale share
    area_in_zones = context.assignment.unserved.get("search_area") == WHOLE_AREA_IN_ZONES
    budget = math.inf
    if vehicle.battery_pct is not None:
        usable = max(0.0, vehicle.battery_pct - config.battery_reserve_pct) / 100.0
        budget = usable * config.endurance_s * config.cruise_speed_mps
        if (survivors or sector is not None) and budget <= path_length(home_path):
            reasons.append(f"battery {vehicle.battery_pct:.0f}% leaves no margin above the "
                           f"{config.battery_reserve_pct:.0f}% reserve: going home")
            survivors, sector = (), None
    has_tasks = bool(survivors) or sector is not None
    unsafe = bool(home_inside)
    visited: list[str] = []
    exhausted = False

    def may_fit(*points: Point) -> bool:
        # Straight lines are a lower bound on any route: skip the search when even
        # they exceed the budget.
        pts = [leg.here, *points, home_target]
        return leg.length + sum(math.dist(a, b) for a, b in zip(pts, pts[1:])) <= budget

    def fits(path: list[Point]) -> bool:
        extra = path_length(path)
        items = len(leg.points) + len(path) + _HOME_ROUTE_RESERVE
        return (leg.length + extra + math.dist(path[-1], home_target) <= budget
                and items <= config.max_mission_items)

    survivor_by_id = {s.id: s for s in view.survivors}
    for sid in survivors:
        s = survivor_by_id[sid]
        seen_at = frame.point_to_enu(s.position.lon, s.position.lat)
        target = seen_at
        over = obstacles.zones_containing(seen_at)
        if over:
            target = obstacles.nearest_free_point(seen_at)
            reasons.append(f"survivor {sid} is inside the buffered zone(s) {', '.join(over)}: "
                           f"loitering at the nearest safe point, "
                           f"{math.dist(target, seen_at):.0f} m away")
        if not may_fit(target):
            reasons.append(f"survivor {sid} and later tasks do not fit the battery budget")
            exhausted = True
            break
        path = route(obstacles, leg.here, target, config.max_route_expansions)
        if path is None:
            reasons.append(f"no safe path to survivor {sid}")
            unsafe = True
            continue
        if not fits(path):
            reasons.append(f"survivor {sid} and later tasks do not fit the battery or "
                           f"mission budget")
            exhausted = True
            break
        leg.add_path(path, "loiter", sid)
        visited.append(sid)

    if sector is not None and not exhausted:
        segments = lawnmower(sector, obstacles, config.line_spacing_m, leg.here)
        skipped = flown = 0
        for a, b in segments:
            if not may_fit(a, b):
                reasons.append(f"survey truncated after {flown} of {len(segments)} segments "
                               f"(battery budget)")
                break
            path = route(obstacles, leg.here, a, config.max_route_expansions)
            if path is None or not obstacles.segment_clear(a, b):
                skipped += 1
                continue
            path = path + [b]
            if not fits(path):
                reasons.append(f"survey truncated after {flown} of {len(segments)} segments "
                               f"(battery or mission budget)")
                break
            leg.add_path(path)
            flown += 1
        if skipped:
            reasons.append(f"{skipped} of {len(segments)} survey segments are enclosed by "
                           f"zones and were skipped")
        if segments and skipped == len(segments):
            reasons.append("the whole sector is unreachable without crossing a zone")
            unsafe = True
        if not segments:
            reasons.append("the sector lies entirely inside buffered zones")

    back = route(obstacles, leg.here, home_target, config.max_route_expansions)
    if back is None:  # cannot happen when home_path exists (same free component), but
        # the expansion budget is finite: fall back to retracing the flown path.
        reasons.append("route home not found within the search budget; retracing")
        back = [p for p, _, _ in reversed(leg.points[anchor:])] + home_path[1:]
    leg.add_path(back)

    awaiting = context.assignment.drone_reasons.get(drone_id) == AWAITING and not has_tasks
    idle_status = (PlanStatus.SEARCH_AREA_IN_ZONES if area_in_zones
                   else PlanStatus.AWAITING_ASSIGNMENT if awaiting else PlanStatus.NOTHING_TO_DO)
    if not has_tasks and not airborne and not inside:
        # On the ground with nothing to fly: stay there (no takeoff just to land).
        return result(idle_status, [], (), 0.0)

    alt = config.survey_alt_m
    # One pymap3d call for every waypoint of the mission.
    xy = np.array([p for p, _, _ in leg.points], dtype=float)
    lon, lat = frame.to_geodetic(xy[:, 0], xy[:, 1])
    mission: list[MissionItem] = []
    for k, (_, kind, _label) in enumerate(leg.points):
        param1 = 0.0
        if k == 0:
            # Where the vehicle is now: its own degE7 position (no round trip through
            # the frame) and, in flight, its own altitude (never from home).
            mission.append(MissionItem.at(
                CMD_NAV_TAKEOFF, vehicle.position.lat, vehicle.position.lon,
                vehicle.relative_alt_m if airborne else alt, frame=FRAME_GLOBAL_RELATIVE_ALT))
            continue
        if kind == "loiter":
            # MAV_CMD_NAV_LOITER_TIME: param1 is the loiter time in seconds.
            command, param1 = CMD_NAV_LOITER_TIME, config.loiter_time_s
        else:
            command = CMD_NAV_WAYPOINT
        mission.append(MissionItem.at(command, float(lat[k]), float(lon[k]), alt,
                                      frame=FRAME_GLOBAL_RELATIVE_ALT, param1=param1))
    if home_inside:
        # MAV_CMD_NAV_LAND at the safe landing point (param4 yaw NaN: keep heading);
        # never an indefinite loiter that a failsafe would end by flying home.
        mission.append(MissionItem.at(CMD_NAV_LAND, float(lat[-1]), float(lon[-1]), 0.0,
                                      frame=FRAME_GLOBAL_RELATIVE_ALT, param4=math.nan))
    else:
        mission.append(MissionItem(command=CMD_NAV_RETURN_TO_LAUNCH, frame=FRAME_MISSION))
    if leg.length > budget:
        reasons.append(f"path {leg.length:.0f} m exceeds the battery budget {budget:.0f} m")
    if len(mission) > config.max_mission_items:
        reasons.append(f"{len(mission)} mission items exceed max_mission_items "
                       f"{config.max_mission_items} (the route home alone is that long)")
    if unsafe:
        status = PlanStatus.NO_SAFE_PATH
    elif area_in_zones and not visited:
        status = PlanStatus.SEARCH_AREA_IN_ZONES
    elif has_tasks:
        status = PlanStatus.OK
    else:
        status = idle_status
    return result(status, mission, visited, leg.length)


def _fence_items(obstacles: Obstacles, skip: list[int], path: list[Point],
                 config: PlannerConfig, reasons: list[str]
                 ) -> tuple[tuple[MissionItem, ...], bool | None]:
    """The exclusion fences to upload, at most ``max_fence_items`` vertices in all
    (autopilot fence storage is small). When they do not all fit, the zones nearest
    the planned path win (ties by zone id); the path itself avoids every zone
    regardless, the fences being the autopilot's backstop."""
    wanted = [i for i in range(len(obstacles.fence_items)) if i not in skip]
    total = sum(len(obstacles.fence_items[i]) for i in wanted)
    if total > config.max_fence_items:
        track = shapely.LineString(path) if len(path) > 1 else shapely.Point(path[0])
        dist = shapely.distance(np.array([obstacles.fences[i] for i in wanted], dtype=object),
                                track)
        chosen, used = set(), 0
        for d, i in sorted(zip(dist.tolist(), wanted)):
            n = len(obstacles.fence_items[i])
            if used + n <= config.max_fence_items:
                chosen.add(i)
                used += n
        reasons.append(f"{len(wanted) - len(chosen)} zone fence(s) farthest from the path left "
                       f"out: fence storage holds {config.max_fence_items} vertices")
        wanted = [i for i in wanted if i in chosen]
    items = tuple(item for i in wanted for item in obstacles.fence_items[i])
    return items, (True if items else None)


def _rally_items(view: PlannerMap, vehicle: VehicleState, obstacles: Obstacles,
                 frame: LocalFrame, config: PlannerConfig) -> list[MissionItem]:
    """Home, then the far ends of safe evacuation routes (route id order), all outside
    every keep-out, at most ``max_rally_points`` (ArduPilot's RALLY_TOTAL is small)."""
    candidates = [(vehicle.home.lat, vehicle.home.lon)]
    candidates += [(r.path[-1].lat, r.path[-1].lon) for r in view.routes if not r.unsafe]
    items: list[MissionItem] = []
    seen: set[tuple[int, int]] = set()
    for lat, lon in candidates:
        if len(items) >= config.max_rally_points:
            break
        if obstacles.point_blocked(frame.point_to_enu(lon, lat)):
            continue
        item = MissionItem.at(CMD_NAV_RALLY_POINT, lat, lon, config.rally_alt_m,
                              frame=FRAME_GLOBAL_RELATIVE_ALT)
        if (item.x, item.y) not in seen:
            seen.add((item.x, item.y))
            items.append(item)
    return items
