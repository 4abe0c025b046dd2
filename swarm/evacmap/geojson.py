"""GeoJSON (RFC 7946) export of the whole evacuation map, and a checker for its rules.

One FeatureCollection: the search area, every zone (Polygon), route (LineString),
survivor (Point), drone home (Point) and, once one is committed, each drone's sector
of the assignment (MultiPolygon; its epoch, whether it is current, the survivors it
visits), with the map's derived facts (``unsafe``,
``urgent``, a drone's ``recalled``) in each feature's properties, so any GIS tool or
the ground station can draw the agreed map. Foreign members (RFC 7946 section 6.1):
``map_version``, ``route_margin_m`` and ``recall`` (``{"all": bool, "drones": [ids]}``,
who is ordered home).

RFC 7946 rules followed (section numbers of the RFC):

* positions are [longitude, latitude] in WGS84 (3.1.1); an optional third element
  would be height above the ellipsoid, which our altitudes are not (route altitudes
  are relative to home, home altitudes above mean sea level), so positions are 2-D
  and altitudes go in properties;
* linear rings are closed, with at least four positions (3.1.6);
* exterior rings are counter-clockwise and holes clockwise (3.1.6), via
  ``shapely.geometry.polygon.orient``;
* no ``crs`` member (4); ``bbox`` is [west, south, east, north] (5);
* a Feature has ``geometry`` and ``properties`` members (3.2);
* coordinates carry 6 decimal places (about 10 cm, as 11.2 suggests), so files written
  by two machines from the same map compare equal byte for byte; a ring that 6
  decimals would collapse or turn keeps the map's own 7.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry.polygon import orient

from .commands import canonical_json
from .state import EvacuationMap, MapView

__all__ = ["map_to_geojson", "geojson_bytes", "write_geojson", "rfc7946_problems"]

# RFC 7946 section 11.2: "6 decimal places ... ~10 centimeters" is enough for GIS use;
# the map itself keeps 1e-7 degree (MAVLink degE7). Rounding is done on the map's own
# decimal values (round-half-even of the shortest repr), so every drone writes the
# same text.
_DIGITS = 6
_MAP_DIGITS = 7


def _position(x: float, y: float, digits: int = _DIGITS) -> list[float]:
    return [round(x, digits) + 0.0, round(y, digits) + 0.0]


def _ring_positions(coords: Sequence[tuple[float, float]], ccw: bool) -> list[list[float]]:
    """A closed ring at 6 decimals, consecutive repeats dropped; at the map's 7 when
    rounding would collapse it or turn its winding (a ring a few decimetres across)."""
    for digits in (_DIGITS, _MAP_DIGITS):
        out: list[list[float]] = []
        for x, y in coords:
            p = _position(x, y, digits)
            if not out or p != out[-1]:
                out.append(p)
        if len(out) >= 4 and out[0] == out[-1] and (_shoelace(out) > 0) == ccw \
                and _shoelace(out) != 0:
            return out
    return [_position(x, y, _MAP_DIGITS) for x, y in coords]


def _shoelace(ring: Sequence[Sequence[float]]) -> float:
    return sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:]))


def _polygon_geometry(polygon: shapely.Polygon) -> dict[str, Any]:
    oriented = orient(polygon, sign=1.0)  # exterior CCW, holes CW (RFC 7946 3.1.6)
    return {
        "type": "Polygon",
        "coordinates": [_ring_positions(oriented.exterior.coords, ccw=True)]
        + [_ring_positions(hole.coords, ccw=False) for hole in oriented.interiors],
    }


def _feature(kind: str, ident: str, geometry: dict[str, Any], props: dict[str, Any]) -> dict:
    return {
        "type": "Feature",
        "id": f"{kind}:{ident}",
        "geometry": geometry,
        "properties": {"kind": kind, "id": ident, **props},
    }


def map_to_geojson(source: EvacuationMap | MapView) -> dict[str, Any]:
    """The whole map as a GeoJSON FeatureCollection (a plain dict).

    Features are ordered by kind then id, so the same map gives the same document.
    ``map_version`` (a foreign member, RFC 7946 section 6.1) is the map's version.
    """
    view = source.view() if isinstance(source, EvacuationMap) else source
    features: list[dict[str, Any]] = []
    if view.search_area is not None:
        features.append(_feature("search_area", "search_area",
                                 _polygon_geometry(view.search_area.polygon), {}))
    for zid in sorted(view.zones):
        zone = view.zones[zid]
        features.append(_feature("zone", zid, _polygon_geometry(zone.polygon), {
            "status": zone.status.value,
            "hazard": zone.is_hazard,
            "source": zone.source,
            "time_ms": zone.time_ms,
        }))
    for rid in sorted(view.routes):
        route = view.routes[rid]
        features.append(_feature("route", rid, {
            "type": "LineString",
            "coordinates": [_position(lon, lat) for lon, lat, _ in route.path],
        }, {
            "priority": route.priority,
            "unsafe": route.unsafe,
            "crosses": list(route.crosses),
            "alt_m_above_home": [alt for _, _, alt in route.path],
        }))
    for sid in sorted(view.survivors):
        s = view.survivors[sid]
        features.append(_feature("survivor", sid, {
            "type": "Point", "coordinates": _position(*s.position),
        }, {
            "count": s.count,
            "confidence": s.confidence,
            "status": s.status.value,
            "urgent": s.urgent,
            "inside": list(s.inside),
            "reporter": s.reporter,
            "time_ms": s.time_ms,
        }))
    for did in sorted(view.drones):
        d = view.drones[did]
        features.append(_feature("drone_home", did, {
            "type": "Point", "coordinates": _position(d.home[0], d.home[1]),
        }, {
            "task": d.task.value,
            "alive": d.alive,
            "busy": d.busy,
            "recalled": view.recall.covers(did),
            "home_alt_m_amsl": d.home[2],
        }))
    assignment = view.assignment
    if assignment is not None:  # the committed share of the search area, per drone
        visits = dict(assignment.survivors)
        for did, polygons in sorted(assignment.sectors):
            features.append(_feature("sector", did, {
                "type": "MultiPolygon",
                "coordinates": [_polygon_geometry(shapely.Polygon(p[0], p[1:]))["coordinates"]
                                for p in polygons],
            }, {
                "epoch": assignment.epoch,
                "current": view.assignment_is_current,
                "survivors": list(visits.get(did, ())),
            }))
    collection: dict[str, Any] = {
        "type": "FeatureCollection",
        "map_version": view.version,
        "route_margin_m": view.route_margin_m,
        # Who is ordered home (recall/resume): all drones, and/or the named ones.
        "recall": view.recall.to_json(),
        "features": features,
    }
    if features:
        collection["bbox"] = _bbox(features)
    return collection


def _bbox(features: Sequence[dict[str, Any]]) -> list[float]:
    xs: list[float] = []
    ys: list[float] = []
    for feature in features:
        for x, y in _positions(feature["geometry"]):
            xs.append(x)
            ys.append(y)
    return [min(xs), min(ys), max(xs), max(ys)]


def _positions(geometry: dict[str, Any]) -> list[tuple[float, float]]:
    coords = geometry["coordinates"]
    kind = geometry["type"]
    if kind == "Point":
        return [(coords[0], coords[1])]
    if kind == "LineString":
        return [(p[0], p[1]) for p in coords]
    if kind == "MultiPolygon":
        return [(p[0], p[1]) for polygon in coords for ring in polygon for p in ring]
    return [(p[0], p[1]) for ring in coords for p in ring]


def geojson_bytes(source: EvacuationMap | MapView) -> bytes:
    """The map's GeoJSON, canonically encoded (identical on every drone)."""
    return canonical_json(map_to_geojson(source))


