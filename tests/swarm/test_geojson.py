"""GeoJSON export: RFC 7946 rules, derived facts in properties, determinism."""

from __future__ import annotations

import json

import pytest

from swarm.evacmap import (
    EvacuationMap,
    LocalFrame,
    Recall,
    ReportSurvivor,
    Resume,
    SetDroneTask,
    SetRoute,
    SetSearchArea,
    SetZone,
    geojson_bytes,
    map_to_geojson,
    rfc7946_problems,
    write_geojson,
)

T = 1_764_208_800_000
FRAME = LocalFrame(38.0, -120.0)


def ll(east: float, north: float) -> list[float]:
    return list(FRAME.point_to_geodetic(east, north))


def rect(e0: float, n0: float, e1: float, n1: float) -> list[list[float]]:
    return [ll(e0, n0), ll(e1, n0), ll(e1, n1), ll(e0, n1)]


@pytest.fixture
def populated() -> EvacuationMap:
    m = EvacuationMap()
    commands = [
        SetSearchArea(list(reversed(rect(-1000, -1000, 5000, 5000)))),  # given clockwise
        SetZone("z1", rect(1500, -500, 2500, 500), "burning", "drone-1", T),
        SetZone("z2", rect(0, 2000, 800, 2600), "cleared", "drone-2", T),
        SetRoute("r1", [ll(0, 0) + [30.0], ll(4000, 0) + [40.0]], 1),
        SetRoute("r2", [ll(0, 4000) + [30.0], ll(4000, 4000) + [30.0]], 3),
        ReportSurvivor("s1", ll(2000, 0), 3, 0.8, "drone-1", T),
        ReportSurvivor("s2", ll(100, 100), 1, 0.4, "drone-3", T),
        SetDroneTask("drone-1", "search", True, False, ll(0, 0) + [312.0]),
    ]
    for i, command in enumerate(commands, 1):
        assert m.apply_command(i, command).ok
    return m


def by_id(doc: dict) -> dict[str, dict]:
    return {f["id"]: f for f in doc["features"]}


def test_export_satisfies_rfc7946(populated: EvacuationMap) -> None:
    doc = json.loads(geojson_bytes(populated))
    assert rfc7946_problems(doc) == []
    assert doc["type"] == "FeatureCollection"
    assert "crs" not in doc


def test_positions_are_lon_lat(populated: EvacuationMap) -> None:
    doc = map_to_geojson(populated)
    point = by_id(doc)["survivor:s1"]["geometry"]["coordinates"]
    assert point == pytest.approx(list(populated.survivors["s1"].position))
    assert point[0] < -119 and 37 < point[1] < 39  # longitude first


def test_rings_are_closed_and_counter_clockwise(populated: EvacuationMap) -> None:
    doc = map_to_geojson(populated)
    for fid in ("search_area:search_area", "zone:z1", "zone:z2"):
        ring = by_id(doc)[fid]["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) >= 4
        shoelace = sum(ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1]
                       for i in range(len(ring) - 1))
        assert shoelace > 0, fid


def test_properties_carry_status_and_derived_facts(populated: EvacuationMap) -> None:
    features = by_id(map_to_geojson(populated))
    assert features["zone:z1"]["properties"]["status"] == "burning"
    assert features["zone:z1"]["properties"]["hazard"] is True
    assert features["zone:z2"]["properties"]["hazard"] is False
    assert features["route:r1"]["properties"]["unsafe"] is True
    assert features["route:r1"]["properties"]["crosses"] == ["z1"]
    assert features["route:r1"]["properties"]["alt_m_above_home"] == [30.0, 40.0]
    assert features["route:r2"]["properties"]["unsafe"] is False
    assert features["survivor:s1"]["properties"]["urgent"] is True
    assert features["survivor:s2"]["properties"]["urgent"] is False
    assert features["drone_home:drone-1"]["properties"]["home_alt_m_amsl"] == 312.0


def test_export_is_identical_for_identical_maps(populated: EvacuationMap) -> None:
    copy = EvacuationMap()
    copy.restore(populated.snapshot())
    assert geojson_bytes(copy) == geojson_bytes(populated)
    assert map_to_geojson(copy.view()) == map_to_geojson(populated)


def test_bbox_covers_every_feature(populated: EvacuationMap) -> None:
    doc = map_to_geojson(populated)
    west, south, east, north = doc["bbox"]
    for feature in doc["features"]:
        coords = feature["geometry"]["coordinates"]
        flat = [coords] if feature["geometry"]["type"] == "Point" else (
            coords if feature["geometry"]["type"] == "LineString" else coords[0])
        for lon, lat in flat:
            assert west <= lon <= east and south <= lat <= north


def test_empty_map_exports_an_empty_collection() -> None:
    doc = map_to_geojson(EvacuationMap())
    assert doc["features"] == [] and rfc7946_problems(doc) == []


def test_write_geojson_writes_the_canonical_bytes(populated: EvacuationMap, tmp_path) -> None:
    path = write_geojson(populated, tmp_path / "map.geojson")
    assert path.read_bytes() == geojson_bytes(populated)
    assert not list(tmp_path.glob("*.tmp"))


# The checker itself must catch each rule being broken, or the first test proves nothing.

SQUARE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]


def feature(geometry: dict) -> dict:
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "geometry": geometry, "properties": {}}]}


