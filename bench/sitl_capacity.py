"""How many built-in simulated copters one process sustains at real time (speed-up 1).

Starts ``python -m sitl --count N`` as a child process, connects one TCP client per
copter, asks each for GLOBAL_POSITION_INT, ATTITUDE, VFR_HUD and SYS_STATUS at 10 Hz
(SET_MESSAGE_INTERVAL), and measures over a window: the simulator process's CPU use
(from /proc, user+system, % of one core) and the GLOBAL_POSITION_INT rate actually
received per copter (parsed with pymavlink for every client). By default every copter
is flying (GUIDED takeoff, then a far target); ``--idle`` leaves them on the ground.
Prints one row per N.

    python bench/sitl_capacity.py [--counts 1,10,25,50,100] [--seconds 5] [--idle]
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import subprocess
import sys
import time

from pymavlink.dialects.v20 import ardupilotmega as M

_RATE_HZ = 10.0
_MESSAGES = (M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, M.MAVLINK_MSG_ID_ATTITUDE, M.MAVLINK_MSG_ID_VFR_HUD,
             M.MAVLINK_MSG_ID_SYS_STATUS)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(count: int, seconds: float, flying: bool) -> tuple[float, float, float, int]:
    proc = subprocess.Popen([sys.executable, "-m", "sitl", "--count", str(count), "--base-port", "0",
                             "--no-wait", "--time-to-ready", "1"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "MAVLINK20": "1"})
    try:
        assert proc.stdout is not None
        endpoints = [proc.stdout.readline().strip() for _ in range(count)]
        selector = selectors.DefaultSelector()
        gcs = M.MAVLink(None, srcSystem=255, srcComponent=190)
        parsers = []
        for i, ep in enumerate(endpoints):
            _, host, port = ep.split(":")
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.setblocking(False)
            for msgid in _MESSAGES:
                sock.sendall(gcs.command_long_encode(i + 1, 1, M.MAV_CMD_SET_MESSAGE_INTERVAL, 0, msgid,
                                                     1e6 / _RATE_HZ, 0, 0, 0, 0, 0).pack(gcs))
            parser = M.MAVLink(None)
            parser.robust_parsing = True
            parsers.append(parser)
            selector.register(sock, selectors.EVENT_READ, i)
        counts = [0] * count
        airborne = [False] * count

        def pump(until: float, tally: bool) -> None:
            while time.monotonic() < until:
                for key, _ in selector.select(timeout=0.05):
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    except BlockingIOError:
                        continue
                    for msg in parsers[key.data].parse_buffer(data) or []:
                        if tally and msg.get_type() == "GLOBAL_POSITION_INT":
                            counts[key.data] += 1
                            airborne[key.data] = msg.relative_alt > 1000 and (msg.vx or msg.vy)

        pump(time.monotonic() + 1.5, tally=False)  # let every stream start and the EKFs get ready
        if flying:
            # every copter takes off in GUIDED and heads for a point 5 km away, so the
            # window measures copters in motion, not idle on the ground
            for key in list(selector.get_map().values()):
                i, sock = key.data, key.fileobj
                frames = [gcs.command_long_encode(i + 1, 1, M.MAV_CMD_DO_SET_MODE, 0, 1, 4, 0, 0, 0, 0, 0),
                          gcs.command_long_encode(i + 1, 1, M.MAV_CMD_COMPONENT_ARM_DISARM, 0, 1, 0, 0, 0, 0, 0, 0),
                          gcs.command_long_encode(i + 1, 1, M.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 0, 30)]
                sock.setblocking(True)
                sock.sendall(b"".join(f.pack(gcs) for f in frames))
                sock.setblocking(False)
            pump(time.monotonic() + 1.0, tally=False)
            for key in list(selector.get_map().values()):
                i, sock = key.data, key.fileobj
                sock.setblocking(True)
                sock.sendall(gcs.set_position_target_global_int_encode(
                    0, i + 1, 1, M.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, 0b110111111000,
                    round(-35.32 * 1e7), round(149.165 * 1e7), 30, 0, 0, 0, 0, 0, 0, 0, 0).pack(gcs))
                sock.setblocking(False)
            pump(time.monotonic() + 1.0, tally=False)
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        pump(t0 + seconds, tally=True)
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        rates = [c / (t1 - t0) for c in counts]
        return 100.0 * (cpu1 - cpu0) / (t1 - t0), min(rates), sum(rates) / len(rates), sum(map(bool, airborne))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,10,25,50,100")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--idle", action="store_true", help="leave the copters on the ground")
    args = parser.parse_args()
    state = "on the ground" if args.idle else "flying (GUIDED, to a point 5 km away)"
    print(f"built-in simulator at speed-up 1, copters {state}, "
          f"{len(_MESSAGES)} messages at {_RATE_HZ:g} Hz per copter")
    print(f"{'copters':>8} {'moving':>7} {'sim CPU %':>10} {'GPI Hz min':>11} {'GPI Hz mean':>12}")
    for count in (int(c) for c in args.counts.split(",")):
        cpu, low, mean, moving = run(count, args.seconds, flying=not args.idle)
        print(f"{count:>8} {moving:>7} {cpu:>10.1f} {low:>11.2f} {mean:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
