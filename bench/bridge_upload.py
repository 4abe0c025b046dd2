"""Mission upload time for N items against the built-in simulator, over loopback TCP.

Prints, for a 50-item mission (plus home) by default: upload (MISSION_COUNT ... ACK),
read-back (MISSION_REQUEST_LIST ... ACK) and a full PlanApplier.apply (upload + verify),
as min / median / p95 over the repetitions. The simulator runs at real-time speed
(speedup 1) so its timers behave like ArduPilot's; the figures are round-trip bound.

    python bench/bridge_upload.py [--items 50] [--reps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

from mavlink_bridge import (
    LinkConfig, MavlinkLink, MissionItem, MissionPlan, MissionType, PlanApplier, Vehicle,
    home_item,
)
from mavlink_bridge.plan import CMD_NAV_TAKEOFF, CMD_NAV_WAYPOINT
from sitl.builtin import SimulatorServer, VehicleConfig

HOME = (-35.363261, 149.165230, 584.0)


def _mission(n: int, shift: float) -> tuple[MissionItem, ...]:
    items = [MissionItem.at(CMD_NAV_TAKEOFF, HOME[0], HOME[1], 20.0)]
    items += [MissionItem.at(CMD_NAV_WAYPOINT, HOME[0] + i * 1e-4, HOME[1] + shift, 20.0 + i % 5)
              for i in range(1, n)]
    return tuple(items)


def _summary(name: str, samples: list[float], n: int) -> str:
    s = sorted(samples)
    p95 = s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]
    return (f"{name:<34} min {s[0] * 1e3:7.1f} ms   median {statistics.median(s) * 1e3:7.1f} ms"
            f"   p95 {p95 * 1e3:7.1f} ms   ({n / statistics.median(s):,.0f} items/s)")


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    if not 1 <= args.items <= 700 or args.reps < 1:
        ap.error("--items must be in 1..700 and --reps >= 1")

    cfg = VehicleConfig(instance=0, tcp_port=0, speedup=1.0, time_to_ready_s=0.0,
                        home_lat=HOME[0], home_lon=HOME[1], home_alt=HOME[2])
    with SimulatorServer([cfg]) as sim:
        link = MavlinkLink(LinkConfig(sim.endpoints[0], target_system=1)).start()
        try:
            if not link.wait_for_heartbeat(10):
                raise SystemExit("no heartbeat from the simulator")
            vehicle = Vehicle(link, 1)
            # Out of MAV_STATE_BOOT: AP_Mission takes uploads (NO_SPACE before).
            vehicle.wait_until(lambda s: s.heartbeat is not None and s.heartbeat.system_status != 1, 10)
            home = home_item(*HOME)
            ups, downs, applies = [], [], []
            for rep in range(args.reps):
                wire = (home,) + _mission(args.items, shift=rep * 1e-5)
                t0 = time.perf_counter()
                vehicle.upload(MissionType.MISSION, wire)
                t1 = time.perf_counter()
                got = vehicle.download(MissionType.MISSION)
                t2 = time.perf_counter()
                assert len(got) == len(wire)
                ups.append(t1 - t0)
                downs.append(t2 - t1)
            applier = PlanApplier(vehicle)
            for rep in range(args.reps):
                plan = MissionPlan(mission=_mission(args.items, shift=0.001 + rep * 1e-5))
                t0 = time.perf_counter()
                report = applier.apply(plan, home=home)
                applies.append(time.perf_counter() - t0)
                assert report.uploaded
            stats = link.stats
        finally:
            link.close()
    n = args.items + 1
    print(f"mission upload against the built-in simulator: {args.items} items + home, "
          f"{args.reps} repetitions, loopback TCP")
    print(_summary("upload (COUNT..ACK)", ups, n))
    print(_summary("read back (REQUEST_LIST..ACK)", downs, n))
    print(_summary("PlanApplier.apply (upload+verify)", applies, n))
    print(f"link: {stats.sent} messages sent, {stats.messages} received, "
          f"{stats.bad_crc} bad CRC, {stats.disconnects} disconnects")


if __name__ == "__main__":
    main()
