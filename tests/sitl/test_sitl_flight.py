"""Modes, arming, takeoff, AUTO missions, RTL, fence and battery of the simulated copter."""

from __future__ import annotations

import pytest
from sitl_client import M, SimClient, fast_config, home_plus

from sitl.builtin import SimulatorServer

WP, TAKEOFF, RTL_CMD = M.MAV_CMD_NAV_WAYPOINT, M.MAV_CMD_NAV_TAKEOFF, M.MAV_CMD_NAV_RETURN_TO_LAUNCH
REL_INT, GLOBAL = M.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, M.MAV_FRAME_GLOBAL
STABILIZE, ALT_HOLD, AUTO, GUIDED, LOITER, RTL, LAND = 0, 2, 3, 4, 5, 6, 9


@pytest.fixture
def slow_ready():
    """A vehicle that needs ArduPilot's 40 s (simulated) before its EKF has a position."""
    with SimulatorServer([fast_config(time_to_ready_s=40.0)]) as sim:
        c = SimClient(sim.endpoints[0])
        try:
            c.wait("HEARTBEAT")
            yield sim, c
        finally:
            c.close()


def _mission(*waypoints: tuple[float, float, float], rtl: bool = False) -> list[tuple]:
    home = home_plus(0, 0)
    items = [(WP, GLOBAL, 0, 0, 0, 0, home[0], home[1], 584.0), (TAKEOFF, REL_INT, 0, 0, 0, 0, 0, 0, 10.0)]
    for dn, de, alt in waypoints:
        items.append((WP, REL_INT, 0, 0, 0, 0, *home_plus(dn, de), alt))
    if rtl:
        items.append((RTL_CMD, REL_INT, 0, 0, 0, 0, 0, 0, 0.0))
    return items


def test_do_set_mode_is_acknowledged(client):
    assert client.set_mode(ALT_HOLD) == M.MAV_RESULT_ACCEPTED
    client.wait("HEARTBEAT", lambda m: m.custom_mode == ALT_HOLD)


def test_set_mode_message_changes_mode_without_any_ack(client):
    client.wait_ready()
    client.drain()
    client.mav.set_mode_send(1, M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, LOITER)
    seen = client.collect(["HEARTBEAT", "COMMAND_ACK"],
                          until=lambda m: m.get_type() == "HEARTBEAT" and m.custom_mode == LOITER)
    seen += client.collect(["HEARTBEAT", "COMMAND_ACK"], until=lambda m: m.get_type() == "HEARTBEAT")
    assert not [m for m in seen if m.get_type() == "COMMAND_ACK"]


def test_unknown_mode_is_refused_with_failed(client):
    assert client.set_mode(99) == M.MAV_RESULT_FAILED
    client.wait("STATUSTEXT", lambda m: m.text == "No such mode 99")


def test_a_disarmed_copter_may_enter_guided_before_the_ekf_is_ready_but_not_arm_in_it(slow_ready):
    # Copter::set_mode ignores mode checks while disarmed and relies on the arming checks
    _sim, c = slow_ready
    assert c.set_mode(GUIDED) == M.MAV_RESULT_ACCEPTED
    assert c.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1) == M.MAV_RESULT_FAILED
    c.wait("STATUSTEXT", lambda m: m.text == "Arm: Need Position Estimate")


def test_an_armed_copter_is_refused_position_modes_before_the_ekf_is_ready(slow_ready):
    _sim, c = slow_ready
    assert c.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1, 21196) == M.MAV_RESULT_ACCEPTED  # forced
    assert c.set_mode(GUIDED) == M.MAV_RESULT_FAILED
    c.wait("STATUSTEXT", lambda m: m.text == "Mode change to GUIDED failed: requires position")


def test_heartbeat_base_mode_is_arducopters_81_disarmed_and_209_armed(client):
    assert client.wait("HEARTBEAT").base_mode == 81
    client.wait_ready()
    client.set_mode(GUIDED)
    client.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    hb = client.wait("HEARTBEAT", lambda m: m.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED)
    # armed (209 = 81 | SAFETY_ARMED), plus GUIDED_ENABLED, which base_mode sets for the
    # GUIDED mode itself; still landed, so STANDBY
    assert hb.base_mode == 209 | M.MAV_MODE_FLAG_GUIDED_ENABLED and hb.system_status == M.MAV_STATE_STANDBY


