"""The simulated vehicle driven directly (sans-I/O) on logical time: exact, deterministic checks."""

from __future__ import annotations

from typing import Any

import pytest
from pymavlink.dialects.v20 import ardupilotmega as M

from sitl.copter import Copter
from sitl.builtin import DEFAULT_HOME, VehicleConfig
from sitl.radio import RadioModel


class _Harness:
    """A vehicle, a GCS-side encoder and parser, and a logical clock."""

    def __init__(self, **config: Any) -> None:
        values: dict[str, Any] = dict(tcp_port=0, time_to_ready_s=2.0, seed=3)
        values.update(config)
        self.vehicle = Copter(VehicleConfig(**values))
        self.gcs = M.MAVLink(None, srcSystem=255, srcComponent=190)
        self.parser = M.MAVLink(None)
        self.parser.robust_parsing = True
        self.now = 0.0
        self.vehicle.on_connect(self.now)
        self.log: list[tuple[float, Any]] = []
        self._collect()

    def _collect(self) -> list[Any]:
        data = self.vehicle.take_output()
        msgs = [m for m in (self.parser.parse_buffer(data) or []) if m.get_type() != "BAD_DATA"]
        self.log += [(self.now, m) for m in msgs]
        return msgs

    def send(self, msg: Any) -> list[Any]:
        self.vehicle.on_bytes(msg.pack(self.gcs), self.now)
        return self._collect()

    def run(self, seconds: float) -> list[Any]:
        self.now += seconds
        self.vehicle.advance(self.now)
        return self._collect()

    def past_boot(self) -> None:
        """Run to the end of MAV_STATE_BOOT (1 s): AP_Mission answers NO_SPACE before."""
        if self.now < 1.0:
            self.run(1.0 - self.now)

    def upload(self, items: list[tuple[int, int, int, float]]) -> None:
        """A mission of (command, x, y, z) items in GLOBAL_RELATIVE_ALT_INT, replies unread."""
        self.past_boot()
        self.send(self.gcs.mission_count_encode(1, 1, len(items), 0))
        for seq, (cmd, x, y, z) in enumerate(items):
            self.send(self.gcs.mission_item_int_encode(1, 1, seq, 6, cmd, 0, 1, 0, 0, 0, 0, x, y, z, 0))

    def command(self, command: int, *params: float) -> int:
        p = list(params) + [0.0] * (7 - len(params))
        replies = self.send(self.gcs.command_long_encode(1, 1, command, 0, *p))
        return next(m.result for m in replies if m.get_type() == "COMMAND_ACK")


def _wp(seq: int, dn: float, de: float, alt: float, command: int = M.MAV_CMD_NAV_WAYPOINT) -> Any:
    import pymap3d
    lat, lon, _ = pymap3d.enu2geodetic(de, dn, 0, *DEFAULT_HOME)
    return (command, round(float(lat) * 1e7), round(float(lon) * 1e7), alt)


def test_upload_timeout_rerequests_once_per_second_and_cancels_after_eight_seconds():
    h = _Harness()
    h.past_boot()
    start = h.now
    h.send(h.gcs.mission_count_encode(1, 1, 4, 0))
    log_start = len(h.log)
    for _ in range(100):  # 10 s of logical time in 0.1 s steps
        h.run(0.1)
    window = [m for _, m in h.log[log_start:]]
    requests = [m for m in window if m.get_type() == "MISSION_REQUEST"]
    acks = [m for m in window if m.get_type() == "MISSION_ACK"]
    assert [m.seq for m in requests] == [0] * 7  # re-sent after each 1 s of silence until 8 s
    assert [a.type for a in acks] == [M.MAV_MISSION_OPERATION_CANCELLED]
    cancel_time = next(t for t, m in h.log if m.get_type() == "MISSION_ACK")
    assert 8.0 < cancel_time - start <= 8.2
    assert any(m.get_type() == "STATUSTEXT" and m.text == "Mission upload timeout" for m in window)


def test_timeouts_scale_with_the_clock_not_the_speedup_setting():
    # The vehicle only sees simulated seconds: the same script gives the same transcript.
    transcripts = []
    for speedup in (1.0, 50.0):
        h = _Harness(speedup=speedup)
        h.past_boot()
        h.send(h.gcs.mission_count_encode(1, 1, 2, 0))
        for _ in range(90):
            h.run(0.1)
        transcripts.append([(round(t, 2), m.get_type()) for t, m in h.log if m.get_type() != "HEARTBEAT"])
    assert transcripts[0] == transcripts[1]


