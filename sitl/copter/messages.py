"""Incoming MAVLink: routing (``MAVLink_routing::check_and_forward``) and one handler per
message type the copter answers (``GCS_MAVLINK::handle_message``): the mission protocol
for the three mission types, modes, parameters, streams, GUIDED targets and commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from pymavlink.dialects.v20 import ardupilotmega as M

from sitl.copter import commands, guided, mission, streams, telemetry

if TYPE_CHECKING:
    from sitl.copter.vehicle import Copter


def dispatch(v: Copter, msg: Any) -> None:
    # MAVLink_routing::check_and_forward: the autopilot handles a message addressed to
    # it (system and component, 0 = broadcast); one for another component of this
    # system (a gimbal, a camera) is forwarded, not handled.
    target = getattr(msg, "target_system", None)
    if target is not None and target not in (0, v.sysid):
        return
    component = getattr(msg, "target_component", None)
    if target not in (None, 0) and component not in (None, 0, M.MAV_COMP_ID_AUTOPILOT1):
        return
    handler = _HANDLERS.get(msg.get_type())
    if handler is not None:
        handler(v, msg)


def _protocol(v: Copter, msg: Any) -> Any:
    protocol = v.protocols.get(getattr(msg, "mission_type", 0))
    if protocol is None:
        v.send(v.mav.mission_ack_encode(msg.get_srcSystem(), msg.get_srcComponent(),
                                        M.MAV_MISSION_UNSUPPORTED, msg.mission_type))
    return protocol


def _mission_count(v: Copter, msg: Any) -> None:
    if (p := _protocol(v, msg)) is not None:
        p.handle_count(msg, v.t)


def _mission_item(v: Copter, msg: Any) -> None:
    p = _protocol(v, msg)
    if p is None:
        return
    if p.receiving:
        p.handle_item(msg, v.t)
    elif msg.current == 2 and msg.mission_type == M.MAV_MISSION_TYPE_MISSION:
        guided.goto_item(v, msg)
    else:
        v.send(v.mav.mission_ack_encode(msg.get_srcSystem(), msg.get_srcComponent(),
                                        M.MAV_MISSION_ERROR, msg.mission_type))


def _mission_request_list(v: Copter, msg: Any) -> None:
    if (p := _protocol(v, msg)) is not None:
        p.handle_request_list(msg)


def _mission_request(v: Copter, msg: Any) -> None:
    if (p := _protocol(v, msg)) is not None:
        current = v.mission_index if p is v.missions and v.mission_started else -1
        p.handle_request(msg, current)


def _mission_clear_all(v: Copter, msg: Any) -> None:
    if (p := _protocol(v, msg)) is not None:
        p.handle_clear_all(msg)


def _mission_set_current(v: Copter, msg: Any) -> None:
    # GCS_MAVLINK::handle_mission_set_current: no ACK; on success a MISSION_CURRENT
    # echoing exactly the requested seq (GCSs use it as the ACK), on failure nothing.
    if mission.set_mission_current(v, msg.seq):
        v.send(telemetry.mission_current_msg(v, msg.seq))


def _set_mode(v: Copter, msg: Any) -> None:
    # The SET_MODE message is obeyed without any COMMAND_ACK (GCS_MAVLINK::handle_set_mode).
    if msg.base_mode & M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED:
        v.set_mode(msg.custom_mode)


def _param_name(raw: Any) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", errors="replace")
    return str(raw).split("\x00", 1)[0]


def _send_param(v: Copter, name: str, index: int) -> None:
    v.send(v.mav.param_value_encode(name.encode(), v.params[name], v.params.ptype(name),
                                    len(v.params), index & 0xFFFF))


def _param_request_list(v: Copter, msg: Any) -> None:
    # GCS_MAVLINK::handle_param_request_list: send_banner() first ("a convenient
    # way to get extra information"), then every parameter with its index.
    v.send_banner()
    v.link.flush()
    for name in v.params.names():
        _send_param(v, name, v.params.index(name))


def _param_request_read(v: Copter, msg: Any) -> None:
    # GCS_MAVLINK::param_io_timer: the reply carries the request's param_index, so
    # a read by name (index -1) is answered with param_index -1 (65535 on the wire).
    names = v.params.names()
    if msg.param_index != -1:
        if 0 <= msg.param_index < len(names):
            _send_param(v, names[msg.param_index], msg.param_index)
        return
    name = _param_name(msg.param_id)
    if name in names:
        _send_param(v, name, -1)


def _param_set(v: Copter, msg: Any) -> None:
    name = _param_name(msg.param_id)
    if v.params.set(name, msg.param_value) is None:
        return  # unknown name or NaN: ArduPilot ignores it without a reply
    # AP_Param::save -> GCS::send_parameter_value: param_index -1 (65535)
    _send_param(v, name, -1)


def _timesync(v: Copter, msg: Any) -> None:
    # GCS_MAVLINK::handle_timesync: a request (tc1 0) is answered at once with the
    # autopilot's clock in tc1 and the request's ts1 echoed; a reply is not answered.
    if msg.tc1 == 0:
        v.send(v.mav.timesync_encode(v.clock_ns(), msg.ts1))


_HANDLERS: dict[str, Callable[[Copter, Any], None]] = {
    "TIMESYNC": _timesync,
    "MISSION_COUNT": _mission_count,
    "MISSION_ITEM_INT": _mission_item,
    "MISSION_ITEM": _mission_item,
    "MISSION_REQUEST_LIST": _mission_request_list,
    "MISSION_REQUEST_INT": _mission_request,
    "MISSION_REQUEST": _mission_request,
    "MISSION_CLEAR_ALL": _mission_clear_all,
    "MISSION_SET_CURRENT": _mission_set_current,
    "SET_MODE": _set_mode,
    "PARAM_REQUEST_LIST": _param_request_list,
    "PARAM_REQUEST_READ": _param_request_read,
    "PARAM_SET": _param_set,
    "REQUEST_DATA_STREAM": streams.request_data_stream,
    "SET_POSITION_TARGET_GLOBAL_INT": guided.set_position_target_global_int,
    "SET_POSITION_TARGET_LOCAL_NED": guided.set_position_target_local_ned,
    "COMMAND_LONG": commands.answer,
    "COMMAND_INT": commands.answer,
}
