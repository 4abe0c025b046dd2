"""The bridge on both vehicles side by side: apply-with-verify and arm-to-first-waypoint.

For each vehicle kind (the built-in simulator, and real ArduCopter SITL when
``$ARDUPILOT_SITL_BIN`` or ``--ardupilot-bin`` names a build) and each repetition: boot
a fresh copter (``sitl.vehicles``), connect the bridge, wait for a position estimate,
then

* **apply**: ``PlanApplier.apply`` of a real planner plan (``swarm.planner`` from a
  replicated map: survey mission ending in RTL, an exclusion fence, a rally point):
  fence, rally and mission uploaded and each read back and compared, FENCE_* set;
* **arm -> first waypoint**: GUIDED, arm, take off to the plan's altitude, AUTO, until
  MISSION_ITEM_REACHED of the first survey waypoint; in wall seconds and in vehicle
  seconds (the autopilot's time_boot_ms), which is what ArduCopter's default speeds
  (WPNAV_SPEED 10 m/s, WPNAV_SPEED_UP 2.5 m/s, WPNAV_ACCEL 2.5 m/s²) decide.

    python bench/bridge_vehicles.py [--reps 3] [--speedup 10] [--ardupilot-bin PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from mavlink_bridge import LinkConfig, MavlinkLink, MissionPlan, PlanApplier, Vehicle
from mavlink_bridge.plan import CMD_NAV_WAYPOINT
from sitl._site import DEFAULT_HOME
from sitl.vehicles import SimulatedVehicle, ardupilot_binary_from_env
from swarm.evacmap import EvacuationMap, SetDroneTask, SetSearchArea, SetZone
from swarm.geo import LocalFrame
from swarm.planner import PlannerConfig, needs_assignment, plan_for_drone, propose_assignment
from swarm.planner.model import GeoPoint, VehicleState

HOME = DEFAULT_HOME


def planner_plan() -> MissionPlan:
    """The planner's plan for one drone over a 120 x 90 m area north of home, with a
    burning zone to its south-west (so the plan carries an exclusion fence)."""
    frame = LocalFrame(HOME[0], HOME[1])
    config = PlannerConfig(safety_margin_m=10.0, line_spacing_m=30.0)

    def rect(x0: float, y0: float, x1: float, y1: float) -> tuple[tuple[float, float], ...]:
        return tuple(frame.point_to_geodetic(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)))

    evac = EvacuationMap()
    commands = (SetSearchArea(rect(-60, 20, 60, 110)),
                SetDroneTask("d1", "search", True, False, (*frame.point_to_geodetic(0, 0), HOME[2])),
                SetZone("fire-1", rect(-50, -90, -10, -50), "burning", "d1", 1_790_000_000_000))
    index = 0
    for command in commands:
        index += 1
        if not evac.apply_command(index, command).ok:
            raise SystemExit(f"map command {index} refused")
        if needs_assignment(evac):  # the leader's proposal, committed next (as the agent does)
            index += 1
            evac.apply_command(index, propose_assignment(evac, config))
    state = VehicleState(GeoPoint(HOME[0], HOME[1]), 0.0, GeoPoint(*HOME), 95.0)
    return plan_for_drone(evac, "d1", state, config).plan


def one_run(kind: str, speedup: float, binary: Path | None, plan: MissionPlan) -> tuple[float, float, float]:
    """(apply seconds, arm->first waypoint wall seconds, the same in vehicle seconds)."""
    sim = SimulatedVehicle(kind, speedup=speedup, home=HOME, binary=binary)  # type: ignore[arg-type]
    try:
        sim.boot()
        link = MavlinkLink(LinkConfig(sim.endpoint, target_system=1)).start()
        try:
            if not link.wait_for_heartbeat(30):
                raise SystemExit(f"{kind}: no heartbeat")
            v = Vehicle(link, 1)
            v.request_streams()
            v.wait_until(lambda s: s.heartbeat is not None and s.ekf is not None and s.ekf.position_ok
                         and s.position is not None, 120)
            t0 = time.perf_counter()
            PlanApplier(v).apply(plan)
            apply_s = time.perf_counter() - t0
            first_wp = 1 + next(i for i, it in enumerate(plan.mission) if it.command == CMD_NAV_WAYPOINT)
            v.set_mode("GUIDED").raise_for_result()
            t_arm = time.perf_counter()
            v.arm().raise_for_result()
            boot_ms_at_arm = v.state().position.time_boot_ms  # type: ignore[union-attr]
            v.takeoff(plan.mission[0].z).raise_for_result()
            v.wait_until(lambda s: s.position is not None and s.position.alt_rel > plan.mission[0].z - 1.0, 300)
            v.clear_reached()
            v.set_mode("AUTO").raise_for_result()
            v.wait_item_reached(first_wp, 300)
            wall_s = time.perf_counter() - t_arm
            vehicle_s = (v.state().position.time_boot_ms - boot_ms_at_arm) / 1000.0  # type: ignore[union-attr]
            v.detach()
            return apply_s, wall_s, vehicle_s
        finally:
            link.close()
    finally:
        sim.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--speedup", type=float, default=10.0)
    ap.add_argument("--ardupilot-bin", default=None, help="arducopter SITL binary (default $ARDUPILOT_SITL_BIN)")
    args = ap.parse_args()
    if args.reps < 1 or not 1 <= args.speedup <= 100:
        ap.error("--reps must be >= 1 and --speedup in 1..100")
    binary = Path(args.ardupilot_bin) if args.ardupilot_bin else ardupilot_binary_from_env()
    plan = planner_plan()
    kinds = ["builtin"] + (["ardupilot"] if binary is not None else [])
    print(f"planner plan: {len(plan.mission)} mission items, {len(plan.fence)} fence items, "
          f"{len(plan.rally)} rally; speed-up {args.speedup:g}; {args.reps} fresh boot(s) per vehicle")
    if binary is None:
        print("real ArduCopter SITL: not run (set ARDUPILOT_SITL_BIN or --ardupilot-bin)")
    results = {kind: [one_run(kind, args.speedup, binary, plan) for _ in range(args.reps)] for kind in kinds}
    print(f"{'vehicle':<10} {'apply+verify ms':>16} {'arm->1st WP wall s':>19} {'arm->1st WP vehicle s':>22}")
    for kind, runs in results.items():
        apply_ms = statistics.median(r[0] for r in runs) * 1e3
        wall = statistics.median(r[1] for r in runs)
        vehicle = statistics.median(r[2] for r in runs)
        print(f"{kind:<10} {apply_ms:>16.0f} {wall:>19.2f} {vehicle:>22.1f}")
    print("(medians; vehicle seconds from the autopilot's time_boot_ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