def _fly_mission(seed: int) -> list[tuple[float, float, float]]:
    h = _Harness(seed=seed)
    items = [_wp(0, 0, 0, 0), (M.MAV_CMD_NAV_TAKEOFF, 0, 0, 10.0), _wp(2, 40, 0, 12), _wp(3, 40, 40, 15)]
    h.upload(items)
    h.run(3.0)
    assert h.command(M.MAV_CMD_DO_SET_MODE, 1, 4) == M.MAV_RESULT_ACCEPTED
    assert h.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1) == M.MAV_RESULT_ACCEPTED
    assert h.command(M.MAV_CMD_DO_SET_MODE, 1, 3) == M.MAV_RESULT_ACCEPTED
    assert h.command(M.MAV_CMD_MISSION_START) == M.MAV_RESULT_ACCEPTED
    track = []
    for _ in range(300):
        h.run(0.1)
        v = h.vehicle
        track.append((round(v.e, 6), round(v.n, 6), round(v.u, 6)))
    reached = [m.seq for _, m in h.log if m.get_type() == "MISSION_ITEM_REACHED"]
    assert reached == [1, 2, 3]
    texts = [m.text for _, m in h.log if m.get_type() == "STATUSTEXT" and m.text.startswith("Mission:")]
    assert texts == ["Mission: 1 Takeoff", "Mission: 2 WP", "Mission: 3 WP"]
    return track


def test_kinematics_are_deterministic():
    assert _fly_mission(seed=5) == _fly_mission(seed=5)


def test_heartbeat_is_one_hertz_and_streams_keep_their_rate_in_simulated_time():
    h = _Harness()
    h.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 100_000)
    start = len(h.log)
    for _ in range(100):
        h.run(0.1)
    kinds = [m.get_type() for _, m in h.log[start:]]
    assert kinds.count("GLOBAL_POSITION_INT") in (99, 100, 101)
    assert kinds.count("HEARTBEAT") in (9, 10, 11)


def test_first_heartbeat_reports_boot_then_standby():
    h = _Harness()
    beats = [m for _, m in h.log if m.get_type() == "HEARTBEAT"]
    assert beats and beats[0].system_status == M.MAV_STATE_BOOT
    h.run(1.5)
    assert [m for _, m in h.log if m.get_type() == "HEARTBEAT"][-1].system_status == M.MAV_STATE_STANDBY


def test_auto_disarm_after_disarm_delay_when_left_on_the_ground():
    h = _Harness()
    h.run(3.0)
    h.command(M.MAV_CMD_DO_SET_MODE, 1, 4)
    assert h.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1) == M.MAV_RESULT_ACCEPTED
    h.run(9.0)
    assert h.vehicle.armed
    h.run(1.5)
    assert not h.vehicle.armed  # DISARM_DELAY = 10 s


def test_radio_model_is_seeded_and_signal_falls_with_distance():
    a, b = RadioModel(seed=9), RadioModel(seed=9)
    near = [a.sample(50.0, t) for t in range(30)]
    assert near == [b.sample(50.0, t) for t in range(30)]
    far = [RadioModel(seed=9).sample(5000.0, t) for t in range(30)]
    assert sum(s.rssi for s in near) / 30 > sum(s.rssi for s in far) / 30 + 20


def test_radio_link_drops_out_far_beyond_range():
    model = RadioModel(seed=1)
    samples = [model.sample(200_000.0, float(t)) for t in range(60)]
    assert not any(s.link_up for s in samples)


def test_command_with_nan_where_an_integer_is_needed_is_denied_and_changes_nothing():
    h = _Harness()
    assert h.command(M.MAV_CMD_DO_SET_MODE, 1, float("nan")) == M.MAV_RESULT_DENIED
    assert h.command(M.MAV_CMD_DO_SET_MISSION_CURRENT, float("nan")) == M.MAV_RESULT_DENIED
    assert h.vehicle.mode == 0 and h.vehicle.mission_index == 1


def test_commands_addressed_to_another_system_are_ignored():
    h = _Harness()
    replies = h.send(h.gcs.command_long_encode(7, 1, M.MAV_CMD_DO_SET_MODE, 0, 1, 2, 0, 0, 0, 0, 0))
    assert not [m for m in replies if m.get_type() == "COMMAND_ACK"]
    assert h.vehicle.mode == 0


def test_oversized_mission_count_is_refused_with_no_space():
    h = _Harness()
    h.past_boot()
    replies = h.send(h.gcs.mission_count_encode(1, 1, 60000, 0))
    assert [m.type for m in replies if m.get_type() == "MISSION_ACK"] == [M.MAV_MISSION_NO_SPACE]
    assert not h.vehicle.missions.receiving


