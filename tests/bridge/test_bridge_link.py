"""The link over real loopback TCP against scripted peers: parsing, garbage, EOF, signing."""

from __future__ import annotations

import os
import threading

import pytest

from bridge_fake_peer import FakePeer, encoder, heartbeat, mavlink, wait_for
from mavlink_bridge.link import (
    ConnectionStringError, LinkConfig, MavlinkLink, parse_connection_string,
)
from mavlink_bridge.vehicle import Vehicle

BANNER = b"ArduCopter V4.5.7 (2a3dc4b7)\r\nChibiOS: 6a85082c\r\nFrame: QUAD/X\r\n"


# -- connection strings ----------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("tcp:127.0.0.1:5760", ("tcp", "127.0.0.1", 5760, None, None)),
    ("udp:0.0.0.0:14550", ("udpin", "0.0.0.0", 14550, None, None)),
    ("udpin:localhost:14550", ("udpin", "localhost", 14550, None, None)),
    ("udpout:10.0.0.2:14550", ("udpout", "10.0.0.2", 14550, None, None)),
    ("/dev/ttyAMA0,921600", ("serial", None, None, "/dev/ttyAMA0", 921600)),
    ("serial:/dev/ttyUSB0,57600", ("serial", None, None, "/dev/ttyUSB0", 57600)),
    ("/dev/serial/by-id/usb-ArduPilot_fmuv3-if00", ("serial", None, None,
                                                    "/dev/serial/by-id/usb-ArduPilot_fmuv3-if00", 57600)),
    ("COM3,115200", ("serial", None, None, "COM3", 115200)),
])
def test_connection_strings_parse(text, expected):
    spec = parse_connection_string(text)
    assert (spec.kind, spec.host, spec.port, spec.device, spec.baud) == expected


def test_serial_baud_argument_used_when_string_has_none():
    assert parse_connection_string("/dev/ttyAMA0", baud=921600).baud == 921600


@pytest.mark.parametrize("text", [
    "", "   ", "tcp:", "tcp:host", "tcp:host:0", "tcp:host:70000", "tcp:host:port",
    "udpout:0.0.0.0:14550", "http://x", "ttyAMA0", "/dev/ttyAMA0,12345", "/dev/ttyAMA0,fast",
    "tcp:my host:5760",
])
def test_bad_connection_strings_are_rejected_clearly(text):
    with pytest.raises(ConnectionStringError):
        parse_connection_string(text)


def test_link_config_validates_fields():
    with pytest.raises(ValueError):
        LinkConfig("tcp:127.0.0.1:5760", source_system=0)
    with pytest.raises(ValueError):
        LinkConfig("tcp:127.0.0.1:5760", signing_key=b"short")
    with pytest.raises(ValueError):
        LinkConfig("tcp:127.0.0.1:5760", heartbeat_timeout_s=0)
    assert LinkConfig("tcp:127.0.0.1:5760").source_component == 191


def test_pymavlink_runs_in_mavlink2_mode():
    import mavlink_bridge.link  # noqa: F401 - sets MAVLINK20 before pymavlink
    assert os.environ["MAVLINK20"] == "1"


# -- reading ---------------------------------------------------------------------------


def _config(peer: FakePeer, **kw) -> LinkConfig:
    kw.setdefault("heartbeat_timeout_s", 2.0)
    kw.setdefault("reconnect_initial_s", 0.05)
    kw.setdefault("reconnect_max_s", 0.4)
    return LinkConfig(peer.endpoint, **kw)


def test_banner_and_garbage_are_skipped_and_counted():
    mav = encoder(1)
    good = heartbeat(mav)
    corrupt = bytearray(heartbeat(mav))
    corrupt[-1] ^= 0xFF  # break the CRC

    def script(sock, _i):
        sock.sendall(BANNER + good + b"\x00\x13\x37garbage!" + bytes(corrupt) + good)
        threading.Event().wait(1.0)

    peer = FakePeer(script)
    seen = []
    link = MavlinkLink(_config(peer))
    link.subscribe(lambda m, now: seen.append(m.get_type()))
    try:
        link.start()
        wait_for(lambda: seen.count("HEARTBEAT") >= 2, what="two heartbeats")
        stats = link.stats
        assert stats.garbage_bytes >= len(BANNER)
        assert stats.bad_crc >= 1
        assert stats.messages == 2
        assert 1 in link.systems()
    finally:
        link.close()
        peer.close()


