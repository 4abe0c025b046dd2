"""The bridge against what real ArduPilot puts on the wire, beyond a lone autopilot:
other components' HEARTBEATs on the vehicle's system id, chunked STATUSTEXT, FENCE_TYPE
as a bitmask, rally altitudes in whole metres, and a reboot behind a link that stays up.

Each test names the ArduPilot (or MAVLink spec) behaviour it relies on.
"""

from __future__ import annotations

import pytest

from bridge_fake_peer import encoder, wait_for
from mavlink_bridge._mav import is_autopilot_heartbeat, mavlink
from mavlink_bridge.apply import PlanApplier, items_match
from mavlink_bridge.plan import (
    CMD_NAV_RALLY_POINT, FRAME_GLOBAL_RELATIVE_ALT, FRAME_GLOBAL_RELATIVE_ALT_INT, MissionItem,
    MissionPlan, MissionType,
)
from mavlink_bridge.telemetry import StatusText, StatusTextAssembler, TelemetryTracker
from bridge_vehicle import HOME, TestVehicle, flying_setup
from bridge_vehicle import exclusion_square as _exclusion_square
from bridge_vehicle import ready as _ready
from bridge_vehicle import route as _route
from bridge_vehicle import take_off

M = mavlink


def _hb(sysid: int, compid: int, mav_type: int, autopilot: int, custom_mode: int = 0,
        armed: bool = False) -> object:
    mav = encoder(sysid, compid)
    base = M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | (M.MAV_MODE_FLAG_SAFETY_ARMED if armed else 0)
    raw = M.MAVLink_heartbeat_message(mav_type, autopilot, base, custom_mode, M.MAV_STATE_ACTIVE, 3).pack(mav)
    return mav.decode(bytearray(raw))


# Components that share system id 1 with ArduPilot on real aircraft.
GIMBAL = (1, M.MAV_COMP_ID_GIMBAL, M.MAV_TYPE_GIMBAL, M.MAV_AUTOPILOT_INVALID)
ADSB = (1, M.MAV_COMP_ID_ADSB, M.MAV_TYPE_ADSB, M.MAV_AUTOPILOT_GENERIC)  # uAvionix ping style
CAMERA = (1, M.MAV_COMP_ID_CAMERA, M.MAV_TYPE_CAMERA, M.MAV_AUTOPILOT_ARDUPILOTMEGA)
GCS = (255, 190, M.MAV_TYPE_GCS, M.MAV_AUTOPILOT_INVALID)


@pytest.mark.parametrize("who", [GIMBAL, ADSB, CAMERA, GCS], ids=["gimbal", "adsb", "camera", "gcs"])
def test_other_components_heartbeats_are_not_the_autopilot(who):
    """mavutil.probably_vehicle_heartbeat's rule, stricter: ArduPilot's autopilot is
    always MAV_COMP_ID_AUTOPILOT1 with a named autopilot and an airframe type."""
    assert not is_autopilot_heartbeat(_hb(*who))
    assert is_autopilot_heartbeat(_hb(1, 1, M.MAV_TYPE_QUADROTOR, M.MAV_AUTOPILOT_ARDUPILOTMEGA))


def test_tracker_keeps_the_autopilots_mode_when_an_adsb_receiver_beats_on_its_sysid():
    tracker = TelemetryTracker(1)
    tracker.feed(_hb(1, 1, M.MAV_TYPE_QUADROTOR, M.MAV_AUTOPILOT_ARDUPILOTMEGA, custom_mode=3, armed=True), 0.0)
    assert tracker.feed(_hb(*ADSB), 0.1) is None
    assert tracker.feed(_hb(*CAMERA), 0.2) is None
    hb = tracker.snapshot().heartbeat
    assert hb.mode == "AUTO" and hb.armed


