"""Typed, validated commands of the evacuation map, and their canonical JSON form.

Every change to the replicated map is one of the frozen dataclasses below. A command
is validated when it is constructed (so an invalid command cannot exist), and again
inside ``EvacuationMap.apply`` (which re-parses the committed bytes), so a drone never
proposes what the others would reject and a forged or corrupted entry changes nothing.

Canonical form (what :func:`encode_command` produces and every drone agrees on byte
for byte): UTF-8 JSON, keys sorted, no whitespace, ASCII only, and every float rounded
at construction to a fixed precision:

* longitude/latitude: 7 decimal places (1e-7 degree, about 1.1 cm; the same
  resolution as MAVLink's degE7 integers, so nothing is lost on upload);
* altitudes: 2 decimal places (centimetres);
* confidence: 3 decimal places.

Polygon rings are stored closed (first vertex repeated last) and counter-clockwise
(RFC 7946 section 3.1.6), so the same area always encodes to the same bytes however
the caller wound it. Time is a field of each command, integer **milliseconds since
the Unix epoch** (UTC), stamped by the proposer; apply never reads a clock.

See docs/map.md for every command's JSON form with an example.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, TypeAlias, TypeVar, get_args

import numpy as np

from .exact import IntPoint, e7, extent_nm, polygon_problem, ring_problem, twice_area

__all__ = [
    "ID_PATTERN",
    "MAX_COMMAND_BYTES",
    "MAX_EXTENT_M",
    "MAX_POLYGON_VERTICES",
    "MAX_ROUTE_POINTS",
    "Command",
    "CommandError",
    "DroneTask",
    "RemoveDrone",
    "RemoveRoute",
    "RemoveSurvivor",
    "RemoveZone",
    "Launch",
    "Recall",
    "ReportSurvivor",
    "SetAssignment",
    "Resume",
    "SetDroneTask",
    "SetRoute",
    "SetSearchArea",
    "SetZone",
    "SurvivorStatus",
    "UpdateSurvivor",
    "ZoneStatus",
    "COMMAND_TYPES",
    "SURVIVOR_TRANSITIONS",
    "canonical_json",
    "sector_polygon_problem",
    "encode_command",
    "load_json",
    "parse_command",
]

# Identifiers: short, printable, safe in MQTT topics, file names and log lines.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
MAX_POLYGON_VERTICES = 512  # distinct vertices of one ring
MAX_ROUTE_POINTS = 512
# Largest width or height of any polygon or route, in metres. Bounds the cost of
# geometry in apply and rules out rings that wrap around the antimeridian or a pole.
# Decided exactly on degE7 integers (swarm.evacmap.exact.extent_nm: an upper bound of
# the bounding box's ellipsoidal width and height), so every drone gives one verdict.
MAX_EXTENT_M = 100_000.0
_MAX_EXTENT_NM = 100_000 * 10**9
_HALF_TURN_E7 = 1_800_000_000  # 180 degrees
MAX_COMMAND_BYTES = 64 * 1024
# Deepest JSON nesting accepted in a command or snapshot (the deepest real one, a
# set_assignment's sector vertex, is 6 levels down; a snapshot's, 8).
MAX_JSON_DEPTH = 32
MAX_HEAD_COUNT = 10_000
# Altitudes (metres above mean sea level for a drone's home; metres above home for a
# route's points, MAV_FRAME_GLOBAL_RELATIVE_ALT): generous but finite.
MIN_ALT_M, MAX_ALT_M = -500.0, 10_000.0
MAX_TIME_MS = 2**53 - 1  # exact in a JSON number (IEEE 754 double)
MAX_PRIORITY = 9
MAX_SURVIVOR_IDS = 10_000  # survivors one drone may be given

_COORD_DIGITS = 7
_ALT_DIGITS = 2
_CONFIDENCE_DIGITS = 3


class CommandError(ValueError):
    """A command (or snapshot) is malformed or invalid; the message says what and where."""


class ZoneStatus(enum.StrEnum):
    """A fire zone's state. BURNING and BURNED zones are hazards; CLEARED ones are not."""

    BURNING = "burning"
    BURNED = "burned"
    CLEARED = "cleared"


class SurvivorStatus(enum.StrEnum):
    REPORTED = "reported"
    CONFIRMED = "confirmed"
    RESCUED = "rescued"


class DroneTask(enum.StrEnum):
    SEARCH = "search"
    CONFIRM = "confirm"
    TRANSIT = "transit"
    RETURN = "return"
    IDLE = "idle"