def test_eof_is_a_disconnect_with_backoff_not_a_busy_loop():
    # The peer accepts and hangs up at once, forever: each EOF must back off.
    peer = FakePeer(lambda sock, i: None)
    link = MavlinkLink(_config(peer, reconnect_initial_s=0.05, reconnect_max_s=0.4))
    try:
        link.start()
        wait_for(lambda: link.stats.eofs >= 3, what="three EOFs")
        threading.Event().wait(1.5)
        stats = link.stats
    finally:
        link.close()
        peer.close()
    # A spinning reader would make thousands of attempts; backoff allows a handful:
    # 0.05 + 0.1 + 0.2 + 0.4 + 0.4 + ... never below 0.05 s apart, 0.4 s once saturated.
    assert peer.accepts <= 15
    assert stats.eofs == stats.disconnects >= 3


def test_silent_peer_is_detected_and_reconnected():
    peer = FakePeer(lambda sock, i: peer.serve_for(sock, 5.0, 0.05, lambda: b""))
    link = MavlinkLink(_config(peer, heartbeat_timeout_s=0.3))
    try:
        link.start()
        wait_for(lambda: link.stats.silent_timeouts >= 1 and peer.accepts >= 2,
                 what="silence detected and reconnect")
    finally:
        link.close()
        peer.close()


def test_link_cut_then_reconnects_and_heartbeats_flow_again():
    mav = encoder(1)

    def script(sock, i):
        # First connection: heartbeats for a while then the cable is cut (close).
        peer.serve_for(sock, 0.4 if i == 0 else 30.0, 0.05, lambda: heartbeat(mav))

    peer = FakePeer(script)
    link = MavlinkLink(_config(peer, target_system=1))
    try:
        link.start()
        assert link.wait_for_heartbeat(10)
        wait_for(lambda: link.stats.connects >= 2, what="reconnect")
        assert link.wait_for_heartbeat(10)
        assert link.stats.disconnects >= 1
        # our own 1 Hz heartbeat went out as MAV_TYPE_ONBOARD_CONTROLLER from component 191
        wait_for(lambda: len(peer.received) > 0, what="companion heartbeat")
        parser = mavlink.MAVLink(None)
        msgs = parser.parse_buffer(bytes(peer.received)) or []
        hb = [m for m in msgs if m.get_type() == "HEARTBEAT"]
        assert hb and hb[0].get_srcComponent() == 191
        assert hb[0].type == mavlink.MAV_TYPE_ONBOARD_CONTROLLER
    finally:
        link.close()
        peer.close()


def test_messages_from_other_sysids_are_kept_apart():
    a, b = encoder(1), encoder(2)

    def frames():
        return (heartbeat(a) + heartbeat(b)
                + mavlink.MAVLink_global_position_int_message(1, 471000000, 81000000, 500000, 10000,
                                                              0, 0, 0, 0).pack(a)
                + mavlink.MAVLink_global_position_int_message(1, 472000000, 82000000, 600000, 20000,
                                                              0, 0, 0, 0).pack(b))

    peer = FakePeer(lambda sock, i: peer.serve_for(sock, 30, 0.05, frames))
    link = MavlinkLink(_config(peer, target_system=2))
    v1, v2 = Vehicle(link, 1), Vehicle(link, 2)
    try:
        link.start()
        wait_for(lambda: v1.state().position is not None and v2.state().position is not None,
                 what="positions of both")
        assert v1.state().position.lat == pytest.approx(47.1)
        assert v2.state().position.lat == pytest.approx(47.2)
        assert set(link.systems()) == {1, 2}
    finally:
        link.close()
        peer.close()


# -- signing ---------------------------------------------------------------------------


KEY = bytes(range(32))


