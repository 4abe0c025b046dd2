"""Local metric frames shared by the map and the planner: WGS84 lon/lat <-> East-North metres.

Distances such as a route margin or a survey line spacing are only meaningful in
metres; the map stores lon/lat. A :class:`LocalFrame` is the plane tangent to the
WGS84 ellipsoid at one origin, through pymap3d's ENU conversions (nothing here is
hand-rolled trigonometry). Heights are ignored: the map and the planner work in 2-D and
treat every zone as a column from the ground up (smoke and heat rise), so points are
taken on the ellipsoid surface (h = 0). Within the map's size limit
(evacmap.commands.MAX_EXTENT_M, 100 km) the frame's distortion is far below a GPS
fix's error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pymap3d
import shapely

__all__ = ["LocalFrame", "circumscribing_buffer_distance", "grow_polygon"]


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """East-North frame tangent to the WGS84 ellipsoid at (``lat0``, ``lon0``, h = 0).

    ``to_enu`` drops the Up component of a surface point; ``to_geodetic`` puts it back
    (one refinement step through pymap3d), so the pair are inverses to well under a
    millimetre across the map sizes the evacuation map accepts (100 km), and a point
    planned in metres lands where it was planned.
    """

    lat0: float
    lon0: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lat0) and -90.0 <= self.lat0 <= 90.0):
            raise ValueError(f"frame latitude {self.lat0!r} must be within [-90, 90]")
        if not (math.isfinite(self.lon0) and -180.0 <= self.lon0 <= 180.0):
            raise ValueError(f"frame longitude {self.lon0!r} must be within [-180, 180]")

    @classmethod
    def around(cls, geometry: shapely.Geometry) -> LocalFrame:
        """A frame at the centre of a lon/lat geometry's bounding box (deterministic)."""
        west, south, east, north = geometry.bounds
        return cls(lat0=(south + north) / 2.0, lon0=(west + east) / 2.0)

    def to_enu(self, lon: np.ndarray | float, lat: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Metres east and north of the origin for surface points given in degrees."""
        lat_a = np.asarray(lat, dtype=float)
        lon_a = np.asarray(lon, dtype=float)
        east, north, _ = pymap3d.geodetic2enu(lat_a, lon_a, np.zeros_like(lat_a),
                                              self.lat0, self.lon0, 0.0)
        return np.asarray(east, dtype=float), np.asarray(north, dtype=float)

    def to_geodetic(self, east: np.ndarray | float,
                    north: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) in degrees of the surface points at ``east``/``north`` metres."""
        e = np.asarray(east, dtype=float)
        n = np.asarray(north, dtype=float)
        # A surface point lies below the tangent plane; taking Up = 0 would move it
        # sideways by ~d^3/2R^2 (1 cm at 10 km). Recover its Up from a first estimate.
        lat, lon, _ = pymap3d.enu2geodetic(e, n, np.zeros_like(e), self.lat0, self.lon0, 0.0)
        _, _, up = pymap3d.geodetic2enu(lat, lon, np.zeros_like(e), self.lat0, self.lon0, 0.0)
        lat, lon, _ = pymap3d.enu2geodetic(e, n, up, self.lat0, self.lon0, 0.0)
        return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)

    def point_to_enu(self, lon: float, lat: float) -> tuple[float, float]:
        east, north = self.to_enu(lon, lat)
        return float(east), float(north)

    def point_to_geodetic(self, east: float, north: float) -> tuple[float, float]:
        """(lon, lat) of one point."""
        lon, lat = self.to_geodetic(east, north)
        return float(lon), float(lat)

    def geometry_to_enu(self, geometry: shapely.Geometry | np.ndarray) -> shapely.Geometry | np.ndarray:
        """The same geometry (or array of geometries: one pymap3d call for all their
        vertices) with lon/lat coordinates replaced by metres east/north."""

        def forward(coords: np.ndarray) -> np.ndarray:
            east, north = self.to_enu(coords[:, 0], coords[:, 1])
            return np.column_stack([east, north])

        return shapely.transform(geometry, forward)

    def geometry_to_geodetic(self, geometry: shapely.Geometry | np.ndarray) -> shapely.Geometry | np.ndarray:
        """The same geometry with metres east/north replaced by lon/lat degrees."""

        def backward(coords: np.ndarray) -> np.ndarray:
            lon, lat = self.to_geodetic(coords[:, 0], coords[:, 1])
            return np.column_stack([lon, lat])

        return shapely.transform(geometry, backward)


def circumscribing_buffer_distance(margin_m: float, quad_segs: int) -> float:
    """The shapely/GEOS buffer distance whose round buffer contains every point within
    ``margin_m`` of the geometry.

    GEOS approximates each arc of a round buffer by chords whose vertices lie on the
    circle (OffsetSegmentGenerator::addDirectedFillet), so each chord cuts inside the
    true circle by r(1 - cos(a/2)) for a chord spanning angle a. The arc of angle A is
    split into n = round(A / q0) chords, q0 = (pi/2) / quad_segs, so a chord spans
    less than 1.5 q0 (A just under 1.5 q0 gives n = 1; an arc under q0/2 is one
    chord). Buffering by d / cos(3 q0 / 4) therefore puts every chord at least d out.
    (A distance of d / cos(q0 / 2), which assumes chords of exactly q0, reaches about
    0.3 m inside a 50 m margin at quad_segs = 8.)
    """
    if margin_m < 0:
        raise ValueError(f"margin_m={margin_m} must be >= 0")
    if isinstance(quad_segs, bool) or not isinstance(quad_segs, int) or quad_segs < 1:
        raise ValueError(f"quad_segs={quad_segs!r} must be an int >= 1")
    return margin_m / math.cos(3.0 * math.pi / (8.0 * quad_segs))


# Segments per quarter circle of the map's margin growth.
_GROW_QUAD_SEGS = 8


def grow_polygon(polygon: shapely.Polygon, margin_m: float) -> shapely.Polygon:
    """``polygon`` (lon/lat) grown outward by ``margin_m`` metres, returned in lon/lat.

    Buffered in a local ENU frame centred on the polygon (round joins, 8 segments per
    quarter circle, at :func:`circumscribing_buffer_distance` so the result contains
    every point within the margin), then mapped back, so the margin is metres on the
    ground at any latitude.
    """
    if margin_m < 0:
        raise ValueError(f"margin_m={margin_m} must be >= 0")
    if margin_m == 0:
        return polygon
    frame = LocalFrame.around(polygon)
    grown = shapely.buffer(frame.geometry_to_enu(polygon),
                           circumscribing_buffer_distance(margin_m, _GROW_QUAD_SEGS),
                           quad_segs=_GROW_QUAD_SEGS)
    return frame.geometry_to_geodetic(grown)
