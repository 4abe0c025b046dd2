"""Kinematics of the copter: one fixed step toward what :class:`~sitl.copter.nav.Nav`
asks (position targets with WPNAV speed and acceleration limits, GUIDED velocities, the
RTL stages, landing), touchdown, and the throttle a multicopter needs for it."""

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
_LAND_ALT_LOW_M = 10.0  # LAND_ALT_LOW: below it descend at LAND_SPEED
_GUIDED_TIMEOUT_S = 3.0  # GUID_TIMEOUT: a velocity target lapses after this long


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
        v.ae = v.an = 0.0
        v.throttle = 0.0 if not v.armed else 0.1
        if nav.kind == "takeoff" and not v.armed and v.mode != _AUTO:
            v.nav = Nav("hold")
        return
    if nav.kind == "rtl":
        _rtl_phase(v)
        nav = v.nav
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
        rate = (high if v.u > _LAND_ALT_LOW_M else v.params["LAND_SPEED"]) / 100.0
        tu = -1.0  # below ground: descend until touchdown
        v_limit_dn = rate
    else:
        v_limit_dn = v.params["WPNAV_SPEED_DN"] / 100.0
    accel = v.params["WPNAV_ACCEL"] / 100.0
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
    v_target = max(-dn_lim, min(up, math.copysign(math.sqrt(2.0 * accel * abs(du)), du)))
    v.vu += max(-accel * dt, min(accel * dt, v_target - v.vu))
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
    v.vu += max(-accel * dt, min(accel * dt, vu - v.vu))
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
    v.landed = True
    v.ve = v.vn = v.vu = 0.0
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
