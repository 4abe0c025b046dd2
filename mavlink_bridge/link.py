"""One MAVLink link to one flight controller: a reader thread and a locked send path.

Modelled on Skybrush's ``ext/mavlink/network.py``: the link owns exactly one reader,
routes every message by source system id (so several vehicles, or a SiK radio's own
RADIO_STATUS, never mix), and hides reconnection from its users.

What it guarantees:

* Connection strings are parsed and validated up front (:func:`parse_connection_string`):
  ``tcp:HOST:PORT``, ``udp:HOST:PORT`` (= ``udpin``, listen), ``udpin:HOST:PORT``,
  ``udpout:HOST:PORT``, or a serial device with a baud rate (``/dev/ttyAMA0,921600``,
  ``serial:/dev/ttyUSB0,57600``, ``COM3,115200``).
* MAVLink 2 with the ardupilotmega dialect; we speak as component 191
  (MAV_COMP_ID_ONBOARD_COMPUTER) of a configurable system id and send a 1 Hz
  HEARTBEAT as MAV_TYPE_ONBOARD_CONTROLLER (MAVLink heartbeat protocol).
* Exactly one reader thread per link; it also sends our heartbeat, so a link costs one
  thread. Sends from any thread go through one lock, which also guards the codec
  (sequence numbers and the signing timestamp are shared state).
* Garbage is counted, never fatal: ArduPilot's plain-text boot banner and any noise are
  skipped by pymavlink's robust parser (reported as "Bad prefix" bytes), frames with a
  bad CRC or signature are counted and dropped.
* Optional MAVLink 2 signing. As ArduPilot does (GCS_MAVLINK::accept_unsigned_callback),
  unsigned RADIO_STATUS is let through the signature check; we further keep it only
  when it comes from a SiK radio's system id (51), since only the radio sends it unsigned.
* A link is "silent" when no HEARTBEAT arrives from the target system (or from anyone,
  if no target is set) for ``heartbeat_timeout_s``; a silent link, EOF, or a socket
  error closes the connection and reconnects with exponential backoff. The backoff is
  reset only by a heartbeat, so a peer that accepts and hangs up at once is retried
  ever more slowly instead of in a tight loop; EOF never turns into a busy loop.
"""

from __future__ import annotations

import logging
import math
import os
import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from mavlink_bridge._mav import (
    _is_autopilot, MAV_COMP_ID_ONBOARD_COMPUTER, SIK_RADIO_SYSID,
    is_autopilot_heartbeat, mavlink, mavutil,
)

__all__ = ["ConnectionSpec", "ConnectionStringError", "parse_connection_string", "LinkConfig",
           "LinkStats", "SystemInfo", "MavlinkLink", "STANDARD_BAUDS"]

log = logging.getLogger(__name__)

STANDARD_BAUDS = frozenset({9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000,
                            921600, 1000000, 1500000, 2000000})
DEFAULT_SERIAL_BAUD = 57600  # SiK radio and ArduPilot SERIALn_BAUD default for telemetry


class ConnectionStringError(ValueError):
    """The connection string cannot name a MAVLink endpoint."""


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    kind: Literal["tcp", "udpin", "udpout", "serial"]
    host: str | None = None
    port: int | None = None
    device: str | None = None
    baud: int | None = None

    def mavutil_device(self) -> str:
        if self.kind == "serial":
            assert self.device is not None
            return self.device
        return f"{self.kind}:{self.host}:{self.port}"

    def __str__(self) -> str:
        if self.kind == "serial":
            return f"serial:{self.device},{self.baud}"
        return self.mavutil_device()


_HOSTPORT = re.compile(r"^(?P<host>[A-Za-z0-9._\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")


def _host_port(rest: str, text: str) -> tuple[str, int]:
    m = _HOSTPORT.match(rest)
    if not m:
        raise ConnectionStringError(f"{text!r}: expected HOST:PORT after the scheme")
    port = int(m.group("port"))
    if not 1 <= port <= 65535:
        raise ConnectionStringError(f"{text!r}: port {port} is not in 1..65535")
    return m.group("host"), port


