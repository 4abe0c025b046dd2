"""Property tests (hypothesis) of the evacuation map.

- apply is deterministic: the same entries give byte-identical snapshots on two maps;
- snapshot then restore is the identity;
- an invalid entry changes nothing (snapshot bytes equal before and after);
- derived facts after any sequence equal a from-scratch recomputation, and agree with
  metric distances measured independently in a local frame;
- the GeoJSON export of any map satisfies RFC 7946.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.evacmap import (
    CommandError,
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
    UpdateSurvivor,
    ZoneStatus,
    encode_command,
    geojson_bytes,
    parse_command,
    rfc7946_problems,
)

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # same examples every run: tests stay deterministic
    suppress_health_check=[HealthCheck.too_slow],
)

LON0, LAT0 = -120.0, 38.0
FRAME = LocalFrame(LAT0, LON0)
T = 1_764_208_800_000

zone_ids = st.sampled_from(["z1", "z2", "z3", "z4"])
route_ids = st.sampled_from(["r1", "r2", "r3"])
survivor_ids = st.sampled_from(["s1", "s2", "s3"])
drone_ids = st.sampled_from(["drone-1", "drone-2", "drone-3"])
times = st.integers(T, T + 3_600_000)
# A 3 km square: dense enough that zones, routes and survivors often meet.
metres = st.floats(-1500, 1500, allow_nan=False)


def _lonlat(east: float, north: float) -> list[float]:
    return list(FRAME.point_to_geodetic(east, north))


@st.composite
def polygons(draw) -> list[list[float]]:
    """A simple polygon: vertices at jittered, evenly spread angles around a centre with
    random radii. Every angular gap is under pi, so the ring is star-shaped about the
    centre and cannot cross itself."""
    cx, cy = draw(metres), draw(metres)
    n = draw(st.integers(3, 12))
    jitter = draw(st.lists(st.floats(0, 0.4), min_size=n, max_size=n))
    radii = draw(st.lists(st.floats(100, 1500), min_size=n, max_size=n))
    angles = [2 * math.pi * (i + j) / n for i, j in enumerate(jitter)]
    return [_lonlat(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii)]


@st.composite
def paths(draw) -> list[list[float]]:
    """A polyline whose consecutive points are at least 10 m apart."""
    n = draw(st.integers(2, 6))
    points: list[list[float]] = []
    east, north = draw(metres), draw(metres)
    for _ in range(n):
        east += draw(st.floats(10, 2000)) * draw(st.sampled_from([-1, 1]))
        north += draw(st.floats(-2000, 2000))
        points.append(_lonlat(east, north) + [draw(st.floats(0, 200))])
    return points


statuses = st.sampled_from(list(ZoneStatus))

set_zones = st.builds(SetZone, zone_ids, polygons(), statuses, drone_ids, times)
set_routes = st.builds(SetRoute, route_ids, paths(), st.integers(0, 9))
reports = st.builds(ReportSurvivor, survivor_ids, st.builds(_lonlat, metres, metres),
                    st.integers(1, 20), st.floats(0, 1), drone_ids, times)
valid_commands = st.one_of(
    set_zones, set_routes, reports,
    st.builds(UpdateSurvivor, survivor_ids, drone_ids, times,
              position=st.builds(_lonlat, metres, metres),
              status=st.sampled_from(["reported", "confirmed", "rescued"])),
    st.builds(SetSearchArea, polygons()),
    st.builds(SetDroneTask, drone_ids, st.sampled_from(["search", "confirm", "idle"]),
              st.booleans(), st.booleans(), st.builds(lambda p: p + [300.0],
                                                      st.builds(_lonlat, metres, metres))),
    st.builds(RemoveZone, zone_ids),
    st.builds(RemoveRoute, route_ids),
    st.builds(RemoveSurvivor, survivor_ids),
    st.builds(RemoveDrone, drone_ids),
)
# Many of these are rejected by the map (unknown ids, backwards status): also valuable.
# Every sequence holds some zones, routes and reports (so unsafe routes and urgent
# survivors are common), shuffled among arbitrary other commands.
entries = st.tuples(
    st.lists(set_zones, min_size=1, max_size=5),
    st.lists(set_routes, min_size=1, max_size=3),
    st.lists(reports, min_size=1, max_size=3),
    st.lists(valid_commands, max_size=20),
).map(lambda parts: [encode_command(c) for part in parts for c in part]).flatmap(st.permutations)


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    obj = json.loads(data)
    fields = sorted(k for k in obj if k != "type")
    return st.one_of(
        st.just(json.dumps({**obj, "type": "no_such_command"}).encode()),
        st.just(json.dumps({**obj, "surprise": 1}).encode()),
        st.sampled_from(fields).map(lambda f: json.dumps({**obj, f: [999.0, -999.0]}).encode()),
        st.sampled_from(fields).map(
            lambda f: json.dumps({k: v for k, v in obj.items() if k != f}).encode()),
        st.just(data[: len(data) // 2]),
    )


invalid_entries = st.one_of(
    st.binary(max_size=200),
    valid_commands.map(encode_command).flatmap(_mutations),
)


def _apply_all(m: EvacuationMap, data: list[bytes], start: int = 1) -> list[bytes]:
    return [m.apply(start + i, d) for i, d in enumerate(data)]


@SETTINGS
@given(entries)
def test_apply_is_deterministic(data: list[bytes]) -> None:
    a, b = EvacuationMap(), EvacuationMap()
    assert _apply_all(a, data) == _apply_all(b, data)
    assert a.snapshot() == b.snapshot()


@SETTINGS
@given(entries)
def test_snapshot_then_restore_is_the_identity(data: list[bytes]) -> None:
    a = EvacuationMap()
    _apply_all(a, data)
    b = EvacuationMap()
    b.restore(a.snapshot())
    assert b.snapshot() == a.snapshot()
    assert dict(b.routes) == dict(a.routes)
    assert dict(b.survivors) == dict(a.survivors)
    # and the restored map keeps applying identically
    tail = [encode_command(RemoveZone("z1")), encode_command(RemoveSurvivor("s1"))]
    start = len(data) + 1
    assert _apply_all(a, tail, start) == _apply_all(b, tail, start)
    assert a.snapshot() == b.snapshot()


@SETTINGS
@given(entries)
def test_items_rebuilt_for_the_snapshot_are_the_validated_commands(data: list[bytes]) -> None:
    # The snapshot rebuilds each item's command without validating it again
    # (_Command.rebuilt): validating those values anew must change nothing.
    m = EvacuationMap()
    _apply_all(m, data)
    items = [*m.zones.values(), *m.routes.values(), *m.survivors.values(), *m.drones.values()]
    assert items
    for item in items:
        rebuilt = item.command()
        validated = type(rebuilt)(*(getattr(rebuilt, f.name) for f in dataclasses.fields(rebuilt)))
        assert validated == rebuilt
        assert encode_command(validated) == encode_command(rebuilt)
        assert parse_command(encode_command(rebuilt)) == rebuilt


@SETTINGS
@given(entries, invalid_entries)
def test_invalid_entry_changes_nothing(data: list[bytes], bad: bytes) -> None:
    m = EvacuationMap()
    _apply_all(m, data)
    try:
        parse_command(bad)
    except CommandError:
        pass
    else:  # a mutation that happened to stay valid is not what this test is about
        return
    before = m.snapshot()
    result = json.loads(m.apply(len(data) + 1, bad))
    assert result["ok"] is False and result["error"]
    assert m.snapshot() == before


@SETTINGS
@given(entries)
def test_rejected_entries_change_nothing(data: list[bytes]) -> None:
    m = EvacuationMap()
    for i, entry in enumerate(data, 1):
        before = m.snapshot()
        result = json.loads(m.apply(i, entry))
        if not result["ok"]:
            assert m.snapshot() == before


@SETTINGS
@given(entries)
def test_derived_facts_match_a_full_recomputation(data: list[bytes]) -> None:
    m = EvacuationMap()
    _apply_all(m, data)
    hazards = [z for z in m.zones.values() if z.status in (ZoneStatus.BURNING, ZoneStatus.BURNED)]
    burning = [z for z in m.zones.values() if z.status is ZoneStatus.BURNING]
    # Restoring the snapshot recomputes every fact from scratch: the same facts.
    fresh = EvacuationMap()
    fresh.restore(m.snapshot())
    assert {k: r.crosses for k, r in fresh.routes.items()} == \
        {k: r.crosses for k, r in m.routes.items()}
    assert {k: s.inside for k, s in fresh.survivors.items()} == \
        {k: s.inside for k, s in m.survivors.items()}
    for route in m.routes.values():
        # Independently, in a pymap3d ENU frame at the zone: clearly inside the margin
        # means unsafe, clearly outside means not (the exact decision sits between).
        for z in hazards:
            frame = LocalFrame.around(z.polygon)
            distance = frame.geometry_to_enu(z.polygon).distance(
                frame.geometry_to_enu(route.line))
            if distance < m.route_margin_m - 0.5:
                assert z.id in route.crosses
            elif distance > m.route_margin_m + 0.5:
                assert z.id not in route.crosses
        assert route.unsafe == bool(route.crosses)
    for s in m.survivors.values():
        expected = sorted(z.id for z in burning if z.polygon.covers(s.point))
        assert list(s.inside) == expected
        assert s.urgent == (bool(expected) and s.status.value != "rescued")


@SETTINGS
@given(entries)
def test_unsafe_agrees_with_metric_distance(data: list[bytes]) -> None:
    """Independent of the grown polygons: a route closer than the margin (minus a
    tolerance for the buffer's polygonal arcs) to a hazard is unsafe; one farther than
    the margin (plus tolerance) is not. Distances measured in the local ENU frame."""
    m = EvacuationMap()
    _apply_all(m, data)
    margin = m.route_margin_m
    for route in m.routes.values():
        line = FRAME.geometry_to_enu(route.line)
        for zone in m.zones.values():
            if zone.status is ZoneStatus.CLEARED:
                assert zone.id not in route.crosses
                continue
            distance = shapely.distance(line, FRAME.geometry_to_enu(zone.polygon))
            if distance < margin * 0.97:
                assert zone.id in route.crosses, (route.id, zone.id, distance)
            elif distance > margin * 1.03:
                assert zone.id not in route.crosses, (route.id, zone.id, distance)


@SETTINGS
@given(entries)
def test_geojson_export_of_any_map_satisfies_rfc7946(data: list[bytes]) -> None:
    m = EvacuationMap()
    _apply_all(m, data)
    doc = json.loads(geojson_bytes(m))
    assert rfc7946_problems(doc) == []
    expected = (len(m.zones) + len(m.routes) + len(m.survivors) + len(m.drones)
                + (m.search_area is not None))
    assert len(doc["features"]) == expected


@pytest.mark.slow
@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(entries, invalid_entries)
def test_soak_determinism_restore_and_invalid_entries(data: list[bytes], bad: bytes) -> None:
    """The main properties together, on four times as many examples (deselect with
    -m "not slow")."""
    a, b = EvacuationMap(), EvacuationMap()
    assert _apply_all(a, data) == _apply_all(b, data)
    snap = a.snapshot()
    assert snap == b.snapshot()
    c = EvacuationMap()
    c.restore(snap)
    assert c.snapshot() == snap
    result = json.loads(a.apply(len(data) + 1, bad))
    if not result["ok"]:
        assert a.snapshot() == snap
