"""Derived facts every drone computes, decided with exact arithmetic (issue 13).

"Route unsafe" and "survivor urgent" are computed on every replica, so they must not
depend on the platform's floating point (a fused multiply-add on aarch64, a GEOS
upgrade on one drone). They are decided here on quantised inputs, the map's own degE7
integers, with predicates in Python integers:

* **survivor covered by a zone** (urgent): point in polygon, boundary included, on the
  degE7 lon/lat plane (the map's polygons are planar lon/lat rings, as shapely reads
  them). Orientation signs of integer cross products are exact.
* **route within the margin of a zone** (unsafe): the zone and route are projected into
  a local frame with a deterministic integer projection: equirectangular at the zone's
  bounding-box centre (integer degE7), with scale factors (nanometres per degE7 of
  longitude and of latitude, from the WGS84 radii of curvature) computed in
  :mod:`decimal` arithmetic, which is correctly rounded software arithmetic and so
  identical everywhere. Coordinates are then integers (nanometres), and "distance <=
  margin" is decided with integer squared distances between segments.

Floating point is still used to go fast, but never to decide: GEOS computes the same
distance (in float, from the same integers) and only a result within ``_SLACK`` of the
threshold, where a last-bit difference could matter, is decided exactly. Far from it
every machine's float agrees with the exact answer, so the result is the same.

Accuracy of the projection (not of the decision, which is exact for the projected
geometry): within a zone's own extent its distortion is below 0.5% of the distance
from the zone's centre in latitude, which for the margin (50 m) near a zone a few km
across is centimetres.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Sequence

import numpy as np
import shapely

__all__ = ["ExactPath", "ExactRing", "e7", "point_covered", "points_covered", "points_covered_e7",
           "route_within"]

IntPoint = tuple[int, int]

_SLACK_M = 0.01
_SLACK_DEG = 1e-9
_WGS84_A = decimal.Decimal(6378137)
_WGS84_F = decimal.Decimal(1) / decimal.Decimal("298.257223563")
_PI = decimal.Decimal("3.14159265358979323846264338327950288419716939937510")
_CTX = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)


def e7(value: float) -> int:
    """A map coordinate (rounded to 7 decimals at construction) as degE7. One IEEE
    multiplication and a round: correctly rounded, so identical on every platform."""
    return int(round(value * 1e7))


def _sin_cos(x: decimal.Decimal) -> tuple[decimal.Decimal, decimal.Decimal]:
    """Taylor series in decimal (|x| <= pi/2): deterministic, 40 digits."""
    with decimal.localcontext(_CTX):
        sin = term = x
        cos = cterm = decimal.Decimal(1)
        x2 = x * x
        for n in range(1, 40):
            term = -term * x2 / ((2 * n) * (2 * n + 1))
            cterm = -cterm * x2 / ((2 * n - 1) * (2 * n))
            sin += term
            cos += cterm
        return +sin, +cos


@functools.lru_cache(maxsize=4096)
def _scales(lat0_e7: int) -> tuple[int, int]:
    """(nanometres per degE7 of longitude, of latitude) at latitude ``lat0_e7``."""
    with decimal.localcontext(_CTX):
        phi = decimal.Decimal(lat0_e7) / decimal.Decimal(10**7) * _PI / 180
        sin, cos = _sin_cos(phi)
        e2 = _WGS84_F * (2 - _WGS84_F)
        w = (1 - e2 * sin * sin).sqrt()
        n = _WGS84_A / w  # prime vertical radius of curvature
        m = _WGS84_A * (1 - e2) / (w * w * w)  # meridional radius of curvature
        per_e7 = _PI / 180 / decimal.Decimal(10**7) * decimal.Decimal(10**9)
        kx = (n * cos * per_e7).to_integral_value()
        ky = (m * per_e7).to_integral_value()
        return max(int(kx), 1), int(ky)


class ExactRing:
    """A zone's ring in degE7, with its integer projection and a float twin for the
    fast path. Built once per zone."""

    __slots__ = ("points", "lon0", "lat0", "kx", "ky", "xy", "local", "lonlat", "bounds")

    def __init__(self, ring: Sequence[tuple[float, float]]) -> None:
        self.points: list[IntPoint] = [(e7(lon), e7(lat)) for lon, lat in ring]  # closed
        lons = [p[0] for p in self.points]
        lats = [p[1] for p in self.points]
        self.lon0 = (min(lons) + max(lons)) // 2
        self.lat0 = (min(lats) + max(lats)) // 2
        self.kx, self.ky = _scales(self.lat0)
        self.xy = [self.project(p) for p in self.points]
        self.local = shapely.Polygon(np.array(self.xy, dtype=float) / 1e9)
        self.lonlat = shapely.Polygon(np.array(self.points, dtype=float))
        shapely.prepare(self.local)
        shapely.prepare(self.lonlat)
        self.bounds = (min(lons), min(lats), max(lons), max(lats))

    def project(self, p: IntPoint) -> IntPoint:
        """Nanometres east and north of the zone's centre (exact integers)."""
        return ((p[0] - self.lon0) * self.kx, (p[1] - self.lat0) * self.ky)

    def margin_e7(self, margin_m: float) -> tuple[int, int]:
        """The margin in degE7 of longitude and latitude, rounded up (for bbox tests)."""
        nm = int(margin_m * 1e9) + 1
        return nm // self.kx + 2, nm // self.ky + 2


