"""The one place MQTT topic names are built and parsed (docs/protocol.md, "Topics").

Every topic lives under ``swarm/<swarm>/``. Builders validate their arguments and raise
:class:`TopicError` (a ``ValueError``) naming the bad value; :func:`parse` turns a
received topic back into a :class:`Topic` or raises :class:`TopicError`, so a topic a
stranger made up never reaches a handler as a half-understood string.

Node ids are Raft node ids (``consensus.types.MAX_NODE_ID`` bounds them) written in
canonical decimal: ``raft/07`` is not node 7, it is an invalid topic, so two spellings of
one node can never be two subscriptions.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from consensus.types import MAX_NODE_ID

__all__ = [
    "ROOT",
    "Kind",
    "Topic",
    "TopicError",
    "check_node_id",
    "check_swarm_id",
    "events",
    "map_topic",
    "parse",
    "ping",
    "plan",
    "raft",
    "raft_all",
    "request",
    "status",
    "swarm_filter",
    "telemetry",
    "wildcard",
]

#: First level of every topic of this protocol.
ROOT = "swarm"

_SWARM_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_NODE_ID = re.compile(r"[1-9][0-9]{0,9}")


class TopicError(ValueError):
    """A topic, swarm id or node id that is not of this protocol."""


class Kind(enum.Enum):
    """What a topic carries; the value is its level after ``swarm/<swarm>/``."""

    RAFT = "raft"            # per node: authenticated Raft envelopes to that node (QoS 0)
    REQUEST = "request"      # per node: client requests to that node (QoS 1)
    STATUS = "status"        # per node: node status, retained; Last Will
    PLAN = "plan"            # per node: that drone's plan, retained
    TELEMETRY = "telemetry"  # per node: that drone's telemetry (QoS 0)
    PING = "ping"            # per node: its own broker probes, back to itself (QoS 0)
    MAP = "map"              # swarm-wide: the committed map, retained
    EVENTS = "events"        # swarm-wide: elections, commits, alerts
    RAFT_ALL = "raft-all"    # swarm-wide: broadcast Raft envelopes (a leader's heartbeats)

    @property
    def per_node(self) -> bool:
        return self not in (Kind.MAP, Kind.EVENTS, Kind.RAFT_ALL)


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: ``node`` is set exactly for the per-node kinds."""

    swarm: str
    kind: Kind
    node: int | None = None

    def __post_init__(self) -> None:
        check_swarm_id(self.swarm)
        if not isinstance(self.kind, Kind):
            raise TopicError(f"kind must be a Kind, got {self.kind!r}")
        if self.kind.per_node:
            if self.node is None:
                raise TopicError(f"a {self.kind.value} topic needs a node id")
            check_node_id(self.node)
        elif self.node is not None:
            raise TopicError(f"a {self.kind.value} topic has no node id")

    def __str__(self) -> str:
        base = f"{ROOT}/{self.swarm}/{self.kind.value}"
        return base if self.node is None else f"{base}/{self.node}"


def check_swarm_id(swarm: object) -> str:
    """Return ``swarm`` if it is a valid swarm id (``[a-z0-9][a-z0-9-]{0,31}``)."""
    if not isinstance(swarm, str) or not _SWARM_ID.fullmatch(swarm):
        raise TopicError(
            f"swarm id {swarm!r} is invalid: 1 to 32 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit")
    return swarm


def check_node_id(node: object) -> int:
    """Return ``node`` if it is a valid Raft node id (an int in [1, MAX_NODE_ID])."""
    if type(node) is not int or not 1 <= node <= MAX_NODE_ID:
        raise TopicError(f"node id {node!r} is invalid: an integer in [1, {MAX_NODE_ID}]")
    return node


def _per_node(kind: Kind, swarm: str, node: int) -> str:
    return str(Topic(swarm, kind, node))


def raft(swarm: str, node: int) -> str:
    """Raft envelopes addressed to ``node``."""
    return _per_node(Kind.RAFT, swarm, node)


def raft_all(swarm: str) -> str:
    """Broadcast Raft envelopes, for every node (a leader's heartbeat round)."""
    return str(Topic(swarm, Kind.RAFT_ALL))


def request(swarm: str, node: int) -> str:
    """Client requests taken by ``node``."""
    return _per_node(Kind.REQUEST, swarm, node)


def status(swarm: str, node: int) -> str:
    """``node``'s retained status (and its Last Will)."""
    return _per_node(Kind.STATUS, swarm, node)


def plan(swarm: str, node: int) -> str:
    """``node``'s retained plan."""
    return _per_node(Kind.PLAN, swarm, node)


def telemetry(swarm: str, node: int) -> str:
    """``node``'s telemetry."""
    return _per_node(Kind.TELEMETRY, swarm, node)


def ping(swarm: str, node: int) -> str:
    """``node``'s broker probes to itself (round trip and loss, swarm/agent/link.py)."""
    return _per_node(Kind.PING, swarm, node)


def map_topic(swarm: str) -> str:
    """The committed map (retained)."""
    return str(Topic(swarm, Kind.MAP))


def events(swarm: str) -> str:
    """Swarm events."""
    return str(Topic(swarm, Kind.EVENTS))


def wildcard(swarm: str, kind: Kind) -> str:
    """Subscription filter for every node's topic of a per-node ``kind``
    (``swarm/<swarm>/status/+``), or the topic itself for a swarm-wide kind."""
    check_swarm_id(swarm)
    if not isinstance(kind, Kind):
        raise TopicError(f"kind must be a Kind, got {kind!r}")
    base = f"{ROOT}/{swarm}/{kind.value}"
    return f"{base}/+" if kind.per_node else base


def swarm_filter(swarm: str) -> str:
    """Subscription filter for every topic of one swarm (``swarm/<swarm>/#``), the
    prefix a broker ACL grants a swarm's members."""
    return f"{ROOT}/{check_swarm_id(swarm)}/#"


def parse(topic: object) -> Topic:
    """Parse a received topic name; raise :class:`TopicError` if it is not one of ours."""
    if not isinstance(topic, str):
        raise TopicError(f"topic must be a string, got {type(topic).__name__}")
    parts = topic.split("/")
    if len(parts) not in (3, 4) or parts[0] != ROOT:
        raise TopicError(f"topic {topic!r} is not of the form {ROOT}/<swarm>/<kind>[/<node>]")
    swarm, kind_text = parts[1], parts[2]
    try:
        kind = Kind(kind_text)
    except ValueError:
        raise TopicError(f"topic {topic!r}: unknown kind {kind_text!r}") from None
    node: int | None = None
    if len(parts) == 4:
        if not _NODE_ID.fullmatch(parts[3]):
            raise TopicError(f"topic {topic!r}: node id {parts[3]!r} is not a canonical decimal")
        node = int(parts[3])
    try:
        return Topic(swarm, kind, node)
    except TopicError as exc:
        raise TopicError(f"topic {topic!r}: {exc}") from None
