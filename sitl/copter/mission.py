"""The mission executor (``AP_Mission`` and ``ModeAuto``): start or resume the stored
mission, run do-commands and jumps, fly each nav command and verify it, and move the
current item (``set_current_cmd``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pymavlink.dialects.v20 import ardupilotmega as M

from mavlink_bridge.plan import MissionItem
from mavlink_bridge.telemetry import CopterMode

from sitl.copter.mission_protocol import AMSL_FRAMES, NAV_COMMANDS
from sitl.copter.nav import Nav

if TYPE_CHECKING:
    from sitl.copter.vehicle import Copter

_AUTO = int(CopterMode.AUTO)  # (modes.AUTO; modes imports this module)

# AP_Mission::Mission_Command::type(): the names in "Mission: N <type>" STATUSTEXTs.
_COMMAND_NAMES = {
    M.MAV_CMD_NAV_WAYPOINT: "WP", M.MAV_CMD_NAV_SPLINE_WAYPOINT: "SplineWP", M.MAV_CMD_NAV_RETURN_TO_LAUNCH: "RTL",
    M.MAV_CMD_NAV_LOITER_UNLIM: "LoitUnlim", M.MAV_CMD_NAV_LOITER_TIME: "LoitTime",
    M.MAV_CMD_NAV_GUIDED_ENABLE: "GuidedEnable", M.MAV_CMD_NAV_LOITER_TURNS: "LoitTurns",
    M.MAV_CMD_NAV_LOITER_TO_ALT: "LoitAltitude", M.MAV_CMD_CONDITION_DELAY: "CondDelay",
    M.MAV_CMD_CONDITION_DISTANCE: "CondDist", M.MAV_CMD_DO_CHANGE_SPEED: "ChangeSpeed",
    M.MAV_CMD_DO_SET_HOME: "SetHome", M.MAV_CMD_DO_SET_SERVO: "SetServo", M.MAV_CMD_DO_SET_RELAY: "SetRelay",
    M.MAV_CMD_DO_REPEAT_SERVO: "RepeatServo", M.MAV_CMD_DO_REPEAT_RELAY: "RepeatRelay",
    M.MAV_CMD_DO_DIGICAM_CONFIGURE: "DigiCamCfg", M.MAV_CMD_DO_DIGICAM_CONTROL: "DigiCamCtrl",
    M.MAV_CMD_DO_SET_CAM_TRIGG_DIST: "SetCamTrigDst", M.MAV_CMD_DO_SET_ROI: "SetROI",
    M.MAV_CMD_DO_SET_RESUME_REPEAT_DIST: "SetRepeatDist", M.MAV_CMD_DO_GUIDED_LIMITS: "GuidedLimits",
    M.MAV_CMD_NAV_TAKEOFF: "Takeoff", M.MAV_CMD_NAV_LAND: "Land",
    M.MAV_CMD_NAV_CONTINUE_AND_CHANGE_ALT: "ContinueAndChangeAlt", M.MAV_CMD_NAV_VTOL_TAKEOFF: "VTOLTakeoff",
    M.MAV_CMD_NAV_VTOL_LAND: "VTOLLand", M.MAV_CMD_DO_FENCE_ENABLE: "FenceEnable",
    M.MAV_CMD_DO_ENGINE_CONTROL: "EngineControl", M.MAV_CMD_CONDITION_YAW: "CondYaw",
    M.MAV_CMD_DO_LAND_START: "LandStart", M.MAV_CMD_NAV_DELAY: "Delay", M.MAV_CMD_DO_GRIPPER: "Gripper",
    M.MAV_CMD_NAV_PAYLOAD_PLACE: "PayloadPlace", M.MAV_CMD_DO_PARACHUTE: "Parachute",
    M.MAV_CMD_DO_SPRAYER: "Sprayer", M.MAV_CMD_DO_AUX_FUNCTION: "AuxFunction",
    M.MAV_CMD_DO_MOUNT_CONTROL: "MountControl", M.MAV_CMD_DO_WINCH: "Winch",
    M.MAV_CMD_NAV_SCRIPT_TIME: "NavScriptTime", M.MAV_CMD_NAV_ATTITUDE_TIME: "NavAttitudeTime",
    M.MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW: "GimbalPitchYaw",
}

# nav commands whose completion ModeAuto announces with "Reached command #N"
_REACHED_TEXT_COMMANDS = frozenset({M.MAV_CMD_NAV_WAYPOINT, M.MAV_CMD_NAV_SPLINE_WAYPOINT,
                                    M.MAV_CMD_NAV_LOITER_TIME})


def item_target(v: Copter, item: MissionItem) -> tuple[float, float, float]:
    """A mission item's location in the local frame; 0 lat/lon or 0 alt mean 'here'
    (ModeAuto::loc_from_cmd)."""
    if item.x == 0 and item.y == 0:
        e, n = v.e, v.n
    else:
        e, n = v.to_local(item.x / 1e7, item.y / 1e7)
    if item.z == 0:
        u = v.u
    elif item.frame in AMSL_FRAMES:
        u = item.z - v.config.home_alt
    else:  # relative, or terrain (flat ground at home altitude)
        u = item.z
    return e, n, u


def starts_with_takeoff(v: Copter) -> bool:
    """AP_Mission::starts_with_takeoff_cmd: the first nav command, skipping do-commands
    and NAV_DELAY, is a takeoff."""
    for item in v.missions.items[1:]:
        if item.command in NAV_COMMANDS and item.command != M.MAV_CMD_NAV_DELAY:
            return item.command == M.MAV_CMD_NAV_TAKEOFF
    return False


def mission_changed(v: Copter) -> None:
    """A new mission was stored: keep the current item if it still exists.

    A running mission whose current item lies beyond the new one's end goes on as real
    ArduCopter does (AP_Mission::truncate keeps the loaded nav command): the item in
    flight is still flown to its old target and announced reached, MISSION_CURRENT keeps
    its old seq, and then the mission completes and the copter holds there in AUTO; the
    new mission's items are not flown. (Real SITL observed, docs/sitl.md.)"""
    count = len(v.missions.items)
    if v.mission_index >= count:
        if v.mission_state == "running" and count > 1:
            return
        v.mission_index = 1
        if v.mission_state == "running":
            v.mission_state = "complete"


