"""What the ground station knows about the swarm: the latest of every topic, bounded.

:class:`SwarmState` is sans-I/O: ``ingest(topic, payload, now)`` takes one MQTT message
(topic string, raw bytes, a monotonic time in seconds) and returns which sections of
the picture changed; ``health(now)`` derives the health panel (leader, term, commit,
per-node lag and contact, alerts) from what was received. No socket, thread or clock
inside, so the rules are tested by feeding messages and times.

Every payload is validated against docs/protocol.md before it changes anything: a
payload that is not JSON, is over its size limit, has an unknown ``v``, misses a
required field or has one of the wrong type is dropped and counted by reason
(``drops``), never half-applied. Memory is bounded whatever the swarm sends: at most
``Limits.max_nodes`` nodes are tracked (a new node beyond that is dropped and
counted), the event log and each drone's track are fixed-size rings, and payloads have
size limits.
"""

from __future__ import annotations

import math
import sys
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from swarm.bus import topics
from swarm.bus.topics import Kind, TopicError
from swarm.evacmap import rfc7946_problems
from swarm.evacmap.commands import CommandError, load_json
from swarm.node_status import StatusError, parse_status

__all__ = [
    "Alert",
    "Limits",
    "NodeRecord",
    "PayloadError",
    "SwarmState",
    "Thresholds",
    "parse_topic",
]

PROTOCOL_VERSION = 1


class PayloadError(ValueError):
    """A payload breaks docs/protocol.md; the message names the field."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what the ground station holds (bounded memory whatever arrives)."""

    max_nodes: int = 64
    max_events: int = 500
    track_points: int = 120  # per drone, ~2 minutes at the 1 Hz the track samples at
    track_interval_s: float = 1.0
    status_bytes: int = 64 * 1024
    plan_bytes: int = 2 * 1024 * 1024
    telemetry_bytes: int = 4 * 1024
    event_bytes: int = 16 * 1024
    # A full map (2000 zones of 512 vertices) is ~25 MB of GeoJSON; the broker's own
    # message limit is the real bound, this one only protects the ground station.
    map_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When the health panel raises an alert (seconds unless named otherwise)."""

    status_stale_s: float = 6.0  # status is published at least every 2 s (protocol)
    telemetry_stale_s: float = 3.0
    elections_window_s: float = 60.0
    elections_max: int = 3  # this many new terms within the window is "too often"
    converge_s: float = 10.0  # a node or FC behind the map for longer is "not converged"
    peer_contact_s: float = 3.0  # leader has not heard a peer for this long


_READ_KINDS = {Kind.STATUS: "status", Kind.PLAN: "plan", Kind.TELEMETRY: "telemetry",
               Kind.MAP: "map", Kind.EVENTS: "events"}


def parse_topic(swarm: str, topic: str) -> tuple[str, int | None] | None:
    """``(kind, node)`` for a topic of swarm ``swarm`` the ground station reads, else None.

    Kinds: ``status``, ``plan``, ``telemetry`` (with a node id), ``map`` and ``events``
    (node None). Raft traffic and requests are not ours to read.
    """
    try:
        parsed = topics.parse(topic)
    except TopicError:
        return None
    kind = _READ_KINDS.get(parsed.kind)
    if parsed.swarm != swarm or kind is None:
        return None
    return kind, parsed.node


def _node_id_text(text: str) -> int | None:
    try:
        return topics.check_node_id(int(text)) if str(int(text)) == text else None
    except (ValueError, TopicError):
        return None


def check_swarm_id(swarm: str) -> str:
    return topics.check_swarm_id(swarm)


# ----------------------------------------------------------------- payload validation


def _decode(payload: bytes, limit: int, what: str, v_required: bool = True) -> dict[str, Any]:
    try:
        doc = load_json(payload, limit, what)
    except CommandError as exc:
        raise PayloadError(str(exc)) from None
    if not isinstance(doc, dict):
        raise PayloadError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    # The map's own section of the contract lists only version/term/node on top of the
    # GeoJSON, so a map without "v" is accepted; a "v" other than 1 never is.
    if doc.get("v") != PROTOCOL_VERSION and (v_required or "v" in doc):
        raise PayloadError(f"{what}.v: unknown schema version {doc.get('v')!r}")
    return doc


def _field(doc: Mapping[str, Any], name: str, kinds: type | tuple[type, ...], what: str,
           required: bool = True) -> Any:
    if name not in doc or doc[name] is None:
        if required:
            raise PayloadError(f"{what}.{name}: missing required field")
        return None
    value = doc[name]
    is_bool = isinstance(value, bool)
    wants_bool = kinds is bool or (isinstance(kinds, tuple) and bool in kinds)
    if not isinstance(value, kinds) or (is_bool and not wants_bool):
        raise PayloadError(f"{what}.{name}: expected {_kind_names(kinds)}, "
                           f"got {type(value).__name__}")
    if isinstance(value, (int, float)) and not is_bool and not _finite(value):
        raise PayloadError(f"{what}.{name}: not a finite number")
    return value


def _short(value: Any) -> str:
    """``repr(value)`` cut to 40 characters (it goes into ``last_drop``, shown on the page)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: A drone's name and flight mode, as the status parser holds them (swarm.node_status):
