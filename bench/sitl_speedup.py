"""How fast one simulated copter runs in simulated time (the ceiling on ``speedup``).

Drives the sans-I/O vehicle core directly (no sockets): a copter flying in GUIDED toward
a far target while streaming GLOBAL_POSITION_INT, ATTITUDE, VFR_HUD and SYS_STATUS at
10 Hz, advanced in 1 s chunks of simulated time. Prints simulated seconds per CPU second,
i.e. the highest speed-up one core sustains for one copter (divide by N for N copters),
and the cost of one 20 ms physics step with its telemetry.

    python bench/sitl_speedup.py [--sim-seconds 600]
"""

from __future__ import annotations

import argparse
import time

from pymavlink.dialects.v20 import ardupilotmega as M

from sitl.copter import STEP_S, Copter
from sitl.builtin import VehicleConfig


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim-seconds", type=float, default=600.0)
    args = parser.parse_args()
    vehicle = Copter(VehicleConfig(tcp_port=0, time_to_ready_s=1.0))
    gcs = M.MAVLink(None, srcSystem=255, srcComponent=190)
    vehicle.on_connect(0.0)
    vehicle.advance(2.0)

    def command(cmd: int, *params: float) -> None:
        p = list(params) + [0.0] * (7 - len(params))
        vehicle.on_bytes(gcs.command_long_encode(1, 1, cmd, 0, *p).pack(gcs), vehicle.t)

    for msgid in (M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, M.MAVLINK_MSG_ID_ATTITUDE, M.MAVLINK_MSG_ID_VFR_HUD,
                  M.MAVLINK_MSG_ID_SYS_STATUS):
        command(M.MAV_CMD_SET_MESSAGE_INTERVAL, msgid, 100_000)
    command(M.MAV_CMD_DO_SET_MODE, 1, 4)
    command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    command(M.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 30)
    vehicle.advance(20.0)
    vehicle.on_bytes(gcs.set_position_target_global_int_encode(
        0, 1, 1, M.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, 0b110111111000, round(-35.0 * 1e7), round(149.165 * 1e7),
        30, 0, 0, 0, 0, 0, 0, 0, 0).pack(gcs), vehicle.t)
    vehicle.take_output()
    start_sim, out_bytes = vehicle.t, 0
    cpu0 = time.process_time()
    while vehicle.t - start_sim < args.sim_seconds:
        vehicle.advance(vehicle.t + 1.0)  # booted at clock 0, so the clock reading is t
        out_bytes += len(vehicle.take_output())
    cpu = time.process_time() - cpu0
    sim = vehicle.t - start_sim
    steps = sim / STEP_S
    print(f"one copter flying, 4 messages at 10 Hz: {sim:.0f} simulated s in {cpu:.2f} CPU s")
    print(f"  max speed-up on one core: {sim / cpu:,.0f}x  ({cpu / steps * 1e6:.1f} us per 20 ms step "
          f"incl. telemetry, {out_bytes / sim / 1024:.1f} KiB of MAVLink per simulated s)")
    print(f"  still moving: {vehicle.state().groundspeed:.1f} m/s, {vehicle.state().relative_alt:.1f} m up")


if __name__ == "__main__":
    main()
