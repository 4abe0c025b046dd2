"""Planner time: 50 hazard zones of 20 vertices each, 5 drones (issue 3 goal: <= 50 ms
per drone plan). Prints median and p95 over seeded scenes for

* a cold per-drone plan (``plan`` building frame, assignment and obstacles itself, as
  ``plan_for_drone`` does), and
* a warm per-drone plan sharing one ``prepare`` per map version (as ``plan_all`` does),
  with the ``prepare`` time itself.

Usage: python bench/planner_time.py [--scenes 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import shapely

from swarm.planner import (
    DroneInfo,
    GeoPoint,
    LocalFrame,
    PlannerConfig,
    PlannerMap,
    SurvivorInfo,
    VehicleState,
    ZoneInfo,
    plan,
    prepare,
)

ORIGIN = LocalFrame(-35.363261, 149.165230)
HALF_W, HALF_H = 4000.0, 2500.0  # an 8 km x 5 km search area


def _geo(e: float, n: float, alt: float = 0.0) -> GeoPoint:
    lon, lat = ORIGIN.point_to_geodetic(e, n)
    return GeoPoint(lat, lon, alt)


def _polygon(points: np.ndarray) -> shapely.Polygon:
    lon, lat = ORIGIN.to_geodetic(points[:, 0], points[:, 1])
    return shapely.Polygon(np.column_stack([lon, lat]))


def scene(rng: np.random.Generator, zones: int, vertices: int, drones: int):
    area = _polygon(np.array([(-HALF_W, -HALF_H), (HALF_W, -HALF_H), (HALF_W, HALF_H),
                              (-HALF_W, HALF_H)]))
    zone_list: list[ZoneInfo] = []
    while len(zone_list) < zones:
        cx, cy = rng.uniform(-HALF_W, HALF_W), rng.uniform(-HALF_H, HALF_H)
        angles = np.sort(rng.uniform(0, 2 * math.pi, vertices))
        radii = rng.uniform(60, 260, vertices)
        pts = np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
        p = _polygon(pts)
        if p.is_valid and len(p.exterior.coords) - 1 == vertices:
            zone_list.append(ZoneInfo(f"z{len(zone_list):03d}", p))
    homes = [(-HALF_W - 300 + 150 * i, -HALF_H - 300) for i in range(drones)]
    drone_list = tuple(DroneInfo(f"d{i}", _geo(*h, 584.0)) for i, h in enumerate(homes))
    survivors = tuple(SurvivorInfo(f"s{i}", _geo(rng.uniform(-HALF_W, HALF_W),
                                                 rng.uniform(-HALF_H, HALF_H)),
                                   urgent=bool(i % 2)) for i in range(3))
    view = PlannerMap(1, area, tuple(zone_list), survivors, drone_list)
    vehicles = {d.id: VehicleState(_geo(*h), 0.0, _geo(*h, 584.0), 100.0)
                for d, h in zip(drone_list, homes)}
    return view, vehicles


def _stats(samples: list[float]) -> str:
    ms = sorted(s * 1e3 for s in samples)
    p95 = ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)]
    return f"median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms   (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--zones", type=int, default=50)
    parser.add_argument("--vertices", type=int, default=20)
    parser.add_argument("--drones", type=int, default=5)
    args = parser.parse_args()
    if args.scenes < 1 or args.zones < 0 or args.vertices < 3 or args.drones < 1:
        parser.error("need scenes >= 1, zones >= 0, vertices >= 3, drones >= 1")
    rng = np.random.default_rng(args.seed)
    config = PlannerConfig()
    cold: list[float] = []
    warm: list[float] = []
    prep: list[float] = []
    items: list[int] = []
    statuses: dict[str, int] = {}
    for _ in range(args.scenes):
        view, vehicles = scene(rng, args.zones, args.vertices, args.drones)
        for drone_id, v in vehicles.items():
            t0 = time.perf_counter()
            r = plan(view, drone_id, v, config)
            cold.append(time.perf_counter() - t0)
            items.append(len(r.plan.mission))
            statuses[r.status.value] = statuses.get(r.status.value, 0) + 1
        t0 = time.perf_counter()
        ctx = prepare(view, config)
        prep.append(time.perf_counter() - t0)
        for drone_id, v in vehicles.items():
            t0 = time.perf_counter()
            plan(view, drone_id, v, config, ctx)
            warm.append(time.perf_counter() - t0)
    print(f"planner: {args.zones} zones x {args.vertices} vertices, {args.drones} drones, "
          f"{args.scenes} seeded scenes (seed {args.seed}), 8 km x 5 km area, "
          f"{config.line_spacing_m:g} m lines, {config.safety_margin_m:g} m margin")
    print(f"  per-drone plan, cold (plan_for_drone): {_stats(cold)}")
    print(f"  per-drone plan, shared prepare        : {_stats(warm)}")
    print(f"  prepare (once per map version)        : {_stats(prep)}")
    print(f"  mission items per plan: median {statistics.median(items):.0f}, max {max(items)}; "
          f"statuses {dict(sorted(statuses.items()))}")


if __name__ == "__main__":
    main()
