"""One vehicle (a system id) on a link: telemetry, mission transfers, commands, parameters.

This is the I/O shell around the sans-I/O pieces (Skybrush's ``driver.py`` plays this
role): it feeds the target's messages to a :class:`~mavlink_bridge.telemetry.TelemetryTracker`
and to the :class:`~mavlink_bridge.mission_protocol.MissionTransfer` machine, sends what
the machine asks for, and waits with timeouts. Calls block the calling thread (never the
link's reader thread) and are safe from several threads: one mission transfer and one
command at a time per vehicle.
"""

from __future__ import annotations

import enum
import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from mavlink_bridge._mav import MAV_COMP_ID_AUTOPILOT1, float32, mavlink
from mavlink_bridge.link import MavlinkLink
from mavlink_bridge.mission_protocol import (
    AckReceived, CountReceived, ItemReceived, MissionEvent, MissionTransfer,
    RequestReceived, Send, SendAck, SendClearAll, SendCount, SendItem, SendRequest,
    SendRequestList, State, TransferTimeouts, legacy_item_to_item,
)
from mavlink_bridge.plan import MissionItem, MissionType
from mavlink_bridge.signal import LinkQuality, LinkQualitySource, RadioStatusSource
from mavlink_bridge.telemetry import (
    DEFAULT_POSITION_HZ, CopterMode, Heartbeat, RadioStatus, TelemetryTracker, VehicleState,
    stream_requests,
)

__all__ = ["CommandResult", "CommandAck", "CommandError", "CommandTimeoutError",
           "ParamError", "Vehicle", "mission_event_from_message"]


class CommandResult(enum.IntEnum):
    """MAV_RESULT (common.xml), carried in COMMAND_ACK.result."""

    ACCEPTED = 0
    TEMPORARILY_REJECTED = 1
    DENIED = 2
    UNSUPPORTED = 3
    FAILED = 4
    IN_PROGRESS = 5
    CANCELLED = 6
    COMMAND_LONG_ONLY = 7
    COMMAND_INT_ONLY = 8
    COMMAND_UNSUPPORTED_MAV_FRAME = 9


@dataclass(frozen=True, slots=True)
class CommandAck:
    """The vehicle's COMMAND_ACK for ``command``; ``result`` is a :class:`CommandResult`
    (or the raw int for values newer than this code)."""

    command: int
    result: CommandResult | int
    attempts: int

    @property
    def accepted(self) -> bool:
        return self.result == CommandResult.ACCEPTED

    def raise_for_result(self) -> "CommandAck":
        if not self.accepted:
            raise CommandError(self)
        return self


class CommandError(Exception):
    def __init__(self, ack: CommandAck) -> None:
        name = ack.result.name if isinstance(ack.result, CommandResult) else str(ack.result)
        super().__init__(f"command {_command_name(ack.command)} refused: MAV_RESULT_{name}")
        self.ack = ack


class CommandTimeoutError(TimeoutError):
    def __init__(self, command: int, attempts: int, timeout_s: float,
                 in_progress_s: float | None = None) -> None:
        if in_progress_s is None:
            super().__init__(f"no COMMAND_ACK for {_command_name(command)} after {attempts} "
                             f"attempts of {timeout_s:.2f}s")
        else:
            super().__init__(f"{_command_name(command)} still only MAV_RESULT_IN_PROGRESS "
                             f"after {in_progress_s:g}s; no final COMMAND_ACK")
        self.command = command
        self.attempts = attempts


class ParamError(Exception):
    """PARAM_SET was not confirmed by a matching PARAM_VALUE."""


def _command_name(command: int) -> str:
    entry = mavlink.enums["MAV_CMD"].get(command)
    return entry.name if entry is not None else str(command)


def _mission_type(value: Any) -> MissionType | None:
    try:
        return MissionType(int(value))
    except (TypeError, ValueError):
        return None