def test_waypoint_with_nan_hold_time_is_stored_with_zero():
    h = _Harness()
    cmd, x, y, z = _wp(1, 10, 0, 10)
    h.past_boot()
    h.send(h.gcs.mission_count_encode(1, 1, 2, 0))
    h.send(h.gcs.mission_item_int_encode(1, 1, 0, 0, cmd, 0, 1, 0, 0, 0, 0, x, y, 584, 0))
    replies = h.send(h.gcs.mission_item_int_encode(1, 1, 1, 6, cmd, 0, 1, float("nan"), 0, 0, 0, x, y, z, 0))
    assert [m.type for m in replies if m.get_type() == "MISSION_ACK"] == [M.MAV_MISSION_ACCEPTED]
    assert h.vehicle.missions.items[1].param1 == 0.0


def test_reposition_off_the_globe_is_denied():
    h = _Harness()
    h.run(3.0)
    h.command(M.MAV_CMD_DO_SET_MODE, 1, 4)
    h.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    h.command(M.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 10)
    h.run(10.0)
    before = (h.vehicle.nav.e, h.vehicle.nav.n)
    replies = h.send(h.gcs.command_int_encode(1, 1, 6, M.MAV_CMD_DO_REPOSITION, 0, 0, -1, 0, 0, 0,
                                              1_000_000_000, 0, 20))
    assert [m.result for m in replies if m.get_type() == "COMMAND_ACK"] == [M.MAV_RESULT_DENIED]
    assert (h.vehicle.nav.e, h.vehicle.nav.n) == before


def test_radio_link_never_drops_within_its_solid_range():
    model = RadioModel(seed=4)
    assert all(model.sample(1000.0, float(t)).link_up for t in range(600))


def test_radio_link_drops_out_now_and_then_near_its_range_limit():
    model = RadioModel(seed=4)
    ups = [model.sample(5000.0, float(t)).link_up for t in range(600)]
    assert 0 < ups.count(False) < 600


def test_radio_status_from_a_distant_ground_station_is_weaker():
    near = _Harness(radio_status=True)
    far = _Harness(radio_status=True, gcs_lat=DEFAULT_HOME[0] + 0.03, gcs_lon=DEFAULT_HOME[1])  # ~3.3 km
    for h in (near, far):
        h.run(20.0)
    rssi = [[m.rssi for _, m in h.log if m.get_type() == "RADIO_STATUS"] for h in (near, far)]
    assert len(rssi[0]) >= 19 and rssi[1]
    assert sum(rssi[0]) / len(rssi[0]) > sum(rssi[1]) / len(rssi[1]) + 20
    assert all(m.get_srcSystem() == 51 for _, m in near.log if m.get_type() == "RADIO_STATUS")


def test_auto_on_the_ground_starts_the_mission_but_waits_for_mission_start_to_take_off():
    h = _Harness()
    items = [_wp(0, 0, 0, 0), (M.MAV_CMD_NAV_TAKEOFF, 0, 0, 10.0), _wp(2, 40, 0, 12)]
    h.upload(items)
    h.run(3.0)
    h.command(M.MAV_CMD_DO_SET_MODE, 1, 4)
    h.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    assert h.command(M.MAV_CMD_DO_SET_MODE, 1, 3) == M.MAV_RESULT_ACCEPTED
    h.run(5.0)
    current = h.vehicle.mission_current()
    assert (current.seq, current.mission_state, current.mission_mode) == (1, M.MISSION_STATE_ACTIVE, 1)
    assert h.vehicle.landed and h.vehicle.u == 0.0  # no auto_armed yet: still on the ground
    assert h.command(M.MAV_CMD_MISSION_START) == M.MAV_RESULT_ACCEPTED
    h.run(10.0)
    assert not h.vehicle.landed and h.vehicle.u > 5.0


def test_auto_on_the_ground_without_mission_start_disarms_after_disarm_delay():
    h = _Harness()
    items = [_wp(0, 0, 0, 0), (M.MAV_CMD_NAV_TAKEOFF, 0, 0, 10.0)]
    h.upload(items)
    h.run(3.0)
    h.command(M.MAV_CMD_DO_SET_MODE, 1, 4)
    h.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    h.command(M.MAV_CMD_DO_SET_MODE, 1, 3)
    h.run(11.0)
    assert not h.vehicle.armed and h.vehicle.landed


