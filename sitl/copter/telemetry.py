"""What each message the copter sends says: one builder per MAVLink message, from the
copter's state, as ``GCS_MAVLINK::try_send_message`` and its ``send_*`` fill them in.
When they go out is :mod:`sitl.copter.streams`' business."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from pymavlink.dialects.v20 import ardupilotmega as M

from sitl.copter.modes import AUTO, GUIDED_ENABLED_MODES

if TYPE_CHECKING:
    from sitl.copter.vehicle import Copter

FIRMWARE = "ArduCopter V4.5.7 (sim)"
_FIRMWARE_VERSION = (4 << 24) | (5 << 16) | (7 << 8) | 255  # 4.5.7 FIRMWARE_VERSION_TYPE_OFFICIAL
BOOT_STATUS_S = 1.0  # HEARTBEAT.system_status stays MAV_STATE_BOOT until init finishes

# EKF_STATUS_REPORT.flags (EKF_STATUS_FLAGS, ardupilotmega.xml)
_EKF_PRE_GPS = (M.EKF_ATTITUDE | M.EKF_VELOCITY_VERT | M.EKF_POS_VERT_ABS | M.EKF_CONST_POS_MODE)
_EKF_READY = (M.EKF_ATTITUDE | M.EKF_VELOCITY_HORIZ | M.EKF_VELOCITY_VERT | M.EKF_POS_HORIZ_REL
              | M.EKF_POS_HORIZ_ABS | M.EKF_POS_VERT_ABS | M.EKF_PRED_POS_HORIZ_REL
              | M.EKF_PRED_POS_HORIZ_ABS)


def heartbeat(v: Copter) -> Any:
    """GCS_MAVLINK_Copter::base_mode / vehicle_system_status: STABILIZE_ENABLED and
    MANUAL_INPUT_ENABLED always (81 disarmed, 209 armed in STABILIZE), GUIDED_ENABLED
    in the position-controlled modes whether armed or not (the switch on the mode
    number); STANDBY while landed, ACTIVE in flight."""
    base = (M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | M.MAV_MODE_FLAG_STABILIZE_ENABLED
            | M.MAV_MODE_FLAG_MANUAL_INPUT_ENABLED)
    if v.mode in GUIDED_ENABLED_MODES:
        base |= M.MAV_MODE_FLAG_GUIDED_ENABLED
    if v.armed:
        base |= M.MAV_MODE_FLAG_SAFETY_ARMED
    if v.t < BOOT_STATUS_S:
        status = M.MAV_STATE_BOOT
    elif v.landed:
        status = M.MAV_STATE_STANDBY
    else:
        status = M.MAV_STATE_ACTIVE
    return v.mav.heartbeat_encode(M.MAV_TYPE_QUADROTOR, M.MAV_AUTOPILOT_ARDUPILOTMEGA, base, v.mode, status)


def mission_current_msg(v: Copter, seq: int) -> Any:
    """GCS_MAVLINK::send_mission_current: total excludes home; mission_state maps
    AP_Mission's STOPPED/RUNNING/COMPLETE (so a mission left by a mode change reads
    NOT_STARTED); mission_mode is 1 in a mode that runs the mission (AUTO)."""
    total = max(0, len(v.missions.items) - 1)
    if total == 0:
        state = M.MISSION_STATE_NO_MISSION
    elif v.paused is not None:
        state = M.MISSION_STATE_PAUSED  # GCS_MAVLINK_Copter::mission_state
    elif v.mission_state == "running":
        state = M.MISSION_STATE_ACTIVE
    elif v.mission_state == "complete":
        state = M.MISSION_STATE_COMPLETE
    else:
        state = M.MISSION_STATE_NOT_STARTED
    return v.mav.mission_current_encode(seq if total else 0, total, state, 1 if v.mode == AUTO else 0)


def _mission_current(v: Copter) -> Any:
    return mission_current_msg(v, v.mission_index)


def _boot_ms(v: Copter) -> int:
    return int(v.t * 1000) & 0xFFFFFFFF


def _global_position_int(v: Copter) -> Any:
    hdg = int(math.degrees(v.yaw) % 360 * 100)
    if not v.gps_fix:
        # GCS_MAVLINK::send_global_position_int sends global_position_current_loc, which
        # stays zero until the AHRS has a location (no GPS fix yet): 0,0 at 0 m.
        return v.mav.global_position_int_encode(_boot_ms(v), 0, 0, 0, 0, 0, 0, 0, hdg)
    lat, lon = v.latlon()
    return v.mav.global_position_int_encode(
        _boot_ms(v), round(lat * 1e7), round(lon * 1e7), round((v.config.home_alt + v.u) * 1000),
        round(v.u * 1000), round(v.vn * 100), round(v.ve * 100), round(-v.vu * 100), hdg)


def _sys_status(v: Copter) -> Any:
    sensors = (M.MAV_SYS_STATUS_SENSOR_3D_GYRO | M.MAV_SYS_STATUS_SENSOR_3D_ACCEL
               | M.MAV_SYS_STATUS_SENSOR_3D_MAG | M.MAV_SYS_STATUS_SENSOR_ABSOLUTE_PRESSURE
               | M.MAV_SYS_STATUS_SENSOR_GPS | M.MAV_SYS_STATUS_AHRS | M.MAV_SYS_STATUS_SENSOR_BATTERY)
    healthy = sensors if v.ready else sensors & ~(M.MAV_SYS_STATUS_SENSOR_GPS | M.MAV_SYS_STATUS_AHRS)
    enabled = sensors
    # AC_Fence::sys_status_present/enabled/failed: present when any FENCE_TYPE is
    # configured, enabled with FENCE_ENABLE, unhealthy while breached.
    present = sensors | (M.MAV_SYS_STATUS_GEOFENCE if v.params["FENCE_TYPE"] else 0)
    if v.params["FENCE_ENABLE"] >= 1 and v.params["FENCE_ACTION"] != 0:  # REPORT_ONLY: not "enabled"
        enabled |= M.MAV_SYS_STATUS_GEOFENCE
    if not v.fence.breached:
        healthy |= M.MAV_SYS_STATUS_GEOFENCE
    b = v.battery
    return v.mav.sys_status_encode(present, enabled, healthy, 200, round(b.voltage * 1000),
                                   round(b.current_a * 100), round(b.remaining_pct), 0, 0, 0, 0, 0, 0)


def _battery_status(v: Copter) -> Any:
    b = v.battery
    volts = [round(b.voltage * 1000)] + [65535] * 9
    return v.mav.battery_status_encode(
        0, M.MAV_BATTERY_FUNCTION_UNKNOWN, M.MAV_BATTERY_TYPE_LIPO, 32767, volts,
        round(b.current_a * 100), round(b.mah_used), round(b.mah_used * 3.6 * b.voltage / 100),
        round(b.remaining_pct), 0, M.MAV_BATTERY_CHARGE_STATE_OK, [0, 0, 0, 0], 0, 0)


def _gps_raw_int(v: Copter) -> Any:
    lat, lon = v.latlon()
    # SITL's simulated GPS reports RTK fixed (6) once it has a fix (observed on Copter 4.6)
    fix = M.GPS_FIX_TYPE_RTK_FIXED if v.gps_fix else M.GPS_FIX_TYPE_NO_FIX
    sats = 10 if v.gps_fix else 0
    cog = int(math.degrees(math.atan2(v.ve, v.vn)) % 360 * 100)
    return v.mav.gps_raw_int_encode(
        int(v.t * 1e6), fix, round(lat * 1e7) if v.gps_fix else 0, round(lon * 1e7) if v.gps_fix else 0,
        round((v.config.home_alt + v.u) * 1000) if v.gps_fix else 0, 121 if v.gps_fix else 9999,
        200 if v.gps_fix else 9999, round(math.hypot(v.ve, v.vn) * 100), cog, sats)


def _attitude(v: Copter) -> Any:
    # A multicopter tilts into its horizontal acceleration: pitch nose-down to speed up
    # forward, roll right to accelerate right (tan(tilt) = a / g).
    yaw = (v.yaw + math.pi) % (2 * math.pi) - math.pi
    forward = v.ae * math.sin(v.yaw) + v.an * math.cos(v.yaw)
    right = v.ae * math.cos(v.yaw) - v.an * math.sin(v.yaw)
    pitch, roll = -math.atan2(forward, 9.80665), math.atan2(right, 9.80665)
    return v.mav.attitude_encode(_boot_ms(v), roll, pitch, yaw, 0.0, 0.0, 0.0)


def _vfr_hud(v: Copter) -> Any:
    speed = math.hypot(v.ve, v.vn)
    return v.mav.vfr_hud_encode(speed, speed, int(math.degrees(v.yaw) % 360), round(v.throttle * 100),
                                v.config.home_alt + v.u, v.vu)


def _ekf_status(v: Copter) -> Any:
    flags = _EKF_READY if v.ready else _EKF_PRE_GPS
    return v.mav.ekf_status_report_encode(flags, 0.02, 0.01, 0.01, 0.01, 0.0, 0.0)


def _fence_status(v: Copter) -> Any:
    f = v.fence
    return v.mav.fence_status_encode(1 if f.breached else 0, f.breach_count, f.breached, f.breach_time_ms,
                                     M.FENCE_MITIGATE_UNKNOWN)


def _system_time(v: Copter) -> Any:
    # AP_RTC: UTC is known once the GPS has a fix (SITL's GPS reports the host's time);
    # before that time_unix_usec is 0.
    unix_us = int((v.epoch + v.t) * 1e6) if v.gps_fix else 0
    return v.mav.system_time_encode(unix_us, _boot_ms(v))


def _home_position(v: Copter) -> Any:
    if not v.ready:
        return None  # GCS_MAVLINK::send_home_position: nothing until home is set
    c = v.config
    return v.mav.home_position_encode(round(c.home_lat * 1e7), round(c.home_lon * 1e7),
                                      round(c.home_alt * 1000), 0, 0, 0, [1, 0, 0, 0], 0, 0, 0, 0)


def _local_position_ned(v: Copter) -> Any:
    return v.mav.local_position_ned_encode(_boot_ms(v), v.n, v.e, -v.u, v.vn, v.ve, -v.vu)


def _autopilot_version(v: Copter) -> Any:
    caps = (M.MAV_PROTOCOL_CAPABILITY_MISSION_FLOAT | M.MAV_PROTOCOL_CAPABILITY_PARAM_FLOAT
            | M.MAV_PROTOCOL_CAPABILITY_MISSION_INT | M.MAV_PROTOCOL_CAPABILITY_COMMAND_INT
            | M.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_GLOBAL_INT | M.MAV_PROTOCOL_CAPABILITY_MAVLINK2
            | M.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_LOCAL_NED
            | M.MAV_PROTOCOL_CAPABILITY_MISSION_FENCE | M.MAV_PROTOCOL_CAPABILITY_MISSION_RALLY)
    return v.mav.autopilot_version_encode(caps, _FIRMWARE_VERSION, 0, 0, 0, [0] * 8, [0] * 8, [0] * 8,
                                          0, 0, v.sysid, [0] * 18)


# msgid -> builder; a builder may return None when the message has nothing to say yet
BUILDERS: dict[int, Callable[[Copter], Any]] = {
    M.MAVLINK_MSG_ID_HEARTBEAT: heartbeat,
    M.MAVLINK_MSG_ID_MISSION_CURRENT: _mission_current,
    M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT: _global_position_int,
    M.MAVLINK_MSG_ID_SYS_STATUS: _sys_status,
    M.MAVLINK_MSG_ID_BATTERY_STATUS: _battery_status,
    M.MAVLINK_MSG_ID_GPS_RAW_INT: _gps_raw_int,
    M.MAVLINK_MSG_ID_ATTITUDE: _attitude,
    M.MAVLINK_MSG_ID_VFR_HUD: _vfr_hud,
    M.MAVLINK_MSG_ID_EKF_STATUS_REPORT: _ekf_status,
    M.MAVLINK_MSG_ID_FENCE_STATUS: _fence_status,
    M.MAVLINK_MSG_ID_SYSTEM_TIME: _system_time,
    M.MAVLINK_MSG_ID_HOME_POSITION: _home_position,
    M.MAVLINK_MSG_ID_LOCAL_POSITION_NED: _local_position_ned,
    M.MAVLINK_MSG_ID_AUTOPILOT_VERSION: _autopilot_version,
}