def test_gimbal_and_adsb_heartbeats_do_not_redirect_commands_or_fake_the_vehicle_state(vehicle: TestVehicle):
    """ArduPilot's MAVLink routing (MAVLink_routing::check_and_forward) only handles a
    command addressed to its own component (1) or to 0: if the bridge took a gimbal's
    HEARTBEAT as the vehicle, commands would go to compid 154 and be ignored."""
    with flying_setup(vehicle, proxy=True) as (_sim, link, v, proxy):
        _ready(v)
        assert v.set_mode("GUIDED").accepted
        wait_for(lambda: v.state().heartbeat is not None and v.state().heartbeat.mode == "GUIDED",
                 what="GUIDED in HEARTBEAT")
        for who in (GIMBAL, ADSB, CAMERA):
            proxy.inject(bytes(_hb(*who).get_msgbuf()))
        wait_for(lambda: link.systems()[1].messages > 0 and v.state().heartbeat.mode == "GUIDED",
                 what="injected heartbeats processed")
        wait_for(lambda: link.stats.messages > 30, what="more traffic")
        assert v.target_component == M.MAV_COMP_ID_AUTOPILOT1
        assert link.systems()[1].compid == M.MAV_COMP_ID_AUTOPILOT1
        assert v.state().heartbeat.mode == "GUIDED"
        assert v.set_mode("LOITER").accepted  # still reaches the autopilot


def _chunk(mav, text: bytes, text_id: int, seq: int) -> object:
    raw = M.MAVLink_statustext_message(M.MAV_SEVERITY_WARNING, text, text_id, seq).pack(mav)
    return mav.decode(bytearray(raw))


def test_chunked_statustext_is_reassembled():
    """GCS::send_textv: a text over 50 bytes goes out in 50-byte chunks sharing a
    non-zero id; a chunk holding a NUL (shorter than 50) is the last, so a text of
    exactly 100 bytes ends with an empty chunk."""
    mav = encoder(1, 1)
    tracker = TelemetryTracker(1)
    long_text = "PreArm: " + "x" * 60 + " end"
    parts = [long_text[i:i + 50] for i in range(0, len(long_text), 50)]
    assert tracker.feed(_chunk(mav, parts[0].encode(), 7, 0), 0.0) is None
    done = tracker.feed(_chunk(mav, parts[1].encode(), 7, 1), 0.1)
    assert done == StatusText(M.MAV_SEVERITY_WARNING, long_text)
    hundred = "y" * 100
    assert tracker.feed(_chunk(mav, hundred[:50].encode(), 8, 0), 0.2) is None
    assert tracker.feed(_chunk(mav, hundred[50:].encode(), 8, 1), 0.3) is None
    assert tracker.feed(_chunk(mav, b"", 8, 2), 0.4).text == hundred
    assert tracker.feed(_chunk(mav, b"short one", 0, 0), 0.5).text == "short one"
    assert [t.text for t in tracker.snapshot().status_texts] == [long_text, hundred, "short one"]


def test_a_text_whose_last_chunk_is_lost_is_emitted_as_far_as_it_got():
    asm = StatusTextAssembler(timeout_s=2.0)
    first = StatusText(4, "z" * 50)
    assert asm.add(3, 0, first, 0.0) == []
    assert asm.expire(1.0) == []
    assert asm.expire(2.5) == [first]
    assert asm.expire(5.0) == []


def test_rally_altitude_reads_back_in_whole_metres():
    """MissionItemProtocol_Rally: RallyLocation.alt = cmd.z (int16 metres), read back in
    MAV_FRAME_GLOBAL_RELATIVE_ALT; 30.7 m comes back as 30."""
    sent = MissionItem.at(CMD_NAV_RALLY_POINT, -35.36, 149.16, 30.7, frame=FRAME_GLOBAL_RELATIVE_ALT_INT)
    back = MissionItem(command=CMD_NAV_RALLY_POINT, frame=FRAME_GLOBAL_RELATIVE_ALT, x=sent.x, y=sent.y, z=30.0,
                       autocontinue=0)  # RallyLocation stores no autocontinue
    assert items_match(sent, back) is None
    assert "z" in items_match(sent, MissionItem(command=CMD_NAV_RALLY_POINT, frame=FRAME_GLOBAL_RELATIVE_ALT,
                                                x=sent.x, y=sent.y, z=31.0, autocontinue=0))