#: the name also goes into an export's file name (Content-Disposition), where a newline
#: made aiohttp drop the connection and 10 kB overflowed the browser's header limit.
_MAX_TEXT = 64


def _text(doc: Mapping[str, Any], name: str, what: str) -> str | None:
    value = _field(doc, name, str, what, required=False)
    if value is not None and (not 0 < len(value) <= _MAX_TEXT or not value.isprintable()):
        raise PayloadError(f"{what}.{name}: expected 1 to {_MAX_TEXT} printable characters")
    return value


def _kind_names(kinds: type | tuple[type, ...]) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(k.__name__ for k in kinds)


_NUM = (int, float)


def _finite(value: Any) -> bool:
    """A JSON number a float can hold (never a bool). JSON allows 10**400, which
    float() and math.isfinite refuse with OverflowError, not a PayloadError."""
    if isinstance(value, bool) or not isinstance(value, _NUM):
        return False
    return abs(value) <= sys.float_info.max if isinstance(value, int) else math.isfinite(value)


def _latlon(lat: Any, lon: Any, what: str) -> tuple[float, float]:
    for value, name, bound in ((lat, "latitude", 90), (lon, "longitude", 180)):
        if not _finite(value):
            raise PayloadError(f"{what}: {name} {_short(value)} is not a finite number")
        if abs(value) > bound:
            raise PayloadError(f"{what}: {name} {value} is outside [-{bound}, {bound}]")
    return float(lat), float(lon)


def _node_in(doc: Mapping[str, Any], node: int, what: str) -> None:
    claimed = _field(doc, "node", int, what)
    if claimed != node:
        raise PayloadError(f"{what}.node: {claimed} does not match the topic's node {node}")


def validate_status(doc: Mapping[str, Any], node: int) -> dict[str, Any]:
    """A node's status as the ground station keeps it: checked by the one status parser
    (swarm.node_status.parse_status), plus the fields the station's views need."""
    try:
        st = parse_status(doc, node)
    except StatusError as exc:
        raise PayloadError(f"status.{exc}") from None
    if not st.online:  # the Last Will carries only v, node, online
        return {"node": node, "online": False}
    for name in ("commit", "applied", "map_version"):
        if getattr(st, name) is None:
            raise PayloadError(f"status.{name}: missing required field")
    out: dict[str, Any] = {
        "node": node, "online": True, "name": st.name, "role": st.role, "term": st.term,
        "commit": st.commit, "applied": st.applied, "last_index": st.last_index,
        "map_version": st.map_version, "t": st.t, "leader": st.leader,
        "elections_started": st.elections_started, "leader_changes": st.leader_changes,
        "link_score": st.link_score,
        "peers": {peer: {"match": p.match, "lag": p.lag, "last_contact_ms": p.last_contact_ms}
                  for peer, p in list(st.peers.items())[:64]},
        "fc": None if st.fc is None else {
            "connected": st.fc.connected, "map_version_held": st.fc.map_version_held,
            "mode": st.fc.mode, "armed": st.fc.armed},
    }
    return out


def validate_telemetry(doc: Mapping[str, Any], node: int) -> dict[str, Any]:
    what = "telemetry"
    _node_in(doc, node, what)
    lat, lon = _latlon(doc.get("lat"), doc.get("lon"), what)
    out: dict[str, Any] = {"node": node, "lat": lat, "lon": lon}
    out["name"] = _text(doc, "name", what)
    out["t"] = _field(doc, "t", int, what, required=False)
    for name in ("alt_rel_m", "alt_msl_m", "heading_deg", "groundspeed_ms", "battery_pct",
                 "link_score"):
        value = _field(doc, name, _NUM, what, required=False)
        out[name] = None if value is None else float(value)
    if out["heading_deg"] is not None:
        out["heading_deg"] %= 360.0
    out["mode"] = _text(doc, "mode", what)
    out["armed"] = _field(doc, "armed", bool, what, required=False)
    out["mission_seq"] = _field(doc, "mission_seq", int, what, required=False)
    out["fc_connected"] = _field(doc, "fc_connected", bool, what, required=False)
    return out


