"""The built-in simulator driven the way ArduPilot's autotest and pymavlink scripts drive
real ArduPilot Copter SITL: ``mavutil.mavlink_connection('tcp:127.0.0.1:PORT')``,
``wait_heartbeat``, ``set_mode('GUIDED')`` by name, ``arducopter_arm`` +
``motors_armed_wait``, ``MAVWPLoader`` uploads, ``waypoint_*`` helpers.

Each test's docstring names the ArduPilot source whose behaviour it checks. Waits are
bounded by wall-clock deadlines only as a failure guard; nothing asserts on timing.
"""

from __future__ import annotations

import os

os.environ.setdefault("MAVLINK20", "1")

import time
from typing import Any, Callable, Iterator

import pytest
from pymavlink import mavutil, mavwp
from sitl_client import fast_config, home_plus, wait_for

from sitl.builtin import DEFAULT_HOME, SimulatorServer

M = mavutil.mavlink
WAIT_S = 20.0
GUIDED, AUTO, RTL = M.COPTER_MODE_GUIDED, M.COPTER_MODE_AUTO, M.COPTER_MODE_RTL


class Gcs:
    """A plain mavutil connection, as a script against ArduPilot SITL would open it."""

    def __init__(self, endpoint: str) -> None:
        self.conn = mavutil.mavlink_connection(endpoint, source_system=255, source_component=190,
                                               autoreconnect=False)
        self.mav = self.conn.mav

    def wait(self, types: str | list[str], cond: Callable[[Any], bool] = lambda m: True,
             timeout: float = WAIT_S) -> Any:
        return wait_for(self.conn, types, cond, timeout)

    def ack(self, command: int) -> int:
        return self.wait("COMMAND_ACK", lambda m: m.command == command).result

    def command(self, command: int, *params: float) -> int:
        p = list(params) + [0.0] * (7 - len(params))
        self.mav.command_long_send(self.conn.target_system, self.conn.target_component, command, 0, *p)
        return self.ack(command)

    def wait_booted(self) -> None:
        """The first HEARTBEAT out of MAV_STATE_BOOT: ArduPilot's init is done (before
        it, AP_Mission answers an upload with NO_SPACE)."""
        self.wait("HEARTBEAT", lambda m: m.system_status != M.MAV_STATE_BOOT)

    def wait_ready(self) -> None:
        assert self.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_EKF_STATUS_REPORT,
                            100_000) == M.MAV_RESULT_ACCEPTED
        self.wait("EKF_STATUS_REPORT", lambda m: m.flags & M.EKF_POS_HORIZ_ABS)

    def bounded(self, what: Callable[[], Any]) -> None:
        """Run a blocking mavutil helper (motors_armed_wait, ...) with a watchdog."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            msg = self.conn.recv_match(type="HEARTBEAT", blocking=True, timeout=0.5)
            if msg is not None and what():
                return
        pytest.fail("condition not reached")


@pytest.fixture
def gcs() -> Iterator[Gcs]:
    with SimulatorServer([fast_config()]) as sim:
        g = Gcs(sim.endpoints[0])
        try:
            g.conn.wait_heartbeat(timeout=WAIT_S)
            g.wait_booted()
            yield g
        finally:
            g.conn.close()


def _arm_in_guided(g: Gcs) -> None:
    g.wait_ready()
    g.conn.set_mode("GUIDED")
    assert g.ack(M.MAV_CMD_DO_SET_MODE) == M.MAV_RESULT_ACCEPTED
    g.conn.arducopter_arm()
    assert g.ack(M.MAV_CMD_COMPONENT_ARM_DISARM) == M.MAV_RESULT_ACCEPTED
    g.bounded(g.conn.motors_armed)


def test_first_heartbeat_lets_mavutil_find_copter_modes():
    """GCS_MAVLINK::send_heartbeat / GCS_MAVLINK_Copter::frame_type: MAV_TYPE_QUADROTOR,
    MAV_AUTOPILOT_ARDUPILOTMEGA, custom mode STABILIZE, system_status BOOT at first;
    mavutil.mode_mapping() must then resolve Copter's mode names."""
    with SimulatorServer([fast_config()]) as sim:
        g = Gcs(sim.endpoints[0])
        try:
            hb = g.conn.wait_heartbeat(timeout=WAIT_S)
            assert (hb.type, hb.autopilot, hb.custom_mode) == (M.MAV_TYPE_QUADROTOR,
                                                               M.MAV_AUTOPILOT_ARDUPILOTMEGA, 0)
            assert hb.system_status == M.MAV_STATE_BOOT
            assert hb.base_mode & M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
            assert g.conn.target_system == 1  # mavutil leaves target_component 0 (broadcast)
            mapping = g.conn.mode_mapping()
            assert mapping is not None and mapping["GUIDED"] == 4 and mapping["RTL"] == 6
            assert g.conn.flightmode == "STABILIZE"
            assert hb.get_header().mlen is not None and hb.get_msgbuf()[0] == 0xFD  # MAVLink 2
        finally:
            g.conn.close()