def test_rally_plan_with_fractional_altitude_applies_against_the_simulator(vehicle: TestVehicle):
    with flying_setup(vehicle) as (_sim, _link, v, _):
        _ready(v)
        rally = (MissionItem.at(CMD_NAV_RALLY_POINT, HOME[0] + 0.001, HOME[1], 25.5),)
        report = PlanApplier(v).apply(MissionPlan(rally=rally))
        assert MissionType.RALLY in report.uploaded  # verified by read-back, as stored


def test_fence_enable_adds_the_polygon_bit_to_fence_type_instead_of_overwriting_it(vehicle: TestVehicle):
    """AC_Fence FENCE_TYPE is a bitmask (1 max alt, 2 circle, 4 polygon, 8 min alt);
    an operator's altitude and circle fences must survive our polygon."""
    with flying_setup(vehicle) as (sim, _link, v, _):
        _ready(v)
        vehicle.needs_reboot()
        v.set_param("FENCE_TYPE", 3)  # altitude + circle, no polygon
        plan = MissionPlan(fence=_exclusion_square(HOME[0] - 0.003, HOME[1] - 0.003), fence_enable=True)
        report = PlanApplier(v).apply(plan)
        assert ("FENCE_TYPE", 7.0) in report.params_set
        assert v.get_param("FENCE_TYPE") == 7


def test_fence_type_already_including_polygons_is_left_alone(vehicle: TestVehicle):
    with flying_setup(vehicle) as (sim, _link, v, _):
        _ready(v)
        vehicle.needs_reboot()
        v.set_param("FENCE_TYPE", 12)  # polygon + min altitude
        plan = MissionPlan(fence=_exclusion_square(HOME[0] - 0.003, HOME[1] - 0.003), fence_enable=True)
        report = PlanApplier(v).apply(plan)
        assert [name for name, _ in report.params_set] == ["FENCE_ENABLE"]
        assert v.get_param("FENCE_TYPE") == 12


def test_param_reads_get_arducopter_param_index_conventions(vehicle: TestVehicle):
    """GCS_Param.cpp: a read by name is answered with param_index -1 (65535)."""
    with flying_setup(vehicle) as (_sim, _link, v, _):
        assert v.get_param("RTL_ALT") == 1500


def test_reboot_behind_a_link_that_stays_up_makes_the_applier_reupload(vehicle: TestVehicle):
    """After an autopilot restart its boot clock starts again; SITL run with -w (or a
    board whose storage was reset) holds no mission. The link (a serial line) never
    dropped, so only the jump back of time_boot_ms tells the bridge."""
    with flying_setup(vehicle, proxy=True) as (_sim, link, v, proxy):
        _ready(v)
        wait_for(lambda: v.state().position is not None and v.state().position.time_boot_ms > 6000,
                 what="boot clock past 6 s")
        applier = PlanApplier(v)
        plan = MissionPlan(mission=_route(HOME[0], HOME[1], 0.0, n=2))
        assert MissionType.MISSION in applier.apply(plan).uploaded
        assert applier.apply(plan).uploaded == ()
        # What a restarted ArduPilot sends first on the same line: its clock from zero.
        mav = encoder(1, 1)
        lat, lon = round(HOME[0] * 1e7), round(HOME[1] * 1e7)
        proxy.inject(M.MAVLink_global_position_int_message(
            100, lat, lon, round(HOME[2] * 1000), 0, 0, 0, 0, 0).pack(mav))
        wait_for(lambda: v.telemetry.reboots == 1, what="reboot noticed")
        assert link.stats.connects == 1
        assert MissionType.MISSION in applier.apply(plan).uploaded