@pytest.mark.parametrize("first", [M.MAV_CMD_DO_SET_ROI, M.MAV_CMD_DO_SET_HOME, M.MAV_CMD_NAV_DELAY])
def test_auto_from_the_ground_skips_do_commands_and_delays_before_the_takeoff(first):
    # Regression: AP_Mission::starts_with_takeoff_cmd looks at the first *nav* command,
    # skipping NAV_DELAY; do-commands stored with a location are not nav commands, yet
    # were taken for the first one and AUTO was refused with "Missing Takeoff Cmd".
    h = _Harness()
    items = [_wp(0, 0, 0, 0), _wp(1, 0, 0, 0, command=first), (M.MAV_CMD_NAV_TAKEOFF, 0, 0, 10.0),
             _wp(3, 40, 0, 12)]
    h.upload(items)
    h.run(3.0)
    h.command(M.MAV_CMD_DO_SET_MODE, 1, 4)
    h.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    assert h.command(M.MAV_CMD_DO_SET_MODE, 1, 3) == M.MAV_RESULT_ACCEPTED
    assert h.vehicle.mode == 3


def test_auto_from_the_ground_is_refused_when_the_first_nav_command_is_not_a_takeoff():
    h = _Harness()
    items = [_wp(0, 0, 0, 0), _wp(1, 0, 0, 0, command=M.MAV_CMD_DO_SET_ROI), _wp(2, 40, 0, 12)]
    h.upload(items)
    h.run(3.0)
    h.command(M.MAV_CMD_DO_SET_MODE, 1, 4)
    h.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    assert h.command(M.MAV_CMD_DO_SET_MODE, 1, 3) == M.MAV_RESULT_FAILED
    assert "Auto: Missing Takeoff Cmd" in [m.text for _, m in h.log if m.get_type() == "STATUSTEXT"]


def test_attitude_pitches_nose_down_while_accelerating_forward():
    h = _Harness()
    h.run(3.0)
    h.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_ATTITUDE, 100_000)
    h.command(M.MAV_CMD_DO_SET_MODE, 1, 4)
    h.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    h.command(M.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 10)
    h.run(10.0)
    cmd, x, y, z = _wp(1, 200, 0, 10)
    h.send(h.gcs.set_position_target_global_int_encode(0, 1, 1, 6, 0b110111111000, x, y, 10, 0, 0, 0, 0, 0, 0, 0, 0))
    start = len(h.log)
    h.run(2.0)
    attitudes = [m for _, m in h.log[start:] if m.get_type() == "ATTITUDE"]
    assert min(m.pitch for m in attitudes) < -0.1  # nose down while speeding up northward
    assert all(abs(m.roll) < 0.05 for m in attitudes)
    assert abs(attitudes[-1].yaw) < 0.2  # heading north


def _exclusion_around_home(h: _Harness) -> None:
    corners = [_wp(i, dn, de, 0) for i, (dn, de) in enumerate(((-20, -20), (-20, 20), (20, 20), (20, -20)))]
    h.send(h.gcs.mission_count_encode(1, 1, 4, M.MAV_MISSION_TYPE_FENCE))
    for seq, (_cmd, x, y, _z) in enumerate(corners):
        h.send(h.gcs.mission_item_int_encode(1, 1, seq, 6, M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, 0, 1,
                                             4, 0, 0, 0, x, y, 0, M.MAV_MISSION_TYPE_FENCE))


def test_arming_inside_an_exclusion_zone_with_the_fence_on_is_refused():
    """AP_Arming::fence_checks -> AC_Fence::pre_arm_check: "Vehicle breaching Polygon
    fence" while the (enabled) fence is breached, armed or not."""
    h = _Harness()
    _exclusion_around_home(h)
    h.send(h.gcs.param_set_encode(1, 1, b"FENCE_ENABLE", 1, M.MAV_PARAM_TYPE_INT8))
    h.run(3.0)
    assert h.vehicle.fence_breach_count == 1
    h.command(M.MAV_CMD_DO_SET_MODE, 1, 4)
    assert h.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1) == M.MAV_RESULT_FAILED
    h.run(0.1)
    assert any(m.get_type() == "STATUSTEXT" and m.text == "Arm: Vehicle breaching Polygon fence" for _, m in h.log)
    assert not any(m.get_type() == "STATUSTEXT" and m.text.endswith("fence breached") for _, m in h.log)


def test_a_fence_breach_while_landed_and_armed_disarms_without_a_breach_text():
    """Copter::fence_check: landed (land_complete) and armed -> disarm; the "breached"
    text is only sent when not landed."""
    h = _Harness()
    _exclusion_around_home(h)
    h.run(3.0)
    h.command(M.MAV_CMD_DO_SET_MODE, 1, 4)
    assert h.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1) == M.MAV_RESULT_ACCEPTED
    h.send(h.gcs.param_set_encode(1, 1, b"FENCE_ENABLE", 1, M.MAV_PARAM_TYPE_INT8))
    h.run(0.5)
    assert not h.vehicle.armed and h.vehicle.fence_breach_count == 1
    assert not any(m.get_type() == "STATUSTEXT" and m.text.endswith("fence breached") for _, m in h.log)
