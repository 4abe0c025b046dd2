"""The planner driven by the real replicated map (swarm.evacmap.EvacuationMap): the
scenarios of issue 3 expressed as committed commands."""

from __future__ import annotations

import shapely

from mavlink_bridge.plan import CMD_NAV_LOITER_TIME
from swarm.evacmap import (
    EvacuationMap,
    RemoveDrone,
    ReportSurvivor,
    SetDroneTask,
    SetSearchArea,
    SetZone,
    UpdateSurvivor,
)
from swarm.planner import (
    PlannerConfig,
    PlanStatus,
    assign_tasks,
    map_frame,
    needs_assignment,
    plan_all,
    plan_for_drone,
    planner_map,
    propose_assignment,
)
from test_planner_support import ORIGIN, buffered_union, intrusion, mission_legs, rect, vehicle

CONFIG = PlannerConfig(safety_margin_m=40.0, line_spacing_m=60.0)
T0 = 1_790_000_000_000


def lonlat(polygon: shapely.Polygon) -> tuple[tuple[float, float], ...]:
    return tuple(polygon.exterior.coords)


def point(east: float, north: float) -> tuple[float, float]:
    return ORIGIN.point_to_geodetic(east, north)


class Log:
    """Applies commands to a fresh map the way Raft would, one log index each. With a
    ``leader``, after each command that makes the committed assignment stale, the
    leader's proposal (swarm.planner.propose_assignment) is committed next, as the
    agent's leader does."""

    def __init__(self, leader: bool = True) -> None:
        self.map = EvacuationMap()
        self.index = 0
        self.leader = leader

    def __call__(self, *commands) -> EvacuationMap:
        for c in commands:
            self.index += 1
            assert self.map.apply_command(self.index, c).ok
            if self.leader and needs_assignment(self.map):
                self.index += 1
                result = self.map.apply_command(self.index, propose_assignment(self.map, CONFIG))
                assert result.ok, result.error
        return self.map


def swarm(ids=("d1", "d2", "d3")) -> Log:
    log = Log()
    home = (*point(0, -700), 584.0)
    log(SetSearchArea(lonlat(rect(-1500, -500, 1500, 500))),
        *[SetDroneTask(i, "search", True, False, home) for i in ids])
    return log


def test_zone_appearing_across_a_drones_sector_reroutes_its_plan():
    log = swarm()
    v = vehicle(0, -700, battery=None)
    before = plan_for_drone(log.map, "d2", v, CONFIG)
    log(SetZone("fire-1", lonlat(rect(-60, -350, 60, 350)), "burning", "d1", T0))
    after = plan_for_drone(log.map, "d2", v, CONFIG)
    # Each change is followed by the leader's assignment (one more log index each).
    assert (before.map_version, after.map_version) == (8, 10)
    view = planner_map(log.map)
    frame = map_frame(view)
    forbidden = buffered_union(view, frame, CONFIG)
    assert intrusion(mission_legs(before, frame, v.position, v.home), forbidden) > 0
    assert intrusion(mission_legs(after, frame, v.position, v.home), forbidden.buffer(-1e-6)) == 0
    assert after.status is PlanStatus.OK and after.plan.fence


def test_survivor_report_gets_exactly_one_drone_and_only_that_drone_loiters():
    log = swarm()
    log(ReportSurvivor("s1", point(1200, 100), 2, 0.9, "d3", T0))
    assignment = assign_tasks(log.map, CONFIG)
    owners = [d for d, ids in assignment.survivors.items() if "s1" in ids]
    assert owners == ["d3"]
    plans = plan_all(log.map, {d: vehicle(0, -700) for d in ("d1", "d2", "d3")}, CONFIG)
    loitering = [d for d, r in plans.items()
                 if any(i.command == CMD_NAV_LOITER_TIME for i in r.plan.mission)]
    assert loitering == ["d3"] and plans["d3"].survivors == ("s1",)
    # Once confirmed, nobody is sent any more.
    log(UpdateSurvivor("s1", "d3", T0 + 1, status="confirmed"))
    assert all(ids == () for ids in assign_tasks(log.map, CONFIG).survivors.values())


def test_removed_drone_has_its_sector_redistributed():
    log = swarm()
    before = assign_tasks(log.map, CONFIG)
    log(RemoveDrone("d2"))
    after = assign_tasks(log.map, CONFIG)
    assert set(after.sectors) == {"d1", "d3"}
    covered = shapely.union_all(list(after.sectors_enu.values()))
    assert before.sectors_enu["d2"].difference(covered).area < 1e-3
    result = plan_for_drone(log.map, "d2", vehicle(0, -700), CONFIG)
    assert result.status is PlanStatus.NOTHING_TO_DO


def test_every_drone_plans_the_same_from_its_own_replica():
    replicas = [swarm(), swarm()]
    for log in replicas:
        log(SetZone("fire-1", lonlat(rect(300, -200, 500, 200)), "burned", "d1", T0),
            ReportSurvivor("s1", point(-900, 0), 1, 0.5, "d1", T0))
    v = vehicle(-100, -650, alt=20.0)
    a, b = (plan_for_drone(log.map, "d1", v, CONFIG) for log in replicas)
    assert a == b and a.plan.note == b.plan.note
    assert plan_all(replicas[0].map, {"d1": v}, CONFIG)["d1"] == a


def test_cleared_zone_is_no_obstacle():
    log = swarm()
    log(SetZone("fire-1", lonlat(rect(-60, -350, 60, 350)), "cleared", "d1", T0))
    result = plan_for_drone(log.map, "d2", vehicle(0, -700), CONFIG)
    assert result.plan.fence == () and result.status is PlanStatus.OK


def test_without_a_committed_assignment_a_drone_invents_no_work():
    log = Log(leader=False)
    home = (*point(0, -700), 584.0)
    log(SetSearchArea(lonlat(rect(-1500, -500, 1500, 500))),
        SetDroneTask("d1", "search", True, False, home))
    grounded = plan_for_drone(log.map, "d1", vehicle(0, -700), CONFIG)
    assert grounded.status is PlanStatus.AWAITING_ASSIGNMENT and grounded.plan.mission == ()
    # Committed: the drone flies its share.
    log.index += 1
    assert log.map.apply_command(log.index, propose_assignment(log.map, CONFIG)).ok
    assert plan_for_drone(log.map, "d1", vehicle(0, -700), CONFIG).status is PlanStatus.OK


def test_a_stale_assignment_keeps_each_drone_on_its_last_committed_share():
    log = swarm()
    before = plan_for_drone(log.map, "d1", vehicle(0, -700), CONFIG)
    log.leader = False
    log(SetDroneTask("d4", "search", True, False, (*point(0, -700), 584.0)))  # joins
    assert needs_assignment(log.map)
    stale = plan_for_drone(log.map, "d1", vehicle(0, -700), CONFIG)
    assert stale.plan.mission == before.plan.mission  # no new split invented
    assert any("stale" in r for r in stale.reasons)
    newcomer = plan_for_drone(log.map, "d4", vehicle(0, -700), CONFIG)
    assert newcomer.plan.mission == ()  # nothing until the leader assigns it