# Legal survivor status changes (h11-style table rather than branches). A status may
# stay the same (an update of position or head count); it never goes backwards, and a
# rescued survivor is final.
SURVIVOR_TRANSITIONS: Mapping[SurvivorStatus, frozenset[SurvivorStatus]] = {
    SurvivorStatus.REPORTED: frozenset(
        {SurvivorStatus.REPORTED, SurvivorStatus.CONFIRMED, SurvivorStatus.RESCUED}
    ),
    SurvivorStatus.CONFIRMED: frozenset({SurvivorStatus.CONFIRMED, SurvivorStatus.RESCUED}),
    SurvivorStatus.RESCUED: frozenset({SurvivorStatus.RESCUED}),
}

LonLat: TypeAlias = tuple[float, float]
LonLatAlt: TypeAlias = tuple[float, float, float]


# --------------------------------------------------------------------------- checks
# Each helper takes the value and a dotted "where" (e.g. "set_zone.polygon[3]") so the
# error names the field; each returns the normalised value.


def _fail(where: str, problem: str) -> CommandError:
    return CommandError(f"{where}: {problem}")


def _number(value: object, where: str) -> float:
    # bool is an int subclass; True is not a coordinate.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"expected a number, got {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:  # an int beyond a double's range (JSON allows any length)
        raise _fail(where, f"an integer of {int(value).bit_length()} bits is not a finite "
                    "double") from None
    if not math.isfinite(result):
        raise _fail(where, f"{value!r} is not a finite number")
    return result


def _rounded(value: float, digits: int) -> float:
    # "+ 0.0" turns -0.0 into 0.0 so both encode the same.
    return round(value, digits) + 0.0


def _lon_lat(value: object, where: str) -> LonLat:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _fail(where, "expected a [longitude, latitude] pair")
    lon = _number(value[0], f"{where}[0]")
    lat = _number(value[1], f"{where}[1]")
    if not -180.0 <= lon <= 180.0:
        raise _fail(where, f"longitude {lon!r} is outside [-180, 180]")
    if not -90.0 <= lat <= 90.0:
        raise _fail(where, f"latitude {lat!r} is outside [-90, 90]")
    return (_rounded(lon, _COORD_DIGITS), _rounded(lat, _COORD_DIGITS))


def _altitude(value: object, where: str) -> float:
    alt = _number(value, where)
    if not MIN_ALT_M <= alt <= MAX_ALT_M:
        raise _fail(where, f"altitude {alt!r} m is outside [{MIN_ALT_M:g}, {MAX_ALT_M:g}]")
    return _rounded(alt, _ALT_DIGITS)


def _lon_lat_alt(value: object, where: str) -> LonLatAlt:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise _fail(where, "expected a [longitude, latitude, altitude_m] triple")
    lon, lat = _lon_lat(value[:2], where)
    return (lon, lat, _altitude(value[2], f"{where}[2]"))


def _identifier(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"expected an id string, got {type(value).__name__}")
    if not ID_PATTERN.fullmatch(value):
        raise _fail(
            where,
            f"{value[:80]!r} is not a valid id (1-64 characters: letters, digits, "
            "'_', '.', ':', '-', starting with a letter or digit)",
        )
    return value


def _integer(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise _fail(where, f"{value} is outside [{low}, {high}]")
    return value


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"expected true or false, got {type(value).__name__}")
    return value


def _member(enum_type: type[enum.StrEnum], value: object, where: str) -> Any:
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str):
        try:
            return enum_type(value)
        except ValueError:
            pass
    allowed = ", ".join(member.value for member in enum_type)
    raise _fail(where, f"{value!r} is not one of: {allowed}")


def _longitude_problem(lons: list[int], closed: bool) -> str | None:
    """What is wrong with a shape's longitudes (degE7), said precisely, or None.

    Walking the vertices with each step taken the short way round (|step| <= 180
    degrees), a ring that goes round a pole winds 360 degrees of longitude; one that
    crosses the antimeridian without enclosing a pole has a step whose raw value is
    over 180 degrees (it wraps) but winds 0. Either is unsupported, and each gets its
    own message; a shape spanning over 180 degrees without wrapping is just too large.
    Integers: exact.
    """
    half, turn = _HALF_TURN_E7, 2 * _HALF_TURN_E7
    steps = list(zip(lons, lons[1:] + (lons[:1] if closed else [])))
    if closed:
        winding = sum((b - a + half) % turn - half for a, b in steps)
        if abs(winding) > half:
            return ("goes round a pole (its ring winds 360 degrees of longitude): "
                    "polygons enclosing a pole are not supported")
    if any(abs(b - a) > half for a, b in steps):
        return ("has an edge spanning over 180 degrees of longitude: it crosses the "
                "antimeridian (longitude +/-180), which is not supported (split the shape "
                "at 180 degrees)")
    span = max(lons) - min(lons)
    if span > half:
        return (f"spans {span // 10**6 / 10:.1f} degrees of longitude, far beyond the "
                f"{MAX_EXTENT_M:.0f} m limit")
    return None


