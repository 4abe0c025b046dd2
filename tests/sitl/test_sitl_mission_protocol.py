"""Vehicle side of the mission protocol, checked against ArduPilot's observed behaviour."""

from __future__ import annotations

import time

import numpy as np

from sitl_client import M, home_plus

WP, TAKEOFF, RTL = M.MAV_CMD_NAV_WAYPOINT, M.MAV_CMD_NAV_TAKEOFF, M.MAV_CMD_NAV_RETURN_TO_LAUNCH
REL_INT, REL, GLOBAL = M.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, M.MAV_FRAME_GLOBAL_RELATIVE_ALT, M.MAV_FRAME_GLOBAL


def _mission(n_waypoints: int = 3) -> list[tuple]:
    home = home_plus(0, 0)
    items = [(WP, GLOBAL, 0, 0, 0, 0, home[0], home[1], 584.0), (TAKEOFF, REL_INT, 0, 0, 0, 0, 0, 0, 10.0)]
    for i in range(n_waypoints):
        lat, lon = home_plus(20.0 * (i + 1), 10.0 * i)
        items.append((WP, REL_INT, 0, 0, 0, 0, lat, lon, 15.0 + i))
    return items


def test_upload_requests_every_item_with_legacy_mission_request_including_home(client):
    items = _mission()
    result, requests = client.upload(items)
    assert result == M.MAV_MISSION_ACCEPTED
    assert [r.get_type() for r in requests] == ["MISSION_REQUEST"] * len(items)
    assert [r.seq for r in requests] == list(range(len(items)))


def test_upload_ends_with_flight_plan_received(client):
    client.upload(_mission())
    client.wait("STATUSTEXT", lambda m: m.text == "Flight plan received")


def test_legacy_mission_item_upload_is_accepted(sim, client):
    result, _ = client.upload(_mission(2), legacy_items=True)
    assert result == M.MAV_MISSION_ACCEPTED
    assert len(sim.state(0).mission) == 4
    # legacy MISSION_ITEM carries float32 degrees: the vehicle keeps what the float said
    sent = _mission(2)[2][6]
    assert sim.state(0).mission[2].x == round(float(np.float32(sent / 1e7)) * 1e7)


def test_item_with_wrong_seq_is_nacked_at_once_and_requested_again(client):
    items = _mission(2)
    client.mav.mission_count_send(1, 1, len(items), 0)
    first = client.wait("MISSION_REQUEST")
    assert first.seq == 0
    client.send_item(2, items[2])
    ack = client.wait(["MISSION_ACK", "MISSION_REQUEST"])
    assert ack.get_type() == "MISSION_ACK" and ack.type == M.MAV_MISSION_INVALID_SEQUENCE
    again = client.wait("MISSION_REQUEST")
    assert again.seq == 0
    for seq in range(len(items)):
        client.send_item(seq, items[seq])
        if seq < len(items) - 1:
            client.wait("MISSION_REQUEST", lambda m, s=seq: m.seq == s + 1)
    assert client.wait("MISSION_ACK").type == M.MAV_MISSION_ACCEPTED


def test_unsupported_command_is_answered_with_mav_mission_unsupported(sim, client):
    items = _mission(1)
    items[2] = (31999, REL_INT, 0, 0, 0, 0, items[2][6], items[2][7], 10.0)
    result, _ = client.upload(items)
    assert result == M.MAV_MISSION_UNSUPPORTED


def test_unsupported_frame_for_a_located_command_is_rejected(client):
    items = _mission(1)
    items[2] = (WP, M.MAV_FRAME_BODY_NED, 0, 0, 0, 0, 10, 10, 10.0)
    result, _ = client.upload(items)
    assert result == M.MAV_MISSION_UNSUPPORTED_FRAME


