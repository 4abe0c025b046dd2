"""The whole path on both vehicles: a real planner plan (swarm.planner, from a real
replicated map) with fences and rally points, applied and verified; arm, take off,
AUTO; a re-plan in flight that continues where the planner intends; RTL and disarm at
home; then the autopilot is SIGKILLed and restarted, telemetry resumes by itself and
the plan is applied again. Also: a reboot is counted once and brings the streams back.
"""

from __future__ import annotations

import math

import pymap3d
import pytest

from bridge_fake_peer import wait_for
from bridge_vehicle import FLIGHT_S, HOME, TestVehicle, flying_setup, ready, take_off
from mavlink_bridge.apply import PlanApplier, items_match
from mavlink_bridge.plan import CMD_NAV_RETURN_TO_LAUNCH, FRAME_MISSION, MissionPlan, MissionType
from swarm.evacmap import EvacuationMap, SetDroneTask, SetSearchArea, SetZone
from swarm.geo import LocalFrame
from swarm.planner import PlannerConfig, PlanStatus, needs_assignment, plan_for_drone, propose_assignment
from swarm.planner.model import GeoPoint, VehicleState

FRAME = LocalFrame(HOME[0], HOME[1])
CONFIG = PlannerConfig(safety_margin_m=10.0, line_spacing_m=30.0)
T0 = 1_790_000_000_000


def _rect(x0: float, y0: float, x1: float, y1: float) -> tuple[tuple[float, float], ...]:
    return tuple(FRAME.point_to_geodetic(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)))


class _Map:
    """A replicated map fed commands one log index at a time, as Raft applies them."""

    def __init__(self) -> None:
        self.map = EvacuationMap()
        self.index = 0
        # A search area 20..110 m north of home (inside SITL's 150 m circle fence) and
        # a burning zone south-west of it: the plan gets an exclusion fence.
        self.apply(SetSearchArea(_rect(-60, 20, 60, 110)),
                   SetDroneTask("d1", "search", True, False, (*FRAME.point_to_geodetic(0, 0), HOME[2])),
                   SetZone("fire-1", _rect(-50, -90, -10, -50), "burning", "d1", T0))

    def apply(self, *commands: object) -> None:
        for command in commands:
            self.index += 1
            assert self.map.apply_command(self.index, command).ok
            if needs_assignment(self.map):  # what the agent's leader proposes, committed next
                self.index += 1
                assert self.map.apply_command(self.index, propose_assignment(self.map, CONFIG)).ok

    def plan(self, lat: float, lon: float, alt_rel: float) -> MissionPlan:
        state = VehicleState(GeoPoint(lat, lon), alt_rel, GeoPoint(*HOME), 95.0)
        result = plan_for_drone(self.map, "d1", state, CONFIG)
        assert result.status is PlanStatus.OK, result.reasons
        return result.plan


def _distance_m(lat: float, lon: float, lat0: float, lon0: float) -> float:
    e, n, _ = pymap3d.geodetic2enu(lat, lon, 0.0, lat0, lon0, 0.0)
    return math.hypot(e, n)


