"""Telemetry decode rate, in messages per second.

Three figures on the same seeded mix of ArduPilot telemetry (HEARTBEAT,
GLOBAL_POSITION_INT, SYS_STATUS, GPS_RAW_INT, EKF_STATUS_REPORT, MISSION_CURRENT,
BATTERY_STATUS, FENCE_STATUS, STATUSTEXT, RADIO_STATUS):

1. pymavlink parsing alone (bytes -> message objects), the floor under everything;
2. parsing + TelemetryTracker (validation into typed records, latest-value snapshot);
3. the whole link: a loopback TCP peer streams the bytes as fast as it can and the
   link's one reader thread parses, routes by sysid and feeds a Vehicle.

    python bench/bridge_decode.py [--messages 50000]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import threading
import time

os.environ.setdefault("MAVLINK20", "1")

from pymavlink.dialects.v20 import ardupilotmega as mavlink  # noqa: E402

from mavlink_bridge import LinkConfig, MavlinkLink, TelemetryTracker, Vehicle  # noqa: E402


def _mix(n: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    mav = mavlink.MAVLink(None, srcSystem=1, srcComponent=1)
    radio = mavlink.MAVLink(None, srcSystem=51, srcComponent=68)
    makers = [
        (4, lambda: mavlink.MAVLink_global_position_int_message(
            rng.randrange(1 << 30), rng.randrange(-350000000, -340000000),
            rng.randrange(1490000000, 1500000000), 600000, rng.randrange(0, 50000),
            rng.randrange(-500, 500), rng.randrange(-500, 500), 0, rng.randrange(36000)).pack(mav)),
        (1, lambda: mavlink.MAVLink_heartbeat_message(2, 3, 217, 3, 4, 3).pack(mav)),
        (1, lambda: mavlink.MAVLink_sys_status_message(0, 0, 0, 0, 12000, 1200, 80, 0, 0, 0, 0, 0, 0)
         .pack(mav)),
        (1, lambda: mavlink.MAVLink_gps_raw_int_message(0, 3, -353632610, 1491652300, 584000, 80,
                                                        120, 0, 0, 12).pack(mav)),
        (1, lambda: mavlink.MAVLink_ekf_status_report_message(831, 0.02, 0.01, 0.01, 0.01, 0.0)
         .pack(mav)),
        (1, lambda: mavlink.MAVLink_mission_current_message(3, 10, 3, 1).pack(mav)),
        (1, lambda: mavlink.MAVLink_battery_status_message(
            0, 0, 0, 2500, [4000, 4000, 4000] + [65535] * 7, 1200, 100, 50, 80).pack(mav)),
        (1, lambda: mavlink.MAVLink_fence_status_message(0, 0, 0, 0).pack(mav)),
        (1, lambda: mavlink.MAVLink_statustext_message(6, b"Reached waypoint #3").pack(mav)),
        (1, lambda: mavlink.MAVLink_radio_status_message(180, 170, 90, 60, 62, 0, 0).pack(radio)),
    ]
    weights = [w for w, _ in makers]
    choices = rng.choices([m for _, m in makers], weights=weights, k=n)
    return b"".join(make() for make in choices)


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:12,.0f} messages/s  ({seconds * 1e6 / n:6.1f} µs/message)"


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=50_000)
    args = ap.parse_args()
    if args.messages < 1000:
        ap.error("--messages must be >= 1000")
    data = _mix(args.messages)
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]

    parser = mavlink.MAVLink(None)
    parser.robust_parsing = True
    t0 = time.perf_counter()
    count = sum(len(parser.parse_buffer(c) or ()) for c in chunks)
    parse_s = time.perf_counter() - t0
    assert count == args.messages, count

    parser = mavlink.MAVLink(None)
    parser.robust_parsing = True
    tracker = TelemetryTracker(sysid=1)
    t0 = time.perf_counter()
    for c in chunks:
        for msg in parser.parse_buffer(c) or ():
            tracker.feed(msg, 0.0)
    decode_s = time.perf_counter() - t0
    assert not tracker.decoder.rejected, tracker.decoder.rejected

    # Through the whole link over loopback TCP.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(data)
        done.wait(60)
        conn.close()

    done = threading.Event()
    server = threading.Thread(target=serve, daemon=True)
    server.start()
    link = MavlinkLink(LinkConfig(f"tcp:127.0.0.1:{port}", target_system=1, heartbeat_timeout_s=60))
    vehicle = Vehicle(link, 1)
    t0 = time.perf_counter()
    link.start()
    deadline = time.monotonic() + 120
    while link.stats.messages < args.messages and time.monotonic() < deadline:
        time.sleep(0.005)
    link_s = time.perf_counter() - t0
    got = link.stats.messages
    done.set()
    link.close()
    server.join(5)
    listener.close()
    assert vehicle.state().position is not None

    print(f"telemetry decode rate, {args.messages:,} messages ({len(data):,} bytes), seeded mix")
    print(f"pymavlink parse only                      {_rate(count, parse_s)}")
    print(f"parse + validate into typed records       {_rate(args.messages, decode_s)}")
    print(f"whole link (TCP, reader thread, Vehicle)  {_rate(got, link_s)}")


if __name__ == "__main__":
    main()
