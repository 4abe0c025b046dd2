"""COMMAND_LONG / COMMAND_INT: one handler per MAV_CMD, as ``GCS_MAVLINK_Copter`` and
``GCS_MAVLINK`` (``handle_command_long_packet`` / ``handle_command_int_packet``) answer
them; any other command is UNSUPPORTED. Each handler returns the MAV_RESULT for the
COMMAND_ACK; ``p`` is param1..7 (x, y, z for COMMAND_INT)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from pymavlink.dialects.v20 import ardupilotmega as M

from sitl.copter import guided, mission, streams
from sitl.copter.arming import FORCE_MAGIC
from sitl.copter.modes import AUTO, GUIDED, LAND, LOITER, RTL, SMART_RTL, USER_TAKEOFF
from sitl.copter.nav import Nav

if TYPE_CHECKING:
    from sitl.copter.vehicle import Copter

Params = tuple[float, ...]


def answer(v: Copter, msg: Any) -> None:
    """Run a COMMAND_LONG or COMMAND_INT and send its COMMAND_ACK."""
    if msg.get_type() == "COMMAND_INT":
        p: Params = (msg.param1, msg.param2, msg.param3, msg.param4, msg.x, msg.y, msg.z)
        result = _checked(v, msg.command, p, True, msg.frame)
    else:
        p = (msg.param1, msg.param2, msg.param3, msg.param4, msg.param5, msg.param6, msg.param7)
        result = _checked(v, msg.command, p, False, M.MAV_FRAME_GLOBAL_RELATIVE_ALT)
    v.send(v.mav.command_ack_encode(msg.command, result, 0, 0, msg.get_srcSystem(), msg.get_srcComponent()))


def _checked(v: Copter, command: int, p: Params, is_int: bool, frame: int) -> int:
    """Run a command through its handler (UNSUPPORTED if none); parameters that cannot
    be what the command needs (NaN where an integer is expected, ...) get
    MAV_RESULT_DENIED and change nothing."""
    if any(isinstance(x, float) and math.isinf(x) for x in p):
        return M.MAV_RESULT_DENIED
    handler = _COMMANDS.get(command)
    if handler is None:
        return M.MAV_RESULT_UNSUPPORTED
    try:
        return handler(v, p, is_int, frame)
    except (ValueError, OverflowError):
        return M.MAV_RESULT_DENIED


def _result(ok: bool) -> int:
    return M.MAV_RESULT_ACCEPTED if ok else M.MAV_RESULT_FAILED


def _component_arm_disarm(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    force = abs(p[1] - FORCE_MAGIC) < 0.5
    if p[0] == 1:
        return _result(v.try_arm(force))
    if p[0] == 0:
        if not v.armed:
            return M.MAV_RESULT_ACCEPTED
        if not v.landed and not force:
            return M.MAV_RESULT_FAILED  # in-flight disarm needs the force flag
        v.disarm("command")
        v.landed = v.u <= 0.0 or v.landed
        return M.MAV_RESULT_ACCEPTED
    return M.MAV_RESULT_FAILED


def _do_set_mode(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    # GCS_MAVLINK::_set_mode_common: only custom modes; anything else DENIED;
    # custom_mode is (uint32_t)param2
    if not (int(p[0]) & M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED) or p[1] < 0:
        return M.MAV_RESULT_DENIED
    return _result(v.set_mode(int(p[1])))


def _nav_takeoff(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    # handle_MAV_CMD_NAV_TAKEOFF: COMMAND_INT must use GLOBAL_RELATIVE_ALT
    if is_int and frame != M.MAV_FRAME_GLOBAL_RELATIVE_ALT:
        return M.MAV_RESULT_DENIED
    return _user_takeoff(v, p[6])


def _user_takeoff(v: Copter, alt: float) -> int:
    """Mode::do_user_takeoff: armed, landed, a takeoff-capable mode, a target above us."""
    if not (v.armed and v.landed and v.mode in USER_TAKEOFF):
        return M.MAV_RESULT_FAILED
    if not math.isfinite(alt) or alt <= v.u or alt > 10_000:
        return M.MAV_RESULT_FAILED
    v.nav = Nav("takeoff", v.e, v.n, float(alt))
    v.landed = False  # Mode::_TakeOff::start clears land_complete at once
    v.landed_armed_since = None
    return M.MAV_RESULT_ACCEPTED


def _nav_return_to_launch(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    return _result(v.set_mode(RTL))


def _nav_land(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    return _result(v.set_mode(LAND))


def _mission_start(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    # GCS_MAVLINK_Copter::handle_MAV_CMD_MISSION_START: first/last item unsupported;
    # switch to AUTO, set auto_armed and start or resume the mission.
    if p[0] != 0 or p[1] != 0:
        return M.MAV_RESULT_DENIED
    if not v.set_mode(AUTO):
        return M.MAV_RESULT_FAILED
    v.auto_armed = True
    if v.mission_state != "running":
        mission.start_or_resume(v)
    return M.MAV_RESULT_ACCEPTED


def _nav_loiter_unlim(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    return _result(v.set_mode(LOITER))


def _do_pause_continue(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    """MAV_CMD_DO_PAUSE_CONTINUE in AUTO: 0 holds position (MISSION_STATE_PAUSED), 1 resumes."""
    what = p[0]
    if what == 0:
        if v.mode == AUTO and v.mission_state == "running" and not v.landed and not v.paused:
            v.paused = v.nav
            v.nav = Nav("hold", v.e, v.n, v.u)
            return M.MAV_RESULT_ACCEPTED
        v.statustext(M.MAV_SEVERITY_INFO, "Failed to pause")
        return M.MAV_RESULT_FAILED
    if what == 1:
        if v.mode == AUTO and v.paused:
            v.nav, v.paused = v.paused, None
            return M.MAV_RESULT_ACCEPTED
        v.statustext(M.MAV_SEVERITY_INFO, "Failed to resume")
        return M.MAV_RESULT_FAILED
    return M.MAV_RESULT_DENIED


def _do_set_mission_current(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    if p[0] != int(p[0]):
        return M.MAV_RESULT_DENIED
    return _result(mission.set_mission_current(v, int(p[0])))


def _do_change_speed(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    # handle_MAV_CMD_DO_CHANGE_SPEED: speed must be > 0; horizontal speed types
    # (0 airspeed, 1 ground speed) in the modes that navigate
    if not p[1] > 0 or int(p[0]) not in (0, 1, 2, 3):
        return M.MAV_RESULT_DENIED
    if int(p[0]) > 1 or v.mode not in (AUTO, GUIDED, RTL, SMART_RTL):
        return M.MAV_RESULT_FAILED
    v.speed_override = float(p[1])
    return M.MAV_RESULT_ACCEPTED


def _do_reposition(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    # handle_command_int_do_reposition: not GUIDED and no CHANGE_MODE flag -> DENIED;
    # a bad location -> DENIED; the target is set before the mode changes.
    lat, lon = (p[4] / 1e7, p[5] / 1e7) if is_int else (p[4], p[5])
    change_mode = bool(int(p[1]) & M.MAV_DO_REPOSITION_FLAGS_CHANGE_MODE)
    if v.mode != GUIDED and not change_mode:
        return M.MAV_RESULT_DENIED
    if not (abs(lat) <= 90 and abs(lon) <= 180 and math.isfinite(p[6])):
        return M.MAV_RESULT_DENIED
    if not v.armed or v.landed:
        return M.MAV_RESULT_FAILED  # the simulator only repositions a flying copter
    if v.mode != GUIDED and not v.set_mode(GUIDED):
        return M.MAV_RESULT_FAILED
    return M.MAV_RESULT_ACCEPTED if guided.goto(v, lat, lon, p[6], frame) else M.MAV_RESULT_DENIED


def _do_fence_enable(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    if p[0] not in (0, 1):
        return M.MAV_RESULT_FAILED
    v.params.set("FENCE_ENABLE", p[0])
    return M.MAV_RESULT_ACCEPTED


def _set_message_interval(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    return streams.set_message_interval(v, p[0], p[1])


def _get_message_interval(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    return streams.get_message_interval(v, p[0])


def _preflight_reboot_shutdown(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    # GCS_MAVLINK::handle_preflight_reboot: param1 1 (reboot) or 3 (to the
    # bootloader, which SITL treats as a reboot); refused while armed.
    if p[0] not in (1.0, 3.0):
        return M.MAV_RESULT_UNSUPPORTED
    if v.armed:
        return M.MAV_RESULT_FAILED
    v.request_reboot()
    return M.MAV_RESULT_ACCEPTED


def _condition_yaw(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    # GCS_MAVLINK_Copter::handle_MAV_CMD_CONDITION_YAW: angle 0..360, param4 0
    # (absolute) or 1 (relative, direction from param3), else FAILED.
    if not (0.0 <= p[0] <= 360.0 and p[3] in (0.0, 1.0)):
        return M.MAV_RESULT_FAILED
    if p[3] == 1.0:
        v.yaw += math.radians(p[0]) * (-1.0 if p[2] < 0 else 1.0)
    else:
        v.yaw = math.radians(p[0])
    v.yaw %= 2 * math.pi
    return M.MAV_RESULT_ACCEPTED


def _request_message(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    # handle_command_request_message: an id with no ap_message is FAILED
    msgid = int(p[0])
    if msgid not in streams.PRODUCIBLE:
        return M.MAV_RESULT_FAILED
    v.emit_deferred(msgid)
    return M.MAV_RESULT_ACCEPTED


def _do_send_banner(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    # GCS_MAVLINK::handle_command_long_packet MAV_CMD_DO_SEND_BANNER: send_banner()
    v.send_banner()
    return M.MAV_RESULT_ACCEPTED


def _request_autopilot_capabilities(v: Copter, p: Params, is_int: bool, frame: int) -> int:
    v.emit_deferred(M.MAVLINK_MSG_ID_AUTOPILOT_VERSION)
    return M.MAV_RESULT_ACCEPTED


_COMMANDS: dict[int, Callable[[Copter, Params, bool, int], int]] = {
    M.MAV_CMD_COMPONENT_ARM_DISARM: _component_arm_disarm,
    M.MAV_CMD_DO_SET_MODE: _do_set_mode,
    M.MAV_CMD_NAV_TAKEOFF: _nav_takeoff,
    M.MAV_CMD_NAV_RETURN_TO_LAUNCH: _nav_return_to_launch,
    M.MAV_CMD_NAV_LAND: _nav_land,
    M.MAV_CMD_MISSION_START: _mission_start,
    M.MAV_CMD_NAV_LOITER_UNLIM: _nav_loiter_unlim,
    M.MAV_CMD_DO_PAUSE_CONTINUE: _do_pause_continue,
    M.MAV_CMD_DO_SET_MISSION_CURRENT: _do_set_mission_current,
    M.MAV_CMD_DO_CHANGE_SPEED: _do_change_speed,
    M.MAV_CMD_DO_REPOSITION: _do_reposition,
    M.MAV_CMD_DO_FENCE_ENABLE: _do_fence_enable,
    M.MAV_CMD_SET_MESSAGE_INTERVAL: _set_message_interval,
    M.MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN: _preflight_reboot_shutdown,
    M.MAV_CMD_GET_MESSAGE_INTERVAL: _get_message_interval,
    M.MAV_CMD_CONDITION_YAW: _condition_yaw,
    M.MAV_CMD_REQUEST_MESSAGE: _request_message,
    M.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES: _request_autopilot_capabilities,
    M.MAV_CMD_DO_SEND_BANNER: _do_send_banner,
}
