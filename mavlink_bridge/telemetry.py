"""Telemetry from one vehicle, decoded into typed, validated, immutable records.

ArduPilot streams only HEARTBEAT until asked, so :func:`stream_requests` lists what the
bridge needs and at which rate (sent as MAV_CMD_SET_MESSAGE_INTERVAL, falling back to
REQUEST_DATA_STREAM: see :mod:`mavlink_bridge.vehicle`). :class:`TelemetryDecoder`
turns each MAVLink message into a record, rejecting (and counting) values that are
out of range or not finite; :class:`TelemetryTracker` keeps the latest of each for one
system id and hands out a consistent :class:`VehicleState` snapshot.
"""

from __future__ import annotations

import enum
import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from mavlink_bridge._mav import is_autopilot_heartbeat, mavlink

__all__ = [
    "CopterMode", "Heartbeat", "Position", "Battery", "GpsFix", "EkfStatus", "MissionProgress",
    "ItemReached", "FenceStatus", "StatusText", "RadioStatus", "TelemetryRecord",
    "VehicleState", "TelemetryDecoder", "TelemetryTracker", "TelemetryRejected",
    "StatusTextAssembler",
    "stream_requests", "copter_mode_name",
]


class CopterMode(enum.IntEnum):
    """ArduCopter custom_mode numbers (ArduCopter/mode.h, COPTER_MODE in ardupilotmega.xml)
    as typed constants; names and numbers are those of pymavlink's mode_mapping_acm
    (checked by tests/bridge/test_bridge_telemetry_signal.py), less its retired ones."""

    STABILIZE = 0
    ACRO = 1
    ALT_HOLD = 2
    AUTO = 3
    GUIDED = 4
    LOITER = 5
    RTL = 6
    CIRCLE = 7
    LAND = 9
    DRIFT = 11
    SPORT = 13
    FLIP = 14
    AUTOTUNE = 15
    POSHOLD = 16
    BRAKE = 17
    THROW = 18
    AVOID_ADSB = 19
    GUIDED_NOGPS = 20
    SMART_RTL = 21
    FLOWHOLD = 22
    FOLLOW = 23
    ZIGZAG = 24
    SYSTEMID = 25
    AUTOROTATE = 26
    AUTO_RTL = 27
    TURTLE = 28


def copter_mode_name(custom_mode: int) -> str:
    """The mode's name (CopterMode's, which are pymavlink's mode_mapping_acm names);
    MODE_N for a number ArduCopter has no mode for."""
    try:
        return CopterMode(custom_mode).name
    except ValueError:
        return f"MODE_{custom_mode}"


class TelemetryRejected(ValueError):
    """A message whose values cannot be true (NaN, off the globe, out of range)."""


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise TelemetryRejected(f"{name}={value} is not finite")
    return float(value)


def _in(name: str, value: float, lo: float, hi: float) -> float:
    _finite(name, value)
    if not lo <= value <= hi:
        raise TelemetryRejected(f"{name}={value} outside [{lo}, {hi}]")
    return value


# --- records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """HEARTBEAT: mode and arming (MAV_MODE_FLAG_SAFETY_ARMED in base_mode)."""

    custom_mode: int
    mode: str
    armed: bool
    system_status: int
    vehicle_type: int
    autopilot: int


@dataclass(frozen=True, slots=True)
class Position:
    """GLOBAL_POSITION_INT, in degrees, metres and m/s (NED velocity)."""

    lat: float
    lon: float
    alt_msl: float
    alt_rel: float
    vn: float
    ve: float
    vd: float
    heading_deg: float | None
    time_boot_ms: int


@dataclass(frozen=True, slots=True)
class Battery:
    """SYS_STATUS or BATTERY_STATUS; ``None`` where the autopilot reports "unknown"."""

    voltage_v: float | None
    current_a: float | None
    remaining_pct: int | None
    source: str


@dataclass(frozen=True, slots=True)
class GpsFix:
    """GPS_RAW_INT: fix_type is GPS_FIX_TYPE (3 = 3D fix)."""

    fix_type: int
    satellites: int | None
    eph_m: float | None
    lat: float
    lon: float

    @property
    def has_3d_fix(self) -> bool:
        return self.fix_type >= 3


