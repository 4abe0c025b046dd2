"""serial0 behaviour: banner, heartbeat, reconnects, garbage, and telemetry only when asked."""

from __future__ import annotations

import socket
import time

from sitl_client import M, SimClient, fast_config
from pymavlink.dialects.v20 import ardupilotmega as dialect

from sitl.builtin import SimulatorServer, VehicleConfig, configs_for


def _read_until_heartbeat(sock: socket.socket) -> tuple[bytes, object]:
    parser = dialect.MAVLink(None)
    parser.robust_parsing = True
    raw = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        chunk = sock.recv(4096)
        assert chunk, "simulator closed the connection"
        start = len(raw)
        raw += chunk
        for i in range(start, len(raw)):
            msg = parser.parse_char(raw[i:i + 1])
            if msg is not None and msg.get_type() == "HEARTBEAT":
                return raw, msg
    raise AssertionError("no heartbeat")


def test_banner_precedes_first_heartbeat_which_reports_a_booting_disarmed_stabilize_quad(sim):
    with socket.create_connection(("127.0.0.1", sim.ports[0]), timeout=10) as sock:
        raw, hb = _read_until_heartbeat(sock)
    assert raw.startswith(b"\n\nInit ArduCopter V4")
    assert raw.index(b"Free RAM") < raw.index(b"\xfd")  # plain text, then MAVLink 2 frames
    assert hb.type == M.MAV_TYPE_QUADROTOR
    assert hb.autopilot == M.MAV_AUTOPILOT_ARDUPILOTMEGA
    assert hb.base_mode & M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
    assert not hb.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED
    assert hb.custom_mode == 0
    assert hb.system_status == M.MAV_STATE_BOOT
    assert hb.get_srcSystem() == 1 and hb.get_srcComponent() == 1


def test_system_status_moves_from_boot_to_standby(client):
    client.wait("HEARTBEAT", lambda m: m.system_status == M.MAV_STATE_STANDBY)


def test_sysid_defaults_to_instance_plus_one_and_ports_follow_sitl_scheme():
    configs = configs_for(3, base_port=5760)
    assert [c.sysid for c in configs] == [1, 2, 3]
    assert [c.tcp_port for c in configs] == [5760, 5770, 5780]
    assert len({(c.home_lat, c.home_lon) for c in configs}) == 3
    assert VehicleConfig(instance=4).tcp_port == 5800


def test_many_vehicles_in_one_process_each_on_its_own_port_with_its_own_sysid():
    with SimulatorServer([fast_config(instance=i) for i in range(3)]) as sim:
        assert len(set(sim.ports)) == 3
        for i, endpoint in enumerate(sim.endpoints):
            c = SimClient(endpoint, target=i + 1)
            try:
                hb = c.wait("HEARTBEAT")
                assert hb.get_srcSystem() == i + 1
            finally:
                c.close()


def test_a_new_connection_after_the_previous_closed_is_served(sim):
    first = SimClient(sim.endpoints[0])
    first.wait("HEARTBEAT")
    first.close()
    second = SimClient(sim.endpoints[0])
    try:
        second.wait("HEARTBEAT")
        assert second.set_mode(2) == M.MAV_RESULT_ACCEPTED
    finally:
        second.close()


def test_garbage_bytes_from_the_client_are_ignored(sim):
    with socket.create_connection(("127.0.0.1", sim.ports[0]), timeout=10) as sock:
        _read_until_heartbeat(sock)
        sock.sendall(b"\xfe\xff\x00garbage\xfd\x09\x00\x00\x00" + bytes(range(256)) * 4)
        # Garbage can swallow the frames that follow it (a bogus length byte), as in any
        # MAVLink parser; a GCS repeating SET_MODE (no ACK expected) gets through.
        mav = dialect.MAVLink(None, srcSystem=255, srcComponent=190)
        for _ in range(50):
            sock.sendall(mav.set_mode_encode(1, M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, 2).pack(mav))
            sock.recv(4096)
            if sim.state(0).mode == 2:
                break
        assert sim.state(0).mode == 2
        assert sim.state(0).connected
    assert sim.error is None


def test_no_global_position_int_until_asked(client):
    got = client.collect(["GLOBAL_POSITION_INT", "HEARTBEAT"],
                         until=lambda m: m.get_type() == "HEARTBEAT" and m.system_status == M.MAV_STATE_STANDBY)
    client.collect(["GLOBAL_POSITION_INT", "HEARTBEAT"], until=lambda m: m.get_type() == "HEARTBEAT")
    assert all(m.get_type() == "HEARTBEAT" for m in got)


def test_set_message_interval_is_acknowledged_and_its_rate_honoured(client):
    ack = client.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 200_000)
    assert ack == M.MAV_RESULT_ACCEPTED
    msgs = [client.wait("GLOBAL_POSITION_INT") for _ in range(11)]
    # spacing in the vehicle's own (simulated) boot time: 5 Hz
    spacing = [(b.time_boot_ms - a.time_boot_ms) for a, b in zip(msgs[1:], msgs[2:])]
    assert all(abs(s - 200) <= 20 for s in spacing), spacing


def test_interval_minus_one_disables_a_stream(client):
    client.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_ATTITUDE, 100_000)
    client.wait("ATTITUDE")
    assert client.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_ATTITUDE, -1) == M.MAV_RESULT_ACCEPTED
    client.drain()
    seen = client.collect(["ATTITUDE", "HEARTBEAT"],
                          until=lambda m: m.get_type() == "HEARTBEAT", timeout=10)
    seen += client.collect(["ATTITUDE", "HEARTBEAT"], until=lambda m: m.get_type() == "HEARTBEAT", timeout=10)
    assert [m.get_type() for m in seen].count("ATTITUDE") <= 1  # at most one already in flight


