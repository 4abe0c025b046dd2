"""One machine's fingerprint of the virtual-time demo, to compare a Raspberry Pi (or an
emulated aarch64, deploy/pi/emulate-aarch64.sh) with an x86 machine by hand.

    python deploy/pi/fingerprint.py run --seed 7 --nodes 7 --out DIR     # writes DIR/fingerprint.json
    python deploy/pi/fingerprint.py compare A/fingerprint.json B/fingerprint.json

``run`` plays ``swarm demo-virtual`` (swarm.demo.run_demo, exports into DIR) and records
two kinds of things (docs/map.md, "Committed and derived facts"):

- **must be equal** across machines: every node's map snapshot, session-table,
  committed-assignment and plans hashes; the SHA-256 of every exported file
  (.plan, .waypoints, map.geojson); the derived facts (route crosses, survivor inside);
  the assignment the leader would propose from the final map, rounded as committed;
- **may differ in the last bit** (platform floating point: fused multiply-add on
  aarch64, another libm or GEOS): raw, unrounded floats of the same computations: the
  issue-13 probe ``LocalFrame.point_to_geodetic(-250, -250)``, the scenario's homes, a
  grid of local-frame conversions, the sectors the assignment computes before
  rounding, and each plan's path length. ``compare`` counts how many differ and by how
  many ulps, to show the rounding (degE7) is what makes the exports agree.

``compare`` exits 1 if anything in the first kind differs. A developer tool, not run by
CI (tests/ exercise the same properties on one machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

_GRID_M = range(-1000, 1001, 100)  # 21 x 21 local-frame points, metres
_METRES_PER_DEGREE = 111_320.0  # only to express a difference in metres


def _versions() -> dict[str, str]:
    import numpy
    import pymap3d
    import shapely

    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "libc": " ".join(platform.libc_ver()),
        "numpy": numpy.__version__,
        "shapely": shapely.__version__,
        "geos": shapely.geos_version_string,
        "pymap3d": pymap3d.__version__,
    }


def _coords(geometry: Any) -> list[float]:
    import shapely

    return [float(v) for v in shapely.get_coordinates(geometry).ravel()]


def fingerprint(seed: int, nodes: int, out_dir: Path) -> dict[str, Any]:
    from swarm.demo import DemoConfig, run_demo
    from swarm.evacmap import encode_command
    from swarm.geo import LocalFrame
    from swarm.planner import assign, planner_map, propose_assignment
    from swarm.scenario import ORIGIN_LAT, ORIGIN_LON, wildfire_scenario

    result = run_demo(DemoConfig(seed=seed, nodes=nodes, out_dir=out_dir))
    view = result.view
    names = sorted(n.name for n in result.nodes)
    frame = LocalFrame(ORIGIN_LAT, ORIGIN_LON)
    grid = [frame.point_to_geodetic(float(e), float(n)) for e in _GRID_M for n in _GRID_M]
    local = assign(replace(planner_map(view), committed=False))
    proposed = encode_command(propose_assignment(view))
    return {
        "seed": seed,
        "nodes_requested": nodes,
        "platform": _versions(),
        "equal": {
            "all_nodes_agree": result.identical,
            "nodes": {n.name: {"map_sha256": n.map_sha256, "fsm_sha256": n.fsm_sha256,
                               "assignment_sha256": n.assignment_sha256,
                               "plans_sha256": n.plans_sha256, "applied": n.applied}
                      for n in result.nodes},
            "exports_sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                               for p in sorted(result.files)},
            "route_crosses": {r.id: list(r.crosses) for r in view.routes.values()},
            "survivor_inside": {s.id: list(s.inside) for s in view.survivors.values()},
            "proposed_assignment_sha256": hashlib.sha256(proposed).hexdigest(),
        },
        "floats": {
            "issue13_probe_lon_lat": list(frame.point_to_geodetic(-250.0, -250.0)),
            "scenario_homes": [v for name in names
                               for v in wildfire_scenario(seed, names).homes[name]],
            "frame_grid_lon_lat": [v for point in grid for v in point],
            "local_sectors_lon_lat": [v for d in sorted(local.sectors)
                                      for v in _coords(local.sectors[d])],
            "plan_path_length_m": [result.plans[d].path_length_m for d in sorted(result.plans)],
        },
    }


def _ordered(x: float) -> int:
    """The double's bits as an integer that orders like the value (for ulp distances)."""
    bits: int = struct.unpack("<q", struct.pack("<d", x))[0]
    return bits if bits >= 0 else -(bits & 0x7FFF_FFFF_FFFF_FFFF)


