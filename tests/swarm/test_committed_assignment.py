"""Committed assignment end to end (issue 13): the leader proposes, the log commits,
every replica flies its committed share, whatever its floating point."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import swarm.geo
import swarm.planner.planner as planner_module
from swarm.demo import DemoConfig, run_demo
from swarm.evacmap import (
    EvacuationMap,
    ReportSurvivor,
    SetDroneTask,
    SetSearchArea,
    SetZone,
    decode_result,
    encode_command,
)
from swarm.geo import LocalFrame
from swarm.planner import (
    PlannerConfig,
    assignment_hash,
    needs_assignment,
    planner_map,
    prepare,
    propose_assignment,
)
from swarm.planner import plan as plan_one
from test_planner_support import ORIGIN, rect, vehicle

CONFIG = PlannerConfig(safety_margin_m=40.0, line_spacing_m=80.0)
T0 = 1_790_000_000_000


def ll(east: float, north: float) -> tuple[float, float]:
    return ORIGIN.point_to_geodetic(east, north)


def ring(x0, y0, x1, y1):
    return tuple(rect(x0, y0, x1, y1).exterior.coords)


class Log:
    def __init__(self) -> None:
        self.map = EvacuationMap()
        self.index = 0

    def __call__(self, *commands):
        for c in commands:
            self.index += 1
            result = decode_result(self.map.apply(self.index, encode_command(c)))
            assert result.ok, result.error
        return self

    def leader_assigns(self):
        assert needs_assignment(self.map)
        self(propose_assignment(self.map, CONFIG))
        assert not needs_assignment(self.map)
        return self


def _near_tie_scene() -> Log:
    """Survivors exactly between drones' homes (path costs tie in exact arithmetic),
    a zone, a search area: the kind of map where one ulp can flip a decision."""
    log = Log()
    log(SetSearchArea(ring(-1500, -600, 1500, 600)),
        SetZone("fire", ring(-100, 200, 100, 400), "burning", "d1", T0))
    for name, east in (("d1", -800.0), ("d2", 800.0), ("d3", 0.0)):
        log(SetDroneTask(name, "search", True, False, (*ll(east, -700), 584.0)))
    for i, east in enumerate((0.0, -400.0, 400.0)):
        log(ReportSurvivor(f"s{i}", ll(east, -100), 2, 0.9, "d3", T0))
    return log.leader_assigns()


def _ownership(assignment):
    return ({d: tuple(ids) for d, ids in assignment.survivors.items() if ids},
            tuple(sorted(assignment.sectors)))


def _one_ulp_up(monkeypatch):
    """Every east/north coordinate the frame produces moves one ulp, as another
    architecture's fused multiply-add or another pymap3d/numpy version would."""
    original = swarm.geo.LocalFrame.to_enu

    def to_enu(self, lon, lat):
        east, north = original(self, lon, lat)
        return np.nextafter(east, np.inf), np.nextafter(north, -np.inf)

    monkeypatch.setattr(swarm.geo.LocalFrame, "to_enu", to_enu)


def _shifted_origin(monkeypatch):
    """The local frame's origin 10 cm away, as a replica rounding its centre
    differently would place it."""
    original = planner_module.map_frame

    def map_frame(view):
        frame = original(view)
        return None if frame is None else LocalFrame(frame.lat0 + 1e-6, frame.lon0 - 1e-6)

    monkeypatch.setattr(planner_module, "map_frame", map_frame)


@pytest.mark.parametrize("perturb", [_one_ulp_up, _shifted_origin],
                         ids=["one ulp", "shifted frame origin"])
