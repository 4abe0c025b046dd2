"""Scenario tests of the planner: routing around zones, holding when boxed in,
survivors in fire, fences, rally points, battery, and the local frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from mavlink_bridge.plan import (
    CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION,
    CMD_NAV_LAND,
    CMD_NAV_LOITER_TIME,
    CMD_NAV_LOITER_UNLIM,
    CMD_NAV_RALLY_POINT,
    CMD_NAV_RETURN_TO_LAUNCH,
    CMD_NAV_TAKEOFF,
    CMD_NAV_WAYPOINT,
)
from swarm.planner import (
    LocalFrame,
    PlannerConfig,
    PlannerMap,
    PlanStatus,
    RouteInfo,
    hold_instead,
    map_frame,
    plan,
    prepare,
)
from swarm.planner.obstacles import bounded_fence
from test_planner_support import (
    ORIGIN,
    buffered_union,
    drones,
    fence_polygons,
    gp,
    intrusion,
    item_xy,
    mission_legs,
    rect,
    survivor,
    vehicle,
    zone,
)

AREA = rect(-1000, -500, 1000, 500)
CONFIG = PlannerConfig(safety_margin_m=40.0, line_spacing_m=50.0)


def legs_and_forbidden(view, result, v, config=CONFIG):
    frame = ORIGIN
    return mission_legs(result, frame, v.position, v.home), buffered_union(view, frame, config)


def test_plan_is_takeoff_survey_then_rtl_when_the_sky_is_clear():
    view = PlannerMap(1, AREA, drones=drones("d1"))
    v = vehicle(0, -600, battery=None)
    result = plan(view, "d1", v, CONFIG)
    cmds = [i.command for i in result.plan.mission]
    assert result.status is PlanStatus.OK
    assert cmds[0] == CMD_NAV_TAKEOFF and cmds[-1] == CMD_NAV_RETURN_TO_LAUNCH
    assert set(cmds[1:-1]) == {CMD_NAV_WAYPOINT}
    assert result.plan.fence == () and result.plan.fence_enable is None
    # Lines along the long (east-west) axis, 50 m apart across 1000 m: 20 lines.
    frame = ORIGIN
    norths = sorted({round(item_xy(i, frame)[1]) for i in result.plan.mission[1:-2]})
    assert len(norths) == 20 and all(abs(b - a - 50) <= 1 for a, b in zip(norths, norths[1:]))
    # The last waypoint before RTL is home: RTL's straight line has no length.
    last = item_xy(result.plan.mission[-2], frame)
    assert math.dist(last, frame.point_to_enu(v.home.lon, v.home.lat)) < 0.05


def test_zone_across_the_sector_is_routed_around():
    clear = PlannerMap(1, AREA, drones=drones("d1"))
    # A wall of fire across the middle of the sector, open at the north and south ends.
    fire = zone("wall", rect(-50, -300, 50, 300))
    burning = PlannerMap(2, AREA, zones=(fire,), drones=drones("d1"))
    v = vehicle(-900, -600)
    before = plan(clear, "d1", v, CONFIG)
    after = plan(burning, "d1", v, CONFIG)
    assert after.status is PlanStatus.OK
    legs, forbidden = legs_and_forbidden(burning, after, v)
    frame = ORIGIN
    assert intrusion(legs, forbidden.buffer(-1e-6)) == 0.0
    # The clear plan would have crossed where the zone now is.
    assert intrusion(mission_legs(before, frame, v.position, v.home), forbidden) > 0
    # Both halves of the sector are still surveyed: waypoints east and west of the wall.
    easts = [item_xy(i, frame)[0] for i in after.plan.mission if i.command == CMD_NAV_WAYPOINT]
    assert min(easts) < -500 and max(easts) > 500
    # The fence covers the buffered zone, with a bounded vertex count.
    assert len(after.plan.fence) == int(after.plan.fence[0].param1) <= CONFIG.fence_max_vertices
    assert all(i.command == CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION for i in after.plan.fence)
    fence = shapely.Polygon([item_xy(i, frame) for i in after.plan.fence])
    assert fence.contains(forbidden)
    assert after.plan.fence_enable is True


def test_drone_boxed_in_by_fire_holds_and_says_why():
    ring = shapely.Polygon(rect(-400, -400, 400, 400).exterior.coords,
                           [rect(-250, -250, 250, 250).exterior.coords])
    view = PlannerMap(3, AREA, zones=(zone("ring", ring),), drones=drones("d1"))
    airborne = vehicle(0, 0, alt=30.0)
    result = plan(view, "d1", airborne, CONFIG)
    assert result.status is PlanStatus.NO_SAFE_PATH
    assert any("every way out crosses fire" in r for r in result.reasons)
    assert any("left out" in r for r in result.reasons)  # its fence would be breached at once
    assert result.plan.fence == ()
    # ... and named, so the flight side puts it back once the drone is out (issue 10).
    assert result.fences_left_out and all(i.command == CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION
                                          for i in result.fences_left_out)
    assert len(result.fences_left_out) == int(result.fences_left_out[0].param1)
    assert [i.command for i in result.plan.mission] == [CMD_NAV_LOITER_UNLIM]
    hold = result.plan.mission[0]
    assert (hold.x, hold.y) == (round(airborne.position.lat * 1e7), round(airborne.position.lon * 1e7))
    on_ground = plan(view, "d1", vehicle(0, 0, alt=0.0), CONFIG)
    assert on_ground.status is PlanStatus.NO_SAFE_PATH and on_ground.plan.mission == ()


def test_hold_instead_flies_the_no_safe_path_hold_and_keeps_the_maps_fences_and_rally():
    """The flight side's answer to a plan its fire check refuses (docs/flight.md): the
    same hold the planner flies with no safe path, the plan's fences and rally kept."""
    view = PlannerMap(1, AREA, zones=(zone("z", rect(300, -100, 500, 100)),), drones=drones("d1"))
    airborne = vehicle(0, -300, alt=30.0)
    planned = plan(view, "d1", airborne, CONFIG)
    assert planned.status is PlanStatus.OK and len(planned.plan.mission) > 2 and planned.plan.fence
    held = hold_instead(planned, airborne, CONFIG, "refused: test")
    assert held.status is PlanStatus.NO_SAFE_PATH and held.reasons[-1] == "refused: test"
    assert [i.command for i in held.plan.mission] == [CMD_NAV_LOITER_UNLIM]
    hold = held.plan.mission[0]
    assert (hold.x, hold.y, hold.z) == (round(airborne.position.lat * 1e7),
                                        round(airborne.position.lon * 1e7), 30.0)
    assert held.plan.resume_index == 0 and "no_safe_path" in held.plan.note
    assert (held.plan.fence, held.plan.rally, held.plan.fence_enable) == \
        (planned.plan.fence, planned.plan.rally, planned.plan.fence_enable)
    assert held.survivors == () and held.path_length_m == 0.0
    on_ground = vehicle(0, -300, alt=0.0)
    grounded = hold_instead(plan(view, "d1", on_ground, CONFIG), on_ground, CONFIG, "refused")
    assert grounded.plan.mission == () and grounded.plan.resume_index is None


