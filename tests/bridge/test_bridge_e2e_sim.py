"""End to end: the bridge against a vehicle over real loopback TCP, on both kinds:
the built-in simulator and real ArduCopter SITL (the ``vehicle`` fixture, conftest.py).

Every wait is a bounded wait for a condition, never a timing assertion.
"""

from __future__ import annotations

import dataclasses
import random
import re

import pytest

from bridge_fake_peer import encoder, heartbeat, wait_for
from bridge_vehicle import (
    FLIGHT_S, HOME, TestVehicle, exclusion_square, flying_setup, ready, route, take_off,
)
from mavlink_bridge.apply import ApplierConfig, PlanApplier, VehicleNotReady, items_match
from mavlink_bridge.link import LinkConfig, MavlinkLink
from mavlink_bridge.mission_protocol import (
    MissionResult, MissionResultError, MissionTimeoutError, TransferTimeouts,
)
from mavlink_bridge.plan import (
    CMD_NAV_RALLY_POINT, CMD_NAV_RETURN_TO_LAUNCH, CMD_NAV_WAYPOINT, FRAME_GLOBAL,
    FRAME_GLOBAL_RELATIVE_ALT, FRAME_GLOBAL_RELATIVE_ALT_INT, FRAME_MISSION, MissionItem,
    MissionPlan, MissionType,
)
from mavlink_bridge.telemetry import CopterMode
from mavlink_bridge.vehicle import CommandResult, Vehicle


def _home_item() -> MissionItem:
    return MissionItem.at(CMD_NAV_WAYPOINT, HOME[0], HOME[1], HOME[2], frame=FRAME_GLOBAL)


def test_connect_and_telemetry_flows(vehicle: TestVehicle):
    with flying_setup(vehicle) as (_sv, link, v, _):
        s = v.state()
        assert s.heartbeat is not None and not s.heartbeat.armed
        assert s.heartbeat.mode == "STABILIZE"  # ArduCopter's boot mode
        ready(v)
        s = v.wait_until(lambda s: None not in (s.battery, s.gps, s.mission), 30)
        assert s.position.lat == pytest.approx(HOME[0], abs=1e-4)
        assert s.gps.has_3d_fix
        assert s.battery.remaining_pct is not None and s.battery.remaining_pct > 50
        assert v.stream_requests == 1


def test_arm_refused_until_position_estimate_then_accepted(vehicle: TestVehicle):
    vehicle.fresh_boot()
    with flying_setup(vehicle) as (_sv, _link, v, _):
        v.request_streams()
        v.set_mode(CopterMode.GUIDED).raise_for_result()  # a disarmed copter may enter any mode
        refused = v.arm()
        assert refused.result == CommandResult.FAILED
        # ArduCopter names the first failing check ("Arm: Need Position Estimate",
        # "Arm: AHRS: waiting for home", ...; which one depends on how far the boot got).
        wait_for(lambda: any(t.text.startswith("Arm: ") for t in v.state().status_texts),
                 what="arming STATUSTEXT", timeout=30)
        v.wait_until(lambda s: s.ekf is not None and s.ekf.position_ok, 120)
        wait_for(lambda: v.arm().accepted, what="arming accepted once the EKF uses GPS", timeout=60)
        v.wait_until(lambda s: s.armed, 10)


def test_plan_applied_right_after_boot_waits_for_the_mission_store(vehicle: TestVehicle):
    """Bug 5: ArduPilot answers MISSION_ACK NO_SPACE until AP_Mission is initialised;
    the applier waits and retries within its not-ready window instead of failing."""
    vehicle.fresh_boot()
    with flying_setup(vehicle) as (_sv, _link, v, _):
        applier = PlanApplier(v)
        plan = MissionPlan(mission=route(HOME[0], HOME[1], 0.0, n=2))
        report = applier.apply(plan, home=_home_item())  # no position yet: home given
        assert MissionType.MISSION in report.uploaded
        assert applier.verified(MissionType.MISSION) == plan.mission


def test_no_position_yet_is_reported_as_not_ready(vehicle: TestVehicle):
    vehicle.fresh_boot()
    with flying_setup(vehicle) as (_sv, _link, v, _):
        with pytest.raises(VehicleNotReady, match="no position"):
            PlanApplier(v).apply(MissionPlan(mission=route(HOME[0], HOME[1], 0.0, n=2)))