def _baud(value: str | int, text: str) -> int:
    try:
        baud = int(value)
    except (TypeError, ValueError):
        raise ConnectionStringError(f"{text!r}: baud {value!r} is not a number") from None
    if baud not in STANDARD_BAUDS:
        raise ConnectionStringError(
            f"{text!r}: baud {baud} is not a standard rate ({sorted(STANDARD_BAUDS)})")
    return baud


def parse_connection_string(text: str, baud: int | None = None) -> ConnectionSpec:
    """Parse and validate a connection string (see the module docstring for forms).

    ``baud`` applies to serial devices when the string carries none.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConnectionStringError("empty connection string")
    text = text.strip()
    if any(c.isspace() for c in text):
        raise ConnectionStringError(f"{text!r}: whitespace in connection string")
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if sep and scheme in ("tcp", "udp", "udpin", "udpout"):
        host, port = _host_port(rest, text)
        kind = {"tcp": "tcp", "udp": "udpin", "udpin": "udpin", "udpout": "udpout"}[scheme]
        if kind in ("tcp", "udpout") and host in ("0.0.0.0", "[::]"):
            raise ConnectionStringError(f"{text!r}: cannot connect to the wildcard address")
        return ConnectionSpec(kind=kind, host=host, port=port)  # type: ignore[arg-type]
    if sep and scheme == "serial":
        text_dev = rest
    elif text.startswith("/") or re.match(r"^COM\d+", text, re.IGNORECASE):
        text_dev = text
    else:
        raise ConnectionStringError(
            f"{text!r}: unknown connection; use tcp:HOST:PORT, udp:/udpin:/udpout:HOST:PORT, "
            f"or a serial device such as /dev/ttyAMA0,921600")
    device, comma, baud_text = text_dev.partition(",")
    if not device:
        raise ConnectionStringError(f"{text!r}: missing serial device")
    if comma:
        chosen = _baud(baud_text, text)
    elif baud is not None:
        chosen = _baud(baud, text)
    else:
        chosen = DEFAULT_SERIAL_BAUD
    return ConnectionSpec(kind="serial", device=device, baud=chosen)


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """How to reach one flight controller and who we are on the link."""

    connection: str
    baud: int | None = None
    source_system: int = 245
    source_component: int = MAV_COMP_ID_ONBOARD_COMPUTER
    target_system: int | None = None
    heartbeat_timeout_s: float = 5.0
    heartbeat_period_s: float = 1.0
    reconnect_initial_s: float = 0.25
    reconnect_max_s: float = 8.0
    poll_interval_s: float = 0.05
    signing_key: bytes | None = None
    signing_link_id: int = 0
    radio_sysid: int = SIK_RADIO_SYSID
    spec: ConnectionSpec = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", parse_connection_string(self.connection, self.baud))
        for name in ("source_system", "source_component"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 255:
                raise ValueError(f"{name} must be in 1..255, got {value!r}")
        if self.target_system is not None and not 1 <= self.target_system <= 255:
            raise ValueError(f"target_system must be in 1..255, got {self.target_system!r}")
        for name in ("heartbeat_timeout_s", "reconnect_initial_s", "reconnect_max_s",
                     "poll_interval_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
        if not (math.isfinite(self.heartbeat_period_s) and self.heartbeat_period_s >= 0):
            raise ValueError("heartbeat_period_s must be >= 0 (0 disables our heartbeat)")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        if self.signing_key is not None and (not isinstance(self.signing_key, bytes)
                                             or len(self.signing_key) != 32):
            raise ValueError("signing_key must be 32 bytes (the MAVLink 2 secret key)")
        if not 0 <= self.signing_link_id <= 255:
            raise ValueError("signing_link_id must be in 0..255")


@dataclass(frozen=True, slots=True)
class LinkStats:
    bytes_received: int = 0
    messages: int = 0
    garbage_bytes: int = 0
    bad_crc: int = 0
    bad_signature: int = 0
    other_errors: int = 0
    unsigned_rejected: int = 0
    sent: int = 0
    send_failures: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    eofs: int = 0
    silent_timeouts: int = 0


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """What we know of one system id on the link (from its HEARTBEATs)."""

    sysid: int
    compid: int
    vehicle_type: int
    autopilot: int
    last_heartbeat: float
    messages: int


Listener = Callable[[Any, float], None]


class _Broken(Exception):
    pass


class MavlinkLink:
    """A link to one flight controller. ``start()`` it, ``close()`` it (or use ``with``).

    Listeners registered with :meth:`subscribe` run in the reader thread: keep them
    short (push to a queue or update a locked snapshot).
    """

    def __init__(self, config: LinkConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._conn: Any = None
        self._lock = threading.Lock()  # the codec and the send path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[tuple[int | None, Listener]] = []
        self._listeners_lock = threading.Lock()
        self._stats: dict[str, int] = {k: 0 for k in LinkStats.__dataclass_fields__}
        self._systems: dict[int, SystemInfo] = {}
        self._msg_counts: dict[int, int] = {}
        self._target_seen = threading.Event()
        self._connected_at = 0.0
        self._last_target_hb: float | None = None
        self._next_heartbeat = 0.0
        self.last_error: str | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> "MavlinkLink":
        if self._thread is not None:
            raise RuntimeError("link already started")
        self._thread = threading.Thread(target=self._run, name=f"mavlink-reader {self.config.spec}",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("MAVLink reader thread did not stop")
        self._close_conn()

    def __enter__(self) -> "MavlinkLink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def wait_for_heartbeat(self, timeout: float) -> bool:
        """Block until a HEARTBEAT from the target (or anyone) arrives on this connection."""
        return self._target_seen.wait(timeout)

    # -- observing ------------------------------------------------------------------

    def subscribe(self, listener: Listener, sysid: int | None = None) -> Callable[[], None]:
        """Call ``listener(msg, now)`` for each message (from ``sysid`` only, if given)."""
        entry = (sysid, listener)
        with self._listeners_lock:
            self._listeners.append(entry)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if entry in self._listeners:
                    self._listeners.remove(entry)
        return unsubscribe

    @property
    def stats(self) -> LinkStats:
        return LinkStats(**self._stats)

    def systems(self) -> dict[int, SystemInfo]:
        return dict(self._systems)

    # -- sending --------------------------------------------------------------------

    def send(self, msg: Any) -> bool:
        """Send one message; False (and counted) when there is no connection right now."""
        with self._lock:
            conn = self._conn
            if conn is None:
                self._stats["send_failures"] += 1
                return False
            try:
                conn.mav.send(msg)
            except (OSError, ValueError) as exc:
                self._stats["send_failures"] += 1
                self.last_error = f"send failed: {exc}"
                return False
            self._stats["sent"] += 1
            return True

    # -- the reader thread ----------------------------------------------------------

    def _run(self) -> None:
        delay = self.config.reconnect_initial_s
        while not self._stop.is_set():
            if self._conn is None:
                try:
                    self._open()
                except Exception as exc:  # noqa: BLE001 - any failure to open is retried
                    self._stats["connect_failures"] += 1
                    error = f"connect to {self.config.spec} failed: {exc}"
                    # Visible once per distinct problem (a missing serial device or
                    # pyserial must not hide at DEBUG while the link retries forever);
                    # the same failure again is only DEBUG.
                    level = logging.DEBUG if error == self.last_error else logging.WARNING
                    self.last_error = error
                    log.log(level, "%s; retrying", error)
                    delay = self._back_off(delay)
                    continue
            try:
                if self._pump():
                    delay = self.config.reconnect_initial_s  # a heartbeat: the link is good
            except _Broken as exc:
                self.last_error = str(exc)
                log.info("MAVLink link %s: %s; reconnecting in %.2fs", self.config.spec, exc, delay)
                self._close_conn()
                self._stats["disconnects"] += 1
                delay = self._back_off(delay)

    def _back_off(self, delay: float) -> float:
        """Wait ``delay`` (or until closed); the next delay, doubled up to the maximum."""
        self._stop.wait(delay)
        return min(delay * 2, self.config.reconnect_max_s)

    def _open(self) -> None:
        spec, cfg = self.config.spec, self.config
        kwargs: dict[str, Any] = dict(source_system=cfg.source_system,
                                      source_component=cfg.source_component,
                                      autoreconnect=False, retries=0)
        if spec.kind == "serial":
            assert spec.device is not None  # parse_connection_string sets it for serial
            _check_serial_device(spec.device)
            kwargs["baud"] = spec.baud
        if spec.kind == "tcp":
            # mavtcp's own connect() has no timeout: an unreachable host would block the
            # reader (and close()) for minutes. Same class, bounded connect.
            conn = _BoundedTcp(f"{spec.host}:{spec.port}", source_system=cfg.source_system,
                               source_component=cfg.source_component, autoreconnect=False,
                               retries=0)
        else:
            conn = mavutil.mavlink_connection(spec.mavutil_device(), **kwargs)
        # Our own MAVLink 2 codec, whatever mode mavutil was imported in (see _mav.py).
        conn.mav = mavlink.MAVLink(conn, srcSystem=cfg.source_system,
                                   srcComponent=cfg.source_component)
        conn.mav.robust_parsing = True
        if cfg.signing_key is not None:
            conn.setup_signing(cfg.signing_key, sign_outgoing=True,
                               allow_unsigned_callback=_accept_unsigned,
                               link_id=cfg.signing_link_id)
        with self._lock:
            self._conn = conn
        now = self._clock()
        self._connected_at = now
        self._last_target_hb = None
        self._target_seen.clear()
        self._next_heartbeat = now
        self._stats["connects"] += 1

    def _close_conn(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        self._target_seen.clear()
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken socket may fail; it is gone anyway
                pass

    def _fileno(self) -> int:
        conn = self._conn
        port = getattr(conn, "port", None)
        if port is not None and hasattr(port, "fileno"):
            return port.fileno()
        return conn.fd

    def _read_chunk(self) -> bytes | None:
        """Bytes read, or None when nothing was available after all."""
        conn = self._conn
        try:
            if self.config.spec.kind == "tcp":
                data = conn.port.recv(4096)  # direct: mavtcp.recv prints and hides EOF
            else:
                data = conn.recv(4096)
        except BlockingIOError:
            return None
        except Exception as exc:  # noqa: BLE001 - OSError, SerialException: the link broke
            raise _Broken(f"read failed: {exc}") from exc
        if isinstance(data, str):
            data = data.encode("latin-1")
        if not data:
            if self.config.spec.kind in ("tcp", "serial"):
                # select() said readable and there is nothing: the stream ended. Treat it
                # as a disconnect (and back off) rather than reading it again and again.
                self._stats["eofs"] += 1
                raise _Broken("end of stream (peer closed the connection)")
            return None  # UDP: an empty datagram or a refused send; nothing to parse
        return data

    def _pump(self) -> bool:
        """One poll cycle; True when a heartbeat from the target arrived."""
        now = self._clock()
        got_heartbeat = False
        try:
            readable, _, _ = select.select([self._fileno()], [], [], self.config.poll_interval_s)
        except (OSError, ValueError) as exc:
            raise _Broken(f"select failed: {exc}") from exc
        if readable:
            data = self._read_chunk()
            if data:
                now = self._clock()
                self._stats["bytes_received"] += len(data)
                with self._lock:
                    msgs = self._conn.mav.parse_buffer(data) if self._conn is not None else None
                for msg in msgs or ():
                    got_heartbeat |= self._dispatch(msg, now)
        now = self._clock()
        self._maybe_send_heartbeat(now)
        since = self._last_target_hb if self._last_target_hb is not None else self._connected_at
        if now - since > self.config.heartbeat_timeout_s:
            self._stats["silent_timeouts"] += 1
            raise _Broken(f"no HEARTBEAT for {now - since:.1f}s")
        return got_heartbeat

    def _dispatch(self, msg: Any, now: float) -> bool:
        mtype = msg.get_type()
        if mtype == "BAD_DATA":
            reason = str(getattr(msg, "reason", ""))
            if reason == "Bad prefix":
                self._stats["garbage_bytes"] += len(msg.data)
            elif "CRC" in reason:
                self._stats["bad_crc"] += 1
            elif "signature" in reason.lower():
                self._stats["bad_signature"] += 1
            else:
                self._stats["other_errors"] += 1
            return False
        sysid = msg.get_srcSystem()
        if (self.config.signing_key is not None and mtype == "RADIO_STATUS"
                and not msg.get_signed() and sysid != self.config.radio_sysid):
            self._stats["unsigned_rejected"] += 1
            return False
        self._stats["messages"] += 1
        self._msg_counts[sysid] = self._msg_counts.get(sysid, 0) + 1
        is_target_hb = False
        if mtype == "HEARTBEAT":
            autopilot = is_autopilot_heartbeat(msg)
            known = self._systems.get(sysid)
            # The entry describes the system's autopilot (its compid is where commands
            # go); another component's HEARTBEAT only fills in a system with none yet.
            if autopilot or known is None or not _is_autopilot_info(known):
                self._systems[sysid] = SystemInfo(sysid=sysid, compid=msg.get_srcComponent(),
                                                  vehicle_type=msg.type, autopilot=msg.autopilot,
                                                  last_heartbeat=now,
                                                  messages=self._msg_counts[sysid])
            target = self.config.target_system
            if (target is None or sysid == target) and autopilot:
                self._last_target_hb = now
                self._target_seen.set()
                is_target_hb = True
        with self._listeners_lock:
            listeners = list(self._listeners)
        for want, listener in listeners:
            if want is None or want == sysid:
                try:
                    listener(msg, now)
                except Exception:  # noqa: BLE001 - one bad listener must not kill the link
                    log.exception("MAVLink listener failed on %s", mtype)
        return is_target_hb

    def _maybe_send_heartbeat(self, now: float) -> None:
        period = self.config.heartbeat_period_s
        if period <= 0 or now < self._next_heartbeat:
            return
        self._next_heartbeat = now + period
        self.send(mavlink.MAVLink_heartbeat_message(
            type=mavlink.MAV_TYPE_ONBOARD_CONTROLLER, autopilot=mavlink.MAV_AUTOPILOT_INVALID,
            base_mode=0, custom_mode=0, system_status=mavlink.MAV_STATE_ACTIVE, mavlink_version=3))


class _BoundedTcp(mavutil.mavtcp):  # type: ignore[misc]
    """pymavlink's TCP connection with a bounded, single connect attempt."""

    CONNECT_TIMEOUT_S = 3.0

    def do_connect(self) -> None:
        self.port = socket.create_connection(self.destination_addr, timeout=self.CONNECT_TIMEOUT_S)
        self.port.setblocking(False)
        mavutil.set_close_on_exec(self.port.fileno())
        self.port.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class SerialDeviceError(OSError):
    """A serial link that cannot work as configured: pyserial missing, or the device
    absent or not accessible. The message says what to do."""


