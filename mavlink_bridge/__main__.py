"""Check the wiring to a flight controller: ``python -m mavlink_bridge CONNECTION``.

Connects, asks for telemetry and prints one status line per second (mode, arming,
position, battery, GPS, EKF, link quality and link error counters), then exits. Useful
on a companion computer before starting the agent, or against a simulator::

    python -m mavlink_bridge /dev/ttyAMA0,921600 --sysid 1 --seconds 10
    python -m mavlink_bridge tcp:127.0.0.1:5760
"""

from __future__ import annotations

import argparse
import sys
import time

from mavlink_bridge.link import ConnectionStringError, LinkConfig, MavlinkLink
from mavlink_bridge.telemetry import VehicleState
from mavlink_bridge.vehicle import Vehicle


def _line(state: VehicleState, vehicle: Vehicle, link: MavlinkLink) -> str:
    parts = [f"mode={state.mode or '?'}", "ARMED" if state.armed else "disarmed"]
    if state.position:
        p = state.position
        parts.append(f"pos={p.lat:.7f},{p.lon:.7f} rel_alt={p.alt_rel:.1f}m")
    if state.battery and state.battery.voltage_v is not None:
        parts.append(f"batt={state.battery.voltage_v:.2f}V/{state.battery.remaining_pct}%")
    if state.gps:
        parts.append(f"gps_fix={state.gps.fix_type} sats={state.gps.satellites}")
    if state.ekf:
        parts.append("ekf=ok" if state.ekf.position_ok else "ekf=no-position")
    quality = vehicle.link_quality()
    if quality is not None:
        parts.append(f"link={quality.score:.2f}")
    s = link.stats
    parts.append(f"msgs={s.messages} garbage={s.garbage_bytes}B crc={s.bad_crc} "
                 f"reconnects={max(0, s.connects - 1)}")
    return "  ".join(parts)


def main(argv: list[str] | None = None, prog: str = "python -m mavlink_bridge") -> int:
    ap = argparse.ArgumentParser(prog=prog, allow_abbrev=False,
                                 description=__doc__.splitlines()[0])
    ap.add_argument("connection", help="tcp:HOST:PORT, udpin:/udpout:HOST:PORT or DEVICE,BAUD")
    ap.add_argument("--baud", type=int, default=None, help="serial baud if not in CONNECTION")
    ap.add_argument("--sysid", type=int, default=1, help="the vehicle's system id (default 1)")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to watch (default 10)")
    args = ap.parse_args(argv)
    if not 1 <= args.sysid <= 255:
        ap.error("--sysid must be in 1..255")
    if not 0 < args.seconds <= 86400:
        ap.error("--seconds must be in (0, 86400]")
    try:
        config = LinkConfig(args.connection, baud=args.baud, target_system=args.sysid)
    except (ConnectionStringError, ValueError) as exc:
        ap.error(str(exc))
    link = MavlinkLink(config)
    vehicle = Vehicle(link, args.sysid)
    with link:
        if not link.wait_for_heartbeat(min(10.0, args.seconds)):
            print(f"no HEARTBEAT from system {args.sysid} on {config.spec} "
                  f"({link.last_error or 'nothing received'})", file=sys.stderr)
            return 1
        print(f"connected to system {args.sysid} on {config.spec}")
        streamed = vehicle.request_streams()
        print("telemetry requested with " + ("SET_MESSAGE_INTERVAL" if streamed
                                             else "REQUEST_DATA_STREAM (fallback)"))
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            print(_line(vehicle.state(), vehicle, link), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