class ExactPath:
    """A route's path in degE7 with its bounding box. Built once per route, so testing
    it against every zone does not re-quantise it each time."""

    __slots__ = ("points", "bounds")

    def __init__(self, path: Sequence[tuple[float, float]]) -> None:
        self.points: list[IntPoint] = [(e7(lon), e7(lat)) for lon, lat in path]
        lons = [p[0] for p in self.points]
        lats = [p[1] for p in self.points]
        self.bounds = (min(lons), min(lats), max(lons), max(lats))


# ------------------------------------------------------------------ exact predicates


def _orient(a: IntPoint, b: IntPoint, c: IntPoint) -> int:
    v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return (v > 0) - (v < 0)


def _on_segment(a: IntPoint, b: IntPoint, p: IntPoint) -> bool:
    return (_orient(a, b, p) == 0 and min(a[0], b[0]) <= p[0] <= max(a[0], b[0])
            and min(a[1], b[1]) <= p[1] <= max(a[1], b[1]))


def _segments_meet(a: IntPoint, b: IntPoint, c: IntPoint, d: IntPoint) -> bool:
    o1, o2, o3, o4 = _orient(a, b, c), _orient(a, b, d), _orient(c, d, a), _orient(c, d, b)
    if o1 != o2 and o3 != o4 and o1 * o2 <= 0 and o3 * o4 <= 0:
        return True
    return (_on_segment(a, b, c) or _on_segment(a, b, d) or _on_segment(c, d, a)
            or _on_segment(c, d, b))


def _covers(ring: Sequence[IntPoint], p: IntPoint) -> bool:
    """Point in a closed ring, boundary included (crossing number, exact)."""
    inside = False
    for a, b in zip(ring, ring[1:]):
        if _on_segment(a, b, p):
            return True
        if (a[1] > p[1]) != (b[1] > p[1]):
            # Sign of the crossing's x relative to p, without division.
            cross = (b[0] - a[0]) * (p[1] - a[1]) - (p[0] - a[0]) * (b[1] - a[1])
            if (cross > 0) == (b[1] > a[1]):
                inside = not inside
    return inside