def _check_serial_device(device: str) -> None:
    """Name the problem before pymavlink does (it reports a missing pyserial as a bare
    ImportError and a missing device as a SerialException buried in a retry loop)."""
    try:
        import serial  # noqa: F401 - pymavlink's serial links need pyserial
    except ImportError:
        raise SerialDeviceError(f"serial link {device} needs pyserial, which is not "
                                "installed (pip install pyserial)") from None
    if device.startswith("/dev/"):
        if not os.path.exists(device):
            raise SerialDeviceError(
                f"serial device {device} does not exist (is the flight controller wired and "
                "powered? on a Raspberry Pi: enable_uart=1 and the serial console off, "
                "docs/deploy-pi.md)")
        if not os.access(device, os.R_OK | os.W_OK):
            raise SerialDeviceError(
                f"no permission to open serial device {device} (add this user to the "
                "group that owns it, usually dialout)")


def _is_autopilot_info(info: SystemInfo) -> bool:
    return _is_autopilot(info.autopilot, info.vehicle_type, info.compid)


def _accept_unsigned(mav: Any, msg_id: int) -> bool:
    # ArduPilot GCS_Signing.cpp accept_unsigned_callback: RADIO_STATUS may come unsigned
    # because SiK radios inject it and cannot sign.
    return msg_id == mavlink.MAVLINK_MSG_ID_RADIO_STATUS
