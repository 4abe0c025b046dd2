"""Raft messages over the bus: the agent's ``consensus.driver.Transport``.

Outbound, :meth:`RaftTransport.send` (called by the driver after a Ready is durable,
on the thread that owns the RawNode) groups the messages by receiver, seals them into
as few envelopes as fit, and publishes each at QoS 0 to ``raft/<receiver>``
(docs/protocol.md: Raft retransmits by itself, so QoS 1 would only add a round trip).

Inbound, the subscription handler runs on paho's network thread and only appends the
raw bytes to a bounded queue (full: dropped and counted, the sender's Raft retries) and
calls ``notify`` so the owning thread wakes up. That thread calls :meth:`drain`, which
opens the envelopes (authentication, replay window; rejections counted by reason) and
returns the messages to step. Nothing from the wire is parsed on the network thread.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus.types import Message

from . import topics
from .client import Bus, Received
from .envelope import EnvelopeOpener, EnvelopeSealer, EnvelopeTooLarge, Opened, RejectReason

__all__ = ["RaftTransport", "RaftTransportStats"]

log = logging.getLogger("swarm.bus.raft")


@dataclass(frozen=True, slots=True)
class RaftTransportStats:
    envelopes_sent: int
    messages_sent: int
    #: Not sent: ``too_large`` counts messages that fit no envelope, ``publish`` counts
    #: envelopes the bus dropped (disconnected, ...).
    send_dropped: dict[str, int]
    envelopes_received: int
    messages_received: int
    #: Envelopes dropped because the inbound queue was full.
    inbound_dropped: int
    #: Envelopes rejected by the opener, by reason.
    rejected: dict[RejectReason, int]


class RaftTransport:
    """Sends and receives one node's Raft traffic on ``bus``.

    ``sealer`` and ``opener`` are this node's (replay.durable_sealer / durable_opener).
    ``max_inbound`` bounds the envelopes waiting for :meth:`drain`. ``notify`` is called
    (on the network thread) after each envelope is queued: set an Event, write a byte to
    a pipe; it must not block."""

    def __init__(self, bus: Bus, swarm: str, node: int, sealer: EnvelopeSealer,
                 opener: EnvelopeOpener, *, max_inbound: int = 4096,
                 notify: Callable[[], None] | None = None) -> None:
        if sealer.sender != node or opener.receiver != node:
            raise ValueError("sealer and opener must belong to this node")
        if sealer.swarm != swarm or opener.swarm != swarm:
            raise ValueError("sealer and opener must belong to this swarm")
        if max_inbound < 1:
            raise ValueError("max_inbound must be positive")
        self.bus = bus
        self.swarm = topics.check_swarm_id(swarm)
        self.node = topics.check_node_id(node)
        self.sealer = sealer
        self.opener = opener
        self.max_inbound = max_inbound
        self._notify = notify
        self._inbox: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._inbound_dropped = 0
        self._envelopes_sent = self._messages_sent = 0
        self._envelopes_received = self._messages_received = 0
        self._send_dropped: collections.Counter[str] = collections.Counter()
        self.topic = topics.raft(swarm, node)

    def attach(self) -> None:
        """Subscribe to this node's Raft topic (kept across reconnects by the bus)."""
        self.bus.subscribe(self.topic, self._on_envelope, qos=0)

    # -- network thread -----------------------------------------------------------------

    def _on_envelope(self, msg: Received) -> None:
        with self._lock:
            if len(self._inbox) >= self.max_inbound:
                self._inbound_dropped += 1
                return
            self._inbox.append(msg.payload)
        if self._notify is not None:
            self._notify()

    # -- owning thread ------------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> None:
        """consensus.driver.Transport: seal per receiver and publish. Never raises for
        a message that cannot go out: it is dropped and counted (Raft retransmits)."""
        by_receiver: dict[int, list[Message]] = {}
        for m in messages:
            by_receiver.setdefault(m.to, []).append(m)
        for receiver, batch in by_receiver.items():
            try:
                envelopes = self.sealer.seal(receiver, batch)
            except EnvelopeTooLarge as exc:
                log.error("dropping %d messages to %d: %s", len(batch), receiver, exc)
                self._send_dropped["too_large"] += len(batch)
                continue
            topic = topics.raft(self.swarm, receiver)
            sent = 0
            for env in envelopes:
                if self.bus.publish(topic, env, 0):
                    sent += 1
            self._envelopes_sent += sent
            if sent == len(envelopes):
                self._messages_sent += len(batch)
            else:
                self._send_dropped["publish"] += len(envelopes) - sent

    def pending(self) -> int:
        """Envelopes waiting for :meth:`drain`."""
        with self._lock:
            return len(self._inbox)

    def drain(self, max_envelopes: int | None = None) -> list[Message]:
        """Open the queued envelopes (at most ``max_envelopes``) and return the Raft
        messages of the authentic, fresh ones, in arrival order."""
        with self._lock:
            n = len(self._inbox) if max_envelopes is None else min(max_envelopes, len(self._inbox))
            raw = [self._inbox.popleft() for _ in range(n)]
        out: list[Message] = []
        for data in raw:
            result = self.opener.open(data)
            if isinstance(result, Opened):
                self._envelopes_received += 1
                out.extend(result.messages)
            else:
                log.debug("rejected envelope: %s (%s)", result.reason.value, result.detail)
        self._messages_received += len(out)
        return out

    def stats(self) -> RaftTransportStats:
        with self._lock:
            dropped = self._inbound_dropped
        return RaftTransportStats(
            envelopes_sent=self._envelopes_sent, messages_sent=self._messages_sent,
            send_dropped=dict(self._send_dropped),
            envelopes_received=self._envelopes_received,
            messages_received=self._messages_received, inbound_dropped=dropped,
            rejected=self.opener.rejected())
