"""Did a drone fly into fire? The demo's check of every drone's flown track against the
committed hazard zones (``burning`` / ``burned``) in force at the time.

Inputs, both as the swarm publishes them and stamped on arrival by the demo's monitor
(one clock, ``time.monotonic()``):

* the committed map (``swarm/<swarm>/map``, retained GeoJSON published by the leader on
  every applied change, docs/protocol.md): each version of each hazard zone's outline
  is a *window* from when it was seen until it is replaced, cleared or removed;
* each drone's telemetry positions (``telemetry/<node>``, lat/lon at a bounded rate).

A zone is **in force** for the drones ``reaction_s`` after it was committed: the time for
the new map to reach each flight controller as a re-planned mission and fence (commit
to every FC holding it: p99 under 1 s, docs/benchmarks.md) and for the aircraft to turn.
From then on, for every drone:

* the first position inside the window decides where the drone stands: inside means the
  fire was declared on top of it (**caught**, reported, not a violation: it did not fly
  in, and its plan's first leg leads out, swarm/flight/safety.py);
* after that, each leg between two consecutive positions is tested against the zone:
  a leg from outside that touches or crosses the zone is a **violation** (the drone
  flew into fire), even when both positions are outside (a corner cut between two
  samples). A drone inside keeps being inside until a position is outside again.

Decisions use the map's exact predicates (:mod:`swarm.evacmap.exact`: integer degE7
point-in-polygon, and a leg as a two-point route within 0 m), the same ones the agents
use for "route unsafe" and "survivor urgent". The map topic's GeoJSON carries
coordinates at 1e-6 degree (about 11 cm), the committed outline at 1e-7: the check is
that close to the committed zone, far below what telemetry positions resolve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from swarm.evacmap.exact import ExactRing, point_covered, route_within

__all__ = ["REACTION_S", "TrackChecker", "ZoneEvent"]

#: Seconds from a zone's commit until drones must keep out of it (see the docstring).
REACTION_S = 2.0


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    """A drone inside a hazard zone: ``kind`` is ``entered`` (a violation) or ``caught``
    (inside when the zone came in force). ``at`` is the monitor's clock."""

    kind: str
    node: int
    zone: str
    at: float
    lon: float
    lat: float

    def to_json(self, t0: float) -> dict[str, Any]:
        return {"kind": self.kind, "node": self.node, "zone": self.zone,
                "at_s": round(self.at - t0, 3), "lon": self.lon, "lat": self.lat}


@dataclass(slots=True)
class _Window:
    zone: str
    ring: ExactRing
    outline: tuple[tuple[float, float], ...]
    since: float             # committed (seen on the map topic)
    until: float | None      # replaced, cleared or removed; None while current


@dataclass(frozen=True, slots=True)
class _Fix:
    at: float
    lon: float
    lat: float