def test_holes_of_a_zone_are_filled_in_the_fence():
    ring = shapely.Polygon(rect(-400, -400, 400, 400).exterior.coords,
                           [rect(-250, -250, 250, 250).exterior.coords])
    frame = map_frame(PlannerMap(1, AREA))
    grown = frame.geometry_to_enu(ring).buffer(40)
    fence = bounded_fence(grown, 16, 5.0)
    assert not fence.interiors and fence.contains(shapely.Point(0, 0))


def test_survivor_gets_a_loiter_and_urgent_one_inside_fire_is_watched_from_the_edge():
    fire = zone("f1", rect(300, -100, 500, 100))
    view = PlannerMap(4, AREA, zones=(fire,), drones=drones("d1"),
                      survivors=(survivor("calm", -300, 200), survivor("trapped", 400, 0, urgent=True)))
    v = vehicle(0, -600)
    result = plan(view, "d1", v, CONFIG)
    assert result.survivors == ("trapped", "calm")  # urgent first
    loiters = [i for i in result.plan.mission if i.command == CMD_NAV_LOITER_TIME]
    assert len(loiters) == 2 and loiters[0].param1 == CONFIG.loiter_time_s
    frame = ORIGIN
    watch = item_xy(loiters[0], frame)
    forbidden = buffered_union(view, frame, CONFIG)
    assert not forbidden.contains(shapely.Point(watch))
    # From the edge: the margin, the fence simplification and clearance away, no more.
    assert 40 <= shapely.Point(watch).distance(shapely.Point(400, 0)) - 100 <= 40 + 3 * 5 + 10
    assert any("trapped" in r and "nearest safe point" in r for r in result.reasons)
    assert math.dist(item_xy(loiters[1], frame), (-300, 200)) < 0.05
    legs = mission_legs(result, frame, v.position, v.home)
    assert intrusion(legs, forbidden.buffer(-1e-6)) == 0.0


