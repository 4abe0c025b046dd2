"""A node's retained status (docs/protocol.md, "Node status") as a reader may use it.

Status topics are outside input: anyone who can publish to the broker can retain any
bytes on ``swarm/<swarm>/status/<node>``. :func:`parse_status` is the one place a
status reader (``swarm.client`` to find the nodes and the leader, ``swarm status`` for
its table, the ground station's state, swarm/gcs/state.py) turns a payload into values: every field they use is checked for its type
and range, the ``node`` it claims must be the topic's, and a payload that breaks any
rule is refused whole with :class:`StatusError` naming the field. A reader never
half-uses a bad status (a ``term`` that is a string would otherwise win or crash a
``max`` over the terms).

Absent optional fields are ``None``; a field that is present must be well-formed, so a
status is either what an agent publishes (swarm/agent/node.py) or refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeGuard

from consensus.types import MAX_U64
from swarm.bus.topics import TopicError, check_node_id

__all__ = ["MAX_STATUS_BYTES", "ROLES", "FcStatus", "NodeStatus", "PeerStatus",
           "RADIO_SOURCES", "StatusError", "leader_of", "parse_status"]

#: A real status is a few kilobytes (peers and contact times of up to 64 nodes); the
#: ground station holds statuses to the same bound (swarm/gcs/state.py Limits).
MAX_STATUS_BYTES = 64 * 1024
ROLES = ("leader", "follower", "candidate", "pre_candidate")
#: ``link.radio_source`` values (docs/agent.md, "Best-signal leadership").
RADIO_SOURCES = ("radio_status", "none", "absent", "detecting")
#: Names and flight modes are shown in a terminal: bounded, and printable.
_MAX_TEXT = 64
_MAX_PEERS = 256


class StatusError(ValueError):
    """A status payload that breaks docs/protocol.md; the message names the field."""


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """What a leader's status says of one follower (``peers``)."""

    match: int | None
    lag: int | None
    last_contact_ms: float | None


@dataclass(frozen=True, slots=True)
class FcStatus:
    """The ``fc`` member: the drone's flight controller as its agent sees it."""

    connected: bool
    map_version_held: int | None
    mode: str | None
    armed: bool


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A valid status. ``leader`` is None when no leader is known (0 or null on the
    wire); an offline status (the Last Will) carries nothing but ``node``. ``raw`` is
    the whole object as published (fields this module does not read are not checked:
    use only the typed ones unless you validate what you take)."""

    node: int
    online: bool
    role: str | None = None
    term: int | None = None
    leader: int | None = None
    t: int | None = None
    name: str | None = None
    commit: int | None = None
    applied: int | None = None
    last_index: int | None = None
    map_version: int | None = None
    elections_started: int | None = None
    leader_changes: int | None = None
    voters: frozenset[int] = frozenset()
    peers: Mapping[int, PeerStatus] = field(default_factory=lambda: MappingProxyType({}))
    link_score: float | None = None
    radio_source: str | None = None
    fc: FcStatus | None = None
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}),
                                   compare=False, repr=False)


def parse_status(payload: bytes | str | Mapping[str, Any], node: int) -> NodeStatus:
    """The status ``payload`` (raw bytes, or already decoded JSON) received on node
    ``node``'s status topic, validated; raises :class:`StatusError`."""
    doc = _document(payload)
    if type(doc.get("v")) is not int or doc.get("v") != 1:   # (true == 1 in Python)
        raise StatusError(f"v: unknown schema version {_short(doc.get('v'))}")
    claimed = doc.get("node")
    if claimed != node or type(claimed) is not int:
        raise StatusError(f"node: {_short(claimed)} is not the topic's node {node}")
    online = doc.get("online")
    if type(online) is not bool:
        raise StatusError(f"online: expected true or false, got {_short(online)}")
    if not online:
        return NodeStatus(node, False, raw=MappingProxyType(dict(doc)))   # the Last Will
    role = doc.get("role")
    if role is None:
        raise StatusError("role: missing")
    if role not in ROLES:
        raise StatusError(f"role: {_short(role)} is not one of {', '.join(ROLES)}")
    term = _count(doc, "term", required=True)
    leader = _count(doc, "leader")
    if leader:   # 0 / null: no leader known
        _node_id(leader, "leader")
    voters = doc.get("voters")
    if voters is not None:
        if not isinstance(voters, list) or len(voters) > _MAX_PEERS:
            raise StatusError(f"voters: expected a list of at most {_MAX_PEERS} node ids")
        voters = frozenset(_node_id(v, f"voters[{k}]") for k, v in enumerate(voters))
    return NodeStatus(
        node=node, online=True, role=role, term=term, leader=leader or None,
        t=_count(doc, "t"), name=_text(doc, "name"),
        commit=_count(doc, "commit"), applied=_count(doc, "applied"),
        last_index=_count(doc, "last_index"), map_version=_count(doc, "map_version"),
        elections_started=_count(doc, "elections_started"),
        leader_changes=_count(doc, "leader_changes"), voters=voters or frozenset(), peers=_peers(doc.get("peers")),
        link_score=_link_score(doc.get("link_score")),
        radio_source=_radio_source(doc.get("link")), fc=_fc(doc.get("fc")),
        raw=MappingProxyType(dict(doc)))