def test_kept_mission_is_neither_uploaded_nor_cleared_while_the_fence_follows(vehicle: TestVehicle):
    """A busy drone's plan has no mission (whoever tasked it owns the mission): applying
    it with keep=(MISSION,) leaves the vehicle's mission as it was and updates only the
    fence (regression: the empty mission cleared the busy drone's mission)."""
    lat, lon = HOME[0], HOME[1]
    with flying_setup(vehicle) as (_sv, _link, v, _):
        ready(v)
        applier = PlanApplier(v)
        tasked = MissionPlan(mission=route(lat, lon, 30.0, n=3),
                             fence=exclusion_square(lat + 0.001, lon + 0.001))
        applier.apply(tasked)
        busy = MissionPlan(fence=exclusion_square(lat - 0.001, lon - 0.001))
        report = applier.apply(busy, keep=(MissionType.MISSION,))
        assert report.uploaded == (MissionType.FENCE,)
        mission = v.download(MissionType.MISSION)
        assert len(mission) == 1 + len(tasked.mission)  # home + the tasked mission, untouched
        for sent, got in zip(tasked.mission, mission[1:]):
            assert items_match(sent, got) is None
        fence = v.download(MissionType.FENCE)
        assert len(fence) == len(busy.fence)
        assert all(items_match(a, b) is None for a, b in zip(busy.fence, fence))


def test_unknown_mode_is_refused_with_failed(vehicle: TestVehicle):
    with flying_setup(vehicle) as (_sv, _link, v, _):
        ack = v.command(176, 1, 12345)  # MAV_CMD_DO_SET_MODE, custom mode that does not exist
        assert ack.result == CommandResult.FAILED


@pytest.mark.parametrize("mission_type", list(MissionType), ids=lambda t: t.name)
def test_upload_then_read_back_item_by_item(vehicle: TestVehicle, mission_type):
    lat, lon = HOME[0], HOME[1]
    items = {
        MissionType.MISSION: (_home_item(),) + route(lat, lon, 30.0)
        + (MissionItem(command=CMD_NAV_RETURN_TO_LAUNCH, frame=FRAME_MISSION),),
        MissionType.FENCE: exclusion_square(lat + 0.001, lon + 0.001),
        MissionType.RALLY: (MissionItem.at(CMD_NAV_RALLY_POINT, lat + 0.0005, lon, 25.0),
                            MissionItem.at(CMD_NAV_RALLY_POINT, lat, lon + 0.0005, 630.0, frame=FRAME_GLOBAL)),
    }[mission_type]
    with flying_setup(vehicle) as (_sv, _link, v, _):
        v.upload(mission_type, items)
        got = v.download(mission_type)
        assert len(got) == len(items)
        first = 1 if mission_type is MissionType.MISSION else 0
        for seq in range(first, len(items)):
            assert items_match(items[seq], got[seq]) is None, (seq, items[seq], got[seq])
        if mission_type is MissionType.MISSION:
            assert got[0].frame == FRAME_GLOBAL  # item 0 is home, in frame GLOBAL
            assert got[0].lat == pytest.approx(HOME[0], abs=1e-5)
            # uploaded as GLOBAL_RELATIVE_ALT_INT, stored and returned as GLOBAL_RELATIVE_ALT
            assert items[2].frame == FRAME_GLOBAL_RELATIVE_ALT_INT
            assert got[2].frame == FRAME_GLOBAL_RELATIVE_ALT
            assert all(it.autocontinue == 1 for it in got)
            # Bug 2: NAV_RETURN_TO_LAUNCH has no location: read back in frame 0
            assert (got[-1].command, got[-1].frame, got[-1].x, got[-1].y) == (CMD_NAV_RETURN_TO_LAUNCH, 0, 0, 0)
        else:
            # Bug 1: fence and rally items store no autocontinue and read back 0
            assert all(it.autocontinue == 0 for it in got)


def test_unsupported_command_is_surfaced_as_named_error(vehicle: TestVehicle):
    with flying_setup(vehicle) as (_sv, _link, v, _):
        bogus = MissionItem.at(31999, HOME[0], HOME[1], 10.0)
        with pytest.raises(MissionResultError) as err:
            v.upload(MissionType.MISSION, (_home_item(), bogus))
        assert err.value.result is MissionResult.UNSUPPORTED
        assert "MAV_MISSION_UNSUPPORTED" in str(err.value)