def walls(x0, y0, x1, y1, t=60):
    """Four separate zones whose buffered union encloses the box (x0, y0)-(x1, y1)."""
    return (zone("wall-s", rect(x0 - t, y0 - t, x1 + t, y0)), zone("wall-n", rect(x0 - t, y1, x1 + t, y1 + t)),
            zone("wall-w", rect(x0 - t, y0 - t, x0, y1 + t)), zone("wall-e", rect(x1, y0 - t, x1 + t, y1 + t)))


def test_drone_boxed_in_by_separate_zones_holds():
    view = PlannerMap(3, AREA, zones=walls(-300, -300, 300, 300), drones=drones("d1"))
    result = plan(view, "d1", vehicle(0, 0, alt=30.0), CONFIG)
    assert result.status is PlanStatus.NO_SAFE_PATH
    assert [i.command for i in result.plan.mission] == [CMD_NAV_LOITER_UNLIM]
    assert len(fence_polygons(result.plan.fence)) == 4  # all four fenced


def test_unreachable_survivor_is_unserved_with_a_reason_and_the_drone_flies_its_sector():
    view = PlannerMap(5, AREA, zones=walls(200, -250, 700, 250), drones=drones("d1"),
                      survivors=(survivor("inside", 450, 0),))
    context = prepare(view, CONFIG)
    assert context.assignment.survivor_owner("inside") is None
    assert context.assignment.unserved["survivor:inside"] == (
        "no available drone can reach it without crossing a zone")
    result = plan(view, "d1", vehicle(0, -600), CONFIG, context)
    assert result.survivors == ()
    assert result.plan.mission[-1].command == CMD_NAV_RETURN_TO_LAUNCH


def test_a_survivor_inside_a_ring_of_fire_goes_to_the_drone_inside_the_ring():
    """Issue 8: it went to a drone outside that could not reach it, while the drone
    inside flew only takeoff and RTL."""
    ring = walls(-300, -300, 300, 300)
    view = PlannerMap(5, AREA, zones=ring,
                      drones=drones("a-out", home=(-800, -400)) + drones("b-in", home=(0, 0)),
                      survivors=(survivor("trapped", 100, 100),))
    context = prepare(view, CONFIG)
    a = context.assignment
    assert a.survivor_owner("trapped") == "b-in"
    # Each drone's sector is what it can reach: the inside of the ring for b-in, the
    # rest of the search area for a-out (which includes the walls: zones inside a
    # territory are surveyed around, like everywhere).
    inside = shapely.box(-300, -300, 300, 300)
    hole = shapely.box(-240, -240, 240, 240)  # the ring's unburned inside, off its margin
    assert a.sectors_enu["b-in"].within(inside.buffer(1.0))
    assert a.sectors_enu["a-out"].intersection(hole).area < 1.0
    assert a.sectors_enu["a-out"].area > 5 * a.sectors_enu["b-in"].area
    inner = plan(view, "b-in", vehicle(0, 0, home=(0, 0)), CONFIG, context)
    assert inner.status is PlanStatus.OK and inner.survivors == ("trapped",)
    assert CMD_NAV_LOITER_TIME in [i.command for i in inner.plan.mission]
    outer = plan(view, "a-out", vehicle(-800, -400, home=(-800, -400)), CONFIG, context)
    assert outer.status is PlanStatus.OK and outer.survivors == ()


def test_a_drone_that_cannot_leave_home_gets_no_work_and_the_others_take_it():
    # d-stuck's home is in the unburned hole of a ring far outside the search area.
    view = PlannerMap(5, AREA, zones=walls(2900, 2900, 3100, 3100),
                      drones=drones("a", home=(0, -600)) + drones("d-stuck", home=(3000, 3000)),
                      survivors=(survivor("s", 500, 0),))
    a = prepare(view, CONFIG).assignment
    assert set(a.sectors_enu) == {"a"}
    assert a.survivor_owner("s") == "a"
    assert a.sectors_enu["a"].area == pytest.approx(ORIGIN.geometry_to_enu(AREA).area, rel=1e-3)
    assert "d-stuck" in a.drone_reasons


