"""The planner's inputs and outputs: a read-only picture of the map, the vehicle's
state, the configuration, and the plan result.

The planner core depends on these small frozen types only, not on the replicated map
itself; :mod:`swarm.planner.from_map` builds a :class:`PlannerMap` from an
``EvacuationMap``. Geographic shapes follow the GeoJSON/shapely convention
(x = longitude, y = latitude, degrees WGS84).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import shapely

from mavlink_bridge.plan import MissionItem, MissionPlan

from ..evacmap.commands import ID_PATTERN, SetAssignment, SurvivorStatus

__all__ = [
    "DroneInfo",
    "GeoPoint",
    "PlanResult",
    "PlanStatus",
    "PlannerConfig",
    "PlannerMap",
    "RouteInfo",
    "SurvivorInfo",
    "VehicleState",
    "ZoneInfo",
]

# The map's own id rule and survivor statuses: records come from the map, or stand in for it.
_SURVIVOR_STATUSES = frozenset(status.value for status in SurvivorStatus)


def _check_id(value: object, what: str) -> None:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ValueError(f"{what} id {value!r} is not a well-formed identifier")


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A WGS84 position in degrees; ``alt`` in metres, meaning given by the owner field."""

    lat: float
    lon: float
    alt: float = 0.0

    def __post_init__(self) -> None:
        lat = _finite(self.lat, "latitude")
        lon = _finite(self.lon, "longitude")
        _finite(self.alt, "altitude")
        if not -90.0 <= lat <= 90.0:
            raise ValueError(f"latitude {lat} is outside [-90, 90]")
        if not -180.0 <= lon <= 180.0:
            raise ValueError(f"longitude {lon} is outside [-180, 180]")


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    """A fire zone. Only hazards (burning or burned) become obstacles and fences."""

    id: str
    polygon: shapely.Polygon = field(compare=False)
    hazard: bool = True

    def __post_init__(self) -> None:
        _check_id(self.id, "zone")
        if not isinstance(self.polygon, shapely.Polygon) or self.polygon.is_empty \
                or not self.polygon.is_valid:
            raise ValueError(f"zone {self.id}: polygon must be a valid, non-empty shapely Polygon")