def test_auto_without_a_mission_is_refused_when_armed(client):
    client.wait_ready()
    client.set_mode(GUIDED)
    client.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    assert client.set_mode(AUTO) == M.MAV_RESULT_FAILED
    client.wait("STATUSTEXT", lambda m: m.text == "Mode change to AUTO failed: init failed")


def test_mission_start_with_first_or_last_item_is_denied(client):
    assert client.command(M.MAV_CMD_MISSION_START, 2, 3) == M.MAV_RESULT_DENIED


def test_arming_refused_with_need_position_estimate_until_ready_then_accepted(slow_ready):
    sim, c = slow_ready
    assert c.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1) == M.MAV_RESULT_FAILED
    c.wait("STATUSTEXT", lambda m: m.text == "Arm: Need Position Estimate")
    assert not sim.state(0).armed
    c.wait_ready()
    assert c.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GPS_RAW_INT, 200_000) == M.MAV_RESULT_ACCEPTED
    c.wait("GPS_RAW_INT", lambda m: m.fix_type >= 3)
    assert c.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1) == M.MAV_RESULT_ACCEPTED
    c.wait("HEARTBEAT", lambda m: m.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED)


def test_arming_is_refused_in_a_mode_that_does_not_allow_it(client):
    client.wait_ready()
    assert client.set_mode(RTL) == M.MAV_RESULT_ACCEPTED
    assert client.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1) == M.MAV_RESULT_FAILED
    client.wait("STATUSTEXT", lambda m: m.text == "Arm: Mode not armable")


def test_guided_takeoff_climbs_to_the_requested_altitude(sim, client):
    client.arm_and_takeoff(12.0)
    client.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 100_000)
    climbing = client.wait("GLOBAL_POSITION_INT", lambda m: 1_000 < m.relative_alt < 11_000)
    assert climbing.vz < 0  # NED: climbing is negative down-velocity
    client.wait("GLOBAL_POSITION_INT", lambda m: abs(m.relative_alt - 12_000) < 100)
    assert not sim.state(0).landed


def test_takeoff_is_refused_when_disarmed(client):
    client.wait_ready()
    client.set_mode(GUIDED)
    assert client.command(M.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 10) == M.MAV_RESULT_FAILED


def test_auto_flies_the_mission_reporting_current_and_reached_to_completion(sim, client):
    items = _mission((30, 0, 12), (30, 30, 14), (0, 30, 12))
    assert client.upload(items)[0] == M.MAV_MISSION_ACCEPTED
    client.wait_ready()
    client.set_mode(GUIDED)
    assert client.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1) == M.MAV_RESULT_ACCEPTED
    client.drain()
    # AUTO starts the mission at once (ModeAuto::init); on the ground it waits for
    # MISSION_START. Sent without waiting, so no MISSION_CURRENT is skipped.
    client.mav.command_long_send(1, 1, M.MAV_CMD_DO_SET_MODE, 0, 1, AUTO, 0, 0, 0, 0, 0)
    client.mav.command_long_send(1, 1, M.MAV_CMD_MISSION_START, 0, 0, 0, 0, 0, 0, 0, 0)
    got = client.collect(["MISSION_CURRENT", "MISSION_ITEM_REACHED", "COMMAND_ACK"],
                         until=lambda m: m.get_type() == "MISSION_CURRENT"
                         and m.mission_state == M.MISSION_STATE_COMPLETE, timeout=40)
    acks = [(m.command, m.result) for m in got if m.get_type() == "COMMAND_ACK"]
    assert acks == [(M.MAV_CMD_DO_SET_MODE, 0), (M.MAV_CMD_MISSION_START, 0)]
    reached = [m.seq for m in got if m.get_type() == "MISSION_ITEM_REACHED"]
    assert reached == [1, 2, 3, 4]
    current = [m for m in got if m.get_type() == "MISSION_CURRENT"]
    active = [m.seq for m in current if m.mission_state == M.MISSION_STATE_ACTIVE]
    assert active == sorted(active) and set(active) == {1, 2, 3, 4}
    assert all(m.total == 4 for m in current)
    state = sim.state(0)
    assert state.armed and not state.landed and abs(state.relative_alt - 12.0) < 0.5


