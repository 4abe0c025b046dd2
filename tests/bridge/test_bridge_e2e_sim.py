"""End to end: the bridge against the built-in simulator over real loopback TCP.

Simulated time runs ``SPEEDUP`` times faster than the wall clock and the EKF is ready
after ``READY_S`` simulated seconds, so a whole flight takes a few wall seconds. Every
wait is a bounded wait for a condition, never a timing assertion.
"""

from __future__ import annotations

import contextlib
import random

import pytest

from bridge_fake_peer import TcpProxy, encoder, heartbeat, wait_for
from mavlink_bridge.apply import PlanApplier, items_match
from mavlink_bridge.link import LinkConfig, MavlinkLink
from mavlink_bridge.mission_protocol import (
    MissionResult, MissionResultError, MissionTimeoutError, TransferTimeouts,
)
from mavlink_bridge.plan import (
    CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, CMD_NAV_RALLY_POINT, CMD_NAV_TAKEOFF,
    CMD_NAV_WAYPOINT, FRAME_GLOBAL, FRAME_GLOBAL_RELATIVE_ALT, FRAME_GLOBAL_RELATIVE_ALT_INT,
    MissionItem, MissionPlan, MissionType,
)
from mavlink_bridge.telemetry import CopterMode
from mavlink_bridge.vehicle import CommandResult, Vehicle

from sitl import builtin  # noqa: E402 - the real simulator; a broken import must fail, not skip

SPEEDUP = 10.0
READY_S = 1.0
HOME = (-35.363261, 149.165230, 584.0)


@contextlib.contextmanager
def flying_setup(*, ready_s: float = READY_S, proxy: bool = False, timeouts=TransferTimeouts(),
                 drop_to_bridge=None):
    cfg = builtin.VehicleConfig(instance=0, tcp_port=0, speedup=SPEEDUP, time_to_ready_s=ready_s,
                                home_lat=HOME[0], home_lon=HOME[1], home_alt=HOME[2])
    with builtin.SimulatorServer([cfg]) as sim:
        px = TcpProxy(sim.ports[0], drop_to_bridge=drop_to_bridge) if proxy else None
        endpoint = px.endpoint if px else sim.endpoints[0]
        link = MavlinkLink(LinkConfig(endpoint, target_system=1, heartbeat_timeout_s=2.0,
                                      reconnect_initial_s=0.05, reconnect_max_s=0.5))
        vehicle = Vehicle(link, 1, transfer_timeouts=timeouts)
        link.start()
        try:
            assert link.wait_for_heartbeat(10)
            yield sim, link, vehicle, px
        finally:
            link.close()
            if px:
                px.close()


def _ready(v: Vehicle) -> None:
    assert v.request_streams()
    v.wait_until(lambda s: s.ekf is not None and s.ekf.position_ok and s.position is not None, 20)


def _take_off(v: Vehicle, alt: float = 20.0) -> None:
    _ready(v)
    v.set_mode("GUIDED").raise_for_result()
    v.arm().raise_for_result()
    v.takeoff(alt).raise_for_result()
    v.wait_until(lambda s: s.position is not None and s.position.alt_rel > alt - 2, 30)


def _route(lat0: float, lon0: float, east_m: float, n: int = 4, step_m: float = 40.0,
           alt: float = 20.0) -> tuple[MissionItem, ...]:
    dlat = step_m / 111_000.0
    dlon = east_m / (111_000.0 * 0.815)  # cos(-35.36°)
    return (MissionItem.at(CMD_NAV_TAKEOFF, lat0, lon0, alt),) + tuple(
        MissionItem.at(CMD_NAV_WAYPOINT, lat0 + i * dlat, lon0 + dlon, alt) for i in range(1, n + 1))


def _exclusion_square(lat: float, lon: float, d: float = 0.0005) -> tuple[MissionItem, ...]:
    corners = [(lat, lon), (lat, lon + d), (lat + d, lon + d), (lat + d, lon)]
    return tuple(MissionItem.at(CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, a, b, 0.0, param1=4.0)
                 for a, b in corners)


