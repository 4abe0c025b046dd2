"""The built-in simulator behaves as real ArduCopter SITL does, checked on both vehicles
with a plain pymavlink connection (no bridge in between): TIMESYNC, GPS_GLOBAL_ORIGIN,
the stream groups, FENCE_STATUS only while a fence is enabled, DO_SEND_BANNER,
MISSION_CURRENT before AUTO and after DO_SET_MISSION_CURRENT on a finished mission,
and flight times from ArduCopter's default parameters.

Each test names the ArduPilot source it follows; each was first run against the real
binary. Waits are generous and bounded; time figures are the autopilot's own clock
(time_boot_ms), never the wall clock.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, Iterator

os.environ.setdefault("MAVLINK20", "1")

import pytest  # noqa: E402
from pymavlink import mavutil  # noqa: E402

from bridge_vehicle import FLIGHT_S, HOME, TestVehicle  # noqa: E402

M = mavutil.mavlink
WAIT_S = 30.0


class Gcs:
    """A plain mavutil connection to the vehicle, as a ground station opens it."""

    def __init__(self, endpoint: str) -> None:
        self.conn = mavutil.mavlink_connection(endpoint, source_system=255, source_component=190,
                                               autoreconnect=False)
        self.mav = self.conn.mav
        self.boot_ms = 0  # the latest time_boot_ms seen
        self.reached: dict[int, int] = {}  # MISSION_ITEM_REACHED seq -> time_boot_ms when it came

    def close(self) -> None:
        self.conn.close()

    def recv(self, timeout: float = 0.2) -> Any:
        msg = self.conn.recv_match(blocking=True, timeout=timeout)
        if msg is not None and hasattr(msg, "time_boot_ms"):
            self.boot_ms = max(self.boot_ms, msg.time_boot_ms)
        if msg is not None and msg.get_type() == "MISSION_ITEM_REACHED":
            self.reached.setdefault(msg.seq, self.boot_ms)
        return None if msg is None or msg.get_type() == "BAD_DATA" else msg

    def wait(self, types: str | tuple[str, ...], cond: Callable[[Any], bool] = lambda m: True,
             timeout: float = WAIT_S) -> Any:
        types = (types,) if isinstance(types, str) else types
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv()
            if msg is not None and msg.get_type() in types and cond(msg):
                return msg
        raise AssertionError(f"no {types} within {timeout} s")

    def collect(self, seconds: float) -> list[Any]:
        out, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            if (msg := self.recv(0.05)) is not None:
                out.append(msg)
        return out

    def command(self, command: int, *params: float) -> tuple[int, list[Any]]:
        """(MAV_RESULT, what came with the COMMAND_ACK and just after it)."""
        p = list(params) + [0.0] * (7 - len(params))
        self.mav.command_long_send(1, 1, command, 0, *p)
        seen: list[Any] = []
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            msg = self.recv()
            if msg is None:
                continue
            seen.append(msg)
            if msg.get_type() == "COMMAND_ACK" and msg.command == command:
                return msg.result, seen + self.collect(0.5)
        raise AssertionError(f"no COMMAND_ACK for {command}")

    def set_param(self, name: str, value: float) -> None:
        self.mav.param_set_send(1, 1, name.encode(), value, M.MAV_PARAM_TYPE_REAL32)
        self.wait("PARAM_VALUE", lambda m: m.param_id == name)

    def stream(self, msgid: int, interval_us: int) -> None:
        assert self.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, msgid, interval_us)[0] == M.MAV_RESULT_ACCEPTED

    def upload(self, items: list[tuple[int, float, float, float]]) -> None:
        """A mission of (command, lat, lon, alt) in GLOBAL_RELATIVE_ALT_INT (item 0: home)."""
        self.mav.mission_count_send(1, 1, len(items), M.MAV_MISSION_TYPE_MISSION)
        while True:
            msg = self.wait(("MISSION_REQUEST", "MISSION_REQUEST_INT", "MISSION_ACK"))
            if msg.get_type() == "MISSION_ACK":
                assert msg.type == M.MAV_MISSION_ACCEPTED, msg
                return
            cmd, lat, lon, alt = items[msg.seq]
            self.mav.mission_item_int_send(1, 1, msg.seq, M.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, cmd, 0, 1,
                                           0, 0, 0, 0, round(lat * 1e7), round(lon * 1e7), alt)


def north_east(north_m: float, east_m: float) -> tuple[float, float]:
    return (HOME[0] + north_m / 111_319.49,
            HOME[1] + east_m / (111_319.49 * math.cos(math.radians(HOME[0]))))


@pytest.fixture
def gcs(vehicle: TestVehicle) -> Iterator[Gcs]:
    g = Gcs(vehicle.endpoint)
    try:
        g.wait("HEARTBEAT", lambda m: m.get_srcComponent() == 1 and m.system_status != M.MAV_STATE_BOOT)
        yield g
    finally:
        g.close()


def _ready(gcs: Gcs) -> None:
    gcs.stream(M.MAVLINK_MSG_ID_EKF_STATUS_REPORT, 200_000)
    gcs.wait("EKF_STATUS_REPORT", lambda m: m.flags & M.EKF_POS_HORIZ_ABS, 120)


def test_timesync_request_is_answered_with_the_autopilot_clock_and_it_asks_too(gcs: Gcs):
    """GCS_MAVLINK::handle_timesync answers a request (tc1 0) with its clock in ns in
    tc1 and the request's ts1; GCS_MAVLINK::send_timesync asks on its own every 10 s."""
    gcs.stream(M.MAVLINK_MSG_ID_SYSTEM_TIME, 200_000)
    gcs.wait("SYSTEM_TIME")
    gcs.mav.timesync_send(0, 123_456_789)
    reply = gcs.wait("TIMESYNC", lambda m: m.ts1 == 123_456_789)
    assert reply.tc1 > 0 and abs(reply.tc1 / 1e6 - gcs.boot_ms) < 5_000  # ns of the same clock
    own = gcs.wait("TIMESYNC", lambda m: m.tc1 == 0)
    assert own.ts1 > 0 and own.ts1 % 1000 == 1  # ArduPilot's clock, sysid in the last digits
    assert gcs.wait("TIMESYNC", lambda m: m.tc1 == 0 and m.ts1 != own.ts1).ts1 - own.ts1 == pytest.approx(10e9, rel=0.01)