def test_do_set_mission_current_jumps_ahead_in_flight(sim, client):
    items = _mission((40, 0, 12), (80, 0, 12), (80, 40, 12), (0, 40, 12))
    client.upload(items)
    client.arm_and_takeoff(10.0)
    client.wait("HEARTBEAT", lambda m: True)
    assert client.set_mode(AUTO) == M.MAV_RESULT_ACCEPTED
    client.wait("MISSION_ITEM_REACHED", lambda m: m.seq == 2, timeout=40)
    assert client.command(M.MAV_CMD_DO_SET_MISSION_CURRENT, 5) == M.MAV_RESULT_ACCEPTED
    got = client.collect(["MISSION_CURRENT", "MISSION_ITEM_REACHED"],
                         until=lambda m: m.get_type() == "MISSION_ITEM_REACHED" and m.seq == 5, timeout=40)
    assert [m.seq for m in got if m.get_type() == "MISSION_ITEM_REACHED"] == [5]
    assert any(m.get_type() == "MISSION_CURRENT" and m.seq == 5 for m in got)


def test_do_set_mission_current_beyond_the_mission_fails(client):
    client.upload(_mission((40, 0, 12)))
    assert client.command(M.MAV_CMD_DO_SET_MISSION_CURRENT, 7) == M.MAV_RESULT_FAILED


def test_legacy_mission_set_current_is_honoured_and_reported(sim, client):
    client.upload(_mission((40, 0, 12), (80, 0, 12)))
    client.mav.mission_set_current_send(1, 1, 3)
    assert client.wait("MISSION_CURRENT", lambda m: m.seq == 3).total == 3
    assert sim.state(0).mission_current == 3


def test_rtl_flies_home_lands_and_disarms(sim, client):
    client.arm_and_takeoff(10.0)
    lat, lon = client.fly_to_once_up(60, 40, 20.0)
    client.wait("GLOBAL_POSITION_INT", lambda m: abs(m.lat - lat) < 200 and abs(m.lon - lon) < 200, timeout=40)
    assert client.set_mode(RTL) == M.MAV_RESULT_ACCEPTED
    client.wait("HEARTBEAT", lambda m: not m.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED, timeout=60)
    state = sim.state(0)
    home = home_plus(0, 0)
    assert state.landed and not state.armed and state.relative_alt == 0.0
    assert abs(state.lat * 1e7 - home[0]) < 30 and abs(state.lon * 1e7 - home[1]) < 30


def test_mission_rtl_item_returns_lands_and_disarms(sim, client):
    client.upload(_mission((30, 0, 12), rtl=True))
    client.arm_and_takeoff(10.0)
    assert client.set_mode(AUTO) == M.MAV_RESULT_ACCEPTED
    client.wait("MISSION_ITEM_REACHED", lambda m: m.seq == 3, timeout=60)
    client.wait("HEARTBEAT", lambda m: not m.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED, timeout=30)
    assert sim.state(0).landed