def test_signing_accepts_signed_rejects_unsigned_except_sik_radio_status():
    signed = encoder(1, key=KEY)
    unsigned = encoder(1)
    wrong = encoder(1, key=bytes(32))
    radio = encoder(51, 68)
    radio_status = lambda mav: mavlink.MAVLink_radio_status_message(  # noqa: E731
        200, 190, 100, 60, 62, 0, 0).pack(mav)

    def frames():
        return (heartbeat(signed) + heartbeat(unsigned) + heartbeat(wrong) + radio_status(radio)
                + radio_status(unsigned))

    peer = FakePeer(lambda sock, i: peer.serve_for(sock, 30, 0.05, frames))
    seen: list[tuple[str, int, bool]] = []
    link = MavlinkLink(_config(peer, signing_key=KEY))
    link.subscribe(lambda m, now: seen.append((m.get_type(), m.get_srcSystem(), m.get_signed())))
    try:
        link.start()
        wait_for(lambda: link.stats.unsigned_rejected >= 2, what="rejections")
        stats = link.stats
    finally:
        link.close()
        peer.close()
    kinds = set(seen)
    assert ("HEARTBEAT", 1, True) in kinds
    assert ("HEARTBEAT", 1, False) not in kinds
    assert ("RADIO_STATUS", 51, False) in kinds
    assert ("RADIO_STATUS", 1, False) not in kinds
    assert stats.bad_signature >= 2  # the unsigned and the wrongly signed heartbeats


# -- UDP and serial --------------------------------------------------------------------


def _free_udp_port() -> int:
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _recv_heartbeats(sock, parser, timeout=10.0):
    import time as _t
    end = _t.monotonic() + timeout
    sock.settimeout(0.2)
    while _t.monotonic() < end:
        try:
            data, addr = sock.recvfrom(65536)
        except OSError:
            continue
        msgs = [m for m in (parser.parse_buffer(data) or []) if m.get_type() == "HEARTBEAT"]
        if msgs:
            return msgs[0], addr
    raise AssertionError("no heartbeat received")


def test_udpin_link_receives_and_answers_the_sender():
    import socket
    port = _free_udp_port()
    link = MavlinkLink(LinkConfig(f"udpin:127.0.0.1:{port}", target_system=1))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    mav = encoder(1)
    try:
        link.start()
        wait_for(lambda: link.connected, what="udp bound")
        wait_for(lambda: (peer.sendto(heartbeat(mav), ("127.0.0.1", port)) and False)
                 or link.wait_for_heartbeat(0.05), what="heartbeat over udp")
        hb, _ = _recv_heartbeats(peer, mavlink.MAVLink(None))
        assert hb.get_srcComponent() == 191
    finally:
        link.close()
        peer.close()


def test_udpout_link_sends_first_and_hears_replies():
    import socket
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    link = MavlinkLink(LinkConfig(f"udpout:127.0.0.1:{peer.getsockname()[1]}", target_system=1))
    try:
        link.start()
        _hb, addr = _recv_heartbeats(peer, mavlink.MAVLink(None))
        peer.sendto(heartbeat(encoder(1)), addr)
        assert link.wait_for_heartbeat(10)
    finally:
        link.close()
        peer.close()


def test_serial_device_link_reads_and_backs_off_when_device_vanishes():
    master, slave = os.openpty()
    path = os.ttyname(slave)
    link = MavlinkLink(LinkConfig(f"{path},57600", target_system=1, reconnect_initial_s=0.05,
                                  reconnect_max_s=0.4))
    mav = encoder(1)
    try:
        link.start()
        wait_for(lambda: link.connected, what="serial open")
        os.write(master, BANNER + heartbeat(mav))
        assert link.wait_for_heartbeat(10)
        assert link.stats.garbage_bytes >= len(BANNER)
        # unplug: the device disappears; reads fail and reopening fails, with backoff
        os.close(slave)
        os.close(master)
        master = slave = -1
        wait_for(lambda: link.stats.disconnects >= 1 and link.stats.connect_failures >= 2,
                 what="disconnect and failed reopen")
        threading.Event().wait(1.0)
        assert link.stats.connect_failures <= 12  # backoff, not a spin
    finally:
        link.close()
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)