def test_message_interval_for_a_message_with_no_ap_message_fails(client):
    """GCS_MAVLINK::set_message_interval: FAILED, with "No ap_message for mavlink id (N)"."""
    assert client.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, 9999, 100_000) == M.MAV_RESULT_FAILED


def test_request_data_stream_position_group_streams_global_position_int(client):
    client.mav.request_data_stream_send(1, 1, M.MAV_DATA_STREAM_POSITION, 4, 1)
    client.wait("GLOBAL_POSITION_INT")
    client.mav.request_data_stream_send(1, 1, M.MAV_DATA_STREAM_EXTENDED_STATUS, 2, 1)
    for name in ("SYS_STATUS", "GPS_RAW_INT", "MISSION_CURRENT"):
        client.wait(name)


def test_request_data_stream_all_brings_every_telemetry_message(client):
    client.mav.request_data_stream_send(1, 1, M.MAV_DATA_STREAM_ALL, 5, 1)
    for name in ("GLOBAL_POSITION_INT", "SYS_STATUS", "BATTERY_STATUS", "GPS_RAW_INT", "EKF_STATUS_REPORT",
                 "ATTITUDE", "VFR_HUD", "MISSION_CURRENT", "AHRS", "AHRS2", "RAW_IMU", "RC_CHANNELS",
                 "SERVO_OUTPUT_RAW", "VIBRATION", "WIND", "NAV_CONTROLLER_OUTPUT"):
        client.wait(name)
    # FENCE_STATUS only while a fence is enabled (GCS_MAVLINK::try_send_message)
    client.mav.param_set_send(1, 1, b"FENCE_ENABLE", 1, M.MAV_PARAM_TYPE_INT8)
    client.wait("FENCE_STATUS")


def test_no_radio_status_by_default(client):
    client.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_SYS_STATUS, 100_000)
    seen = client.collect(["RADIO_STATUS", "HEARTBEAT"], until=lambda m: m.get_type() == "HEARTBEAT")
    seen += client.collect(["RADIO_STATUS", "HEARTBEAT"], until=lambda m: m.get_type() == "HEARTBEAT")
    seen += client.collect(["RADIO_STATUS", "HEARTBEAT"], until=lambda m: m.get_type() == "HEARTBEAT")
    assert not [m for m in seen if m.get_type() == "RADIO_STATUS"]


def test_radio_option_emulates_a_sik_radio_with_its_own_ids():
    with SimulatorServer([fast_config(radio_status=True)]) as sim:
        c = SimClient(sim.endpoints[0])
        try:
            msg = c.wait("RADIO_STATUS")
            assert (msg.get_srcSystem(), msg.get_srcComponent()) == (51, M.MAV_COMP_ID_TELEMETRY_RADIO)
            assert 0 < msg.rssi <= 254 and msg.noise < msg.rssi
        finally:
            c.close()


def test_parameters_read_list_and_set(client):
    client.mav.param_request_read_send(1, 1, b"FENCE_ENABLE", -1)
    value = client.wait("PARAM_VALUE", lambda m: m.param_id == "FENCE_ENABLE")
    assert value.param_value == 0 and value.param_type == M.MAV_PARAM_TYPE_INT8
    client.mav.param_set_send(1, 1, b"WPNAV_SPEED", 750.0, M.MAV_PARAM_TYPE_REAL32)
    assert client.wait("PARAM_VALUE", lambda m: m.param_id == "WPNAV_SPEED").param_value == 750.0
    client.mav.param_request_list_send(1, 1)
    first = client.wait("PARAM_VALUE")
    names = {first.param_id}
    for _ in range(first.param_count - 1):
        names.add(client.wait("PARAM_VALUE").param_id)
    assert {"FENCE_ENABLE", "FENCE_TYPE", "FENCE_ACTION", "SYSID_THISMAV", "WPNAV_SPEED", "RTL_ALT"} <= names
    assert dict(client_state_params(client))["WPNAV_SPEED"] == 750.0


def client_state_params(client):
    client.mav.param_request_read_send(1, 1, b"WPNAV_SPEED", -1)
    m = client.wait("PARAM_VALUE", lambda m: m.param_id == "WPNAV_SPEED")
    return [(m.param_id, m.param_value)]


def test_param_set_of_an_unknown_name_or_nan_changes_nothing(sim, client):
    before = dict(sim.state(0).params)
    client.mav.param_set_send(1, 1, b"NO_SUCH_PARAM", 1.0, M.MAV_PARAM_TYPE_REAL32)
    client.mav.param_set_send(1, 1, b"RTL_ALT", float("nan"), M.MAV_PARAM_TYPE_INT32)
    client.mav.param_request_read_send(1, 1, b"RTL_ALT", -1)
    assert client.wait("PARAM_VALUE", lambda m: m.param_id == "RTL_ALT").param_value == 1500
    assert dict(sim.state(0).params) == before


def test_a_dropped_connection_keeps_the_vehicle_and_its_streams_for_the_next_client(sim):
    first = SimClient(sim.endpoints[0])
    try:
        first.wait("HEARTBEAT")
        first.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 200_000)
        first.wait("GLOBAL_POSITION_INT")
        assert sim.drop_connection(0)
    finally:
        first.close()
    second = SimClient(sim.endpoints[0])
    try:
        second.wait("GLOBAL_POSITION_INT")  # stream settings live in the vehicle, like SRx rates
        assert sim.state(0).connected
    finally:
        second.close()