def test_connect_and_telemetry_flows():
    with flying_setup() as (_sim, link, v, _):
        s = v.state()
        assert s.heartbeat is not None
        assert s.heartbeat.mode == "STABILIZE" and not s.heartbeat.armed  # ArduPilot's first heartbeat
        assert link.stats.garbage_bytes > 0  # the boot banner, skipped
        _ready(v)
        s = v.wait_until(lambda s: None not in (s.battery, s.gps, s.mission), 10)
        assert s.position.lat == pytest.approx(HOME[0], abs=1e-4)
        assert s.gps.has_3d_fix
        assert s.battery.remaining_pct is not None and s.battery.remaining_pct > 50
        # Before its GPS fix ArduPilot sends GLOBAL_POSITION_INT at 0,0 (its location is
        # still zero); the decoder rejects exactly those and nothing else.
        rejected = v.telemetry.decoder.rejected
        assert set(rejected) <= {"GLOBAL_POSITION_INT"}
        assert not rejected or "0,0" in (v.telemetry.decoder.last_rejection or "")


def test_arm_refused_until_position_estimate_then_accepted():
    with flying_setup(ready_s=20.0) as (_sim, _link, v, _):
        v.request_streams()
        refused = v.arm()
        assert refused.result == CommandResult.FAILED
        wait_for(lambda: any("Need Position Estimate" in t.text for t in v.state().status_texts),
                 what="arming STATUSTEXT")
        v.wait_until(lambda s: s.ekf is not None and s.ekf.position_ok, 30)
        v.set_mode(CopterMode.GUIDED).raise_for_result()
        assert v.arm().accepted
        v.wait_until(lambda s: s.armed, 5)


def test_unknown_mode_is_refused_with_failed():
    with flying_setup() as (_sim, _link, v, _):
        ack = v.command(176, 1, 12345)  # MAV_CMD_DO_SET_MODE, custom mode that does not exist
        assert ack.result == CommandResult.FAILED


@pytest.mark.parametrize("mission_type", list(MissionType), ids=lambda t: t.name)
def test_upload_then_read_back_item_by_item(mission_type):
    lat, lon = HOME[0], HOME[1]
    items = {
        MissionType.MISSION: (MissionItem.at(CMD_NAV_WAYPOINT, lat, lon, HOME[2], frame=FRAME_GLOBAL),)
        + _route(lat, lon, 30.0),
        MissionType.FENCE: _exclusion_square(lat + 0.001, lon + 0.001),
        MissionType.RALLY: (MissionItem.at(CMD_NAV_RALLY_POINT, lat + 0.0005, lon, 25.0),
                            MissionItem.at(CMD_NAV_RALLY_POINT, lat, lon + 0.0005, 30.0)),
    }[mission_type]
    with flying_setup() as (_sim, _link, v, _):
        v.upload(mission_type, items)
        got = v.download(mission_type)
        assert len(got) == len(items)
        first = 1 if mission_type is MissionType.MISSION else 0
        if mission_type is MissionType.MISSION:
            assert got[0].frame == FRAME_GLOBAL  # item 0 is home, in frame GLOBAL
            assert got[0].lat == pytest.approx(HOME[0], abs=1e-6)
        for seq in range(first, len(items)):
            assert items_match(items[seq], got[seq]) is None, (seq, items[seq], got[seq])
        if mission_type is MissionType.MISSION:
            # uploaded as GLOBAL_RELATIVE_ALT_INT, stored and returned as GLOBAL_RELATIVE_ALT
            assert items[2].frame == FRAME_GLOBAL_RELATIVE_ALT_INT
            assert got[2].frame == FRAME_GLOBAL_RELATIVE_ALT
        assert any(t.text == "Flight plan received" for t in v.state().status_texts) or \
            mission_type is not MissionType.MISSION


def test_unsupported_command_is_surfaced_as_named_error():
    with flying_setup() as (_sim, _link, v, _):
        bogus = MissionItem.at(31999, HOME[0], HOME[1], 10.0)
        home = MissionItem.at(CMD_NAV_WAYPOINT, HOME[0], HOME[1], HOME[2], frame=FRAME_GLOBAL)
        with pytest.raises(MissionResultError) as err:
            v.upload(MissionType.MISSION, (home, bogus))
        assert err.value.result is MissionResult.UNSUPPORTED
        assert "MAV_MISSION_UNSUPPORTED" in str(err.value)