def test_fly_mission_with_fence_then_change_plan_in_flight(vehicle: TestVehicle):
    with flying_setup(vehicle) as (_sv, _link, v, _):
        take_off(vehicle, v)
        lat, lon = HOME[0], HOME[1]
        # Legs stay within SITL's 150 m circle fence (copter.parm FENCE_RADIUS; the
        # applier adds the polygon bit to FENCE_TYPE 7 and keeps the circle).
        first = MissionPlan(mission=route(lat, lon, east_m=0.0, n=6, step_m=20.0),
                            fence=exclusion_square(lat - 0.003, lon - 0.003), fence_enable=True)
        applier = PlanApplier(v)
        report = applier.apply(first)
        assert set(report.uploaded) == set(MissionType)
        assert ("FENCE_ENABLE", 1.0) in report.params_set
        assert applier.apply(first).uploaded == ()  # unchanged plan: nothing sent
        v.clear_reached()
        v.set_mode("AUTO").raise_for_result()
        assert v.wait_item_reached(3, FLIGHT_S) >= 3

        # A new plan arrives in flight: the same corridor shifted 40 m east; the
        # planner says where to continue (mission index 4 = wire seq 5).
        second = MissionPlan(mission=route(lat, lon, east_m=40.0, n=6, step_m=20.0), fence=first.fence,
                             fence_enable=True, resume_index=4)
        report = applier.apply(second)
        assert report.uploaded == (MissionType.MISSION,)
        assert report.resumed_at == 5
        s = v.state()
        assert s.armed and s.mode == "AUTO"
        v.wait_until(lambda s: s.mission is not None and s.mission.seq == 5, 30)
        v.clear_reached()
        assert v.wait_item_reached(5, FLIGHT_S) == 5
        target = second.mission[4]
        s = v.state()
        assert s.armed
        assert s.position.lon == pytest.approx(target.lon, abs=2e-4)
        assert s.position.lat == pytest.approx(target.lat, abs=2e-4)
        assert applier.verified(MissionType.MISSION) == second.mission


def test_a_resume_index_is_set_while_armed_in_another_mode_and_auto_starts_there(vehicle: TestVehicle):
    """A plan naming its resume item, uploaded to a copter hovering in GUIDED, moves the
    mission's current item there without flying it (ArduPilot's set_current_cmd on a
    mission not running): the mode the applier last saw may be a second old, and a
    switch to AUTO then starts at the planner's item, not at the takeoff. A plan with no
    resume item is not pointed anywhere outside AUTO (the bridge guesses in AUTO only)."""
    with flying_setup(vehicle) as (_sv, _link, v, _):
        take_off(vehicle, v)
        lat, lon = HOME[0], HOME[1]
        applier = PlanApplier(v)
        guessed = applier.apply(MissionPlan(mission=route(lat, lon, east_m=20.0, n=4, step_m=20.0)))
        assert MissionType.MISSION in guessed.uploaded and guessed.resumed_at is None
        plan = MissionPlan(mission=route(lat, lon, east_m=0.0, n=4, step_m=20.0), resume_index=3)
        report = applier.apply(plan)
        assert report.resumed_at == 4   # wire seq: item 0 is home
        v.wait_until(lambda s: s.mission is not None and s.mission.seq == 4, 30)
        s = v.state()
        assert s.mode == "GUIDED" and s.armed
        v.clear_reached()
        v.set_mode("AUTO").raise_for_result()
        assert v.wait_item_reached(1, FLIGHT_S) == 4   # the first reached: 1-3 skipped, the takeoff too
        target = plan.mission[3]
        s = v.state()
        assert s.position.lat == pytest.approx(target.lat, abs=2e-4)
        assert s.position.lon == pytest.approx(target.lon, abs=2e-4)


