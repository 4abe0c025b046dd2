"""Telemetry decoding (typed records, range checks) and the link-quality sources."""

from __future__ import annotations

import math

import pytest

from bridge_fake_peer import encoder, mavlink
from mavlink_bridge.signal import (
    LinkQuality, RadioStatusSource, score_from_margin_db,
)
from mavlink_bridge.telemetry import (
    Battery, CopterMode, EkfStatus, FenceStatus, Heartbeat, MissionProgress, Position,
    StatusText, TelemetryDecoder, TelemetryTracker, copter_mode_name, stream_requests,
)


def _wire(msg, sysid=1, compid=1):
    """Pack and parse back, so decoders see what the link would hand them."""
    mav = encoder(sysid, compid)
    return mavlink.MAVLink(None).parse_buffer(msg.pack(mav))[0]


def test_copter_mode_numbers_match_arducopter():
    assert [(m.name, m.value) for m in CopterMode][:9] == [
        ("STABILIZE", 0), ("ACRO", 1), ("ALT_HOLD", 2), ("AUTO", 3), ("GUIDED", 4),
        ("LOITER", 5), ("RTL", 6), ("CIRCLE", 7), ("LAND", 9)]
    assert copter_mode_name(8) == "MODE_8"


def test_heartbeat_decodes_mode_and_armed():
    rec = TelemetryDecoder().decode(_wire(mavlink.MAVLink_heartbeat_message(
        mavlink.MAV_TYPE_QUADROTOR, mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA,
        mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | mavlink.MAV_MODE_FLAG_SAFETY_ARMED,
        CopterMode.GUIDED, mavlink.MAV_STATE_ACTIVE, 3)))
    assert rec == Heartbeat(custom_mode=4, mode="GUIDED", armed=True,
                            system_status=mavlink.MAV_STATE_ACTIVE,
                            vehicle_type=mavlink.MAV_TYPE_QUADROTOR,
                            autopilot=mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA)


def test_global_position_int_decodes_units():
    rec = TelemetryDecoder().decode(_wire(mavlink.MAVLink_global_position_int_message(
        1234, 471234567, -81234567, 512340, 20500, 150, -20, 5, 9000)))
    assert isinstance(rec, Position)
    assert (rec.lat, rec.lon) == (pytest.approx(47.1234567), pytest.approx(-8.1234567))
    assert (rec.alt_msl, rec.alt_rel) == (pytest.approx(512.34), pytest.approx(20.5))
    assert (rec.vn, rec.ve, rec.vd, rec.heading_deg) == (1.5, -0.2, 0.05, 90.0)


@pytest.mark.parametrize("lat, lon", [(910000000, 0), (0, 1810000000), (0, 0)])
def test_impossible_positions_are_rejected_and_counted(lat, lon):
    decoder = TelemetryDecoder()
    assert decoder.decode(_wire(mavlink.MAVLink_global_position_int_message(
        1, lat, lon, 0, 0, 0, 0, 0, 0))) is None
    assert decoder.rejected["GLOBAL_POSITION_INT"] == 1
    assert decoder.last_rejection


def test_nan_variance_in_ekf_report_is_rejected():
    decoder = TelemetryDecoder()
    assert decoder.decode(_wire(mavlink.MAVLink_ekf_status_report_message(
        0x1F, math.nan, 0.1, 0.1, 0.1, 0.0))) is None
    assert decoder.rejected["EKF_STATUS_REPORT"] == 1


def test_ekf_position_ok_needs_absolute_horizontal_position():
    good = EkfStatus(flags=mavlink.EKF_ATTITUDE | mavlink.EKF_POS_HORIZ_ABS, velocity_variance=0,
                     pos_horiz_variance=0, pos_vert_variance=0, compass_variance=0)
    const = EkfStatus(flags=good.flags | mavlink.EKF_CONST_POS_MODE, velocity_variance=0,
                      pos_horiz_variance=0, pos_vert_variance=0, compass_variance=0)
    assert good.position_ok and not const.position_ok


def test_battery_from_sys_status_and_battery_status():
    d = TelemetryDecoder()
    sys_status = d.decode(_wire(mavlink.MAVLink_sys_status_message(
        0, 0, 0, 0, 12600, 1520, 87, 0, 0, 0, 0, 0, 0)))
    assert sys_status == Battery(voltage_v=12.6, current_a=15.2, remaining_pct=87, source="SYS_STATUS")
    unknown = d.decode(_wire(mavlink.MAVLink_sys_status_message(
        0, 0, 0, 0, 65535, -1, -1, 0, 0, 0, 0, 0, 0)))
    assert unknown == Battery(voltage_v=None, current_a=None, remaining_pct=None, source="SYS_STATUS")
    cells = [4200, 4190, 4210] + [65535] * 7
    bs = d.decode(_wire(mavlink.MAVLink_battery_status_message(
        0, 0, 0, 2500, cells, 300, 100, 50, 64)))
    assert bs.voltage_v == pytest.approx(12.6) and bs.remaining_pct == 64


