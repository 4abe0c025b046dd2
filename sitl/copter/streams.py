"""What the copter streams, and when: the REQUEST_DATA_STREAM groups, the per-message
intervals SET_MESSAGE_INTERVAL sets (``GCS_MAVLINK::set_message_interval``), and which
messages are due at a given time. What each message says is in
:mod:`sitl.copter.telemetry`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymavlink.dialects.v20 import ardupilotmega as M

if TYPE_CHECKING:
    from sitl.copter.vehicle import Copter

STEP_S = 0.02  # fixed physics step (simulated seconds): 50 Hz, the finest stream rate

# REQUEST_DATA_STREAM groups -> messages, as ArduCopter's GCS_Mavlink.cpp STREAM_* lists
# map them (observed group by group on Copter 4.6 SITL; only the messages this simulator
# produces: not SITL's third IMU, second barometer, ESC telemetry or terrain messages).
STREAM_GROUPS: dict[int, tuple[int, ...]] = {
    M.MAV_DATA_STREAM_RAW_SENSORS: (M.MAVLINK_MSG_ID_RAW_IMU, M.MAVLINK_MSG_ID_SCALED_IMU2,
                                    M.MAVLINK_MSG_ID_SCALED_PRESSURE),
    M.MAV_DATA_STREAM_EXTENDED_STATUS: (M.MAVLINK_MSG_ID_SYS_STATUS, M.MAVLINK_MSG_ID_POWER_STATUS,
                                        M.MAVLINK_MSG_ID_MEMINFO, M.MAVLINK_MSG_ID_MISSION_CURRENT,
                                        M.MAVLINK_MSG_ID_GPS_RAW_INT, M.MAVLINK_MSG_ID_NAV_CONTROLLER_OUTPUT,
                                        M.MAVLINK_MSG_ID_FENCE_STATUS),
    M.MAV_DATA_STREAM_RC_CHANNELS: (M.MAVLINK_MSG_ID_SERVO_OUTPUT_RAW, M.MAVLINK_MSG_ID_RC_CHANNELS),
    M.MAV_DATA_STREAM_RAW_CONTROLLER: (),
    M.MAV_DATA_STREAM_POSITION: (M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, M.MAVLINK_MSG_ID_LOCAL_POSITION_NED),
    M.MAV_DATA_STREAM_EXTRA1: (M.MAVLINK_MSG_ID_ATTITUDE, M.MAVLINK_MSG_ID_SIMSTATE, M.MAVLINK_MSG_ID_AHRS2),
    M.MAV_DATA_STREAM_EXTRA2: (M.MAVLINK_MSG_ID_VFR_HUD,),
    M.MAV_DATA_STREAM_EXTRA3: (M.MAVLINK_MSG_ID_AHRS, M.MAVLINK_MSG_ID_SYSTEM_TIME, M.MAVLINK_MSG_ID_WIND,
                               M.MAVLINK_MSG_ID_VIBRATION, M.MAVLINK_MSG_ID_BATTERY_STATUS,
                               M.MAVLINK_MSG_ID_EKF_STATUS_REPORT),
}
STREAM_GROUPS[M.MAV_DATA_STREAM_ALL] = tuple(m for g in STREAM_GROUPS.values() for m in g)
# Messages that SET_MESSAGE_INTERVAL / REQUEST_MESSAGE can name.
PRODUCIBLE = frozenset(STREAM_GROUPS[M.MAV_DATA_STREAM_ALL]) | {
    M.MAVLINK_MSG_ID_HEARTBEAT, M.MAVLINK_MSG_ID_HOME_POSITION, M.MAVLINK_MSG_ID_AUTOPILOT_VERSION,
    M.MAVLINK_MSG_ID_GPS_GLOBAL_ORIGIN,
}
TIMESYNC_INTERVAL_S = 10.0  # GCS_MAVLINK sends its own TIMESYNC request this often (observed on SITL)


class StreamSchedule:
    """msgid -> (interval, next due time), in simulated seconds since boot. At boot only
    HEARTBEAT streams (1 Hz): ArduPilot sends nothing else until asked."""

    def __init__(self) -> None:
        self._slots: dict[int, list[float]] = {M.MAVLINK_MSG_ID_HEARTBEAT: [1.0, 0.0]}

    def interval(self, msgid: int) -> float | None:
        """The stream's interval in seconds, None when it is not streaming."""
        slot = self._slots.get(msgid)
        return slot[0] if slot is not None and slot[0] > 0 else None

    def set(self, msgid: int, interval_s: float, now: float) -> None:
        """Stream ``msgid`` every ``interval_s`` (the first one due now); <= 0 stops it."""
        if interval_s <= 0:
            self._slots.pop(msgid, None)
            return
        slot = self._slots.get(msgid)
        if slot is None:
            self._slots[msgid] = [interval_s, now]
        else:
            slot[0] = interval_s

    def restart(self, msgid: int, now: float) -> bool:
        """Count the stream's next interval from ``now`` (it was just sent); False if
        it is not streaming."""
        slot = self._slots.get(msgid)
        if slot is None:
            return False
        slot[1] = now + slot[0]
        return True

    def due(self, t: float) -> list[int]:
        """The messages due at ``t``, each rescheduled."""
        due_now = []
        for msgid, slot in list(self._slots.items()):
            interval, due = slot
            if interval > 0 and t + 1e-9 >= due:
                # Keep the phase (due += interval) so the long-run rate is exact; if far
                # behind (stream just enabled), restart from now.
                slot[1] = due + interval if t - due < interval else t + interval
                due_now.append(msgid)
        return due_now