def test_one_restart_showing_both_signs_counts_as_one_reboot():
    """Regression: a restart sends BOOT heartbeats *and* positions from a clock started
    again; each sign used to count, so one restart was two reboots. Either order."""
    mav = encoder(1, 1)
    lat, lon = round(HOME[0] * 1e7), round(HOME[1] * 1e7)

    def hb(status: int) -> object:
        raw = M.MAVLink_heartbeat_message(M.MAV_TYPE_QUADROTOR, M.MAV_AUTOPILOT_ARDUPILOTMEGA,
                                          81, 0, status, 3).pack(mav)
        return mav.decode(bytearray(raw))

    def pos(boot_ms: int) -> object:
        raw = M.MAVLink_global_position_int_message(boot_ms, lat, lon, 584_000, 0, 0, 0, 0, 0).pack(mav)
        return mav.decode(bytearray(raw))

    for heartbeat_first in (True, False):
        tracker = TelemetryTracker(1)
        tracker.feed(hb(M.MAV_STATE_STANDBY), 0.0)
        tracker.feed(pos(60_000), 0.1)
        restart = [hb(M.MAV_STATE_BOOT), pos(1_200)] if heartbeat_first else [pos(1_200), hb(M.MAV_STATE_BOOT)]
        for i, msg in enumerate(restart + [hb(M.MAV_STATE_STANDBY), pos(2_200)]):
            tracker.feed(msg, 1.0 + i)
        assert tracker.reboots == 1, heartbeat_first
        # and the next restart is counted again
        tracker.feed(hb(M.MAV_STATE_BOOT), 9.0)
        tracker.feed(pos(100), 9.1)
        assert tracker.reboots == 2


def test_heartbeat_back_in_boot_state_counts_as_a_reboot():
    tracker = TelemetryTracker(1)
    mav = encoder(1, 1)

    def hb(status: int) -> object:
        raw = M.MAVLink_heartbeat_message(M.MAV_TYPE_QUADROTOR, M.MAV_AUTOPILOT_ARDUPILOTMEGA,
                                          81, 0, status, 3).pack(mav)
        return mav.decode(bytearray(raw))

    for status in (M.MAV_STATE_BOOT, M.MAV_STATE_BOOT, M.MAV_STATE_STANDBY, M.MAV_STATE_ACTIVE):
        tracker.feed(hb(status), 0.0)
    assert tracker.reboots == 0
    tracker.feed(hb(M.MAV_STATE_BOOT), 1.0)
    assert tracker.reboots == 1


def test_takeoff_and_flight_unaffected_by_injected_foreign_heartbeats(vehicle: TestVehicle):
    with flying_setup(vehicle, proxy=True) as (_sim, _link, v, proxy):
        proxy.inject(bytes(_hb(*ADSB).get_msgbuf()))
        take_off(vehicle, v, alt=10.0)
        assert v.state().heartbeat.armed


def test_waypoint_hold_time_reads_back_truncated_to_whole_seconds():
    """AP_Mission stores NAV_WAYPOINT param1 (hold time) in the uint16 p1: 2.5 s is
    read back as 2; a real difference (3) is still reported."""
    from mavlink_bridge.plan import CMD_NAV_WAYPOINT
    sent = MissionItem.at(CMD_NAV_WAYPOINT, -35.36, 149.16, 20.0, param1=2.5)
    stored = MissionItem(command=CMD_NAV_WAYPOINT, frame=FRAME_GLOBAL_RELATIVE_ALT, param1=2.0,
                         x=sent.x, y=sent.y, z=20.0)
    assert items_match(sent, stored) is None
    assert "param1" in items_match(sent, MissionItem(command=CMD_NAV_WAYPOINT, frame=FRAME_GLOBAL_RELATIVE_ALT,
                                                     param1=3.0, x=sent.x, y=sent.y, z=20.0))


def test_mission_with_fractional_hold_time_applies_against_the_simulator(vehicle: TestVehicle):
    with flying_setup(vehicle) as (_sim, _link, v, _):
        _ready(v)
        route = _route(HOME[0], HOME[1], 0.0, n=2)
        route = route[:1] + tuple(MissionItem(command=it.command, frame=it.frame, param1=1.5,
                                              x=it.x, y=it.y, z=it.z) for it in route[1:])
        assert MissionType.MISSION in PlanApplier(v).apply(MissionPlan(mission=route)).uploaded


