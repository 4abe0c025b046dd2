"""Task assignment: sectors cover the search area equally, each survivor to confirm
gets exactly one drone, a lost drone's sector is redistributed, same map same answer."""

from __future__ import annotations

import math

import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.planner import PlannerMap, assign
from test_planner_support import drones, poly, rect, survivor

AREA = rect(-2000, -500, 2000, 500)  # long axis east-west


def sector_union(a):
    return shapely.union_all(list(a.sectors_enu.values()))


def test_sectors_are_equal_strips_across_the_long_axis_in_drone_order():
    view = PlannerMap(1, AREA, drones=drones("d3", "d1", "d2"))
    a = assign(view)
    area = a.frame.geometry_to_enu(AREA)
    assert a.free_drones == ("d1", "d2", "d3")
    areas = [a.sectors_enu[d].area for d in a.free_drones]
    assert max(areas) - min(areas) < 1e-6 * area.area
    assert abs(sector_union(a).area - area.area) < 1e-6 * area.area
    # Strips follow the long axis: d1 west, d3 east, each spanning the full width.
    centres = [a.sectors_enu[d].centroid.x for d in a.free_drones]
    assert centres == sorted(centres)
    for d in a.free_drones:
        minx, miny, maxx, maxy = a.sectors_enu[d].bounds
        assert maxy - miny > 999 and maxx - minx < 1400


def test_equal_area_split_of_a_concave_area():
    l_shape = poly([(0, 0), (3000, 0), (3000, 600), (800, 600), (800, 2000), (0, 2000)])
    a = assign(PlannerMap(1, l_shape, drones=drones("a", "b", "c", "d")))
    areas = [g.area for g in a.sectors_enu.values()]
    assert max(areas) - min(areas) < 1e-3 * sum(areas)


def test_survivor_report_gets_exactly_one_drone_the_nearest():
    view = PlannerMap(2, AREA, drones=drones("d1", "d2", "d3", "d4"),
                      survivors=(survivor("s1", 1500, 0),))
    a = assign(view)
    owners = [d for d, ids in a.survivors.items() if "s1" in ids]
    # Same home for all: the path costs tie, and d4's sector (the easternmost)
    # contains the survivor, so d4's detour is the least.
    assert owners == ["d4"]
    assert a.survivor_owner("s1") == "d4"


def test_confirmed_and_rescued_survivors_need_no_drone():
    view = PlannerMap(2, AREA, drones=drones("d1", "d2"),
                      survivors=(survivor("c", 0, 0, status="confirmed"),
                                 survivor("r", 10, 0, status="rescued")))
    assert all(ids == () for ids in assign(view).survivors.values())


def test_urgent_survivors_are_served_first_and_full_drones_pass_work_on():
    # Three survivors in d1's sector; d1 takes two (the limit), urgent first, then the
    # nearest other drone takes the third.
    view = PlannerMap(3, AREA, drones=drones("d1", "d2"),
                      survivors=(survivor("a", -1500, 0, count=1),
                                 survivor("b", -1400, 0, count=5),
                                 survivor("c", -1300, 0, urgent=True)))
    a = assign(view)
    assert a.survivors["d1"] == ("c", "b")
    assert a.survivors["d2"] == ("a",)


def test_dead_removed_or_busy_drone_sector_is_redistributed():
    full = assign(PlannerMap(4, AREA, drones=drones("d1", "d2", "d3")))
    dead = assign(PlannerMap(5, AREA, drones=drones("d1", "d3") + drones("d2", alive=False)))
    removed = assign(PlannerMap(6, AREA, drones=drones("d1", "d3")))
    busy = assign(PlannerMap(7, AREA, drones=drones("d1", "d3") + drones("d2", busy=True)))
    area = full.frame.geometry_to_enu(AREA).area
    for a in (dead, removed, busy):
        assert set(a.sectors_enu) == {"d1", "d3"}
        assert abs(sector_union(a).area - area) < 1e-6 * area
        assert abs(a.sectors_enu["d1"].area - area / 2) < 1e-6 * area
    # d2's old strip is now covered by the survivors' sectors.
    old = full.sectors_enu["d2"]
    assert old.difference(sector_union(removed)).area < 1e-6 * area


def test_no_search_area_uses_homes_and_no_free_drone_assigns_nothing():
    view = PlannerMap(8, None, drones=drones("near", home=(0, 0)) + drones("far", home=(5000, 0)),
                      survivors=(survivor("s", 100, 0),))
    a = assign(view)
    assert a.sectors == {} and a.survivors["near"] == ("s",)
    none_free = assign(PlannerMap(9, AREA, drones=drones("x", busy=True),
                                  survivors=(survivor("s", 0, 0),)))
    assert none_free.sectors == {} and none_free.survivor_owner("s") is None


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.permutations(["d1", "d2", "d3", "d4", "d5"]), st.integers(0, 4),
       st.lists(st.tuples(st.floats(-2500, 2500), st.floats(-800, 800), st.booleans()),
                max_size=6))