def test_gps_global_origin_is_sent_with_home_and_on_request(vehicle: TestVehicle):
    """GCS::send_home_all sends HOME_POSITION and GPS_GLOBAL_ORIGIN when the EKF sets its
    origin, unasked; MAV_CMD_REQUEST_MESSAGE asks again."""
    vehicle.fresh_boot()
    gcs = Gcs(vehicle.endpoint)
    try:
        got = {}
        deadline = time.monotonic() + 120
        while len(got) < 2 and time.monotonic() < deadline:
            msg = gcs.recv()
            if msg is not None and msg.get_type() in ("HOME_POSITION", "GPS_GLOBAL_ORIGIN"):
                got[msg.get_type()] = msg
        assert set(got) == {"HOME_POSITION", "GPS_GLOBAL_ORIGIN"}
        result, seen = gcs.command(M.MAV_CMD_REQUEST_MESSAGE, M.MAVLINK_MSG_ID_GPS_GLOBAL_ORIGIN)
        assert result == M.MAV_RESULT_ACCEPTED
        origin = next(m for m in seen if m.get_type() == "GPS_GLOBAL_ORIGIN")
        assert abs(origin.latitude / 1e7 - HOME[0]) < 1e-5 and abs(origin.longitude / 1e7 - HOME[1]) < 1e-5
        assert abs(origin.altitude / 1000 - HOME[2]) < 1.0
    finally:
        gcs.close()