@dataclass(frozen=True, slots=True)
class EkfStatus:
    """EKF_STATUS_REPORT flags (EKF_STATUS_FLAGS) and normalised variances."""

    flags: int
    velocity_variance: float
    pos_horiz_variance: float
    pos_vert_variance: float
    compass_variance: float

    @property
    def attitude_ok(self) -> bool:
        return bool(self.flags & mavlink.EKF_ATTITUDE)

    @property
    def position_ok(self) -> bool:
        """Absolute horizontal position usable and not a constant-position fallback.

        This is what ArduCopter's arming check "Need Position Estimate" waits for.
        """
        return (bool(self.flags & mavlink.EKF_POS_HORIZ_ABS)
                and not self.flags & mavlink.EKF_CONST_POS_MODE
                and not self.flags & mavlink.EKF_UNINITIALIZED)


@dataclass(frozen=True, slots=True)
class MissionProgress:
    """MISSION_CURRENT: current seq, total items and MISSION_STATE (3 active, 5 complete)."""

    seq: int
    total: int | None
    mission_state: int
    mission_mode: int


@dataclass(frozen=True, slots=True)
class ItemReached:
    """MISSION_ITEM_REACHED."""

    seq: int


@dataclass(frozen=True, slots=True)
class FenceStatus:
    """FENCE_STATUS: breach_type is FENCE_BREACH (0 none, 1 min alt, 2 max alt, 3 boundary)."""

    breached: bool
    breach_count: int
    breach_type: int
    breach_time_ms: int


@dataclass(frozen=True, slots=True)
class StatusText:
    severity: int
    text: str


@dataclass(frozen=True, slots=True)
class RadioStatus:
    """RADIO_STATUS as sent by SiK radios (raw 0..254 units; 255 = unknown)."""

    rssi: int | None
    remrssi: int | None
    noise: int | None
    remnoise: int | None
    txbuf: int
    rxerrors: int
    fixed: int


TelemetryRecord = Union[Heartbeat, Position, Battery, GpsFix, EkfStatus, MissionProgress,
                        ItemReached, FenceStatus, StatusText, RadioStatus]


# --- decoders --------------------------------------------------------------------------


def _lat_lon(m: Any) -> tuple[float, float]:
    """``m.lat``/``m.lon`` (degE7) in degrees, checked to be on the globe."""
    return _in("lat", m.lat / 1e7, -90.0, 90.0), _in("lon", m.lon / 1e7, -180.0, 180.0)


def _battery(m: Any, volts: float | None, source: str) -> Battery:
    """SYS_STATUS and BATTERY_STATUS share current_battery (cA, -1 unknown) and
    battery_remaining (%, -1 unknown)."""
    amps = None if m.current_battery == -1 else m.current_battery / 100.0
    remaining = None if m.battery_remaining == -1 else int(_in("battery_remaining",
                                                               m.battery_remaining, 0, 100))
    return Battery(voltage_v=volts, current_a=amps, remaining_pct=remaining, source=source)


def _heartbeat(m: Any) -> Heartbeat:
    return Heartbeat(custom_mode=int(m.custom_mode), mode=copter_mode_name(int(m.custom_mode)),
                     armed=bool(m.base_mode & mavlink.MAV_MODE_FLAG_SAFETY_ARMED),
                     system_status=int(m.system_status), vehicle_type=int(m.type),
                     autopilot=int(m.autopilot))


def _global_position_int(m: Any) -> Position:
    lat, lon = _lat_lon(m)
    if lat == 0 and lon == 0:
        # ArduPilot sends 0,0 before it has a position: not a fix in the Gulf of Guinea.
        raise TelemetryRejected("position 0,0 (no position yet)")
    alt_msl = _in("alt", m.alt / 1000.0, -1000.0, 20000.0)
    alt_rel = _in("relative_alt", m.relative_alt / 1000.0, -1000.0, 20000.0)
    hdg = None if m.hdg == 65535 else _in("hdg", m.hdg / 100.0, 0.0, 360.0)
    return Position(lat=lat, lon=lon, alt_msl=alt_msl, alt_rel=alt_rel, vn=m.vx / 100.0,
                    ve=m.vy / 100.0, vd=m.vz / 100.0, heading_deg=hdg,
                    time_boot_ms=int(m.time_boot_ms))