@dataclass(frozen=True, slots=True)
class SurvivorInfo:
    """A survivor sighting; ``status`` is reported / confirmed / rescued."""

    id: str
    position: GeoPoint
    count: int = 1
    status: str = "reported"
    urgent: bool = False
    time_ms: int = 0

    def __post_init__(self) -> None:
        _check_id(self.id, "survivor")
        if not isinstance(self.position, GeoPoint):
            raise TypeError(f"survivor {self.id}: position must be a GeoPoint")
        if self.status not in _SURVIVOR_STATUSES:
            raise ValueError(f"survivor {self.id}: unknown status {self.status!r}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"survivor {self.id}: head count must be an int >= 0")

    @property
    def needs_confirmation(self) -> bool:
        return self.status == "reported"


@dataclass(frozen=True, slots=True)
class DroneInfo:
    """A swarm member as the map knows it; ``home.alt`` is metres above mean sea level."""

    id: str
    home: GeoPoint
    alive: bool = True
    busy: bool = False
    task: str = "search"
    #: Under a committed ``recall`` (the map's recall state): flying home, given no work.
    recalled: bool = False

    def __post_init__(self) -> None:
        _check_id(self.id, "drone")
        if not isinstance(self.home, GeoPoint):
            raise TypeError(f"drone {self.id}: home must be a GeoPoint")

    @property
    def free(self) -> bool:
        """Available for sectors and survivors (assignment rule 1): alive, not busy, not
        returning and not recalled (a returning or recalled drone only goes home, so
        work given to it would never be done: it goes to the others)."""
        return self.alive and not self.busy and self.task != "return" and not self.recalled


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """A ground evacuation route; the end of a safe one is a candidate rally point."""

    id: str
    path: tuple[GeoPoint, ...]
    unsafe: bool = False

    def __post_init__(self) -> None:
        _check_id(self.id, "route")
        if any(not isinstance(p, GeoPoint) for p in self.path):
            raise TypeError(f"route {self.id}: path must hold GeoPoints")
        if len(self.path) < 2:
            raise ValueError(f"route {self.id}: needs at least two points")


@dataclass(frozen=True, slots=True)
class PlannerMap:
    """The map as the planner reads it, at one applied log index (``version``).

    ``committed``: plan from the map's committed ``assignment`` (the leader's
    ``set_assignment``, None before the first) rather than computing one here. Every
    picture of the replicated map (:func:`~swarm.planner.from_map.planner_map`) is
    committed, so drones never depend on agreeing floating point; a map built by hand
    (tests, offline tools) leaves it False and the planner assigns locally.
    """

    version: int
    search_area: shapely.Polygon | None = field(default=None, compare=False)
    zones: tuple[ZoneInfo, ...] = ()
    survivors: tuple[SurvivorInfo, ...] = ()
    drones: tuple[DroneInfo, ...] = ()
    routes: tuple[RouteInfo, ...] = ()
    committed: bool = False
    assignment: SetAssignment | None = None
    assignment_epoch: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise ValueError(f"map version {self.version!r} must be an int >= 0")
        if self.search_area is not None and (
                not isinstance(self.search_area, shapely.Polygon) or self.search_area.is_empty
                or not self.search_area.is_valid):
            raise ValueError("search area must be a valid, non-empty shapely Polygon")
        # Sorted by id, once, here: every rule downstream iterates in this order, which
        # is what makes the result independent of how the caller built the tuples.
        kinds = {"zones": ZoneInfo, "survivors": SurvivorInfo, "drones": DroneInfo,
                 "routes": RouteInfo}
        for name, kind in kinds.items():
            if any(not isinstance(x, kind) for x in getattr(self, name)):
                raise TypeError(f"{name} must hold {kind.__name__} records")
            items = tuple(sorted(getattr(self, name), key=lambda x: x.id))
            ids = [x.id for x in items]
            if len(set(ids)) != len(ids):
                raise ValueError(f"duplicate ids in {name}: {ids}")
            object.__setattr__(self, name, items)

    def drone(self, drone_id: str) -> DroneInfo | None:
        for d in self.drones:
            if d.id == drone_id:
                return d
        return None


@dataclass(frozen=True, slots=True)
class VehicleState:
    """What the bridge reports: position, altitude above home, home (AMSL), battery."""

    position: GeoPoint
    relative_alt_m: float
    home: GeoPoint
    battery_pct: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.position, GeoPoint) or not isinstance(self.home, GeoPoint):
            raise TypeError("vehicle position and home must be GeoPoint")
        _finite(self.relative_alt_m, "relative altitude")
        if self.battery_pct is not None:
            pct = _finite(self.battery_pct, "battery percentage")
            if not 0.0 <= pct <= 100.0:
                raise ValueError(f"battery percentage {pct} is outside [0, 100]")


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    """Planner tunables. Distances in metres, speeds in m/s, times in seconds.

    ``safety_margin_m`` grows every hazard zone (the "buffered zone"); paths keep a
    further ``fence_clearance_m`` from the uploaded exclusion fence so position error
    does not trip the autopilot's fence. ``fence_simplify_tolerance_m`` is the first
    Douglas-Peucker tolerance tried when bounding a fence to ``fence_max_vertices``;
    ``max_fence_items`` bounds the vertices of all fences of one plan (the autopilot's
    fence storage), nearest zones first.
    """

    safety_margin_m: float = 50.0
    fence_clearance_m: float = 5.0
    fence_max_vertices: int = 16
    max_fence_items: int = 300
    fence_simplify_tolerance_m: float = 5.0
    buffer_quad_segs: int = 8
    line_spacing_m: float = 40.0
    survey_alt_m: float = 40.0
    rally_alt_m: float = 40.0
    max_rally_points: int = 10
    loiter_time_s: float = 30.0
    cruise_speed_mps: float = 10.0
    hover_speed_mps: float = 5.0
    endurance_s: float = 1500.0
    battery_reserve_pct: float = 25.0
    max_survivors_per_drone: int = 2
    max_mission_items: int = 600
    airborne_alt_m: float = 2.0
    max_route_expansions: int = 20_000

    def __post_init__(self) -> None:
        positive = ("safety_margin_m", "fence_clearance_m", "fence_simplify_tolerance_m",
                    "line_spacing_m", "survey_alt_m", "rally_alt_m", "cruise_speed_mps",
                    "hover_speed_mps", "endurance_s")
        for name in positive:
            if _finite(getattr(self, name), name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("loiter_time_s", "airborne_alt_m"):
            if _finite(getattr(self, name), name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 0.0 <= _finite(self.battery_reserve_pct, "battery_reserve_pct") < 100.0:
            raise ValueError("battery_reserve_pct must be within [0, 100)")
        ints = {"fence_max_vertices": 4, "max_fence_items": 4, "buffer_quad_segs": 1, "max_rally_points": 0,
                "max_survivors_per_drone": 1, "max_mission_items": 8,
                "max_route_expansions": 1}
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


class PlanStatus(enum.StrEnum):
    OK = "ok"
    NO_SAFE_PATH = "no_safe_path"  # something required is unreachable without crossing a zone
    NOTHING_TO_DO = "nothing_to_do"  # no sector and no survivor for this drone
    # The whole search area lies inside buffered zones: there is nothing to survey
    # (distinct from nothing_to_do, which is a quiet map, and from ok).
    SEARCH_AREA_IN_ZONES = "search_area_in_zones"
    # No assignment committed yet: the drone invents no work of its own.
    AWAITING_ASSIGNMENT = "awaiting_assignment"
    # The drone is busy (another task owns it): no mission to upload, fences and
    # rally points only.
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class PlanResult:
    """One drone's plan at one map version, and why it looks the way it does."""

    drone_id: str
    map_version: int
    status: PlanStatus
    plan: MissionPlan
    reasons: tuple[str, ...] = ()
    survivors: tuple[str, ...] = ()  # survivor ids this plan visits, in order
    path_length_m: float = 0.0
    #: The fences (polygon vertex items) left out because the vehicle is inside them:
    #: they belong in the plan again once it is out (swarm/flight re-plans then).
    fences_left_out: tuple[MissionItem, ...] = ()
