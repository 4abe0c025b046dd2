"""Copter flight modes: the mode table, what each mode allows, and changing mode
(``Copter::set_mode``, ``Mode::init`` of each mode in ``ArduCopter/mode*.cpp``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pymavlink.dialects.v20 import ardupilotmega as M

from mavlink_bridge.telemetry import CopterMode
from sitl.copter import mission
from sitl.copter.nav import Nav

if TYPE_CHECKING:
    from sitl.copter.vehicle import Copter

# Copter flight modes (ArduCopter/mode.h, Mode::Number): the project's one table of
# numbers and names is the bridge's CopterMode (checked against pymavlink's
# mode_mapping_acm), less AUTOROTATE, which is helicopter-only: on a multicopter setting
# it, or any number CopterMode lacks, is refused "No such mode", as on the real one.
_NO_SUCH_COPTER_MODE = frozenset({CopterMode.AUTOROTATE})
MODES: dict[int, str] = {int(mode): mode.name for mode in CopterMode if mode not in _NO_SUCH_COPTER_MODE}
_C = CopterMode
STABILIZE, ALT_HOLD, AUTO, GUIDED = int(_C.STABILIZE), int(_C.ALT_HOLD), int(_C.AUTO), int(_C.GUIDED)
LOITER, RTL, CIRCLE, LAND = int(_C.LOITER), int(_C.RTL), int(_C.CIRCLE), int(_C.LAND)
POSHOLD, BRAKE, SMART_RTL, AUTO_RTL = int(_C.POSHOLD), int(_C.BRAKE), int(_C.SMART_RTL), int(_C.AUTO_RTL)
_DRIFT, _SPORT, _FLIP, _AUTOTUNE = int(_C.DRIFT), int(_C.SPORT), int(_C.FLIP), int(_C.AUTOTUNE)
_THROW, _AVOID_ADSB, _FLOWHOLD = int(_C.THROW), int(_C.AVOID_ADSB), int(_C.FLOWHOLD)
_FOLLOW, _ZIGZAG = int(_C.FOLLOW), int(_C.ZIGZAG)
# Mode::name() where it differs from the HEARTBEAT mode name (used in "Mode change to
# %s failed" texts).
_MODE_TEXT_NAMES = {SMART_RTL: "SMARTRTL", AUTO_RTL: "AUTO RTL"}
# Mode::requires_GPS() is true for these (ArduCopter/mode.h).
REQUIRES_POSITION = frozenset({AUTO, GUIDED, LOITER, RTL, CIRCLE, _DRIFT, POSHOLD, BRAKE, _THROW, _AVOID_ADSB,
                               SMART_RTL, _FOLLOW, _ZIGZAG, AUTO_RTL})
# GCS_MAVLINK_Copter::base_mode sets MAV_MODE_FLAG_GUIDED_ENABLED in these.
GUIDED_ENABLED_MODES = frozenset({AUTO, AUTO_RTL, RTL, LOITER, _AVOID_ADSB, _FOLLOW, GUIDED, CIRCLE, POSHOLD,
                                  BRAKE, SMART_RTL})
# Mode::allows_arming() is false for these; AUTO only with AUTO_OPTIONS bit 0 (default 0).
NOT_ARMABLE = frozenset({AUTO, RTL, CIRCLE, LAND, BRAKE, SMART_RTL, AUTO_RTL, _FLIP, _AUTOTUNE, _AVOID_ADSB,
                         _FOLLOW})
# Mode::has_user_takeoff(): MAV_CMD_NAV_TAKEOFF is accepted in these.
USER_TAKEOFF = frozenset({GUIDED, LOITER, ALT_HOLD, POSHOLD, _SPORT, _FLOWHOLD, _ZIGZAG})


def set_mode(v: Copter, mode: int) -> bool:
    """Copter::set_mode: unknown modes and position-less modes are refused with a STATUSTEXT."""
    name = _MODE_TEXT_NAMES.get(mode, MODES.get(mode))
    if name is None:
        v.statustext(M.MAV_SEVERITY_WARNING, f"No such mode {mode}")
        return False
    if mode == v.mode:
        return True
    # Copter::set_mode: ignore_checks = !armed -- a disarmed copter may enter any mode
    # ("we rely on the arming check"); the checks below apply only when armed.
    if v.armed and mode in REQUIRES_POSITION and not v.ready:
        v.statustext(M.MAV_SEVERITY_WARNING, f"Mode change to {name} failed: requires position")
        return False
    if mode == AUTO and v.armed:
        # ModeAuto::init: a mission must be present, and from the ground it must
        # start with a takeoff
        if len(v.missions.items) <= 1:
            v.statustext(M.MAV_SEVERITY_WARNING, f"Mode change to {name} failed: init failed")
            return False
        if v.landed and not mission.starts_with_takeoff(v):
            v.statustext(M.MAV_SEVERITY_CRITICAL, "Auto: Missing Takeoff Cmd")
            v.statustext(M.MAV_SEVERITY_WARNING, f"Mode change to {name} failed: init failed")
            return False
    previous = v.mode
    v.mode = mode
    v.paused = None
    v.speed_override = None if previous == AUTO or mode == AUTO else v.speed_override
    _enter_mode(v, mode)
    return True


def _enter_mode(v: Copter, mode: int) -> None:
    flying = v.armed and not v.landed
    if mode == AUTO:
        # ModeAuto::init starts or resumes the mission at once; on the ground the
        # copter then waits for auto_armed (MAV_CMD_MISSION_START in SITL: no RC throttle)
        if flying:
            v.auto_armed = True
        mission.start_or_resume(v)
        return
    if v.mission_state == "running":
        v.mission_state = "stopped"
    if mode in (RTL, SMART_RTL, AUTO_RTL):
        if flying:
            v.nav = Nav("rtl", v.e, v.n, 0.0, phase="climb")
        return
    if mode == LAND:
        if flying:
            v.nav = Nav("land", v.e, v.n, 0.0)
        elif v.armed:
            v.disarm("land")
        return
    # GUIDED, LOITER and the manual modes: hold where we are (no RC input in SITL).
    v.nav = Nav("hold", v.e, v.n, v.u)