def test_readback_normalisation_of_land_and_loiter_time_matches_ap_mission():
    """AP_Mission::mission_cmd_to_mavlink_int: NAV_LAND reads back param4 = +1 (yaw
    direction flag, -1 if it was negative); NAV_LOITER_TIME param3 = +1/-1 (direction)
    and param4 0/1 (xtrack); altitudes in whole centimetres."""
    from mavlink_bridge.plan import CMD_NAV_LAND, CMD_NAV_LOITER_TIME
    land = MissionItem.at(CMD_NAV_LAND, -35.36, 149.16, 0.0)
    assert items_match(land, MissionItem(command=CMD_NAV_LAND, frame=FRAME_GLOBAL_RELATIVE_ALT, param4=1.0,
                                         x=land.x, y=land.y, z=0.0)) is None
    assert "param4" in items_match(land, MissionItem(command=CMD_NAV_LAND, frame=FRAME_GLOBAL_RELATIVE_ALT,
                                                     param4=-1.0, x=land.x, y=land.y, z=0.0))
    loiter = MissionItem.at(CMD_NAV_LOITER_TIME, -35.36, 149.16, 30.123, param1=12.7)
    back = MissionItem(command=CMD_NAV_LOITER_TIME, frame=FRAME_GLOBAL_RELATIVE_ALT, param1=12.0, param3=1.0,
                       x=loiter.x, y=loiter.y, z=30.12)
    assert items_match(loiter, back) is None


def test_plan_with_land_and_loiter_applies_and_verifies_against_the_simulator(vehicle: TestVehicle):
    from mavlink_bridge.plan import CMD_NAV_LAND, CMD_NAV_LOITER_TIME
    with flying_setup(vehicle) as (sim, _link, v, _):
        _ready(v)
        route = _route(HOME[0], HOME[1], 0.0, n=1) + (
            MissionItem.at(CMD_NAV_LOITER_TIME, HOME[0] + 0.0004, HOME[1], 20.456, param1=3.5),
            MissionItem.at(CMD_NAV_LAND, HOME[0], HOME[1], 0.0))
        assert MissionType.MISSION in PlanApplier(v).apply(MissionPlan(mission=route)).uploaded
        stored = v.download(MissionType.MISSION)
        assert (stored[-1].param4, stored[-2].param3, stored[-2].param1) == (1.0, 1.0, 3.0)
        assert stored[-2].z == pytest.approx(20.45, abs=1e-5)  # whole centimetres, as float32


def test_mavlink1_heartbeats_before_the_switch_to_mavlink2_are_understood():
    """An ArduPilot serial port set to MAVLink 1 (SERIALn_PROTOCOL 1) sends v1 frames
    until it hears MAVLink 2 from us; the bridge must take those first v1 HEARTBEATs
    as the vehicle (mode, armed) just like v2 ones."""
    import threading

    from pymavlink.dialects.v10 import ardupilotmega as v1

    from bridge_fake_peer import FakePeer, heartbeat
    from mavlink_bridge.link import LinkConfig, MavlinkLink
    from mavlink_bridge.vehicle import Vehicle

    enc1 = v1.MAVLink(None, srcSystem=1, srcComponent=1)
    hb1 = v1.MAVLink_heartbeat_message(M.MAV_TYPE_QUADROTOR, M.MAV_AUTOPILOT_ARDUPILOTMEGA,
                                       M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | M.MAV_MODE_FLAG_SAFETY_ARMED,
                                       4, M.MAV_STATE_ACTIVE, 3).pack(enc1)
    assert hb1[0] == 0xFE  # a MAVLink 1 frame
    hb2 = heartbeat(encoder(1, 1), custom_mode=5, armed=True)

    def script(sock, _i):
        sock.sendall(hb1)
        threading.Event().wait(0.3)
        sock.sendall(hb1 + hb2)
        threading.Event().wait(1.0)

    peer = FakePeer(script)
    link = MavlinkLink(LinkConfig(peer.endpoint, target_system=1, heartbeat_timeout_s=2.0,
                                  reconnect_initial_s=0.05, reconnect_max_s=0.4))
    vehicle = Vehicle(link, 1)
    modes = []
    vehicle.telemetry.add_listener(lambda r, now: modes.append(getattr(r, "mode", None)))
    try:
        link.start()
        assert link.wait_for_heartbeat(5)
        wait_for(lambda: "LOITER" in modes, what="the v2 heartbeat")
        assert modes[0] == "GUIDED" and vehicle.state().heartbeat.armed
        assert link.systems()[1].compid == 1
    finally:
        link.close()
        peer.close()


