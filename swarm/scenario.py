"""The demo's wildfire scenario: what happens, in order, to the swarm's map.

A scenario is data: phases of actions (a drone proposes a command, the leader is
crashed, the crashed drone restarts...). The driver (:mod:`swarm.demo`) runs each
phase's actions, then waits until every proposed command has its result before the
next phase starts, so the story reads the same whatever the election timings.

The geography is laid out in metres in a local East-North-Up frame (pymap3d) around
an origin in the Sierra Nevada foothills, and converted to the map's [lon, lat]. The
seed jitters fire outlines and survivor positions; the story's turning points (a
route becomes unsafe, a survivor is inside the fire) hold for every seed by
construction.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from .evacmap import (
    Command,
    DroneTask,
    LocalFrame,
    ReportSurvivor,
    SetDroneTask,
    SetRoute,
    SetSearchArea,
    SetZone,
    SurvivorStatus,
    UpdateSurvivor,
    ZoneStatus,
)
from .evacmap.commands import LonLat, LonLatAlt

__all__ = [
    "ORIGIN_LAT",
    "ORIGIN_LON",
    "START_TIME_MS",
    "Action",
    "CrashLeader",
    "MarkCrashedDrone",
    "Phase",
    "Propose",
    "ProposeRaw",
    "RestartCrashed",
    "Scenario",
    "Wait",
    "wildfire_scenario",
]

ORIGIN_LAT, ORIGIN_LON = 39.7596, -121.6219
BASE_ALT_M = 540.0  # ground level at the staging area, metres above mean sea level
# Scenario time: proposers stamp commands with scenario time (ms since the Unix epoch),
# starting here and advancing with virtual ticks; apply never reads a clock.
START_TIME_MS = 1_764_208_800_000  # 2025-11-27 02:00:00 UTC


@dataclass(frozen=True, slots=True)
class Propose:
    """Drone ``by`` proposes ``command`` through its client session; ``by=None`` lets
    the driver pick a drone that is not the leader (so the command survives a leader
    crash and is retried through its session)."""

    by: str | None
    command: Command
    note: str


@dataclass(frozen=True, slots=True)
class ProposeRaw:
    """Drone ``by`` tries to propose a raw JSON object; validation before proposing
    (``parse_command``, then ``EvacuationMap.check`` against the drone's own map) must
    reject it (the demo shows the message), so nothing reaches the log."""

    by: str
    obj: dict[str, Any]
    note: str


@dataclass(frozen=True, slots=True)
class CrashLeader:
    """Power-cut the current leader: it loses everything but its storage."""

    note: str


@dataclass(frozen=True, slots=True)
class MarkCrashedDrone:
    """Another drone updates the crashed drone's entry (alive or not)."""

    alive: bool
    note: str


@dataclass(frozen=True, slots=True)
class RestartCrashed:
    """The crashed drone's companion computer boots again and catches up."""

    note: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Let ``ticks`` of virtual time pass."""

    ticks: int
    note: str = ""


Action: TypeAlias = Propose | ProposeRaw | CrashLeader | MarkCrashedDrone | RestartCrashed | Wait


@dataclass(frozen=True, slots=True)
class Phase:
    title: str
    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    drones: tuple[str, ...]
    homes: dict[str, tuple[float, float, float]]
    phases: tuple[Phase, ...]


def wildfire_scenario(seed: int, drones: Sequence[str]) -> Scenario:
    """The demo story for ``drones`` (3 or more ids), jittered by ``seed``."""
    if len(drones) < 3:
        raise ValueError("the wildfire scenario needs at least 3 drones")
    rng = random.Random(seed)
    frame = LocalFrame(ORIGIN_LAT, ORIGIN_LON)

    def ll(east: float, north: float) -> LonLat:
        return frame.point_to_geodetic(east, north)

    def lla(east: float, north: float, alt_m: float) -> LonLatAlt:
        return (*ll(east, north), alt_m)

    def blob(cx: float, cy: float, radius: float, n: int = 14) -> tuple[LonLat, ...]:
        # Star-shaped about its centre (radius jitter only), hence always a simple ring.
        ring = []
        for i in range(n):
            r = radius * rng.uniform(0.88, 1.12)
            a = 2 * math.pi * i / n
            ring.append(ll(cx + r * math.cos(a), cy + r * math.sin(a)))
        return tuple(ring)

    def jitter(metres: float) -> float:
        return rng.uniform(-metres, metres)

    t = START_TIME_MS

    def at(minutes: float) -> int:
        return t + int(minutes * 60_000)

    d = list(drones)

    def who(i: int) -> str:
        # Parts written for five drones; with fewer, the roles wrap around.
        return d[i % len(d)]

    homes = {name: lla(-250.0 + 12.0 * i, -250.0, BASE_ALT_M) for i, name in enumerate(d)}
    # Sized so five drones can survey it within one battery (see docs/planner.md).
    area = (ll(0, 0), ll(1500, 0), ll(1500, 1000), ll(0, 1000))
    skyway = (lla(-300, 500, 30.0), lla(750, 500 + jitter(20), 30.0), lla(1800, 500, 30.0))
    south_road = (lla(-300, -320, 30.0), lla(1800, -320, 30.0))
    mill_road = (lla(-150, -300, 30.0), lla(-150, 400, 35.0), lla(-250, 1100, 40.0))
    s1 = ll(400 + jitter(60), 250 + jitter(60))
    s2_centre = (1200 + jitter(40), 220 + jitter(30))
    s2 = ll(s2_centre[0] + jitter(40), s2_centre[1] + jitter(40))
    s3 = ll(550 + jitter(30), 930 + jitter(30))

    phases = (
        Phase("Mission set-up", (
            Propose(who(0), SetSearchArea(area), "search area: 1.5 km x 1 km of foothills"),
            *(Propose(name, SetDroneTask(name, DroneTask.SEARCH, True, False, homes[name]),
                      f"{name} joins: search, home at the staging area") for name in d),
            Propose(who(0), SetRoute("skyway", skyway, 0),
                    "evacuation route 'skyway' (priority 0)"),
            Propose(who(1), SetRoute("south-road", south_road, 2),
                    "evacuation route 'south-road' (priority 2)"),
        )),
        Phase("Fire spotted, first sightings", (
            Propose(who(1), SetZone("z-ridge", blob(750, 820, 120), ZoneStatus.BURNING, who(1),
                                  at(3)), "fire on the ridge (burning), north of the skyway"),
            Propose(who(2), SetZone("z-scar", blob(250, 780, 70, 10), ZoneStatus.BURNED, who(2),
                                  at(3.5)), "old burn scar (burned)"),
            Propose(who(2), ReportSurvivor("s-farm", s1, 3, 0.72, who(2), at(4)),
                    "3 people at a farmhouse"),
            # Two drones spot the same farmhouse: both proposals are valid when made;
            # whichever commits second is rejected by apply on every drone alike.
            Propose(who(4), ReportSurvivor("s-farm", s1, 2, 0.6, who(4), at(4.1)),
                    "the same farmhouse, seen by a second drone"),
            ProposeRaw(who(3), {"type": "set_zone", "id": "z-bad",
                              "polygon": [list(ll(0, 0)), list(ll(100, 100)),
                                          list(ll(100, 0)), list(ll(0, 100))],
                              "status": "burning", "source": who(3), "time_ms": at(4.2)},
                       "a garbled (self-crossing) fire outline"),
            ProposeRaw(who(0), {"type": "update_survivor", "id": "s-ghost", "reporter": who(0),
                                "time_ms": at(4.3), "status": "confirmed"},
                       "to confirm a survivor nobody reported"),
        )),
        Phase("The fire grows across the skyway", (
            Propose(who(1), SetZone("z-ridge", blob(750, 640, 260), ZoneStatus.BURNING, who(1),
                                  at(9)), "ridge fire grows south over the skyway"),
            Propose(who(3), SetZone("z-creek", blob(*s2_centre, 160), ZoneStatus.BURNING, who(3),
                                  at(9.5)), "new fire at the creek"),
            Propose(who(3), ReportSurvivor("s-creek", s2, 2, 0.9, who(3), at(10)),
                    "2 people at the creek, inside the fire"),
        )),
        Phase("The leader goes down with commands in flight", (
            Propose(None, UpdateSurvivor("s-farm", who(4), at(13),
                                         status=SurvivorStatus.CONFIRMED, count=4),
                    "farmhouse sighting confirmed: 4 people"),
            Propose(None, ReportSurvivor("s-orchard", s3, 1, 0.55, who(2), at(14)),
                    "1 person in the orchard"),
            Wait(4, "the proposals reach the leader and start replicating"),
            CrashLeader("leader's companion computer loses power"),
            MarkCrashedDrone(False, "the crashed drone is marked down"),
            Propose(who(1), SetZone("z-scar", blob(250, 780, 70, 10), ZoneStatus.CLEARED,
                                  who(1), at(15)), "burn scar cleared"),
            Propose(who(3), SetZone("z-creek", blob(*s2_centre, 200), ZoneStatus.BURNING,
                                    who(3), at(16)), "creek fire grows"),
            Propose(who(2), SetRoute("mill-road", mill_road, 1),
                    "new evacuation route 'mill-road' west of the fires (priority 1)"),
        )),
        Phase("The crashed drone comes back", (
            RestartCrashed("companion computer reboots"),
            Wait(30, "it catches up from the leader"),
            MarkCrashedDrone(True, "back in the swarm"),
            Propose(who(0), UpdateSurvivor("s-farm", who(0), at(20),
                                           status=SurvivorStatus.RESCUED),
                    "farmhouse survivors rescued"),
        )),
    )
    return Scenario(tuple(d), homes, phases)
