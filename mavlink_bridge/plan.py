"""A mission plan in MAVLink terms: what the planner produces and the bridge uploads.

The bridge knows nothing of the map; the planner knows nothing of links. This module
is the seam between them: plain, immutable records whose fields are exactly those of
MISSION_ITEM_INT (MAVLink common.xml), so an item can be sent without translation.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field


class MissionType(enum.IntEnum):
    """MAV_MISSION_TYPE: which of the vehicle's three lists an item belongs to."""

    MISSION = 0
    FENCE = 1
    RALLY = 2


# MAV_FRAME values used by plans (common.xml).
FRAME_GLOBAL = 0  # MAV_FRAME_GLOBAL: altitude above mean sea level
FRAME_GLOBAL_RELATIVE_ALT = 3  # altitude relative to home
FRAME_GLOBAL_INT = 5
FRAME_GLOBAL_RELATIVE_ALT_INT = 6
FRAME_MISSION = 2  # MAV_FRAME_MISSION: item carries no position
FRAME_GLOBAL_TERRAIN_ALT = 10  # altitude above terrain
FRAME_GLOBAL_TERRAIN_ALT_INT = 11
# Frames whose x/y are latitude/longitude (float and _INT variants).
GLOBAL_FRAMES = frozenset({FRAME_GLOBAL, FRAME_GLOBAL_INT, FRAME_GLOBAL_RELATIVE_ALT,
                           FRAME_GLOBAL_RELATIVE_ALT_INT, FRAME_GLOBAL_TERRAIN_ALT,
                           FRAME_GLOBAL_TERRAIN_ALT_INT})

# MAV_CMD values used by plans (common.xml).
CMD_NAV_WAYPOINT = 16
CMD_NAV_LOITER_UNLIM = 17
CMD_NAV_LOITER_TURNS = 18
CMD_NAV_LOITER_TIME = 19
CMD_NAV_RETURN_TO_LAUNCH = 20
CMD_NAV_LAND = 21
CMD_NAV_TAKEOFF = 22
CMD_DO_CHANGE_SPEED = 178
CMD_DO_SET_MISSION_CURRENT = 224
CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION = 5001
CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION = 5002
CMD_NAV_FENCE_CIRCLE_INCLUSION = 5003
CMD_NAV_FENCE_CIRCLE_EXCLUSION = 5004
CMD_NAV_RALLY_POINT = 5100

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True, slots=True)
class MissionItem:
    """One MISSION_ITEM_INT, minus seq/target/mission_type (the uploader sets those).

    ``x``/``y`` are latitude/longitude in degrees * 1e7 (int32) for global frames;
    ``z`` is altitude in metres in the item's frame.
    """

    command: int
    frame: int = FRAME_GLOBAL_RELATIVE_ALT_INT
    param1: float = 0.0
    param2: float = 0.0
    param3: float = 0.0
    param4: float = 0.0
    x: int = 0
    y: int = 0
    z: float = 0.0
    autocontinue: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.command <= 65535:
            raise ValueError(f"command {self.command} is not a uint16 MAV_CMD")
        if not 0 <= self.frame <= 255:
            raise ValueError(f"frame {self.frame} is not a uint8 MAV_FRAME")
        for name in ("x", "y"):
            value = getattr(self, name)
            if not isinstance(value, int) or not _INT32_MIN <= value <= _INT32_MAX:
                raise ValueError(f"{name}={value!r} must be an int32 (degrees * 1e7)")
        if self.frame in GLOBAL_FRAMES:
            if abs(self.x) > 90 * 10**7 or abs(self.y) > 180 * 10**7:
                raise ValueError(f"position ({self.x}, {self.y}) degE7 is off the globe")
        for name in ("param1", "param2", "param3", "param4", "z"):
            value = getattr(self, name)
            if isinstance(value, float) and math.isinf(value):
                raise ValueError(f"{name} must be finite or NaN, not {value}")
        if self.autocontinue not in (0, 1):
            raise ValueError("autocontinue must be 0 or 1")

    @classmethod
    def unchecked(cls, command: int, frame: int, param1: float = 0.0, param2: float = 0.0,
                  param3: float = 0.0, param4: float = 0.0, x: int = 0, y: int = 0, z: float = 0.0,
                  autocontinue: int = 1) -> "MissionItem":
        """An item exactly as it arrived over the wire, not validated: for the receiving
        side of the mission protocol (a vehicle, the simulator's), which must hold an item
        before it can judge it and answer with the matching MAV_MISSION_RESULT (an item
        off the globe is INVALID_PARAM5_X there, not an exception here)."""
        item = object.__new__(cls)
        for name, value in (("command", command), ("frame", frame), ("param1", param1), ("param2", param2),
                            ("param3", param3), ("param4", param4), ("x", x), ("y", y), ("z", z),
                            ("autocontinue", autocontinue)):
            object.__setattr__(item, name, value)
        return item

    @property
    def lat(self) -> float:
        return self.x / 1e7

    @property
    def lon(self) -> float:
        return self.y / 1e7

    @classmethod
    def at(cls, command: int, lat: float, lon: float, alt: float,
           frame: int = FRAME_GLOBAL_RELATIVE_ALT_INT, param1: float = 0.0,
           param2: float = 0.0, param3: float = 0.0, param4: float = 0.0) -> "MissionItem":
        """An item at a position given in degrees (rounded to degE7)."""
        return cls(command=command, frame=frame, param1=param1, param2=param2,
                   param3=param3, param4=param4, x=round(lat * 1e7),
                   y=round(lon * 1e7), z=float(alt))