def test_a_plan_beyond_the_circle_fence_is_reported_naming_fence_radius(vehicle: TestVehicle):
    """FENCE_TYPE 7 (ArduCopter's default) includes the circle, so switching the fence on
    for our polygons arms a FENCE_RADIUS circle round home too (150 m in SITL's
    copter.parm): the applier says so for a plan reaching further, naming the parameters
    and the radius needed, from the vehicle's own parameters (PARAM_REQUEST_READ), the
    same on the built-in simulator and real SITL; once the operator raises FENCE_RADIUS the
    problem is gone (parameters read afresh after a problem and when their reading is old)."""
    vehicle.needs_reboot()  # sets FENCE_RADIUS
    lat, lon = HOME[0], HOME[1]
    with flying_setup(vehicle) as (_sv, _link, v, _):
        ready(v)
        assert v.get_param("FENCE_RADIUS") == 150.0 and int(v.get_param("FENCE_TYPE")) & 2
        assert v.get_param("FENCE_ENABLE") == 0.0
        applier = PlanApplier(v, ApplierConfig(fence_params_max_age_s=0.0))  # read every time
        far = MissionPlan(mission=route(lat, lon, east_m=0.0, n=5, step_m=40.0),  # last at 200 m
                          fence=exclusion_square(lat - 0.003, lon - 0.003), fence_enable=True)
        problem = applier.fence_problem(far, fence_home=(lat, lon))
        assert problem is not None and re.search(
            r"mission item 6 is 20\d m from home, beyond FENCE_RADIUS 150 m less FENCE_MARGIN 2 m "
            r"\(FENCE_TYPE 7 includes the circle.*FENCE_ACTION 1 .*FENCE_RADIUS to at least 20\d m",
            problem), problem
        assert v.get_param("FENCE_ENABLE") == 0.0  # asking changed nothing
        # Within the circle (home: the item-0 estimate), a kept mission, or no fence: fine.
        near = dataclasses.replace(far, mission=route(lat, lon, east_m=0.0, n=3, step_m=40.0))
        assert applier.fence_problem(near) is None
        assert applier.fence_problem(far, keep=(MissionType.MISSION,)) is None
        assert applier.fence_problem(dataclasses.replace(far, fence_enable=False)) is None
        assert applier.fence_problem(dataclasses.replace(far, fence_enable=None)) is None  # off
        v.set_param("FENCE_RADIUS", 1000.0)
        assert applier.fence_problem(far) is None
        v.set_param("FENCE_RADIUS", 150.0)
        v.set_param("FENCE_ACTION", 0.0)  # report only: a breach changes nothing
        assert applier.fence_problem(far) is None


def test_a_plan_above_the_altitude_fence_is_reported_naming_fence_alt_max(vehicle: TestVehicle):
    """FENCE_TYPE 7 includes the altitude fence too: a FENCE_ALT_MAX ceiling over home (100
    m by default) that switching the fence on arms with our polygons. A plan reaching it
    (less FENCE_MARGIN) is reported naming the parameter and the ceiling needed, for items
    above home and above sea level alike, from the vehicle's own parameters, the same on
    the built-in simulator and real SITL; a plan beyond both fences names both; raising
    FENCE_ALT_MAX or clearing the altitude bit clears it."""
    vehicle.needs_reboot()  # sets FENCE_ALT_MAX, FENCE_TYPE
    lat, lon = HOME[0], HOME[1]
    with flying_setup(vehicle) as (_sv, _link, v, _):
        ready(v)
        assert v.get_param("FENCE_ALT_MAX") == 100.0 and int(v.get_param("FENCE_TYPE")) & 1
        applier = PlanApplier(v, ApplierConfig(fence_params_max_age_s=0.0))  # read every time
        high = MissionPlan(mission=route(lat, lon, east_m=0.0, n=2, step_m=40.0, alt=120.0),
                           fence=exclusion_square(lat - 0.003, lon - 0.003), fence_enable=True)
        problem = applier.fence_problem(high, fence_home=(lat, lon))
        assert problem is not None and "circle" not in problem and re.search(
            r"mission item 1 is 120 m above home, at or above FENCE_ALT_MAX 100 m less "
            r"FENCE_MARGIN 2 m \(FENCE_TYPE 7 includes the altitude, bit 1.*FENCE_ACTION 1 "
            r".*FENCE_ALT_MAX to at least 123 m", problem), problem
        assert v.get_param("FENCE_ENABLE") == 0.0  # asking changed nothing
        low = dataclasses.replace(high, mission=route(lat, lon, east_m=0.0, n=2, step_m=40.0,
                                                      alt=97.0))
        assert applier.fence_problem(low) is None  # below the ceiling less the margin
        # A rally point given above sea level: its height over home is what counts.
        home_amsl = v.state().position.alt_msl - v.state().position.alt_rel
        rally = dataclasses.replace(low, rally=(MissionItem.at(
            CMD_NAV_RALLY_POINT, lat + 0.0003, lon, home_amsl + 130.0, frame=FRAME_GLOBAL),))
        problem = applier.fence_problem(rally)
        assert problem is not None and re.search(r"rally item 0 is 13\d m above home", problem), problem
        # Beyond the circle and through the ceiling: both named.
        both = dataclasses.replace(high, mission=route(lat, lon, east_m=0.0, n=5, step_m=40.0,
                                                       alt=120.0))
        problem = applier.fence_problem(both, fence_home=(lat, lon))
        assert problem is not None and "FENCE_RADIUS" in problem and "FENCE_ALT_MAX" in problem
        v.set_param("FENCE_ALT_MAX", 200.0)
        assert applier.fence_problem(high) is None
        v.set_param("FENCE_ALT_MAX", 100.0)
        v.set_param("FENCE_TYPE", 6.0)  # circle and polygon, no altitude fence
        assert applier.fence_problem(high) is None