def test_quiet_uploader_is_re_requested_then_cancelled_leaving_a_truncated_mission(sim, client):
    items = _mission(3)
    client.mav.mission_count_send(1, 1, len(items), 0)
    for seq in range(3):  # send items 0..2 of 5, then go quiet
        client.wait("MISSION_REQUEST", lambda m, s=seq: m.seq == s)
        client.send_item(seq, items[seq])
    got = client.collect(["MISSION_REQUEST", "MISSION_ACK"], until=lambda m: m.get_type() == "MISSION_ACK", timeout=20)
    repeats = [m for m in got if m.get_type() == "MISSION_REQUEST"]
    assert {m.seq for m in repeats} == {3}
    assert 6 <= len(repeats) <= 9  # one at once, then one per second of an 8 s timeout
    assert got[-1].type == M.MAV_MISSION_OPERATION_CANCELLED
    client.wait("STATUSTEXT", lambda m: m.text == "Mission upload timeout")
    assert len(sim.state(0).mission) == 3  # home, takeoff, first waypoint


def test_mission_count_zero_clears_the_mission(sim, client):
    client.upload(_mission(2))
    result, requests = client.upload([])
    assert result == M.MAV_MISSION_ACCEPTED and requests == []
    assert len(sim.state(0).mission) == 1  # only home is left
    assert len(client.download()) == 1


def test_mission_clear_all_clears_the_mission(sim, client):
    client.upload(_mission(2))
    client.mav.mission_clear_all_send(1, 1, 0)
    assert client.wait("MISSION_ACK").type == M.MAV_MISSION_ACCEPTED
    assert len(client.download()) == 1


def test_download_returns_mission_item_int_with_home_global_and_waypoints_relative(client):
    items = _mission(2)
    client.upload(items)
    got = client.download()
    assert [m.get_type() for m in got] == ["MISSION_ITEM_INT"] * len(items)
    assert got[0].frame == GLOBAL and got[0].command == WP
    assert (got[0].x, got[0].y) == home_plus(0, 0)
    assert all(m.frame == REL for m in got[1:])
    assert [(m.x, m.y, round(m.z, 2)) for m in got[2:]] == [(i[6], i[7], i[8]) for i in items[2:]]
    assert got[1].command == TAKEOFF and got[1].z == 10.0


def test_legacy_mission_request_is_answered_with_legacy_mission_item(client):
    items = _mission(1)
    client.upload(items)
    got = client.download(legacy=True)
    assert [m.get_type() for m in got] == ["MISSION_ITEM"] * len(items)
    assert got[2].x == float(np.float32(items[2][6] / 1e7)) and got[2].frame == REL


def test_request_beyond_the_end_gets_the_real_count_and_an_error(client):
    client.upload(_mission(1))
    client.mav.mission_request_int_send(1, 1, 9, 0)
    assert client.wait("MISSION_COUNT").count == 3
    assert client.wait("MISSION_ACK").type == M.MAV_MISSION_ERROR


def _square(center_n: float, center_e: float, half: float) -> list[tuple[int, int]]:
    return [home_plus(center_n + dn, center_e + de) for dn, de in
            ((-half, -half), (-half, half), (half, half), (half, -half))]


def test_fence_exclusion_polygon_and_circle_round_trip(sim, client):
    verts = _square(100, 0, 20)
    fence = [(M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, REL_INT, 4, 0, 0, 0, la, lo, 0.0) for la, lo in verts]
    cla, clo = home_plus(-50, -50)
    fence.append((M.MAV_CMD_NAV_FENCE_CIRCLE_EXCLUSION, REL_INT, 15.0, 0, 0, 0, cla, clo, 0.0))
    result, requests = client.upload(fence, mission_type=M.MAV_MISSION_TYPE_FENCE)
    assert result == M.MAV_MISSION_ACCEPTED
    assert all(r.mission_type == M.MAV_MISSION_TYPE_FENCE for r in requests)
    got = client.download(M.MAV_MISSION_TYPE_FENCE)
    assert [(m.command, m.param1, m.x, m.y) for m in got] == [(f[0], f[2], f[6], f[7]) for f in fence]
    assert all(m.mission_type == M.MAV_MISSION_TYPE_FENCE for m in got)
    assert len(sim.state(0).fence) == 5