def test_set_mode_by_name_is_acknowledged_and_shown_in_heartbeat(gcs):
    """Copter::set_mode via GCS_MAVLINK::handle_command_do_set_mode: pymavlink's
    set_mode('GUIDED') sends MAV_CMD_DO_SET_MODE and gets COMMAND_ACK ACCEPTED."""
    gcs.conn.set_mode("GUIDED")
    assert gcs.ack(M.MAV_CMD_DO_SET_MODE) == M.MAV_RESULT_ACCEPTED
    gcs.wait("HEARTBEAT", lambda m: m.custom_mode == GUIDED)
    assert gcs.conn.flightmode == "GUIDED"


def test_arming_before_the_ekf_has_a_position_fails_with_arducopter_wording():
    """AP_Arming::check_failed ("Arm: " prefix while arming) and
    AP_Arming_Copter::mandatory_gps_checks: "Need Position Estimate"; COMMAND_ACK FAILED."""
    with SimulatorServer([fast_config(time_to_ready_s=60.0)]) as sim:
        g = Gcs(sim.endpoints[0])
        try:
            g.conn.wait_heartbeat(timeout=WAIT_S)
            g.conn.arducopter_arm()
            assert g.ack(M.MAV_CMD_COMPONENT_ARM_DISARM) == M.MAV_RESULT_FAILED
            g.wait("STATUSTEXT", lambda m: m.text == "Arm: Need Position Estimate")
            assert not g.conn.motors_armed()
        finally:
            g.conn.close()


def test_guided_takeoff_then_set_position_target_global_int(gcs):
    """GCS_MAVLINK_Copter::handle_MAV_CMD_NAV_TAKEOFF in GUIDED, then
    handle_message SET_POSITION_TARGET_GLOBAL_INT (GUIDED only, relative-alt frame)
    moves the copter to the target."""
    _arm_in_guided(gcs)
    assert gcs.command(M.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 10) == M.MAV_RESULT_ACCEPTED
    assert gcs.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT,
                       100_000) == M.MAV_RESULT_ACCEPTED
    gcs.wait("GLOBAL_POSITION_INT", lambda m: m.relative_alt > 9_500)
    lat, lon = home_plus(30, 0)
    gcs.mav.set_position_target_global_int_send(
        0, 1, 1, M.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, 0b0000111111111000, lat, lon, 12,
        0, 0, 0, 0, 0, 0, 0, 0)
    gcs.wait("GLOBAL_POSITION_INT", lambda m: abs(m.lat - lat) < 30 and abs(m.lon - lon) < 30
             and abs(m.relative_alt - 12_000) < 500)


def _wp_loader(items: list[tuple[int, int, float, float, float]]) -> mavwp.MAVWPLoader:
    """A MAVWPLoader holding home at 0 plus ``items`` (command, frame, lat, lon, alt)."""
    loader = mavwp.MAVWPLoader(target_system=1, target_component=1)
    lat0, lon0, alt0 = DEFAULT_HOME
    loader.add(M.MAVLink_mission_item_message(1, 1, 0, M.MAV_FRAME_GLOBAL, M.MAV_CMD_NAV_WAYPOINT,
                                              0, 1, 0, 0, 0, 0, lat0, lon0, alt0))
    for command, frame, lat, lon, alt in items:
        loader.add(M.MAVLink_mission_item_message(1, 1, loader.count(), frame, command, 0, 1,
                                                  0, 0, 0, 0, lat, lon, alt))
    return loader


def _upload_loader(g: Gcs, loader: mavwp.MAVWPLoader) -> Any:
    """MAVProxy's wp module flow: waypoint_count_send, answer each MISSION_REQUEST
    with loader.wp(seq); returns the MISSION_ACK."""
    g.conn.waypoint_count_send(loader.count())
    requested = []
    while True:
        msg = g.wait(["MISSION_REQUEST", "MISSION_REQUEST_INT", "MISSION_ACK"])
        if msg.get_type() == "MISSION_ACK":
            assert requested == list(range(loader.count()))
            return msg
        assert msg.get_type() == "MISSION_REQUEST"  # ArduPilot asks with the legacy request
        requested.append(msg.seq)
        g.mav.send(loader.wp(msg.seq))