def test_link_cut_and_reconnect_resumes_telemetry_and_missions(vehicle: TestVehicle):
    with flying_setup(vehicle, proxy=True) as (_sv, link, v, proxy):
        ready(v)
        proxy.cut()
        wait_for(lambda: link.stats.connects >= 2, what="reconnect", timeout=30)
        assert link.wait_for_heartbeat(30)
        # Bug 3: the streams are asked for again after the reconnect, by the bridge itself.
        wait_for(lambda: v.stream_requests >= 2, what="streams re-requested", timeout=30)
        before = v.state().received_at.get("position")
        wait_for(lambda: v.state().received_at.get("position") != before, what="fresh position", timeout=30)
        v.upload(MissionType.MISSION, (_home_item(),) + route(HOME[0], HOME[1], 0.0, n=2))
        assert len(v.download(MissionType.MISSION)) == 4
        assert link.stats.disconnects >= 1


def test_a_reconnect_reads_the_plan_back_instead_of_uploading_it_again(vehicle: TestVehicle):
    """A telemetry link fading out and back leaves the vehicle's lists alone: the
    applier reads them back and uploads only a list changed behind its back (a
    re-upload in flight would also MISSION_SET_CURRENT the copter back along it)."""
    with flying_setup(vehicle, proxy=True) as (_sv, link, v, proxy):
        ready(v)
        applier = PlanApplier(v)
        plan = MissionPlan(mission=route(HOME[0], HOME[1], 0.0, n=2),
                           fence=exclusion_square(HOME[0] + 0.003, HOME[1] + 0.003))
        assert {MissionType.FENCE, MissionType.MISSION} <= set(applier.apply(plan).uploaded)

        def reconnect(count: int) -> None:
            proxy.cut()
            wait_for(lambda: link.stats.connects >= count, what="reconnect", timeout=30)
            assert link.wait_for_heartbeat(30)

        reconnect(2)
        report = applier.apply(plan)
        assert report.uploaded == () and MissionType.MISSION in report.unchanged
        assert report.verify_s > 0, "trusted without reading back"
        assert applier.apply(plan).verify_s == 0  # confirmed once, trusted again
        v.upload(MissionType.MISSION, (_home_item(),) + route(HOME[0], HOME[1], 30.0, n=3))
        reconnect(3)
        assert applier.apply(plan).uploaded == (MissionType.MISSION,)
        assert len(v.download(MissionType.MISSION)) == 1 + len(plan.mission)


def test_garbage_bytes_on_the_link_are_counted_and_harmless(vehicle: TestVehicle):
    with flying_setup(vehicle, proxy=True) as (_sv, link, v, proxy):
        ready(v)
        rng = random.Random(4)
        noise = bytes(rng.randrange(256) for _ in range(4000))
        corrupt = bytearray(heartbeat(encoder(1)))
        corrupt[12] ^= 0x55
        before = link.stats
        proxy.inject(noise + bytes(corrupt) + b"\r\nAPM: boot text again\r\n")
        wait_for(lambda: link.stats.garbage_bytes > before.garbage_bytes + 1000, what="garbage counted")
        items = (_home_item(),) + route(HOME[0], HOME[1], 0.0, n=3)
        v.upload(MissionType.MISSION, items)
        assert len(v.download(MissionType.MISSION)) == len(items)
        assert link.stats.connects == 1  # garbage is not a reason to reconnect