def test_planner_plan_flown_replanned_in_flight_landed_then_reapplied_after_sigkill(vehicle: TestVehicle):
    evac = _Map()
    plan = evac.plan(HOME[0], HOME[1], 0.0)
    assert plan.fence and plan.rally and plan.fence_enable
    assert plan.mission[-1].command == CMD_NAV_RETURN_TO_LAUNCH and plan.mission[-1].frame == FRAME_MISSION
    with flying_setup(vehicle) as (_sv, link, v, _):
        applier = PlanApplier(v)
        ready(v)
        report = applier.apply(plan)  # fences, rally and mission, each verified by read-back
        assert set(report.uploaded) == set(MissionType)
        assert ("FENCE_ENABLE", 1.0) in report.params_set
        assert [items_match(a, b) for a, b in zip(plan.fence, v.download(MissionType.FENCE))] == \
            [None] * len(plan.fence)

        take_off(vehicle, v, alt=plan.mission[0].z)
        v.clear_reached()
        v.set_mode("AUTO").raise_for_result()
        assert v.wait_item_reached(3, FLIGHT_S) >= 3

        # The map changes in flight (a second fire); the planner re-plans from where the
        # copter is and says where to continue. The bridge must go there, not to
        # whatever point of the new mission happens to be nearest.
        evac.apply(SetZone("fire-2", _rect(20, -60, 50, -30), "burning", "d1", T0 + 1))
        s = v.state()
        replanned = evac.plan(s.position.lat, s.position.lon, s.position.alt_rel)
        intended = replanned.resume_index  # the planner's airborne re-plan names the next item
        assert intended is not None and 0 < intended < len(replanned.mission) - 1
        # Every MISSION_CURRENT / MISSION_ITEM_REACHED from here on, in order (polling the
        # state could miss a short leg at 10x).
        events: list[tuple[str, int]] = []
        unsubscribe = link.subscribe(lambda m, now: events.append((m.get_type(), m.seq)) if m.get_type() in (
            "MISSION_CURRENT", "MISSION_ITEM_REACHED") else None, sysid=1)
        report = applier.apply(replanned)
        assert MissionType.MISSION in report.uploaded and MissionType.FENCE in report.uploaded
        assert report.resumed_at == intended + 1  # wire seq: item 0 is home
        target = replanned.mission[intended]
        # ... and then the rest of the new mission, ending with its RTL: home, landed, disarmed.
        v.wait_until(lambda s: not s.armed, 4 * FLIGHT_S)
        unsubscribe()
        # From the switch to the intended item on, it reached that item and nothing before
        # it (ArduPilot reports MISSION_CURRENT 0 again once the RTL has landed it).
        assert ("MISSION_CURRENT", intended + 1) in events, events
        after = events[events.index(("MISSION_CURRENT", intended + 1)):]
        reached = [seq for kind, seq in after if kind == "MISSION_ITEM_REACHED"]
        assert intended + 1 in reached and min(reached) >= intended + 1, events
        s = v.state()
        assert s.position.alt_rel < 1.0
        assert _distance_m(s.position.lat, s.position.lon, HOME[0], HOME[1]) < 5.0
        assert _distance_m(target.lat, target.lon, HOME[0], HOME[1]) > 20.0  # it did go out there

        # The autopilot dies without warning and comes back (SITL restarted wiped, -w).
        connects, requests = link.stats.connects, v.stream_requests
        vehicle.sim.kill()
        vehicle.sim.boot(wait_ready=False)
        wait_for(lambda: link.stats.connects > connects, what="reconnect", timeout=60)
        assert link.wait_for_heartbeat(30)
        wait_for(lambda: v.stream_requests > requests, what="streams asked for again", timeout=30)
        before = v.state().received_at.get("position")
        wait_for(lambda: v.state().received_at.get("position") != before, what="telemetry resumed", timeout=60)
        report = applier.apply(replanned)  # the vehicle lost it all: everything again, verified
        assert set(report.uploaded) == set(MissionType)
        got = v.download(MissionType.MISSION)
        assert len(got) == len(replanned.mission) + 1
        assert all(items_match(a, b) is None for a, b in zip(replanned.mission, got[1:]))


def test_reboot_command_counts_one_reboot_and_streams_come_back(vehicle: TestVehicle):
    """MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN: SITL re-executes itself (the TCP link drops and
    comes back) and forgets every SET_MESSAGE_INTERVAL; the bridge counts one restart
    and asks for its streams again without being told."""
    vehicle.needs_reboot()
    with flying_setup(vehicle) as (_sv, link, v, _):
        ready(v)
        # Run long enough that the new boot's clock restarts below the old one: a restart
        # then shows both signs (BOOT heartbeats and time_boot_ms going back), and must
        # still count once.
        wait_for(lambda: v.state().position is not None and v.state().position.time_boot_ms > 30_000,
                 what="boot clock past 30 s", timeout=60)
        requests, reboots = v.stream_requests, v.telemetry.reboots
        old_clock = v.state().position.time_boot_ms
        assert v.command(246, 1).accepted  # MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN, reboot autopilot
        wait_for(lambda: v.telemetry.reboots > reboots, what="the restart noticed", timeout=60)
        wait_for(lambda: v.stream_requests > requests, what="streams asked for again", timeout=60)
        # GLOBAL_POSITION_INT is 0,0 (rejected) until the new boot's GPS fix, then flows.
        wait_for(lambda: v.state().position.time_boot_ms < old_clock, what="positions from the new boot",
                 timeout=60)
        first = v.state().position.time_boot_ms
        wait_for(lambda: v.state().position.time_boot_ms > first + 3000, what="the new boot running a while",
                 timeout=60)
        assert v.telemetry.reboots == reboots + 1