def _float_report(name: str, a: list[float], b: list[float]) -> str:
    if len(a) != len(b):
        return f"{name}: {len(a)} vs {len(b)} values (different computations, not last bits)"
    diffs = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    if not diffs:
        return f"{name}: all {len(a)} bit-identical"
    ulps = max(abs(_ordered(x) - _ordered(y)) for x, y in diffs)
    worst = max(abs(x - y) for x, y in diffs)
    metres = worst * _METRES_PER_DEGREE if name.endswith("lon_lat") or name == "scenario_homes" \
        else worst
    x, y = diffs[0]
    return (f"{name}: {len(diffs)} of {len(a)} differ, at most {ulps} ulp "
            f"({metres:.1e} m); e.g. {x!r} vs {y!r}")


def _leaves(tree: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, dict):
        for key in sorted(tree):
            yield from _leaves(tree[key], f"{path}.{key}" if path else str(key))
    else:
        yield path, tree


def compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[bool, list[str]]:
    """(equal, report lines): equal is False if anything that must match differs."""
    pa, pb = a["platform"], b["platform"]
    lines = [f"A: {pa['machine']} Python {pa['python']} numpy {pa['numpy']} "
             f"shapely {pa['shapely']} GEOS {pa['geos']} pymap3d {pa['pymap3d']}",
             f"B: {pb['machine']} Python {pb['python']} numpy {pb['numpy']} "
             f"shapely {pb['shapely']} GEOS {pb['geos']} pymap3d {pb['pymap3d']}"]
    equal = (a["seed"], a["nodes_requested"]) == (b["seed"], b["nodes_requested"])
    if not equal:
        lines.append("DIFFERENT RUNS: seed or node count differ")
    la, lb = dict(_leaves(a["equal"])), dict(_leaves(b["equal"]))
    differing = sorted(k for k in la.keys() | lb.keys() if la.get(k) != lb.get(k))
    for key in differing:
        lines.append(f"DIFFERS {key}: {la.get(key)!r} vs {lb.get(key)!r}")
    equal = equal and not differing
    lines.append(f"must-be-equal: {len(la)} values compared, {len(differing)} differ")
    for name in sorted(a["floats"].keys() | b["floats"].keys()):
        lines.append("raw floats, " + _float_report(name, a["floats"].get(name, []),
                                                   b["floats"].get(name, [])))
    return equal, lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fingerprint.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    run = sub.add_parser("run", help="run the demo, write OUT/fingerprint.json")
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--nodes", type=int, default=7)
    run.add_argument("--out", type=Path, required=True)
    cmp = sub.add_parser("compare", help="compare two fingerprint.json files")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    if args.what == "run":
        data = fingerprint(args.seed, args.nodes, args.out)
        target = args.out / "fingerprint.json"
        target.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"{data['platform']['machine']}: wrote {target}; all nodes agree: "
              f"{data['equal']['all_nodes_agree']}")
        return 0 if data["equal"]["all_nodes_agree"] else 1
    try:
        docs = [json.loads(path.read_text()) for path in (args.a, args.b)]
    except (OSError, ValueError) as exc:
        print(f"fingerprint.py: cannot read a fingerprint: {exc}", file=sys.stderr)
        return 2
    equal, lines = compare(*docs)
    print("\n".join(lines))
    print("EQUAL: every committed and derived value, hash and exported file matches"
          if equal else "NOT EQUAL: see DIFFERS lines above")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
