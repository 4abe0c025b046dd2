"""A paho-mqtt 2.x client with what the swarm needs around it: MQTT 5 (3.1.1 accepted),
TLS, username/password, a Last Will, reconnect with exponential backoff and jitter over an
ordered list of brokers (failing over down the list, and back to a preferred broker once
it answers again), per-filter handlers, and counters.

Threads. paho's network thread (``loop_start``) reads and writes the socket, reconnects,
and runs every handler given to :meth:`Bus.subscribe` and every state callback. A
handler must only hand the bytes over (put them on a queue the owning thread drains) and
return: anything slow or blocking there stalls every subscription, keepalives included,
and the broker disconnects a client that stops reading. Handler exceptions are caught,
logged and counted (``handler_errors``), never allowed to kill the network thread.
:meth:`Bus.publish` may be called from any thread. A small supervisor thread probes
preferred brokers while the bus sits on a fallback one.

Sessions start clean on every connection (clean start / clean session): after a
reconnect or failover the bus re-subscribes everything itself, and a broker keeps no
queue for an absent agent (Raft retransmits by itself; clients retry their requests,
docs/protocol.md).
"""

from __future__ import annotations

import enum
import logging
import random
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .envelope import DEFAULT_MAX_ENVELOPE_BYTES

__all__ = [
    "BrokerAddress",
    "Bus",
    "BusConfig",
    "BusConfigError",
    "BusStats",
    "ConnectionEvent",
    "DropReason",
    "MqttVersion",
    "Received",
    "TlsConfig",
    "Will",
]

log = logging.getLogger("swarm.bus")

#: Room for the MQTT fixed header, topic and properties around the largest payload.
_PACKET_SLACK = 64 * 1024
#: Topics whose matching handlers Bus remembers (a subscriber to wildcards may see many).
_MATCH_CACHE = 256
_CLIENT_ID = re.compile(r"[0-9A-Za-z._:-]{1,128}")


class BusConfigError(ValueError):
    """An invalid bus setting; the message names the field."""