def leader_of(statuses: Iterable[NodeStatus]) -> int | None:
    """The leader named by the freshest online status of the highest term: the one
    rule for every reader (the client's target, ``swarm status``'s leader row)."""
    online = [s for s in statuses if s.online]
    best = max(online, key=lambda s: (s.term or 0, s.t or 0), default=None)
    return best.leader if best is not None else None


def _document(payload: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(payload, (bytes, str)):
        if len(payload) > MAX_STATUS_BYTES:
            raise StatusError(f"over {MAX_STATUS_BYTES} bytes")
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):   # RecursionError: absurdly deep nesting
            raise StatusError("not JSON") from None
    if not isinstance(payload, Mapping):
        raise StatusError("not a JSON object")
    return payload


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _count(doc: Mapping[str, Any], name: str, required: bool = False,
           where: str = "") -> int | None:
    """An unsigned 64-bit integer field (terms, indexes, versions, unix ms)."""
    value = doc.get(name)
    if value is None:
        if required:
            raise StatusError(f"{where}{name}: missing")
        return None
    if type(value) is not int or not 0 <= value <= MAX_U64:
        raise StatusError(f"{where}{name}: {_short(value)} is not an integer in [0, 2**64)")
    return value


def _node_id(value: object, what: str) -> int:
    try:
        return check_node_id(value)
    except TopicError as exc:
        raise StatusError(f"{what}: {exc}") from None


def _number(value: object) -> TypeGuard[float]:
    """A finite number in [0, 2**64) (durations, scores; never a bool). The range is
    compared first: math.isfinite raises OverflowError on an int too big for a float
    (JSON allows 10**400), which would escape every status reader."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 <= value <= MAX_U64 and math.isfinite(value))


def _text(doc: Mapping[str, Any], name: str, where: str = "") -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_TEXT or not value.isprintable():
        raise StatusError(f"{where}{name}: expected 1 to {_MAX_TEXT} printable characters")
    return value


def _peers(peers: object) -> Mapping[int, PeerStatus]:
    if peers is None:
        return MappingProxyType({})
    if not isinstance(peers, dict) or len(peers) > _MAX_PEERS:
        raise StatusError(f"peers: expected an object of at most {_MAX_PEERS} nodes")
    out: dict[int, PeerStatus] = {}
    for key, value in peers.items():
        # Keys are node ids in canonical decimal, as in topics ("07" is not node 7).
        # (At most 10 digits: MAX_NODE_ID has 10, and int() refuses very long strings.)
        peer = (int(key) if isinstance(key, str) and 0 < len(key) <= 10 and key.isdecimal()
                and key == str(int(key)) else None)
        where = f"peers[{_short(key)}]"
        peer = _node_id(peer, where)
        if not isinstance(value, dict):
            raise StatusError(f"{where}: expected an object")
        contact = value.get("last_contact_ms")
        if contact is not None and not _number(contact):
            raise StatusError(f"{where}.last_contact_ms: {_short(contact)} is not a "
                              "number in [0, 2**64)")
        out[peer] = PeerStatus(_count(value, "match", where=f"{where}."),
                               _count(value, "lag", where=f"{where}."), contact)
    return MappingProxyType(out)


def _link_score(value: object) -> float | None:
    if value is None:
        return None
    if not _number(value) or value > 1:
        raise StatusError(f"link_score: {_short(value)} is not a number in [0, 1]")
    return float(value)


def _radio_source(link: object) -> str | None:
    if link is None:
        return None
    if not isinstance(link, dict):
        raise StatusError("link: expected an object")
    source = link.get("radio_source")
    if source is not None and source not in RADIO_SOURCES:
        raise StatusError(f"link.radio_source: {_short(source)} is not one of "
                          f"{', '.join(RADIO_SOURCES)}")
    return source


def _fc(fc: object) -> FcStatus | None:
    if fc is None:
        return None
    if not isinstance(fc, dict):
        raise StatusError("fc: expected an object")
    for name in ("connected", "armed"):
        if fc.get(name) is not None and type(fc.get(name)) is not bool:
            raise StatusError(f"fc.{name}: expected true or false, got {_short(fc.get(name))}")
    return FcStatus(connected=fc.get("connected") is True,
                    map_version_held=_count(fc, "map_version_held", where="fc."),
                    mode=_text(fc, "mode", where="fc."), armed=fc.get("armed") is True)