def test_mavwploader_upload_read_back_and_auto_flight_to_rtl_disarm(gcs):
    """MissionItemProtocol::handle_mission_count/_request/_item (legacy MISSION_REQUEST for
    every item, MISSION_ACK ACCEPTED, "Flight plan received"); AP_Mission::
    mission_cmd_to_mavlink_int on read-back (home at 0 in GLOBAL, relative waypoints in
    GLOBAL_RELATIVE_ALT); GCS_MAVLINK_Copter::handle_MAV_CMD_MISSION_START (auto_armed);
    MISSION_ITEM_REACHED per item; ModeRTL lands and disarms (Copter::auto_disarm via
    land_complete)."""
    wp1 = home_plus(20, 0)
    wp2 = home_plus(20, 20)
    loader = _wp_loader([(M.MAV_CMD_NAV_TAKEOFF, M.MAV_FRAME_GLOBAL_RELATIVE_ALT, 0, 0, 8),
                         (M.MAV_CMD_NAV_WAYPOINT, M.MAV_FRAME_GLOBAL_RELATIVE_ALT, wp1[0] / 1e7, wp1[1] / 1e7, 8),
                         (M.MAV_CMD_NAV_WAYPOINT, M.MAV_FRAME_GLOBAL_RELATIVE_ALT, wp2[0] / 1e7, wp2[1] / 1e7, 8),
                         (M.MAV_CMD_NAV_RETURN_TO_LAUNCH, M.MAV_FRAME_GLOBAL_RELATIVE_ALT, 0, 0, 0)])
    ack = _upload_loader(gcs, loader)
    assert ack.type == M.MAV_MISSION_ACCEPTED
    gcs.wait("STATUSTEXT", lambda m: m.text == "Flight plan received")

    gcs.conn.waypoint_request_list_send()
    count = gcs.wait("MISSION_COUNT").count
    assert count == loader.count()
    back = []
    for seq in range(count):
        gcs.mav.mission_request_int_send(1, 1, seq)
        back.append(gcs.wait("MISSION_ITEM_INT", lambda m, s=seq: m.seq == s))
    gcs.mav.mission_ack_send(1, 1, M.MAV_MISSION_ACCEPTED)
    assert back[0].frame == M.MAV_FRAME_GLOBAL and back[0].command == M.MAV_CMD_NAV_WAYPOINT
    # NAV_RETURN_TO_LAUNCH stores no location (AP_Mission::stored_in_location): frame 0
    assert [m.frame for m in back[1:]] == [M.MAV_FRAME_GLOBAL_RELATIVE_ALT] * 3 + [M.MAV_FRAME_GLOBAL]
    # MAVWPLoader holds legacy MISSION_ITEMs: lat/lon travel as float32 (~1e-6 degrees)
    assert abs(back[2].x - wp1[0]) < 100 and abs(back[2].y - wp1[1]) < 100

    _arm_in_guided(gcs)
    assert gcs.command(M.MAV_CMD_MISSION_START) == M.MAV_RESULT_ACCEPTED
    gcs.wait("HEARTBEAT", lambda m: m.custom_mode == AUTO)
    gcs.wait("STATUSTEXT", lambda m: m.text == "Reached command #2")  # ModeAuto::verify_nav_wp
    gcs.wait("MISSION_ITEM_REACHED", lambda m: m.seq == 3)
    gcs.wait("HEARTBEAT", lambda m: not m.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED, timeout=40)
    assert not gcs.conn.motors_armed()


def test_rtl_mode_lands_and_disarms(gcs):
    """ModeRTL: climb, return, loiter, land; Copter disarms once landed (land_complete)."""
    _arm_in_guided(gcs)
    assert gcs.command(M.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 5) == M.MAV_RESULT_ACCEPTED
    gcs.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 200_000)
    gcs.wait("GLOBAL_POSITION_INT", lambda m: m.relative_alt > 4_500)
    gcs.conn.set_mode_rtl()
    gcs.wait("HEARTBEAT", lambda m: m.custom_mode == RTL)
    gcs.wait("HEARTBEAT", lambda m: not m.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED, timeout=40)


