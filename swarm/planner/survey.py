"""Lawnmower (boustrophedon) coverage of a sector, clipped to stay out of the zones.

Lines run parallel to the sector's long axis (fewest turns), ``spacing`` metres apart,
the first half a spacing in from the edge so the sensor footprints tile the sector.
Each line is clipped to the sector minus the zones' node polygons, so every survey
segment lies strictly outside every keep-out; the planner routes the gaps between
segments around the zones. Of the four ways to start (either end line, either
direction) the one starting nearest the drone is chosen, ties in a fixed order.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
import shapely.affinity

from .assignment import _long_axis_angle
from .obstacles import Obstacles

__all__ = ["lawnmower"]

Point = tuple[float, float]
_MIN_SEGMENT_M = 1.0


def lawnmower(sector: shapely.Geometry, obstacles: Obstacles, spacing: float,
              start: Point, max_lines: int = 10_000) -> list[tuple[Point, Point]]:
    """Survey segments (a, b) in flying order, in the frame of ``sector``."""
    if sector.is_empty or sector.area <= 0.0:
        return []
    region = sector if obstacles.empty else shapely.difference(sector, obstacles.nodes_near(sector))
    if region.is_empty:
        return []
    angle = _long_axis_angle(sector)
    rotated = shapely.affinity.rotate(region, -angle, origin=(0.0, 0.0), use_radians=True)
    xmin, ymin, xmax, ymax = shapely.affinity.rotate(
        sector, -angle, origin=(0.0, 0.0), use_radians=True).bounds
    # A sliver under 1% of a spacing is left to the sensor footprint's overlap rather
    # than flown as an extra line along the very edge.
    count = max(1, min(max_lines, math.ceil((ymax - ymin) / spacing - 0.01)))
    # Centre the lines across the sector's width (half a spacing from each edge when
    # the width is a multiple of the spacing).
    first = (ymin + ymax) / 2.0 - (count - 1) * spacing / 2.0
    ys = first + spacing * np.arange(count)
    coords = np.zeros((count, 2, 2))
    coords[:, 0, 0], coords[:, 1, 0] = xmin - 1.0, xmax + 1.0
    coords[:, :, 1] = ys[:, None]
    shapely.prepare(rotated)
    clipped = shapely.intersection(shapely.linestrings(coords), rotated)
    rows: list[list[tuple[float, float]]] = []  # per line: (x_start, x_end) pieces
    for geom in clipped:
        pieces = []
        for part in shapely.get_parts(geom):
            if isinstance(part, shapely.LineString) and part.length >= _MIN_SEGMENT_M:
                xs = np.asarray(part.coords)[:, 0]
                pieces.append((float(xs.min()), float(xs.max())))
        rows.append(sorted(pieces))
    lines = [(y, row) for y, row in zip(ys.tolist(), rows) if row]
    if not lines:
        return []
    best: list[tuple[Point, Point]] | None = None
    best_d = math.inf
    for reverse_lines in (False, True):
        for first_left in (True, False):
            segs = _order(lines, reverse_lines, first_left)
            back = [_unrotate(a, angle) for a, _ in segs[:1]]
            d = math.dist(back[0], start)
            if d < best_d - 1e-9:
                best_d, best = d, segs
    assert best is not None
    return [(_unrotate(a, angle), _unrotate(b, angle)) for a, b in best]


def _order(lines: list[tuple[float, list[tuple[float, float]]]], reverse_lines: bool,
           first_left: bool) -> list[tuple[Point, Point]]:
    seq = list(reversed(lines)) if reverse_lines else lines
    out: list[tuple[Point, Point]] = []
    left = first_left
    for y, pieces in seq:
        if left:
            out.extend(((x0, y), (x1, y)) for x0, x1 in pieces)
        else:
            out.extend(((x1, y), (x0, y)) for x0, x1 in reversed(pieces))
        left = not left
    return out


def _unrotate(p: Point, angle: float) -> Point:
    c, s = math.cos(angle), math.sin(angle)
    return (p[0] * c - p[1] * s, p[0] * s + p[1] * c)