def start_or_resume(v: Copter) -> None:
    if len(v.missions.items) <= 1:
        v.mission_state = "complete"
        v.nav = Nav("hold", v.e, v.n, v.u)
        v.emit_deferred(M.MAVLINK_MSG_ID_MISSION_CURRENT)
        return
    # AP_Mission::resume: a finished mission, or one with no current nav command yet
    # (none flown since it was stored, and no set_current_cmd), starts from item 1; else
    # it resumes at its current item, including one set while in another mode.
    if v.mission_state == "complete" or not v.nav_index_loaded:
        v.mission_index = 1
        v.jump_counts.clear()
    v.mission_state = "running"
    v.mission_started = True
    start_commands_from(v, v.mission_index)


def start_commands_from(v: Copter, index: int) -> None:
    """AP_Mission::advance_current_nav_cmd: run do-commands, follow jumps, start the next nav."""
    items = v.missions.items
    guard = 0
    while guard < 10 * len(items) + 10:
        guard += 1
        if index >= len(items):
            _mission_complete(v)
            return
        item = items[index]
        if item.command == M.MAV_CMD_DO_JUMP:
            target, repeat = int(item.param1), int(item.param2)
            done = v.jump_counts.get(index, 0)
            if repeat < 0 or done < repeat:
                v.jump_counts[index] = done + 1
                index = target
            else:
                index += 1
            continue
        # AP_Mission::start_command announces every command it starts
        v.statustext(M.MAV_SEVERITY_INFO, f"Mission: {index} {_COMMAND_NAMES.get(item.command, '?')}")
        if item.command in NAV_COMMANDS:
            v.mission_index = index
            v.nav_index_loaded = True
            v.emit_deferred(M.MAVLINK_MSG_ID_MISSION_CURRENT)
            _start_nav(v, index, item)
            return
        # do-commands complete at once (ModeAuto::verify_command), except speed is applied
        if item.command == M.MAV_CMD_DO_CHANGE_SPEED and item.param2 > 0:
            v.speed_override = float(item.param2)
        command_complete(v, index, advance=False)
        index += 1
    _mission_complete(v)