def test_every_drone_computes_the_same_assignment_whatever_the_order(order, dead, points):
    ds = drones(*[d for i, d in enumerate(order) if i != dead]) + drones(order[dead], alive=False)
    ss = tuple(survivor(f"s{i}", x, y, urgent=u) for i, (x, y, u) in enumerate(points))
    a1 = assign(PlannerMap(10, AREA, drones=ds, survivors=ss))
    a2 = assign(PlannerMap(10, AREA, drones=tuple(reversed(ds)), survivors=tuple(reversed(ss))))
    assert a1 == a2 and dict(a1.survivors) == dict(a2.survivors)
    assert {k: v.wkb for k, v in a1.sectors.items()} == {k: v.wkb for k, v in a2.sectors.items()}
    assigned = [s for ids in a1.survivors.values() for s in ids]
    assert sorted(assigned) == sorted(s.id for s in ss)  # each exactly once


@st.composite
def search_areas(draw):
    n = draw(st.integers(3, 14))
    radii = draw(st.lists(st.floats(300, 3000), min_size=n, max_size=n))
    stretch = draw(st.floats(0.2, 5.0))
    turn = draw(st.floats(0, math.pi))
    pts = []
    for k, r in enumerate(radii):
        a = 2 * math.pi * k / n
        x, y = r * math.cos(a) * stretch, r * math.sin(a)
        pts.append((x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)))
    return poly(pts)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(search_areas(), st.integers(1, 10))
def test_sectors_partition_any_search_area_into_equal_areas(area, k):
    a = assign(PlannerMap(1, area, drones=drones(*[f"d{i:02d}" for i in range(k)])))
    enu = a.frame.geometry_to_enu(area)
    parts = list(a.sectors_enu.values())
    assert len(parts) == k and all(p.is_valid for p in parts)
    total = sum(p.area for p in parts)
    assert abs(total - enu.area) < 1e-6 * enu.area  # no overlap, nothing lost...
    # ...and it covers. (Grown by a micrometre: GEOS overlay of two nearly identical
    # polygons, 1e-13 apart, can return nonsense.)
    union = shapely.union_all([p.buffer(1e-6) for p in parts])
    assert enu.difference(union).area < 1e-6 * enu.area
    assert union.difference(enu.buffer(1e-6)).area < 1e-6 * enu.area
    assert max(p.area for p in parts) - min(p.area for p in parts) < 1e-6 * enu.area


@st.composite
def scenes(draw):
    """Random zones, survivors and drones (some dead, busy or returning, homes
    anywhere, including inside zones and rings) over a 4 km x 1 km search area."""
    from test_planner_support import zone
    zs = []
    for i in range(draw(st.integers(0, 6))):
        x, y = draw(st.floats(-2200, 2200)), draw(st.floats(-700, 700))
        w, h = draw(st.floats(20, 900)), draw(st.floats(20, 900))
        zs.append(zone(f"z{i}", rect(x, y, x + w, y + h)))
    ds = []
    for i in range(draw(st.integers(1, 6))):
        flags = draw(st.sampled_from([{}, {}, {"alive": False}, {"busy": True},
                                      {"task": "return"}]))
        home = (draw(st.floats(-2500, 2500)), draw(st.floats(-900, 900)))
        ds += drones(f"d{i}", home=home, **flags)
    ss = tuple(survivor(f"s{i}", draw(st.floats(-2500, 2500)), draw(st.floats(-800, 800)),
                        urgent=draw(st.booleans()),
                        status=draw(st.sampled_from(["reported", "reported", "confirmed"])))
               for i in range(draw(st.integers(0, 6))))
    return PlannerMap(1, AREA, zones=tuple(zs), survivors=ss, drones=tuple(ds))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(scenes())
def test_every_survivor_and_sector_has_exactly_one_available_owner_or_a_reason(view):
    a = assign(view)
    available = {d.id for d in view.drones if d.alive and not d.busy and d.task != "return"}
    assert set(a.free_drones) == available
    assert set(a.sectors) <= available and set(a.survivors) <= available
    for s in view.survivors:
        owners = [d for d, ids in a.survivors.items() if s.id in ids]
        if s.status != "reported":
            assert owners == [] and f"survivor:{s.id}" not in a.unserved
        else:
            # Exactly one of: one available owner, or unserved with a reason.
            assert (len(owners) == 1) != (f"survivor:{s.id}" in a.unserved), (owners, a.unserved)
            assert len(owners) <= 1
    for reason in a.unserved.values():
        assert reason
    # Sectors do not overlap: each point of the search area has at most one owner.
    sectors = list(a.sectors_enu.values())
    for i, p in enumerate(sectors):
        for q in sectors[i + 1:]:
            assert p.intersection(q).area < 1e-3 * max(p.area, 1.0)
    if not available:
        assert not a.sectors and "search_area" in a.unserved
