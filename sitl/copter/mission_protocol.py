"""Vehicle side of the MAVLink mission protocol, as ArduPilot implements it.

Mirrors ``libraries/GCS_MAVLink/MissionItemProtocol*.cpp`` of ArduPilot:

* upload: MISSION_COUNT -> the vehicle asks for each item with the *legacy*
  MISSION_REQUEST (``queued_request_send``), starting at 0 (home, for missions);
  an item whose seq is not the one requested gets MISSION_ACK INVALID_SEQUENCE at
  once and the request is repeated; a conversion error (unsupported command or
  frame) ends the upload with that ACK; silence re-requests every 1 s and cancels
  after 8 s with OPERATION_CANCELLED (``upload_timeout_ms``);
* missions are truncated to the new count when the upload starts and written
  item by item (``MissionItemProtocol_Waypoints::truncate``), so a cancelled upload
  leaves the items received so far; fences are staged and written only when the
  upload completes and validates (``MissionItemProtocol_Fence::complete``);
* download: MISSION_REQUEST_LIST -> MISSION_COUNT; MISSION_REQUEST_INT ->
  MISSION_ITEM_INT; legacy MISSION_REQUEST -> legacy MISSION_ITEM. Items come back
  in ArduPilot's storage form: location frames without the ``_INT`` suffix, item 0
  is home in MAV_FRAME_GLOBAL, parameters ArduPilot does not store read back as 0.

Everything is sans-I/O: messages in, messages out through ``send``, time passed in.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Callable

from pymavlink.dialects.v20 import ardupilotmega as _mav

from mavlink_bridge.plan import GLOBAL_FRAMES, MissionItem

# MAV_FRAME (common.xml): the global frames a location may be given in, and the
# float-coordinate twins ArduPilot stores the ``_INT`` ones as.
_F_GLOBAL, _F_REL = _mav.MAV_FRAME_GLOBAL, _mav.MAV_FRAME_GLOBAL_RELATIVE_ALT
_TO_FLOAT_FRAME = {_mav.MAV_FRAME_GLOBAL_INT: _F_GLOBAL, _mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT: _F_REL,
                   _mav.MAV_FRAME_GLOBAL_TERRAIN_ALT_INT: _mav.MAV_FRAME_GLOBAL_TERRAIN_ALT}
AMSL_FRAMES = frozenset({_F_GLOBAL, _mav.MAV_FRAME_GLOBAL_INT})  # altitude above mean sea level
_REL_FRAMES = frozenset({_F_REL, _mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT})

UPLOAD_REREQUEST_S = 1.0  # MissionItemProtocol::update(): wp_recv_timeout_ms = 1000
UPLOAD_TIMEOUT_S = 8.0  # MissionItemProtocol::upload_timeout_ms = 8000

# Commands AP_Mission::mavlink_int_to_mission_cmd accepts on Copter, split by whether
# they are stored with a location (AP_Mission::stored_in_location, copied here
# command for command). The others keep no frame and no position: they are read back in
# frame 0 with x = y = z = 0 (mission_cmd_to_mavlink_int's defaults), whatever frame
# they were sent in, so NAV_RETURN_TO_LAUNCH in MAV_FRAME_MISSION is accepted.
_M = _mav
LOCATION_COMMANDS = frozenset({
    _M.MAV_CMD_NAV_WAYPOINT, _M.MAV_CMD_NAV_LOITER_UNLIM, _M.MAV_CMD_NAV_LOITER_TURNS,
    _M.MAV_CMD_NAV_LOITER_TIME, _M.MAV_CMD_NAV_LAND, _M.MAV_CMD_NAV_TAKEOFF,
    _M.MAV_CMD_NAV_CONTINUE_AND_CHANGE_ALT, _M.MAV_CMD_NAV_LOITER_TO_ALT,
    _M.MAV_CMD_NAV_SPLINE_WAYPOINT, _M.MAV_CMD_NAV_GUIDED_ENABLE, _M.MAV_CMD_DO_SET_HOME,
    _M.MAV_CMD_DO_LAND_START, _M.MAV_CMD_DO_GO_AROUND, _M.MAV_CMD_DO_SET_ROI,
    _M.MAV_CMD_NAV_VTOL_TAKEOFF, _M.MAV_CMD_NAV_VTOL_LAND, _M.MAV_CMD_NAV_PAYLOAD_PLACE,
})
_OTHER_COMMANDS = frozenset({
    _M.MAV_CMD_NAV_RETURN_TO_LAUNCH, _M.MAV_CMD_DO_SET_ROI_LOCATION, _M.MAV_CMD_NAV_DELAY, _M.MAV_CMD_CONDITION_DELAY,
    _M.MAV_CMD_CONDITION_DISTANCE, _M.MAV_CMD_CONDITION_YAW, _M.MAV_CMD_DO_JUMP,
    _M.MAV_CMD_DO_CHANGE_SPEED, _M.MAV_CMD_DO_SET_RELAY, _M.MAV_CMD_DO_REPEAT_RELAY,
    _M.MAV_CMD_DO_SET_SERVO, _M.MAV_CMD_DO_REPEAT_SERVO, _M.MAV_CMD_DO_DIGICAM_CONFIGURE,
    _M.MAV_CMD_DO_DIGICAM_CONTROL, _M.MAV_CMD_DO_MOUNT_CONTROL, _M.MAV_CMD_DO_SET_CAM_TRIGG_DIST,
    _M.MAV_CMD_DO_FENCE_ENABLE, _M.MAV_CMD_DO_PARACHUTE, _M.MAV_CMD_DO_GRIPPER,
    _M.MAV_CMD_DO_GUIDED_LIMITS, _M.MAV_CMD_DO_SET_ROI_NONE, _M.MAV_CMD_DO_SET_RESUME_REPEAT_DIST,
    _M.MAV_CMD_DO_SPRAYER, _M.MAV_CMD_DO_AUX_FUNCTION, _M.MAV_CMD_IMAGE_START_CAPTURE,
    _M.MAV_CMD_IMAGE_STOP_CAPTURE, _M.MAV_CMD_VIDEO_START_CAPTURE, _M.MAV_CMD_VIDEO_STOP_CAPTURE,
    _M.MAV_CMD_DO_WINCH, _M.MAV_CMD_JUMP_TAG, _M.MAV_CMD_DO_JUMP_TAG,
    _M.MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW, _M.MAV_CMD_NAV_SCRIPT_TIME,
    _M.MAV_CMD_NAV_ATTITUDE_TIME, _M.MAV_CMD_DO_ENGINE_CONTROL,
})
MISSION_COMMANDS = LOCATION_COMMANDS | _OTHER_COMMANDS
# The commands the mission executor flies as nav commands (AP_Mission::is_nav_cmd: ids up
# to MAV_CMD_NAV_LAST). Do-commands stored with a location (DO_SET_HOME, DO_SET_ROI, ...)
# are not among them; NAV_GUIDED_ENABLE, which the simulator cannot fly, completes at once.
NAV_COMMANDS = frozenset(c for c in MISSION_COMMANDS if c <= _M.MAV_CMD_NAV_LAST)
FENCE_COMMANDS = frozenset({
    _M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION, _M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION,
    _M.MAV_CMD_NAV_FENCE_RETURN_POINT, _M.MAV_CMD_NAV_FENCE_CIRCLE_INCLUSION,
    _M.MAV_CMD_NAV_FENCE_CIRCLE_EXCLUSION,
})
MAX_MISSION_ITEMS = 724  # SITL's mission storage (AP_Mission::num_commands_max) on a 16 KiB board
MAX_FENCE_ITEMS = 100
MAX_RALLY_ITEMS = 20  # RALLY_TOTAL max


# A stored item is mavlink_bridge.plan.MissionItem, the project's one MISSION_ITEM_INT
# record, built with MissionItem.unchecked: the vehicle holds what it received and judges
# it itself, answering with ArduPilot's MAV_MISSION_RESULT.


Send = Callable[[Any], None]


def item_from_message(msg: Any) -> MissionItem | int:
    """MISSION_ITEM_INT or legacy MISSION_ITEM -> MissionItem, or a MAV_MISSION_RESULT error.

    Legacy MISSION_ITEM carries degrees as floats; ArduPilot converts them with
    ``convert_MISSION_ITEM_to_MISSION_ITEM_INT`` and checks their range.
    """
    values = [msg.param1, msg.param2, msg.param3, msg.param4, msg.z]
    if msg.get_type() == "MISSION_ITEM":
        if msg.frame in GLOBAL_FRAMES:
            if not math.isfinite(msg.x) or abs(msg.x) > 90:
                return _M.MAV_MISSION_INVALID_PARAM5_X
            if not math.isfinite(msg.y) or abs(msg.y) > 180:
                return _M.MAV_MISSION_INVALID_PARAM6_Y
            x, y = round(msg.x * 1e7), round(msg.y * 1e7)
        else:
            if not (math.isfinite(msg.x) and math.isfinite(msg.y)) or max(abs(msg.x), abs(msg.y)) > 2**31:
                return _M.MAV_MISSION_INVALID_PARAM5_X
            x, y = round(msg.x), round(msg.y)
    else:
        x, y = int(msg.x), int(msg.y)
    if any(math.isinf(v) for v in values):
        return _M.MAV_MISSION_INVALID
    return MissionItem.unchecked(command=msg.command, frame=msg.frame, param1=msg.param1, param2=msg.param2,
                                 param3=msg.param3, param4=msg.param4, x=x, y=y, z=msg.z,
                                 autocontinue=msg.autocontinue)


def _position_error(item: MissionItem) -> int:
    """The MAV_MISSION_RESULT for an item's latitude/longitude (degE7): ACCEPTED on the globe."""
    if abs(item.x) > 90 * 10**7:
        return _M.MAV_MISSION_INVALID_PARAM5_X
    if abs(item.y) > 180 * 10**7:
        return _M.MAV_MISSION_INVALID_PARAM6_Y
    return _M.MAV_MISSION_ACCEPTED