def test_fence_with_inconsistent_vertex_count_is_rejected_and_the_old_fence_kept(sim, client):
    verts = _square(100, 0, 20)
    good = [(M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, REL_INT, 4, 0, 0, 0, la, lo, 0.0) for la, lo in verts]
    assert client.upload(good, mission_type=M.MAV_MISSION_TYPE_FENCE)[0] == M.MAV_MISSION_ACCEPTED
    bad = [(M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, REL_INT, 5, 0, 0, 0, la, lo, 0.0) for la, lo in verts]
    assert client.upload(bad, mission_type=M.MAV_MISSION_TYPE_FENCE)[0] == M.MAV_MISSION_ERROR
    assert len(client.download(M.MAV_MISSION_TYPE_FENCE)) == 4


def test_rally_points_round_trip(sim, client):
    rally = [(M.MAV_CMD_NAV_RALLY_POINT, REL_INT, 0, 0, 0, 0, *home_plus(30, 30), 20.0),
             (M.MAV_CMD_NAV_RALLY_POINT, REL_INT, 0, 0, 0, 0, *home_plus(-30, 30), 25.0)]
    result, _ = client.upload(rally, mission_type=M.MAV_MISSION_TYPE_RALLY)
    assert result == M.MAV_MISSION_ACCEPTED
    got = client.download(M.MAV_MISSION_TYPE_RALLY)
    assert [(m.command, m.x, m.y, m.z) for m in got] == [(r[0], r[6], r[7], r[8]) for r in rally]


def test_rally_rejects_a_non_rally_command(client):
    result, _ = client.upload([(WP, REL_INT, 0, 0, 0, 0, *home_plus(5, 5), 10.0)],
                              mission_type=M.MAV_MISSION_TYPE_RALLY)
    assert result == M.MAV_MISSION_UNSUPPORTED


def test_download_during_an_upload_is_denied(client):
    client.mav.mission_count_send(1, 1, 3, 0)
    client.wait("MISSION_REQUEST")
    client.mav.mission_request_list_send(1, 1, 0)
    assert client.wait("MISSION_ACK").type == M.MAV_MISSION_DENIED
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # let the abandoned upload time out before teardown
        ack = client.conn.recv_match(type="MISSION_ACK", blocking=True, timeout=0.5)
        if ack is not None and ack.type == M.MAV_MISSION_OPERATION_CANCELLED:
            break


def test_rally_upload_takes_relative_and_absolute_frames_and_rejects_local_ones(client):
    """MissionItemProtocol_Rally (observed on Copter SITL): a rally point in GLOBAL(_INT)
    is kept absolute, one in GLOBAL_RELATIVE_ALT(_INT) relative; whole metres; no
    autocontinue stored (reads back 0)."""
    good = [(M.MAV_CMD_NAV_RALLY_POINT, REL_INT, 0, 0, 0, 0, *home_plus(30, 30), 20.0),
            (M.MAV_CMD_NAV_RALLY_POINT, M.MAV_FRAME_GLOBAL_INT, 0, 0, 0, 0, *home_plus(30, 30), 600.7)]
    assert client.upload(good, mission_type=M.MAV_MISSION_TYPE_RALLY)[0] == M.MAV_MISSION_ACCEPTED
    client.wait("STATUSTEXT", lambda m: m.text == "Rally points received")
    back = client.download(mission_type=M.MAV_MISSION_TYPE_RALLY)
    assert [(m.frame, m.z, m.autocontinue) for m in back] == [(REL, 20.0, 0), (GLOBAL, 600.0, 0)]
    local = [(M.MAV_CMD_NAV_RALLY_POINT, M.MAV_FRAME_LOCAL_NED, 0, 0, 0, 0, 10, 10, 20.0)]
    assert client.upload(local, mission_type=M.MAV_MISSION_TYPE_RALLY)[0] == M.MAV_MISSION_UNSUPPORTED_FRAME


def test_fence_and_rally_requests_past_the_end_are_invalid_sequence(client):
    for mission_type in (M.MAV_MISSION_TYPE_FENCE, M.MAV_MISSION_TYPE_RALLY):
        client.mav.mission_request_int_send(1, 1, 5, mission_type)
        ack = client.wait("MISSION_ACK")
        assert (ack.type, ack.mission_type) == (M.MAV_MISSION_INVALID_SEQUENCE, mission_type)


def test_downloaded_items_report_current_zero_like_arducopter(client):
    client.upload(_mission(2))
    assert [m.current for m in client.download()] == [0, 0, 0, 0]