def test_replicas_with_perturbed_geometry_fly_the_same_committed_assignment(monkeypatch, perturb):
    log = _near_tie_scene()
    committed = log.map.assignment
    assert committed is not None
    reference = prepare(planner_map(log.map), CONFIG)
    expected = ({d: ids for d, ids in committed.survivors}, tuple(sorted(d for d, _ in committed.sectors)))
    assert _ownership(reference.assignment) == expected
    plans_before = {d: plan_one(planner_map(log.map), d, vehicle(0, -700), CONFIG, reference)
                    for d in ("d1", "d2", "d3")}
    perturb(monkeypatch)
    replica = prepare(planner_map(log.map), CONFIG)
    # The perturbation reached the geometry...
    assert replica.frame != reference.frame or any(
        replica.assignment.sectors_enu[d].wkb != reference.assignment.sectors_enu[d].wkb
        for d in replica.assignment.sectors_enu)
    # ...but who does what is the committed decision, identical on the replica.
    assert _ownership(replica.assignment) == expected
    for d, before in plans_before.items():
        after = plan_one(planner_map(log.map), d, vehicle(0, -700), CONFIG, replica)
        assert after.survivors == before.survivors
        assert after.status == before.status


def test_every_replica_applying_the_log_holds_the_same_assignment_bytes():
    a, b = _near_tie_scene(), _near_tie_scene()
    assert assignment_hash(a.map) == assignment_hash(b.map) is not None
    assert a.map.snapshot() == b.map.snapshot()


@st.composite
def maps(draw):
    log = Log()
    log(SetSearchArea(ring(-2000, -800, 2000, 800)))
    for i in range(draw(st.integers(0, 5))):
        x, y = draw(st.floats(-2200, 2000)), draw(st.floats(-1000, 800))
        w, h = draw(st.floats(30, 1200)), draw(st.floats(30, 1200))
        log(SetZone(f"z{i}", ring(x, y, x + w, y + h),
                    draw(st.sampled_from(["burning", "burned", "cleared"])), "d0", T0))
    for i in range(draw(st.integers(1, 6))):
        alive, busy = draw(st.booleans()), draw(st.booleans())
        task = draw(st.sampled_from(["search", "search", "return", "idle"]))
        home = ll(draw(st.floats(-2500, 2500)), draw(st.floats(-1200, 1200)))
        log(SetDroneTask(f"d{i}", task, alive or i == 0, busy and i != 0, (*home, 584.0)))
    for i in range(draw(st.integers(0, 6))):
        log(ReportSurvivor(f"s{i}", ll(draw(st.floats(-2000, 2000)), draw(st.floats(-800, 800))),
                           draw(st.integers(1, 5)), 0.5, "d0", T0))
    return log


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(maps())
def test_the_leaders_proposal_always_commits_and_gives_everything_one_owner_or_a_reason(log):
    """Every survivor and sector owned by exactly one available drone, or reported
    unserved with a reason; the proposal is valid for the map it was computed from
    (apply checks every survivor is assigned or unserved, and every owner available)."""
    log.leader_assigns()
    committed = log.map.assignment
    view = log.map.view()
    available = {d.id for d in view.drones.values()
                 if d.alive and not d.busy and d.task.value != "return"}
    owners = [d for d, _ in committed.sectors] + [d for d, _ in committed.survivors]
    assert set(owners) <= available
    given_ = [x for _, ids in committed.survivors for x in ids]
    assert len(given_) == len(set(given_))
    pending = {k for k, s in view.survivors.items() if s.status.value == "reported"}
    unserved = {k.split(":", 1)[1] for k, _ in committed.unserved if k.startswith("survivor:")}
    assert set(given_) | unserved == pending and not set(given_) & unserved
    if not committed.sectors:
        assert any(k.startswith("search_area") for k, _ in committed.unserved)
    # And every drone flies exactly its committed survivors (those it can reach).
    context = prepare(planner_map(log.map), CONFIG)
    for d in sorted(available):
        result = plan_one(planner_map(log.map), d, vehicle(0, -1000), CONFIG, context)
        assert set(result.survivors) <= set(committed.survivors_of(d))


def test_the_demo_leader_commits_the_assignment_and_every_node_holds_the_same():
    result = run_demo(DemoConfig(write_files=False))
    hashes = {n.assignment_sha256 for n in result.nodes}
    assert len(hashes) == 1 and None not in hashes
    assert result.assignments_committed >= 1
    assert result.identical
    assert not needs_assignment(result.view)
