"""Derived facts decided exactly (issue 13): the same answer on every platform, right
at the thresholds where floating point would differ in the last bit."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

import swarm.evacmap.exact as exact
from swarm.evacmap import EvacuationMap, ReportSurvivor, SetRoute, SetZone
from swarm.evacmap.exact import ExactRing, point_covered, points_covered, route_within

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
