"""Kinematics of the copter: one fixed step toward what :class:`~sitl.copter.nav.Nav`
asks (position targets with WPNAV speed and acceleration limits, GUIDED velocities, the
RTL stages, landing), takeoff and touchdown, and the throttle a multicopter needs.

Timing follows ArduCopter's defaults. Its position targets move along jerk-limited
S-curves (AC_WPNav with WPNAV_JERK horizontally, AC_PosControl with PSC_JERK_Z and
WPNAV_ACCEL_Z vertically); the simulator flies the trapezoid with the same cruise speed
that takes exactly as long to reach it and covers the same distance doing so
(:func:`scurve_accel`), so a leg takes the S-curve's time without its jerk-level
detail. A takeoff from the ground waits for the motors to spool up (MOT_SPOOL_TIME) and
the throttle to slew to TKOFF_THR_MAX (TKOFF_SLEW_TIME), as AutoTakeoff does; a landing
is complete once the land detector has seen the ground for a second."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mavlink_bridge.telemetry import CopterMode
from sitl.copter import mission
from sitl.copter.battery import HOVER_THROTTLE
from sitl.copter.nav import Nav

if TYPE_CHECKING:
    from sitl.copter.vehicle import Copter

_AUTO = int(CopterMode.AUTO)  # (modes.AUTO; modes imports mission, which imports this module)
_GUIDED_TIMEOUT_S = 3.0  # GUID_TIMEOUT: a velocity target lapses after this long
LAND_DETECTOR_TRIGGER_S = 1.0  # land_detector.cpp LAND_DETECTOR_TRIGGER_SEC


def scurve_accel(speed: float, accel: float, jerk: float) -> float:
    """The constant acceleration that reaches ``speed`` in the time a jerk-limited
    S-curve (acceleration ramped up at ``jerk`` to ``accel``, held, ramped down) takes:
    speed / (speed / accel + accel / jerk). Over that time both cover speed * t / 2."""
    if speed <= 0 or accel <= 0 or jerk <= 0:
        return max(accel, 1e-3)
    return speed / (speed / accel + accel / jerk)


def _liftoff_delay(v: Copter) -> float:
    """AutoTakeoff on the ground: motors spool up, then the throttle slews up by
    1 / TKOFF_SLEW_TIME per second until TKOFF_THR_MAX (at most 0.9) lifts it off."""
    return v.params["MOT_SPOOL_TIME"] + v.params["TKOFF_SLEW_TIME"] * min(v.params["TKOFF_THR_MAX"], 0.9)


def horizontal_speed(v: Copter) -> float:
    """The cruise speed: DO_CHANGE_SPEED's if one is in force, else WPNAV_SPEED."""
    if v.speed_override is not None:
        return v.speed_override
    return v.params["WPNAV_SPEED"] / 100.0


def navigate(v: Copter, dt: float) -> None:
    nav = v.nav
    waiting_for_auto_armed = v.mode == _AUTO and v.landed and not v.auto_armed
    if not v.armed or waiting_for_auto_armed or (v.landed and nav.kind not in ("takeoff",)):
        v.ve = v.vn = v.vu = 0.0
        v.ae = v.an = v.au = 0.0
        v.throttle = 0.0 if not v.armed else 0.1
        if nav.kind == "takeoff" and not v.armed and v.mode != _AUTO:
            v.nav = Nav("hold")
        return
    if nav.kind == "rtl":
        _rtl_phase(v)
        nav = v.nav
    if nav.kind == "takeoff" and v.u <= 0.0:
        if nav.liftoff_at is None:
            nav.liftoff_at = v.t + _liftoff_delay(v)
        if v.t < nav.liftoff_at:
            v.throttle = 0.1
            return  # still on the ground: spooling up, throttle slewing
    if nav.kind == "velocity":
        if v.t - (nav.arrived_at or 0.0) < _GUIDED_TIMEOUT_S:
            _fly_velocity(v, dt, *nav.vel)
            return
        # ModeGuided: no new velocity target within GUID_TIMEOUT -> stop and hold
        v.nav = nav = Nav("hold", v.e, v.n, v.u)
    te, tn, tu = nav.e, nav.n, nav.u
    h_speed = horizontal_speed(v)
    if nav.kind == "rtl" and v.params["RTL_SPEED"] > 0:
        h_speed = v.params["RTL_SPEED"] / 100.0
    if nav.kind in ("land",) or (nav.kind == "rtl" and nav.phase == "land"):
        high = v.params["LAND_SPEED_HIGH"] or v.params["WPNAV_SPEED_DN"]
        rate = (high if v.u > v.params["LAND_ALT_LOW"] / 100.0 else v.params["LAND_SPEED"]) / 100.0
        tu = -1.0  # below ground: descend until touchdown
        v_limit_dn = rate
    else:
        v_limit_dn = v.params["WPNAV_SPEED_DN"] / 100.0
    accel = scurve_accel(h_speed, v.params["WPNAV_ACCEL"] / 100.0, v.params["WPNAV_JERK"])
    # horizontal: accelerate toward the target, braking so as to stop on it
    de, dn = te - v.e, tn - v.n
    dist = math.hypot(de, dn)
    if dist > 1e-6:
        v_des = min(h_speed, math.sqrt(2.0 * accel * dist))
        de_v, dn_v = de / dist * v_des, dn / dist * v_des
    else:
        de_v = dn_v = 0.0
    _accelerate_horizontally(v, de_v, dn_v, accel, dt)
    step_e, step_n = v.ve * dt, v.vn * dt
    if dist > 1e-6 and math.hypot(step_e, step_n) >= dist and dist < 0.5:
        v.e, v.n, v.ve, v.vn = te, tn, 0.0, 0.0  # settle on the target
    else:
        v.e += step_e
        v.n += step_n
    _face_the_track(v)
    # vertical
    du = tu - v.u
    up, dn_lim = v.params["WPNAV_SPEED_UP"] / 100.0, v_limit_dn
    accel_z = scurve_accel(up if du > 0 else dn_lim, v.params["WPNAV_ACCEL_Z"] / 100.0, v.params["PSC_JERK_Z"])
    v_target = max(-dn_lim, min(up, math.copysign(math.sqrt(2.0 * accel_z * abs(du)), du)))
    dvu = max(-accel_z * dt, min(accel_z * dt, v_target - v.vu))
    v.vu += dvu
    v.au = dvu / dt
    new_u = v.u + v.vu * dt
    if (tu - v.u) * (tu - new_u) <= 0 and abs(du) < 0.5:
        new_u, v.vu = tu, 0.0
    v.u = new_u
    if v.u <= 0.0 and v.vu <= 0.0:
        v.u = 0.0
        v.vu = 0.0
        if nav.kind != "takeoff":  # a takeoff starting from the ground is not a landing
            _touchdown(v)
            return
    else:
        v.landed = False
        v.on_ground_since = None
    _set_throttle(v)
    mission.nav_progress(v)