def _points(value: Any, what: str, width: int, limit: int = 10_000) -> list[list[float]]:
    """``[[lat, lon, ...], ...]`` keeping the first ``width`` numbers of each point."""
    if not isinstance(value, list) or len(value) > limit:
        raise PayloadError(f"{what}: expected a list of at most {limit} points")
    out = []
    for k, point in enumerate(value):
        if not isinstance(point, list) or len(point) < width:
            raise PayloadError(f"{what}[{k}]: expected {width} numbers [lat, lon, ...]")
        lat, lon = _latlon(point[0], point[1], f"{what}[{k}]")
        rest = point[2:width]
        for j, cell in enumerate(rest, start=2):
            if not _finite(cell):
                raise PayloadError(f"{what}[{k}][{j}]: {_short(cell)} is not a finite number")
        out.append([lat, lon, *rest])
    return out


def _item_rows(value: Any, what: str) -> list[list[Any]]:
    if not isinstance(value, list) or len(value) > 10_000:
        raise PayloadError(f"{what}: expected a list of at most 10000 items")
    for k, row in enumerate(value):
        if not isinstance(row, list) or len(row) != 10:
            raise PayloadError(f"{what}[{k}]: expected the 10 MISSION_ITEM_INT fields")
        for j, cell in enumerate(row):
            if cell is None and 2 <= j <= 5:
                continue  # a NaN param travels as null
            if not _finite(cell):
                raise PayloadError(f"{what}[{k}][{j}]: {_short(cell)} is not a finite number")
    return value


def validate_plan(doc: Mapping[str, Any], node: int) -> dict[str, Any]:
    what = "plan"
    _node_in(doc, node, what)
    out: dict[str, Any] = {"node": node}
    out["name"] = _text(doc, "name", what)
    out["map_version"] = _field(doc, "map_version", int, what)
    out["status"] = _field(doc, "status", str, what)
    reasons = _field(doc, "reasons", list, what, required=False) or []
    out["reasons"] = [str(r)[:300] for r in reasons[:32]]
    out["mission"] = _points(_field(doc, "mission", list, what), f"{what}.mission", 4)
    fences = _field(doc, "fences", list, what, required=False) or []
    if len(fences) > 2000:
        raise PayloadError(f"{what}.fences: more than 2000 fences")
    out["fences"] = [_points(f, f"{what}.fences[{k}]", 2) for k, f in enumerate(fences)]
    rally = _field(doc, "rally", list, what, required=False) or []
    out["rally"] = _points(rally, f"{what}.rally", 3)
    out["fc_map_version"] = _field(doc, "fc_map_version", int, what, required=False)
    home = _field(doc, "home", list, what, required=False)
    if home is not None:
        if len(home) != 3:
            raise PayloadError(f"{what}.home: expected [lat, lon, alt_msl_m]")
        lat, lon = _latlon(home[0], home[1], f"{what}.home")
        alt = home[2]
        if not _finite(alt):
            raise PayloadError(f"{what}.home[2]: {_short(alt)} is not a finite number")
        home = [lat, lon, float(alt)]
    out["home"] = home
    items = _field(doc, "items", dict, what, required=False)
    if items is not None:
        items = {kind: _item_rows(items.get(kind) or [], f"{what}.items.{kind}")
                 for kind in ("mission", "fence", "rally")}
    out["items"] = items
    sector = _field(doc, "sector", list, what, required=False)
    out["sector"] = None if sector is None else _points(sector, f"{what}.sector", 2)
    return out


