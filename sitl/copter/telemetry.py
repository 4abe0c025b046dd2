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
_G = 9.80665
_EARTH_FIELD_NED_MGAUSS = (232, 52, -528)  # SITL's field at CMAC (its default home), used everywhere
_IMU_TEMP_CDEG = 2974  # SITL's IMU and barometer temperatures
_BARO_TEMP_CDEG = 3081
_SITL_RC_PWM = (1500, 1500, 1000, 1500, 1800, 1000, 1000, 1800)  # SITL's RC input, no transmitter

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
    # AP_Mission::get_current_nav_index: 0 until a nav command has been loaded (the
    # mission started, or DO_SET_MISSION_CURRENT named where it will start)
    return mission_current_msg(v, v.mission_index if v.nav_index_loaded else 0)


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


def _roll_pitch_yaw(v: Copter) -> tuple[float, float, float]:
    """A multicopter tilts into its horizontal acceleration: pitch nose-down to speed up
    forward, roll right to accelerate right (tan(tilt) = a / g); yaw in -pi..pi."""
    yaw = (v.yaw + math.pi) % (2 * math.pi) - math.pi
    forward = v.ae * math.sin(v.yaw) + v.an * math.cos(v.yaw)
    right = v.ae * math.cos(v.yaw) - v.an * math.sin(v.yaw)
    return math.atan2(right, _G), -math.atan2(forward, _G), yaw


def _attitude(v: Copter) -> Any:
    roll, pitch, yaw = _roll_pitch_yaw(v)
    return v.mav.attitude_encode(_boot_ms(v), roll, pitch, yaw, 0.0, 0.0, 0.0)


def _ahrs2(v: Copter) -> Any:
    """AHRS2: the secondary estimator's attitude and position (SITL: the same as the first)."""
    roll, pitch, yaw = _roll_pitch_yaw(v)
    lat, lon = v.latlon() if v.gps_fix else (0.0, 0.0)
    return v.mav.ahrs2_encode(roll, pitch, yaw, v.config.home_alt + v.u, round(lat * 1e7), round(lon * 1e7))


def _simstate(v: Copter) -> Any:
    """SIMSTATE (ardupilotmega): the simulator's true attitude, acceleration and position."""
    roll, pitch, yaw = _roll_pitch_yaw(v)
    lat, lon = v.latlon()
    return v.mav.simstate_encode(roll, pitch, yaw, v.ae, v.an, -_G, 0.0, 0.0, 0.0, round(lat * 1e7),
                                 round(lon * 1e7))


