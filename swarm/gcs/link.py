"""The ground station's MQTT connection: subscribe to the swarm's topics, hand every
message to asyncio, send client requests and route their replies.

paho-mqtt runs its network loop in its own thread (``loop_start``); every callback is
passed to the asyncio loop with ``call_soon_threadsafe``, so the state and the web
server are only ever touched from the event loop. paho reconnects by itself with
backoff (``reconnect_delay_set``); after each (re)connection the subscriptions are made
again (``on_connect``) and the retained status/map/plan messages arrive afresh, which
is how a restarted broker or ground station gets the full picture at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from swarm.bus import topics
from swarm.bus.topics import Kind

__all__ = ["BrokerAddress", "MqttLink"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int = 1883

    @classmethod
    def parse(cls, text: str) -> "BrokerAddress":
        """``host``, ``host:port`` or ``mqtt://host:port``."""
        raw = text.strip()
        if raw.startswith("mqtt://"):
            raw = raw[len("mqtt://"):]
        if "/" in raw or not raw:
            raise ValueError(f"broker {text!r}: expected host[:port] or mqtt://host[:port]")
        host, sep, port_text = raw.rpartition(":")
        if not sep:
            host, port_text = raw, "1883"
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"broker {text!r}: port {port_text!r} is not a number") from None
        if not 1 <= port <= 65535 or not host:
            raise ValueError(f"broker {text!r}: expected host[:port] with port 1..65535")
        return cls(host, port)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


Handler = Callable[[str, bytes], None]


class MqttLink:
    """One MQTT 5 connection for one swarm, delivering messages on an asyncio loop.

    ``on_message(topic, payload)`` and ``on_connection(connected)`` run on ``loop``.
    ``request(node, body)`` publishes a client request (docs/protocol.md) and resolves
    with the decoded reply, matched by request id.
    """

    def __init__(self, swarm: str, brokers: list[BrokerAddress], loop: asyncio.AbstractEventLoop,
                 on_message: Handler, on_connection: Callable[[bool], None], *,
                 username: str | None = None, password: str | None = None,
                 client_id: str | None = None) -> None:
        if not brokers:
            raise ValueError("at least one broker is needed")
        self.swarm = swarm
        self.brokers = brokers
        self._broker_index = 0
        self._loop = loop
        self._on_message = on_message
        self._on_connection = on_connection
        self.client_id = client_id or f"gcs-{swarm}-{secrets.token_hex(4)}"
        self.reply_topic = f"swarm/{swarm}/reply/{self.client_id}"
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.connected = False
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5)
        if username is not None:
            client.username_pw_set(username, password)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        client.on_connect_fail = self._connect_failed
        self._client = client

    # ---------------------------------------------------------------- life cycle

    def start(self) -> None:
        broker = self.brokers[self._broker_index]
        self._client.connect_async(broker.host, broker.port, keepalive=10, clean_start=True)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        for future in list(self._pending.values()):
            self._loop.call_soon_threadsafe(_fail, future, ConnectionError("link stopped"))

    # ---------------------------------------------------------------- paho thread

    def _connected(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any = None) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the connection: %s",
                        self.brokers[self._broker_index], reason)
            return
        # QoS as published (docs/protocol.md): telemetry 0, the rest 1.
        client.subscribe([(topics.wildcard(self.swarm, Kind.STATUS), 1),
                          (topics.wildcard(self.swarm, Kind.MAP), 1),
                          (topics.wildcard(self.swarm, Kind.PLAN), 1),
                          (topics.wildcard(self.swarm, Kind.TELEMETRY), 0),
                          (topics.wildcard(self.swarm, Kind.EVENTS), 1),
                          (self.reply_topic, 1)])
        self.connected = True
        self._loop.call_soon_threadsafe(self._on_connection, True)

    def _disconnected(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                      properties: Any = None) -> None:
        self.connected = False
        self._loop.call_soon_threadsafe(self._on_connection, False)
        self._next_broker()

    def _connect_failed(self, client: mqtt.Client, userdata: Any) -> None:
        self._next_broker()

    def _next_broker(self) -> None:
        """Fail over to the next broker of the list (paho retries one host only)."""
        if len(self.brokers) > 1:
            self._broker_index = (self._broker_index + 1) % len(self.brokers)
            broker = self.brokers[self._broker_index]
            self._client._host, self._client._port = broker.host, broker.port

    def _message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.reply_topic:
            self._reply(message)
            return
        self._loop.call_soon_threadsafe(self._on_message, message.topic, bytes(message.payload))

    def _reply(self, message: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(message.payload)
            request_id = doc["id"] if isinstance(doc, dict) else None
        except (ValueError, KeyError, TypeError):
            log.warning("dropped a malformed reply on %s", message.topic)
            return
        with self._lock:
            future = self._pending.pop(request_id, None) if isinstance(request_id, str) else None
        if future is not None:
            self._loop.call_soon_threadsafe(_resolve, future, doc)

    # ---------------------------------------------------------------- requests

    async def request(self, node: int, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one client request to ``node``; the reply, or TimeoutError."""
        request_id = body["id"]
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        with self._lock:
            self._pending[request_id] = future
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = request_id.encode()
        payload = json.dumps({**body, "reply_to": self.reply_topic}).encode()
        info = self._client.publish(topics.request(self.swarm, node), payload, qos=1,
                                    properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            with self._lock:
                self._pending.pop(request_id, None)
            raise ConnectionError(f"not connected to the broker ({mqtt.error_string(info.rc)})")
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            with self._lock:
                self._pending.pop(request_id, None)


def _resolve(future: asyncio.Future[dict[str, Any]], doc: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(doc)


def _fail(future: asyncio.Future[dict[str, Any]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