def test_a_returning_drone_takes_no_work():
    """Issue 8: assignment counted returning drones as free, but their plans only go
    home, so their sectors and survivors were never flown."""
    view = PlannerMap(5, AREA, drones=drones("a") + drones("b-home", task="return"),
                      survivors=tuple(survivor(f"s{i}", 100 * i, 0) for i in range(4)))
    a = prepare(view, CONFIG).assignment
    assert a.free_drones == ("a",)
    assert set(a.sectors_enu) == {"a"}
    assert all(a.survivor_owner(f"s{i}") == "a" for i in range(4))


def test_vehicle_starting_inside_a_zone_leaves_by_the_shortest_way():
    view = PlannerMap(6, AREA, zones=(zone("under", rect(-100, -100, 100, 100)),), drones=drones("d1"))
    v = vehicle(60, 0, alt=30.0)
    result = plan(view, "d1", v, CONFIG)
    frame = ORIGIN
    exit_point = item_xy(result.plan.mission[1], frame)
    assert exit_point[0] > 100 + 40 and abs(exit_point[1]) < 1.0  # straight east, the short way
    assert any("inside the buffered zone" in r for r in result.reasons)
    legs = mission_legs(result, frame, v.position, v.home)[2:]  # after takeoff and exit
    assert intrusion(legs, buffered_union(view, frame, CONFIG).buffer(-1e-6)) == 0.0


def test_low_battery_goes_home_and_a_short_battery_truncates_the_survey():
    view = PlannerMap(7, AREA, drones=drones("d1"))
    empty = plan(view, "d1", vehicle(0, 0, alt=20, battery=20.0), CONFIG)
    assert [i.command for i in empty.plan.mission] == [CMD_NAV_TAKEOFF, CMD_NAV_WAYPOINT,
                                                      CMD_NAV_RETURN_TO_LAUNCH]
    assert any("reserve" in r for r in empty.reasons)
    full = plan(view, "d1", vehicle(0, -600, battery=100.0), CONFIG)
    low = plan(view, "d1", vehicle(0, -600, battery=30.0), CONFIG)
    budget = 0.05 * CONFIG.endurance_s * CONFIG.cruise_speed_mps
    assert low.path_length_m <= budget < full.path_length_m
    assert any("survey truncated" in r for r in low.reasons)


def test_dead_or_unknown_drone_has_nothing_to_do():
    view = PlannerMap(8, AREA, drones=drones("dead", alive=False))
    for drone_id in ("dead", "ghost"):
        grounded = plan(view, drone_id, vehicle(0, -600), CONFIG)
        assert grounded.status is PlanStatus.NOTHING_TO_DO and grounded.plan.mission == ()
    flying = plan(view, "dead", vehicle(0, 0, alt=25.0), CONFIG)
    assert flying.status is PlanStatus.NOTHING_TO_DO
    assert flying.plan.mission[-1].command == CMD_NAV_RETURN_TO_LAUNCH


@pytest.mark.parametrize("alt", [0.0, 25.0], ids=["on the ground", "airborne"])
def test_a_busy_drone_keeps_its_mission_and_gets_current_fences(alt):
    """Issue 10: an airborne busy drone got a nothing_to_do plan flying it home."""
    view = PlannerMap(8, AREA, zones=(zone("z", rect(300, 300, 400, 400)),),
                      drones=drones("busy", busy=True))
    result = plan(view, "busy", vehicle(0, 0, alt=alt), CONFIG)
    assert result.status is PlanStatus.BUSY
    assert result.plan.mission == () and result.plan.resume_index is None
    assert len(fence_polygons(result.plan.fence)) == 1 and result.plan.rally


def test_an_airborne_replan_starts_where_the_vehicle_is_and_resumes_after_it():
    """Issue 10: plan from the aircraft's current position and altitude, never from
    home, and say which item to continue with (MissionPlan.resume_index)."""
    view = PlannerMap(8, AREA, drones=drones("d1"))
    v = vehicle(300, 200, alt=33.0)
    result = plan(view, "d1", v, CONFIG)
    first = result.plan.mission[0]
    assert (first.x, first.y) == (round(v.position.lat * 1e7), round(v.position.lon * 1e7))
    assert first.z == 33.0
    assert result.plan.resume_index == 1  # the item after "here"
    legs = mission_legs(result, ORIGIN, v.position, v.home)
    assert math.dist(legs[1][0], (300, 200)) < 0.05  # the first leg leaves from here
    on_ground = plan(view, "d1", vehicle(0, -600), CONFIG)
    assert on_ground.plan.resume_index is None