# What each REQUEST_DATA_STREAM group carries on ArduCopter (GCS_Mavlink.cpp STREAM_*),
# as far as the built-in simulator produces it.
STREAM_GROUPS = {
    M.MAV_DATA_STREAM_RAW_SENSORS: {"RAW_IMU", "SCALED_IMU2", "SCALED_PRESSURE"},
    M.MAV_DATA_STREAM_EXTENDED_STATUS: {"SYS_STATUS", "POWER_STATUS", "MEMINFO", "MISSION_CURRENT",
                                        "GPS_RAW_INT", "NAV_CONTROLLER_OUTPUT"},
    M.MAV_DATA_STREAM_RC_CHANNELS: {"RC_CHANNELS", "SERVO_OUTPUT_RAW"},
    M.MAV_DATA_STREAM_POSITION: {"GLOBAL_POSITION_INT", "LOCAL_POSITION_NED"},
    M.MAV_DATA_STREAM_EXTRA1: {"ATTITUDE", "AHRS2", "SIMSTATE"},
    M.MAV_DATA_STREAM_EXTRA2: {"VFR_HUD"},
    M.MAV_DATA_STREAM_EXTRA3: {"AHRS", "SYSTEM_TIME", "WIND", "VIBRATION", "BATTERY_STATUS",
                               "EKF_STATUS_REPORT"},
}


def test_each_stream_group_carries_arducopters_messages_and_fence_status_needs_a_fence(gcs: Gcs):
    """GCS_MAVLINK::handle_request_data_stream: each group starts the messages of its
    STREAM_* list, and no other group's; FENCE_STATUS (EXTENDED_STATUS) goes out only
    while a fence is enabled (GCS_MAVLINK::try_send_message MSG_FENCE_STATUS)."""
    _ready(gcs)
    every_group = set().union(*STREAM_GROUPS.values())
    for group, expected in STREAM_GROUPS.items():
        gcs.mav.request_data_stream_send(1, 1, M.MAV_DATA_STREAM_ALL, 0, 0)  # stop all
        gcs.stream(M.MAVLINK_MSG_ID_EKF_STATUS_REPORT, -1)
        gcs.collect(0.3)
        gcs.mav.request_data_stream_send(1, 1, group, 4, 1)
        gcs.collect(0.3)  # the group's first due times
        seen = {m.get_type() for m in gcs.collect(1.0)}
        assert expected <= seen, f"group {group}: missing {expected - seen}"
        assert not (seen & every_group) - expected, f"group {group}: also {(seen & every_group) - expected}"
        if group == M.MAV_DATA_STREAM_EXTENDED_STATUS:
            assert "FENCE_STATUS" not in seen  # FENCE_ENABLE 0
            gcs.set_param("FENCE_ENABLE", 1)
            try:
                status = gcs.wait("FENCE_STATUS")
                assert status.breach_status == 0 and status.breach_mitigation == M.FENCE_MITIGATE_NONE
            finally:
                gcs.set_param("FENCE_ENABLE", 0)
            gcs.collect(0.3)
            assert "FENCE_STATUS" not in {m.get_type() for m in gcs.collect(1.0)}
    gcs.mav.request_data_stream_send(1, 1, M.MAV_DATA_STREAM_ALL, 0, 0)


def test_do_send_banner_is_accepted_and_sends_the_version(gcs: Gcs):
    """MAV_CMD_DO_SEND_BANNER -> GCS_MAVLINK::send_banner: the firmware version string
    and the frame, as STATUSTEXTs after the ACK."""
    result, seen = gcs.command(M.MAV_CMD_DO_SEND_BANNER)
    assert result == M.MAV_RESULT_ACCEPTED
    texts = [m.text for m in seen if m.get_type() == "STATUSTEXT"]
    assert any(t.startswith("ArduCopter V4.") for t in texts), texts
    assert any(t.startswith("Frame: QUAD") for t in texts), texts