def test_vehicle_that_stops_answering_mid_upload_times_out_not_success(vehicle: TestVehicle):
    fast = TransferTimeouts(default_s=0.2, item_s=0.1, max_retries=2)
    with flying_setup(vehicle, proxy=True, timeouts=fast) as (_sv, link, v, proxy):
        v.upload(MissionType.MISSION, (_home_item(),) + route(HOME[0], HOME[1], 0.0, n=2))

        def go_quiet(msg, now):
            # the vehicle falls silent once it has asked for item 3 of the new upload
            if msg.get_type() in ("MISSION_REQUEST", "MISSION_REQUEST_INT") and msg.seq == 3:
                proxy.paused.set()

        unsubscribe = link.subscribe(go_quiet, sysid=1)
        with pytest.raises(MissionTimeoutError) as err:
            v.upload(MissionType.MISSION, (_home_item(),) + route(HOME[0], HOME[1], 30.0, n=6))
        unsubscribe()
        assert "did NOT complete" in str(err.value)
        assert "items requested" in str(err.value)


def test_malformed_fence_plan_is_refused_before_anything_is_sent(vehicle: TestVehicle):
    with flying_setup(vehicle) as (_sv, link, v, _):
        ready(v)
        applier = PlanApplier(v)
        good = exclusion_square(HOME[0] + 0.002, HOME[1])
        applier.apply(MissionPlan(fence=good))
        sent = link.stats.sent
        with pytest.raises(ValueError):
            applier.apply(MissionPlan(fence=good[:3], mission=route(HOME[0], HOME[1], 0.0)))
        assert link.stats.sent - sent <= 1  # at most our own 1 Hz heartbeat went out
        assert len(v.download(MissionType.FENCE)) == len(good)


def test_lost_final_ack_is_resolved_by_read_back(vehicle: TestVehicle):
    dropped = []

    def drop_first_accepted_mission_ack(msg):
        if (not dropped and msg.get_type() == "MISSION_ACK" and msg.type == 0
                and msg.mission_type == MissionType.MISSION):
            dropped.append(msg)
            return True
        return False

    fast = TransferTimeouts(default_s=0.3, item_s=0.2, max_retries=1)
    with flying_setup(vehicle, proxy=True, timeouts=fast, drop_to_bridge=drop_first_accepted_mission_ack) \
            as (_sv, _link, v, proxy):
        ready(v)
        applier = PlanApplier(v)
        plan = MissionPlan(mission=route(HOME[0], HOME[1], 0.0, n=3))
        report = applier.apply(plan)
        assert MissionType.MISSION in report.uploaded
        assert proxy.dropped == 1
        assert applier.verified(MissionType.MISSION) == plan.mission


def test_wiring_check_cli_prints_status_and_rejects_bad_strings(vehicle: TestVehicle, capsys):
    from mavlink_bridge.__main__ import main
    assert main([vehicle.endpoint, "--seconds", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "connected to system 1" in out and "mode=STABILIZE" in out
    assert "gps_fix=6" in out or "gps_fix=3" in out
    with pytest.raises(SystemExit):
        main(["tcp:127.0.0.1:99999"])
    assert "port 99999" in capsys.readouterr().err


def test_link_quality_from_the_simulated_sik_radio_on_either_vehicle(vehicle: TestVehicle):
    """Real SITL sends no RADIO_STATUS; the simulated SiK radio in its MAVLink path does
    (sysid 51), so the bridge gets a link quality from both vehicles the same way."""
    from sitl.vehicles import SimulatedVehicle
    sim = SimulatedVehicle(vehicle.kind, speedup=vehicle.sim.speedup, home=HOME,  # type: ignore[arg-type]
                           binary=getattr(vehicle.sim, "binary", None), radio=True, radio_seed=3)
    try:
        sim.boot()
        link = MavlinkLink(LinkConfig(sim.endpoint, target_system=1))
        v = Vehicle(link, 1)  # default source: RADIO_STATUS from sysid 51
        with link:
            assert link.wait_for_heartbeat(30)
            wait_for(lambda: v.link_quality() is not None, what="RADIO_STATUS", timeout=30)
            q = v.link_quality()
            assert q.source == "radio_status" and 0.9 <= q.score <= 1.0  # on the ground station
            assert q.fade_margin_db is not None and q.rssi_dbm is not None
            assert v.state().radio is None  # the radio's status is not the vehicle's telemetry
    finally:
        sim.close()