@pytest.mark.parametrize("mission_type,command,frame,back_frame", [
    (M.MAV_MISSION_TYPE_FENCE, M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION,
     M.MAV_FRAME_GLOBAL_INT, M.MAV_FRAME_GLOBAL),
    (M.MAV_MISSION_TYPE_RALLY, M.MAV_CMD_NAV_RALLY_POINT,
     M.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, M.MAV_FRAME_GLOBAL_RELATIVE_ALT),
])
def test_fence_and_rally_by_mission_type(gcs, mission_type, command, frame, back_frame):
    """MissionItemProtocol_Fence / _Rally: no home item, legacy MISSION_REQUEST, ACK
    ACCEPTED; read-back frames per AC_PolyFence_loader (GLOBAL) and
    MissionItemProtocol_Rally::get_item (GLOBAL_RELATIVE_ALT, whole metres)."""
    pts = [home_plus(50, 50), home_plus(50, 80), home_plus(80, 80)]
    n = len(pts) if mission_type == M.MAV_MISSION_TYPE_FENCE else 1
    pts = pts[:n]
    gcs.mav.mission_count_send(1, 1, n, mission_type)
    for _ in range(n):
        req = gcs.wait(["MISSION_REQUEST", "MISSION_REQUEST_INT"])
        assert req.get_type() == "MISSION_REQUEST" and req.mission_type == mission_type
        lat, lon = pts[req.seq]
        gcs.mav.mission_item_int_send(1, 1, req.seq, frame, command, 0, 1, float(n), 0, 0, 0,
                                      lat, lon, 20.7, mission_type)
    assert gcs.wait("MISSION_ACK").type == M.MAV_MISSION_ACCEPTED
    gcs.mav.mission_request_list_send(1, 1, mission_type)
    assert gcs.wait("MISSION_COUNT").count == n
    gcs.mav.mission_request_int_send(1, 1, 0, mission_type)
    item = gcs.wait("MISSION_ITEM_INT")
    assert (item.command, item.frame, item.x, item.y) == (command, back_frame, *pts[0])
    if mission_type == M.MAV_MISSION_TYPE_RALLY:
        assert item.z == 20.0  # RallyLocation.alt is an int16 of metres


def test_set_message_interval_and_request_data_stream_rates(gcs):
    """GCS_MAVLINK::handle_command_set_message_interval (ACK ACCEPTED, honoured) and
    handle_request_data_stream (POSITION group -> GLOBAL_POSITION_INT), measured on the
    vehicle's own time_boot_ms so the check does not depend on wall-clock speed."""
    assert gcs.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_SYS_STATUS,
                       200_000) == M.MAV_RESULT_ACCEPTED
    gcs.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_SYSTEM_TIME, 200_000)
    stamps = [gcs.wait("SYSTEM_TIME").time_boot_ms for _ in range(11)]
    assert abs((stamps[-1] - stamps[0]) / 10 - 200) <= 20
    gcs.mav.request_data_stream_send(1, 1, M.MAV_DATA_STREAM_POSITION, 10, 1)
    stamps = [gcs.wait("GLOBAL_POSITION_INT").time_boot_ms for _ in range(11)]
    assert abs((stamps[-1] - stamps[0]) / 10 - 100) <= 10
    gcs.mav.request_data_stream_send(1, 1, M.MAV_DATA_STREAM_POSITION, 10, 0)
    assert gcs.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT,
                       -1) == M.MAV_RESULT_ACCEPTED


def test_param_list_read_and_set_indices(gcs):
    """GCS_Param.cpp: PARAM_REQUEST_LIST sends the banner then every parameter with
    param_index 0..count-1; PARAM_REQUEST_READ by name and the PARAM_SET echo
    (GCS::send_parameter_value) carry param_index -1 (65535); by index echoes it."""
    gcs.mav.param_request_list_send(1, 1)
    first = gcs.wait("PARAM_VALUE")
    seen = {first.param_index: first}
    while len(seen) < first.param_count:
        msg = gcs.wait("PARAM_VALUE")
        seen[msg.param_index] = msg
    assert sorted(seen) == list(range(first.param_count))
    by_name = {m.param_id: m for m in seen.values()}
    assert by_name["SYSID_THISMAV"].param_type == M.MAV_PARAM_TYPE_INT16
    assert by_name["WPNAV_SPEED"].param_type == M.MAV_PARAM_TYPE_REAL32
    assert by_name["FENCE_TYPE"].param_type == M.MAV_PARAM_TYPE_INT8

    gcs.mav.param_request_read_send(1, 1, b"RTL_ALT", -1)
    msg = gcs.wait("PARAM_VALUE", lambda m: m.param_id == "RTL_ALT")
    assert msg.param_index == 65535
    idx = by_name["RTL_ALT"].param_index
    gcs.mav.param_request_read_send(1, 1, b"", idx)
    assert gcs.wait("PARAM_VALUE").param_index == idx
    gcs.mav.param_set_send(1, 1, b"RTL_ALT", 2500, M.MAV_PARAM_TYPE_INT32)
    msg = gcs.wait("PARAM_VALUE", lambda m: m.param_id == "RTL_ALT")
    assert (msg.param_value, msg.param_index, msg.param_count) == (2500, 65535, first.param_count)