def test_mission_current_is_0_and_not_started_before_auto(gcs: Gcs):
    """AP_Mission::get_current_nav_index is 0 until the mission starts:
    MISSION_CURRENT seq 0, total without home, MISSION_STATE_NOT_STARTED, mission_mode 0."""
    lat, lon = north_east(30, 0)
    gcs.upload([(M.MAV_CMD_NAV_WAYPOINT, HOME[0], HOME[1], 0), (M.MAV_CMD_NAV_TAKEOFF, 0, 0, 10),
                (M.MAV_CMD_NAV_WAYPOINT, lat, lon, 10)])
    gcs.stream(M.MAVLINK_MSG_ID_MISSION_CURRENT, 200_000)
    current = gcs.wait("MISSION_CURRENT", lambda m: m.total == 2)
    assert (current.seq, current.mission_state, current.mission_mode) == (0, M.MISSION_STATE_NOT_STARTED, 0)


def _arm_and_take_off(gcs: Gcs, alt: float) -> int:
    """GUIDED, arm, take off to ``alt``; the autopilot's time_boot_ms at the arming ACK."""
    _ready(gcs)
    gcs.stream(M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 100_000)
    assert gcs.command(M.MAV_CMD_DO_SET_MODE, M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, M.COPTER_MODE_GUIDED)[0] == 0
    deadline = time.monotonic() + 60
    while gcs.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1)[0] != M.MAV_RESULT_ACCEPTED:
        assert time.monotonic() < deadline, "arming refused for a minute"
        time.sleep(0.5)
    armed_ms = gcs.boot_ms
    assert gcs.command(M.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, alt)[0] == M.MAV_RESULT_ACCEPTED
    return armed_ms


def test_set_mission_current_on_a_finished_mission_leaves_it_stopped(vehicle: TestVehicle, gcs: Gcs):
    """AP_Mission::set_current_cmd on a COMPLETE mission: the current item moves and the
    state becomes STOPPED (MISSION_STATE_NOT_STARTED); it is not flown again (the
    copter holds where it finished) until the mission is resumed."""
    vehicle.needs_reboot()
    end_lat, end_lon = north_east(25, 0)
    gcs.upload([(M.MAV_CMD_NAV_WAYPOINT, HOME[0], HOME[1], 0), (M.MAV_CMD_NAV_TAKEOFF, 0, 0, 10),
                (M.MAV_CMD_NAV_WAYPOINT, end_lat, end_lon, 10)])
    _arm_and_take_off(gcs, 10)
    gcs.wait("GLOBAL_POSITION_INT", lambda m: m.relative_alt > 9_000, FLIGHT_S)
    gcs.stream(M.MAVLINK_MSG_ID_MISSION_CURRENT, 200_000)
    assert gcs.command(M.MAV_CMD_DO_SET_MODE, M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, M.COPTER_MODE_AUTO)[0] == 0
    gcs.wait("MISSION_CURRENT", lambda m: m.mission_state == M.MISSION_STATE_COMPLETE, FLIGHT_S)
    result, _ = gcs.command(M.MAV_CMD_DO_SET_MISSION_CURRENT, 1)
    assert result == M.MAV_RESULT_ACCEPTED
    current = gcs.wait("MISSION_CURRENT", lambda m: m.mission_state != M.MISSION_STATE_COMPLETE)
    assert (current.seq, current.mission_state) == (1, M.MISSION_STATE_NOT_STARTED)
    # not flown again: no item reached, and the copter stays at the end of the mission
    end = gcs.wait("GLOBAL_POSITION_INT")
    gcs.reached.clear()
    later = [m for m in gcs.collect(3.0) if m.get_type() == "GLOBAL_POSITION_INT"]
    assert not gcs.reached
    last = later[-1]
    moved = math.hypot((last.lat - end.lat) * 0.0111, (last.lon - end.lon) * 0.0111 * 0.815)
    assert moved < 2.0 and abs(last.relative_alt - end.relative_alt) < 1_000