def test_fly_mission_with_fence_then_change_plan_in_flight():
    with flying_setup() as (_sim, _link, v, _):
        _take_off(v)
        lat, lon = HOME[0], HOME[1]
        first = MissionPlan(mission=_route(lat, lon, east_m=0.0, n=6),
                            fence=_exclusion_square(lat - 0.003, lon - 0.003), fence_enable=True)
        applier = PlanApplier(v)
        report = applier.apply(first)
        assert set(report.uploaded) == set(MissionType)
        assert ("FENCE_ENABLE", 1.0) in report.params_set
        assert applier.apply(first).uploaded == ()  # unchanged plan: nothing sent
        v.clear_reached()
        v.set_mode("AUTO").raise_for_result()
        assert v.wait_item_reached(3, 60) >= 3

        # A new plan arrives in flight: the same corridor shifted 60 m east.
        second = MissionPlan(mission=_route(lat, lon, east_m=60.0, n=6),
                             fence=first.fence, fence_enable=True)
        report = applier.apply(second)
        assert report.uploaded == (MissionType.MISSION,)
        assert report.resumed_at is not None and report.resumed_at >= 3  # not the takeoff
        s = v.state()
        assert s.armed and s.mode == "AUTO"
        target = second.mission[report.resumed_at - 1]
        v.clear_reached()
        reached = v.wait_item_reached(report.resumed_at, 60)
        assert reached >= report.resumed_at
        s = v.state()
        assert s.armed
        # it flew the new corridor: east of the old one, near the new waypoint's longitude
        assert s.position.lon == pytest.approx(target.lon, abs=2e-4)
        assert applier.verified(MissionType.MISSION) == second.mission


def test_link_cut_and_reconnect_resumes_telemetry_and_missions():
    with flying_setup(proxy=True) as (_sim, link, v, proxy):
        _ready(v)
        proxy.cut()
        wait_for(lambda: link.stats.connects >= 2, what="reconnect")
        assert link.wait_for_heartbeat(10)
        before = v.state().received_at.get("heartbeat")
        wait_for(lambda: v.state().received_at.get("heartbeat") != before, what="fresh heartbeat")
        home = MissionItem.at(CMD_NAV_WAYPOINT, HOME[0], HOME[1], HOME[2], frame=FRAME_GLOBAL)
        v.upload(MissionType.MISSION, (home,) + _route(HOME[0], HOME[1], 0.0, n=2))
        assert len(v.download(MissionType.MISSION)) == 4
        assert link.stats.disconnects >= 1


def test_garbage_bytes_on_the_link_are_counted_and_harmless():
    with flying_setup(proxy=True) as (_sim, link, v, proxy):
        _ready(v)
        rng = random.Random(4)
        noise = bytes(rng.randrange(256) for _ in range(4000))
        corrupt = bytearray(heartbeat(encoder(1)))
        corrupt[12] ^= 0x55
        before = link.stats
        proxy.inject(noise + bytes(corrupt) + b"\r\nAPM: boot text again\r\n")
        wait_for(lambda: link.stats.garbage_bytes > before.garbage_bytes + 1000, what="garbage counted")
        home = MissionItem.at(CMD_NAV_WAYPOINT, HOME[0], HOME[1], HOME[2], frame=FRAME_GLOBAL)
        items = (home,) + _route(HOME[0], HOME[1], 0.0, n=3)
        v.upload(MissionType.MISSION, items)
        assert len(v.download(MissionType.MISSION)) == len(items)
        after = link.stats
        assert after.bad_crc + after.other_errors > before.bad_crc + before.other_errors or \
            after.garbage_bytes >= before.garbage_bytes + len(noise) // 2
        assert link.stats.connects == 1  # garbage is not a reason to reconnect


def test_vehicle_that_stops_answering_mid_upload_times_out_not_success():
    fast = TransferTimeouts(default_s=0.2, item_s=0.1, max_retries=2)
    with flying_setup(proxy=True, timeouts=fast) as (_sim, link, v, proxy):
        home = MissionItem.at(CMD_NAV_WAYPOINT, HOME[0], HOME[1], HOME[2], frame=FRAME_GLOBAL)
        old = (home,) + _route(HOME[0], HOME[1], 0.0, n=2)
        v.upload(MissionType.MISSION, old)

        def go_quiet(msg, now):
            # the vehicle falls silent once it has asked for item 3 of the new upload
            if msg.get_type() in ("MISSION_REQUEST", "MISSION_REQUEST_INT") and msg.seq == 3:
                proxy.paused.set()

        unsubscribe = link.subscribe(go_quiet, sysid=1)
        with pytest.raises(MissionTimeoutError) as err:
            v.upload(MissionType.MISSION, (home,) + _route(HOME[0], HOME[1], 30.0, n=6))
        unsubscribe()
        assert "did NOT complete" in str(err.value)
        assert "items requested" in str(err.value)