def mission_event_from_message(msg: Any) -> MissionEvent | None:
    """The mission-protocol event for a MAVLink message, or None if it is not one.

    Raises ``ValueError`` for a mission message with impossible contents.
    """
    name = msg.get_type()
    if name not in ("MISSION_REQUEST", "MISSION_REQUEST_INT", "MISSION_ITEM", "MISSION_ITEM_INT",
                    "MISSION_COUNT", "MISSION_ACK"):
        return None
    mtype = _mission_type(getattr(msg, "mission_type", 0))
    if mtype is None:
        raise ValueError(f"{name} with unknown mission_type {msg.mission_type}")
    if name in ("MISSION_REQUEST", "MISSION_REQUEST_INT"):
        return RequestReceived(int(msg.seq), mtype, legacy=name == "MISSION_REQUEST")
    if name == "MISSION_ITEM_INT":
        item = MissionItem(command=int(msg.command), frame=int(msg.frame), param1=msg.param1,
                           param2=msg.param2, param3=msg.param3, param4=msg.param4,
                           x=int(msg.x), y=int(msg.y), z=msg.z,
                           autocontinue=1 if msg.autocontinue else 0)
        return ItemReceived(int(msg.seq), item, mtype)
    if name == "MISSION_ITEM":
        item = legacy_item_to_item(int(msg.command), int(msg.frame), msg.param1, msg.param2,
                                   msg.param3, msg.param4, msg.x, msg.y, msg.z, msg.autocontinue)
        return ItemReceived(int(msg.seq), item, mtype, legacy=True)
    if name == "MISSION_COUNT":
        return CountReceived(int(msg.count), mtype)
    return AckReceived(int(msg.type), mtype)


_QUEUE_MAX = 256


def _put_dropping_oldest(q: "queue.Queue[Any]", item: Any) -> None:
    """Called only from the link's one reader thread, so put after get cannot race
    with another producer."""
    while True:
        try:
            q.put_nowait(item)
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass


def _check_param_name(name: str) -> None:
    if not name or len(name) > 16 or not name.isascii():
        raise ValueError(f"parameter name {name!r} must be 1..16 ASCII characters")