def test_fence_breach_of_an_exclusion_polygon_triggers_rtl_and_fence_status(sim, client):
    square = [home_plus(dn, de) for dn, de in ((30, -20), (30, 20), (70, 20), (70, -20))]
    fence = [(M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, REL_INT, 4, 0, 0, 0, la, lo, 0.0) for la, lo in square]
    assert client.upload(fence, mission_type=M.MAV_MISSION_TYPE_FENCE)[0] == M.MAV_MISSION_ACCEPTED
    client.mav.param_set_send(1, 1, b"FENCE_ENABLE", 1, M.MAV_PARAM_TYPE_INT8)
    client.wait("PARAM_VALUE", lambda m: m.param_id == "FENCE_ENABLE" and m.param_value == 1)
    client.arm_and_takeoff(10.0)
    lat, lon = client.fly_to_once_up(100, 0, 10.0)
    got = client.collect(["FENCE_STATUS", "STATUSTEXT"],
                         until=lambda m: m.get_type() == "FENCE_STATUS" and m.breach_status == 1, timeout=40)
    status = got[-1]
    assert "Polygon fence breached" in [m.text for m in got if m.get_type() == "STATUSTEXT"]
    assert status.breach_type == M.FENCE_BREACH_BOUNDARY and status.breach_count == 1
    client.wait("HEARTBEAT", lambda m: m.custom_mode == RTL)
    assert sim.state(0).fence_breach_count == 1
    assert sim.state(0).lat * 1e7 < home_plus(75, 0)[0]  # turned back before crossing the zone


def test_fence_disabled_means_no_breach(sim, client):
    square = [home_plus(dn, de) for dn, de in ((10, -20), (10, 20), (50, 20), (50, -20))]
    fence = [(M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, REL_INT, 4, 0, 0, 0, la, lo, 0.0) for la, lo in square]
    client.upload(fence, mission_type=M.MAV_MISSION_TYPE_FENCE)
    client.arm_and_takeoff(10.0)
    lat, lon = client.fly_to_once_up(30, 0, 10.0)
    client.wait("GLOBAL_POSITION_INT", lambda m: abs(m.lat - lat) < 200, timeout=40)
    assert sim.state(0).mode == GUIDED and not sim.state(0).fence_breached


def test_battery_drains_faster_in_flight_than_on_the_ground(sim, client):
    client.wait_ready()
    start = sim.state(0).battery_remaining_pct
    client.arm_and_takeoff(10.0)
    client.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_BATTERY_STATUS, 500_000)
    first = client.wait("BATTERY_STATUS")
    for _ in range(6):
        last = client.wait("BATTERY_STATUS")
    assert last.current_consumed > first.current_consumed
    assert sim.state(0).battery_remaining_pct < start
    assert last.current_battery > 500  # hover draws more than the 0.5 A idle current


def test_in_flight_disarm_without_force_is_refused(client):
    client.arm_and_takeoff(10.0)
    client.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 200_000)
    client.wait("GLOBAL_POSITION_INT", lambda m: m.relative_alt > 3_000)
    assert client.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 0) == M.MAV_RESULT_FAILED


def test_land_mode_descends_and_disarms(sim, client):
    client.arm_and_takeoff(5.0)
    client.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 200_000)
    client.wait("GLOBAL_POSITION_INT", lambda m: m.relative_alt > 4_500)
    assert client.set_mode(LAND) == M.MAV_RESULT_ACCEPTED
    client.wait("HEARTBEAT", lambda m: not m.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED, timeout=40)
    assert sim.state(0).landed


def test_pause_holds_the_mission_and_continue_resumes_it(sim, client):
    client.upload(_mission((60, 0, 12), (60, 60, 12)))
    client.arm_and_takeoff(10.0)
    assert client.set_mode(AUTO) == M.MAV_RESULT_ACCEPTED
    client.wait("MISSION_ITEM_REACHED", lambda m: m.seq == 1, timeout=40)
    assert client.command(M.MAV_CMD_DO_PAUSE_CONTINUE, 0) == M.MAV_RESULT_ACCEPTED
    assert client.command(M.MAV_CMD_REQUEST_MESSAGE, M.MAVLINK_MSG_ID_MISSION_CURRENT) == M.MAV_RESULT_ACCEPTED
    paused = client.wait("MISSION_CURRENT")
    assert paused.seq == 2 and paused.mission_state == M.MISSION_STATE_PAUSED
    assert client.command(M.MAV_CMD_DO_PAUSE_CONTINUE, 1) == M.MAV_RESULT_ACCEPTED
    client.wait("MISSION_CURRENT", lambda m: m.mission_state == M.MISSION_STATE_COMPLETE, timeout=40)