def test_malformed_fence_plan_is_refused_before_anything_is_sent():
    with flying_setup() as (_sim, link, v, _):
        applier = PlanApplier(v)
        good = _exclusion_square(HOME[0] + 0.002, HOME[1])
        applier.apply(MissionPlan(fence=good))
        sent = link.stats.sent
        with pytest.raises(ValueError):
            applier.apply(MissionPlan(fence=good[:3], mission=_route(HOME[0], HOME[1], 0.0)))
        assert link.stats.sent - sent <= 1  # at most our own 1 Hz heartbeat went out
        assert len(v.download(MissionType.FENCE)) == len(good)


def test_radio_status_from_simulated_sik_radio_gives_a_link_quality():
    cfg = builtin.VehicleConfig(instance=0, tcp_port=0, speedup=SPEEDUP, time_to_ready_s=READY_S,
                                radio_status=True, seed=3)
    with builtin.SimulatorServer([cfg]) as sim:
        link = MavlinkLink(LinkConfig(sim.endpoints[0], target_system=1))
        v = Vehicle(link, 1)  # default source: RADIO_STATUS from sysid 51
        with link:
            assert link.wait_for_heartbeat(10)
            wait_for(lambda: v.link_quality() is not None, what="RADIO_STATUS")
            q = v.link_quality()
            assert q.source == "radio_status" and 0.0 <= q.score <= 1.0
            assert q.fade_margin_db is not None and q.rssi_dbm is not None
            assert v.state().radio is None  # the radio's status is not the vehicle's telemetry


def test_simulated_signal_source_scores_sitl_positions():
    from mavlink_bridge.signal import SimulatedSignalSource
    cfg = builtin.VehicleConfig(instance=0, tcp_port=0, speedup=SPEEDUP, time_to_ready_s=READY_S)
    with builtin.SimulatorServer([cfg]) as sim:
        link = MavlinkLink(LinkConfig(sim.endpoints[0], target_system=1))
        v = Vehicle(link, 1, signal=SimulatedSignalSource(HOME, seed=5))
        with link:
            assert link.wait_for_heartbeat(10)
            v.request_streams()
            wait_for(lambda: v.link_quality() is not None, what="modelled link quality")
            q = v.link_quality()
            assert q.source == "simulated"
            assert q.dropout or q.score == 1.0  # on the ground station: full margin


def test_lost_final_ack_is_resolved_by_read_back():
    dropped = []

    def drop_first_accepted_mission_ack(msg):
        if (not dropped and msg.get_type() == "MISSION_ACK" and msg.type == 0
                and msg.mission_type == MissionType.MISSION):
            dropped.append(msg)
            return True
        return False

    fast = TransferTimeouts(default_s=0.2, item_s=0.1, max_retries=1)
    with flying_setup(proxy=True, timeouts=fast, drop_to_bridge=drop_first_accepted_mission_ack) \
            as (_sim, _link, v, proxy):
        _ready(v)
        applier = PlanApplier(v)
        plan = MissionPlan(mission=_route(HOME[0], HOME[1], 0.0, n=3))
        report = applier.apply(plan)
        assert MissionType.MISSION in report.uploaded
        assert proxy.dropped == 1
        assert applier.verified(MissionType.MISSION) == plan.mission


def test_wiring_check_cli_prints_status_and_rejects_bad_strings(capsys):
    from mavlink_bridge.__main__ import main
    cfg = builtin.VehicleConfig(instance=0, tcp_port=0, speedup=SPEEDUP, time_to_ready_s=READY_S)
    with builtin.SimulatorServer([cfg]) as sim:
        assert main([sim.endpoints[0], "--seconds", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "connected to system 1" in out and "mode=STABILIZE" in out and "gps_fix=3" in out
    with pytest.raises(SystemExit):
        main(["tcp:127.0.0.1:99999"])
    assert "port 99999" in capsys.readouterr().err