def _sys_status(m: Any) -> Battery:
    volts = None if m.voltage_battery == 65535 else _in("voltage", m.voltage_battery / 1000.0, 0, 100)
    return _battery(m, volts, "SYS_STATUS")


def _battery_status(m: Any) -> Battery:
    cells = [v for v in m.voltages if v not in (65535, 0)]
    volts = _in("voltage", sum(cells) / 1000.0, 0, 100) if cells else None
    return _battery(m, volts, f"BATTERY_STATUS[{m.id}]")


def _gps_raw_int(m: Any) -> GpsFix:
    _in("fix_type", m.fix_type, 0, 8)
    lat, lon = _lat_lon(m)
    return GpsFix(fix_type=int(m.fix_type),
                  satellites=None if m.satellites_visible == 255 else int(m.satellites_visible),
                  eph_m=None if m.eph == 65535 else m.eph / 100.0, lat=lat, lon=lon)


def _ekf_status_report(m: Any) -> EkfStatus:
    return EkfStatus(flags=int(m.flags),
                     velocity_variance=_in("velocity_variance", m.velocity_variance, 0, 1e6),
                     pos_horiz_variance=_in("pos_horiz_variance", m.pos_horiz_variance, 0, 1e6),
                     pos_vert_variance=_in("pos_vert_variance", m.pos_vert_variance, 0, 1e6),
                     compass_variance=_in("compass_variance", m.compass_variance, 0, 1e6))


def _mission_current(m: Any) -> MissionProgress:
    state = int(getattr(m, "mission_state", 0))
    _in("mission_state", state, 0, 5)
    total = int(getattr(m, "total", 0))
    return MissionProgress(seq=int(m.seq), total=None if total == 65535 else total,
                           mission_state=state, mission_mode=int(getattr(m, "mission_mode", 0)))


def _fence_status(m: Any) -> FenceStatus:
    _in("breach_type", m.breach_type, 0, 3)
    return FenceStatus(breached=bool(m.breach_status), breach_count=int(m.breach_count),
                       breach_type=int(m.breach_type), breach_time_ms=int(m.breach_time))


def _statustext(m: Any) -> StatusText:
    text = m.text
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return StatusText(severity=int(_in("severity", m.severity, 0, 7)), text=str(text).rstrip("\0"))


def _radio_status(m: Any) -> RadioStatus:
    def known(v: int) -> int | None:
        return None if v == 255 else int(v)  # RADIO_STATUS: 255 = invalid/unknown
    return RadioStatus(rssi=known(m.rssi), remrssi=known(m.remrssi), noise=known(m.noise),
                       remnoise=known(m.remnoise), txbuf=int(m.txbuf), rxerrors=int(m.rxerrors),
                       fixed=int(m.fixed))


_DECODERS: dict[str, Callable[[Any], TelemetryRecord]] = {
    "HEARTBEAT": _heartbeat,
    "GLOBAL_POSITION_INT": _global_position_int,
    "SYS_STATUS": _sys_status,
    "BATTERY_STATUS": _battery_status,
    "GPS_RAW_INT": _gps_raw_int,
    "EKF_STATUS_REPORT": _ekf_status_report,
    "MISSION_CURRENT": _mission_current,
    "MISSION_ITEM_REACHED": lambda m: ItemReached(seq=int(m.seq)),
    "FENCE_STATUS": _fence_status,
    "STATUSTEXT": _statustext,
    "RADIO_STATUS": _radio_status,
}


#: GLOBAL_POSITION_INT rate asked of the autopilot unless a caller wants more.
DEFAULT_POSITION_HZ = 4.0