def _point_segment_within(p: IntPoint, a: IntPoint, b: IntPoint, r2: int) -> bool:
    """|p - segment ab|^2 <= r2, exactly."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    wx, wy = p[0] - a[0], p[1] - a[1]
    t = wx * dx + wy * dy
    dd = dx * dx + dy * dy
    if t <= 0 or dd == 0:
        return wx * wx + wy * wy <= r2
    if t >= dd:
        ux, uy = p[0] - b[0], p[1] - b[1]
        return ux * ux + uy * uy <= r2
    return (wx * wx + wy * wy) * dd - t * t <= r2 * dd


def _path_within_exact(path: Sequence[IntPoint], ring: Sequence[IntPoint], r2: int) -> bool:
    if any(_covers(ring, p) for p in path):
        return True
    edges = list(zip(ring, ring[1:]))
    for a, b in zip(path, path[1:]):
        for c, d in edges:
            if (_segments_meet(a, b, c, d) or _point_segment_within(a, c, d, r2)
                    or _point_segment_within(b, c, d, r2) or _point_segment_within(c, a, b, r2)
                    or _point_segment_within(d, a, b, r2)):
                return True
    return False


# ------------------------------------------------------------------ the two facts


def point_covered(zone: ExactRing, lon: float, lat: float) -> bool:
    """Is the point inside the zone or on its edge (degE7 plane, exact)?"""
    p = (e7(lon), e7(lat))
    west, south, east, north = zone.bounds
    if not (west <= p[0] <= east and south <= p[1] <= north):
        return False
    point = shapely.Point(float(p[0]), float(p[1]))
    # Fast path, in degE7 units, only when far from the boundary.
    if float(shapely.distance(zone.lonlat.exterior, point)) > _SLACK_DEG * 1e7:
        return bool(zone.lonlat.covers(point))
    return _covers(zone.points, p)


def points_covered(zone: ExactRing, lonlat: np.ndarray) -> np.ndarray:
    """:func:`point_covered` for an (N, 2) array of lon/lat, vectorised where it can."""
    if len(lonlat) == 0:
        return np.zeros(0, dtype=bool)
    return points_covered_e7(zone, np.rint(np.asarray(lonlat, dtype=float) * 1e7).astype(np.int64))


def points_covered_e7(zone: ExactRing, p: np.ndarray) -> np.ndarray:
    """:func:`points_covered` for an (N, 2) int64 array of degE7 (as :func:`e7` gives)."""
    out = np.zeros(len(p), dtype=bool)
    if len(p) == 0:
        return out
    west, south, east, north = zone.bounds
    cand = np.flatnonzero((p[:, 0] >= west) & (p[:, 0] <= east)
                          & (p[:, 1] >= south) & (p[:, 1] <= north))
    if len(cand) == 0:
        return out
    pts = shapely.points(p[cand].astype(float))
    far = shapely.distance(zone.lonlat.exterior, pts) > _SLACK_DEG * 1e7
    fast = shapely.covers(zone.lonlat, pts)
    for k, i in enumerate(cand.tolist()):
        out[i] = bool(fast[k]) if far[k] else _covers(zone.points, (int(p[i, 0]), int(p[i, 1])))
    return out


def route_within(zone: ExactRing, path: ExactPath | Sequence[tuple[float, float]],
                 margin_m: float) -> bool:
    """Does the route come within ``margin_m`` of the zone (distance <= margin, in the
    zone's integer local frame; touching or crossing the zone counts)?"""
    if not isinstance(path, ExactPath):
        path = ExactPath(path)
    mx, my = zone.margin_e7(margin_m)
    west, south, east, north = zone.bounds
    p_west, p_south, p_east, p_north = path.bounds
    if p_east < west - mx or p_west > east + mx or p_north < south - my \
            or p_south > north + my:
        return False
    projected = [zone.project(p) for p in path.points]
    line = shapely.LineString(np.array(projected, dtype=float) / 1e9)
    distance = float(shapely.distance(zone.local, line))
    if distance > margin_m + _SLACK_M:
        return False
    if distance < margin_m - _SLACK_M:
        return True
    margin_nm = int(round(margin_m * 1e9))
    return _path_within_exact(projected, zone.xy, margin_nm * margin_nm)
