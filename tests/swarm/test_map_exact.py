"""Derived facts decided exactly (issue 13): the same answer on every platform, right
at the thresholds where floating point would differ in the last bit."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import shapely

import swarm.evacmap.exact as exact
import swarm.geo
from swarm.evacmap import (
    EvacuationMap,
    ReportSurvivor,
    SetRoute,
    SetSearchArea,
    SetZone,
    decode_result,
    encode_command,
)
from swarm.evacmap.exact import (
    ExactRing,
    extent_nm,
    point_covered,
    points_covered,
    polygon_problem,
    ring_problem,
    route_within,
)

T = 1_764_208_800_000
RING = ((-120.0, 38.0), (-119.99, 38.0), (-119.99, 38.01), (-120.0, 38.01), (-120.0, 38.0))


def test_a_survivor_exactly_on_the_edge_or_a_corner_is_inside():
    zone = ExactRing(RING)
    assert point_covered(zone, -119.995, 38.0)  # on the south edge
    assert point_covered(zone, -119.99, 38.01)  # a corner
    assert point_covered(zone, -119.995, 38.005)
    assert not point_covered(zone, -119.995, 37.9999999)  # one degE7 south of the edge
    assert not point_covered(zone, -119.9899999, 38.005)
    got = points_covered(zone, np.array([[-119.995, 38.0], [-119.995, 37.9999999],
                                         [-119.995, 38.005], [-121.0, 38.0]]))
    assert got.tolist() == [True, False, True, False]


def test_a_route_at_the_margin_is_decided_exactly_on_the_integer_frame():
    zone = ExactRing(RING)
    ky = zone.ky  # nanometres per degE7 of latitude
    # A route due north of the zone's north edge, d degE7 away: its distance in the
    # zone's frame is exactly d * ky nanometres.
    for d in (440, 449, 450, 451, 460):
        lat = 38.01 + d * 1e-7
        route = [(-119.999, lat), (-119.991, lat)]
        margin_m = 450 * ky / 1e9
        assert route_within(zone, route, margin_m) == (d <= 450), d


def test_the_exact_path_is_what_decides_near_the_threshold(monkeypatch):
    """With GEOS's fast path made to lie by a centimetre, the answer is unchanged:
    near the threshold only the integer predicate decides."""
    zone = ExactRing(RING)
    lat = 38.01 + 450 * 1e-7
    route = [(-119.999, lat), (-119.991, lat)]
    margin_m = 450 * zone.ky / 1e9
    true_answer = route_within(zone, route, margin_m)
    real = shapely.distance
    for wobble in (-0.009, 0.009):
        monkeypatch.setattr(exact.shapely, "distance", lambda a, b, w=wobble: real(a, b) + w)
        assert route_within(zone, route, margin_m) == true_answer
    monkeypatch.setattr(exact.shapely, "distance", real)


def _path_within_all_pairs(path, ring, r2):  # type: ignore[no-untyped-def]
    """The exact rule tested on every point and segment pair (what route_within's
    fallback did before it left out the pairs GEOS puts clearly beyond the margin)."""
    if any(exact._covers(ring, p) for p in path):
        return True
    return any(exact._segments_meet(a, b, c, d) or exact._point_segment_within(a, c, d, r2)
               or exact._point_segment_within(b, c, d, r2)
               or exact._point_segment_within(c, a, b, r2)
               or exact._point_segment_within(d, a, b, r2)
               for a, b in zip(path, path[1:]) for c, d in zip(ring, ring[1:]))


def test_the_exact_fallback_checks_only_near_pairs_and_agrees_with_all_pairs():
    """Random rings and paths (nanometres, a few hundred metres across) with the radius
    set at, one nanometre either side of, or a few centimetres from their exact
    distance: the same verdict as the rule applied to every pair."""
    rng = random.Random(7)
    checked = {True: 0, False: 0}
    for _ in range(300):
        n = rng.randint(3, 12)
        centre, radius = rng.randint(0, 10**11), rng.randint(10**10, 10**11)
        ring = [(centre + int(radius * np.cos(2 * np.pi * k / n)),
                 centre + int(radius * np.sin(2 * np.pi * k / n))) for k in range(n)]
        ring.append(ring[0])
        path = [(rng.randint(-3 * 10**11, 4 * 10**11), rng.randint(-3 * 10**11, 4 * 10**11))
                for _ in range(rng.randint(2, 8))]
        line = shapely.LineString(np.array(path, dtype=float))
        d = int(shapely.distance(shapely.Polygon(np.array(ring, dtype=float)), line))
        for r in (d, d - 1, d + 1, max(0, d - rng.randint(0, 3 * 10**7)), d + rng.randint(0, 3 * 10**7)):
            want = _path_within_all_pairs(path, ring, r * r)
            assert exact._path_within_exact(path, ring, r * r) == want, (path, ring, r)
            checked[want] += 1
    assert checked[True] > 300 and checked[False] > 300


def test_a_long_route_at_the_margin_of_a_large_zone_is_decided_in_a_few_pair_tests(monkeypatch):
    """A 512-point route 50.004 m outside a 511-vertex zone, all along it: GEOS cannot
    decide within its centimetre, so the integers do. Testing all 261 000 segment pairs
    in Python took about a second per route and zone (a committed set_zone beside 500
    such routes: minutes of every drone's apply); only the pairs GEOS puts near the
    margin are tested now."""
    calls = []
    real = exact._point_segment_within
    monkeypatch.setattr(exact, "_point_segment_within", lambda *a: calls.append(1) or real(*a))
    lat0, lon0, r = 38.0, -120.0, 500.0
    kx, ky = exact._scales(380_000_000)
    per_lon, per_lat = kx / 100, ky / 100  # metres per degree
    ring = [(round(lon0 + r * np.cos(2 * np.pi * k / 511) / per_lon, 7),
             round(lat0 + r * np.sin(2 * np.pi * k / 511) / per_lat, 7)) for k in range(511)]
    zone = ExactRing(ring + ring[:1])
    outer = r + 50.0158
    route = [(round(lon0 + outer * np.cos(2 * np.pi * k / 1024) / per_lon, 7),
              round(lat0 + outer * np.sin(2 * np.pi * k / 1024) / per_lat, 7)) for k in range(512)]
    path = exact.ExactPath(route)
    line = shapely.LineString(np.array([zone.project(p) for p in path.points], dtype=float) / 1e9)
    assert abs(float(shapely.distance(zone.local, line)) - 50.0) < exact._SLACK_M  # undecided
    assert route_within(zone, path, 50.0) is False
    assert 0 < len(calls) < 4 * 2000  # was 4 x 261 121


def test_points_near_a_zones_edge_are_decided_together_as_one_at_a_time():
    """_covers_many is _covers (boundary included) on arrays: random small rings, simple
    or not, and grid points on, inside and outside them; and Python integers when the
    cross products would not fit int64."""
    rng = random.Random(3)
    for _ in range(2000):
        ring = [(rng.randint(0, 6), rng.randint(0, 6)) for _ in range(rng.randint(3, 8))]
        ring.append(ring[0])
        points = np.array([(rng.randint(0, 6), rng.randint(0, 6)) for _ in range(20)])
        assert exact._covers_many(ring, points).tolist() == [
            exact._covers(ring, (int(x), int(y))) for x, y in points], ring
    big = [(x * 10**9, y * 10**9) for x, y in [(0, 0), (4, 0), (4, 4), (0, 4), (0, 0)]]
    assert exact._int_array(big).dtype == object
    got = exact._covers_many(big, np.array([[2 * 10**9, 0], [2 * 10**9, 2 * 10**9], [1, -1]]))
    assert got.tolist() == [True, True, False]


def test_survivors_on_a_new_zones_edge_are_decided_without_a_python_loop_each(monkeypatch):
    """2 000 survivors exactly on the last edge of a 512-vertex zone: GEOS cannot decide
    them (within its 1e-9 degree), so the integers do. One _covers each, one Python edge
    at a time, cost 10 000 of them 1.5 s of a set_zone's apply on every drone."""
    one_at_a_time = []
    real = exact._covers
    monkeypatch.setattr(exact, "_covers", lambda *a: one_at_a_time.append(1) or real(*a))
    m = EvacuationMap()
    for k in range(2000):
        lon = round(-120.0 + 0.1 * (k + 1) / 2001, 7)
        assert m.apply_command(k + 1, ReportSurvivor(f"s{k}", (lon, 38.0), 1, 0.5, "d1", T)).ok
    top = [(round(-119.9 - 0.1 * k / 509, 7), round(38.01 + 0.001 * (k % 2), 7)) for k in range(510)]
    ring = [(-119.9, 38.0), *top, (-120.0, 38.0)]
    assert m.apply_command(3000, SetZone("z", ring, "burning", "d1", T)).ok
    assert all(s.urgent for s in m.survivors.values())
    assert len(one_at_a_time) < 10


def test_scale_factors_are_integers_from_decimal_arithmetic():
    kx, ky = exact._scales(380_000_000)
    # WGS84 at 38 degrees: ~87.8 km per degree of longitude, ~111.0 km of latitude.
    assert isinstance(kx, int) and isinstance(ky, int)
    assert kx == pytest.approx(8_778_000, rel=2e-3) and ky == pytest.approx(11_100_000, rel=2e-3)


def test_the_map_marks_routes_and_survivors_with_the_exact_predicates():
    m = EvacuationMap(route_margin_m=50.0)
    m.apply_command(1, SetZone("z", RING, "burning", "d", T))
    zone = m.zones["z"].exact
    just_in = 38.01 + (50e9 // zone.ky) * 1e-7  # within 50 m north of the edge
    just_out = 38.01 + (50e9 // zone.ky + 2) * 1e-7
    m.apply_command(2, SetRoute("in", [[-119.999, just_in, 30.0], [-119.991, just_in, 30.0]], 1))
    m.apply_command(3, SetRoute("out", [[-119.999, just_out, 30.0], [-119.991, just_out, 30.0]], 1))
    m.apply_command(4, ReportSurvivor("edge", [-119.995, 38.01], 1, 0.5, "d", T))
    assert m.routes["in"].unsafe and not m.routes["out"].unsafe
    assert m.survivors["edge"].urgent


def test_incremental_facts_with_the_survivor_index_match_a_recomputation():
    """Survivors reported, moved in and out of zones, removed; zones grown, shrunk,
    burned out, cleared, removed: after every step each survivor's ``inside`` equals a
    from-scratch recomputation (restore), and the position index matches the map."""
    import random

    from swarm.evacmap import RemoveSurvivor, RemoveZone, UpdateSurvivor, ZoneStatus

    rng = random.Random(7)
    m = EvacuationMap()
    index = 0

    def square(cx: float, cy: float, r: float):
        return [[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]]

    def point():
        return [round(-120.0 + rng.uniform(-0.02, 0.02), 7), round(38.0 + rng.uniform(-0.02, 0.02), 7)]

    for step in range(150):
        roll = rng.random()
        survivors, zones = sorted(m.survivors), sorted(m.zones)
        if roll < 0.3 or not survivors:
            command = ReportSurvivor(f"s{step}", point(), 1, 0.5, "d", T)
        elif roll < 0.5:
            command = UpdateSurvivor(rng.choice(survivors), "d", T, position=point())
        elif roll < 0.6:
            command = RemoveSurvivor(rng.choice(survivors))
        elif roll < 0.9 or not zones:
            zid = rng.choice(zones + [f"z{step}"])
            status = rng.choice([ZoneStatus.BURNING, ZoneStatus.BURNING, ZoneStatus.BURNED,
                                 ZoneStatus.CLEARED])
            command = SetZone(zid, square(-120.0 + rng.uniform(-0.015, 0.015),
                                          38.0 + rng.uniform(-0.015, 0.015),
                                          rng.uniform(0.001, 0.01)), status, "d", T)
        else:
            command = RemoveZone(rng.choice(zones))
        index += 1
        assert m.apply_command(index, command).ok, command
        fresh = EvacuationMap()
        fresh.restore(m.snapshot())
        assert {k: s.inside for k, s in m.survivors.items()} == \
            {k: s.inside for k, s in fresh.survivors.items()}
        survivor_index = m._state.survivor_index
        assert sorted(survivor_index.ids) == sorted(m.survivors)
        for sid, (lon, lat) in zip(survivor_index.ids, survivor_index.e7.tolist()):
            assert (lon, lat) == (exact.e7(m.survivors[sid].position[0]),
                                  exact.e7(m.survivors[sid].position[1]))
    assert sum(bool(s.inside) for s in m.survivors.values()) > 0


# ------------------------------------------------ command validation, decided exactly

_LON0, _LAT0 = -1_200_000_000, 380_000_000  # degE7


def _box(width_e7: int, height_e7: int = 10_000) -> list[list[float]]:
    corners = [(0, 0), (width_e7, 0), (width_e7, height_e7), (0, height_e7)]
    return [[(_LON0 + x) / 1e7, (_LAT0 + y) / 1e7] for x, y in corners]


def _widest_accepted() -> int:
    """The widest box (degE7 of longitude) the 100 km limit accepts at _LAT0."""
    kx = extent_nm([(0, _LAT0), (1, _LAT0)])[0]  # nm per degE7 of longitude there
    return 100_000 * 10**9 // kx


def _float_free(monkeypatch, shift: float) -> None:
    """Another machine: every float the old check used (pymap3d through LocalFrame)
    moves by ``shift`` ulp, and GEOS validity may not be asked at all."""
    original = swarm.geo.LocalFrame.to_enu

    def to_enu(self, lon, lat):  # type: ignore[no-untyped-def]
        east, north = original(self, lon, lat)
        direction = np.inf if shift > 0 else -np.inf
        return np.nextafter(east, direction), np.nextafter(north, -direction)

    def no_geos(*_a, **_k):  # type: ignore[no-untyped-def]
        raise AssertionError("command validation asked GEOS for validity")

    monkeypatch.setattr(swarm.geo.LocalFrame, "to_enu", to_enu)
    monkeypatch.setattr(shapely, "is_valid", no_geos)
    monkeypatch.setattr(shapely.geometry.base.BaseGeometry, "is_valid", property(no_geos))
    monkeypatch.setattr(shapely.geometry.base.BaseGeometry, "is_ccw", property(no_geos), raising=False)


def _at_and_over_the_limit() -> list[bytes]:
    """Apply results of the widest accepted search area and one 1 degE7 wider."""
    w = _widest_accepted()
    m = EvacuationMap()
    results = [m.apply(1, encode_command(SetSearchArea(_box(w)))),  # type: ignore[arg-type]
               m.apply(2, json.dumps({"type": "set_search_area", "polygon": _box(w + 1)}).encode())]
    for width, ok in ((w, True), (w + 1, False)):
        path = [[p[0], p[1], 30.0] for p in _box(width)[:2]]
        try:
            SetRoute("r", path, 1)
            results.append(b"route accepted")
        except ValueError as exc:
            results.append(str(exc).encode())
    return results


def test_a_shape_at_the_extent_limit_gets_one_verdict_whatever_the_floats(monkeypatch):
    w = _widest_accepted()
    assert extent_nm([(0, _LAT0), (w, _LAT0)])[0] <= 100_000 * 10**9 \
        < extent_nm([(0, _LAT0), (w + 1, _LAT0)])[0]
    reference = _at_and_over_the_limit()
    assert decode_result(reference[0]).ok
    # One degE7 (1.1 cm) wider is refused, with a message made of integers only (the
    # result is replicated too: the session table keeps it).
    refused = decode_result(reference[1])
    assert not refused.ok and refused.error == (
        "set_search_area.polygon: extent 100000 m x 111 m exceeds the 100000 m limit"), refused
    assert reference[2] == b"route accepted"
    assert reference[3].endswith(b"exceeds the 100000 m limit")
    for shift in (1, -1):
        with monkeypatch.context() as patched:
            _float_free(patched, shift)
            assert _at_and_over_the_limit() == reference, shift


def test_the_extent_is_an_upper_bound_of_the_ellipsoidal_box():
    """Against pymap3d (float, this machine): the exact bound is never smaller, and
    within 0.1 % at mid latitudes (snapping the latitude to 0.01 degree)."""
    for lat in (0, 200_000_000, 380_000_000, 600_000_000, -450_000_000):
        box = [(_LON0, lat), (_LON0 + 5_000_000, lat), (_LON0 + 5_000_000, lat + 4_000_000),
               (_LON0, lat + 4_000_000)]
        width, height = extent_nm(box)
        frame = swarm.geo.LocalFrame(lat0=(lat + 2_000_000) / 1e7, lon0=(_LON0 + 2_500_000) / 1e7)
        east, _ = frame.to_enu(np.array([_LON0 / 1e7, (_LON0 + 5_000_000) / 1e7]),
                               np.array([frame.lat0, frame.lat0]))
        _, north = frame.to_enu(np.array([frame.lon0, frame.lon0]),
                                np.array([lat / 1e7, (lat + 4_000_000) / 1e7]))
        float_w, float_h = float(east[1] - east[0]), float(north[1] - north[0])
        assert float_w <= width / 1e9 <= float_w * 1.01 + 1, (lat, width, float_w)
        assert float_h <= height / 1e9 <= float_h * 1.001 + 1, (lat, height, float_h)


def test_polygon_validity_messages_are_exact_and_name_the_edges():
    bowtie = [[-120.0, 38.0], [-119.99, 38.01], [-119.99, 38.0], [-120.0, 38.01]]
    with pytest.raises(ValueError) as info:
        SetZone("z", bowtie, "burning", "d", T)
    assert str(info.value) == ("set_zone.polygon: invalid polygon: Self-intersection: edge 0 "
                               "(vertices 0-1) meets edge 2 (vertices 2-3)")
    spike = [[-120.0, 38.0], [-119.99, 38.0], [-119.995, 38.0], [-119.995, 38.01]]
    with pytest.raises(ValueError, match="edges 0 and 1 fold back on each other at vertex 1"):
        SetZone("z", spike, "burning", "d", T)


def _random_ring(rng: random.Random, size: int, grid: int) -> list[tuple[int, int]]:
    points: list[tuple[int, int]] = []
    for _ in range(size):
        p = (rng.randint(0, grid), rng.randint(0, grid))
        if not points or p != points[-1]:
            points.append(p)
    while len(points) > 1 and points[0] == points[-1]:
        points.pop()
    return points


@pytest.mark.parametrize("vectorised", [False, True], ids=["pairwise", "sweep"])
def test_exact_ring_and_polygon_validity_agree_with_geos_on_integer_grids(monkeypatch, vectorised):
    """On small integers GEOS's own predicates are exact too, so the two must agree:
    self-crossings, touches, spikes, collinear rings; holes touching the shell or
    each other once, twice, in a cycle or at one common point, outside, nested.
    Both implementations (pairwise for small rings, the numpy sweep for large ones)."""
    if vectorised:
        monkeypatch.setattr(exact, "_SMALL_RING", 0)
    rng = random.Random(13)
    checked = valid = 0
    for _ in range(800):
        ring = _random_ring(rng, rng.randint(3, 11), rng.choice([3, 4, 6]))
        if len(ring) < 3:
            continue
        checked += 1
        geos = shapely.Polygon(ring).is_valid
        valid += geos
        assert (ring_problem(ring) is None) == geos, ring
    assert checked > 500 and 100 < valid < checked - 100
    shells = ([(0, 0), (12, 0), (12, 12), (0, 12)], [(0, 0), (12, 0), (12, 12), (6, 6), (0, 12)])
    checked = valid = 0
    for _ in range(500):
        holes = []
        for _ in range(rng.randint(1, 3)):
            x, y, w, h = rng.randint(-1, 12), rng.randint(-1, 12), rng.randint(1, 5), rng.randint(1, 5)
            holes.append([(x, y), (x + w, y), (x + w, y + h), (x, y + h)][:rng.choice([3, 4])])
        rings = [rng.choice(shells), *holes]
        if any(ring_problem(r) for r in rings):
            continue
        checked += 1
        geos = shapely.Polygon(rings[0], rings[1:]).is_valid
        valid += geos
        assert (polygon_problem(rings) is None) == geos, rings
    assert checked > 300 and 30 < valid < checked - 100


def test_a_sector_polygons_holes_are_checked_exactly():
    from swarm.evacmap import SetAssignment
    from swarm.evacmap.commands import sector_polygon_problem

    def deg(ring):  # type: ignore[no-untyped-def]
        return [[(_LON0 + x) / 1e7, (_LAT0 + y) / 1e7] for x, y in ring]

    shell = deg([(0, 0), (1000, 0), (1000, 1000), (0, 1000)])
    touching = deg([(0, 500), (300, 400), (300, 600)])  # touches the shell at one vertex
    outside = deg([(2000, 0), (2100, 0), (2100, 100)])
    inner = deg([(100, 100), (900, 100), (900, 900), (100, 900)])
    nested = deg([(200, 200), (300, 200), (300, 300)])
    assert sector_polygon_problem([shell, touching]) is None
    SetAssignment(0, {"drone-1": [[shell, touching]]}, {})
    assert "Hole lies outside shell: ring 1" in str(sector_polygon_problem([shell, outside]))
    assert "Nested holes: rings 1 and 2" in str(sector_polygon_problem([shell, inner, nested]))
    with pytest.raises(ValueError, match=r"sectors\.drone-1\[0\]: invalid polygon: Nested holes"):
        SetAssignment(0, {"drone-1": [[shell, inner, nested]]}, {})


def test_huge_coordinates_fall_back_to_python_integers(monkeypatch):
    """Beyond what int64 cross products hold (never within the extent limit, but the
    predicate is exact for any input): the sweep computes in Python integers."""
    big = 1_800_000_000
    bowtie = [(-big, -big), (big, big), (big, -big), (-big, big)]
    square = [(-big, -big), (big, -big), (big, big), (-big, big)]
    expected = (ring_problem(bowtie), ring_problem(square))
    assert expected[0] is not None and expected[1] is None
    assert exact._int_array(bowtie).dtype == object
    monkeypatch.setattr(exact, "_SMALL_RING", 0)
    assert (ring_problem(bowtie), ring_problem(square)) == expected