def _check_extent(points: list[IntPoint], where: str, closed: bool) -> None:
    problem = _longitude_problem([p[0] for p in points], closed)
    if problem is not None:
        raise _fail(where, problem)
    width, height = extent_nm(points)
    if width > _MAX_EXTENT_NM or height > _MAX_EXTENT_NM:
        # Whole metres from integers (round half up): the message is committed too
        # (the session table keeps results), so it must be the same everywhere.
        raise _fail(
            where,
            f"extent {(width + 5 * 10**8) // 10**9} m x {(height + 5 * 10**8) // 10**9} m "
            f"exceeds the {MAX_EXTENT_M:.0f} m limit",
        )


def _e7_points(points: Iterable[tuple[float, ...]]) -> list[IntPoint]:
    return [(e7(p[0]), e7(p[1])) for p in points]


def _ring(value: object, where: str) -> tuple[LonLat, ...]:
    """A polygon's single exterior ring: returned closed, counter-clockwise, validated."""
    if not isinstance(value, (list, tuple)):
        raise _fail(where, "expected a list of [longitude, latitude] vertices")
    if len(value) > MAX_POLYGON_VERTICES + 1:
        raise _fail(where, f"{len(value)} vertices exceed the limit of {MAX_POLYGON_VERTICES}")
    points = [_lon_lat(vertex, f"{where}[{i}]") for i, vertex in enumerate(value)]
    if len(points) >= 2 and points[0] == points[-1]:
        points.pop()  # closed on input; re-closed below
    if len(points) < 3:
        raise _fail(where, f"a polygon needs at least 3 distinct vertices, got {len(points)}")
    for i in range(len(points)):
        if points[i] == points[i - 1]:
            raise _fail(where, f"vertex {i} repeats the previous vertex {points[i]}")
    ints = _e7_points(points)
    _check_extent(ints, where, closed=True)
    # Exact on the degE7 integers (not GEOS on doubles): the verdict and the stored
    # winding are replicated state.
    problem = ring_problem(ints)
    if problem is not None:
        raise _fail(where, f"invalid polygon: {problem}")
    if twice_area(ints) < 0:
        points.reverse()
        # Keep the caller's first vertex first: reversal of [a, b, c] is [c, b, a];
        # rotate so it reads [a, c, b].
        points = points[-1:] + points[:-1]
    return tuple(points) + (points[0],)


def _path(value: object, where: str) -> tuple[LonLatAlt, ...]:
    if not isinstance(value, (list, tuple)):
        raise _fail(where, "expected a list of [longitude, latitude, altitude_m] points")
    if not 2 <= len(value) <= MAX_ROUTE_POINTS:
        raise _fail(where, f"a route needs 2 to {MAX_ROUTE_POINTS} points, got {len(value)}")
    points = [_lon_lat_alt(point, f"{where}[{i}]") for i, point in enumerate(value)]
    for i in range(1, len(points)):
        if points[i][:2] == points[i - 1][:2]:
            raise _fail(where, f"point {i} repeats the position of point {i - 1}")
    _check_extent(_e7_points(points), where, closed=False)
    return tuple(points)


# ------------------------------------------------------------------------ commands


_C = TypeVar("_C", bound="_Command")