def check_mission_item(item: MissionItem) -> int:
    """AP_Mission::mavlink_int_to_mission_cmd's verdict on one mission item."""
    if item.command not in MISSION_COMMANDS:
        return _M.MAV_MISSION_UNSUPPORTED
    if item.command in LOCATION_COMMANDS:
        if item.frame not in GLOBAL_FRAMES:
            return _M.MAV_MISSION_UNSUPPORTED_FRAME
        if (error := _position_error(item)) != _M.MAV_MISSION_ACCEPTED:
            return error
        if math.isnan(item.z) or abs(item.z) > 83_000:  # Location.alt is int32 cm
            return _M.MAV_MISSION_INVALID_PARAM7
    if item.command == _M.MAV_CMD_DO_JUMP and not (math.isfinite(item.param1) and item.param1 >= 1):
        return _M.MAV_MISSION_ERROR
    return _M.MAV_MISSION_ACCEPTED


def _u16(v: float) -> int:
    """A float stored into a uint16_t (C conversion truncates; out-of-range wraps)."""
    return int(v) & 0xFFFF if math.isfinite(v) else 0


def _f32(v: float) -> float:
    return struct.unpack("<f", struct.pack("<f", v))[0]


def stored_params(command: int, p: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """param1..4 as ArduPilot Copter reads them back after storing them.

    AP_Mission::mavlink_int_to_mission_cmd packs each command into the 15-byte
    Mission_Command (integer ``p1``, flags such as ``loiter_ccw``, small structs) and
    mission_cmd_to_mavlink_int unpacks it: hold times become whole seconds, loiter
    directions become +1/-1, parameters with no slot read back as 0.
    """
    p1, p2, p3, p4 = p
    if command in (_M.MAV_CMD_NAV_WAYPOINT, _M.MAV_CMD_NAV_SPLINE_WAYPOINT, _M.MAV_CMD_NAV_TAKEOFF,
                   _M.MAV_CMD_NAV_CONTINUE_AND_CHANGE_ALT, _M.MAV_CMD_NAV_GUIDED_ENABLE,
                   _M.MAV_CMD_DO_SET_HOME, _M.MAV_CMD_DO_SET_ROI, _M.MAV_CMD_DO_FENCE_ENABLE,
                   _M.MAV_CMD_DO_PARACHUTE, _M.MAV_CMD_DO_SET_RESUME_REPEAT_DIST):
        return (float(_u16(p1)), 0.0, 0.0, 0.0)
    if command == _M.MAV_CMD_NAV_LOITER_UNLIM:  # p1 = |radius|, loiter_ccw = param3 < 0
        radius = float(_u16(abs(p3)))
        return (0.0, 0.0, -radius if p3 < 0 else radius, 0.0)
    if command == _M.MAV_CMD_NAV_LOITER_TURNS:  # p1 = radius << 8 | turns (bytes)
        radius = float(_u16(abs(p3)) & 0xFF)
        return (float(_u16(p1) & 0xFF), 0.0, -radius if p3 < 0 else radius, 1.0 if p4 > 0 else 0.0)
    if command == _M.MAV_CMD_NAV_LOITER_TIME:
        return (float(_u16(p1)), 0.0, -1.0 if p3 < 0 else 1.0, 1.0 if p4 > 0 else 0.0)
    if command == _M.MAV_CMD_NAV_LAND:  # p1 abort altitude; loiter_ccw = is_negative(param4)
        return (float(_u16(p1)), 0.0, 0.0, -1.0 if p4 <= -1.1920929e-07 else 1.0)
    if command == _M.MAV_CMD_NAV_LOITER_TO_ALT:
        radius = float(_u16(abs(p2)))
        return (0.0, -radius if p2 < 0 else radius, 0.0, 1.0 if p4 > 0 else 0.0)
    if command in (_M.MAV_CMD_NAV_RETURN_TO_LAUNCH, _M.MAV_CMD_DO_LAND_START, _M.MAV_CMD_NAV_VTOL_TAKEOFF,
                   _M.MAV_CMD_NAV_VTOL_LAND):
        return (0.0, 0.0, 0.0, 0.0)
    if command == _M.MAV_CMD_NAV_DELAY:  # float seconds, int8 hour/min/sec
        return (_f32(p1), float(int(p2)), float(int(p3)), float(int(p4)))
    if command in (_M.MAV_CMD_CONDITION_DELAY, _M.MAV_CMD_CONDITION_DISTANCE, _M.MAV_CMD_DO_SET_CAM_TRIGG_DIST):
        return (_f32(p1), 0.0, 0.0, 0.0)
    if command == _M.MAV_CMD_DO_JUMP:  # uint16 target, int16 repeat count
        return (float(_u16(p1)), float(int(p2)), 0.0, 0.0)
    if command == _M.MAV_CMD_DO_CHANGE_SPEED:  # uint8 type, float m/s, int8 throttle %
        return (float(int(p1) & 0xFF), _f32(p2), float(int(p3)), 0.0)
    if command in (_M.MAV_CMD_DO_SET_SERVO, _M.MAV_CMD_DO_SET_RELAY, _M.MAV_CMD_DO_GRIPPER):
        return (float(int(p1)), float(int(p2)), 0.0, 0.0)
    return tuple(_f32(v) for v in p)  # type: ignore[return-value]


def stored_mission_item(item: MissionItem) -> MissionItem:
    """The item as ArduPilot stores it and reads it back: frames without ``_INT``,
    parameters as :func:`stored_params`, altitude in whole centimetres
    (``Location.alt = packet.z * 100.0f``, a C truncation toward zero)."""
    raw = tuple(0.0 if math.isnan(v) else v for v in (item.param1, item.param2, item.param3, item.param4))
    params = stored_params(item.command, raw)  # type: ignore[arg-type]
    if item.command in LOCATION_COMMANDS:
        frame = _TO_FLOAT_FRAME.get(item.frame, item.frame)
        alt_cm = int(_f32(_f32(item.z) * 100.0))
        return MissionItem.unchecked(item.command, frame, *params, x=item.x, y=item.y, z=alt_cm / 100.0,
                                     autocontinue=1)
    return MissionItem.unchecked(item.command, _F_GLOBAL, *params, x=0, y=0, z=0.0, autocontinue=1)


def validate_fence(items: list[MissionItem]) -> bool:
    """AC_PolyFence_loader::validate_fence: polygons are runs of >= 3 vertices whose
    param1 equals the run length; circles have a positive radius."""
    if any(_position_error(item) != _M.MAV_MISSION_ACCEPTED for item in items):
        return False
    i = 0
    while i < len(items):
        item = items[i]
        if item.command in (_M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION,
                            _M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION):
            count = item.param1
            if not math.isfinite(count) or count < 3 or count != int(count) or i + int(count) > len(items):
                return False
            run = items[i:i + int(count)]
            if any(v.command != item.command or v.param1 != count for v in run):
                return False
            i += int(count)
            continue
        if item.command in (_M.MAV_CMD_NAV_FENCE_CIRCLE_INCLUSION, _M.MAV_CMD_NAV_FENCE_CIRCLE_EXCLUSION):
            if not math.isfinite(item.param1) or item.param1 <= 0:
                return False
        i += 1
    return True


class ItemProtocol:
    """One of ArduPilot's MissionItemProtocol instances (mission, fence or rally)."""

    mission_type: int = _M.MAV_MISSION_TYPE_MISSION
    max_items: int = MAX_MISSION_ITEMS
    timeout_text: str = "Mission upload timeout"

    def __init__(self, mav: Any, send: Send, statustext: Callable[[int, str], None]) -> None:
        self._mav = mav
        self._send = send
        self._statustext = statustext
        self.items: list[MissionItem] = []
        self.receiving = False
        self._request_i = 0
        self._request_last = 0
        self._dest = (0, 0)
        self._last_receive = 0.0
        self._last_request = 0.0
        self.on_changed: Callable[[], None] = lambda: None
        self._legacy_warned = False

    # --- hooks a list type overrides -------------------------------------------------
    def store_ready(self) -> bool:
        """Whether the list's storage is initialised (it is at once, but for missions)."""
        return True

    def item_count(self) -> int:
        return len(self.items)

    def get_item(self, seq: int) -> MissionItem | None:
        return self.items[seq] if 0 <= seq < len(self.items) else None

    def begin_upload(self, count: int) -> None:
        del self.items[count:]  # truncate(): items beyond the new count are gone at once

    def put_item(self, seq: int, item: MissionItem) -> int:
        raise NotImplementedError

    def _write(self, seq: int, item: MissionItem) -> int:
        """Store ``item`` at ``seq``: overwrite, or append just past the end."""
        if seq < len(self.items):
            self.items[seq] = item
        elif seq == len(self.items):
            self.items.append(item)
        else:
            return _M.MAV_MISSION_ERROR
        return _M.MAV_MISSION_ACCEPTED

    def complete(self) -> int:
        return _M.MAV_MISSION_ACCEPTED

    def abort_upload(self) -> None:
        """Free staging resources after an error or timeout."""

    def clear(self) -> bool:
        self.items.clear()
        self.on_changed()
        return True

    # --- the protocol ----------------------------------------------------------------
    def _ack(self, sysid: int, compid: int, result: int) -> None:
        self._send(self._mav.mission_ack_encode(sysid, compid, result, self.mission_type))

    def _request(self) -> None:
        self._send(self._mav.mission_request_encode(*self._dest, self._request_i, self.mission_type))

    def handle_count(self, msg: Any, now: float) -> None:
        count = msg.count
        if self.receiving and (msg.get_srcSystem(), msg.get_srcComponent()) != self._dest:
            self._ack(msg.get_srcSystem(), msg.get_srcComponent(), _M.MAV_MISSION_DENIED)
            return
        if self.receiving:
            self.abort_upload()
        if not self.store_ready():
            # AP_Mission before init(): no storage yet, every count is too many (real
            # Copter SITL answers NO_SPACE for about 0.5 s after boot).
            self._ack(msg.get_srcSystem(), msg.get_srcComponent(), _M.MAV_MISSION_NO_SPACE)
            return
        if count > self.max_items:
            self._ack(msg.get_srcSystem(), msg.get_srcComponent(), _M.MAV_MISSION_NO_SPACE)
            self._statustext(_M.MAV_SEVERITY_WARNING, f"Only {self.max_items} items are supported")
            self.receiving = False
            return
        self.begin_upload(count)
        if count == 0:
            result = self.complete()
            self.receiving = False
            self._ack(msg.get_srcSystem(), msg.get_srcComponent(), result)
            self.on_changed()
            return
        self.receiving = True
        self._dest = (msg.get_srcSystem(), msg.get_srcComponent())
        self._request_i, self._request_last = 0, count - 1
        self._last_receive = self._last_request = now
        self._request()

    def handle_item(self, msg: Any, now: float) -> None:
        src = (msg.get_srcSystem(), msg.get_srcComponent())
        if msg.get_type() == "MISSION_ITEM" and not self._legacy_warned:
            # MissionItemProtocol::send_mission_item_warning, once per list type
            self._legacy_warned = True
            self._statustext(_M.MAV_SEVERITY_WARNING, "got MISSION_ITEM; GCS should send MISSION_ITEM_INT")
        if msg.seq != self._request_i:
            # MissionItemProtocol::handle_mission_item: wrong seq is NACKed at once; the
            # periodic re-request in update() then asks for the right one again.
            self._ack(*src, _M.MAV_MISSION_INVALID_SEQUENCE)
            return
        if src != self._dest:
            self._ack(*src, _M.MAV_MISSION_DENIED)
            return
        converted = item_from_message(msg)
        result = converted if isinstance(converted, int) else self.put_item(msg.seq, converted)
        if result != _M.MAV_MISSION_ACCEPTED:
            self._ack(*src, result)
            self.receiving = False
            self.abort_upload()
            self.on_changed()
            return
        self._last_receive = now
        self._request_i += 1
        if self._request_i > self._request_last:
            result = self.complete()
            self.receiving = False
            self._ack(*src, result)
            self.on_changed()
            return
        self._last_request = now
        self._request()

    def handle_request_list(self, msg: Any) -> None:
        src = (msg.get_srcSystem(), msg.get_srcComponent())
        if self.receiving:
            self._ack(*src, _M.MAV_MISSION_DENIED)
            return
        self._send(self._mav.mission_count_encode(*src, self.item_count(), self.mission_type))

    def handle_request(self, msg: Any, current_seq: int = -1) -> None:
        """MISSION_REQUEST_INT -> MISSION_ITEM_INT; legacy MISSION_REQUEST -> MISSION_ITEM."""
        src = (msg.get_srcSystem(), msg.get_srcComponent())
        if self.receiving:
            self._ack(*src, _M.MAV_MISSION_DENIED)
            return
        item = self.get_item(msg.seq)
        if item is None:
            self._on_missing_item(src, msg.seq)
            return
        # MissionItemProtocol_Waypoints::get_item compares the item's *command id* with the
        # current nav index, so ArduPilot nearly always reports current=0; mirrored here.
        current = 1 if current_seq >= 0 and item.command == current_seq else 0
        if msg.get_type() == "MISSION_REQUEST_INT":
            self._send(self._mav.mission_item_int_encode(
                *src, msg.seq, item.frame, item.command, current, item.autocontinue,
                item.param1, item.param2, item.param3, item.param4, item.x, item.y, item.z,
                self.mission_type))
        else:
            scale = 1e-7 if item.frame in GLOBAL_FRAMES else 1.0
            self._send(self._mav.mission_item_encode(
                *src, msg.seq, item.frame, item.command, current, item.autocontinue,
                item.param1, item.param2, item.param3, item.param4, item.x * scale,
                item.y * scale, item.z, self.mission_type))

    def _on_missing_item(self, src: tuple[int, int], seq: int) -> None:
        self._ack(*src, _M.MAV_MISSION_ERROR)

    def handle_clear_all(self, msg: Any) -> None:
        src = (msg.get_srcSystem(), msg.get_srcComponent())
        ok = not self.receiving and self.clear()
        self._ack(*src, _M.MAV_MISSION_ACCEPTED if ok else _M.MAV_MISSION_ERROR)

    def update(self, now: float, speed_scale: float = 1.0) -> None:
        """MissionItemProtocol::update: re-request after 1 s of silence, cancel after 8 s."""
        if not self.receiving:
            return
        if now - self._last_receive > UPLOAD_TIMEOUT_S:
            self.receiving = False
            self._statustext(_M.MAV_SEVERITY_WARNING, self.timeout_text)
            self._send(self._mav.mission_ack_encode(*self._dest, _M.MAV_MISSION_OPERATION_CANCELLED,
                                                    self.mission_type))
            self.abort_upload()
            self.on_changed()
            return
        if now - self._last_request > UPLOAD_REREQUEST_S:
            self._last_request = now
            self._request()


class MissionList(ItemProtocol):
    """Waypoints: item 0 is home, written in place as each item arrives."""

    def __init__(self, mav: Any, send: Send, statustext: Callable[[int, str], None],
                 home: Callable[[], MissionItem], ready: Callable[[], bool] = lambda: True) -> None:
        super().__init__(mav, send, statustext)
        self._home = home
        self._ready = ready
        self.items = [home()]

    def store_ready(self) -> bool:
        return self._ready()

    def get_item(self, seq: int) -> MissionItem | None:
        if seq == 0:  # read_cmd_from_storage(0) returns the current home
            return self._home()
        return super().get_item(seq)

    def begin_upload(self, count: int) -> None:
        del self.items[max(count, 1):]

    def put_item(self, seq: int, item: MissionItem) -> int:
        result = check_mission_item(item)
        if result != _M.MAV_MISSION_ACCEPTED:
            return result
        if item.command == _M.MAV_CMD_DO_JUMP:
            target = int(item.param1)
            if target == 0 or (target >= len(self.items) and target > self._request_last):
                return _M.MAV_MISSION_ERROR
        return self._write(seq, stored_mission_item(item))

    def complete(self) -> int:
        self._statustext(_M.MAV_SEVERITY_INFO, "Flight plan received")
        return _M.MAV_MISSION_ACCEPTED

    def clear(self) -> bool:
        self.items = [self._home()]
        self.on_changed()
        return True

    def _on_missing_item(self, src: tuple[int, int], seq: int) -> None:
        # MissionItemProtocol_Waypoints::get_item "educates the GCS" with the real count.
        self._send(self._mav.mission_count_encode(*src, len(self.items), self.mission_type))
        self._ack(*src, _M.MAV_MISSION_ERROR)


class FenceList(ItemProtocol):
    """Fence items, staged during upload and written only when complete and valid."""

    mission_type = _M.MAV_MISSION_TYPE_FENCE
    max_items = MAX_FENCE_ITEMS
    timeout_text = "Fence upload timeout"

    def __init__(self, mav: Any, send: Send, statustext: Callable[[int, str], None]) -> None:
        super().__init__(mav, send, statustext)
        self._staged: list[MissionItem | None] = []

    def item_count(self) -> int:
        return len(self._staged) if self.receiving else len(self.items)

    def begin_upload(self, count: int) -> None:
        self._staged = [None] * count

    def put_item(self, seq: int, item: MissionItem) -> int:
        if seq >= len(self._staged):
            return _M.MAV_MISSION_INVALID_SEQUENCE
        if item.frame not in GLOBAL_FRAMES:
            return _M.MAV_MISSION_UNSUPPORTED_FRAME
        if item.command not in FENCE_COMMANDS:
            return _M.MAV_MISSION_UNSUPPORTED
        # AC_PolyFenceItem keeps type, lat/lon and vertex count or radius; read back
        # with frame 0 (GLOBAL), z 0 and autocontinue 0: nothing else is stored
        # (MissionItemProtocol_Fence::get_item_as_mission_item fills no more).
        keep_p1 = item.command != _M.MAV_CMD_NAV_FENCE_RETURN_POINT
        self._staged[seq] = MissionItem.unchecked(item.command, _F_GLOBAL, item.param1 if keep_p1 else 0.0,
                                                  x=item.x, y=item.y, z=0.0, autocontinue=0)
        return _M.MAV_MISSION_ACCEPTED

    def complete(self) -> int:
        staged = [i for i in self._staged if i is not None]
        if len(staged) != len(self._staged) or not validate_fence(staged):
            self._statustext(_M.MAV_SEVERITY_WARNING, "Fence validation failed")
            self._staged = []
            return _M.MAV_MISSION_ERROR
        self.items = staged
        self._staged = []
        return _M.MAV_MISSION_ACCEPTED

    def abort_upload(self) -> None:
        self._staged = []

    def _on_missing_item(self, src: tuple[int, int], seq: int) -> None:
        # MissionItemProtocol_Fence::get_item: past the end is INVALID_SEQUENCE, the
        # slot just after the last item fails the read (ERROR)
        self._ack(*src, _M.MAV_MISSION_INVALID_SEQUENCE if seq > len(self.items) else _M.MAV_MISSION_ERROR)


class RallyList(ItemProtocol):
    """Rally points (MissionItemProtocol_Rally): NAV_RALLY_POINT in a global frame,
    absolute or relative to home, altitude kept in whole metres (RallyLocation.alt is
    int16); read back in GLOBAL or GLOBAL_RELATIVE_ALT with autocontinue 0 (RallyLocation
    has no such flag)."""

    mission_type = _M.MAV_MISSION_TYPE_RALLY
    max_items = MAX_RALLY_ITEMS
    timeout_text = "Rally upload timeout"

    def complete(self) -> int:
        self._statustext(_M.MAV_SEVERITY_INFO, "Rally points received")
        return _M.MAV_MISSION_ACCEPTED

    def _on_missing_item(self, src: tuple[int, int], seq: int) -> None:
        self._ack(*src, _M.MAV_MISSION_INVALID_SEQUENCE)

    def put_item(self, seq: int, item: MissionItem) -> int:
        if item.command != _M.MAV_CMD_NAV_RALLY_POINT:
            return _M.MAV_MISSION_UNSUPPORTED
        if item.frame not in _REL_FRAMES | AMSL_FRAMES:
            return _M.MAV_MISSION_UNSUPPORTED_FRAME
        if (error := _position_error(item)) != _M.MAV_MISSION_ACCEPTED:
            return error
        if not math.isfinite(item.z) or not -32768 <= item.z <= 32767:
            return _M.MAV_MISSION_INVALID_PARAM7
        frame = _F_REL if item.frame in _REL_FRAMES else _F_GLOBAL
        return self._write(seq, MissionItem.unchecked(item.command, frame, x=item.x, y=item.y,
                                                      z=float(int(item.z)), autocontinue=0))
