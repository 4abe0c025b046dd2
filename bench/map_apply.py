"""Evacuation-map apply throughput for a realistic wildfire mix; prints figures.

The mix (per 100 commands): 30 zone updates (fires appear and grow; up to 50 zones of
20 vertices), 25 survivor reports, 20 survivor updates, 10 drone task changes, 10
route updates (up to 20 routes of 8 points), 5 removals. Commands are encoded
beforehand, so the figure is what a drone spends in ``EvacuationMap.apply`` per
committed entry: parse, validate (exact, on degE7 integers), apply, re-derive facts.

    python bench/map_apply.py [--commands N] [--seed S]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections import defaultdict

from swarm.evacmap import (
    EvacuationMap,
    LocalFrame,
    RemoveRoute,
    RemoveSurvivor,
    RemoveZone,
    ReportSurvivor,
    SetDroneTask,
    SetRoute,
    SetSearchArea,
    SetZone,
    UpdateSurvivor,
    encode_command,
)

FRAME = LocalFrame(38.0, -120.0)
T0 = 1_764_208_800_000


def _ll(east: float, north: float) -> list[float]:
    return list(FRAME.point_to_geodetic(east, north))


def _blob(rng: random.Random, cx: float, cy: float, radius: float, n: int = 20):
    """A ragged fire outline: star-shaped about its centre, so always a simple ring."""
    ring = []
    for i in range(n):
        r = radius * (0.8 + 0.4 * rng.random())
        a = 2 * math.pi * i / n
        ring.append(_ll(cx + r * math.cos(a), cy + r * math.sin(a)))
    return ring


def workload(count: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []

    def add(command) -> None:
        out.append((type(command).TYPE, encode_command(command)))

    add(SetSearchArea([_ll(-10_000, -10_000), _ll(10_000, -10_000), _ll(10_000, 10_000),
                       _ll(-10_000, 10_000)]))
    zone_radius: dict[str, float] = {}
    zone_centre: dict[str, tuple[float, float]] = {}
    survivors: list[str] = []
    routes: list[str] = []
    t = T0
    next_survivor = 0
    while len(out) < count:
        t += 1000
        roll = rng.random()
        drone = f"drone-{rng.randint(1, 5)}"
        if roll < 0.30:
            zid = f"z{rng.randrange(50)}"
            if zid not in zone_centre:
                zone_centre[zid] = (rng.uniform(-9000, 9000), rng.uniform(-9000, 9000))
                zone_radius[zid] = rng.uniform(100, 400)
            zone_radius[zid] = min(zone_radius[zid] * 1.05, 900)  # fires grow
            status = rng.choice(["burning", "burning", "burned", "cleared"])
            add(SetZone(zid, _blob(rng, *zone_centre[zid], zone_radius[zid]), status, drone, t))
        elif roll < 0.55:
            sid = f"s{next_survivor}"
            next_survivor += 1
            survivors.append(sid)
            add(ReportSurvivor(sid, _ll(rng.uniform(-9000, 9000), rng.uniform(-9000, 9000)),
                               rng.randint(1, 6), round(rng.random(), 2), drone, t))
        elif roll < 0.75 and survivors:
            add(UpdateSurvivor(rng.choice(survivors), drone, t,
                               confidence=round(rng.random(), 2), count=rng.randint(1, 6)))
        elif roll < 0.85:
            add(SetDroneTask(drone, rng.choice(["search", "confirm", "transit"]), True,
                             rng.random() < 0.3, _ll(0, 0) + [300.0]))
        elif roll < 0.95:
            rid = f"r{rng.randrange(20)}"
            if rid not in routes:
                routes.append(rid)
            e, n = rng.uniform(-9000, 9000), rng.uniform(-9000, 9000)
            path = []
            for _ in range(8):
                e += rng.uniform(200, 1500)
                n += rng.uniform(-800, 800)
                path.append(_ll(e, n) + [40.0])
            add(SetRoute(rid, path, rng.randint(0, 9)))
        else:
            kind = rng.random()
            if kind < 0.4 and zone_centre:
                zid = rng.choice(sorted(zone_centre))
                del zone_centre[zid]
                add(RemoveZone(zid))
            elif kind < 0.7 and survivors:
                add(RemoveSurvivor(survivors.pop(rng.randrange(len(survivors)))))
            elif routes:
                add(RemoveRoute(routes.pop(rng.randrange(len(routes)))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.commands < 1:
        parser.error("--commands must be >= 1")

    entries = workload(args.commands, args.seed)
    m = EvacuationMap()
    per_type: dict[str, list[float]] = defaultdict(list)
    rejected = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    for index, (kind, data) in enumerate(entries, 1):
        t0 = time.perf_counter()
        result = m.apply(index, data)
        per_type[kind].append(time.perf_counter() - t0)
        rejected += result.startswith(b'{"error"')
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start

    print(f"map apply: {len(entries)} commands in {elapsed:.2f} s = "
          f"{len(entries) / elapsed:,.0f} commands/s (rejected {rejected})")
    # The process's own CPU time: steadier than wall time on a shared, loaded machine.
    print(f"map apply CPU time: {cpu:.2f} s = {len(entries) / cpu:,.0f} commands/s")
    print(f"final map: {len(m.zones)} zones, {len(m.routes)} routes "
          f"({sum(r.unsafe for r in m.routes.values())} unsafe), {len(m.survivors)} survivors "
          f"({sum(s.urgent for s in m.survivors.values())} urgent), {len(m.drones)} drones")
    for kind in sorted(per_type):
        times = per_type[kind]
        print(f"  {kind:16s} n={len(times):5d}  median {statistics.median(times) * 1e6:7.0f} us"
              f"  p99 {sorted(times)[int(len(times) * 0.99)] * 1e6:7.0f} us")
    t0 = time.perf_counter()
    snap = m.snapshot()
    t1 = time.perf_counter()
    EvacuationMap().restore(snap)
    t2 = time.perf_counter()
    print(f"snapshot: {len(snap) / 1024:.0f} KiB in {(t1 - t0) * 1e3:.1f} ms; "
          f"restore (validates and re-derives) {(t2 - t1) * 1e3:.1f} ms")
    ring_validation()


def ring_validation(sizes: tuple[int, ...] = (8, 20, 64, 512)) -> None:
    """CPU time to construct (validate) one set_zone of a regular n-gon, best of 5:
    the vertex checks, extent and simple-ring test every drone runs in apply."""
    for n in sizes:
        ring = [_ll(500 * math.cos(2 * math.pi * k / n), 500 * math.sin(2 * math.pi * k / n))
                for k in range(n)]
        repeat, best = max(20, 4000 // n), math.inf
        for _ in range(5):
            t0 = time.process_time()
            for _ in range(repeat):
                SetZone("z", ring, "burning", "bench", T0)  # type: ignore[arg-type]
            best = min(best, (time.process_time() - t0) / repeat)
        print(f"validate a {n:3d}-vertex zone ring: {best * 1e6:6.0f} us CPU (best of 5)")


if __name__ == "__main__":
    main()