def test_fence_storage_limit_keeps_the_zones_nearest_the_path():
    zones = (zone("near", rect(-300, -200, -200, -100)), zone("mid", rect(0, 300, 100, 400)),
             zone("far", rect(900, 900, 1000, 1000)))
    view = PlannerMap(10, rect(-400, -500, 400, 0), zones=zones, drones=drones("d1"))
    everything = plan(view, "d1", vehicle(0, -600), CONFIG)
    assert len(fence_polygons(everything.plan.fence)) == 3
    limit = len(everything.plan.fence) - 1  # one vertex short of all three
    tight = plan(view, "d1", vehicle(0, -600), PlannerConfig(
        safety_margin_m=40.0, line_spacing_m=50.0, max_fence_items=limit))
    kept = [[item_xy(i, ORIGIN) for i in p] for p in fence_polygons(tight.plan.fence)]
    assert len(tight.plan.fence) <= limit and len(kept) == 2
    assert not any(shapely.Polygon(p).contains(shapely.Point(950, 950)) for p in kept)
    assert any("farthest from the path" in r for r in tight.reasons)
    assert tight.plan.mission == everything.plan.mission  # the path avoids all zones anyway


def test_task_return_goes_straight_home():
    returning = PlannerMap(11, AREA, drones=drones("d1", task="return"),
                           survivors=(survivor("s", 0, 0),))
    result = plan(returning, "d1", vehicle(500, 300, alt=30.0), CONFIG)
    assert [i.command for i in result.plan.mission] == [CMD_NAV_TAKEOFF, CMD_NAV_WAYPOINT,
                                                       CMD_NAV_RETURN_TO_LAUNCH]
    assert result.status is PlanStatus.NOTHING_TO_DO and "task is return: going home" in result.reasons


BURNING_HOME = PlannerMap(12, AREA, zones=(zone("base", rect(-100, -700, 100, -500)),),
                          drones=drones("d1"))


@pytest.mark.parametrize("start, alt", [((0, -600), 0.0), ((0, 0), 30.0), ((-50, -650), 30.0)],
                         ids=["on the ground at home", "airborne outside", "airborne in the fire"])
def test_a_home_inside_a_zone_ends_landing_at_the_nearest_safe_point_never_fenced(start, alt):
    """Issue 8: the plan ended in an indefinite loiter with a fence around home and no
    rally point, so a battery failsafe RTL flew home into the fence and the fire."""
    v = vehicle(*start, alt=alt)
    result = plan(BURNING_HOME, "d1", v, CONFIG)
    commands = [i.command for i in result.plan.mission]
    assert CMD_NAV_LOITER_UNLIM not in commands
    assert CMD_NAV_RETURN_TO_LAUNCH not in commands
    assert commands[-1] == CMD_NAV_LAND
    landing = item_xy(result.plan.mission[-1], ORIGIN)
    forbidden = buffered_union(BURNING_HOME, ORIGIN, CONFIG)
    assert not forbidden.contains(shapely.Point(landing))
    assert math.dist(landing, (0, -600)) < 100 + 40 + 3 * 5 + 10  # the way out nearest home
    # The landing point is the first rally point (where an autopilot RTL goes), and no
    # uploaded fence contains it; home itself is no rally point while it burns.
    assert math.dist(item_xy(result.plan.rally[0], ORIGIN), landing) < 0.05
    assert all(math.dist(item_xy(i, ORIGIN), (0, -600)) > 1 for i in result.plan.rally)
    for fence in fence_polygons(result.plan.fence):
        assert not shapely.Polygon([item_xy(i, ORIGIN) for i in fence]).buffer(1.0).contains(
            shapely.Point(landing))
    assert any("landing at the nearest safe point" in r for r in result.reasons)
    # Leaving home by the shortest way: the first leg after takeoff goes straight out.
    legs = mission_legs(result, ORIGIN, v.position, v.home)
    if start == (0, -600):
        assert math.dist(legs[1][0], legs[1][1]) < 100 + 40 + 3 * 5 + 10
    # After leaving, no leg enters the buffered zone.
    first_out = 2 if start != (0, 0) else 1
    assert intrusion(legs[first_out:], forbidden.buffer(-1e-6)) == 0.0