def _fly_velocity(v: Copter, dt: float, ve: float, vn: float, vu: float) -> None:
    """GUIDED velocity control: accelerate toward the target velocity, within
    WPNAV_ACCEL and the WPNAV speed limits; the ground stops a descent."""
    accel = v.params["WPNAV_ACCEL"] / 100.0
    h_max = horizontal_speed(v)
    h = math.hypot(ve, vn)
    if h > h_max > 0:
        ve, vn = ve / h * h_max, vn / h * h_max
    vu = max(-v.params["WPNAV_SPEED_DN"] / 100.0, min(v.params["WPNAV_SPEED_UP"] / 100.0, vu))
    _accelerate_horizontally(v, ve, vn, accel, dt)
    dvu = max(-accel * dt, min(accel * dt, vu - v.vu))
    v.vu += dvu
    v.au = dvu / dt
    v.e += v.ve * dt
    v.n += v.vn * dt
    v.u += v.vu * dt
    _face_the_track(v)
    _set_throttle(v)
    if v.u <= 0.0 and v.vu <= 0.0:
        v.u = 0.0
        v.nav = Nav("hold", v.e, v.n, 0.0)
        _touchdown(v)


def _accelerate_horizontally(v: Copter, ve: float, vn: float, accel: float, dt: float) -> None:
    """Move the horizontal velocity toward (ve, vn) by at most ``accel * dt``."""
    dve, dvn = ve - v.ve, vn - v.vn
    dv = math.hypot(dve, dvn)
    if dv > accel * dt:
        dve, dvn = dve / dv * accel * dt, dvn / dv * accel * dt
    v.ve += dve
    v.vn += dvn
    v.ae, v.an = dve / dt, dvn / dt  # for the attitude a multicopter needs to accelerate


def _face_the_track(v: Copter) -> None:
    if math.hypot(v.ve, v.vn) > 0.3:
        v.yaw = math.atan2(v.ve, v.vn)


def _set_throttle(v: Copter) -> None:
    """Hover throttle, more while climbing and less while descending."""
    up = v.params["WPNAV_SPEED_UP"] / 100.0
    v.throttle = max(0.0, min(1.0, HOVER_THROTTLE * (1.0 + 0.3 * v.vu / max(up, 0.1))))


def _touchdown(v: Copter) -> None:
    v.ve = v.vn = v.vu = 0.0
    if v.on_ground_since is None:
        v.on_ground_since = v.t
    if v.t - v.on_ground_since < LAND_DETECTOR_TRIGGER_S:
        return  # the land detector has not yet seen the ground for long enough
    v.on_ground_since = None
    v.landed = True
    nav = v.nav
    if nav.kind == "land" or (nav.kind == "rtl" and nav.phase == "land"):
        # LAND and RTL disarm once the land detector sees touchdown.
        seq = nav.item_seq
        v.nav = Nav("hold", v.e, v.n, 0.0)
        v.disarm("landed")
        if v.mode == _AUTO and seq >= 0:
            mission.command_complete(v, seq)


def _rtl_phase(v: Copter) -> None:
    """ModeRTL's stages: climb to RTL_ALT, return, loiter RTL_LOIT_TIME, land."""
    nav = v.nav
    rtl_alt = v.params["RTL_ALT"] / 100.0
    if nav.phase == "climb":
        target_u = max(v.u, rtl_alt) if nav.u == 0 else nav.u
        nav.u = target_u
        nav.e, nav.n = v.e, v.n
        if abs(v.u - target_u) < 0.5:
            nav.phase = "return"
            nav.e, nav.n = 0.0, 0.0
    elif nav.phase == "return":
        nav.e, nav.n = 0.0, 0.0
        if math.hypot(v.e, v.n) <= v.params["WPNAV_RADIUS"] / 100.0 and abs(v.ve) + abs(v.vn) < 0.5:
            nav.phase = "loiter"
            nav.arrived_at = v.t
    elif nav.phase == "loiter":
        if v.t - (nav.arrived_at or v.t) >= v.params["RTL_LOIT_TIME"] / 1000.0:
            nav.phase = "land"