@dataclass(frozen=True, slots=True)
class MissionPlan:
    """What one vehicle should hold: its mission, fence and rally lists.

    ``mission`` excludes ArduPilot's item 0 (home); the uploader prepends it.
    ``fence_enable`` asks the bridge to set FENCE_ENABLE/FENCE_TYPE when not None.
    ``resume_index``: when this plan replaces a mission the vehicle is flying (armed,
    AUTO), continue at ``mission[resume_index]`` (the planner knows which point is
    next; the bridge does not guess from geometry); armed in another mode, AUTO will
    start there. None: the bridge's conservative rule
    (:func:`mavlink_bridge.apply.resume_seq`), in AUTO only. Ignored on the ground.
    """

    mission: tuple[MissionItem, ...] = ()
    fence: tuple[MissionItem, ...] = ()
    rally: tuple[MissionItem, ...] = ()
    fence_enable: bool | None = None
    note: str = field(default="", compare=False)
    resume_index: int | None = None

    def __post_init__(self) -> None:
        if self.resume_index is not None:
            if isinstance(self.resume_index, bool) or not isinstance(self.resume_index, int) \
                    or not 0 <= self.resume_index < len(self.mission):
                raise ValueError(f"resume_index {self.resume_index!r} is not an index into the "
                                 f"mission's {len(self.mission)} items")

    def items(self, mission_type: MissionType) -> tuple[MissionItem, ...]:
        return {MissionType.MISSION: self.mission, MissionType.FENCE: self.fence,
                MissionType.RALLY: self.rally}[mission_type]


_FENCE_VERTEX_COMMANDS = (CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION, CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION)
_FENCE_CIRCLE_COMMANDS = (CMD_NAV_FENCE_CIRCLE_INCLUSION, CMD_NAV_FENCE_CIRCLE_EXCLUSION)


def fence_polygon(vertices: "tuple[tuple[float, float], ...] | list[tuple[float, float]]",
                  exclusion: bool = True) -> tuple[MissionItem, ...]:
    """One fence polygon as MAVLink fence items: MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION
    (or _INCLUSION) per vertex, each with param1 = the vertex count (common.xml).

    ``vertices`` are (lat, lon) degrees, not repeating the first vertex at the end.
    """
    pts = list(vertices)
    if len(pts) >= 2 and pts[0] == pts[-1]:
        pts = pts[:-1]
    if len(pts) < 3:
        raise ValueError(f"a fence polygon needs at least 3 distinct vertices, got {len(pts)}")
    if len(pts) > 255:
        raise ValueError("a fence polygon has at most 255 vertices (ArduPilot)")
    cmd = CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION if exclusion else CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION
    return tuple(MissionItem.at(cmd, lat, lon, 0.0, frame=FRAME_GLOBAL_INT, param1=float(len(pts)))
                 for lat, lon in pts)


def validate_fence(items: "tuple[MissionItem, ...]") -> None:
    """Raise ValueError unless ``items`` is a sequence of whole polygons and circles.

    Each polygon is ``param1`` consecutive vertices of one kind, each carrying the same
    ``param1`` (ArduPilot rejects a fence whose vertex counts do not add up); circles
    need a positive radius in param1.
    """
    i = 0
    while i < len(items):
        item = items[i]
        if item.command in _FENCE_CIRCLE_COMMANDS:
            if not (item.param1 > 0 and math.isfinite(item.param1)):
                raise ValueError(f"fence item {i}: circle radius {item.param1} must be > 0")
            i += 1
            continue
        if item.command not in _FENCE_VERTEX_COMMANDS:
            raise ValueError(f"fence item {i}: command {item.command} is not a fence command")
        count = item.param1
        if not (math.isfinite(count) and count == int(count) and count >= 3):
            raise ValueError(f"fence item {i}: vertex count {count} must be an integer >= 3")
        group = items[i:i + int(count)]
        if len(group) != int(count) or any(g.command != item.command or g.param1 != count
                                           for g in group):
            raise ValueError(f"fence items {i}..: polygon of {int(count)} vertices is incomplete "
                             f"or mixes kinds/counts")
        i += int(count)