def test_param_request_list_sends_the_banner(gcs):
    """GCS_MAVLINK::handle_param_request_list calls send_banner() first (firmware
    version and frame STATUSTEXTs), which GCSs use to learn the firmware."""
    # (the boot banner went by while the fixture waited for the end of MAV_STATE_BOOT)
    gcs.mav.param_request_list_send(1, 1)
    gcs.wait("STATUSTEXT", lambda m: m.text.startswith("ArduCopter V"))
    gcs.wait("STATUSTEXT", lambda m: m.text.startswith("Frame: "))


def test_autopilot_version_capabilities(gcs):
    """GCS_MAVLINK::send_autopilot_version / AP::vehicle capabilities: MISSION_INT,
    COMMAND_INT, MAVLINK2, MISSION_FENCE, MISSION_RALLY...; sent for
    MAV_CMD_REQUEST_MESSAGE(148) and MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES."""
    assert gcs.command(M.MAV_CMD_REQUEST_MESSAGE, M.MAVLINK_MSG_ID_AUTOPILOT_VERSION) == M.MAV_RESULT_ACCEPTED
    msg = gcs.wait("AUTOPILOT_VERSION")
    need = (M.MAV_PROTOCOL_CAPABILITY_MISSION_INT | M.MAV_PROTOCOL_CAPABILITY_MAVLINK2
            | M.MAV_PROTOCOL_CAPABILITY_MISSION_FENCE | M.MAV_PROTOCOL_CAPABILITY_MISSION_RALLY
            | M.MAV_PROTOCOL_CAPABILITY_COMMAND_INT)
    assert msg.capabilities & need == need
    assert gcs.command(M.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES, 1) == M.MAV_RESULT_ACCEPTED
    gcs.wait("AUTOPILOT_VERSION")


def test_unknown_command_is_unsupported(gcs):
    """GCS_MAVLINK::handle_command_long_packet default: MAV_RESULT_UNSUPPORTED."""
    assert gcs.command(M.MAV_CMD_DO_SET_CAM_TRIGG_DIST + 1000) == M.MAV_RESULT_UNSUPPORTED


def test_home_position_and_system_time_on_request(gcs):
    """GCS_MAVLINK::try_send_message_by_id: HOME_POSITION (once home is set) and
    SYSTEM_TIME for MAV_CMD_REQUEST_MESSAGE."""
    gcs.wait_ready()
    assert gcs.command(M.MAV_CMD_REQUEST_MESSAGE, M.MAVLINK_MSG_ID_HOME_POSITION) == M.MAV_RESULT_ACCEPTED
    home = gcs.wait("HOME_POSITION")
    assert (home.latitude, home.longitude) == (round(DEFAULT_HOME[0] * 1e7), round(DEFAULT_HOME[1] * 1e7))
    assert gcs.command(M.MAV_CMD_REQUEST_MESSAGE, M.MAVLINK_MSG_ID_SYSTEM_TIME) == M.MAV_RESULT_ACCEPTED
    now = gcs.wait("SYSTEM_TIME")
    assert now.time_boot_ms > 0 and now.time_unix_usec > 1_600_000_000 * 10**6  # GPS time known