def validate_map(doc: Mapping[str, Any]) -> dict[str, Any]:
    version = doc.get("version", doc.get("map_version"))
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise PayloadError(f"map.version: expected a non-negative integer, got {version!r}")
    if doc.get("type") != "FeatureCollection":
        raise PayloadError("map.type: expected 'FeatureCollection'")
    problems = rfc7946_problems(doc)
    if problems:
        raise PayloadError(f"map: not valid GeoJSON ({problems[0]}"
                           + (f", and {len(problems) - 1} more" if len(problems) > 1 else "")
                           + ")")
    for k, feature in enumerate(doc["features"]):
        props = feature.get("properties")
        if not isinstance(props, dict) or not isinstance(props.get("kind"), str) \
                or not isinstance(props.get("id"), str):
            raise PayloadError(f"map.features[{k}].properties: needs string 'kind' and 'id'")
        _check_properties(props, f"map.features[{k}].properties")
    term = doc.get("term")
    return {"version": version, "term": term if isinstance(term, int) else None,
            "node": doc.get("node") if isinstance(doc.get("node"), int) else None,
            "recall": _recall(doc.get("recall")), "doc": dict(doc)}


_STRINGS = "list of strings"
#: The properties the page reads, per feature kind, with their type
#: (swarm.evacmap.map_to_geojson writes them). The page puts some into HTML unescaped
#: (a number) and calls .join on the lists: a string there was HTML injection into a
#: popup, and a string where a list goes threw in the page's map drawing.
_PAGE_PROPERTIES: dict[str, dict[str, Any]] = {
    "zone": {"status": str, "source": str, "time_ms": int},
    "route": {"priority": int, "unsafe": bool, "crosses": _STRINGS},
    "survivor": {"count": int, "confidence": _NUM, "status": str, "urgent": bool,
                 "inside": _STRINGS, "reporter": str, "time_ms": int},
    "sector": {"epoch": int, "current": bool, "survivors": _STRINGS},
    "drone_home": {"task": str, "alive": bool, "recalled": bool},
}


def _check_properties(props: Mapping[str, Any], what: str) -> None:
    """Each property the page reads is absent, null or of its type (any other is kept
    as published: the page does not read it)."""
    for name, kind in _PAGE_PROPERTIES.get(props["kind"], {}).items():
        value = props.get(name)
        if value is None:
            continue
        if kind == _STRINGS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PayloadError(f"{what}.{name}: expected a list of strings")
        elif kind is bool:
            if not isinstance(value, bool):
                raise PayloadError(f"{what}.{name}: expected true or false")
        elif kind is _NUM:
            if not _finite(value):
                raise PayloadError(f"{what}.{name}: {_short(value)} is not a finite number")
        elif isinstance(value, bool) or not isinstance(value, kind):
            raise PayloadError(f"{what}.{name}: expected {_kind_names(kind)}, "
                               f"got {type(value).__name__}")


def _recall(value: Any) -> dict[str, Any] | None:
    """The map's ``recall`` member (who is ordered home), None from a swarm whose
    agents predate it."""
    if value is None:
        return None
    what = "map.recall"
    if not isinstance(value, dict):
        raise PayloadError(f"{what}: expected {{\"all\": bool, \"drones\": [ids]}}")
    every = _field(value, "all", bool, what)
    drones = _field(value, "drones", list, what)
    if len(drones) > 64 or not all(isinstance(d, str) and len(d) <= 64 for d in drones):
        raise PayloadError(f"{what}.drones: expected at most 64 drone ids")
    return {"all": every, "drones": sorted(set(drones))}


EVENT_KINDS = ("election", "leader", "transfer", "commit", "rejected", "fc_link", "alert")


def validate_event(doc: Mapping[str, Any]) -> dict[str, Any]:
    what = "event"
    kind = _field(doc, "kind", str, what)
    node = _field(doc, "node", int, what, required=False)
    out: dict[str, Any] = {
        "t": _field(doc, "t", int, what, required=False),
        "node": node,
        "kind": kind if kind in EVENT_KINDS else "other",
        "text": str(_field(doc, "text", str, what, required=False) or kind)[:500],
    }
    for name in ("term", "index", "to", "code", "message", "command"):
        value = doc.get(name)
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            out[name] = value if isinstance(value, int) else value[:300]
    return out


# ----------------------------------------------------------------------------- state