class _Command:
    """Shared behaviour: JSON form and normalisation. Subclasses are frozen dataclasses
    whose __post_init__ validates every field and stores the normalised value."""

    __slots__ = ()
    TYPE: ClassVar[str]

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    @classmethod
    def rebuilt(cls: type[_C], *values: object) -> _C:
        """``cls(*values)`` for values a validated command of ``cls`` produced (all the
        map's state holds), without validating them again: the same command. Validation
        normalises, and normalising a normalised value changes nothing, so a snapshot
        built from rebuilt commands has the bytes of validated ones
        (tests/swarm/test_map_properties.py rebuilds every item of random maps and
        validates it anew). Validating costs ~0.1 ms per zone (the exact ring checks):
        35 ms per snapshot of a 350-zone map, which the agent's status (the snapshot's
        hash) paid with every commit, up to 10 times a second."""
        obj = object.__new__(cls)
        for f, value in zip(fields(cls), values, strict=True):  # type: ignore[arg-type]
            object.__setattr__(obj, f.name, value)
        return obj

    def to_json(self) -> dict[str, Any]:
        """The command's JSON object (plain lists, strings, numbers, booleans)."""
        obj: dict[str, Any] = {"type": self.TYPE}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None:
                continue  # optional field left unset
            obj[f.name] = _to_plain(value)
        return obj