def test_long_statustext_goes_out_in_chunks():
    """GCS::send_textv: over 50 bytes, 50-byte chunks with one non-zero id and
    chunk_seq 0, 1, ...; a text of exactly 100 bytes ends with an empty chunk; a text
    of at most 50 bytes is one message with id 0."""
    from sitl.copter import Copter

    vehicle = Copter(fast_config())
    vehicle.on_connect(0.0)
    vehicle.take_output()
    parser = M.MAVLink(None)
    for text in ("x" * 50, "y" * 70, "z" * 100):
        vehicle.statustext(M.MAV_SEVERITY_INFO, text)
    vehicle.link.flush()
    msgs = [m for m in parser.parse_buffer(vehicle.take_output()) or [] if m.get_type() == "STATUSTEXT"]
    got = [(m.id, m.chunk_seq, m.text) for m in msgs]
    assert got[0] == (0, 0, "x" * 50)
    (id1, _, _), (id2, _, _) = got[1], got[3]
    assert id1 != 0 and id2 not in (0, id1)
    assert got[1:] == [(id1, 0, "y" * 50), (id1, 1, "y" * 20),
                       (id2, 0, "z" * 50), (id2, 1, "z" * 50), (id2, 2, "")]


def test_mission_readback_packs_params_as_ap_mission_stores_them(gcs):
    """AP_Mission::mavlink_int_to_mission_cmd / mission_cmd_to_mavlink_int: waypoint
    hold time in whole seconds (uint16 p1), NAV_LAND param4 = +1 (yaw direction flag),
    LOITER_TIME param3 = +1/-1 and param4 0/1, altitude in whole centimetres."""
    lat, lon = home_plus(10, 10)
    items = [(M.MAV_CMD_NAV_WAYPOINT, 0, 0, 0, 0, 0, 584.0),
             (M.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 10.0),
             (M.MAV_CMD_NAV_WAYPOINT, 2.7, 5, 0, 0, 0, 10.129),
             (M.MAV_CMD_NAV_LOITER_TIME, 4.2, 0, -3, 0.5, 0, 12.0),
             (M.MAV_CMD_NAV_LAND, 0, 0, 0, 0, 0, 0.0)]
    gcs.mav.mission_count_send(1, 1, len(items))
    for _ in items:
        req = gcs.wait("MISSION_REQUEST")
        cmd, p1, p2, p3, p4, _x, z = items[req.seq]
        gcs.mav.mission_item_int_send(1, 1, req.seq, M.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, cmd, 0, 1,
                                      p1, p2, p3, p4, lat, lon, z)
    assert gcs.wait("MISSION_ACK").type == M.MAV_MISSION_ACCEPTED
    back = []
    for seq in range(2, 5):
        gcs.mav.mission_request_int_send(1, 1, seq)
        back.append(gcs.wait("MISSION_ITEM_INT", lambda m, s=seq: m.seq == s))
    wp, loiter, land = back
    assert (wp.param1, wp.param2, round(wp.z, 3)) == (2.0, 0.0, 10.12)
    assert (loiter.param1, loiter.param3, loiter.param4) == (4.0, -1.0, 1.0)
    assert (land.param1, land.param4) == (0.0, 1.0)
    assert all(m.current == 0 and m.autocontinue == 1 for m in back)


def _airborne(g: Gcs, alt: float = 10.0) -> None:
    _arm_in_guided(g)
    assert g.command(M.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, alt) == M.MAV_RESULT_ACCEPTED
    g.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_LOCAL_POSITION_NED, 100_000)
    g.wait("LOCAL_POSITION_NED", lambda m: m.z < -(alt - 0.3))


def test_set_position_target_local_ned_position_and_velocity(gcs):
    """GCS_MAVLINK_Copter::handle_set_position_target_local_ned in GUIDED: a LOCAL_NED
    position (from the EKF origin), then a velocity-only target (position bits masked)
    that lapses after GUID_TIMEOUT (3 s), as dronekit-style scripts rely on."""
    _airborne(gcs)
    pos_only = 0b0000111111111000
    gcs.mav.set_position_target_local_ned_send(0, 1, 1, M.MAV_FRAME_LOCAL_NED, pos_only,
                                               20, -10, -15, 0, 0, 0, 0, 0, 0, 0, 0)
    gcs.wait("LOCAL_POSITION_NED", lambda m: abs(m.x - 20) < 0.5 and abs(m.y + 10) < 0.5 and abs(m.z + 15) < 0.5)
    vel_only = 0b0000111111000111
    gcs.mav.set_position_target_local_ned_send(0, 1, 1, M.MAV_FRAME_LOCAL_NED, vel_only,
                                               0, 0, 0, 0, 2.0, 0, 0, 0, 0, 0, 0)
    gcs.wait("LOCAL_POSITION_NED", lambda m: abs(m.vy - 2.0) < 0.05 and abs(m.vx) < 0.05)
    # no more targets: the copter stops by itself after GUID_TIMEOUT
    gcs.wait("LOCAL_POSITION_NED", lambda m: m.y > -10 and abs(m.vy) < 0.01)


