"""Shortest safe paths between two points: A* on a visibility graph.

The graph's nodes are the convex vertices of the zones' node polygons (see
:mod:`swarm.planner.obstacles`), plus the start and the goal; an edge joins two nodes
when the segment between them touches no keep-out polygon. A shortest path among
polygonal obstacles bends only at obstacle vertices and leaves each of them along a
tangent (Lozano-Perez & Wesley 1979; de Berg et al., *Computational Geometry*,
ch. 15), so only tangent edges are generated: from node u, a vertex v is a candidate
when both of v's ring neighbours lie on one side of line uv, and, if u is itself a
vertex, both of u's neighbours do too. The graph is explored lazily by A* with the
straight-line distance to the goal as heuristic (admissible and consistent), so only
the nodes A* expands have their edges generated; each batch of candidate edges is
checked against the keep-outs in one vectorised STRtree query. Safety does not rest
on the pruning: every edge on the returned path was checked.

Determinism: nodes are numbered in zone-id order, heap entries are ordered by
(f, node, parent), and no hash order is ever consulted.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from .obstacles import Obstacles

__all__ = ["route"]

Point = tuple[float, float]


def route(obstacles: Obstacles, start: Point, goal: Point,
          max_expansions: int = 20_000) -> list[Point] | None:
    """The shortest path from ``start`` to ``goal`` touching no keep-out, as a list of
    points beginning with ``start`` and ending with ``goal``; None if there is none
    (or A* ran out of its expansion budget, which the caller treats the same way).

    ``start`` and ``goal`` must themselves be outside every keep-out.
    """
    if obstacles.point_blocked(start) or obstacles.point_blocked(goal):
        return None
    if math.dist(start, goal) < 1e-9 or obstacles.segment_clear(start, goal):
        return [start, goal]
    base = obstacles.node_xy
    m = len(base)
    s_idx, t_idx = m, m + 1
    xy = np.vstack([base, np.array([start, goal], dtype=float)])
    # Start and goal are not on a ring: their "neighbours" are themselves.
    prev = np.vstack([obstacles.node_prev, xy[m:]])
    nxt = np.vstack([obstacles.node_next, xy[m:]])
    h = np.hypot(xy[:, 0] - goal[0], xy[:, 1] - goal[1])
    # The tangent rules are exact only for points outside every node polygon; a point
    # inside one (start, goal, or a vertex in another zone's 0.5 m node ring) is never
    # pruned as a candidate, and prunes nothing when expanded.
    free = np.concatenate([obstacles.node_free, [False, False]])
    start_inside = obstacles.inside_nodes(start)

    best = np.full(m + 2, np.inf)
    best[s_idx] = 0.0
    parent = np.full(m + 2, -1, dtype=np.int64)
    closed = np.zeros(m + 2, dtype=bool)
    heap: list[tuple[float, int, int]] = [(float(h[s_idx]), s_idx, -1)]
    expansions = 0
    while heap:
        _, u, _p = heapq.heappop(heap)
        if closed[u]:
            continue
        closed[u] = True
        if u == t_idx:
            return _path(xy, parent, t_idx)
        expansions += 1
        if expansions > max_expansions:
            return None
        d = xy - xy[u]
        dist = np.hypot(d[:, 0], d[:, 1])
        cand = ~closed
        if free[u] or (u == s_idx and not start_inside):
            # Tangent at v: v's neighbours on one side of line uv. Sines rather than
            # raw cross products, with a tolerance, so a neighbour collinear with uv
            # (an edge of the node polygon itself) passes despite rounding: widening
            # the candidate set never costs safety, since every edge is checked.
            cand &= _one_side(d, dist, prev - xy[u], nxt - xy[u]) | ~free
        if free[u]:
            # Tangent at u: u's neighbours on one side of line uv.
            pu = np.broadcast_to(prev[u] - xy[u], d.shape)
            nu = np.broadcast_to(nxt[u] - xy[u], d.shape)
            cand &= _one_side(d, dist, pu, nu) | ~free
        cand[u] = False
        g_new = best[u] + dist
        cand &= g_new < best
        idx = np.flatnonzero(cand)
        if len(idx) == 0:
            continue
        ok = ~obstacles.blocked(np.repeat(xy[u][None, :], len(idx), axis=0), xy[idx])
        idx = idx[ok]
        best[idx] = g_new[idx]
        parent[idx] = u
        f = g_new[idx] + h[idx]
        for fi, v in zip(f.tolist(), idx.tolist()):
            heapq.heappush(heap, (fi, v, u))
    return None


_SINE_TOL = 1e-9


def _one_side(d: np.ndarray, dist: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row: are points a and b (relative to u) not strictly on opposite sides
    of the direction d?"""
    with np.errstate(invalid="ignore", divide="ignore"):
        sa = (d[:, 0] * a[:, 1] - d[:, 1] * a[:, 0]) / (dist * np.hypot(a[:, 0], a[:, 1]))
        sb = (d[:, 0] * b[:, 1] - d[:, 1] * b[:, 0]) / (dist * np.hypot(b[:, 0], b[:, 1]))
    sa = np.nan_to_num(sa, nan=0.0)
    sb = np.nan_to_num(sb, nan=0.0)
    return ~(((sa > _SINE_TOL) & (sb < -_SINE_TOL)) | ((sa < -_SINE_TOL) & (sb > _SINE_TOL)))


def _path(xy: np.ndarray, parent: np.ndarray, t: int) -> list[Point]:
    out: list[Point] = []
    v = t
    while v >= 0:
        out.append((float(xy[v, 0]), float(xy[v, 1])))
        v = int(parent[v])
    out.reverse()
    return out


def path_length(points: list[Point]) -> float:
    return sum(math.dist(a, b) for a, b in zip(points, points[1:]))
