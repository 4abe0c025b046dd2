"""What the evacuation-map simulation checks about the committed assignment (issue 13).

Independent of the map's own validation of ``set_assignment`` (a checker that only
repeated it could not catch the map's bugs): these are the properties a user relies
on, stated on the map a drone holds after applying an entry.

* :func:`assignment_problems` — who does what is complete and unambiguous: every
  survivor waiting for confirmation is owned by exactly one available drone, or is
  unserved with a reason (never both, never twice); every sector belongs to an
  available drone; sectors do not overlap, stay inside the search area and cover it,
  except where hazard zones (grown by the planner's margin) or unserved parts of the
  area (with a reason) explain the gap; no search area, no sectors.
* :func:`stale_problem` — the committed assignment was computed at the map's current
  assignment epoch when it was applied (a stale or superseded one is never applied).
* :class:`AssignmentLedger` — at every applied index, every node that applied it holds
  the same committed assignment (and map version and epoch): compared by digest.

"Available" is the map's rule: alive, not busy, not returning, not recalled.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import shapely

from swarm.evacmap import EvacuationMap, MapView, SurvivorStatus, encode_command
from swarm.evacmap.commands import DroneTask

__all__ = ["AssignmentLedger", "assignment_digest", "assignment_problems",
           "available_drones", "stale_problem"]

#: Overlap or gap below this fraction of the search area is rounding (sectors are
#: committed at 1e-7 degree), not a second owner or an unflown piece.
AREA_TOLERANCE = 1e-5
#: How far beyond a hazard zone the planner may leave the area unswept: its safety
#: margin (PlannerConfig.safety_margin_m, 50 m) with room for the buffer's segments.
HAZARD_ALLOWANCE_M = 60.0


def available_drones(view: MapView) -> set[str]:
    """Drones that may be given work: alive, not busy, not returning, not recalled."""
    return {d.id for d in view.drones.values()
            if d.alive and not d.busy and d.task is not DroneTask.RETURN
            and not view.recall.covers(d.id)}


def stale_problem(view: MapView) -> str | None:
    """The committed assignment must be the map's current one right after it was
    applied (``set_assignment`` does not move the epoch)."""
    a = view.assignment
    if a is not None and a.epoch != view.assignment_epoch:
        return (f"a stale assignment was applied: computed at epoch {a.epoch}, map at "
                f"epoch {view.assignment_epoch} (version {view.version})")
    return None


def assignment_problems(view: MapView) -> list[str]:
    """Everything wrong with ``view``'s committed assignment (empty when sound)."""
    a = view.assignment
    if a is None:
        return []
    problems: list[str] = []
    free = available_drones(view)
    for where, owners in (("sector", [d for d, _ in a.sectors]),
                          ("survivors", [d for d, _ in a.survivors])):
        for d in owners:
            if d not in free:
                problems.append(f"{where} given to {d!r}, which is not an available drone")
    unserved = dict(a.unserved)
    for item, reason in a.unserved:
        if not reason.strip():
            problems.append(f"unserved {item!r} has no reason")
    owners_of: dict[str, list[str]] = {}
    for d, ids in a.survivors:
        for sid in ids:
            owners_of.setdefault(sid, []).append(d)
    pending = {k for k, s in view.survivors.items() if s.status is SurvivorStatus.REPORTED}
    for sid in sorted(pending | set(owners_of)):
        owners = owners_of.get(sid, [])
        marked = f"survivor:{sid}" in unserved
        if sid not in pending:
            problems.append(f"survivor {sid!r} is assigned to {owners} but is not waiting "
                            "for confirmation")
        elif len(owners) > 1:
            problems.append(f"survivor {sid!r} is owned by {len(owners)} drones: {owners}")
        elif owners and marked:
            problems.append(f"survivor {sid!r} is both owned by {owners[0]!r} and unserved")
        elif not owners and not marked:
            problems.append(f"survivor {sid!r} is neither owned by a drone nor unserved "
                            "with a reason")
    for item in unserved:
        if item.startswith("survivor:") and item.split(":", 1)[1] not in pending:
            problems.append(f"unserved {item!r} is not a survivor waiting for confirmation")
    problems.extend(_sector_problems(view, free, unserved))
    return problems


