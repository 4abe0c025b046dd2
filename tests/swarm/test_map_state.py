"""EvacuationMap scenarios: each command, removals, derived facts, snapshot/restore."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from consensus.fsm import StateMachine
from swarm.evacmap import (
    CommandError,
    DroneTask,
    EvacuationMap,
    LocalFrame,
    RemoveDrone,
    RemoveRoute,
    RemoveSurvivor,
    RemoveZone,
    ReportSurvivor,
    SetDroneTask,
    SetRoute,
    SetSearchArea,
    SetZone,
    SurvivorStatus,
    UpdateSurvivor,
    ZoneStatus,
    decode_result,
    encode_command,
)

T = 1_764_208_800_000
LON0, LAT0 = -120.0, 38.0


def enu_ring(frame: LocalFrame, east0: float, north0: float, east1: float, north1: float):
    """A rectangle given in metres in ``frame``, as a lon/lat ring."""
    e = np.array([east0, east1, east1, east0])
    n = np.array([north0, north0, north1, north1])
    lon, lat = frame.to_geodetic(e, n)
    return [[float(x), float(y)] for x, y in zip(lon, lat)]


def enu_point(frame: LocalFrame, east: float, north: float):
    return list(frame.point_to_geodetic(east, north))


FRAME = LocalFrame(LAT0, LON0)
# A 1 km square zone centred 2 km east of the origin.
ZONE_RING = enu_ring(FRAME, 1500, -500, 2500, 500)


class Driver:
    """Applies commands at consecutive log indices, as a Raft node would."""

    def __init__(self, fsm: EvacuationMap | None = None) -> None:
        self.map = fsm or EvacuationMap()
        self.index = 0

    def __call__(self, command):
        self.index += 1
        return self.map.apply_command(self.index, command)

    def raw(self, data: bytes):
        self.index += 1
        return decode_result(self.map.apply(self.index, data))


def route_at_north(north_m: float, rid: str = "r1") -> SetRoute:
    """An east-west route at ``north_m`` metres north of the origin, 0 to 4 km east."""
    a = enu_point(FRAME, 0, north_m)
    b = enu_point(FRAME, 4000, north_m)
    return SetRoute(rid, [a + [30.0], b + [30.0]], 2)


def test_implements_the_consensus_state_machine_protocol() -> None:
    assert isinstance(EvacuationMap(), StateMachine)


def test_empty_map() -> None:
    m = EvacuationMap()
    assert m.version == 0
    assert not m.zones and not m.routes and not m.survivors and not m.drones
    assert m.search_area is None


def test_set_zone_adds_and_replaces_a_zone() -> None:
    d = Driver()
    result = d(SetZone("z1", ZONE_RING, ZoneStatus.BURNING, "drone-1", T))
    assert result.ok and result.version == 1
    zone = d.map.zones["z1"]
    assert zone.status is ZoneStatus.BURNING and zone.source == "drone-1" and zone.time_ms == T
    assert zone.is_hazard
    assert zone.polygon.area > 0
    d(SetZone("z1", ZONE_RING, ZoneStatus.BURNED, "drone-2", T + 1))
    assert d.map.zones["z1"].status is ZoneStatus.BURNED
    assert d.map.version == 2


def test_cleared_zone_is_not_a_hazard() -> None:
    d = Driver()
    d(SetZone("z1", ZONE_RING, ZoneStatus.CLEARED, "drone-1", T))
    assert not d.map.zones["z1"].is_hazard


def test_remove_zone_and_removing_an_unknown_zone() -> None:
    d = Driver()
    d(SetZone("z1", ZONE_RING, "burning", "drone-1", T))
    assert d(RemoveZone("z1")).ok
    assert "z1" not in d.map.zones
    before = d.map.snapshot()
    result = d(RemoveZone("z1"))
    assert not result.ok and result.error == "remove_zone.id: no zone 'z1' on the map"
    assert d.map.snapshot() == before


def test_route_through_a_burning_zone_is_unsafe_and_becomes_safe_when_cleared() -> None:
    d = Driver()
    d(route_at_north(0))
    assert not d.map.routes["r1"].unsafe
    d(SetZone("z1", ZONE_RING, "burning", "drone-1", T))
    route = d.map.routes["r1"]
    assert route.unsafe and route.crosses == ("z1",)
    d(SetZone("z1", ZONE_RING, "cleared", "drone-1", T + 1))
    assert not d.map.routes["r1"].unsafe
    d(SetZone("z1", ZONE_RING, "burned", "drone-1", T + 2))
    assert d.map.routes["r1"].unsafe
    d(RemoveZone("z1"))
    assert not d.map.routes["r1"].unsafe


def test_route_within_the_margin_of_a_zone_is_unsafe_and_outside_it_is_safe() -> None:
    # Zone's north edge is at +500 m; default margin is 50 m.
    d = Driver()
    d(SetZone("z1", ZONE_RING, "burning", "drone-1", T))
    d(route_at_north(530, "near"))  # 30 m from the edge
    d(route_at_north(580, "far"))  # 80 m from the edge
    assert d.map.routes["near"].unsafe
    assert not d.map.routes["far"].unsafe


def test_margin_is_configurable() -> None:
    d = Driver(EvacuationMap(route_margin_m=200.0))
    d(SetZone("z1", ZONE_RING, "burning", "drone-1", T))
    d(route_at_north(650))  # 150 m from the edge
    assert d.map.routes["r1"].unsafe
    with pytest.raises(ValueError, match="route_margin_m"):
        EvacuationMap(route_margin_m=-1)


def test_margin_is_metres_on_the_ground_at_high_latitude() -> None:
    # At 70 degrees north a degree of longitude is a third of its equatorial length;
    # the grown zone must still reach ~margin metres east, not a third of it.
    frame = LocalFrame(70.0, 20.0)
    m = EvacuationMap(route_margin_m=100.0)
    m.apply_command(1, SetZone("z", enu_ring(frame, -500, -500, 500, 500), "burning", "d", T))
    grown = frame.geometry_to_enu(m.zones["z"].grown)
    west, south, east, north = grown.bounds
    # Slightly beyond 100 m along straight edges: the round buffer circumscribes the
    # true disc-grown zone (swarm.geo.circumscribing_buffer_distance).
    assert 600 <= east <= 601.5
    assert 600 <= north <= 601.5


def test_survivor_inside_a_burning_zone_is_urgent_until_rescued() -> None:
    d = Driver()
    inside = enu_point(FRAME, 2000, 0)
    d(ReportSurvivor("s1", inside, 2, 0.9, "drone-1", T))
    assert not d.map.survivors["s1"].urgent
    d(SetZone("z1", ZONE_RING, "burning", "drone-1", T))
    assert d.map.survivors["s1"].urgent and d.map.survivors["s1"].inside == ("z1",)
    d(UpdateSurvivor("s1", "drone-2", T + 5, status="rescued"))
    assert not d.map.survivors["s1"].urgent
    assert d.map.survivors["s1"].inside == ("z1",)


def test_survivor_in_a_burned_zone_is_not_urgent() -> None:
    # Urgency is about fire at the survivor now; a burned-out zone is a route hazard only.
    d = Driver()
    d(SetZone("z1", ZONE_RING, "burned", "drone-1", T))
    d(ReportSurvivor("s1", enu_point(FRAME, 2000, 0), 2, 0.9, "drone-1", T))
    assert not d.map.survivors["s1"].urgent


def test_survivor_moved_out_of_the_fire_is_no_longer_urgent() -> None:
    d = Driver()
    d(SetZone("z1", ZONE_RING, "burning", "drone-1", T))
    d(ReportSurvivor("s1", enu_point(FRAME, 2000, 0), 2, 0.9, "drone-1", T))
    assert d.map.survivors["s1"].urgent
    d(UpdateSurvivor("s1", "drone-1", T + 1, position=enu_point(FRAME, 0, 0)))
    assert not d.map.survivors["s1"].urgent


def test_update_survivor_changes_only_given_fields() -> None:
    d = Driver()
    d(ReportSurvivor("s1", [LON0, LAT0], 2, 0.5, "drone-1", T))
    d(UpdateSurvivor("s1", "drone-3", T + 9, count=5))
    s = d.map.survivors["s1"]
    assert (s.count, s.confidence, s.position, s.status) == (5, 0.5, (LON0, LAT0),
                                                             SurvivorStatus.REPORTED)
    assert (s.reporter, s.time_ms) == ("drone-3", T + 9)


def test_survivor_status_never_goes_backwards() -> None:
    d = Driver()
    d(ReportSurvivor("s1", [LON0, LAT0], 2, 0.5, "drone-1", T))
    assert d(UpdateSurvivor("s1", "d", T, status="confirmed")).ok
    result = d(UpdateSurvivor("s1", "d", T, status="reported"))
    assert not result.ok and "cannot go from 'confirmed' to 'reported'" in result.error
    assert d(UpdateSurvivor("s1", "d", T, status="rescued")).ok
    assert not d(UpdateSurvivor("s1", "d", T, status="confirmed")).ok
    assert d.map.survivors["s1"].status is SurvivorStatus.RESCUED


def test_reporting_a_known_survivor_again_is_rejected() -> None:
    d = Driver()
    d(ReportSurvivor("s1", [LON0, LAT0], 2, 0.5, "drone-1", T))
    result = d(ReportSurvivor("s1", [LON0, LAT0], 3, 0.5, "drone-2", T))
    assert not result.ok and "already reported" in result.error
    assert d.map.survivors["s1"].count == 2


def test_update_and_remove_of_unknown_survivor_are_rejected() -> None:
    d = Driver()
    assert "no survivor 's9'" in d(UpdateSurvivor("s9", "d", T, count=1)).error
    assert "no survivor 's9'" in d(RemoveSurvivor("s9")).error
    d(ReportSurvivor("s9", [LON0, LAT0], 1, 0.5, "d", T))
    assert d(RemoveSurvivor("s9")).ok and not d.map.survivors


def test_set_search_area_replaces_it() -> None:
    d = Driver()
    d(SetSearchArea(ZONE_RING))
    first = d.map.search_area
    d(SetSearchArea(enu_ring(FRAME, 0, 0, 3000, 3000)))
    assert d.map.search_area is not None and d.map.search_area != first
    assert d.map.search_area.polygon.area > first.polygon.area


def test_drone_task_set_replace_and_remove() -> None:
    d = Driver()
    d(SetDroneTask("drone-1", DroneTask.SEARCH, True, False, [LON0, LAT0, 300.0]))
    d(SetDroneTask("drone-1", DroneTask.CONFIRM, True, True, [LON0, LAT0, 300.0]))
    drone = d.map.drones["drone-1"]
    assert (drone.task, drone.alive, drone.busy, drone.home) == (
        DroneTask.CONFIRM, True, True, (LON0, LAT0, 300.0))
    assert d(RemoveDrone("drone-1")).ok and not d.map.drones
    assert "no drone 'drone-1'" in d(RemoveDrone("drone-1")).error


def test_remove_route() -> None:
    d = Driver()
    d(route_at_north(0))
    assert d(RemoveRoute("r1")).ok and not d.map.routes
    assert not d(RemoveRoute("r1")).ok


def test_garbage_entry_is_an_error_result_not_an_exception() -> None:
    d = Driver()
    d(SetZone("z1", ZONE_RING, "burning", "drone-1", T))
    before = d.map.snapshot()
    for data in (b"", b"\x00\x01", b'{"type":"set_zone"}', b'{"type":"nuke"}', b"[1,2]"):
        result = d.raw(data)
        assert not result.ok and result.error
    assert d.map.snapshot() == before
    assert d.map.version == 1


def test_version_is_the_index_of_the_last_accepted_entry() -> None:
    m = EvacuationMap()
    assert m.apply(3, encode_command(SetSearchArea(ZONE_RING))) == b'{"ok":true,"version":3}'
    assert m.version == 3
    assert json.loads(m.apply(7, encode_command(RemoveZone("nope"))))["ok"] is False
    assert m.version == 3
    m.apply(9, encode_command(SetSearchArea(ZONE_RING)))
    assert m.version == 9


def test_applying_an_old_index_is_a_contract_violation() -> None:
    m = EvacuationMap()
    m.apply(5, encode_command(SetSearchArea(ZONE_RING)))
    with pytest.raises(ValueError, match="greater than the last applied index 5"):
        m.apply(5, encode_command(SetSearchArea(ZONE_RING)))
    with pytest.raises(ValueError):
        m.apply(True, b"{}")  # type: ignore[arg-type]


def test_check_predicts_rejection_without_changing_the_map() -> None:
    m = EvacuationMap()
    with pytest.raises(CommandError, match="no zone 'z1'"):
        m.check(RemoveZone("z1"))
    m.check(SetSearchArea(ZONE_RING))
    assert m.search_area is None and m.version == 0


def test_readers_keep_a_consistent_picture_while_entries_are_applied() -> None:
    d = Driver()
    d(SetZone("z1", ZONE_RING, "burning", "drone-1", T))
    view = d.map.view()
    zones = d.map.zones
    d(RemoveZone("z1"))
    assert "z1" in zones and "z1" in view.zones and view.version == 1
    with pytest.raises(TypeError):
        zones["z2"] = zones["z1"]  # type: ignore[index]


def _populated() -> EvacuationMap:
    d = Driver()
    d(SetSearchArea(enu_ring(FRAME, -1000, -1000, 5000, 5000)))
    d(SetZone("z1", ZONE_RING, "burning", "drone-1", T))
    d(SetZone("z2", enu_ring(FRAME, 0, 2000, 800, 2600), "burned", "drone-2", T))
    d(route_at_north(0))
    d(route_at_north(3000, "r2"))
    d(ReportSurvivor("s1", enu_point(FRAME, 2000, 0), 3, 0.8, "drone-1", T))
    d(ReportSurvivor("s2", enu_point(FRAME, 100, 100), 1, 0.4, "drone-3", T))
    for i in range(1, 4):
        d(SetDroneTask(f"drone-{i}", "search", True, False, [LON0, LAT0, 300.0]))
    return d.map


def test_restore_of_a_snapshot_is_the_identity() -> None:
    m = _populated()
    data = m.snapshot()
    other = EvacuationMap()
    other.restore(data)
    assert other.snapshot() == data
    assert other.version == m.version
    assert dict(other.zones) == dict(m.zones)
    assert dict(other.routes) == dict(m.routes)
    assert dict(other.survivors) == dict(m.survivors)
    assert dict(other.drones) == dict(m.drones)
    assert other.search_area == m.search_area
    assert other.routes["r1"].unsafe and other.survivors["s1"].urgent


def test_snapshot_format_is_documented_json() -> None:
    obj = json.loads(_populated().snapshot())
    assert obj["format"] == "evacmap/4"
    assert set(obj) == {"format", "version", "search_area", "zones", "routes", "survivors",
                        "drones", "assignment_epoch", "assignment", "recall", "launch"}
    assert obj["recall"] == {"all": False, "drones": []}
    assert obj["launch"] == []
    assert [z["id"] for z in obj["zones"]] == ["z1", "z2"]
    assert all(z["type"] == "set_zone" for z in obj["zones"])
    assert obj["survivors"][0]["status"] == "reported"


def test_apply_continues_after_restore() -> None:
    m = EvacuationMap()
    m.restore(_populated().snapshot())
    assert m.apply_command(m.version + 1, RemoveZone("z1")).ok
    assert not m.routes["r1"].unsafe


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda o: o.update(format="evacmap/0"), "snapshot.format"),
        (lambda o: o.update(version=-1), "snapshot.version"),
        (lambda o: o.update(version="3"), "snapshot.version"),
        (lambda o: o.pop("drones"), "missing keys"),
        (lambda o: o.update(extra=1), "unexpected keys"),
        (lambda o: o["zones"][0].update(status="smoking"), r"snapshot.zones\[0\]: set_zone.status"),
        (lambda o: o["zones"].reverse(), "unique and sorted"),
        (lambda o: o["routes"].append(o["routes"][0]), "unique and sorted"),
        (lambda o: o["survivors"].__setitem__(0, {"type": "remove_zone", "id": "x"}),
         "expected a report_survivor"),
        # Entries with no ``id`` (another command kind, or not an object at all) must be
        # rejected before the ids are compared, not fail with AttributeError.
        (lambda o: o["zones"].__setitem__(0, {"type": "set_search_area",
                                             "polygon": o["search_area"]}),
         r"snapshot.zones\[0\]: expected a set_zone"),
        (lambda o: o["drones"].__setitem__(0, "drone-1"),
         r"snapshot.drones\[0\]: expected a set_drone_task"),
        (lambda o: o["routes"].__setitem__(0, None), r"snapshot.routes\[0\]: expected a set_route"),
        (lambda o: o.update(search_area=[[0, 0], [1, 1]]), "snapshot.search_area"),
        (lambda o: o["drones"][0]["home"].__setitem__(0, 500), "longitude 500"),
        (lambda o: o["zones"][0]["polygon"].reverse(), "canonical form"),
    ],
)
def test_restore_rejects_bad_snapshots_and_leaves_the_map_unchanged(mutate, message) -> None:
    source = _populated()
    obj = json.loads(source.snapshot())
    mutate(obj)
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    target = Driver()
    target(SetSearchArea(ZONE_RING))
    before = target.map.snapshot()
    with pytest.raises(CommandError, match=message):
        target.map.restore(data)
    assert target.map.snapshot() == before


@pytest.mark.parametrize("data", [b"", b"\xff", b"null", b"[]", b"{}", b'{"format":1}'])
def test_restore_rejects_garbage(data: bytes) -> None:
    m = _populated()
    before = m.snapshot()
    with pytest.raises(ValueError):
        m.restore(data)
    assert m.snapshot() == before


def test_non_canonical_whitespace_snapshot_is_rejected() -> None:
    m = _populated()
    pretty = json.dumps(json.loads(m.snapshot()), indent=2).encode()
    with pytest.raises(CommandError, match="canonical form"):
        EvacuationMap().restore(pretty)


def test_route_crossing_is_computed_against_the_grown_zone_not_its_bounding_box() -> None:
    # A diagonal route passing the zone's corner at ~100 m (beyond the 50 m margin)
    # would hit the zone's bounding box grown by 50 m only if bounds were used.
    d = Driver()
    d(SetZone("z1", ZONE_RING, "burning", "drone-1", T))
    corner_e, corner_n = 2500, 500
    offset = 100 / np.sqrt(2)
    a = enu_point(FRAME, corner_e + offset - 500, corner_n + offset + 500)
    b = enu_point(FRAME, corner_e + offset + 500, corner_n + offset - 500)
    d(SetRoute("diag", [a + [20.0], b + [20.0]], 0))
    line = FRAME.geometry_to_enu(d.map.routes["diag"].line)
    zone = FRAME.geometry_to_enu(d.map.zones["z1"].polygon)
    assert shapely.distance(line, zone) == pytest.approx(100, abs=1)
    assert not d.map.routes["diag"].unsafe


def test_map_full_rejects_new_ids_but_allows_replacing_existing(monkeypatch) -> None:
    import swarm.evacmap.state as state

    monkeypatch.setattr(state, "MAX_DRONES", 2)
    d = Driver()
    for i in range(2):
        assert d(SetDroneTask(f"d{i}", "idle", True, False, [LON0, LAT0, 0.0])).ok
    result = d(SetDroneTask("d9", "idle", True, False, [LON0, LAT0, 0.0]))
    assert not result.ok and "maximum of 2 drones" in result.error
    assert d(SetDroneTask("d0", "search", True, False, [LON0, LAT0, 0.0])).ok