@dataclass(slots=True)
class NodeRecord:
    """Everything received from one node, with the monotonic time each part arrived."""

    node: int
    status: dict[str, Any] | None = None
    status_at: float | None = None
    telemetry: dict[str, Any] | None = None
    telemetry_at: float | None = None
    plan: dict[str, Any] | None = None
    plan_at: float | None = None
    track: deque[tuple[float, float]] = field(default_factory=deque)
    track_at: float = -math.inf
    behind_since: float | None = None  # when its applied map fell behind the map
    fc_behind_since: float | None = None
    known_name: str | None = None  # the last name it published (its Last Will has none)

    @property
    def name(self) -> str:
        for part in (self.status, self.telemetry, self.plan):
            if part and part.get("name"):
                return str(part["name"])
        return self.known_name or f"node-{self.node}"


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # elections | unreachable | fc_link | not_converged | no_leader | broker
    node: int | None
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "node": self.node, "text": self.text}


class SwarmState:
    """The latest picture of one swarm, built from its topics (see module docstring)."""

    def __init__(self, swarm: str, limits: Limits = Limits(),
                 thresholds: Thresholds = Thresholds()) -> None:
        self.swarm = check_swarm_id(swarm)
        self.limits = limits
        self.thresholds = thresholds
        self.nodes: dict[int, NodeRecord] = {}
        self.map: dict[str, Any] | None = None  # validate_map's output
        self.map_at: float | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=limits.max_events)
        self.event_seq = 0
        self.drops: Counter[str] = Counter()
        self.received = 0
        self.broker_connected = False
        self._terms: deque[tuple[float, int]] = deque(maxlen=64)  # (when, new term)
        self._max_term = 0

    # -------------------------------------------------------------------- ingest

    def ingest(self, topic: str, payload: bytes, now: float) -> frozenset[str]:
        """Take one message; return the sections that changed (``map``, ``drones``,
        ``events``, ``health``), empty when it was dropped or changed nothing."""
        parsed = parse_topic(self.swarm, topic)
        if parsed is None:
            return frozenset()
        kind, node = parsed
        self.received += 1
        try:
            if kind == "map":
                return self._ingest_map(payload, now)
            if kind == "events":
                return self._ingest_event(payload, now)
            assert node is not None
            return self._ingest_node(kind, node, payload, now)
        except PayloadError as exc:
            self._drop(kind, str(exc))
            return frozenset()

    def _drop(self, kind: str, reason: str) -> None:
        self.drops[f"{kind}: {reason.split(':', 1)[0]}"] += 1
        self.last_drop = f"{kind}: {reason}"

    last_drop: str = ""

    def _record(self, node: int) -> NodeRecord | None:
        record = self.nodes.get(node)
        if record is None:
            if len(self.nodes) >= self.limits.max_nodes:
                raise PayloadError(f"node {node}: already tracking {self.limits.max_nodes} "
                                   "nodes (Limits.max_nodes)")
            record = self.nodes[node] = NodeRecord(node, track=deque(
                maxlen=self.limits.track_points))
        return record

    def _ingest_node(self, kind: str, node: int, payload: bytes, now: float) -> frozenset[str]:
        if kind == "status":
            if not payload:  # a cleared retained message: the node was removed
                if self.nodes.pop(node, None) is not None:
                    return frozenset({"drones", "health"})
                return frozenset()
            status = validate_status(_decode(payload, self.limits.status_bytes, "status"), node)
            record = self._record(node)
            assert record is not None
            record.status, record.status_at = status, now
            if status.get("name"):
                record.known_name = status["name"]
            term = status.get("term")
            if isinstance(term, int) and term > self._max_term:
                if self._max_term:
                    self._terms.append((now, term))
                self._max_term = term
            self._update_convergence(record, now)
            return frozenset({"drones", "health"})
        if kind == "telemetry":
            telemetry = validate_telemetry(
                _decode(payload, self.limits.telemetry_bytes, "telemetry"), node)
            record = self._record(node)
            assert record is not None
            record.telemetry, record.telemetry_at = telemetry, now
            if now - record.track_at >= self.limits.track_interval_s:
                record.track.append((telemetry["lat"], telemetry["lon"]))
                record.track_at = now
            return frozenset({"drones"})
        plan = validate_plan(_decode(payload, self.limits.plan_bytes, "plan"), node)
        record = self._record(node)
        assert record is not None
        record.plan, record.plan_at = plan, now
        self._update_convergence(record, now)
        return frozenset({"drones", "plans", "health"})

    def _ingest_map(self, payload: bytes, now: float) -> frozenset[str]:
        if not payload:  # a cleared retained map (a swarm being reset): keep what we have
            return frozenset()
        published = validate_map(_decode(payload, self.limits.map_bytes, "map",
                                          v_required=False))
        # A deposed leader may publish late: never go back to an older map (protocol).
        if self.map is not None and published["version"] <= self.map["version"]:
            return frozenset()
        self.map, self.map_at = published, now
        for record in self.nodes.values():
            self._update_convergence(record, now)
        return frozenset({"map", "health"})

    def _ingest_event(self, payload: bytes, now: float) -> frozenset[str]:
        event = validate_event(_decode(payload, self.limits.event_bytes, "event"))
        self.add_event(event)
        return frozenset({"events"})

    def add_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Append to the event log (also used for the ground station's own events)."""
        self.event_seq += 1
        event = {"seq": self.event_seq, **event}
        self.events.append(event)
        return event

    def _update_convergence(self, record: NodeRecord, now: float) -> None:
        version = self.map["version"] if self.map else None
        status = record.status
        if version is None or status is None or not status.get("online"):
            record.behind_since = record.fc_behind_since = None
            return
        applied = status.get("map_version")
        if isinstance(applied, int) and applied < version:
            record.behind_since = record.behind_since if record.behind_since is not None else now
        else:
            record.behind_since = None
        held = self.fc_map_version(record)
        if status.get("fc") is None and record.plan is None:
            record.fc_behind_since = None  # no flight controller reported: nothing to judge
        elif held is None or held < version:
            record.fc_behind_since = (record.fc_behind_since
                                      if record.fc_behind_since is not None else now)
        else:
            record.fc_behind_since = None

    @staticmethod
    def fc_map_version(record: NodeRecord) -> int | None:
        """The map version whose plan this drone's flight controller holds."""
        candidates = []
        if record.plan and isinstance(record.plan.get("fc_map_version"), int):
            candidates.append(record.plan["fc_map_version"])
        fc = record.status.get("fc") if record.status else None
        if fc and isinstance(fc.get("map_version_held"), int):
            candidates.append(fc["map_version_held"])
        return max(candidates) if candidates else None

    # -------------------------------------------------------------------- read side

    def leader(self, now: float) -> NodeRecord | None:
        """The online, fresh node claiming leadership in the highest term."""
        best: NodeRecord | None = None
        for record in self.nodes.values():
            status = record.status
            if not self._fresh(record, now) or status is None or status["role"] != "leader":
                continue
            if best is None or status["term"] > best.status["term"]:  # type: ignore[index]
                best = record
        return best

    def _fresh(self, record: NodeRecord, now: float) -> bool:
        return (record.status is not None and bool(record.status.get("online"))
                and record.status_at is not None
                and now - record.status_at <= self.thresholds.status_stale_s)

    def recalled(self, name: str) -> bool | None:
        """Whether the committed map orders drone ``name`` home (None: not known, no
        map yet or one without recall state)."""
        recall = self.map["recall"] if self.map else None
        if recall is None:
            return None
        return recall["all"] or name in recall["drones"]

    def drones(self, now: float) -> list[dict[str, Any]]:
        """One entry per node: name, role, telemetry, staleness, FC map version,
        whether it is recalled."""
        leader = self.leader(now)
        out = []
        for node in sorted(self.nodes):
            record = self.nodes[node]
            status = record.status or {}
            telemetry = record.telemetry
            age = None if record.telemetry_at is None else round(now - record.telemetry_at, 2)
            out.append({
                "node": node,
                "name": record.name,
                "online": self._fresh(record, now),
                "role": status.get("role") if status.get("online") else "offline",
                "leader": leader is record,
                "term": status.get("term"),
                "telemetry": telemetry,
                "telemetry_age_s": age,
                "stale": age is None or age > self.thresholds.telemetry_stale_s,
                "status_age_s": (None if record.status_at is None
                                 else round(now - record.status_at, 2)),
                "link_score": (telemetry or {}).get("link_score", status.get("link_score")),
                "map_version": status.get("map_version"),
                "fc_map_version": self.fc_map_version(record),
                "fc_connected": self._fc_connected(record),
                "plan_status": (record.plan or {}).get("status"),
                "recalled": self.recalled(record.name),
                "track": [list(p) for p in record.track],
            })
        return out

    def plans(self) -> list[dict[str, Any]]:
        return [{"node": n, "name": r.name, **{k: v for k, v in r.plan.items()
                                               if k not in ("items", "node", "name")},
                 "exportable": True}
                for n, r in sorted(self.nodes.items()) if r.plan is not None]

    @staticmethod
    def _fc_connected(record: NodeRecord) -> bool | None:
        if record.telemetry and record.telemetry.get("fc_connected") is not None:
            return bool(record.telemetry["fc_connected"])
        fc = record.status.get("fc") if record.status else None
        return None if fc is None else bool(fc.get("connected"))

    def health(self, now: float) -> dict[str, Any]:
        """The health panel: leader, term, commit, per-node rows and alerts."""
        leader = self.leader(now)
        leader_status = leader.status if leader else None
        peers = (leader_status or {}).get("peers") or {}
        version = self.map["version"] if self.map else None
        rows = []
        for node in sorted(self.nodes):
            record = self.nodes[node]
            status = record.status or {}
            peer = peers.get(node) or {}
            rows.append({
                "node": node,
                "name": record.name,
                "online": self._fresh(record, now),
                "role": status.get("role") if status.get("online") else "offline",
                "term": status.get("term"),
                "commit": status.get("commit"),
                "applied": status.get("applied"),
                "map_version": status.get("map_version"),
                "fc_map_version": self.fc_map_version(record),
                "fc_connected": self._fc_connected(record),
                "lag": 0 if record is leader else peer.get("lag"),
                "last_contact_ms": 0 if record is leader else peer.get("last_contact_ms"),
                "status_age_s": (None if record.status_at is None
                                 else round(now - record.status_at, 2)),
            })
        return {
            "swarm": self.swarm,
            "broker_connected": self.broker_connected,
            "leader": None if leader is None else {"node": leader.node, "name": leader.name},
            "term": (leader_status or {}).get("term", self._max_term or None),
            "commit": (leader_status or {}).get("commit"),
            "map_version": version,
            "recall": self.map["recall"] if self.map else None,
            "nodes": rows,
            "alerts": [a.to_json() for a in self.alerts(now)],
            "received": self.received,
            "dropped": sum(self.drops.values()),
            "last_drop": self.last_drop or None,
        }

    def alerts(self, now: float) -> list[Alert]:
        t = self.thresholds
        out: list[Alert] = []
        if not self.broker_connected:
            out.append(Alert("broker", None, "ground station is not connected to the broker"))
        recent = [term for when, term in self._terms if now - when <= t.elections_window_s]
        if len(recent) >= t.elections_max:
            out.append(Alert("elections", None,
                             f"{len(recent)} new terms in the last {t.elections_window_s:.0f} s "
                             f"(now term {self._max_term}): elections too often"))
        if self.nodes and self.leader(now) is None:
            out.append(Alert("no_leader", None, "no node reports being leader"))
        leader = self.leader(now)
        peers = (leader.status or {}).get("peers", {}) if leader else {}
        version = self.map["version"] if self.map else None
        for node in sorted(self.nodes):
            record = self.nodes[node]
            name = record.name
            if not self._fresh(record, now):
                if record.status is not None and not record.status.get("online"):
                    why = "offline (its last will)"
                elif record.status_at is None:
                    why = "no status received"
                else:
                    why = f"no status for {now - record.status_at:.0f} s"
                out.append(Alert("unreachable", node, f"{name} unreachable: {why}"))
                continue
            contact = (peers.get(node) or {}).get("last_contact_ms")
            if record is not leader and isinstance(contact, (int, float)) \
                    and contact > t.peer_contact_s * 1000:
                out.append(Alert("unreachable", node,
                                 f"leader has not heard {name} for {contact / 1000:.1f} s"))
            if self._fc_connected(record) is False:
                out.append(Alert("fc_link", node, f"{name}: flight-controller link lost"))
            if version is not None and record.behind_since is not None \
                    and now - record.behind_since > t.converge_s:
                out.append(Alert("not_converged", node,
                                 f"{name} has applied map v{record.status['map_version']} "  # type: ignore[index]
                                 f"< v{version} for {now - record.behind_since:.0f} s"))
            elif version is not None and record.fc_behind_since is not None \
                    and now - record.fc_behind_since > t.converge_s:
                held = self.fc_map_version(record)
                out.append(Alert("not_converged", node,
                                 f"{name}'s flight controller holds the plan of "
                                 f"{'no map' if held is None else f'map v{held}'} < v{version} "
                                 f"for {now - record.fc_behind_since:.0f} s"))
        return out

    def map_doc(self) -> dict[str, Any]:
        """The committed map as GeoJSON, or an empty collection with version null."""
        if self.map is None:
            return {"type": "FeatureCollection", "features": [], "version": None}
        return self.map["doc"]