def test_a_shorter_mission_stored_mid_flight_lets_auto_finish_the_item_in_flight_and_hold(
        vehicle: TestVehicle, gcs: Gcs):
    """AP_Mission::truncate while AUTO flies item 5 of 6 and a 2-item mission (home + one
    waypoint) is stored: the loaded nav command is kept. Real SITL flies item 5 to its
    old target ("Reached command #5"), MISSION_CURRENT keeps seq 5 (total 1) and goes
    ACTIVE -> COMPLETE, and the copter then holds in AUTO, armed, at height, near the old
    route's end: it neither lands nor flies to the new mission's waypoint."""
    vehicle.needs_reboot()
    route = [(M.MAV_CMD_NAV_WAYPOINT, *north_east(25 * k, 0), 10) for k in range(1, 6)]
    gcs.upload([(M.MAV_CMD_NAV_WAYPOINT, HOME[0], HOME[1], 0), (M.MAV_CMD_NAV_TAKEOFF, 0, 0, 10), *route])
    _arm_and_take_off(gcs, 10)
    gcs.wait("GLOBAL_POSITION_INT", lambda m: m.relative_alt > 9_000, FLIGHT_S)
    gcs.stream(M.MAVLINK_MSG_ID_MISSION_CURRENT, 200_000)
    assert gcs.command(M.MAV_CMD_DO_SET_MODE, M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, M.COPTER_MODE_AUTO)[0] == 0
    gcs.wait("MISSION_CURRENT", lambda m: m.seq == 5 and m.mission_state == M.MISSION_STATE_ACTIVE, FLIGHT_S)
    new_lat, new_lon = north_east(0, 40)
    gcs.upload([(M.MAV_CMD_NAV_WAYPOINT, HOME[0], HOME[1], 0), (M.MAV_CMD_NAV_WAYPOINT, new_lat, new_lon, 10)])
    gcs.reached.clear()
    seen: list[Any] = []
    deadline = time.monotonic() + FLIGHT_S
    while time.monotonic() < deadline:  # until the mission completes and the copter is still
        if (msg := gcs.recv()) is None:
            continue
        seen.append(msg)
        done = any(m.get_type() == "MISSION_CURRENT" and m.mission_state == M.MISSION_STATE_COMPLETE
                   for m in seen)
        if done and msg.get_type() == "GLOBAL_POSITION_INT" and math.hypot(msg.vx, msg.vy) < 30:
            break
    else:
        raise AssertionError("the mission did not complete with the copter holding")
    seen += gcs.collect(3.0)
    assert 5 in gcs.reached  # the item in flight was still flown to its target
    currents = [m for m in seen if m.get_type() == "MISSION_CURRENT"]
    assert {(m.seq, m.total) for m in currents} == {(5, 1)}
    beats = [m for m in seen if m.get_type() == "HEARTBEAT" and m.get_srcComponent() == 1]
    assert beats and all(m.custom_mode == M.COPTER_MODE_AUTO and m.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED
                         for m in beats)
    fixes = [m for m in seen if m.get_type() == "GLOBAL_POSITION_INT"]
    for m in fixes:  # never toward the new waypoint (40 m east), never down
        north = (m.lat / 1e7 - HOME[0]) * 111_319.49
        east = (m.lon / 1e7 - HOME[1]) * 111_319.49 * math.cos(math.radians(HOME[0]))
        assert abs(east) < 5.0 and 70.0 < north < 130.0 and m.relative_alt > 8_000, (north, east, m.relative_alt)
    held = [m for m in seen[-len(fixes):] if m.get_type() == "GLOBAL_POSITION_INT"][-10:]
    assert max(math.hypot(m.vx, m.vy) for m in held) < 50  # cm/s: holding, not flying on