def test_set_position_target_body_offset_moves_relative_to_heading(gcs):
    """MAV_FRAME_BODY_OFFSET_NED: x forward, y right of the current heading, added to
    the current position (copter.rotate_body_frame_to_NE)."""
    _airborne(gcs)
    assert gcs.command(M.MAV_CMD_CONDITION_YAW, 90, 0, 1, 0) == M.MAV_RESULT_ACCEPTED
    gcs.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_ATTITUDE, 100_000)
    gcs.wait("ATTITUDE", lambda m: abs(m.yaw - 1.5708) < 0.01)
    start = gcs.wait("LOCAL_POSITION_NED")
    gcs.mav.set_position_target_local_ned_send(0, 1, 1, M.MAV_FRAME_BODY_OFFSET_NED, 0b0000111111111000,
                                               10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    # facing east, 10 m forward is 10 m east
    gcs.wait("LOCAL_POSITION_NED", lambda m: abs(m.y - (start.y + 10)) < 0.5 and abs(m.x - start.x) < 0.5)


def test_condition_yaw_checks_its_parameters(gcs):
    """handle_MAV_CMD_CONDITION_YAW: angle outside 0..360 or param4 not 0/1 -> FAILED."""
    assert gcs.command(M.MAV_CMD_CONDITION_YAW, 400, 0, 1, 0) == M.MAV_RESULT_FAILED
    assert gcs.command(M.MAV_CMD_CONDITION_YAW, 90, 0, 1, 2) == M.MAV_RESULT_FAILED


def test_get_message_interval_reports_the_stream_rate(gcs):
    """GCS_MAVLINK::handle_command_get_message_interval: MESSAGE_INTERVAL (sent before
    the COMMAND_ACK) with the interval in us, -1 when not streaming; ACCEPTED."""
    gcs.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 250_000)

    def ask(msgid: int) -> int:
        gcs.mav.command_long_send(1, 1, M.MAV_CMD_GET_MESSAGE_INTERVAL, 0, msgid, 0, 0, 0, 0, 0, 0)
        got = gcs.wait("MESSAGE_INTERVAL", lambda m: m.message_id == msgid)
        assert gcs.ack(M.MAV_CMD_GET_MESSAGE_INTERVAL) == M.MAV_RESULT_ACCEPTED
        return got.interval_us

    assert ask(M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT) == 250_000
    assert ask(M.MAVLINK_MSG_ID_VFR_HUD) == -1
    assert ask(M.MAVLINK_MSG_ID_HEARTBEAT) == 1_000_000


def test_heartbeat_base_mode_follows_the_mode_not_the_flight_state(gcs):
    """GCS_MAVLINK_Copter::base_mode: GUIDED_ENABLED is set by a switch on the mode
    number (GUIDED, AUTO, RTL, LOITER, ...), armed or not; 81 in STABILIZE disarmed."""
    hb = gcs.wait("HEARTBEAT", lambda m: m.custom_mode == 0)
    assert hb.base_mode == 81
    gcs.conn.set_mode("GUIDED")
    hb = gcs.wait("HEARTBEAT", lambda m: m.custom_mode == GUIDED)
    assert hb.base_mode == 81 | M.MAV_MODE_FLAG_GUIDED_ENABLED
    gcs.conn.set_mode("ALT_HOLD")
    assert gcs.wait("HEARTBEAT", lambda m: m.custom_mode == 2).base_mode == 81


