"""The ground station's MQTT side: the swarm's :class:`swarm.bus.Bus` (reconnect with
backoff, failover down the broker list, re-subscription after every reconnection),
with every message handed to asyncio, and client requests matched to their replies.

The bus runs its handlers on paho's network thread; each one only passes the bytes to
the asyncio loop with ``call_soon_threadsafe`` (the bus's rule: hand over and return),
so the state and the web server are only ever touched from the event loop. After each
(re)connection the retained status/map/plan messages arrive afresh, which is how a
restarted broker or ground station gets the full picture at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from swarm.bus import topics
from swarm.bus.client import BrokerAddress, Bus, BusConfig, ConnectionEvent, Received
from swarm.bus.topics import Kind

__all__ = ["BrokerAddress", "MqttLink", "parse_broker"]

log = logging.getLogger(__name__)


def parse_broker(text: str) -> BrokerAddress:
    """``host``, ``host:port``, ``[v6]:port`` or ``mqtt://host[:port]``."""
    raw = text.strip()
    if raw.startswith("mqtt://"):
        raw = raw[len("mqtt://"):]
    return BrokerAddress.parse(raw)


Handler = Callable[[str, bytes], None]

# What the station subscribes to, with the QoS each is published at (docs/protocol.md).
_SUBSCRIPTIONS = ((Kind.STATUS, 1), (Kind.MAP, 1), (Kind.PLAN, 1), (Kind.TELEMETRY, 0),
                  (Kind.EVENTS, 1))


class MqttLink:
    """The station's bus for one swarm, delivering messages on an asyncio loop.

    ``on_message(topic, payload)`` and ``on_connection(connected)`` run on ``loop``.
    ``request(node, body, timeout)`` publishes a client request (docs/protocol.md) and
    resolves with the decoded reply, matched by request id.
    """

    def __init__(self, swarm: str, brokers: list[BrokerAddress], loop: asyncio.AbstractEventLoop,
                 on_message: Handler, on_connection: Callable[[bool], None], *,
                 username: str | None = None, password: str | None = None,
                 max_payload_bytes: int = 32 * 1024 * 1024) -> None:
        self.swarm = swarm
        self._loop = loop
        self._on_message = on_message
        self._on_connection = on_connection
        self.client_id = f"gcs-{swarm}-{secrets.token_hex(4)}"
        self.reply_topic = f"swarm/{swarm}/reply/{self.client_id}"
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.bus = Bus(BusConfig(brokers=tuple(brokers), client_id=self.client_id,
                                 username=username, password=password,
                                 max_payload_bytes=max_payload_bytes))
        for kind, qos in _SUBSCRIPTIONS:
            self.bus.subscribe(topics.wildcard(swarm, kind), self._message, qos)
        self.bus.subscribe(self.reply_topic, self._reply, 1)
        self.bus.add_state_callback(self._state)

    @property
    def connected(self) -> bool:
        return self.bus.connected

    def start(self) -> None:
        self.bus.start()

    def stop(self) -> None:
        self.bus.close()
        for future in list(self._pending.values()):
            self._loop.call_soon_threadsafe(_fail, future, ConnectionError("link stopped"))

    # ---------------------------------------------------------------- paho thread

    def _state(self, event: ConnectionEvent) -> None:
        if not event.connected:
            log.warning("broker %s: %s", event.broker, event.reason)
        self._loop.call_soon_threadsafe(self._on_connection, event.connected)

    def _message(self, message: Received) -> None:
        self._loop.call_soon_threadsafe(self._on_message, message.topic, message.payload)

    def _reply(self, message: Received) -> None:
        try:
            doc = json.loads(message.payload)
            request_id = doc.get("id") if isinstance(doc, dict) else None
        except ValueError:
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
        # MQTT 5 Response Topic + Correlation Data, and reply_to in the body as well
        # (what a 3.1.1 agent reads); the agent answers on one of them.
        payload = json.dumps({**body, "reply_to": self.reply_topic}).encode()
        sent = self.bus.publish(topics.request(self.swarm, node), payload, qos=1,
                                response_topic=self.reply_topic,
                                correlation_data=request_id.encode())
        if not sent:
            with self._lock:
                self._pending.pop(request_id, None)
            raise ConnectionError("the request could not be sent (not connected to the broker)")
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