def test_refused_connection_is_retried_with_backoff_and_close_is_prompt():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    link = MavlinkLink(LinkConfig(f"tcp:127.0.0.1:{port}", reconnect_initial_s=0.05,
                                  reconnect_max_s=0.4))
    try:
        link.start()
        wait_for(lambda: link.stats.connect_failures >= 3, what="failed attempts")
        assert not link.connected
        assert "failed" in (link.last_error or "")
        assert link.send(mavlink.MAVLink_heartbeat_message(6, 8, 0, 0, 0, 3)) is False
    finally:
        link.close()
    assert link.stats.connect_failures <= 12


def test_mission_replies_addressed_to_another_gcs_are_not_taken_as_ours():
    from mavlink_bridge.plan import MissionType
    from mavlink_bridge.mission_protocol import TransferTimeouts, MissionTimeoutError
    mav = encoder(1)

    def frames():
        # the vehicle is answering QGroundControl (255/190), not us (245/191)
        return heartbeat(mav) + mavlink.MAVLink_mission_count_message(255, 190, 3, 0).pack(mav)

    peer = FakePeer(lambda sock, i: peer.serve_for(sock, 30, 0.02, frames))
    link = MavlinkLink(_config(peer, target_system=1))
    v = Vehicle(link, 1, transfer_timeouts=TransferTimeouts(default_s=0.1, max_retries=1))
    try:
        link.start()
        assert link.wait_for_heartbeat(10)
        with pytest.raises(MissionTimeoutError):
            v.download(MissionType.MISSION)
    finally:
        link.close()
        peer.close()


def test_missing_serial_device_is_a_named_visible_error_logged_once(tmp_path, caplog):
    """Regression (issue 8): a missing /dev/serial0 was logged at DEBUG while the link
    retried forever. The error names the device and what to check, at WARNING, once
    per distinct problem (retries of the same failure stay quiet)."""
    import logging
    device = f"/dev/wildfire-test-absent-{os.getpid()}"
    link = MavlinkLink(LinkConfig(f"{device},921600", reconnect_initial_s=0.05,
                                  reconnect_max_s=0.1))
    with caplog.at_level(logging.DEBUG, logger="mavlink_bridge.link"):
        try:
            link.start()
            wait_for(lambda: link.stats.connect_failures >= 3, what="failed attempts")
        finally:
            link.close()
    assert not link.connected
    assert f"serial device {device} does not exist" in (link.last_error or "")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and device in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "enable_uart" in warnings[0].getMessage()


def test_a_vehicle_repeating_in_progress_cannot_hold_a_command_for_ever():
    """MAV_RESULT_IN_PROGRESS extended the wait by a full timeout each time, without
    limit: an autopilot answering every COMMAND_LONG with IN_PROGRESS, again and again,
    held Vehicle.command (and the lock parameter reads share) for ever. In process: the
    link is never started, its reader's dispatch is fed the autopilot's acks."""
    from mavlink_bridge.vehicle import CommandTimeoutError

    link = MavlinkLink(LinkConfig("tcp:127.0.0.1:9", target_system=1))
    v = Vehicle(link, 1)
    mav, parser = encoder(1), mavlink.MAVLink(None)
    in_progress = parser.parse_buffer(mavlink.MAVLink_command_ack_message(
        mavlink.MAV_CMD_DO_SET_MODE, mavlink.MAV_RESULT_IN_PROGRESS, 0, 0, 245, 191).pack(mav))[0]
    stop = threading.Event()

    def autopilot() -> None:
        while not stop.wait(0.02):
            link._dispatch(in_progress, 0.0)

    feeder = threading.Thread(target=autopilot, daemon=True)
    feeder.start()
    outcome: list[BaseException] = []
    caller = threading.Thread(target=lambda: outcome.append(pytest.raises(
        CommandTimeoutError, v.command, mavlink.MAV_CMD_DO_SET_MODE, 1, 4, timeout_s=0.1,
        in_progress_max_s=0.5).value), daemon=True)
    caller.start()
    caller.join(timeout=5)
    stop.set()
    feeder.join()
    assert not caller.is_alive(), "command still waiting on IN_PROGRESS"
    assert "still only MAV_RESULT_IN_PROGRESS after 0.5s" in str(outcome[0])