# ArduCopter's defaults for what decides flight times (AC_WPNav, AC_PosControl,
# mode_land/mode_rtl, AutoTakeoff, AP_MotorsMulticopter), with SITL's copter.parm.
FLIGHT_TIME_PARAMS = {
    "WPNAV_SPEED": 1000, "WPNAV_SPEED_UP": 250, "WPNAV_SPEED_DN": 150, "WPNAV_ACCEL": 250,
    "WPNAV_ACCEL_Z": 100, "WPNAV_JERK": 1, "WPNAV_RADIUS": 200, "PSC_JERK_Z": 5,
    "LAND_SPEED": 50, "LAND_SPEED_HIGH": 0, "LAND_ALT_LOW": 1000,
    "RTL_SPEED": 0, "RTL_ALT": 1500, "RTL_LOIT_TIME": 5000,
    "MOT_SPOOL_TIME": 0.5, "TKOFF_SLEW_TIME": 2, "TKOFF_THR_MAX": 0.9,
}


def test_flight_time_parameters_have_arducopters_defaults(gcs: Gcs):
    for name, default in FLIGHT_TIME_PARAMS.items():
        gcs.mav.param_request_read_send(1, 1, name.encode(), -1)
        value = gcs.wait("PARAM_VALUE", lambda m, name=name: m.param_id == name).param_value
        assert value == pytest.approx(default, abs=1e-4), name


def test_flight_times_follow_arducopters_default_speeds_and_accelerations(vehicle: TestVehicle, gcs: Gcs):
    """Takeoff, three legs and an RTL timed on the autopilot's clock, against bounds
    from the defaults above: a GUIDED takeoff to 9 m spools up (0.5 s), slews the
    throttle (1.8 s) and climbs at 1 m/s^2 to 2.5 m/s; a 100 m leg accelerates along a
    jerk-limited S-curve (1 m/s^3, 2.5 m/s^2) to 10 m/s and brakes the same way; RTL
    climbs to 15 m, returns, loiters 5 s and descends at 1.5 then 0.5 m/s below 10 m.
    (The built-in used to take 4 s for the takeoff and 12.7 s for a leg.)"""
    vehicle.needs_reboot()
    legs = [north_east(100, 0), north_east(100, 100), north_east(30, 100)]
    gcs.upload([(M.MAV_CMD_NAV_WAYPOINT, HOME[0], HOME[1], 0), (M.MAV_CMD_NAV_TAKEOFF, 0, 0, 10)]
               + [(M.MAV_CMD_NAV_WAYPOINT, lat, lon, 10) for lat, lon in legs]
               + [(M.MAV_CMD_NAV_RETURN_TO_LAUNCH, 0, 0, 0)])
    armed_ms = _arm_and_take_off(gcs, 10)
    gcs.wait("GLOBAL_POSITION_INT", lambda m: m.relative_alt > 9_000, FLIGHT_S)
    times = {"takeoff to 9 m": gcs.boot_ms - armed_ms}
    assert gcs.command(M.MAV_CMD_DO_SET_MODE, M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, M.COPTER_MODE_AUTO)[0] == 0
    deadline = time.monotonic() + 2 * FLIGHT_S
    while 4 not in gcs.reached:
        assert time.monotonic() < deadline, f"mission not flown: reached {gcs.reached}"
        gcs.recv()
    reached = gcs.reached
    gcs.wait("HEARTBEAT", lambda m: m.get_srcComponent() == 1 and not m.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED,
             2 * FLIGHT_S)
    times["100 m leg"] = reached[2] - reached[1]
    times["arm to 3rd leg's end"] = reached[4] - armed_ms
    times["RTL to disarmed"] = gcs.boot_ms - reached[4]
    seconds = {k: v / 1000 for k, v in times.items()}
    bounds = {"takeoff to 9 m": (6.5, 13.0), "100 m leg": (13.5, 19.0), "arm to 3rd leg's end": (44.0, 62.0),
              "RTL to disarmed": (47.0, 66.0)}
    outside = {k: (round(s, 1), bounds[k]) for k, s in seconds.items() if not bounds[k][0] <= s <= bounds[k][1]}
    assert not outside, f"vehicle seconds outside ArduCopter's bounds: {outside} (all: {seconds})"
