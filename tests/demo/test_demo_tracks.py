"""The demo's no-drone-in-a-burned-zone check (swarm/demo_tracks.py): tracks against the
committed hazard zones in force, fed the map documents the agents publish
(``map_to_geojson`` of a real map) and telemetry positions."""

from __future__ import annotations

from typing import Any

import pytest

from swarm.demo_tracks import TrackChecker
from swarm.evacmap import EvacuationMap, SetZone, ZoneStatus, map_to_geojson

LON, LAT = 149.165, -35.363
D = 0.001                       # about 90 m of longitude, 110 m of latitude here
SQUARE = ((LON, LAT), (LON + D, LAT), (LON + D, LAT + D), (LON, LAT + D), (LON, LAT))


class _Map:
    def __init__(self) -> None:
        self.map = EvacuationMap()
        self.index = 0

    def zone(self, zid: str, ring: tuple[tuple[float, float], ...],
             status: ZoneStatus = ZoneStatus.BURNING) -> dict[str, Any]:
        self.index += 1
        result = self.map.apply_command(self.index, SetZone(zid, ring, status, "test", self.index))
        assert result.ok, result
        doc = map_to_geojson(self.map)
        return doc


def _checker(doc: dict[str, Any], at: float = 0.0) -> TrackChecker:
    tracks = TrackChecker(reaction_s=2.0)
    tracks.map_update(at, doc)
    return tracks


def test_a_track_through_a_zone_is_reported() -> None:
    tracks = _checker(_Map().zone("fire", SQUARE))
    west, mid = LON - D, LAT + D / 2
    for i, lon in enumerate([west, west + D / 2, LON + D / 2, LON + 2 * D]):   # straight through
        tracks.position(3, 10.0 + i, lon, mid)
    assert [(e.kind, e.node, e.zone, e.at) for e in tracks.violations] == [("entered", 3, "fire", 12.0)]
    assert tracks.caught == [] and tracks.positions == {3: 4}


def test_a_leg_that_cuts_a_corner_between_two_samples_is_reported() -> None:
    # Both positions outside, the straight leg between them crosses the zone's corner.
    tracks = _checker(_Map().zone("fire", SQUARE))
    tracks.position(1, 5.0, LON - D / 4, LAT + D / 4)            # west of the square
    tracks.position(1, 5.2, LON + D / 4, LAT - D / 4)            # south of it
    assert [e.zone for e in tracks.violations] == ["fire"]


def test_a_track_around_a_zone_is_not_reported() -> None:
    tracks = _checker(_Map().zone("fire", SQUARE))
    for i, (lon, lat) in enumerate([(LON - D, LAT - D), (LON + 2 * D, LAT - D),
                                    (LON + 2 * D, LAT + 2 * D), (LON - D, LAT + 2 * D)]):
        tracks.position(2, 3.0 + i, lon, lat)
    assert tracks.violations == [] and tracks.caught == []


def test_before_the_zone_is_in_force_nothing_counts_and_a_drone_caught_inside_may_leave() -> None:
    tracks = _checker(_Map().zone("fire", SQUARE), at=100.0)
    inside, outside = (LON + D / 2, LAT + D / 2), (LON + 3 * D, LAT + D / 2)
    tracks.position(4, 99.0, *outside)          # before the commit
    tracks.position(4, 101.0, *inside)          # within the reaction time: not yet judged
    tracks.position(4, 102.5, *inside)          # in force: the fire is on top of it
    tracks.position(4, 104.0, *outside)         # it leaves: fine
    assert tracks.violations == []
    assert [(e.kind, e.node, e.at) for e in tracks.caught] == [("caught", 4, 102.5)]
    tracks.position(4, 106.0, *inside)          # and flies back in: a violation
    assert [(e.kind, e.at) for e in tracks.violations] == [("entered", 106.0)]


def test_a_grown_zone_and_a_cleared_one() -> None:
    world = _Map()
    tracks = _checker(world.zone("fire", SQUARE), at=0.0)
    bigger = ((LON, LAT), (LON + 3 * D, LAT), (LON + 3 * D, LAT + D), (LON, LAT + D), (LON, LAT))
    tracks.map_update(10.0, world.zone("fire", bigger))       # the fire grows east
    east = (LON + 2 * D, LAT + D / 2)
    tracks.position(5, 11.0, LON + 2 * D, LAT + 2 * D)
    tracks.position(5, 11.5, *east)              # inside the new outline before it is in force
    assert tracks.violations == []
    tracks.position(5, 12.5, LON + 2 * D, LAT + 2 * D)
    tracks.position(5, 13.0, *east)              # now it is: flying in is a violation
    assert [(e.zone, e.at) for e in tracks.violations] == [("fire", 13.0)]

    tracks.map_update(20.0, world.zone("fire", bigger, ZoneStatus.CLEARED))
    tracks.position(5, 21.0, LON + 2 * D, LAT + 2 * D)
    tracks.position(5, 23.0, *east)              # a cleared zone is safe again
    assert len(tracks.violations) == 1