def _start_nav(v: Copter, seq: int, item: MissionItem) -> None:
    e, n, u = item_target(v, item)
    cmd = item.command
    if cmd == M.MAV_CMD_NAV_TAKEOFF:
        v.nav = Nav("takeoff", v.e, v.n, max(u, 1.0) if item.z else max(v.u, 1.0), item_seq=seq)
        if not v.landed and v.u >= v.nav.u - 0.5:
            command_complete(v, seq)
    elif cmd == M.MAV_CMD_NAV_RETURN_TO_LAUNCH:
        v.nav = Nav("rtl", v.e, v.n, 0.0, phase="climb", item_seq=seq)
    elif cmd == M.MAV_CMD_NAV_LAND:
        v.nav = Nav("goto", e, n, v.u, phase="land-approach", item_seq=seq)
        if item.x == 0 and item.y == 0:
            v.nav = Nav("land", v.e, v.n, 0.0, item_seq=seq)
    elif cmd == M.MAV_CMD_NAV_DELAY:
        v.nav = Nav("goto", v.e, v.n, v.u, hold_s=max(0.0, item.param1), item_seq=seq)
        v.nav.arrived_at = v.t
    else:
        hold = 0.0
        if cmd in (M.MAV_CMD_NAV_WAYPOINT, M.MAV_CMD_NAV_SPLINE_WAYPOINT, M.MAV_CMD_NAV_LOITER_TIME):
            hold = max(0.0, item.param1)
        elif cmd == M.MAV_CMD_NAV_LOITER_TURNS:
            hold = max(0.0, item.param1) * 2 * math.pi * 10.0 / 5.0  # 10 m circles at 5 m/s
        elif cmd == M.MAV_CMD_NAV_LOITER_UNLIM:
            hold = math.inf
        v.nav = Nav("goto", e, n, u, hold_s=hold, item_seq=seq, command=cmd)


def nav_progress(v: Copter) -> None:
    """ModeAuto::verify_command for the nav command in progress."""
    nav = v.nav
    if v.mode != _AUTO or v.mission_state != "running" or nav.item_seq < 0:
        if nav.kind == "takeoff" and abs(v.u - nav.u) < 0.1:
            v.nav = Nav("hold", v.e, v.n, nav.u)
        return
    if nav.kind == "takeoff":
        if abs(v.u - nav.u) < 0.1:
            command_complete(v, nav.item_seq)
        return
    if nav.kind != "goto":
        return
    radius = v.params["WPNAV_RADIUS"] / 100.0
    if nav.arrived_at is None:
        if math.hypot(nav.e - v.e, nav.n - v.n) <= radius and abs(nav.u - v.u) <= 1.0:
            nav.arrived_at = v.t
            if nav.phase == "land-approach":
                v.nav = Nav("land", v.e, v.n, 0.0, item_seq=nav.item_seq)
                return
            if nav.hold_s > 0 and nav.command == M.MAV_CMD_NAV_WAYPOINT:
                v.link.defer(v.mav.mission_item_reached_encode(nav.item_seq))
        else:
            return
    if v.t - nav.arrived_at >= nav.hold_s:
        if nav.command in _REACHED_TEXT_COMMANDS:
            # ModeAuto::verify_nav_wp / verify_loiter_time
            v.statustext(M.MAV_SEVERITY_INFO, f"Reached command #{nav.item_seq}")
        command_complete(v, nav.item_seq)


def command_complete(v: Copter, seq: int, advance: bool = True) -> None:
    v.link.defer(v.mav.mission_item_reached_encode(seq))
    if advance and v.mode == _AUTO and v.mission_state == "running":
        start_commands_from(v, seq + 1)


def _mission_complete(v: Copter) -> None:
    v.mission_state = "complete"
    if v.armed and not v.landed and v.nav.kind not in ("land", "rtl"):
        v.nav = Nav("hold", v.e, v.n, v.u)
    v.emit_deferred(M.MAVLINK_MSG_ID_MISSION_CURRENT)


def set_mission_current(v: Copter, seq: int) -> bool:
    """AP_Mission::set_current_cmd: in flight in AUTO the mission jumps to ``seq`` now;
    otherwise, and for a finished mission, only its current item moves there (a finished
    one becomes stopped, MISSION_STATE_NOT_STARTED, its jump counters reset) to start
    from when next resumed: a finished mission is not flown again by this alone."""
    count = len(v.missions.items)
    if count <= 1 or seq >= count or seq < 0:
        return False
    if seq == 0 or v.mission_state == "complete":
        v.jump_counts.clear()
    seq = max(seq, 1)
    v.mission_index = seq
    v.nav_index_loaded = True
    v.paused = None
    if v.mission_state != "complete" and v.mode == _AUTO and v.armed and not v.landed:
        v.mission_state = "running"
        v.mission_started = True
        start_commands_from(v, seq)
    else:
        if v.mission_state == "complete":
            v.mission_state = "stopped"
        v.emit_deferred(M.MAVLINK_MSG_ID_MISSION_CURRENT)
    return True