def _sector_problems(view: MapView, free: set[str], unserved: dict[str, str]) -> list[str]:
    a = view.assignment
    assert a is not None
    sectors = {d: shapely.MultiPolygon([shapely.Polygon(r[0], r[1:]) for r in polygons])
               for d, polygons in a.sectors}
    area_unserved = any(k == "search_area" or k.startswith("search_area:") for k in unserved)
    if view.search_area is None:
        return [f"sectors given to {sorted(sectors)} without a search area"] if sectors else []
    area = view.search_area.polygon
    if not sectors:
        if free and not area_unserved:
            return ["the search area is neither split among the available drones nor "
                    "unserved with a reason"]
        return []
    problems: list[str] = []
    tolerance = AREA_TOLERANCE * area.area
    ids = sorted(sectors)
    for i, d in enumerate(ids):
        outside = shapely.difference(sectors[d], area).area
        if outside > tolerance:
            problems.append(f"the sector of {d!r} reaches {outside / area.area:.2%} of the "
                            "search area's size outside it")
        for e in ids[i + 1:]:
            both = shapely.intersection(sectors[d], sectors[e]).area
            if both > tolerance:
                problems.append(f"sectors of {d!r} and {e!r} overlap ({both / area.area:.2%} "
                                "of the search area is owned twice)")
    if not area_unserved:
        gap = shapely.difference(area, shapely.union_all(list(sectors.values())))
        hazards = [z.polygon for z in view.zones.values() if z.is_hazard]
        if hazards and not gap.is_empty:
            lat = area.centroid.y
            grow = HAZARD_ALLOWANCE_M / (111_320.0 * max(math.cos(math.radians(lat)), 0.01))
            gap = shapely.difference(gap, shapely.buffer(shapely.union_all(hazards), grow))
        if gap.area > tolerance:
            problems.append(f"{gap.area / area.area:.2%} of the search area is owned by no "
                            "drone, outside every hazard zone, and not unserved with a reason")
    return problems


def assignment_digest(m: EvacuationMap | MapView) -> str:
    """What must be equal on every node at one applied index: map version, assignment
    epoch and the committed assignment's canonical bytes."""
    a = m.assignment
    body = b"-" if a is None else encode_command(a)
    return hashlib.sha256(b"%d/%d/" % (m.version, m.assignment_epoch) + body).hexdigest()


@dataclass
class _Seen:
    digest: str
    node: int


class AssignmentLedger:
    """The first node to apply an index records its digest; every other node that
    applies that index must match it (State Machine Safety for the assignment)."""

    def __init__(self) -> None:
        self._at: dict[int, _Seen] = {}
        self.compared = 0
        self._digest_cache: tuple[object, int, int, str] | None = None

    def digest(self, m: EvacuationMap) -> str:
        # The committed assignment object changes only when one is applied: hash its
        # bytes once per object, not once per applied entry.
        a = m.assignment
        cache = self._digest_cache
        if cache is not None and cache[0] is a and cache[1:3] == (m.version, m.assignment_epoch):
            return cache[3]
        value = assignment_digest(m)
        self._digest_cache = (a, m.version, m.assignment_epoch, value)
        return value

    def observe(self, nid: int, index: int, m: EvacuationMap) -> str | None:
        value = self.digest(m)
        seen = self._at.setdefault(index, _Seen(value, nid))
        if seen.node != nid:
            self.compared += 1
        if seen.digest != value:
            return (f"nodes {seen.node} and {nid} applied up to index {index} but hold "
                    f"different committed assignments (or map version / epoch)")
        return None