def test_burned_zones_count_and_stale_or_malformed_input_is_ignored() -> None:
    world = _Map()
    doc = world.zone("scar", SQUARE, ZoneStatus.BURNED)
    tracks = _checker(doc)
    older = dict(doc, map_version=doc["map_version"] - 1, features=[])
    tracks.map_update(1.0, older)                # a stale retained copy: ignored
    for bad in (None, [], {"map_version": 9}, {"map_version": "x", "features": []},
                {"map_version": 9, "features": [{"properties": {"kind": "zone", "hazard": True,
                                                                "id": "z"}, "geometry": None}]}):
        tracks.map_update(2.0, bad)
    for lon, lat in ((float("nan"), LAT), (LON, 91.0), ("149", LAT), (None, None), (True, LAT)):
        tracks.position(1, 3.0, lon, lat)
    assert tracks.ignored == 10 and tracks.positions == {}
    tracks.position(1, 5.0, LON - D, LAT + D / 2)
    tracks.position(1, 6.0, LON + D / 2, LAT + D / 2)
    assert [e.zone for e in tracks.violations] == ["scar"]
    assert tracks.unchecked([1, 2]) == [2]


def test_reaction_time_must_be_sane() -> None:
    with pytest.raises(ValueError, match="reaction_s"):
        TrackChecker(reaction_s=float("nan"))


# -- the demo's own geography: the wildfire scenario's zones, RTL and the pilot's route

def _scenario_map() -> tuple[EvacuationMap, list[dict[str, Any]]]:
    """The wildfire scenario's committed map after the fire grew (every command the
    scenario proposes, in order; the refused ones refused), and its GeoJSON."""
    from swarm.scenario import Propose, wildfire_scenario

    scenario = wildfire_scenario(1, [f"drone-{i}" for i in range(1, 6)])
    world, index = EvacuationMap(), 0
    for phase in scenario.phases[:3]:           # set-up, sightings, the fire grows
        for action in phase.actions:
            if isinstance(action, Propose):
                index += 1
                world.apply_command(index, action.command)
    return world, [map_to_geojson(world)]


def test_a_straight_line_home_across_the_grown_ridge_fire_is_detected() -> None:
    """What the demo first caught on real processes: a recalled drone in the far corner
    of the search area flying ArduCopter's RTL (a straight line) home to the staging area
    crosses the ridge fire. The track checker reports it; the pilot's route (and the
    flight side's planned way home) does not."""
    from swarm.demo_flyaway import pilot_route
    from swarm.geo import LocalFrame
    from swarm.scenario import ORIGIN_LAT, ORIGIN_LON

    world, (doc,) = _scenario_map()
    assert {"z-ridge", "z-creek"} <= {z for z in world.view().zones}
    frame = LocalFrame(ORIGIN_LAT, ORIGIN_LON)
    corner, home = frame.point_to_geodetic(1450, 950), frame.point_to_geodetic(-250, -250)
    tracks = _checker(doc, at=0.0)
    steps = 40
    for k in range(steps + 1):                   # 4 Hz telemetry along the straight line
        lon = corner[0] + (home[0] - corner[0]) * k / steps
        lat = corner[1] + (home[1] - corner[1]) * k / steps
        tracks.position(1, 5.0 + k / 4, lon, lat)
    assert [(e.kind, e.node, e.zone) for e in tracks.violations] == [("entered", 1, "z-ridge")]
    assert tracks.caught == []

    hazards = tracks.current_hazards()
    assert len(hazards) == 3                     # z-ridge, z-creek and the burned z-scar
    route = pilot_route(frame, corner, home, hazards)
    assert route is not None and len(route) > 1 and route[-1] == home
    careful = _checker(doc, at=0.0)
    points = [corner, *route]
    t = 5.0
    for a, b in zip(points, points[1:]):
        for k in range(1, 41):
            t += 0.25
            careful.position(2, t, a[0] + (b[0] - a[0]) * k / 40, a[1] + (b[1] - a[1]) * k / 40)
    assert careful.violations == [] and careful.caught == []