class TrackChecker:
    """Feed it map documents and positions (in arrival order); read ``violations``,
    ``caught`` and ``positions`` (samples per node). Not thread-safe: the caller holds
    its own lock (the demo's monitor does)."""

    def __init__(self, reaction_s: float = REACTION_S) -> None:
        if not (math.isfinite(reaction_s) and reaction_s >= 0):
            raise ValueError(f"reaction_s must be a finite number >= 0, not {reaction_s!r}")
        self.reaction_s = reaction_s
        self.violations: list[ZoneEvent] = []
        self.caught: list[ZoneEvent] = []
        self.positions: dict[int, int] = {}
        self.ignored = 0                       # malformed map documents or positions
        self._windows: list[_Window] = []
        self._current: dict[str, _Window] = {}
        self._map_version = -1
        self._last: dict[int, _Fix] = {}
        self._inside: dict[tuple[int, int], bool] = {}   # (node, window index) -> inside

    # -- the committed zones ---------------------------------------------------------

    def map_update(self, at: float, doc: Any) -> None:
        """A committed map document (GeoJSON FeatureCollection with ``map_version``).
        An older version than one already seen (a stale retained copy) is ignored."""
        hazards = _hazard_outlines(doc)
        version = doc.get("map_version") if isinstance(doc, dict) else None
        if hazards is None or type(version) is not int:
            self.ignored += 1
            return
        if version < self._map_version:
            return
        self._map_version = version
        for zid, window in list(self._current.items()):
            if hazards.get(zid) != window.outline:
                # Replaced: the old outline stays in force until the new one is.
                window.until = at + (self.reaction_s if zid in hazards else 0.0)
                del self._current[zid]
        for zid, outline in hazards.items():
            if zid in self._current:
                continue
            try:
                ring = ExactRing(outline)
            except Exception:  # noqa: BLE001 - a ring GEOS cannot take: not checkable
                self.ignored += 1
                continue
            window = _Window(zid, ring, outline, at, None)
            self._windows.append(window)
            self._current[zid] = window

    def current_hazards(self) -> list[tuple[tuple[float, float], ...]]:
        """The exterior rings (lon, lat) of the hazard zones in the newest map seen (in
        force or about to be): what a pilot flying by hand must keep clear of."""
        return [w.outline for w in self._current.values()]

    # -- the tracks --------------------------------------------------------------------

    def position(self, node: int, at: float, lon: Any, lat: Any) -> None:
        """Drone ``node`` was at (lon, lat) at ``at``; non-finite or off-globe is ignored."""
        if not (_finite(lon) and _finite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
            self.ignored += 1
            return
        fix = _Fix(at, float(lon), float(lat))
        before = self._last.get(node)
        self._last[node] = fix
        self.positions[node] = self.positions.get(node, 0) + 1
        for index, window in enumerate(self._windows):
            start = window.since + self.reaction_s
            if at < start or (window.until is not None and at > window.until):
                continue
            key = (node, index)
            was_inside = self._inside.get(key)
            inside = point_covered(window.ring, fix.lon, fix.lat)
            self._inside[key] = inside
            if was_inside is None or before is None:
                # The first position since the zone came in force (the one before it,
                # if any, came earlier: a window starts after its map arrived).
                if inside:
                    self.caught.append(ZoneEvent("caught", node, window.zone, at, fix.lon, fix.lat))
                continue
            if was_inside:
                continue   # leaving (or still in): where the fire caught it
            if inside or route_within(window.ring, [(before.lon, before.lat), (fix.lon, fix.lat)], 0.0):
                self.violations.append(ZoneEvent("entered", node, window.zone, at, fix.lon, fix.lat))

    def unchecked(self, nodes: range | list[int]) -> list[int]:
        """Nodes of which no position was received: their tracks could not be checked."""
        return [n for n in nodes if not self.positions.get(n)]


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _hazard_outlines(doc: Any) -> dict[str, tuple[tuple[float, float], ...]] | None:
    """{zone id: exterior ring} of the document's hazard zones; None if malformed."""
    if not isinstance(doc, dict) or not isinstance(doc.get("features"), list):
        return None
    out: dict[str, tuple[tuple[float, float], ...]] = {}
    for feature in doc["features"]:
        props = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(props, dict) or props.get("kind") != "zone":
            continue
        if props.get("hazard") is not True:
            continue
        zid, geometry = props.get("id"), feature.get("geometry")
        if not isinstance(zid, str) or not isinstance(geometry, dict) \
                or geometry.get("type") != "Polygon":
            return None
        rings = geometry.get("coordinates")
        if not isinstance(rings, list) or not rings or not isinstance(rings[0], list):
            return None
        ring = []
        for point in rings[0]:
            if not (isinstance(point, list) and len(point) >= 2 and _finite(point[0])
                    and _finite(point[1])):
                return None
            ring.append((float(point[0]), float(point[1])))
        if len(ring) < 4:
            return None
        out[zid] = tuple(ring)
    return out
