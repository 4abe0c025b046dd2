"""Copter flight modes: the mode table, what each mode allows, and changing mode
(``Copter::set_mode``, ``Mode::init`` of each mode in ``ArduCopter/mode*.cpp``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pymavlink import mavutil
from pymavlink.dialects.v20 import ardupilotmega as M

from sitl.copter import mission
from sitl.copter.nav import Nav

if TYPE_CHECKING:
    from sitl.copter.vehicle import Copter

# Copter flight modes (ArduCopter/mode.h, Mode::Number): pymavlink's mode_mapping_acm is
# the one table of numbers and names (the bridge names modes from it too), less the
# numbers a multicopter ArduCopter 4.6 has no mode for (8 POSITION and 10 OF_LOITER are
# retired, 26 AUTOROTATE is helicopter-only, 29 RATE_ACRO is not Copter's): setting one is
# refused "No such mode", as on the real one.
_NO_SUCH_COPTER_MODE = frozenset({8, 10, 26, 29})
MODES: dict[int, str] = {number: name for number, name in mavutil.mode_mapping_acm.items()
                         if number not in _NO_SUCH_COPTER_MODE}
STABILIZE, ALT_HOLD = M.COPTER_MODE_STABILIZE, M.COPTER_MODE_ALT_HOLD
AUTO, GUIDED = M.COPTER_MODE_AUTO, M.COPTER_MODE_GUIDED
LOITER, RTL, CIRCLE, LAND = M.COPTER_MODE_LOITER, M.COPTER_MODE_RTL, M.COPTER_MODE_CIRCLE, M.COPTER_MODE_LAND
POSHOLD, BRAKE, SMART_RTL, AUTO_RTL = (M.COPTER_MODE_POSHOLD, M.COPTER_MODE_BRAKE, M.COPTER_MODE_SMART_RTL,
                                       M.COPTER_MODE_AUTO_RTL)
_DRIFT, _SPORT, _FLIP, _AUTOTUNE = M.COPTER_MODE_DRIFT, M.COPTER_MODE_SPORT, M.COPTER_MODE_FLIP, M.COPTER_MODE_AUTOTUNE
_THROW, _AVOID_ADSB, _FLOWHOLD = M.COPTER_MODE_THROW, M.COPTER_MODE_AVOID_ADSB, M.COPTER_MODE_FLOWHOLD
_FOLLOW, _ZIGZAG = M.COPTER_MODE_FOLLOW, M.COPTER_MODE_ZIGZAG
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
