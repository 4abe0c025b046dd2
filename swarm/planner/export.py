"""One drone's plan as files ground stations open: QGroundControl ``.plan`` and
Mission Planner / QGroundControl ``QGC WPL 110`` waypoint text.

``.plan`` (QGroundControl developer guide, "Plan File Format"): a JSON object with
``fileType`` "Plan", ``version`` 1, ``groundStation``, a ``mission`` object (version 2;
``firmwareType`` a MAV_AUTOPILOT value, 3 = ArduPilot; ``vehicleType`` a MAV_TYPE, 2 =
quadrotor; ``cruiseSpeed``, ``hoverSpeed``, ``globalPlanAltitudeMode``,
``plannedHomePosition`` [lat, lon, AMSL alt] and ``items``), an optional ``geoFence``
(version 2: ``polygons`` [{``polygon`` [[lat, lon], ...] clockwise, ``inclusion``,
``version`` 1}], ``circles`` [{``circle`` {``center``, ``radius``}, ``inclusion``,
``version`` 1}]) and optional ``rallyPoints`` (version 2, ``points`` [[lat, lon, alt
above home], ...]). Each mission item is a ``SimpleItem``: ``command`` (MAV_CMD),
``frame`` (MAV_FRAME), ``params`` (MISSION_ITEM param1..4, x/lat, y/lon, z/alt; a NaN
param is JSON null), ``autoContinue``, ``doJumpId`` (numbered from 1); and, as
QGroundControl writes them for items that carry an altitude, ``AMSLAltAboveTerrain``,
``Altitude`` and ``AltitudeMode`` (QGroundControl's AltMode: 1 relative, 2 absolute).

``QGC WPL 110`` (mavlink.io "File Formats"): a header line, then one tab-separated line
per item: seq, current, frame, command, param1..4, lat, lon, alt, autocontinue. Line 0
is the home position (MAV_FRAME_GLOBAL, AMSL); it carries no fence or rally points.

The readers accept what the writers produce and what QGroundControl writes for simple
missions; anything else (a ComplexItem, a malformed field, coordinates off the globe)
raises :class:`PlanFileError` naming the offending field. Unknown extra keys in a
``.plan`` are ignored (QGroundControl versions add some); known ones are checked.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, TypeGuard

from mavlink_bridge.plan import (
    CMD_NAV_FENCE_CIRCLE_EXCLUSION,
    CMD_NAV_FENCE_CIRCLE_INCLUSION,
    CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION,
    CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION,
    CMD_NAV_RALLY_POINT,
    FRAME_GLOBAL,
    FRAME_GLOBAL_INT,
    FRAME_GLOBAL_RELATIVE_ALT,
    FRAME_GLOBAL_RELATIVE_ALT_INT,
    MissionItem,
    MissionPlan,
)

from .model import GeoPoint

__all__ = [
    "PlanFile",
    "PlanFileError",
    "read_qgc_plan",
    "read_wpl",
    "write_qgc_plan",
    "write_wpl",
]

FIRMWARE_ARDUPILOT = 3  # MAV_AUTOPILOT_ARDUPILOTMEGA
VEHICLE_QUADROTOR = 2  # MAV_TYPE_QUADROTOR
_ALT_MODE_RELATIVE = 1  # QGroundControlQmlGlobal::AltitudeModeRelative
_ALT_MODE_ABSOLUTE = 2  # QGroundControlQmlGlobal::AltitudeModeAbsolute
_GLOBAL_FRAMES = (FRAME_GLOBAL, FRAME_GLOBAL_RELATIVE_ALT, FRAME_GLOBAL_INT,
                  FRAME_GLOBAL_RELATIVE_ALT_INT)
_RELATIVE_FRAMES = (FRAME_GLOBAL_RELATIVE_ALT, FRAME_GLOBAL_RELATIVE_ALT_INT)
_WPL_HEADER = "QGC WPL 110"
_MAX_FILE_CHARS = 16 * 1024 * 1024
_MAX_ITEMS = 10_000


class PlanFileError(ValueError):
    """A plan file is malformed; the message names the field and the problem."""


@dataclass(frozen=True, slots=True)
class PlanFile:
    """What a file holds: the plan and the home it was planned from (AMSL altitude)."""

    plan: MissionPlan
    home: GeoPoint
    cruise_speed: float = 15.0
    hover_speed: float = 5.0


# ------------------------------------------------------------------ QGroundControl .plan


def write_qgc_plan(plan: MissionPlan, home: GeoPoint, *, cruise_speed: float = 15.0,
                   hover_speed: float = 5.0, vehicle_type: int = VEHICLE_QUADROTOR) -> str:
    """``plan`` as QGroundControl ``.plan`` JSON text (keys sorted, as QGC writes them)."""
    items = []
    for seq, item in enumerate(plan.mission, start=1):
        entry: dict[str, Any] = {
            "autoContinue": bool(item.autocontinue),
            "command": item.command,
            "doJumpId": seq,
            "frame": item.frame,
            "params": [_json_num(item.param1), _json_num(item.param2), _json_num(item.param3),
                       _json_num(item.param4), *_xy_out(item), _json_num(item.z)],
            "type": "SimpleItem",
        }
        if item.frame in _GLOBAL_FRAMES:
            entry["AMSLAltAboveTerrain"] = None
            entry["Altitude"] = _json_num(item.z)
            entry["AltitudeMode"] = (_ALT_MODE_RELATIVE if item.frame in _RELATIVE_FRAMES
                                     else _ALT_MODE_ABSOLUTE)
        items.append(entry)
    doc = {
        "fileType": "Plan",
        "geoFence": _fence_out(plan.fence),
        "groundStation": "QGroundControl",
        "mission": {
            "cruiseSpeed": float(cruise_speed),
            "firmwareType": FIRMWARE_ARDUPILOT,
            "globalPlanAltitudeMode": _ALT_MODE_RELATIVE,
            "hoverSpeed": float(hover_speed),
            "items": items,
            "plannedHomePosition": _home_position(home),
            "vehicleType": vehicle_type,
            "version": 2,
        },
        "rallyPoints": {"points": [_rally_out(i, n) for n, i in enumerate(plan.rally)],
                        "version": 2},
        "version": 1,
    }
    return json.dumps(doc, indent=4, sort_keys=True, allow_nan=False) + "\n"


def read_qgc_plan(text: str) -> PlanFile:
    """Parse and validate ``.plan`` JSON text."""
    if not isinstance(text, str):
        raise PlanFileError("plan file: expected text")
    if len(text) > _MAX_FILE_CHARS:
        raise PlanFileError(f"plan file: larger than {_MAX_FILE_CHARS} characters")
    try:
        parsed: object = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise PlanFileError(f"plan file: not valid JSON ({exc})") from None
    doc = _object(parsed, "plan file", "expected a JSON object")
    _expect(doc.get("fileType") == "Plan", "fileType", f"must be \"Plan\", got {doc.get('fileType')!r}")
    _expect(_is_int(doc.get("version")) and doc["version"] == 1, "version",
            f"only version 1 is supported, got {doc.get('version')!r}")
    mission = _object(doc.get("mission"), "mission")
    _expect(_is_int(mission.get("version")) and mission["version"] == 2, "mission.version",
            f"only version 2 is supported, got {mission.get('version')!r}")
    home_raw = mission.get("plannedHomePosition")
    if not (isinstance(home_raw, list) and len(home_raw) == 3):
        raise PlanFileError("mission.plannedHomePosition: expected [latitude, longitude, altitude]")
    lat, lon, alt = (_num(v, f"mission.plannedHomePosition[{i}]") for i, v in enumerate(home_raw))
    home = _geo(lat, lon, alt, "mission.plannedHomePosition")
    cruise = _num(mission.get("cruiseSpeed", 15.0), "mission.cruiseSpeed")
    hover = _num(mission.get("hoverSpeed", 5.0), "mission.hoverSpeed")
    raw_items = mission.get("items")
    if not isinstance(raw_items, list):
        raise PlanFileError("mission.items: expected a list")
    _expect(len(raw_items) <= _MAX_ITEMS, "mission.items", f"more than {_MAX_ITEMS} items")
    mission_items = tuple(_item_in(v, f"mission.items[{i}]") for i, v in enumerate(raw_items))
    fence = _fence_in(doc.get("geoFence", {"polygons": [], "circles": [], "version": 2}))
    rally = _rally_in(doc.get("rallyPoints", {"points": [], "version": 2}))
    plan = MissionPlan(mission=mission_items, fence=fence, rally=rally,
                       fence_enable=True if fence else None)
    return PlanFile(plan, home, cruise, hover)


def _item_in(value: object, where: str) -> MissionItem:
    raw = _object(value, where)
    kind = raw.get("type")
    if kind == "ComplexItem":
        raise PlanFileError(f"{where}: ComplexItem ({raw.get('complexItemType')!r}) is not "
                            "supported; save the mission with simple items only")
    _expect(kind == "SimpleItem", f"{where}.type", f"expected \"SimpleItem\", got {kind!r}")
    command = raw.get("command")
    frame = raw.get("frame")
    if not (_is_int(command) and 0 <= command <= 65535):
        raise PlanFileError(f"{where}.command: expected a MAV_CMD (uint16)")
    if not (_is_int(frame) and 0 <= frame <= 255):
        raise PlanFileError(f"{where}.frame: expected a MAV_FRAME (uint8)")
    auto = raw.get("autoContinue", True)
    if not isinstance(auto, bool):
        raise PlanFileError(f"{where}.autoContinue: expected true or false")
    jump = raw.get("doJumpId", 1)
    _expect(_is_int(jump) and jump >= 0, f"{where}.doJumpId", "expected a non-negative int")
    params = raw.get("params")
    if not (isinstance(params, list) and len(params) == 7):
        raise PlanFileError(f"{where}.params: expected 7 entries")
    p = [_num_or_nan(v, f"{where}.params[{i}]") for i, v in enumerate(params)]
    if frame in _GLOBAL_FRAMES:
        _geo(p[4], p[5], 0.0, f"{where}.params")
        x, y = round(p[4] * 1e7), round(p[5] * 1e7)
    else:
        x, y = _raw_int(p[4], f"{where}.params[4]"), _raw_int(p[5], f"{where}.params[5]")
    try:
        return MissionItem(command=command, frame=frame, param1=p[0], param2=p[1], param3=p[2],
                           param4=p[3], x=x, y=y, z=p[6], autocontinue=int(auto))
    except ValueError as exc:
        raise PlanFileError(f"{where}: {exc}") from None


def _xy_out(item: MissionItem) -> list[float | int]:
    if item.frame in _GLOBAL_FRAMES:
        return [item.x / 1e7, item.y / 1e7]
    return [item.x, item.y]


def _fence_out(fence: tuple[MissionItem, ...]) -> dict[str, Any]:
    polygons: list[dict[str, Any]] = []
    circles: list[dict[str, Any]] = []
    i = 0
    while i < len(fence):
        item = fence[i]
        if item.command in (CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION,
                            CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION):
            n = int(item.param1)
            group = fence[i:i + n]
            # MAV_CMD_NAV_FENCE_POLYGON_VERTEX_*: param1 is the polygon's vertex count and
            # its vertices are consecutive items.
            if n < 3 or len(group) != n or any(
                    g.command != item.command or int(g.param1) != n for g in group):
                raise ValueError(f"fence item {i}: polygon of {n} vertices is not {n} "
                                 "consecutive vertex items")
            polygons.append({
                "inclusion": item.command == CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION,
                "polygon": [[g.x / 1e7, g.y / 1e7] for g in group],
                "version": 1,
            })
            i += n
        elif item.command in (CMD_NAV_FENCE_CIRCLE_INCLUSION, CMD_NAV_FENCE_CIRCLE_EXCLUSION):
            circles.append({
                "circle": {"center": [item.x / 1e7, item.y / 1e7], "radius": item.param1},
                "inclusion": item.command == CMD_NAV_FENCE_CIRCLE_INCLUSION,
                "version": 1,
            })
            i += 1
        else:
            raise ValueError(f"fence item {i}: command {item.command} is not a fence command")
    return {"circles": circles, "polygons": polygons, "version": 2}


def _fence_in(value: object) -> tuple[MissionItem, ...]:
    raw = _object(value, "geoFence")
    _expect(raw.get("version") == 2, "geoFence.version", f"expected 2, got {raw.get('version')!r}")
    polygons = raw.get("polygons", [])
    circles = raw.get("circles", [])
    if not isinstance(polygons, list):
        raise PlanFileError("geoFence.polygons: expected a list")
    if not isinstance(circles, list):
        raise PlanFileError("geoFence.circles: expected a list")
    items: list[MissionItem] = []
    for i, poly in enumerate(polygons):
        where = f"geoFence.polygons[{i}]"
        poly = _object(poly, where)
        inclusion = poly.get("inclusion")
        _expect(isinstance(inclusion, bool), f"{where}.inclusion", "expected true or false")
        pts = poly.get("polygon")
        if not (isinstance(pts, list) and 3 <= len(pts) <= _MAX_ITEMS):
            raise PlanFileError(f"{where}.polygon: expected a list of at least 3 "
                                "[latitude, longitude] points")
        cmd = (CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION if inclusion
               else CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION)
        for j, pt in enumerate(pts):
            lat, lon = _pair(pt, f"{where}.polygon[{j}]")
            items.append(MissionItem(command=cmd, frame=FRAME_GLOBAL, param1=float(len(pts)),
                                     x=round(lat * 1e7), y=round(lon * 1e7)))
    for i, circ in enumerate(circles):
        where = f"geoFence.circles[{i}]"
        problem = "expected an object with a \"circle\""
        circ = _object(circ, where, problem)
        circle = _object(circ.get("circle"), where, problem)
        inclusion = circ.get("inclusion")
        _expect(isinstance(inclusion, bool), f"{where}.inclusion", "expected true or false")
        lat, lon = _pair(circle.get("center"), f"{where}.circle.center")
        radius = _num(circle.get("radius"), f"{where}.circle.radius")
        _expect(radius > 0, f"{where}.circle.radius", "must be > 0")
        cmd = CMD_NAV_FENCE_CIRCLE_INCLUSION if inclusion else CMD_NAV_FENCE_CIRCLE_EXCLUSION
        items.append(MissionItem(command=cmd, frame=FRAME_GLOBAL, param1=radius,
                                 x=round(lat * 1e7), y=round(lon * 1e7)))
    return tuple(items)


def _rally_out(item: MissionItem, n: int) -> list[float]:
    if item.command != CMD_NAV_RALLY_POINT or item.frame not in _RELATIVE_FRAMES:
        # QGroundControl's rally points carry an altitude above home only.
        raise ValueError(f"rally item {n}: expected MAV_CMD_NAV_RALLY_POINT in a "
                         "relative-altitude frame")
    return [item.x / 1e7, item.y / 1e7, item.z]


def _rally_in(value: object) -> tuple[MissionItem, ...]:
    raw = _object(value, "rallyPoints")
    _expect(raw.get("version") == 2, "rallyPoints.version", f"expected 2, got {raw.get('version')!r}")
    points = raw.get("points", [])
    if not (isinstance(points, list) and len(points) <= _MAX_ITEMS):
        raise PlanFileError("rallyPoints.points: expected a list")
    out = []
    for i, pt in enumerate(points):
        where = f"rallyPoints.points[{i}]"
        if not (isinstance(pt, list) and len(pt) == 3):
            raise PlanFileError(f"{where}: expected [latitude, longitude, altitude]")
        lat, lon, alt = (_num(v, f"{where}[{k}]") for k, v in enumerate(pt))
        _geo(lat, lon, alt, where)
        out.append(MissionItem(command=CMD_NAV_RALLY_POINT, frame=FRAME_GLOBAL_RELATIVE_ALT,
                               x=round(lat * 1e7), y=round(lon * 1e7), z=alt))
    return tuple(out)


# ------------------------------------------------------------------ QGC WPL 110


def write_wpl(plan: MissionPlan, home: GeoPoint) -> str:
    """The mission (not fence or rally: the format has no place for them) as WPL text."""
    lines = [_WPL_HEADER,
             "\t".join(["0", "1", str(FRAME_GLOBAL), "16", "0", "0", "0", "0",
                        *(f"{v / 1e7:.7f}" for v in _degE7(home)), _wpl_num(_cm(home.alt)),
                        "1"])]
    for seq, item in enumerate(plan.mission, start=1):
        if item.frame in _GLOBAL_FRAMES:
            x, y = f"{item.x / 1e7:.7f}", f"{item.y / 1e7:.7f}"
        else:
            x, y = str(item.x), str(item.y)
        lines.append("\t".join([
            str(seq), "0", str(item.frame), str(item.command),
            _wpl_num(item.param1), _wpl_num(item.param2), _wpl_num(item.param3),
            _wpl_num(item.param4), x, y, _wpl_num(item.z), str(item.autocontinue)]))
    return "\n".join(lines) + "\n"


def read_wpl(text: str) -> PlanFile:
    """Parse and validate ``QGC WPL 110`` text; line 0 is home."""
    if not isinstance(text, str):
        raise PlanFileError("waypoint file: expected text")
    if len(text) > _MAX_FILE_CHARS:
        raise PlanFileError(f"waypoint file: larger than {_MAX_FILE_CHARS} characters")
    lines = [ln.rstrip("\r\n ") for ln in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or lines[0].strip() != _WPL_HEADER:
        raise PlanFileError(f"line 1: expected the header {_WPL_HEADER!r}, got "
                            f"{(lines[0] if lines else '')[:40]!r}")
    body = lines[1:]
    if not body:
        raise PlanFileError("line 2: missing the home line (seq 0)")
    if len(body) > _MAX_ITEMS:
        raise PlanFileError(f"waypoint file: more than {_MAX_ITEMS} items")
    items: list[MissionItem] = []
    home: GeoPoint | None = None
    for n, line in enumerate(body):
        where = f"line {n + 2}"
        fields = line.split("\t")
        if len(fields) != 12:
            raise PlanFileError(f"{where}: expected 12 tab-separated fields, got {len(fields)}")
        seq, current, frame, command = (_wpl_int(f, f"{where} field {k + 1}")
                                        for k, f in enumerate(fields[:4]))
        if seq != n:
            raise PlanFileError(f"{where}: sequence number {seq}, expected {n}")
        if current not in (0, 1):
            raise PlanFileError(f"{where}: current must be 0 or 1, got {current}")
        p = [_wpl_float(f, f"{where} field {k + 5}") for k, f in enumerate(fields[4:11])]
        auto = _wpl_int(fields[11], f"{where} field 12")
        if n == 0:
            home = _geo(p[4], p[5], p[6], f"{where} (home)")
            continue
        if frame in _GLOBAL_FRAMES:
            _geo(p[4], p[5], 0.0, where)
            x, y = round(p[4] * 1e7), round(p[5] * 1e7)
        else:
            x, y = _raw_int(p[4], f"{where} field 9"), _raw_int(p[5], f"{where} field 10")
        try:
            items.append(MissionItem(command=command, frame=frame, param1=p[0], param2=p[1],
                                     param3=p[2], param4=p[3], x=x, y=y, z=p[6],
                                     autocontinue=auto))
        except ValueError as exc:
            raise PlanFileError(f"{where}: {exc}") from None
    assert home is not None
    return PlanFile(MissionPlan(mission=tuple(items)), home)


# ------------------------------------------------------------------ helpers


def _expect(ok: bool, where: str, problem: str) -> None:
    if not ok:
        raise PlanFileError(f"{where}: {problem}")


def _object(v: object, where: str, problem: str = "expected an object") -> dict[str, object]:
    # A JSON object: its keys are always strings.
    if not isinstance(v, dict):
        raise PlanFileError(f"{where}: {problem}")
    return v


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _is_int(v: object) -> TypeGuard[int]:
    # JSON true/false parse as bool, a subclass of int; they are not numbers here.
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: object, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PlanFileError(f"{where}: expected a finite number, got {v!r}")
    try:
        f = float(v)
    except OverflowError:
        # JSON integers are unbounded; one beyond a double's range is no coordinate.
        raise PlanFileError(f"{where}: expected a finite number, got an integer beyond "
                            "a double's range") from None
    if not math.isfinite(f):
        raise PlanFileError(f"{where}: expected a finite number, got {v!r}")
    return f


def _num_or_nan(v: object, where: str) -> float:
    # QGroundControl writes a NaN parameter ("no change", e.g. yaw) as null.
    return math.nan if v is None else _num(v, where)


def _json_num(v: float) -> float | None:
    return None if math.isnan(v) else v


def _raw_int(v: float, where: str) -> int:
    _expect(not math.isnan(v) and float(v).is_integer(), where, f"expected an integer, got {v!r}")
    return int(v)


def _pair(v: object, where: str) -> tuple[float, float]:
    if not (isinstance(v, list) and len(v) == 2):
        raise PlanFileError(f"{where}: expected [latitude, longitude]")
    lat, lon = _num(v[0], f"{where}[0]"), _num(v[1], f"{where}[1]")
    _geo(lat, lon, 0.0, where)
    return lat, lon


def _geo(lat: float, lon: float, alt: float, where: str) -> GeoPoint:
    try:
        return GeoPoint(lat, lon, alt)
    except ValueError as exc:
        raise PlanFileError(f"{where}: {exc}") from None


def _degE7(point: GeoPoint) -> tuple[int, int]:
    """(lat, lon) as MAVLink degE7 integers: what the formats and the vehicle carry, so
    files written on two machines from the same plan compare equal (a last-bit
    difference in a home computed through a local frame disappears)."""
    return round(point.lat * 1e7), round(point.lon * 1e7)


def _cm(alt: float) -> float:
    return round(alt, 2) + 0.0


def _home_position(home: GeoPoint) -> list[float]:
    lat, lon = _degE7(home)
    return [lat / 1e7, lon / 1e7, _cm(home.alt)]


def _wpl_num(v: float) -> str:
    # repr() is the shortest text that reads back to the same double.
    return "nan" if math.isnan(v) else repr(float(v))


def _wpl_int(text: str, where: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise PlanFileError(f"{where}: expected an integer, got {text!r}") from None


def _wpl_float(text: str, where: str) -> float:
    try:
        v = float(text.strip())
    except ValueError:
        raise PlanFileError(f"{where}: expected a number, got {text!r}") from None
    if math.isinf(v):
        raise PlanFileError(f"{where}: {text!r} is not finite")
    return v