@pytest.mark.parametrize(
    "doc, problem",
    [
        (feature({"type": "Polygon", "coordinates": [SQUARE[::-1]]}), "counter-clockwise"),
        (feature({"type": "Polygon", "coordinates": [SQUARE[:-1]]}), "not closed"),
        (feature({"type": "Polygon", "coordinates": [SQUARE[:3]]}), "four or more"),
        (feature({"type": "Polygon", "coordinates": [
            [[-1, -1], [2, -1], [2, 2], [-1, 2], [-1, -1]],
            [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8], [0.2, 0.2]]]}),
         "hole must be clockwise"),
        (feature({"type": "Point", "coordinates": [38.0, -120.0]}), "longitude, latitude"),
        (feature({"type": "Point", "coordinates": [1.0]}), "2 or 3 finite numbers"),
        (feature({"type": "LineString", "coordinates": [[0, 0]]}), "two or more"),
        (feature({"type": "Circle", "coordinates": [0, 0]}), "unknown geometry type"),
        ({**feature({"type": "Point", "coordinates": [0, 0]}), "crs": {}}, "'crs' member"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None}]},
         "'properties' member"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}}]},
         "'geometry' member"),
        ({"type": "FeatureCollection"}, "'features' array"),
        ({"type": "FeatureCollection", "features": [], "bbox": [0, 5, 1, 2]}, "south"),
        ([], "must be a JSON object"),
    ],
)
def test_checker_catches_each_rule(doc, problem: str) -> None:
    problems = rfc7946_problems(doc)
    assert any(problem in p for p in problems), problems


def test_checker_accepts_a_polygon_with_a_clockwise_hole() -> None:
    doc = feature({"type": "Polygon", "coordinates": [
        [[-1, -1], [2, -1], [2, 2], [-1, 2], [-1, -1]],
        [[0.2, 0.2], [0.2, 0.8], [0.8, 0.8], [0.8, 0.2], [0.2, 0.2]]]})
    assert rfc7946_problems(doc) == []


def _all_positions(doc):
    def walk(c):
        if isinstance(c[0], (int, float)):
            yield c
        else:
            for x in c:
                yield from walk(x)
    for f in doc["features"]:
        yield from walk(f["geometry"]["coordinates"])


def test_coordinates_carry_six_decimals_while_the_map_keeps_seven(populated):
    """Issue 8 / RFC 7946 section 11.2: ~10 cm is enough for GIS; the map keeps degE7."""
    doc = map_to_geojson(populated)
    assert rfc7946_problems(doc) == []
    for lon, lat in _all_positions(doc):
        assert round(lon, 6) == lon and round(lat, 6) == lat
    # The map itself still holds 7 decimals.
    assert any(round(p[0], 6) != p[0] for z in populated.zones.values() for p in z.ring)


def test_a_ring_that_six_decimals_would_collapse_keeps_seven():
    m = EvacuationMap()
    tiny = [[-120.0, 38.0], [-120.0000003, 38.0], [-120.0000003, 38.0000003]]  # ~3 cm
    m.apply_command(1, SetZone("speck", tiny, "burning", "drone-1", T))
    doc = map_to_geojson(m)
    assert rfc7946_problems(doc) == []
    ring = doc["features"][0]["geometry"]["coordinates"][0]
    assert len(ring) == 4 and ring[0] == ring[-1]


def test_recall_state_is_exported(populated: EvacuationMap) -> None:
    doc = map_to_geojson(populated)
    assert doc["recall"] == {"all": False, "drones": []}
    assert by_id(doc)["drone_home:drone-1"]["properties"]["recalled"] is False
    assert populated.apply_command(20, Recall(("drone-1",))).ok
    doc = map_to_geojson(populated)
    assert doc["recall"] == {"all": False, "drones": ["drone-1"]}
    assert by_id(doc)["drone_home:drone-1"]["properties"]["recalled"] is True
    assert populated.apply_command(21, Resume()).ok
    assert populated.apply_command(22, Recall()).ok  # all, including drones not yet on the map
    doc = map_to_geojson(populated)
    assert doc["recall"] == {"all": True, "drones": []}
    assert by_id(doc)["drone_home:drone-1"]["properties"]["recalled"] is True
    assert rfc7946_problems(doc) == []


def test_each_drones_committed_sector_is_exported(populated: EvacuationMap) -> None:
    from swarm.planner import PlannerConfig, propose_assignment

    assert populated.apply_command(30, SetDroneTask("drone-2", "search", True, False,
                                                    ll(3000, 0) + [300.0])).ok
    assignment = propose_assignment(populated.view(), PlannerConfig())
    assert populated.apply_command(31, assignment).ok
    doc = map_to_geojson(populated)
    assert rfc7946_problems(doc) == []
    sectors = {f["properties"]["id"]: f for f in doc["features"]
               if f["properties"]["kind"] == "sector"}
    assert sorted(sectors) == ["drone-1", "drone-2"]
    for drone, feature in sectors.items():
        assert feature["id"] == f"sector:{drone}" and feature["geometry"]["type"] == "MultiPolygon"
        assert len(feature["geometry"]["coordinates"]) == len(assignment.sector_of(drone))
        assert feature["properties"]["current"] is True
        assert feature["properties"]["epoch"] == assignment.epoch
        west, south, east, north = doc["bbox"]
        for polygon in feature["geometry"]["coordinates"]:
            for lon, lat in polygon[0]:
                assert west <= lon <= east and south <= lat <= north
    assert populated.apply_command(32, SetZone("z9", rect(100, 100, 200, 200), "burned", "d", T)).ok
    stale = {f["properties"]["id"]: f["properties"]["current"] for f in
             map_to_geojson(populated)["features"] if f["properties"]["kind"] == "sector"}
    assert stale == {"drone-1": False, "drone-2": False}  # a zone changed who does what