def test_reboot_command_restarts_like_sitl_and_keeps_storage():
    """GCS_MAVLINK::handle_preflight_reboot: ACK ACCEPTED (FAILED while armed), then
    SITL re-executes itself: the TCP link closes, the new process boots again (BOOT
    heartbeat, EKF warm-up) with parameters, mission, fence and rally kept in storage."""
    with SimulatorServer([fast_config()]) as sim:
        g = Gcs(sim.endpoints[0])
        try:
            g.conn.wait_heartbeat(timeout=WAIT_S)
            g.wait_booted()
            g.mav.param_set_send(1, 1, b"RTL_ALT", 3000, M.MAV_PARAM_TYPE_INT32)
            g.wait("PARAM_VALUE", lambda m: m.param_id == "RTL_ALT")
            lat, lon = home_plus(20, 0)
            g.mav.mission_count_send(1, 1, 2)
            for _ in range(2):
                req = g.wait("MISSION_REQUEST")
                g.mav.mission_item_int_send(1, 1, req.seq, M.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
                                            M.MAV_CMD_NAV_WAYPOINT, 0, 1, 0, 0, 0, 0, lat, lon, 10)
            assert g.wait("MISSION_ACK").type == M.MAV_MISSION_ACCEPTED
            _arm_in_guided(g)
            assert g.command(M.MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN, 1) == M.MAV_RESULT_FAILED  # armed
            g.conn.arducopter_disarm()
            g.bounded(lambda: not g.conn.motors_armed())
            assert g.command(M.MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN, 0) == M.MAV_RESULT_UNSUPPORTED
            assert g.command(M.MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN, 1) == M.MAV_RESULT_ACCEPTED
        finally:
            g.conn.close()
        deadline = time.monotonic() + WAIT_S
        while sim.state(0).connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not sim.state(0).booted  # waiting for a client, as SITL's tcp:0:wait
        g = Gcs(sim.endpoints[0])
        try:
            hb = g.conn.wait_heartbeat(timeout=WAIT_S)
            assert hb.system_status == M.MAV_STATE_BOOT and hb.custom_mode == 0
            g.wait("STATUSTEXT", lambda m: m.text.startswith("ArduCopter V"))
            g.mav.param_request_read_send(1, 1, b"RTL_ALT", -1)
            assert g.wait("PARAM_VALUE", lambda m: m.param_id == "RTL_ALT").param_value == 3000
            g.mav.mission_request_list_send(1, 1)
            assert g.wait("MISSION_COUNT").count == 2
        finally:
            g.conn.close()


def test_do_set_mode_without_the_custom_mode_flag_is_denied(gcs):
    """GCS_MAVLINK::_set_mode_common: "only accept custom modes" -> DENIED otherwise;
    an unknown custom mode is FAILED with "No such mode N" (AP_Vehicle)."""
    assert gcs.command(M.MAV_CMD_DO_SET_MODE, M.MAV_MODE_FLAG_STABILIZE_ENABLED, GUIDED) == M.MAV_RESULT_DENIED
    assert gcs.command(M.MAV_CMD_DO_SET_MODE, M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, 8) == M.MAV_RESULT_FAILED
    gcs.wait("STATUSTEXT", lambda m: m.text == "No such mode 8")


def test_no_position_or_home_before_the_gps_and_ekf_have_one():
    """GCS_MAVLINK::send_global_position_int sends global_position_current_loc, zero until
    the AHRS has a location; send_home_position sends nothing until home is set."""
    with SimulatorServer([fast_config(time_to_ready_s=60.0)]) as sim:
        g = Gcs(sim.endpoints[0])
        try:
            g.conn.wait_heartbeat(timeout=WAIT_S)
            g.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 100_000)
            pos = g.wait("GLOBAL_POSITION_INT")
            assert (pos.lat, pos.lon, pos.relative_alt) == (0, 0, 0)
            assert g.command(M.MAV_CMD_REQUEST_MESSAGE, M.MAVLINK_MSG_ID_HOME_POSITION) == M.MAV_RESULT_ACCEPTED
            # a later request's answer marks the point by which HOME_POSITION would have come
            g.mav.command_long_send(1, 1, M.MAV_CMD_REQUEST_MESSAGE, 0, M.MAVLINK_MSG_ID_SYSTEM_TIME,
                                    0, 0, 0, 0, 0, 0)
            seen = []
            while not seen or seen[-1] != "SYSTEM_TIME":
                seen.append(g.wait(["HOME_POSITION", "SYSTEM_TIME"]).get_type())
            assert "HOME_POSITION" not in seen
        finally:
            g.conn.close()


def test_a_command_for_another_component_is_not_handled_by_the_autopilot(gcs):
    """MAVLink_routing::check_and_forward: a COMMAND_LONG to (1, 154) is the gimbal's, not
    the autopilot's: no COMMAND_ACK; to (1, 0) or (1, 1) it is handled."""
    gcs.mav.command_long_send(1, M.MAV_COMP_ID_GIMBAL, M.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES, 0,
                              1, 0, 0, 0, 0, 0, 0)
    gcs.mav.command_long_send(1, 0, M.MAV_CMD_REQUEST_MESSAGE, 0, M.MAVLINK_MSG_ID_SYSTEM_TIME, 0, 0, 0, 0, 0, 0)
    acks = []
    while not acks or acks[-1] != M.MAV_CMD_REQUEST_MESSAGE:
        acks.append(gcs.wait("COMMAND_ACK").command)
    assert acks == [M.MAV_CMD_REQUEST_MESSAGE]