def test_when_the_whole_search_area_burns_the_plan_says_so():
    """Issue 8: a zone covering the whole search area gave `ok` for takeoff plus RTL."""
    view = PlannerMap(13, AREA, zones=(zone("all", rect(-1100, -600, 1100, 600)),),
                      drones=drones("d1", "d2", home=(0, -900)))
    on_ground = plan(view, "d1", vehicle(0, -900, home=(0, -900)), CONFIG)
    assert on_ground.status is PlanStatus.SEARCH_AREA_IN_ZONES
    assert on_ground.plan.mission == ()  # no takeoff just to land
    assert "the whole search area lies inside buffered zones" in on_ground.reasons
    airborne = plan(view, "d2", vehicle(0, -1000, alt=30.0, home=(0, -900)), CONFIG)
    assert airborne.status is PlanStatus.SEARCH_AREA_IN_ZONES
    assert airborne.plan.mission[-1].command == CMD_NAV_RETURN_TO_LAUNCH


def test_rally_points_are_home_and_safe_route_ends_outside_zones():
    routes = (RouteInfo("r1", (gp(0, 0), gp(900, 900))),
              RouteInfo("r2", (gp(0, 0), gp(-900, 900)), unsafe=True),
              RouteInfo("r3", (gp(0, 0), gp(400, 0))))
    view = PlannerMap(9, AREA, zones=(zone("z", rect(350, -50, 450, 50)),), routes=routes,
                      drones=drones("d1"))
    result = plan(view, "d1", vehicle(0, -600), CONFIG)
    frame = ORIGIN
    rally = [item_xy(i, frame) for i in result.plan.rally]
    assert all(i.command == CMD_NAV_RALLY_POINT for i in result.plan.rally)
    assert len(rally) == 2
    assert math.dist(rally[0], (0, -600)) < 0.05 and math.dist(rally[1], (900, 900)) < 0.05


def test_prepared_context_gives_the_same_plans_and_rejects_another_version():
    view = PlannerMap(10, AREA, zones=(zone("z", rect(-50, -50, 50, 50)),), drones=drones("a", "b"))
    ctx = prepare(view, CONFIG)
    for d in ("a", "b"):
        assert plan(view, d, vehicle(0, -600), CONFIG, ctx) == plan(view, d, vehicle(0, -600), CONFIG)
    with pytest.raises(ValueError, match="map version"):
        plan(PlannerMap(11, AREA, drones=drones("a")), "a", vehicle(0, -600), CONFIG, ctx)


@pytest.mark.parametrize("tolerance", [0.5, 5.0, 50.0])
def test_bounded_fence_contains_the_buffered_zone_with_few_vertices(tolerance):
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(3, 40))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(30, 300, n)
        shape = shapely.Polygon(np.column_stack([radii * np.cos(angles), radii * np.sin(angles)]))
        shape = shape if shape.is_valid else shape.buffer(0)
        grown = shape.buffer(50.0)
        fence = bounded_fence(grown, 12, tolerance)
        assert fence.contains(grown)
        assert len(fence.exterior.coords) - 1 <= 12


def test_local_frame_round_trips_far_from_its_origin():
    frame = LocalFrame(-35.36, 149.16)
    east = np.array([-50_000.0, 0.0, 12_345.6, 50_000.0])
    north = np.array([50_000.0, 0.0, -7_000.1, -50_000.0])
    lon, lat = frame.to_geodetic(east, north)
    e2, n2 = frame.to_enu(lon, lat)
    assert np.max(np.abs(e2 - east)) < 1e-3 and np.max(np.abs(n2 - north)) < 1e-3
    with pytest.raises(ValueError):
        LocalFrame(91.0, 0.0)


def test_invalid_config_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="safety_margin_m"):
        PlannerConfig(safety_margin_m=-1.0)
    with pytest.raises(ValueError, match="fence_max_vertices"):
        PlannerConfig(fence_max_vertices=3)
    with pytest.raises(ValueError, match="battery"):
        vehicle(0, 0, battery=120.0)
    with pytest.raises(ValueError, match="duplicate"):
        PlannerMap(1, AREA, drones=drones("a", "a"))
    with pytest.raises(ValueError, match="polygon"):
        zone("bow", shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]))
    with pytest.raises(ValueError, match="identifier"):
        zone("no spaces", rect(0, 0, 10, 10))
    with pytest.raises(TypeError, match="ZoneInfo"):
        PlannerMap(1, AREA, zones=(rect(0, 0, 10, 10),))
    with pytest.raises(ValueError, match="latitude"):
        gp(0, 0).__class__(lat=91.0, lon=0.0)
    with pytest.raises(TypeError, match="drone_id"):
        plan(PlannerMap(1, AREA), 7, vehicle(0, 0), CONFIG)