def stream_requests(position_hz: float = DEFAULT_POSITION_HZ) -> tuple[tuple[int, float], ...]:
    """(MAVLink message id, rate Hz) pairs the bridge asks the autopilot to stream."""
    return (
        (mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, position_hz),
        (mavlink.MAVLINK_MSG_ID_SYS_STATUS, 1.0),
        (mavlink.MAVLINK_MSG_ID_BATTERY_STATUS, 1.0),
        (mavlink.MAVLINK_MSG_ID_GPS_RAW_INT, 1.0),
        (mavlink.MAVLINK_MSG_ID_EKF_STATUS_REPORT, 1.0),
        (mavlink.MAVLINK_MSG_ID_MISSION_CURRENT, 1.0),
        (mavlink.MAVLINK_MSG_ID_FENCE_STATUS, 1.0),
    )


class TelemetryDecoder:
    """Message -> record, with counts of what was decoded, rejected and skipped."""

    def __init__(self) -> None:
        self.decoded: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.last_rejection: str | None = None

    def decode(self, msg: Any) -> TelemetryRecord | None:
        """The record for ``msg``, or None for types not decoded or values rejected."""
        name = msg.get_type()
        decoder = _DECODERS.get(name)
        if decoder is None:
            return None
        try:
            record = decoder(msg)
        except (TelemetryRejected, TypeError, AttributeError, ValueError) as exc:
            self.rejected[name] += 1
            self.last_rejection = f"{name}: {exc}"
            return None
        self.decoded[name] += 1
        return record


@dataclass(frozen=True, slots=True)
class VehicleState:
    """The latest of each record for one system id, with when each was received."""

    sysid: int
    heartbeat: Heartbeat | None = None
    position: Position | None = None
    battery: Battery | None = None
    gps: GpsFix | None = None
    ekf: EkfStatus | None = None
    mission: MissionProgress | None = None
    last_item_reached: ItemReached | None = None
    fence: FenceStatus | None = None
    radio: RadioStatus | None = None
    status_texts: tuple[StatusText, ...] = ()
    received_at: dict[str, float] = field(default_factory=dict)

    @property
    def armed(self) -> bool:
        return bool(self.heartbeat and self.heartbeat.armed)

    @property
    def mode(self) -> str | None:
        return self.heartbeat.mode if self.heartbeat else None

    def age(self, what: str, now: float) -> float | None:
        at = self.received_at.get(what)
        return None if at is None else now - at


_SLOT = {Heartbeat: "heartbeat", Position: "position", Battery: "battery", GpsFix: "gps",
         EkfStatus: "ekf", MissionProgress: "mission", ItemReached: "last_item_reached",
         FenceStatus: "fence", RadioStatus: "radio"}


class StatusTextAssembler:
    """Joins the chunks of a long STATUSTEXT (MAVLink 2 ``id``/``chunk_seq``).

    ArduPilot splits a text longer than the 50-byte field into chunks sharing one
    non-zero ``id``, ``chunk_seq`` counting from 0; a chunk shorter than 50 characters
    (it holds a NUL) is the last one (STATUSTEXT in common.xml). ``id`` 0 is a whole
    text. A text whose last chunk never comes is emitted as far as it got after
    ``timeout_s``; at most ``max_pending`` texts are assembled at once.
    """

    FIELD_LEN = 50

    def __init__(self, timeout_s: float = 2.0, max_pending: int = 8, max_chunks: int = 32) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.max_chunks = max_chunks
        # id -> (severity, first seen, {chunk_seq: text})
        self._pending: dict[int, tuple[int, float, dict[int, str]]] = {}

    def add(self, text_id: int, chunk_seq: int, record: StatusText, now: float) -> list[StatusText]:
        """Feed one chunk; returns the texts now complete (possibly none)."""
        out = self.expire(now)
        if text_id == 0:
            return out + [record]
        severity, since, chunks = self._pending.get(text_id, (record.severity, now, {}))
        if chunk_seq < self.max_chunks:
            chunks.setdefault(chunk_seq, record.text)
        if len(record.text) < self.FIELD_LEN or len(chunks) >= self.max_chunks:
            self._pending.pop(text_id, None)
            return out + [StatusText(severity, "".join(chunks[k] for k in sorted(chunks)))]
        self._pending[text_id] = (severity, since, chunks)
        while len(self._pending) > self.max_pending:
            oldest = min(self._pending, key=lambda k: self._pending[k][1])
            out.append(self._flush(oldest))
        return out

    def expire(self, now: float) -> list[StatusText]:
        late = [k for k, (_, since, _) in self._pending.items() if now - since > self.timeout_s]
        return [self._flush(k) for k in late]

    def _flush(self, text_id: int) -> StatusText:
        severity, _, chunks = self._pending.pop(text_id)
        return StatusText(severity, "".join(chunks[k] for k in sorted(chunks)))