def _ahrs(v: Copter) -> Any:
    """AHRS (DCM's gyro drift estimate and errors): the simulator's sensors have none."""
    return v.mav.ahrs_encode(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _specific_force_mg(v: Copter) -> int:
    """What a multicopter's z accelerometer reads, in milli-g: thrust along the body z axis
    holds it against gravity and tilts it to accelerate (x and y read ~0 in coordinated
    flight), so -1000 at rest (SITL reads -1001)."""
    return -round(1000.0 * math.hypot(_G + v.au, v.ae, v.an) / _G)


def _mag_body(v: Copter) -> tuple[int, int, int]:
    """The earth field in the body frame, turned by the heading (mGauss)."""
    n, e, d = _EARTH_FIELD_NED_MGAUSS
    c, s_ = math.cos(v.yaw), math.sin(v.yaw)
    return round(n * c + e * s_), round(-n * s_ + e * c), d


def _raw_imu(v: Copter) -> Any:
    return v.mav.raw_imu_encode(int(v.t * 1e6), 0, 0, _specific_force_mg(v), 0, 0, 0, *_mag_body(v), 0,
                                _IMU_TEMP_CDEG)


def _scaled_imu2(v: Copter) -> Any:
    return v.mav.scaled_imu2_encode(_boot_ms(v), 0, 0, _specific_force_mg(v), 0, 0, 0, *_mag_body(v),
                                    _IMU_TEMP_CDEG)


def _scaled_pressure(v: Copter) -> Any:
    """The barometer: the ISA pressure at the copter's altitude above sea level."""
    alt = v.config.home_alt + v.u
    press_hpa = 1013.25 * (1.0 - 2.25577e-5 * alt) ** 5.25588
    return v.mav.scaled_pressure_encode(_boot_ms(v), press_hpa, 0.0, _BARO_TEMP_CDEG, 0)


def _rc_channels(v: Copter) -> Any:
    """SITL's RC input with no transmitter attached: sticks centred, throttle low, the
    mode switch (channel 5) and channel 8 high, RSSI 255 (unknown)."""
    chans = list(_SITL_RC_PWM) + [0] * (18 - len(_SITL_RC_PWM))
    return v.mav.rc_channels_encode(_boot_ms(v), len(_SITL_RC_PWM), *chans, 255)


def _servo_output_raw(v: Copter) -> Any:
    """The four motor outputs: MOT_PWM_MIN (1000) disarmed, then spin and throttle."""
    pwm = 1000 + round(1000 * v.throttle) if v.armed else 1000
    return v.mav.servo_output_raw_encode(int(v.t * 1e6) & 0xFFFFFFFF, 0, pwm, pwm, pwm, pwm, 0, 0, 0, 0,
                                         0, 0, 0, 0, 0, 0, 0, 0)


def _vibration(v: Copter) -> Any:
    level = 0.0027 + (0.05 if v.armed and not v.landed else 0.0)  # SITL's noise; more with the motors up
    return v.mav.vibration_encode(int(v.t * 1e6), level, level, level, 0, 0, 0)


def _wind(v: Copter) -> Any:
    """The wind estimate: none in this simulator, so the direction is atan2(-0, -0) = -180
    as ArduPilot computes it from a zero wind vector."""
    return v.mav.wind_encode(math.degrees(math.atan2(-0.0, -0.0)), 0.0, 0.0)


def _power_status(v: Copter) -> Any:
    return v.mav.power_status_encode(5000, 0, 0)  # Vcc 5 V (SITL's), no servo rail sensing


def _meminfo(v: Copter) -> Any:
    return v.mav.meminfo_encode(0, 65535, 131072)  # SITL's figures


def _nav_controller_output(v: Copter) -> Any:
    """NAV_CONTROLLER_OUTPUT: the tilt asked for, bearing and distance to the position
    target, altitude error."""
    roll, pitch, _ = _roll_pitch_yaw(v)
    de, dn = v.nav.e - v.e, v.nav.n - v.n
    dist = math.hypot(de, dn)
    target_bearing = round(math.degrees(math.atan2(de, dn))) if dist > 0.1 else 0
    nav_bearing = round(math.degrees((v.yaw + math.pi) % (2 * math.pi) - math.pi))
    return v.mav.nav_controller_output_encode(math.degrees(roll), math.degrees(pitch), nav_bearing,
                                              target_bearing, min(65535, round(dist)), v.nav.u - v.u, 0.0, 0.0)


def _gps_global_origin(v: Copter) -> Any:
    """GPS_GLOBAL_ORIGIN: the EKF origin (home here), once the EKF has set it."""
    if not v.ready:
        return None
    c = v.config
    return v.mav.gps_global_origin_encode(round(c.home_lat * 1e7), round(c.home_lon * 1e7),
                                          round(c.home_alt * 1000), int(v.t * 1e6))


def _vfr_hud(v: Copter) -> Any:
    speed = math.hypot(v.ve, v.vn)
    return v.mav.vfr_hud_encode(speed, speed, int(math.degrees(v.yaw) % 360), round(v.throttle * 100),
                                v.config.home_alt + v.u, v.vu)


def _ekf_status(v: Copter) -> Any:
    flags = _EKF_READY if v.ready else _EKF_PRE_GPS
    return v.mav.ekf_status_report_encode(flags, 0.02, 0.01, 0.01, 0.01, 0.0, 0.0)


def _fence_status(v: Copter) -> Any:
    """GCS_MAVLINK::send_fence_status: only while a fence is enabled (nothing otherwise,
    even when streamed); mitigation NONE (Copter does not limit velocity at the fence)."""
    if v.params["FENCE_ENABLE"] < 1:
        return None
    f = v.fence
    return v.mav.fence_status_encode(1 if f.breached else 0, f.breach_count, f.breached, f.breach_time_ms,
                                     M.FENCE_MITIGATE_NONE)


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
    M.MAVLINK_MSG_ID_AHRS: _ahrs,
    M.MAVLINK_MSG_ID_AHRS2: _ahrs2,
    M.MAVLINK_MSG_ID_SIMSTATE: _simstate,
    M.MAVLINK_MSG_ID_RAW_IMU: _raw_imu,
    M.MAVLINK_MSG_ID_SCALED_IMU2: _scaled_imu2,
    M.MAVLINK_MSG_ID_SCALED_PRESSURE: _scaled_pressure,
    M.MAVLINK_MSG_ID_RC_CHANNELS: _rc_channels,
    M.MAVLINK_MSG_ID_SERVO_OUTPUT_RAW: _servo_output_raw,
    M.MAVLINK_MSG_ID_VIBRATION: _vibration,
    M.MAVLINK_MSG_ID_WIND: _wind,
    M.MAVLINK_MSG_ID_POWER_STATUS: _power_status,
    M.MAVLINK_MSG_ID_MEMINFO: _meminfo,
    M.MAVLINK_MSG_ID_NAV_CONTROLLER_OUTPUT: _nav_controller_output,
    M.MAVLINK_MSG_ID_GPS_GLOBAL_ORIGIN: _gps_global_origin,
}