def _to_plain(value: object) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_to_plain(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class SetZone(_Command):
    """Create or replace a fire zone.

    JSON: ``{"type": "set_zone", "id": "z1", "polygon": [[lon, lat], ...],
    "status": "burning", "source": "drone-2", "time_ms": 1764208800000}``
    """

    TYPE: ClassVar[str] = "set_zone"
    id: str
    polygon: tuple[LonLat, ...]
    status: ZoneStatus
    source: str
    time_ms: int

    def __post_init__(self) -> None:
        self._set("id", _identifier(self.id, "set_zone.id"))
        self._set("polygon", _ring(self.polygon, "set_zone.polygon"))
        self._set("status", _member(ZoneStatus, self.status, "set_zone.status"))
        self._set("source", _identifier(self.source, "set_zone.source"))
        self._set("time_ms", _integer(self.time_ms, "set_zone.time_ms", 0, MAX_TIME_MS))


@dataclass(frozen=True, slots=True)
class SetRoute(_Command):
    """Create or replace an evacuation route: a polyline of [lon, lat, alt_m] where
    alt_m is metres above home (MAV_FRAME_GLOBAL_RELATIVE_ALT), and a priority 0..9
    (0 most important).

    JSON: ``{"type": "set_route", "id": "r1", "path": [[lon, lat, alt_m], ...],
    "priority": 1}``
    """

    TYPE: ClassVar[str] = "set_route"
    id: str
    path: tuple[LonLatAlt, ...]
    priority: int

    def __post_init__(self) -> None:
        self._set("id", _identifier(self.id, "set_route.id"))
        self._set("path", _path(self.path, "set_route.path"))
        self._set("priority", _integer(self.priority, "set_route.priority", 0, MAX_PRIORITY))


def _confidence(value: object, where: str) -> float:
    confidence = _number(value, where)
    if not 0.0 <= confidence <= 1.0:
        raise _fail(where, f"confidence {confidence!r} is outside [0, 1]")
    return _rounded(confidence, _CONFIDENCE_DIGITS)


@dataclass(frozen=True, slots=True)
class ReportSurvivor(_Command):
    """A new survivor sighting (rejected in apply if the id is already known: use
    update_survivor). ``count`` is the head count (1..10000).

    JSON: ``{"type": "report_survivor", "id": "s1", "position": [lon, lat],
    "count": 3, "confidence": 0.8, "reporter": "drone-1", "time_ms": 1764208800000,
    "status": "reported"}``
    """

    TYPE: ClassVar[str] = "report_survivor"
    id: str
    position: LonLat
    count: int
    confidence: float
    reporter: str
    time_ms: int
    status: SurvivorStatus = SurvivorStatus.REPORTED

    def __post_init__(self) -> None:
        self._set("id", _identifier(self.id, "report_survivor.id"))
        self._set("position", _lon_lat(self.position, "report_survivor.position"))
        self._set("count", _integer(self.count, "report_survivor.count", 1, MAX_HEAD_COUNT))
        self._set("confidence", _confidence(self.confidence, "report_survivor.confidence"))
        self._set("reporter", _identifier(self.reporter, "report_survivor.reporter"))
        self._set("time_ms", _integer(self.time_ms, "report_survivor.time_ms", 0, MAX_TIME_MS))
        self._set("status", _member(SurvivorStatus, self.status, "report_survivor.status"))


@dataclass(frozen=True, slots=True)
class UpdateSurvivor(_Command):
    """Change a known survivor. Fields left out (None) keep their value; ``reporter``
    and ``time_ms`` always record who changed it and when. Status may only move
    forward: reported -> confirmed -> rescued (see SURVIVOR_TRANSITIONS).

    JSON: ``{"type": "update_survivor", "id": "s1", "reporter": "drone-3",
    "time_ms": 1764208860000, "status": "confirmed", "count": 4}``
    (optional: position, count, confidence, status)
    """

    TYPE: ClassVar[str] = "update_survivor"
    id: str
    reporter: str
    time_ms: int
    position: LonLat | None = None
    count: int | None = None
    confidence: float | None = None
    status: SurvivorStatus | None = None

    def __post_init__(self) -> None:
        self._set("id", _identifier(self.id, "update_survivor.id"))
        self._set("reporter", _identifier(self.reporter, "update_survivor.reporter"))
        self._set("time_ms", _integer(self.time_ms, "update_survivor.time_ms", 0, MAX_TIME_MS))
        if self.position is not None:
            self._set("position", _lon_lat(self.position, "update_survivor.position"))
        if self.count is not None:
            self._set("count", _integer(self.count, "update_survivor.count", 1, MAX_HEAD_COUNT))
        if self.confidence is not None:
            self._set("confidence", _confidence(self.confidence, "update_survivor.confidence"))
        if self.status is not None:
            self._set("status", _member(SurvivorStatus, self.status, "update_survivor.status"))
        if (self.position, self.count, self.confidence, self.status) == (None,) * 4:
            raise _fail(
                "update_survivor",
                "changes nothing: give at least one of position, count, confidence, status",
            )


@dataclass(frozen=True, slots=True)
class SetSearchArea(_Command):
    """Set (replace) the area the swarm searches.

    JSON: ``{"type": "set_search_area", "polygon": [[lon, lat], ...]}``
    """

    TYPE: ClassVar[str] = "set_search_area"
    polygon: tuple[LonLat, ...]

    def __post_init__(self) -> None:
        self._set("polygon", _ring(self.polygon, "set_search_area.polygon"))


@dataclass(frozen=True, slots=True)
class SetDroneTask(_Command):
    """Create or replace a drone's entry: its task, whether it is alive and busy, and
    its home ([lon, lat, alt_m], alt_m above mean sea level).

    JSON: ``{"type": "set_drone_task", "id": "drone-1", "task": "search",
    "alive": true, "busy": false, "home": [lon, lat, alt_m]}``
    """

    TYPE: ClassVar[str] = "set_drone_task"
    id: str
    task: DroneTask
    alive: bool
    busy: bool
    home: LonLatAlt

    def __post_init__(self) -> None:
        self._set("id", _identifier(self.id, "set_drone_task.id"))
        self._set("task", _member(DroneTask, self.task, "set_drone_task.task"))
        self._set("alive", _flag(self.alive, "set_drone_task.alive"))
        self._set("busy", _flag(self.busy, "set_drone_task.busy"))
        self._set("home", _lon_lat_alt(self.home, "set_drone_task.home"))


@dataclass(frozen=True, slots=True)
class RemoveZone(_Command):
    """Remove a zone (rejected if unknown). JSON: ``{"type": "remove_zone", "id": "z1"}``"""

    TYPE: ClassVar[str] = "remove_zone"
    id: str

    def __post_init__(self) -> None:
        self._set("id", _identifier(self.id, "remove_zone.id"))


@dataclass(frozen=True, slots=True)
class RemoveRoute(_Command):
    """Remove a route (rejected if unknown). JSON: ``{"type": "remove_route", "id": "r1"}``"""

    TYPE: ClassVar[str] = "remove_route"
    id: str

    def __post_init__(self) -> None:
        self._set("id", _identifier(self.id, "remove_route.id"))


@dataclass(frozen=True, slots=True)
class RemoveSurvivor(_Command):
    """Remove a survivor (rejected if unknown).
    JSON: ``{"type": "remove_survivor", "id": "s1"}``"""

    TYPE: ClassVar[str] = "remove_survivor"
    id: str

    def __post_init__(self) -> None:
        self._set("id", _identifier(self.id, "remove_survivor.id"))


@dataclass(frozen=True, slots=True)
class RemoveDrone(_Command):
    """Remove a drone from the swarm's map (rejected if unknown).
    JSON: ``{"type": "remove_drone", "id": "drone-4"}``"""

    TYPE: ClassVar[str] = "remove_drone"
    id: str

    def __post_init__(self) -> None:
        self._set("id", _identifier(self.id, "remove_drone.id"))


MAX_SECTOR_POLYGONS = 64  # polygons of one drone's sector
MAX_REASON_CHARS = 300
_ITEM_PATTERN = re.compile(r"(survivor|search_area)(:[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})?")

Polygon: TypeAlias = tuple[tuple[LonLat, ...], ...]  # exterior ring, then holes


def _sector_polygon(value: object, where: str) -> Polygon:
    """One polygon of a sector: [exterior, hole, ...], each ring as in _ring (closed,
    counter-clockwise, canonical); the whole polygon valid."""
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_POLYGON_VERTICES:
        raise _fail(where, "expected a polygon: a list of rings, exterior first")
    rings = tuple(_ring(ring, f"{where}[{i}]") for i, ring in enumerate(value))
    problem = polygon_problem([_e7_points(ring[:-1]) for ring in rings])
    if problem is not None:
        raise _fail(where, f"invalid polygon: {problem}")
    return rings


def sector_polygon_problem(rings: object) -> str | None:
    """Why ``rings`` ([exterior, holes...] of [lon, lat]) would be refused as a polygon
    of a ``set_assignment`` sector, or None: the map's own exact rule, for a proposer
    to check its rounded polygons against before it proposes them."""
    try:
        _sector_polygon(rings, "polygon")
    except CommandError as exc:
        return str(exc)
    return None


def _reason(value: object, where: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REASON_CHARS \
            or not value.isprintable():
        raise _fail(where, f"expected a printable reason of 1 to {MAX_REASON_CHARS} characters")
    return value


def _pairs(value: object, where: str) -> list[tuple[object, object]]:
    """A JSON object (or, from code, pairs) as sorted (key, value) pairs."""
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        items = [(p[0], p[1]) for p in value]
    else:
        raise _fail(where, "expected an object")
    keys = [k for k, _ in items]
    if len(set(map(str, keys))) != len(keys):
        raise _fail(where, "duplicate keys")
    return sorted(items, key=lambda kv: str(kv[0]))


@dataclass(frozen=True, slots=True)
class SetAssignment(_Command):
    """Who does what, computed once by the leader and committed (issue 13), so drones
    never have to agree on floating point: each drone flies its committed share.

    ``epoch`` is the map's ``assignment_epoch`` the assignment was computed at; apply
    rejects it unless the map is still at that epoch (no change since altered who
    does what), so a stale or superseded assignment is never applied, half or whole.
    ``sectors``: drone id -> its sector, a list of polygons (each [exterior, holes...]
    of [lon, lat]). ``survivors``: drone id -> survivor ids to confirm, in visiting
    order. ``unserved``: item (``survivor:<id>``, ``search_area`` or
    ``search_area:<n>``) -> why no drone has it.

    JSON: ``{"type": "set_assignment", "epoch": 7, "sectors": {"drone-1": [[[[lon,
    lat], ...]]]}, "survivors": {"drone-2": ["s1"]}, "unserved": {"survivor:s3":
    "no available drone can reach it without crossing a zone"}}``
    """

    TYPE: ClassVar[str] = "set_assignment"
    epoch: int
    sectors: tuple[tuple[str, tuple[Polygon, ...]], ...]
    survivors: tuple[tuple[str, tuple[str, ...]], ...]
    unserved: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        self._set("epoch", _integer(self.epoch, "set_assignment.epoch", 0, MAX_TIME_MS))
        sectors = []
        for drone, polygons in _pairs(self.sectors, "set_assignment.sectors"):
            where = f"set_assignment.sectors.{str(drone)[:64]}"
            drone_id = _identifier(drone, where)
            if not isinstance(polygons, (list, tuple)) \
                    or not 1 <= len(polygons) <= MAX_SECTOR_POLYGONS:
                raise _fail(where, f"expected 1 to {MAX_SECTOR_POLYGONS} polygons")
            sectors.append((drone_id, tuple(_sector_polygon(p, f"{where}[{i}]")
                                            for i, p in enumerate(polygons))))
        self._set("sectors", tuple(sectors))
        survivors, seen = [], set()
        for drone, ids in _pairs(self.survivors, "set_assignment.survivors"):
            where = f"set_assignment.survivors.{str(drone)[:64]}"
            drone_id = _identifier(drone, where)
            if not isinstance(ids, (list, tuple)) or not 1 <= len(ids) <= MAX_SURVIVOR_IDS:
                raise _fail(where, f"expected 1 to {MAX_SURVIVOR_IDS} survivor ids")
            checked = tuple(_identifier(x, f"{where}[{i}]") for i, x in enumerate(ids))
            for x in checked:
                if x in seen:
                    raise _fail(where, f"survivor {x!r} is given to more than one drone")
                seen.add(x)
            survivors.append((drone_id, checked))
        self._set("survivors", tuple(survivors))
        unserved = []
        for item, reason in _pairs(self.unserved, "set_assignment.unserved"):
            where = f"set_assignment.unserved.{str(item)[:80]}"
            if not isinstance(item, str) or not _ITEM_PATTERN.fullmatch(item):
                raise _fail(where, "expected 'survivor:<id>', 'search_area' or 'search_area:<n>'")
            if item in {f"survivor:{x}" for x in seen}:
                raise _fail(where, "the survivor is both assigned and unserved")
            unserved.append((item, _reason(reason, where)))
        self._set("unserved", tuple(unserved))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "epoch": self.epoch,
            "sectors": {d: [[[list(p) for p in ring] for ring in poly] for poly in polys]
                        for d, polys in self.sectors},
            "survivors": {d: list(ids) for d, ids in self.survivors},
            "unserved": dict(self.unserved),
        }

    def sector_of(self, drone_id: str) -> tuple[Polygon, ...]:
        return dict(self.sectors).get(drone_id, ())

    def survivors_of(self, drone_id: str) -> tuple[str, ...]:
        return dict(self.survivors).get(drone_id, ())
#: Most drones one recall, resume or launch may name (the map's MAX_DRONES).
MAX_NAMED_DRONES = 64


def _drone_ids(value: object, where: str) -> tuple[str, ...]:
    """A non-empty list of distinct drone ids, stored sorted (one canonical form)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise _fail(where, "expected a non-empty list of drone ids (leave it out for all drones)")
    if len(value) > MAX_NAMED_DRONES:
        raise _fail(where, f"{len(value)} drones exceed {MAX_NAMED_DRONES}")
    ids = [_identifier(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if len(set(ids)) != len(ids):
        raise _fail(where, "names a drone twice")
    return tuple(sorted(ids))


@dataclass(frozen=True, slots=True)
class Recall(_Command):
    """Order drones home: every agent whose drone is recalled switches its flight
    controller to RTL, so drones out of the ground station's radio reach obey too.
    ``drones`` omitted: all drones (including ones that join later); else the named
    drones, which must be on the map. Recalling a recalled drone is allowed (no change).

    JSON: ``{"type": "recall"}`` or ``{"type": "recall", "drones": ["drone-2"]}``
    """

    TYPE: ClassVar[str] = "recall"
    drones: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.drones is not None:
            self._set("drones", _drone_ids(self.drones, "recall.drones"))


@dataclass(frozen=True, slots=True)
class Resume(_Command):
    """Cancel a recall: the drones fly their plans again. ``drones`` omitted: ends every
    recall; else the named drones, each of which must be recalled by name (after a
    recall of all drones, only a resume of all ends it).

    JSON: ``{"type": "resume"}`` or ``{"type": "resume", "drones": ["drone-2"]}``
    """

    TYPE: ClassVar[str] = "resume"
    drones: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.drones is not None:
            self._set("drones", _drone_ids(self.drones, "resume.drones"))


@dataclass(frozen=True, slots=True)
class Launch(_Command):
    """Clear drones for take-off (the operator's explicit intent; docs/flight.md): every
    agent whose drone is launched arms it and flies its committed mission in AUTO, so
    drones out of the ground station's reach obey too. ``drones`` omitted: every drone
    on the map now (not ones that join later), none of them recalled; else the named
    drones, each on the map and not recalled. ``time_ms`` is when the operator gave the
    order (unix ms): an agent obeys it only within its launch window of that time, so a
    drone that comes up, rejoins or restarts later never takes off by surprise. A
    ``recall`` cancels the launch of the drones it covers.

    JSON: ``{"type": "launch", "time_ms": 1764208800000}`` or
    ``{"type": "launch", "time_ms": 1764208800000, "drones": ["drone-2"]}``
    """

    TYPE: ClassVar[str] = "launch"
    time_ms: int
    drones: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self._set("time_ms", _integer(self.time_ms, "launch.time_ms", 0, MAX_TIME_MS))
        if self.drones is not None:
            self._set("drones", _drone_ids(self.drones, "launch.drones"))


Command: TypeAlias = (
    SetZone | SetRoute | ReportSurvivor | UpdateSurvivor | SetSearchArea | SetDroneTask
    | RemoveZone | RemoveRoute | RemoveSurvivor | RemoveDrone | SetAssignment | Recall | Resume
    | Launch
)

# Read off the union above, so a new command is registered by adding it there.
COMMAND_TYPES: Mapping[str, type[Command]] = {cls.TYPE: cls for cls in get_args(Command)}


# ------------------------------------------------------------------ JSON in and out


def canonical_json(obj: Any) -> bytes:
    """Canonical encoding used for commands, results and snapshots: sorted keys, no
    whitespace, ASCII, no NaN/Infinity. Floats are written by repr (shortest round-trip
    form), so equal values always give equal bytes."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _reject_constant(name: str) -> Any:
    raise CommandError(f"JSON: {name} is not a valid number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise CommandError(f"JSON: duplicate key {key!r}")
        obj[key] = value
    return obj


_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"')
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]++")


def _json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (brackets inside
    strings left out; unclosed ones count): an upper bound of the decoder's recursion."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    return int(np.cumsum(np.where((codes == 91) | (codes == 123), 1, -1)).max())


def load_json(data: bytes | bytearray | memoryview | str, limit: int, what: str) -> Any:
    """Strict JSON decoding shared with snapshots: size-limited, UTF-8, no duplicate
    keys, no NaN/Infinity."""
    if isinstance(data, str):
        text = data
        size = len(data.encode("utf-8", "surrogatepass"))
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        size = len(raw)
        if size > limit:
            raise CommandError(f"{what}: {size} bytes exceed the limit of {limit}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CommandError(f"{what}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        raise CommandError(f"{what}: expected bytes or str, got {type(data).__name__}")
    if size > limit:
        raise CommandError(f"{what}: {size} bytes exceed the limit of {limit}")
    # Decided on the text, before decoding: how deep the decoder may recurse depends on
    # the calling thread's stack (a command 985 levels deep decoded at the top of a
    # thread and failed 100 frames down), and a committed entry's verdict must be the
    # same bytes on every replica, live or replayed.
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise CommandError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{what}: not valid JSON ({exc.msg} at {exc.pos})") from None
    except CommandError:
        raise  # from _unique_keys / _reject_constant: already says what is wrong
    except ValueError as exc:
        # Python refuses integer literals of more than sys.get_int_max_str_digits()
        # (4300) digits with a bare ValueError; a committed entry holding one must be
        # rejected like any other bad JSON, not crash every replica's apply.
        raise CommandError(f"{what}: not valid JSON ({str(exc).split(':')[0]})") from None
    except RecursionError:
        raise CommandError(f"{what}: JSON nested too deeply") from None


def parse_command(data: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> Command:
    """Decode and validate one command from its JSON bytes/text or a decoded object.

    Raises CommandError naming the field and the problem: unknown ``type``, missing or
    unknown fields, wrong types, out-of-range values, invalid geometry.
    """
    if isinstance(data, Mapping):
        obj: Any = data
    else:
        obj = load_json(data, MAX_COMMAND_BYTES, "command")
    if not isinstance(obj, Mapping):
        raise CommandError(f"command: expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise CommandError("command: missing 'type' (a string naming the command)")
    cls = COMMAND_TYPES.get(kind)
    if cls is None:
        known = ", ".join(sorted(COMMAND_TYPES))
        raise CommandError(f"command: unknown type {kind[:80]!r} (known: {known})")
    declared = {f.name: f for f in fields(cls)}
    for key in obj:
        if key != "type" and key not in declared:
            raise CommandError(f"{kind}.{key}: unknown field")
    kwargs: dict[str, Any] = {}
    for name, f in declared.items():
        if name in obj:
            if obj[name] is None:
                raise CommandError(f"{kind}.{name}: null is not allowed (leave the field out)")
            kwargs[name] = obj[name]
        elif f.default is MISSING and f.default_factory is MISSING:
            raise CommandError(f"{kind}.{name}: missing required field")
    try:
        return cls(**kwargs)
    except CommandError:
        raise
    except (TypeError, ValueError, ArithmeticError) as exc:  # defensive: any other
        # construction problem still reaches apply as a rejection, never an exception
        raise CommandError(f"{kind}: {exc}") from None


def encode_command(command: Command) -> bytes:
    """The canonical bytes of a command (what is proposed to the Raft log)."""
    if type(command) not in COMMAND_TYPES.values():
        raise CommandError(f"command: {type(command).__name__} is not a map command")
    return canonical_json(command.to_json())