class MqttVersion(enum.Enum):
    V5 = "5"
    V311 = "3.1.1"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host or any(c in self.host for c in " /"):
            raise BusConfigError(f"broker host {self.host!r} is not a host name or address")
        if type(self.port) is not int or not 1 <= self.port <= 65535:
            raise BusConfigError(f"broker port {self.port!r} is not in [1, 65535]")

    @classmethod
    def parse(cls, text: str, default_port: int = 1883) -> "BrokerAddress":
        """``host``, ``host:port`` or ``[v6addr]:port``."""
        if not isinstance(text, str):
            raise BusConfigError(f"broker {text!r} is not a string")
        m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", text.strip())
        if not m:
            raise BusConfigError(f"broker {text!r} is not host[:port]")
        host = m.group(1) or m.group(3)
        port = m.group(2) or m.group(4)
        return cls(host, int(port) if port else default_port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS to the broker: ``ca_file`` verifies the broker (with its host name); a client
    certificate (``cert_file`` + ``key_file``) is sent when the broker asks for one."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise BusConfigError("tls: cert_file and key_file go together")
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise BusConfigError(f"tls.{name}: {value} is not a file")


@dataclass(frozen=True, slots=True)
class Will:
    """The Last Will the broker publishes if this client vanishes without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True

    def __post_init__(self) -> None:
        _check_topic(self.topic, "will.topic")
        if type(self.payload) is not bytes:
            raise BusConfigError("will.payload must be bytes")
        _check_qos(self.qos, "will.qos")


def _check_topic(topic: object, name: str) -> None:
    if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic \
            or "\x00" in topic or len(topic.encode()) > 65535:
        raise BusConfigError(f"{name}: {topic!r} is not a topic name")


def _check_qos(qos: object, name: str) -> None:
    if qos not in (0, 1, 2) or type(qos) is not int:
        raise BusConfigError(f"{name}: QoS {qos!r} is not 0, 1 or 2")


@dataclass(frozen=True, slots=True)
class BusConfig:
    """Everything the bus needs to reach a broker. Validated on construction."""

    brokers: tuple[BrokerAddress, ...]
    client_id: str
    protocol: MqttVersion = MqttVersion.V5
    keepalive_s: int = 10
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsConfig | None = None
    will: Will | None = None
    #: Reconnect backoff: the n-th consecutive failure waits about
    #: min(reconnect_max_s, reconnect_min_s * 2**n), less up to ``jitter`` of it (so a
    #: swarm that lost its broker does not reconnect in lockstep).
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    jitter: float = 0.5
    #: While on a fallback broker, how often to probe the preferred ones (TCP connect).
    failback_check_s: float = 10.0
    #: Bounds inside paho: QoS 1/2 messages in flight, and queued while disconnected.
    max_inflight: int = 100
    max_queued: int = 1000
    #: Largest payload published or accepted; MQTT 5 tells the broker (Maximum Packet
    #: Size) so it never sends us more.
    max_payload_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES

    def __post_init__(self) -> None:
        if type(self.brokers) is not tuple or not self.brokers \
                or not all(isinstance(b, BrokerAddress) for b in self.brokers):
            raise BusConfigError("brokers: a non-empty tuple of BrokerAddress")
        if len(set(self.brokers)) != len(self.brokers):
            raise BusConfigError("brokers: listed twice")
        if not isinstance(self.client_id, str) or not _CLIENT_ID.fullmatch(self.client_id):
            raise BusConfigError(
                f"client_id {self.client_id!r}: 1 to 128 of A-Z a-z 0-9 . _ : -")
        if not isinstance(self.protocol, MqttVersion):
            raise BusConfigError(f"protocol {self.protocol!r}: an MqttVersion")
        if type(self.keepalive_s) is not int or not 1 <= self.keepalive_s <= 65535:
            raise BusConfigError(f"keepalive_s {self.keepalive_s!r}: an integer in [1, 65535]")
        if self.password is not None and self.username is None:
            raise BusConfigError("password without username")
        for name in ("username", "password"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or len(v.encode()) > 65535):
                raise BusConfigError(f"{name}: a string of at most 65535 bytes")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s <= 3600:
            raise BusConfigError("reconnect: 0 < reconnect_min_s <= reconnect_max_s <= 3600")
        if not 0 <= self.jitter < 1:
            raise BusConfigError("jitter: in [0, 1)")
        if not 0.1 <= self.failback_check_s <= 3600:
            raise BusConfigError("failback_check_s: in [0.1, 3600]")
        if not 1 <= self.max_inflight <= 65535 or not 1 <= self.max_queued <= 10**6:
            raise BusConfigError("max_inflight in [1, 65535], max_queued in [1, 10**6]")
        if not 1024 <= self.max_payload_bytes <= 256 * 1024 * 1024:
            raise BusConfigError("max_payload_bytes: in [1 KiB, 256 MiB]")


@dataclass(frozen=True, slots=True)
class Received:
    """One message as a handler sees it. ``response_topic``/``correlation_data`` are
    the MQTT 5 request/response properties (None on 3.1.1 or when absent)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """Given to state callbacks: ``connected`` to ``broker``, or not (``reason``)."""

    connected: bool
    broker: BrokerAddress
    reason: str


class DropReason(enum.Enum):
    """Why a publish did not leave. Values are metric label values."""

    DISCONNECTED = "disconnected"   # QoS 0 while no broker is connected
    QUEUE_FULL = "queue_full"       # QoS 1/2 with max_queued already waiting
    OVERSIZED = "oversized"         # payload above max_payload_bytes
    ERROR = "error"                 # any other paho refusal


@dataclass(frozen=True, slots=True)
class BusStats:
    connects: int          # successful CONNACKs
    reconnects: int        # of those, all after the first
    failovers: int         # connections to a different broker than the previous one
    failbacks: int         # deliberate moves back to a preferred broker
    publishes: int         # publishes handed to paho
    drops: dict[DropReason, int]
    received: int
    oversized_received: int
    handler_errors: int
    broker: BrokerAddress | None   # connected to, or None


Handler = Callable[[Received], None]
StateCallback = Callable[[ConnectionEvent], None]


def _no_delay(client: paho.Client, userdata: Any, sock: Any) -> None:
    # Raft messages and replies are small writes from another thread than the one that
    # reads: with Nagle's algorithm each one waits for the ACK of the previous (up to
    # the peer's 40 ms delayed ACK), which dominated commit latency.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass  # not a TCP socket (a unix socket or a websocket wrapper)


class _PlainInfo(paho.MQTTMessageInfo):
    """The shared info of publish_plain_qos0 packets: being written changes nothing."""

    def _set_as_published(self) -> None:
        pass


class _DirectWriteClient(paho.Client):
    """paho's client, writing a PUBLISH on the thread that publishes it.

    In threaded mode (``loop_start``) paho only queues a packet and wakes its network
    thread through a socket pair to write it, so every message the node thread sends
    (an AppendEntries, an acknowledgement, a reply) waits for one more thread to be
    scheduled and to take the GIL: measured as a few tenths of a millisecond per hop on
    a loaded 2-core machine, four times on a commit's path (docs/benchmarks.md, "Commit
    path"; docs/agent.md, "Sends are written by the thread that sends"). Here the
    publishing thread writes the queue itself, under a lock that paho's own writes take
    too (one writer at a time: a packet is never interleaved with another, and paho's
    queue order is the wire order), as does ``reconnect`` (nothing is written to a new
    socket before its CONNECT). Whatever the non-blocking socket does not take, and any
    packet while not connected, is left to the network thread as before, which the
    socket pair then wakes. Not under TLS: an SSL socket must not be read and written
    by two threads at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_lock = threading.Lock()
        self.direct_writes = True
        #: Where QoS 0 PUBLISH packets without properties are delivered, as (topic,
        #: payload, retain), instead of paho's on_message (see _handle_publish).
        self.plain_qos0: Callable[[str, bytes, bool], None] | None = None
        #: The one MQTTMessageInfo every publish_plain_qos0 packet carries (paho's
        #: writer marks a QoS 0 packet's info published; nobody waits on this one).
        self._plain_info = _PlainInfo(0)

    def publish_plain_qos0(self, topic: str, payload: bytes, retain: bool) -> MQTTErrorCode:
        """A QoS 0 PUBLISH without properties, queued (and written: _packet_queue) as
        paho's publish would, without what paho's publish builds per message for a
        caller that may wait on it (an MQTTMessageInfo and its Condition, a message id)
        and that nothing here waits on: ~1/6 of an idle leader's time went to paho's
        publish path (docs/benchmarks.md, "Idle CPU"). The caller checked the topic."""
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        name = topic.encode("utf-8")
        size = 2 + len(name) + len(payload) + (self._protocol == paho.MQTTv5)
        if size > 268_435_455:
            raise ValueError("Payload too large.")
        head = bytearray((paho.PUBLISH | retain,))
        while size > 0x7F:
            head.append(size & 0x7F | 0x80)
            size >>= 7
        head.append(size)
        head += len(name).to_bytes(2, "big")
        head += name
        if self._protocol == paho.MQTTv5:
            head.append(0)   # no properties
        head += payload
        return self._packet_queue(paho.PUBLISH, head, 0, 0, self._plain_info)  # type: ignore[no-any-return]

    def _handle_publish(self) -> MQTTErrorCode:
        """QoS 0 PUBLISH packets without MQTT 5 properties (Raft envelopes, heartbeats,
        probes) are parsed here and handed to ``plain_qos0``: paho's own path builds an
        MQTTMessage, a Properties object and a debug line, and walks its topic matcher,
        per message (~1/6 of an idle leader's time, docs/benchmarks.md, "Idle CPU").
        Anything else (QoS 1 and 2, properties such as a topic alias, a topic that is
        not UTF-8, a malformed packet) goes through paho as before."""
        deliver = self.plain_qos0
        command = self._in_packet["command"]
        if deliver is not None and not command & 0x06:
            packet = self._in_packet["packet"]
            if len(packet) > 2:
                end = 2 + (packet[0] << 8 | packet[1])
                v5 = self._protocol == paho.MQTTv5
                start = end + 1 if v5 else end
                if 2 < end and start <= len(packet) and not (v5 and packet[end]):
                    try:
                        topic = bytes(packet[2:end]).decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                    else:
                        # One copy of the payload, not two (a slice of the bytearray
                        # is one already): a flood of 2 MiB payloads holds 2 MiB less
                        # per payload in flight on this thread.
                        with memoryview(packet) as view:
                            payload = bytes(view[start:])
                        deliver(topic, payload, bool(command & 0x01))
                        return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._handle_publish()  # type: ignore[no-any-return]

    def _packet_write(self) -> MQTTErrorCode:
        with self._write_lock:
            return super()._packet_write()  # type: ignore[no-any-return]

    def reconnect(self) -> MQTTErrorCode:
        # Under the lock: a publisher that saw the old connection up must not write to
        # the new socket before its CONNECT (the state is CONNECTED again only once the
        # broker's CONNACK arrived).
        with self._write_lock:
            return super().reconnect()

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: paho.MQTTMessageInfo | None = None) -> MQTTErrorCode:
        thread = self._thread
        if not (self.direct_writes and command & 0xF0 == paho.PUBLISH and thread is not None
                and threading.current_thread() is not thread):
            return super()._packet_queue(command, packet, mid, qos, info)  # type: ignore[no-any-return]
        with self._write_lock:
            if not self.is_connected():
                # Queued for the network thread (threaded mode: paho only appends it
                # and wakes that thread, it never writes here).
                return super()._packet_queue(command, packet, mid, qos, info)  # type: ignore[no-any-return]
            self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                     "to_process": len(packet), "packet": packet, "info": info})
            super()._packet_write()
        if self._out_packet and self._sockpairW is not None:
            try:  # the rest is the network thread's (it selects for writing)
                self._sockpairW.send(b"0")
            except BlockingIOError:
                pass
        return MQTTErrorCode.MQTT_ERR_SUCCESS


class Bus:
    """One MQTT connection (to the first broker of the list that answers).

    ``start()`` returns at once; the connection comes up in the background (see
    :meth:`wait_connected`). ``rng`` seeds the backoff jitter (tests)."""

    def __init__(self, config: BusConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._subs: dict[str, tuple[int, Handler]] = {}
        #: Filters subscribed with no_local (MQTT 5's No Local option).
        self._no_local: set[str] = set()
        #: The handlers matching each topic received so far (paho's topic_matches_sub
        #: builds a matcher per call, per filter, per message); cleared when _subs
        #: changes. At most _MATCH_CACHE topics (the agent receives on a handful).
        self._matches: dict[str, list[Handler]] = {}
        self._state_callbacks: list[StateCallback] = []
        self._index = 0                      # broker being tried / connected to
        self._last_connected: int | None = None
        self._failures = 0
        self._connected = threading.Event()
        self._stopping = threading.Event()   # close() was called
        self._switching = False              # a failback is replacing the connection
        self._counts: Counter[str] = Counter()
        self._last_sent: paho.MQTTMessageInfo | None = None  # see flush()
        self._drops: Counter[DropReason] = Counter()
        self._started = False
        self._client = self._make_client()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name=f"bus-supervisor-{config.client_id}")

    # -- set-up -------------------------------------------------------------------------

    def _make_client(self) -> _DirectWriteClient:
        cfg = self.config
        v5 = cfg.protocol is MqttVersion.V5
        client = _DirectWriteClient(
            CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.enable_logger(logging.getLogger("swarm.bus.paho"))
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        client.direct_writes = cfg.tls is None
        if cfg.tls is not None:
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file),
                certfile=None if cfg.tls.cert_file is None else str(cfg.tls.cert_file),
                keyfile=None if cfg.tls.key_file is None else str(cfg.tls.key_file),
                cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if cfg.will is not None:
            client.will_set(cfg.will.topic, cfg.will.payload, cfg.will.qos, cfg.will.retain)
        client.max_inflight_messages_set(cfg.max_inflight)
        client.max_queued_messages_set(cfg.max_queued)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.plain_qos0 = self._on_plain_qos0
        client.on_socket_open = _no_delay
        return client

    def _connect_properties(self) -> Properties | None:
        if self.config.protocol is not MqttVersion.V5:
            return None
        props = Properties(PacketTypes.CONNECT)
        props.MaximumPacketSize = self.config.max_payload_bytes + _PACKET_SLACK
        props.SessionExpiryInterval = 0
        return props

    def _set_reconnect_delay(self, delay: float) -> None:
        # paho's own backoff has no jitter; we hand it the delay we computed. paho types
        # the arguments as int but uses them as seconds in float arithmetic.
        d = cast(int, delay)
        self._client.reconnect_delay_set(d, d)

    def _next_delay(self) -> float:
        cfg = self.config
        base = min(cfg.reconnect_max_s, cfg.reconnect_min_s * (2 ** min(self._failures, 30)))
        return base * (1 - cfg.jitter * self._rng.random())

    def start(self) -> None:
        """Start connecting (to the first broker). Call once."""
        if self._started:
            raise RuntimeError("Bus.start() called twice")
        self._started = True
        self._begin(0)
        self._supervisor.start()

    def _begin(self, index: int) -> None:
        broker = self.config.brokers[index]
        with self._lock:
            self._index = index
        self._set_reconnect_delay(self._next_delay())
        self._client.connect_async(
            broker.host, broker.port, keepalive=self.config.keepalive_s,
            clean_start=True if self.config.protocol is MqttVersion.V5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=self._connect_properties())
        self._client.loop_start()

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly (the broker then discards the Last Will) and stop the
        threads. Safe to call twice."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if not self._started:
            return
        self._supervisor.join(timeout)      # wakes at once: it waits on _stopping
        # paho logs the end of every connection at ERROR; a deliberate close is not one.
        self._client.disable_logger()
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def __enter__(self) -> "Bus":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- API ----------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 0, *,
                  no_local: bool = False) -> None:
        """Deliver messages matching ``topic_filter`` to ``handler`` (on paho's network
        thread: hand the bytes over and return). Kept across reconnects and failovers.
        ``no_local``: over MQTT 5 the broker does not send back this connection's own
        publishes to the filter (3.1.1 has no such option: the handler sees them)."""
        if not isinstance(topic_filter, str) or not topic_filter:
            raise BusConfigError(f"topic filter {topic_filter!r}")
        _check_qos(qos, "subscribe qos")
        with self._lock:
            self._subs[topic_filter] = (qos, handler)
            if no_local:
                self._no_local.add(topic_filter)
            else:
                self._no_local.discard(topic_filter)
            self._matches.clear()
        if self._connected.is_set():
            self._client.subscribe([self._subscription(topic_filter, qos)])

    def _subscription(self, topic_filter: str, qos: int) -> tuple[str, Any]:
        if self.config.protocol is MqttVersion.V5:
            return topic_filter, SubscribeOptions(qos=qos,
                                                  noLocal=topic_filter in self._no_local)
        return topic_filter, qos

    def unsubscribe(self, topic_filter: str) -> None:
        with self._lock:
            self._subs.pop(topic_filter, None)
            self._no_local.discard(topic_filter)
            self._matches.clear()
        if self._connected.is_set():
            self._client.unsubscribe(topic_filter)

    def add_state_callback(self, callback: StateCallback) -> None:
        """``callback(ConnectionEvent)`` on each connect and disconnect (network thread)."""
        with self._lock:
            self._state_callbacks.append(callback)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, *,
                response_topic: str | None = None,
                correlation_data: bytes | None = None) -> bool:
        """Hand one message to paho; True if it was sent or queued, False if dropped
        (counted by :class:`DropReason`). Any thread. Response Topic and Correlation
        Data are MQTT 5 only (on 3.1.1 put the reply topic in the payload)."""
        _check_topic(topic, "publish topic")
        _check_qos(qos, "publish qos")
        if type(payload) is not bytes:
            raise BusConfigError("publish payload must be bytes")
        props: Properties | None = None
        if response_topic is not None or correlation_data is not None:
            if self.config.protocol is not MqttVersion.V5:
                raise BusConfigError("Response Topic / Correlation Data need MQTT 5; on 3.1.1 "
                                     "carry the reply topic in the payload")
            props = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                _check_topic(response_topic, "response_topic")
                props.ResponseTopic = response_topic
            if correlation_data is not None:
                props.CorrelationData = bytes(correlation_data)
        if len(payload) > self.config.max_payload_bytes:
            return self._drop(DropReason.OVERSIZED)
        if qos == 0 and not self._connected.is_set():
            return self._drop(DropReason.DISCONNECTED)
        if qos == 0 and props is None:
            # Raft envelopes, probes, telemetry: nothing waits for them to be written
            # (flush() covers QoS 1, what must reach the broker before a DISCONNECT).
            rc = self._client.publish_plain_qos0(topic, payload, retain)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                with self._lock:
                    self._counts["publishes"] += 1
                return True
            if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                return self._drop(DropReason.DISCONNECTED)
            return self._drop(DropReason.ERROR)
        info = self._client.publish(topic, payload, qos, retain, props)
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            with self._lock:
                self._counts["publishes"] += 1
                self._last_sent = info
            return True
        if rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0:
            return self._drop(DropReason.DISCONNECTED)
        if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            return self._drop(DropReason.QUEUE_FULL)
        if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            # QoS >= 1 while disconnected: paho keeps it and sends it on reconnect.
            with self._lock:
                self._counts["publishes"] += 1
            return True
        return self._drop(DropReason.ERROR)

    def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until the broker has what was published so far:
        the last message handed to paho is written (QoS 0) or acknowledged (QoS >= 1).
        paho writes one connection's packets in order and the broker handles them in
        order, so the last one stands for all. True when flushed (or nothing was
        sent); False on timeout or with no connection. Before a clean disconnect: the
        DISCONNECT makes the broker discard the Last Will, so what replaces it (an
        offline status) must be there first."""
        with self._lock:
            info = self._last_sent
        if info is None or info.is_published():
            return True
        if not self._connected.is_set():
            return False
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False   # the connection went away meanwhile
        return info.is_published()

    def unacknowledged(self) -> int:
        """QoS 1/2 messages paho holds until the broker acknowledges them: the queue
        ``max_queued`` bounds, beyond which :meth:`publish` drops (``queue_full``). A
        publisher that must not lose messages (the agent's replies) stops producing
        while this is near ``max_queued``. Any thread; paho's own count (the same
        private structure its ``max_queued_messages`` check reads)."""
        return len(self._client._out_messages)

    def _drop(self, reason: DropReason) -> bool:
        with self._lock:
            self._drops[reason] += 1
        return False

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def broker(self) -> BrokerAddress | None:
        """The broker connected to, or None."""
        with self._lock:
            return self.config.brokers[self._index] if self._connected.is_set() else None

    def stats(self) -> BusStats:
        with self._lock:
            c = self._counts
            return BusStats(
                connects=c["connects"], reconnects=max(0, c["connects"] - 1),
                failovers=c["failovers"], failbacks=c["failbacks"], publishes=c["publishes"],
                drops=dict(self._drops), received=c["received"],
                oversized_received=c["oversized_received"], handler_errors=c["handler_errors"],
                broker=self.config.brokers[self._index] if self._connected.is_set() else None)

    # -- paho callbacks (network thread) ------------------------------------------------

    def _notify(self, event: ConnectionEvent) -> None:
        with self._lock:
            callbacks = list(self._state_callbacks)
        for cb in callbacks:
            try:
                cb(event)
            except Exception:
                log.exception("bus state callback failed")
                with self._lock:
                    self._counts["handler_errors"] += 1

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Properties | None) -> None:
        broker = self.config.brokers[self._index]
        if reason.is_failure:
            log.warning("broker %s refused the connection: %s", broker, reason)
            return   # paho closes the socket; _on_disconnect moves on
        with self._lock:
            self._failures = 0
            self._counts["connects"] += 1
            if self._last_connected is not None and self._last_connected != self._index:
                self._counts["failovers"] += 1
            self._last_connected = self._index
            subs = [self._subscription(f, qos) for f, (qos, _) in self._subs.items()]
        self._set_reconnect_delay(self._next_delay())
        if subs:
            client.subscribe(subs)
        self._connected.set()
        # An agent holds two connections (Raft and clients): say which this is.
        log.info("%s: connected to broker %s", self.config.client_id, broker)
        self._notify(ConnectionEvent(True, broker, "connected"))

    def _advance(self, reason: str) -> None:
        """A connection attempt failed or a connection was lost: choose the broker and
        the delay of the next attempt (paho makes it)."""
        if self._stopping.is_set() or self._switching:
            return
        with self._lock:
            was = self._index
            lost_established = self._connected.is_set()
            self._connected.clear()
            # An established connection that drops is retried once on the same broker
            # (a broker restart, a blip); a failed attempt moves down the list.
            if not lost_established:
                self._index = (self._index + 1) % len(self.config.brokers)
                self._failures += 1
            nxt = self.config.brokers[self._index]
        # paho 2.x reconnects to its _host/_port; its public setters refuse while a
        # reconnect is pending (the state this callback runs in), so set them directly.
        self._client._host, self._client._port = nxt.host, nxt.port
        self._set_reconnect_delay(self._next_delay())
        if lost_established:
            log.warning("%s: lost broker %s (%s); reconnecting", self.config.client_id,
                        self.config.brokers[was], reason)
            self._notify(ConnectionEvent(False, self.config.brokers[was], reason))

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Properties | None) -> None:
        self._advance(str(reason))

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._advance("connect failed")

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        response_topic = correlation = None
        props = getattr(msg, "properties", None)
        if props is not None:
            response_topic = getattr(props, "ResponseTopic", None)
            correlation = getattr(props, "CorrelationData", None)
        self._deliver(msg.topic, msg.payload, msg.qos, bool(msg.retain), response_topic,
                      correlation)

    def _on_plain_qos0(self, topic: str, payload: bytes, retain: bool) -> None:
        self._deliver(topic, payload, 0, retain, None, None)

    def _deliver(self, topic: str, payload: bytes | bytearray, qos: int, retain: bool,
                 response_topic: str | None, correlation: bytes | None) -> None:
        with self._lock:
            self._counts["received"] += 1
            if len(payload) > self.config.max_payload_bytes:
                self._counts["oversized_received"] += 1
                return
            handlers = self._matches.get(topic)
            if handlers is None:
                handlers = [h for f, (_, h) in self._subs.items() if paho.topic_matches_sub(f, topic)]
                if len(self._matches) >= _MATCH_CACHE:
                    self._matches.clear()
                self._matches[topic] = handlers
        received = Received(topic, bytes(payload), qos, retain, response_topic, correlation)
        for handler in handlers:
            try:
                handler(received)
            except Exception:
                log.exception("bus handler for %s failed", topic)
                with self._lock:
                    self._counts["handler_errors"] += 1

    # -- failback (supervisor thread) ---------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopping.wait(self.config.failback_check_s):
            with self._lock:
                index = self._index
            if index == 0 or not self._connected.is_set():
                continue
            for better in range(index):
                if self._answers(self.config.brokers[better]):
                    self._fail_back(better)
                    break

    @staticmethod
    def _answers(broker: BrokerAddress) -> bool:
        try:
            with socket.create_connection((broker.host, broker.port), timeout=1.0):
                return True
        except OSError:
            return False

    def _fail_back(self, index: int) -> None:
        log.info("preferred broker %s answers again; moving back to it", self.config.brokers[index])
        with self._lock:
            self._counts["failbacks"] += 1
            self._failures = 0
        # A clean DISCONNECT: the old broker discards our Last Will (we are not gone).
        self._switching = True      # keep _advance from choosing a broker meanwhile
        self._client.disconnect()
        self._client.loop_stop()
        was = self.config.brokers[self._index]
        self._connected.clear()
        self._switching = False
        self._notify(ConnectionEvent(False, was, "failing back"))
        self._begin(index)
