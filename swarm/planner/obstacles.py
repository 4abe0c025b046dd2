"""Hazard zones turned into what the planner avoids and what the autopilot enforces.

For each burning or burned zone, in the local metric frame (nested, each containing
the one before):

1. ``buffered``: the zone grown by the safety margin (shapely round buffer, its arcs
   circumscribing the true circle so it contains every point within the margin). This
   is the area a path must never enter.
2. ``fence``: a polygon of at most ``fence_max_vertices`` vertices containing
   ``buffered`` (its exterior: holes are filled, since an island inside a fire is no
   place to send a drone). Built as "simplify, then grow back": Douglas-Peucker with
   tolerance t keeps every point of the original boundary within t of the simplified
   one, so growing the simplified polygon by t (mitre joins, which add no vertices at
   convex corners) contains the original; a small pad absorbs the degE7 rounding of
   the uploaded vertices (about 1 cm). Containment is then checked, not assumed: if it
   fails, or the vertex bound is not met, t doubles (bounded), and the last resort is
   the minimum rotated rectangle (4 vertices, always containing). The fence is
   uploaded as MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION items.
3. ``keepout``: the fence grown by ``fence_clearance_m``. Paths must not touch it, so
   they stay that far from the fence and GPS error does not trip the autopilot's fence
   action.
4. ``nodes``: the fence grown a little more. Its convex vertices are the nodes of the
   visibility graph and its boundary bounds the survey area, so every waypoint is
   strictly outside ``keepout``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
import shapely.ops
from shapely.strtree import STRtree

from mavlink_bridge.plan import (
    CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION,
    FRAME_GLOBAL,
    MissionItem,
)

from ..geo import LocalFrame, circumscribing_buffer_distance
from .model import PlannerConfig, PlannerMap

__all__ = ["Obstacles", "build_obstacles", "bounded_fence"]

# Extra growth of the fence beyond the simplification tolerance: covers degE7 rounding
# of fence vertices (<= 1.1 cm) with room to spare.
_FENCE_PAD_M = 0.05
# How far graph nodes sit outside the keep-out polygons.
_NODE_OFFSET_M = 0.5
_MAX_SIMPLIFY_ROUNDS = 8


def bounded_fence(buffered: shapely.Polygon, max_vertices: int,
                  tolerance_m: float) -> shapely.Polygon:
    """A polygon of at most ``max_vertices`` distinct vertices that contains ``buffered``."""
    return _bounded_fences(np.array([buffered], dtype=object), max_vertices, tolerance_m)[0]


def _bounded_fences(buffered: np.ndarray, max_vertices: int,
                    tolerance_m: float) -> list[shapely.Polygon]:
    """:func:`bounded_fence` for an array of polygons, one vectorised round per tolerance."""
    filled = shapely.polygons(shapely.get_exterior_ring(buffered))
    out: list[shapely.Polygon | None] = [None] * len(filled)
    pending = np.arange(len(filled))
    tol = tolerance_m
    for _ in range(_MAX_SIMPLIFY_ROUNDS):
        if len(pending) == 0:
            break
        # Plain Douglas-Peucker (10x faster than the topology-preserving variant); a
        # self-intersecting result is caught by the validity and containment checks.
        simple = shapely.simplify(filled[pending], tol, preserve_topology=False)
        grown = shapely.buffer(simple, tol + _FENCE_PAD_M, join_style="mitre", mitre_limit=5.0)
        is_poly = (shapely.get_type_id(grown) == 3) & ~shapely.is_empty(grown)
        ok = np.zeros(len(pending), dtype=bool)
        if is_poly.any():
            rings = shapely.polygons(shapely.get_exterior_ring(grown[is_poly]))
            fits = ((shapely.get_num_coordinates(rings) - 1 <= max_vertices)
                    & shapely.is_valid(rings) & shapely.contains(rings, filled[pending[is_poly]]))
            for k, r, f in zip(np.flatnonzero(is_poly), rings, fits):
                if f:
                    out[pending[k]] = shapely.normalize(r)
                    ok[k] = True
        pending = pending[~ok]
        tol *= 2.0
    for i in pending:
        # Last resort: 4 vertices, containing by construction; grown by the pad.
        rect = shapely.minimum_rotated_rectangle(filled[i])
        rect = shapely.buffer(rect, _FENCE_PAD_M, join_style="mitre")
        out[i] = shapely.normalize(shapely.Polygon(rect.exterior))
    return out  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Obstacles:
    """Everything derived from the hazard zones of one map version, in one frame."""

    frame: LocalFrame
    zone_ids: tuple[str, ...]
    fence_items: tuple[tuple[MissionItem, ...], ...]  # per zone, ready to upload
    zones: tuple[shapely.Polygon, ...]  # the hazard zones themselves, unbuffered
    buffered: tuple[shapely.Polygon, ...]
    fences: tuple[shapely.Polygon, ...]
    keepout: tuple[shapely.Polygon, ...]
    nodes_poly: tuple[shapely.Polygon, ...]
    keepout_tree: STRtree
    keepout_union: shapely.Geometry  # union of keepout, prepared
    nodes_tree: STRtree  # over nodes_poly
    # Visibility-graph nodes: convex vertices of ``nodes_poly`` that are outside every
    # keep-out polygon, with their ring neighbours (for the tangent test).
    node_xy: np.ndarray  # (M, 2)
    node_prev: np.ndarray  # (M, 2)
    node_next: np.ndarray  # (M, 2)
    node_free: np.ndarray  # (M,) outside every node polygon's interior

    @property
    def empty(self) -> bool:
        return not self.zone_ids

    def blocked(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """For segments a[i]->b[i] (arrays (K, 2)): True where one touches a keep-out."""
        k = len(a)
        if k == 0 or self.empty:
            return np.zeros(k, dtype=bool)
        segments = shapely.linestrings(np.stack([a, b], axis=1))
        # One prepared union (indexed edges) answers a batch several times faster than
        # per-polygon STRtree candidates when segments are long.
        return shapely.intersects(self.keepout_union, segments)

    def segment_clear(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        return not bool(self.blocked(np.array([a], dtype=float), np.array([b], dtype=float))[0])

    def point_blocked(self, p: tuple[float, float]) -> bool:
        """True if ``p`` is inside or on a keep-out polygon."""
        if self.empty:
            return False
        return len(self.keepout_tree.query(shapely.Point(p), predicate="intersects")) > 0

    def zones_containing(self, p: tuple[float, float]) -> list[str]:
        """Ids of zones whose keep-out contains or touches ``p``."""
        if self.empty:
            return []
        idx = self.keepout_tree.query(shapely.Point(p), predicate="intersects")
        return sorted(self.zone_ids[i] for i in idx)

    def crosses_fire(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        """True if segment a-b touches a hazard zone itself (not just its margin)."""
        seg = shapely.LineString([a, b]) if a != b else shapely.Point(a)
        return any(z.intersects(seg) for z in self.zones)

    def in_fire(self, p: tuple[float, float]) -> bool:
        point = shapely.Point(p)
        return any(z.intersects(point) for z in self.zones)

    def fences_containing(self, p: tuple[float, float]) -> list[int]:
        point = shapely.Point(p)
        return [i for i, f in enumerate(self.fences) if f.intersects(point)]

    def inside_nodes(self, p: tuple[float, float]) -> bool:
        """True if ``p`` is in the interior of a node polygon."""
        return len(self.nodes_tree.query(shapely.Point(p), predicate="within")) > 0

    def nodes_near(self, geometry: shapely.Geometry) -> shapely.Geometry:
        """Union of the node polygons that touch ``geometry`` (enough to subtract them
        from it; cheaper than the union of all)."""
        idx = self.nodes_tree.query(geometry, predicate="intersects")
        return shapely.union_all([self.nodes_poly[i] for i in sorted(idx)])

    def nearest_free_point(self, p: tuple[float, float]) -> tuple[float, float]:
        """``p`` itself if it is outside every node polygon, else the nearest point
        outside all of them (on the boundary of their union, so outside every keep-out).

        Grows the set of polygons from those containing ``p``: the nearest boundary
        point of a partial union that lies in no further polygon is on the boundary of
        the whole union, and no point outside the whole union is nearer (the outside
        of the whole is inside the outside of the part)."""
        point = shapely.Point(p)
        chosen = set(self.nodes_tree.query(point, predicate="intersects").tolist())
        if not chosen:
            return p
        for _ in range(len(self.nodes_poly)):
            union = shapely.union_all([self.nodes_poly[i] for i in sorted(chosen)])
            q = shapely.ops.nearest_points(union.boundary, point)[0]
            more = set(self.nodes_tree.query(q, predicate="intersects").tolist()) - chosen
            # A polygon merely touching q at its boundary is fine; only interiors count.
            more = {i for i in more if self.nodes_poly[i].contains(q)}
            if not more:
                return (q.x, q.y)
            chosen |= more
        return (q.x, q.y)


def build_obstacles(view: PlannerMap, frame: LocalFrame, config: PlannerConfig) -> Obstacles:
    """Derive buffered zones, fences, keep-outs and graph nodes (zones in id order)."""
    hazards = [z for z in view.zones if z.hazard]
    ids = tuple(z.id for z in hazards)
    if not hazards:
        return Obstacles(frame, (), (), (), (), (), (), (), STRtree([]),
                         shapely.GeometryCollection(), STRtree([]),
                         np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)),
                         np.zeros(0, dtype=bool))
    # One pymap3d call for every vertex of every zone.
    local = frame.geometry_to_enu(np.array([z.polygon for z in hazards], dtype=object))
    # A round buffer's arcs are chords inscribed in the true circle; growing by the
    # circumscribing distance puts every chord at least the margin out, so the polygon
    # contains the true zone-plus-margin (the Minkowski sum with a disc) rather than
    # approximating it (see swarm.geo.circumscribing_buffer_distance).
    q = config.buffer_quad_segs
    buffered = shapely.buffer(local, circumscribing_buffer_distance(config.safety_margin_m, q),
                              quad_segs=q)
    fences = _bounded_fences(buffered, config.fence_max_vertices, config.fence_simplify_tolerance_m)
    fence_arr = np.array(fences, dtype=object)
    keepout = shapely.buffer(fence_arr, config.fence_clearance_m, join_style="mitre",
                             mitre_limit=5.0)
    nodes_poly = shapely.buffer(fence_arr, config.fence_clearance_m + _NODE_OFFSET_M,
                                join_style="mitre", mitre_limit=5.0)
    # Mitre buffers of simple polygons are simple polygons; keep exteriors only.
    keepout = list(shapely.polygons(shapely.get_exterior_ring(keepout)))
    nodes_poly = list(shapely.orient_polygons(
        shapely.polygons(shapely.get_exterior_ring(nodes_poly))))
    tree = STRtree(keepout)
    keepout_union = _checked_union(keepout)

    xy_parts, prev_parts, next_parts = [], [], []
    for poly in nodes_poly:
        ring = np.asarray(poly.exterior.coords)[:-1]  # counter-clockwise, not closed
        prev = np.roll(ring, 1, axis=0)
        nxt = np.roll(ring, -1, axis=0)
        turn = _cross(ring - prev, nxt - ring)
        convex = turn > 0  # left turn on a CCW ring; reflex vertices are never on a
        # shortest path (it would be shortened by cutting the corner).
        xy_parts.append(ring[convex])
        prev_parts.append(prev[convex])
        next_parts.append(nxt[convex])
    node_xy = np.concatenate(xy_parts)
    node_prev = np.concatenate(prev_parts)
    node_next = np.concatenate(next_parts)
    # A node inside another zone's keep-out can never be stood on.
    inside = tree.query(shapely.points(node_xy), predicate="intersects")[0]
    keep = np.ones(len(node_xy), dtype=bool)
    keep[inside] = False
    node_xy, node_prev, node_next = node_xy[keep], node_prev[keep], node_next[keep]
    nodes_tree = STRtree(nodes_poly)
    # A vertex on its own ring is not "within" its polygon; within another one it is.
    crowded = nodes_tree.query(shapely.points(node_xy), predicate="within")[0]
    free = np.ones(len(node_xy), dtype=bool)
    free[crowded] = False
    return Obstacles(
        frame=frame, zone_ids=ids, fence_items=_fence_items(fence_arr, frame),
        zones=tuple(local), buffered=tuple(buffered), fences=tuple(fences),
        keepout=tuple(keepout), nodes_poly=tuple(nodes_poly), keepout_tree=tree,
        keepout_union=keepout_union, nodes_tree=nodes_tree,
        node_xy=node_xy, node_prev=node_prev, node_next=node_next, node_free=free,
    )


def _checked_union(polygons: list[shapely.Polygon]) -> shapely.Geometry:
    """The union of ``polygons``, prepared, for fast "does this segment touch any"
    queries. Overlay can go wrong on nearly coincident input (GEOS has returned a union
    missing a whole polygon in our tests), and a keep-out missing from it would let a
    path through, so the union is checked: every input vertex must lie on or within a
    micrometre of it. Otherwise the polygons are kept as a collection, which needs no
    overlay (3-4x slower to query)."""
    union = shapely.union_all(polygons)
    vertices = shapely.points(np.concatenate(
        [np.asarray(p.exterior.coords) for p in polygons]))
    shapely.prepare(union)
    if not shapely.dwithin(union, vertices, 1e-6).all() or \
            union.area < max(p.area for p in polygons) * (1 - 1e-9):
        union = shapely.GeometryCollection(polygons)
        shapely.prepare(union)
    return union


def _fence_items(fences: np.ndarray, frame: LocalFrame) -> tuple[tuple[MissionItem, ...], ...]:
    """Each fence as MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION items (param1 = vertex
    count, MAVLink common.xml), wound clockwise as QGroundControl's plan format
    documents (ArduPilot accepts either winding). The local frame preserves
    orientation, so clockwise in metres is clockwise on the map."""
    cw = shapely.orient_polygons(fences, exterior_cw=True)
    rings = [np.asarray(p.exterior.coords)[:-1] for p in cw]
    lon, lat = frame.to_geodetic(np.concatenate([r[:, 0] for r in rings]),
                                 np.concatenate([r[:, 1] for r in rings]))
    out, k = [], 0
    for r in rings:
        n = len(r)
        out.append(tuple(
            MissionItem(command=CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, frame=FRAME_GLOBAL,
                        param1=float(n), x=round(float(la) * 1e7), y=round(float(lo) * 1e7))
            for la, lo in zip(lat[k:k + n], lon[k:k + n])))
        k += n
    return tuple(out)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
