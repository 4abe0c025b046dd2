"""Local metric frames for map geometry: lon/lat <-> East-North-Up metres (pymap3d, WGS84).

Distances such as a safety margin are only meaningful in metres; the map stores
lon/lat. A :class:`LocalFrame` is a tangent plane at an origin; within the map's size
limit (commands.MAX_EXTENT_M) its distortion is far below a GPS fix's error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymap3d
import shapely

__all__ = ["LocalFrame", "grow_polygon"]


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """An East-North-Up frame tangent to the WGS84 ellipsoid at (lat0, lon0, h=0)."""

    lat0: float
    lon0: float

    @classmethod
    def around(cls, geometry: shapely.Geometry) -> LocalFrame:
        """A frame centred on a lon/lat geometry's bounding box (deterministic)."""
        west, south, east, north = geometry.bounds
        return cls(lat0=(south + north) / 2.0, lon0=(west + east) / 2.0)

    def to_enu(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        east, north, _ = pymap3d.geodetic2enu(
            lat, lon, np.zeros_like(lat), self.lat0, self.lon0, 0.0
        )
        return np.asarray(east, dtype=float), np.asarray(north, dtype=float)

    def to_lonlat(self, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lat, lon, _ = pymap3d.enu2geodetic(
            east, north, np.zeros_like(east), self.lat0, self.lon0, 0.0
        )
        return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)

    def geometry_to_enu(self, geometry: shapely.Geometry) -> shapely.Geometry:
        """The same geometry with lon/lat coordinates replaced by metres east/north."""

        def forward(coords: np.ndarray) -> np.ndarray:
            east, north = self.to_enu(coords[:, 0], coords[:, 1])
            return np.column_stack([east, north])

        return shapely.transform(geometry, forward)

    def geometry_to_lonlat(self, geometry: shapely.Geometry) -> shapely.Geometry:
        def backward(coords: np.ndarray) -> np.ndarray:
            lon, lat = self.to_lonlat(coords[:, 0], coords[:, 1])
            return np.column_stack([lon, lat])

        return shapely.transform(geometry, backward)


def grow_polygon(polygon: shapely.Polygon, margin_m: float) -> shapely.Polygon:
    """``polygon`` (lon/lat) grown outward by ``margin_m`` metres, returned in lon/lat.

    Buffered in a local ENU frame centred on the polygon (round joins, 8 segments per
    quarter circle), then mapped back, so the margin is metres on the ground at any
    latitude.
    """
    if margin_m < 0:
        raise ValueError(f"margin_m={margin_m} must be >= 0")
    if margin_m == 0:
        return polygon
    frame = LocalFrame.around(polygon)
    grown = frame.geometry_to_enu(polygon).buffer(margin_m, quad_segs=8)
    return frame.geometry_to_lonlat(grown)