def _old_arducopter_script(peer_holder: list) -> object:
    """A peer acting like ArduCopter before 4.3: DO_SET_MISSION_CURRENT unsupported,
    MISSION_SET_CURRENT answered only by MISSION_CURRENT (seq 1..4 exist)."""
    import socket as _socket

    def script(sock, _i):
        mav = encoder(1, 1)
        parser = M.MAVLink(None)
        parser.robust_parsing = True
        sock.settimeout(0.05)
        from bridge_fake_peer import heartbeat
        for _ in range(100):  # bounded: about 5 s
            if peer_holder and peer_holder[0].stopped():
                return
            sock.sendall(heartbeat(mav, custom_mode=3, armed=True))
            try:
                data = sock.recv(65536)
            except _socket.timeout:
                continue
            if not data:
                return
            for msg in parser.parse_buffer(data) or []:
                if msg.get_type() == "COMMAND_LONG":
                    sock.sendall(M.MAVLink_command_ack_message(
                        msg.command, M.MAV_RESULT_UNSUPPORTED, 0, 0, msg.get_srcSystem(),
                        msg.get_srcComponent()).pack(mav))
                elif msg.get_type() == "MISSION_SET_CURRENT" and 1 <= msg.seq <= 4:
                    sock.sendall(M.MAVLink_mission_current_message(msg.seq, 4, 3, 1).pack(mav))
    return script


def test_set_mission_current_falls_back_to_mission_set_current_on_older_arducopter():
    """GCS_MAVLINK::handle_mission_set_current: no ACK; a MISSION_CURRENT echoing the
    seq on success, nothing on failure."""
    from bridge_fake_peer import FakePeer
    from mavlink_bridge.link import LinkConfig, MavlinkLink
    from mavlink_bridge.vehicle import CommandResult, Vehicle

    holder: list = []
    peer = FakePeer(_old_arducopter_script(holder))
    holder.append(peer)
    link = MavlinkLink(LinkConfig(peer.endpoint, target_system=1, heartbeat_timeout_s=2.0,
                                  reconnect_initial_s=0.05, reconnect_max_s=0.4))
    vehicle = Vehicle(link, 1)
    try:
        link.start()
        assert link.wait_for_heartbeat(5)
        assert vehicle.set_mission_current(3, timeout_s=0.5).result == CommandResult.ACCEPTED
        assert vehicle.set_mission_current(9, timeout_s=0.2, retries=1).result == CommandResult.FAILED
    finally:
        link.close()
        peer.close()


def test_a_gimbal_heard_before_the_autopilot_does_not_become_the_command_target():
    from bridge_fake_peer import FakePeer
    from mavlink_bridge.link import LinkConfig, MavlinkLink
    from mavlink_bridge.vehicle import Vehicle

    gimbal = bytes(_hb(*GIMBAL).get_msgbuf())

    def script(sock, _i):
        import threading
        sock.sendall(gimbal)
        threading.Event().wait(0.5)

    peer = FakePeer(script)
    link = MavlinkLink(LinkConfig(peer.endpoint, target_system=1, heartbeat_timeout_s=2.0,
                                  reconnect_initial_s=0.05, reconnect_max_s=0.4))
    vehicle = Vehicle(link, 1)
    try:
        link.start()
        wait_for(lambda: 1 in link.systems(), what="the gimbal heartbeat")
        assert link.systems()[1].compid == M.MAV_COMP_ID_GIMBAL
        assert vehicle.target_component == M.MAV_COMP_ID_AUTOPILOT1
        assert not link.wait_for_heartbeat(0)  # its HEARTBEAT (already dispatched) was not the vehicle
    finally:
        link.close()
        peer.close()
