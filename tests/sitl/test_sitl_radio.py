"""The simulated SiK radio (sitl.radio): the one path-loss model, the report it makes
from the positions it relays, and the relay that puts it in any vehicle's MAVLink path."""

from __future__ import annotations

import math
import os

os.environ.setdefault("MAVLINK20", "1")

import pymap3d
import pytest
from pymavlink import mavutil
from sitl_client import fast_config, wait_for

from mavlink_bridge.signal import RadioStatusSource
from mavlink_bridge.telemetry import TelemetryDecoder
from sitl.builtin import SimulatorServer
from sitl.radio import RADIO_SYSID, RadioModel, SikRadio, SikRadioRelay

GCS = (-35.363261, 149.165230, 584.0)


def _north(metres: float) -> tuple[float, float, float]:
    lat, lon, alt = pymap3d.enu2geodetic(0.0, metres, 50.0, *GCS)
    return float(lat), float(lon), float(alt)


def _score(radio: SikRadio, n: int = 20) -> float:
    """The bridge's score for ``n`` reports of ``radio`` (decoded as the bridge does)."""
    source, decoder = RadioStatusSource(alpha=1.0), TelemetryDecoder()
    parser = mavutil.mavlink.MAVLink(None)
    for t in range(n):
        sample = radio.report(float(t))
        if sample.link_up:
            msg = parser.decode(bytearray(radio.radio_status(sample)))
            assert msg.get_srcSystem() == RADIO_SYSID
            source.feed(msg.get_srcSystem(), decoder.decode(msg), float(t))
    q = source.quality(float(n))
    return 0.0 if q is None else q.score


def test_score_falls_with_the_distance_of_the_relayed_position():
    scores = []
    for metres in (100.0, 6_000.0, 11_000.0):
        radio = SikRadio(GCS, RadioModel(seed=1, shadowing_db=0.0, dropout_base_per_s=0.0))
        radio.observe_position(*_north(metres))
        scores.append(_score(radio))
    assert scores[0] == 1.0
    assert scores[0] > scores[1] > scores[2]


def test_reports_are_deterministic_for_a_seed():
    def run(seed: int) -> list:
        radio = SikRadio(GCS, RadioModel(seed=seed))
        radio.observe_position(*_north(8_000.0))
        return [radio.report(float(t)) for t in range(60)]
    assert run(3) == run(3) != run(4)


def test_positions_before_the_gps_fix_and_bad_ones_are_ignored():
    radio = SikRadio(GCS)
    radio.observe_position(math.nan, 0.0, 0.0)
    radio.observe_position(95.0, 0.0, 0.0)
    assert radio.position == GCS
    with pytest.raises(ValueError):
        SikRadio((95.0, 0.0, 0.0))


def test_relay_in_front_of_a_vehicle_injects_radio_status_and_passes_its_traffic():
    with SimulatorServer([fast_config()]) as sim, SikRadioRelay(sim.ports[0], GCS) as relay:
        conn = mavutil.mavlink_connection(relay.endpoint, source_system=255, source_component=190,
                                          autoreconnect=False)
        try:
            hb = wait_for(conn, "HEARTBEAT", lambda m: m.get_srcSystem() == 1, 15)
            assert hb.autopilot == mavutil.mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA
            status = wait_for(conn, "RADIO_STATUS", lambda m: True, 15)
            assert (status.get_srcSystem(), status.get_srcComponent()) == (51, 68)
            assert status.rssi > status.noise
        finally:
            conn.close()
        assert relay.reports >= 1