def request_data_stream(v: Copter, msg: Any) -> None:
    """GCS_MAVLINK::handle_request_data_stream: start_stop other than 0/1 is ignored."""
    group = STREAM_GROUPS.get(msg.req_stream_id)
    if group is None or msg.start_stop not in (0, 1):
        return
    rate = msg.req_message_rate if msg.start_stop else 0
    for msgid in group:
        v.streams.set(msgid, 1.0 / rate if rate > 0 else 0.0, v.t)


def set_message_interval(v: Copter, msg_id: float, interval_us: float) -> int:
    """GCS_MAVLINK::set_message_interval: -1 stops, 0 restores the default, anything
    else below 1 ms is 1 ms (here the 50 Hz step), above 60 s is 60 s; an id with no
    ap_message is FAILED with "No ap_message for mavlink id (N)"."""
    msgid = int(msg_id)
    if msgid not in PRODUCIBLE:
        v.statustext(M.MAV_SEVERITY_INFO, f"No ap_message for mavlink id ({msgid})")
        return M.MAV_RESULT_FAILED
    interval_us = int(interval_us)  # (int32_t)packet.param2
    if interval_us == -1:
        v.streams.set(msgid, 0.0, v.t)
    elif interval_us == 0:
        v.streams.set(msgid, 1.0 if msgid == M.MAVLINK_MSG_ID_HEARTBEAT else 0.0, v.t)
    else:
        v.streams.set(msgid, min(max(interval_us / 1e6, STEP_S), 60.0), v.t)
    return M.MAV_RESULT_ACCEPTED


def get_message_interval(v: Copter, msg_id: float) -> int:
    """GCS_MAVLINK::handle_command_get_message_interval: MESSAGE_INTERVAL goes out
    before the ACK; 0 = not a message it can send, -1 = not streaming."""
    msgid = int(msg_id)
    if msgid not in PRODUCIBLE:
        v.send(v.mav.message_interval_encode(msgid & 0xFFFF, 0))  # not available
        return M.MAV_RESULT_FAILED
    interval = v.streams.interval(msgid)
    interval_us = -1 if interval is None else round(interval * 1000) * 1000  # ArduPilot keeps whole ms
    v.send(v.mav.message_interval_encode(msgid & 0xFFFF, interval_us))
    return M.MAV_RESULT_ACCEPTED
