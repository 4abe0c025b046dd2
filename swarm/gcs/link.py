"""The ground station's MQTT side: the swarm's :class:`swarm.bus.Bus` (reconnect with
backoff, failover down the broker list, re-subscription after every reconnection),
with every message handed to asyncio. (Operator actions go through
:class:`swarm.client.SwarmClient`, see operator.py.)

The bus runs its handlers on paho's network thread; each one only passes the bytes to
the asyncio loop with ``call_soon_threadsafe`` (the bus's rule: hand over and return),
so the state and the web server are only ever touched from the event loop. After each
(re)connection the retained status/map/plan messages arrive afresh, which is how a
restarted broker or ground station gets the full picture at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from swarm.bus import topics
from swarm.bus.client import BrokerAddress, Bus, BusConfig, ConnectionEvent, Received
from swarm.bus.topics import Kind

__all__ = ["BrokerAddress", "MqttLink"]

log = logging.getLogger(__name__)


Handler = Callable[[str, bytes], None]

# What the station subscribes to, with the QoS each is published at (docs/protocol.md).
_SUBSCRIPTIONS = ((Kind.STATUS, 1), (Kind.MAP, 1), (Kind.PLAN, 1), (Kind.TELEMETRY, 0),
                  (Kind.EVENTS, 1))


class MqttLink:
    """The station's bus for one swarm, delivering messages on an asyncio loop.

    ``on_message(topic, payload)`` and ``on_connection(connected)`` run on ``loop``.
    """

    def __init__(self, swarm: str, bus_config: Callable[..., BusConfig],
                 loop: asyncio.AbstractEventLoop, on_message: Handler,
                 on_connection: Callable[[bool], None], *,
                 max_payload_bytes: int = 32 * 1024 * 1024) -> None:
        """``bus_config(client_id, **options)``: the station's broker settings
        (:meth:`swarm.gcs.GcsConfig.bus_config`: brokers, TLS, credentials)."""
        self.swarm = swarm
        self._loop = loop
        self._on_message = on_message
        self._on_connection = on_connection
        self.client_id = f"gcs-{swarm}-{secrets.token_hex(4)}"
        self.bus = Bus(bus_config(self.client_id, max_payload_bytes=max_payload_bytes))
        for kind, qos in _SUBSCRIPTIONS:
            self.bus.subscribe(topics.wildcard(swarm, kind), self._message, qos)
        self.bus.add_state_callback(self._state)

    @property
    def connected(self) -> bool:
        return self.bus.connected

    def start(self) -> None:
        self.bus.start()

    def stop(self) -> None:
        self.bus.close()

    # ---------------------------------------------------------------- paho thread

    def _state(self, event: ConnectionEvent) -> None:
        if not event.connected:
            log.warning("broker %s: %s", event.broker, event.reason)
        self._loop.call_soon_threadsafe(self._on_connection, event.connected)

    def _message(self, message: Received) -> None:
        self._loop.call_soon_threadsafe(self._on_message, message.topic, message.payload)