def write_geojson(source: EvacuationMap | MapView, path: str | Path) -> Path:
    """Write the map's GeoJSON to ``path`` (atomically: temp file then rename)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(geojson_bytes(source))
    tmp.replace(target)
    return target


# --------------------------------------------------------------- RFC 7946 checker

_GEOMETRY_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
                   "MultiPolygon", "GeometryCollection"}


def rfc7946_problems(doc: Any) -> list[str]:
    """Every way ``doc`` (a decoded GeoJSON object) breaks RFC 7946; empty if none.

    Checks the structural rules (types and members, sections 3 and 5), positions
    (3.1.1: 2 or 3 finite numbers, longitude in [-180, 180], latitude in [-90, 90]),
    LineStrings of two or more positions (3.1.4), linear rings closed with four or
    more positions and wound by the right-hand rule (3.1.6), and the absence of
    ``crs`` (4). Winding is computed with the shoelace formula, independently of
    shapely.
    """
    problems: list[str] = []
    _check_object(doc, "$", problems)
    return problems


def _check_object(obj: Any, where: str, out: list[str]) -> None:
    if not isinstance(obj, dict):
        out.append(f"{where}: a GeoJSON object must be a JSON object")
        return
    if "crs" in obj:
        out.append(f"{where}: 'crs' member is not allowed (RFC 7946 section 4)")
    kind = obj.get("type")
    if "bbox" in obj:
        _check_bbox(obj["bbox"], f"{where}.bbox", out)
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            out.append(f"{where}: FeatureCollection needs a 'features' array (3.3)")
            return
        for i, feature in enumerate(features):
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                out.append(f"{where}.features[{i}]: must be a Feature (3.3)")
                continue
            _check_object(feature, f"{where}.features[{i}]", out)
    elif kind == "Feature":
        if "geometry" not in obj:
            out.append(f"{where}: Feature needs a 'geometry' member (3.2)")
        elif obj["geometry"] is not None:
            _check_geometry(obj["geometry"], f"{where}.geometry", out)
        if "properties" not in obj:
            out.append(f"{where}: Feature needs a 'properties' member (3.2)")
        elif obj["properties"] is not None and not isinstance(obj["properties"], dict):
            out.append(f"{where}.properties: must be an object or null (3.2)")
        if "id" in obj and (isinstance(obj["id"], bool)
                            or not isinstance(obj["id"], (str, int, float))):
            out.append(f"{where}.id: must be a string or number (3.2)")
    elif isinstance(kind, str) and kind in _GEOMETRY_TYPES:  # (a list is unhashable)
        _check_geometry(obj, where, out)
    else:
        out.append(f"{where}: unknown or missing 'type' {kind!r}")


def _check_bbox(bbox: Any, where: str, out: list[str]) -> None:
    if not isinstance(bbox, list) or len(bbox) not in (4, 6) or not all(
        _is_number(v) for v in bbox
    ):
        out.append(f"{where}: must be 4 or 6 numbers (5)")
        return
    half = len(bbox) // 2
    if not -90 <= bbox[1] <= bbox[half + 1] <= 90:
        out.append(f"{where}: south must not exceed north, both within [-90, 90] (5)")


def _is_number(value: Any) -> bool:
    # An int is compared, not converted: math.isfinite raises OverflowError on one no
    # float holds (10**400 is valid JSON), and the checker must only ever report.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= sys.float_info.max if isinstance(value, int) else math.isfinite(value)


def _check_position(pos: Any, where: str, out: list[str]) -> bool:
    if not isinstance(pos, list) or len(pos) not in (2, 3) or not all(
        _is_number(v) for v in pos
    ):
        out.append(f"{where}: a position is 2 or 3 finite numbers (3.1.1)")
        return False
    if not -180 <= pos[0] <= 180 or not -90 <= pos[1] <= 90:
        out.append(f"{where}: {pos[:2]} is not [longitude, latitude] in range (3.1.1)")
        return False
    return True


def _signed_area(ring: list[list[float]]) -> float:
    return 0.5 * sum(
        ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1] for i in range(len(ring) - 1)
    )


def _check_ring(ring: Any, where: str, exterior: bool, out: list[str]) -> None:
    if not isinstance(ring, list) or len(ring) < 4:
        out.append(f"{where}: a linear ring needs four or more positions (3.1.6)")
        return
    if not all(_check_position(p, f"{where}[{i}]", out) for i, p in enumerate(ring)):
        return
    if ring[0] != ring[-1]:
        out.append(f"{where}: linear ring is not closed (first != last, 3.1.6)")
        return
    area = _signed_area(ring)
    if exterior and area <= 0:
        out.append(f"{where}: exterior ring must be counter-clockwise (3.1.6)")
    if not exterior and area >= 0:
        out.append(f"{where}: hole must be clockwise (3.1.6)")


def _check_geometry(geom: Any, where: str, out: list[str]) -> None:
    if not isinstance(geom, dict):
        out.append(f"{where}: geometry must be an object")
        return
    kind = geom.get("type")
    if not isinstance(kind, str) or kind not in _GEOMETRY_TYPES:
        out.append(f"{where}: unknown geometry type {kind!r} (3.1)")
        return
    if kind == "GeometryCollection":
        members = geom.get("geometries")
        if not isinstance(members, list):
            out.append(f"{where}: GeometryCollection needs 'geometries' (3.1.8)")
            return
        for i, member in enumerate(members):
            _check_geometry(member, f"{where}.geometries[{i}]", out)
        return
    coords = geom.get("coordinates")
    if not isinstance(coords, list):
        out.append(f"{where}: missing 'coordinates' array (3.1)")
        return
    if kind == "Point":
        _check_position(coords, f"{where}.coordinates", out)
    elif kind in ("MultiPoint", "LineString"):
        if kind == "LineString" and len(coords) < 2:
            out.append(f"{where}: a LineString needs two or more positions (3.1.4)")
        for i, p in enumerate(coords):
            _check_position(p, f"{where}.coordinates[{i}]", out)
    elif kind == "MultiLineString":
        for j, line in enumerate(coords):
            _check_geometry({"type": "LineString", "coordinates": line},
                            f"{where}.coordinates[{j}]", out)
    elif kind == "Polygon":
        if not coords:
            out.append(f"{where}: a Polygon needs at least its exterior ring (3.1.6)")
        for i, ring in enumerate(coords):
            _check_ring(ring, f"{where}.coordinates[{i}]", i == 0, out)
    elif kind == "MultiPolygon":
        for j, polygon in enumerate(coords):
            _check_geometry({"type": "Polygon", "coordinates": polygon},
                            f"{where}.coordinates[{j}]", out)