def test_mission_current_fence_status_and_statustext():
    d = TelemetryDecoder()
    assert d.decode(_wire(mavlink.MAVLink_mission_current_message(3, 7, 3, 1))) == MissionProgress(
        seq=3, total=7, mission_state=3, mission_mode=1)
    assert d.decode(_wire(mavlink.MAVLink_fence_status_message(1, 2, 3, 12345))) == FenceStatus(
        breached=True, breach_count=2, breach_type=3, breach_time_ms=12345)
    assert d.decode(_wire(mavlink.MAVLink_statustext_message(
        6, b"Flight plan received"))) == StatusText(6, "Flight plan received")
    assert d.decode(_wire(mavlink.MAVLink_fence_status_message(1, 2, 9, 0))) is None


def test_tracker_keeps_latest_per_sysid_and_ignores_others():
    tracker = TelemetryTracker(sysid=2)
    pos = lambda lat: mavlink.MAVLink_global_position_int_message(  # noqa: E731
        1, lat, 80000000, 0, 0, 0, 0, 0, 0)
    tracker.feed(_wire(pos(470000000), sysid=2), now=1.0)
    tracker.feed(_wire(pos(480000000), sysid=3), now=2.0)
    tracker.feed(_wire(pos(471000000), sysid=2), now=3.0)
    state = tracker.snapshot()
    assert state.position.lat == pytest.approx(47.1)
    assert state.age("position", now=4.0) == 1.0
    # a GCS heartbeat on the same sysid (autopilot INVALID) does not change the mode
    tracker.feed(_wire(mavlink.MAVLink_heartbeat_message(
        mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID, 0, 0, 0, 3), sysid=2, compid=190), 5.0)
    assert tracker.snapshot().heartbeat is None


def test_stream_requests_cover_the_decoded_telemetry():
    ids = {msg_id for msg_id, _ in stream_requests()}
    assert mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_INT in ids
    assert mavlink.MAVLINK_MSG_ID_EKF_STATUS_REPORT in ids
    assert all(rate > 0 for _, rate in stream_requests())


# -- signal ----------------------------------------------------------------------------


def _radio(rssi, remrssi, noise, remnoise):
    return TelemetryDecoder().decode(_wire(mavlink.MAVLink_radio_status_message(
        rssi, remrssi, 0, noise, remnoise, 0, 0), sysid=51, compid=68))


def test_score_from_margin_is_clamped_linear():
    assert score_from_margin_db(-5) == 0.0
    assert score_from_margin_db(15) == 0.5
    assert score_from_margin_db(60) == 1.0
    assert score_from_margin_db(math.nan) == 0.0


def test_radio_status_source_uses_weaker_end_and_only_sik_sysid():
    source = RadioStatusSource(alpha=1.0)
    assert source.quality(0.0) is None
    assert not source.feed(1, _radio(200, 200, 50, 50), 0.0)  # not the radio's sysid
    assert source.feed(51, _radio(120, 100, 62, 62), 1.0)
    q = source.quality(1.0)
    assert q.fade_margin_db == pytest.approx((100 - 62) / 1.9)  # remote end is weaker
    assert q.score == pytest.approx(min(1.0, (38 / 1.9) / 30))
    assert q.rssi_dbm == pytest.approx(120 / 1.9 - 127)
    assert not source.feed(51, _radio(255, 255, 255, 255), 2.0)  # 255 = unknown


def test_radio_status_smoothing_damps_a_single_spike():
    source = RadioStatusSource(alpha=0.3)
    for t in range(10):
        source.feed(51, _radio(100, 100, 60, 60), float(t))
    steady = source.quality(10.0).score
    source.feed(51, _radio(60, 60, 60, 60), 10.0)  # one sample at zero margin
    assert 0 < steady - source.quality(10.0).score < steady


def test_a_drop_from_a_strong_link_shows_at_the_first_report():
    """Smoothing acts on the score, so a strong link's headroom above full scale does not
    delay a drop (best-signal leadership reacts one report after the signal goes)."""
    source = RadioStatusSource(alpha=0.3)
    for t in range(10):
        source.feed(51, _radio(160, 160, 60, 60), float(t))  # ~53 dB: far above full scale
    assert source.quality(10.0).score == 1.0
    source.feed(51, _radio(98, 98, 60, 60), 10.0)            # 20 dB: score 0.67
    assert source.quality(10.0).score == pytest.approx(0.7 * 1.0 + 0.3 * (38 / 1.9) / 30)
    assert 1.0 - source.quality(10.0).score >= 0.1 - 1e-9   # a leadership margin at once


def test_link_quality_goes_to_zero_when_stale():
    q = LinkQuality(score=0.8, measured_at=10.0, source="x")
    assert q.score_at(12.0, max_age_s=5.0) == 0.8
    assert q.score_at(16.0, max_age_s=5.0) == 0.0
    with pytest.raises(ValueError):
        LinkQuality(score=1.5, measured_at=0.0, source="x")


def test_copter_modes_are_pymavlinks_table():
    """One table of copter modes: CopterMode's members are pymavlink's mode_mapping_acm
    entries (the built-in simulator uses that table too)."""
    from pymavlink import mavutil

    from mavlink_bridge.telemetry import CopterMode, copter_mode_name
    assert {(m.value, m.name) for m in CopterMode} <= set(mavutil.mode_mapping_acm.items())
    assert copter_mode_name(27) == "AUTO_RTL" and copter_mode_name(99) == "MODE_99"
