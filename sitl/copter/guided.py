"""GUIDED targets from the ground station (``ModeGuided``; ``GCS_MAVLINK_Copter``'s
SET_POSITION_TARGET_* handlers and MISSION_ITEM with current=2): positions, velocities
that lapse after GUID_TIMEOUT, all for a copter that is flying."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pymavlink.dialects.v20 import ardupilotmega as M

from sitl.copter.mission_protocol import AMSL_FRAMES, GLOBAL_FRAMES, item_from_message
from sitl.copter.modes import GUIDED
from sitl.copter.nav import Nav

if TYPE_CHECKING:
    from sitl.copter.vehicle import Copter

# POSITION_TARGET_TYPEMASK bits that, all set, mean "no position" / "no velocity" target
_POS_IGNORE = (M.POSITION_TARGET_TYPEMASK_X_IGNORE | M.POSITION_TARGET_TYPEMASK_Y_IGNORE
               | M.POSITION_TARGET_TYPEMASK_Z_IGNORE)
_VEL_IGNORE = (M.POSITION_TARGET_TYPEMASK_VX_IGNORE | M.POSITION_TARGET_TYPEMASK_VY_IGNORE
               | M.POSITION_TARGET_TYPEMASK_VZ_IGNORE)


def _ignored(type_mask: int) -> tuple[bool, bool]:
    """POSITION_TARGET_TYPEMASK: (position ignored, velocity ignored), each when all three
    of its X/Y/Z bits are set."""
    return type_mask & _POS_IGNORE == _POS_IGNORE, type_mask & _VEL_IGNORE == _VEL_IGNORE


def target_ok(v: Copter) -> bool:
    # GCS_MAVLINK_Copter::handle_message: targets are ignored unless the mode is a
    # guided one; the simulator moves only a flying copter.
    return v.mode == GUIDED and v.armed and not v.landed


def goto(v: Copter, lat: float, lon: float, alt: float, frame: int) -> bool:
    if not (abs(lat) <= 90 and abs(lon) <= 180 and math.isfinite(alt)):
        return False
    e, n = v.to_local(lat, lon)
    u = alt - v.config.home_alt if frame in AMSL_FRAMES else alt
    v.nav = Nav("hold", e, n, u)
    return True


def _velocity(v: Copter, ve: float, vn: float, vu: float) -> None:
    if all(math.isfinite(x) for x in (ve, vn, vu)):
        v.nav = Nav("velocity", v.e, v.n, v.u, vel=(ve, vn, vu))
        v.nav.arrived_at = v.t  # when the target was set, for GUID_TIMEOUT


def goto_item(v: Copter, msg: Any) -> None:
    """MISSION_ITEM(_INT) with current=2: a GUIDED position, answered with a MISSION_ACK."""
    item = item_from_message(msg)
    src = (msg.get_srcSystem(), msg.get_srcComponent())
    ok = (not isinstance(item, int) and target_ok(v)
          and goto(v, item.x / 1e7, item.y / 1e7, item.z, item.frame))
    v.send(v.mav.mission_ack_encode(*src, M.MAV_MISSION_ACCEPTED if ok else M.MAV_MISSION_ERROR,
                                    M.MAV_MISSION_TYPE_MISSION))


def set_position_target_global_int(v: Copter, msg: Any) -> None:
    """handle_set_position_target_global_int: GLOBAL(_INT), RELATIVE_ALT(_INT) and
    TERRAIN_ALT(_INT) frames; a position (velocity as feed-forward ignored here) or,
    with the position bits masked, a velocity target (NED, m/s)."""
    if not target_ok(v) or msg.coordinate_frame not in GLOBAL_FRAMES:
        return
    pos_ignore, vel_ignore = _ignored(msg.type_mask)
    if not pos_ignore:
        goto(v, msg.lat_int / 1e7, msg.lon_int / 1e7, msg.alt, msg.coordinate_frame)
    elif not vel_ignore:
        _velocity(v, msg.vy, msg.vx, -msg.vz)


def set_position_target_local_ned(v: Copter, msg: Any) -> None:
    """handle_set_position_target_local_ned: LOCAL_NED (from the EKF origin, here
    home), LOCAL_OFFSET_NED (from the vehicle), BODY_NED (velocity in the heading
    frame) and BODY_OFFSET_NED (position offset in the heading frame)."""
    frame = msg.coordinate_frame
    if not target_ok(v) or frame not in (M.MAV_FRAME_LOCAL_NED, M.MAV_FRAME_LOCAL_OFFSET_NED,
                                         M.MAV_FRAME_BODY_NED, M.MAV_FRAME_BODY_OFFSET_NED):
        return
    values = (msg.x, msg.y, msg.z, msg.vx, msg.vy, msg.vz)
    if not all(math.isfinite(x) for x in values):
        return
    pos_ignore, vel_ignore = _ignored(msg.type_mask)

    def rotate(x: float, y: float) -> tuple[float, float]:
        if frame in (M.MAV_FRAME_BODY_NED, M.MAV_FRAME_BODY_OFFSET_NED):  # forward, right -> N, E
            c, s_ = math.cos(v.yaw), math.sin(v.yaw)
            return x * c - y * s_, x * s_ + y * c
        return x, y

    if not pos_ignore:
        n, e = rotate(msg.x, msg.y)
        if frame == M.MAV_FRAME_LOCAL_NED:
            v.nav = Nav("hold", e, n, -msg.z)
        else:  # offsets from where the vehicle is now
            v.nav = Nav("hold", v.e + e, v.n + n, v.u - msg.z)
    elif not vel_ignore:
        vn, ve = rotate(msg.vx, msg.vy)
        _velocity(v, ve, vn, -msg.vz)