class TelemetryTracker:
    """Latest telemetry of one system id; fed from the link's reader thread.

    ``on_record`` listeners are called (in the reader thread) for every accepted
    record; keep them short. :meth:`snapshot` is safe from any thread.
    """

    MAX_STATUS_TEXTS = 32

    def __init__(self, sysid: int) -> None:
        self.sysid = sysid
        self.decoder = TelemetryDecoder()
        self._lock = threading.Lock()
        self._latest: dict[str, Any] = {}
        self._received_at: dict[str, float] = {}
        self._texts: list[StatusText] = []
        self._assembler = StatusTextAssembler()
        self.reboots = 0  # autopilot restarts seen on this link (see _rebooted)
        self._last_boot_ms: int | None = None  # time_boot_ms of the latest position
        self._left_boot = False  # a HEARTBEAT out of MAV_STATE_BOOT since the last restart
        self._listeners: list[Callable[[TelemetryRecord, float], None]] = []

    def add_listener(self, listener: Callable[[TelemetryRecord, float], None]) -> None:
        self._listeners.append(listener)

    def feed(self, msg: Any, now: float) -> TelemetryRecord | None:
        if msg.get_srcSystem() != self.sysid:
            return None
        if msg.get_type() == "HEARTBEAT" and not is_autopilot_heartbeat(msg):
            return None  # a camera, gimbal, ADS-B receiver or GCS on our system id
        record = self.decoder.decode(msg)
        if record is None:
            return None
        if isinstance(record, StatusText):
            texts = self._assembler.add(int(getattr(msg, "id", 0) or 0),
                                        int(getattr(msg, "chunk_seq", 0) or 0), record, now)
            if not texts:
                return None  # a chunk of a longer text: wait for the rest
            with self._lock:
                self._texts.extend(texts)
                del self._texts[:-self.MAX_STATUS_TEXTS]
                self._received_at["status_text"] = now
            for text in texts:
                for listener in list(self._listeners):
                    listener(text, now)
            return texts[-1]
        with self._lock:
            slot = _SLOT[type(record)]
            if self._rebooted(record):
                self.reboots += 1
            self._latest[slot] = record
            self._received_at[slot] = now
        for listener in list(self._listeners):
            listener(record, now)
        return record

    REBOOT_BACKSTEP_MS = 5000

    def _rebooted(self, record: TelemetryRecord) -> bool:
        """A restart of the autopilot on a link that stayed up (a serial line, or a
        SITL restarted behind a UDP port): its boot clock (time_boot_ms) jumps back by
        more than reordering could explain, or its HEARTBEAT says MAV_STATE_BOOT again
        after having left it. Whatever we verified on it may be gone.

        One restart shows both signs (BOOT heartbeats, and positions from a clock
        started again): whichever comes first counts it, and resets the other's
        baseline so the same restart is not counted twice."""
        if isinstance(record, Position):
            last, self._last_boot_ms = self._last_boot_ms, record.time_boot_ms
            if last is not None and record.time_boot_ms + self.REBOOT_BACKSTEP_MS < last:
                self._left_boot = False  # this restart's BOOT heartbeats are not a second one
                return True
            return False
        if isinstance(record, Heartbeat):
            if record.system_status != mavlink.MAV_STATE_BOOT:
                self._left_boot = True
                return False
            if not self._left_boot:
                return False  # still booting (or the first heartbeat ever)
            self._left_boot = False
            self._last_boot_ms = None  # its positions come from a clock started again
            return True
        return False

    def snapshot(self) -> VehicleState:
        with self._lock:
            return VehicleState(sysid=self.sysid, status_texts=tuple(self._texts),
                                received_at=dict(self._received_at), **self._latest)
