"""A second ground station for the demo: the operator's pre-flight parameters, and a
pilot who takes one copter off its survey and flies it out of radio range, while that
drone's agent keeps its own link (serial0) to it.

It speaks MAVLink on the copter's SERIAL1 port, where ArduPilot SITL has its second
serial port (TCP ``serial0 + 2``) and where ``swarm sitl --serial1`` hands bytes to a
built-in copter. It only sends: the built-in simulator answers on serial0 (the agent's
link), so what the copter does is read back from the agent's own telemetry
(``telemetry/<node>``: mode, armed, altitude, position), the same way on both. Each
command is idempotent and is repeated until the telemetry shows its effect.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import shapely

from swarm.geo import LocalFrame

os.environ.setdefault("MAVLINK20", "1")
from pymavlink.dialects.v20 import ardupilotmega as mavlink  # noqa: E402

__all__ = ["GUIDED", "SecondGroundStation", "pilot_route"]

GUIDED = 4                        # ArduCopter custom mode number
_SYSID = 246                      # this ground station (not a drone's, not the agents' 255)
_POSITION_ONLY = 0b0000_1111_1111_1000   # SET_POSITION_TARGET type_mask: use x, y, z


class SecondGroundStation:
    """Send-only MAVLink to copter ``sysid`` on ``host:port`` (its SERIAL1)."""

    def __init__(self, host: str, port: int, sysid: int, timeout_s: float = 5.0) -> None:
        if not 1 <= sysid <= 255:
            raise ValueError(f"sysid must be in 1..255, got {sysid!r}")
        self.sysid = sysid
        self._sock = socket.create_connection((host, port), timeout=timeout_s)
        self._mav = mavlink.MAVLink(None, srcSystem=_SYSID,
                                    srcComponent=mavlink.MAV_COMP_ID_MISSIONPLANNER)

    def _send(self, msg: Any) -> None:
        self._sock.sendall(bytes(msg.pack(self._mav)))

    def _command(self, command: int, *params: float) -> None:
        p = list(params) + [0.0] * (7 - len(params))
        self._send(self._mav.command_long_encode(self.sysid, 1, command, 0, *p))

    def heartbeat(self) -> None:
        self._send(self._mav.heartbeat_encode(mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID,
                                              0, 0, mavlink.MAV_STATE_ACTIVE))

    def set_param(self, name: str, value: float) -> None:
        """PARAM_SET (REAL32, as ArduPilot takes every parameter over MAVLink)."""
        self._send(self._mav.param_set_encode(self.sysid, 1, name.encode(), value,
                                              mavlink.MAV_PARAM_TYPE_REAL32))

    def guided(self) -> None:
        """Take the copter over: GUIDED (in the air it holds position until a target)."""
        self.heartbeat()
        self._command(mavlink.MAV_CMD_DO_SET_MODE, mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
                      GUIDED)

    def take_off(self, alt_m: float) -> None:
        """GUIDED, arm, take off to ``alt_m`` above home (each repeated harmlessly)."""
        self.heartbeat()
        self._command(mavlink.MAV_CMD_DO_SET_MODE, mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
                      GUIDED)
        self._command(mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 1)
        self._command(mavlink.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, alt_m)

    def set_speed(self, speed_ms: float) -> None:
        """Horizontal speed for GUIDED (and the waypoint speed RTL uses: WPNAV_SPEED)."""
        self.set_param("WPNAV_SPEED", speed_ms * 100.0)
        self._command(mavlink.MAV_CMD_DO_CHANGE_SPEED, 1, speed_ms, -1)

    def goto(self, lat: float, lon: float, alt_rel_m: float) -> None:
        """A GUIDED position target (SET_POSITION_TARGET_GLOBAL_INT, position only)."""
        self._send(self._mav.set_position_target_global_int_encode(
            0, self.sysid, 1, mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, _POSITION_ONLY,
            round(lat * 1e7), round(lon * 1e7), alt_rel_m, 0, 0, 0, 0, 0, 0, 0, 0))

    def close(self) -> None:
        self._sock.close()


LonLat = tuple[float, float]


def pilot_route(frame: LocalFrame, start: LonLat, target: LonLat,
                hazards: Sequence[Sequence[LonLat]], clearance_m: float = 80.0) -> list[LonLat] | None:
    """The legs a careful pilot flies from ``start`` to ``target`` (both lon/lat) without
    coming within ``clearance_m`` of a hazard zone (exterior rings, lon/lat): straight if
    that is clear, else around the zones' bounding box by its north, south or west side
    (the staging area and the way out lie west and south of the fires). A zone the
    aircraft is already in is left straight. Returns the points after ``start``, ending at
    ``target``, or None when no candidate is clear."""
    zones: list[Any] = [frame.geometry_to_enu(shapely.Polygon(ring))
                        for ring in hazards if len(ring) >= 4]
    sx, sy = frame.point_to_enu(*start)
    tx, ty = frame.point_to_enu(*target)
    here = shapely.Point(sx, sy)
    keep_out = [z.buffer(clearance_m) for z in zones]
    keep_out = [z for z in keep_out if not z.contains(here)]
    if not keep_out:
        return [target]
    blocked = shapely.union_all(keep_out)
    west, south, _east, north = blocked.bounds
    margin = 2 * clearance_m
    n, s, w = north + margin, south - margin, west - margin
    candidates: list[list[tuple[float, float]]] = [
        [],
        [(sx, n), (w, n)],
        [(sx, s), (w, s)],
        [(w, sy)],
        [(sx, n), (w, n), (w, s)],
        [(sx, s), (w, s), (w, n)],
    ]
    for via in candidates:
        path = [(sx, sy), *via, (tx, ty)]
        if not shapely.LineString(path).intersects(blocked):
            return [frame.point_to_geodetic(x, y) for x, y in via] + [target]
    return None