class Vehicle:
    """The flight controller with system id ``sysid`` on ``link``.

    ``signal`` is where link quality comes from: by default RADIO_STATUS of SiK radios
    (system 51), on hardware and in simulation alike (``sitl.radio`` simulates the radio
    in the MAVLink path).
    """

    def __init__(self, link: MavlinkLink, sysid: int,
                 transfer_timeouts: TransferTimeouts = TransferTimeouts(),
                 signal: LinkQualitySource | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 1 <= sysid <= 255:
            raise ValueError(f"sysid must be in 1..255, got {sysid!r}")
        self.link = link
        self.sysid = sysid
        self.transfer_timeouts = transfer_timeouts
        self.telemetry = TelemetryTracker(sysid)
        self.signal: LinkQualitySource = signal if signal is not None else RadioStatusSource()
        self._clock = clock
        # Bounded: messages keep arriving when nobody is waiting for them (another GCS
        # uploading, a parameter list being streamed), and must not pile up.
        self._mission_q: queue.Queue[MissionEvent] = queue.Queue(maxsize=_QUEUE_MAX)
        self._transfer_lock = threading.Lock()
        self._command_lock = threading.Lock()
        self._acks: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_MAX)
        self._params: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_MAX)
        self._reached: queue.Queue[int] = queue.Queue(maxsize=_QUEUE_MAX)
        self._current_q: queue.Queue[int] = queue.Queue(maxsize=_QUEUE_MAX)
        self.bad_mission_messages = 0
        # Stream keeping (see request_streams): ArduPilot forgets SET_MESSAGE_INTERVAL
        # when it restarts, and a new connection may be a new autopilot process.
        self._epoch: tuple[int, int] | None = None  # (link connects, reboots) last heard in
        self._heard_since: float | None = None
        self._streams_wanted = False
        self._position_hz = DEFAULT_POSITION_HZ
        self._resync = threading.Event()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self._keeper_lock = threading.Lock()
        self.stream_requests = 0  # times the stream set was (re)requested
        self._unsubscribe = [link.subscribe(self._on_target_message, sysid=sysid),
                             link.subscribe(self._on_any_message)]

    def detach(self) -> None:
        """Stop listening to the link (and stop keeping the streams requested)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._stop.set()
        self._resync.set()
        keeper = self._keeper
        if keeper is not None and keeper is not threading.current_thread():
            keeper.join(timeout=20)

    # -- inbound (reader thread) ----------------------------------------------------

    def _addressed_to_us(self, msg: Any) -> bool:
        """Mission replies and COMMAND_ACKs carry the requester as target; answers the
        vehicle gives another GCS (QGroundControl uploading at the same time) are not ours."""
        cfg = self.link.config
        return (getattr(msg, "target_system", 0) in (0, cfg.source_system)
                and getattr(msg, "target_component", 0) in (0, cfg.source_component))

    def _on_target_message(self, msg: Any, now: float) -> None:
        name = msg.get_type()
        if name.startswith("MISSION_") or name == "COMMAND_ACK":
            if name not in ("MISSION_CURRENT", "MISSION_ITEM_REACHED") and not self._addressed_to_us(msg):
                return
        record = self.telemetry.feed(msg, now)
        if isinstance(record, Heartbeat):
            epoch = (self.link.stats.connects, self.telemetry.reboots)
            if epoch != self._epoch:
                # First word from the autopilot since a (re)connect or a restart.
                self._epoch, self._heard_since = epoch, now
                if self._streams_wanted:
                    self._resync.set()
        if name == "MISSION_ITEM_REACHED":
            _put_dropping_oldest(self._reached, int(msg.seq))
        elif name == "MISSION_CURRENT":
            _put_dropping_oldest(self._current_q, int(msg.seq))
        elif name == "COMMAND_ACK":
            _put_dropping_oldest(self._acks, msg)
        elif name == "PARAM_VALUE":
            _put_dropping_oldest(self._params, msg)
        else:
            try:
                event = mission_event_from_message(msg)
            except ValueError:
                self.bad_mission_messages += 1
                return
            if event is not None:
                _put_dropping_oldest(self._mission_q, event)

    def _on_any_message(self, msg: Any, now: float) -> None:
        if msg.get_type() == "RADIO_STATUS" and isinstance(self.signal, RadioStatusSource):
            record = self.telemetry.decoder.decode(msg)
            if isinstance(record, RadioStatus):
                self.signal.feed(msg.get_srcSystem(), record, now)

    # -- state ----------------------------------------------------------------------

    def state(self) -> VehicleState:
        return self.telemetry.snapshot()

    def heard_since(self) -> float | None:
        """When (this vehicle's clock) the autopilot was first heard after the latest
        (re)connect or detected restart; None before its first HEARTBEAT."""
        return self._heard_since

    def link_quality(self) -> LinkQuality | None:
        return self.signal.quality(self._clock())

    @property
    def target_component(self) -> int:
        # The autopilot is MAV_COMP_ID_AUTOPILOT1 (the only component whose HEARTBEAT the
        # link takes as the vehicle, see _mav.is_autopilot_heartbeat). Never the compid of
        # whatever beat last on our system id: a gimbal's 154 would make ArduPilot's
        # routing forward our commands to the gimbal instead of handling them.
        return MAV_COMP_ID_AUTOPILOT1

    def wait_until(self, predicate: Callable[[VehicleState], bool], timeout: float,
                   poll_s: float = 0.02) -> VehicleState:
        """Wait until ``predicate(state)`` holds; raises TimeoutError with the last state."""
        deadline = self._clock() + timeout
        while True:
            state = self.state()
            if predicate(state):
                return state
            if self._clock() >= deadline:
                raise TimeoutError(f"vehicle {self.sysid}: condition not met within {timeout}s "
                                   f"(mode={state.mode}, armed={state.armed})")
            time.sleep(poll_s)

    def wait_item_reached(self, seq: int, timeout: float) -> int:
        """Wait for MISSION_ITEM_REACHED with seq >= ``seq``; returns the seq reached."""
        got = self._await(self._reached, timeout, lambda reached: reached >= seq)
        if got is None:
            raise TimeoutError(f"vehicle {self.sysid}: item {seq} not reached in {timeout}s")
        return int(got)

    def clear_reached(self) -> None:
        while True:
            try:
                self._reached.get_nowait()
            except queue.Empty:
                return

    # -- mission protocol -------------------------------------------------------------

    def upload(self, mission_type: MissionType, items: Sequence[MissionItem]) -> None:
        """Upload exactly ``items`` (for missions, item 0 must already be home)."""
        self._run_transfer(lambda t, now: t.start_upload(mission_type, items, now))

    def download(self, mission_type: MissionType) -> tuple[MissionItem, ...]:
        transfer = self._run_transfer(lambda t, now: t.start_download(mission_type, now))
        assert transfer.items is not None
        return transfer.items

    def clear(self, mission_type: MissionType) -> None:
        self._run_transfer(lambda t, now: t.start_clear(mission_type, now))

    def _run_transfer(self, start: Callable[[MissionTransfer, float], list[Send]]) -> MissionTransfer:
        with self._transfer_lock:
            self._drain(self._mission_q)  # stale answers to an earlier, finished transfer
            transfer = MissionTransfer(self.transfer_timeouts)
            self._send_all(start(transfer, self._clock()))
            while transfer.active:
                assert transfer.deadline is not None
                wait = max(0.0, transfer.deadline - self._clock())
                try:
                    event = self._mission_q.get(timeout=wait)
                except queue.Empty:
                    self._send_all(transfer.poll(self._clock()))
                    continue
                self._send_all(transfer.receive(event, self._clock()))
                self._send_all(transfer.poll(self._clock()))
            if transfer.state is State.FAILED:
                assert transfer.error is not None
                raise transfer.error
            return transfer

    def _send_all(self, actions: list[Send]) -> None:
        for action in actions:
            self.link.send(self._encode(action))

    def _encode(self, action: Send) -> Any:
        ts, tc = self.sysid, self.target_component
        if isinstance(action, SendItem):
            it = action.item
            return mavlink.MAVLink_mission_item_int_message(
                ts, tc, action.seq, it.frame, it.command, 0, it.autocontinue, it.param1,
                it.param2, it.param3, it.param4, it.x, it.y, it.z, int(action.mission_type))
        if isinstance(action, SendCount):
            return mavlink.MAVLink_mission_count_message(ts, tc, action.count, int(action.mission_type))
        if isinstance(action, SendRequest):
            return mavlink.MAVLink_mission_request_int_message(ts, tc, action.seq,
                                                               int(action.mission_type))
        if isinstance(action, SendRequestList):
            return mavlink.MAVLink_mission_request_list_message(ts, tc, int(action.mission_type))
        if isinstance(action, SendAck):
            return mavlink.MAVLink_mission_ack_message(ts, tc, int(action.result),
                                                       int(action.mission_type))
        if isinstance(action, SendClearAll):
            return mavlink.MAVLink_mission_clear_all_message(ts, tc, int(action.mission_type))
        raise TypeError(f"unknown action {action!r}")

    @staticmethod
    def _drain(q: "queue.Queue[Any]") -> None:
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                return

    def _await(self, q: "queue.Queue[Any]", timeout_s: float,
               match: Callable[[Any], bool]) -> Any:
        """The first item from ``q`` that ``match``es within ``timeout_s`` (others are
        dropped), or None when the time is up."""
        deadline = self._clock() + timeout_s
        while (remaining := deadline - self._clock()) > 0:
            try:
                got = q.get(timeout=remaining)
            except queue.Empty:
                return None
            if match(got):
                return got
        return None

    # -- command protocol -------------------------------------------------------------

    def command(self, command: int, *params: float, timeout_s: float = 1.5,
                retries: int = 3, in_progress_max_s: float = 30.0) -> CommandAck:
        """COMMAND_LONG with up to ``retries`` resends (confirmation incremented, per the
        MAVLink command protocol); returns the COMMAND_ACK or raises CommandTimeoutError.
        MAV_RESULT_IN_PROGRESS extends the wait without resending, up to
        ``in_progress_max_s`` after the first send: a vehicle repeating IN_PROGRESS
        must not hold the command (and the command lock parameters share) for ever."""
        if len(params) > 7:
            raise ValueError("COMMAND_LONG has 7 parameters")
        p = [float(x) for x in params] + [0.0] * (7 - len(params))
        if not all(math.isfinite(x) for x in p):
            raise ValueError(f"command parameters must be finite: {p}")
        with self._command_lock:
            self._drain(self._acks)
            give_up_at = self._clock() + in_progress_max_s
            for attempt in range(retries + 1):
                self.link.send(mavlink.MAVLink_command_long_message(
                    self.sysid, self.target_component, command, attempt, *p))
                while True:
                    ack = self._await(self._acks, timeout_s, lambda a: a.command == command)
                    if ack is None:
                        break
                    if ack.result == CommandResult.IN_PROGRESS:
                        if self._clock() >= give_up_at:
                            raise CommandTimeoutError(command, attempt + 1, timeout_s,
                                                      in_progress_s=in_progress_max_s)
                        continue  # wait a full timeout again, without resending
                    try:
                        result: CommandResult | int = CommandResult(ack.result)
                    except ValueError:
                        result = int(ack.result)
                    return CommandAck(command=command, result=result, attempts=attempt + 1)
            raise CommandTimeoutError(command, retries + 1, timeout_s)

    def set_mode(self, mode: CopterMode | str | int, timeout_s: float = 1.5) -> CommandAck:
        """MAV_CMD_DO_SET_MODE with MAV_MODE_FLAG_CUSTOM_MODE_ENABLED and a copter mode."""
        if isinstance(mode, str):
            try:
                mode = CopterMode[mode.upper()]
            except KeyError:
                raise ValueError(f"unknown copter mode {mode!r}") from None
        return self.command(mavlink.MAV_CMD_DO_SET_MODE,
                            mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, int(mode), timeout_s=timeout_s)

    def arm(self, timeout_s: float = 1.5) -> CommandAck:
        return self.command(mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 1, timeout_s=timeout_s)

    def disarm(self, timeout_s: float = 1.5) -> CommandAck:
        return self.command(mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 0, timeout_s=timeout_s)

    def takeoff(self, altitude_m: float, timeout_s: float = 1.5) -> CommandAck:
        """MAV_CMD_NAV_TAKEOFF (param7 = altitude above home); Copter needs GUIDED and armed."""
        if not (math.isfinite(altitude_m) and 0 < altitude_m <= 1000):
            raise ValueError(f"takeoff altitude {altitude_m!r} must be in (0, 1000] m")
        return self.command(mavlink.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, altitude_m,
                            timeout_s=timeout_s)

    def start_mission(self, timeout_s: float = 1.5) -> CommandAck:
        """MAV_CMD_MISSION_START (first and last item 0: the whole mission). ArduCopter
        switches to AUTO and sets auto_armed, so an armed copter on the ground takes off
        by the mission's NAV_TAKEOFF without an RC throttle (GCS_MAVLINK_Copter::
        handle_MAV_CMD_MISSION_START)."""
        return self.command(mavlink.MAV_CMD_MISSION_START, 0, 0, timeout_s=timeout_s)

    def set_mission_current(self, seq: int, timeout_s: float = 1.5, retries: int = 3) -> CommandAck:
        """MAV_CMD_DO_SET_MISSION_CURRENT: continue the mission from item ``seq``.

        ArduPilot before 4.3 answers that command UNSUPPORTED and only knows the
        MISSION_SET_CURRENT message, which gets no ACK: success is the MISSION_CURRENT
        echoing ``seq`` (GCS_MAVLINK::handle_mission_set_current), failure is silence.
        The fallback reports ACCEPTED or FAILED in those terms."""
        if not 0 <= seq <= 65535:
            raise ValueError(f"seq {seq!r} is not a uint16")
        ack = self.command(mavlink.MAV_CMD_DO_SET_MISSION_CURRENT, seq, timeout_s=timeout_s)
        if ack.result != CommandResult.UNSUPPORTED:
            return ack
        with self._command_lock:
            self._drain(self._current_q)
            for attempt in range(retries + 1):
                self.link.send(mavlink.MAVLink_mission_set_current_message(
                    self.sysid, self.target_component, seq))
                if self._await(self._current_q, timeout_s, lambda current: current == seq) is not None:
                    return CommandAck(mavlink.MAV_CMD_DO_SET_MISSION_CURRENT, CommandResult.ACCEPTED,
                                      ack.attempts + attempt + 1)
            return CommandAck(mavlink.MAV_CMD_DO_SET_MISSION_CURRENT, CommandResult.FAILED,
                              ack.attempts + retries + 1)

    STREAM_STALE_S = 5.0  # position silent this long while heartbeats flow: ask again

    def request_streams(self, timeout_s: float = 1.0, keep: bool = True,
                        position_hz: float | None = None) -> bool:
        """Ask for the telemetry the bridge decodes; True if SET_MESSAGE_INTERVAL worked.

        ArduPilot streams only HEARTBEAT until asked, and forgets what it was asked
        when it restarts. With ``keep`` (the default) the vehicle asks again by itself
        after every reconnect and every detected reboot, and when positions stop while
        heartbeats still arrive (a restart we could not see), from a background thread.
        MAV_CMD_SET_MESSAGE_INTERVAL (param1 message id, param2 interval in µs) is the
        modern way; if the autopilot refuses or ignores it, fall back to
        REQUEST_DATA_STREAM (deprecated, but what older ArduPilot and many radios'
        telemetry setups still honour). ``position_hz`` (kept for the re-requests)
        asks for positions faster than the default 4 Hz, e.g. for 10 Hz telemetry.
        """
        if position_hz is not None:
            if not (0 < position_hz <= 50):
                raise ValueError(f"position_hz must be in (0, 50], got {position_hz!r}")
            self._position_hz = float(position_hz)
        if keep:
            self._streams_wanted = True
            self._start_keeper()
        return self._request_streams_now(timeout_s)

    def _request_streams_now(self, timeout_s: float = 1.0) -> bool:
        self.stream_requests += 1
        ok = True
        for msg_id, rate_hz in stream_requests(self._position_hz):
            try:
                ack = self.command(mavlink.MAV_CMD_SET_MESSAGE_INTERVAL, msg_id,
                                   1e6 / rate_hz, timeout_s=timeout_s, retries=1)
                ok = ok and ack.accepted
            except CommandTimeoutError:
                ok = False
            if not ok:
                break
        if not ok:
            for stream, rate in ((mavlink.MAV_DATA_STREAM_ALL, 2), (mavlink.MAV_DATA_STREAM_POSITION,
                                                                   max(1, round(self._position_hz))),
                                 (mavlink.MAV_DATA_STREAM_EXTENDED_STATUS, 1)):
                self.link.send(mavlink.MAVLink_request_data_stream_message(
                    self.sysid, self.target_component, stream, rate, 1))
        return ok

    def _start_keeper(self) -> None:
        with self._keeper_lock:
            if self._keeper is None and not self._stop.is_set():
                self._keeper = threading.Thread(target=self._keep_streams, daemon=True,
                                                name=f"streams-{self.sysid}")
                self._keeper.start()

    def _keep_streams(self) -> None:
        last_request = self._clock()
        while not self._stop.is_set():
            due = self._resync.wait(timeout=1.0)
            if self._stop.is_set():
                return
            now = self._clock()
            if not due:
                state = self.state()
                hb_age = state.age("heartbeat", now)
                pos_age = state.age("position", now)
                silent = pos_age is None or pos_age > self.STREAM_STALE_S
                due = (hb_age is not None and hb_age < 3.0 and silent
                       and now - last_request > self.STREAM_STALE_S)
            if not due:
                continue
            self._resync.clear()
            last_request = now
            try:
                self._request_streams_now()
            except Exception:  # noqa: BLE001 - a lost link: the next epoch asks again
                self._resync.set()
                self._stop.wait(1.0)

    # -- parameters ---------------------------------------------------------------------

    def get_param(self, name: str, timeout_s: float = 1.5, retries: int = 3) -> float:
        """PARAM_REQUEST_READ by name (param_index -1), answered by PARAM_VALUE; raises
        ParamError if the vehicle never answers (ArduPilot stays silent for an unknown
        name, GCS_MAVLINK::param_io_timer)."""
        _check_param_name(name)
        with self._command_lock:
            self._drain(self._params)
            for _ in range(retries + 1):
                self.link.send(mavlink.MAVLink_param_request_read_message(
                    self.sysid, self.target_component, name.encode("ascii"), -1))
                pv = self._wait_param_value(name, timeout_s)
                if pv is not None:
                    return float(pv.param_value)
            raise ParamError(f"{name}: no PARAM_VALUE after {retries + 1} requests")

    def _wait_param_value(self, name: str, timeout_s: float) -> Any:
        """The next PARAM_VALUE for ``name`` within ``timeout_s``, or None."""
        def named(pv: Any) -> bool:
            pid = pv.param_id
            if isinstance(pid, bytes):
                pid = pid.decode("ascii", errors="replace")
            return bool(pid.rstrip("\0") == name)
        return self._await(self._params, timeout_s, named)

    def set_param(self, name: str, value: float, param_type: int = mavlink.MAV_PARAM_TYPE_REAL32,
                  timeout_s: float = 1.5, retries: int = 3) -> float:
        """PARAM_SET, confirmed by the PARAM_VALUE echo (parameter protocol); returns the
        value the vehicle now holds. Raises ParamError if it holds something else."""
        _check_param_name(name)
        if not math.isfinite(value):
            raise ValueError("parameter value must be finite")
        with self._command_lock:
            self._drain(self._params)
            for _ in range(retries + 1):
                self.link.send(mavlink.MAVLink_param_set_message(
                    self.sysid, self.target_component, name.encode("ascii"), float(value),
                    param_type))
                pv = self._wait_param_value(name, timeout_s)
                if pv is None:
                    continue
                if float32(pv.param_value) != float32(value):
                    raise ParamError(f"{name}: vehicle holds {pv.param_value}, asked {value}")
                return float(pv.param_value)
            raise ParamError(f"{name}: no PARAM_VALUE confirmation after {retries + 1} attempts")
