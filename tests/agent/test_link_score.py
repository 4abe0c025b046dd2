"""The agent's link score (swarm/agent/link.py): the one score function, and the broker
self-ping that measures round trip and loss."""

from __future__ import annotations

import pytest

from mavlink_bridge.signal import LinkQuality
from swarm.agent.link import BrokerProbe, LinkScorePolicy, RadioFactor, link_score

POLICY = LinkScorePolicy(rtt_good_ms=50, rtt_bad_ms=500, loss_bad=0.5)


def test_score_is_radio_times_broker_round_trip_times_loss() -> None:
    assert link_score(1.0, 10.0, 0.0, POLICY) == 1.0
    assert link_score(0.5, 10.0, 0.0, POLICY) == 0.5
    assert link_score(1.0, 275.0, 0.0, POLICY) == 0.5          # halfway from good to bad
    assert link_score(1.0, 900.0, 0.0, POLICY) == 0.0
    assert link_score(1.0, 10.0, 0.25, POLICY) == 0.5          # half of loss_bad
    assert link_score(0.8, 275.0, 0.25, POLICY) == 0.2
    assert link_score(1.0, 10.0, 0.9, POLICY) == 0.0


def test_no_flight_controller_counts_as_a_perfect_radio_and_unknown_rtt_as_no_score() -> None:
    assert link_score(None, 10.0, 0.0, POLICY) == 1.0
    assert link_score(None, 275.0, 0.0, POLICY) == 0.5
    assert link_score(1.0, None, 0.0, POLICY) is None          # no probe back yet
    assert link_score(1.0, None, 1.0, POLICY) == 0.0           # every probe lost


def _report(score: float, at: float) -> LinkQuality:
    return LinkQuality(score=score, measured_at=at, source="radio_status")


def test_auto_radio_a_drone_that_never_hears_radio_status_has_no_radio_after_detect_s() -> None:
    radio = RadioFactor("auto", detect_s=10.0, max_age_s=5.0)
    assert radio.update(0.0, None, fc_connected=False) == 0.0 and radio.source == "detecting"
    # The clock runs only while the flight controller is heard (over a radio out of
    # range nothing comes at all), and restarts when the link drops.
    assert radio.update(1.0, None, True) == 0.0
    assert radio.update(9.0, None, False) == 0.0
    assert radio.update(10.0, None, True) == 0.0
    assert radio.update(19.9, None, True) == 0.0 and radio.source == "detecting"
    assert radio.update(20.0, None, True) is None and radio.source == "absent"
    assert radio.update(100.0, None, False) is None            # decided: FC link loss is not radio loss
    # A radio that turns up later is scored from its first report on, and its silence
    # then is 0 again: silence from a radio that reported is no evidence of a good link.
    assert radio.update(101.0, _report(0.7, 101.0), True) == 0.7 and radio.source == "radio_status"
    assert radio.update(107.0, _report(0.7, 101.0), True) == 0.0 and radio.source == "radio_status"


def test_auto_radio_hearing_radio_status_first_scores_the_radio_and_silence_is_zero() -> None:
    radio = RadioFactor("auto", detect_s=10.0, max_age_s=5.0)
    assert radio.update(0.0, None, True) == 0.0
    assert radio.update(1.0, _report(0.9, 1.0), True) == 0.9 and radio.source == "radio_status"
    assert radio.update(30.0, _report(0.9, 1.0), True) == 0.0 and radio.source == "radio_status"


def test_fixed_radio_modes() -> None:
    required = RadioFactor("radio_status")
    assert required.update(100.0, None, True) == 0.0 and required.source == "radio_status"
    assert required.update(101.0, _report(0.5, 101.0), True) == 0.5
    absent = RadioFactor("none")
    assert absent.update(0.0, _report(0.5, 0.0), True) is None and absent.source == "none"
    for bad in ({"mode": "wifi"}, {"detect_s": 0.0}, {"max_age_s": float("nan")}):
        with pytest.raises(ValueError):
            RadioFactor(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("args", [(1.5, 1.0, 0.0), (-0.1, 1.0, 0.0), (True, 1.0, 0.0),
                                  (1.0, -1.0, 0.0), (1.0, float("nan"), 0.0),
                                  (1.0, float("inf"), 0.0), (1.0, 1.0, 2.0)])
def test_inputs_out_of_range_are_refused(args: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError):
        link_score(*args, POLICY)


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="rtt_bad_ms"):
        LinkScorePolicy(rtt_good_ms=100, rtt_bad_ms=100)
    with pytest.raises(ValueError, match="loss_bad"):
        LinkScorePolicy(loss_bad=0)


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_probe_measures_median_round_trip_and_loss() -> None:
    clock = _Clock()
    probe = BrokerProbe(period_s=0.5, timeout_s=1.0, window=10, clock=clock)
    assert probe.figures(0.0) == (None, 0.0)
    for i, rtt in enumerate([0.010, 0.020, 0.300]):
        clock.t = i * 0.5
        payload = probe.due(clock.t)
        assert payload is not None and probe.due(clock.t + 0.1) is None  # one per period
        clock.t += rtt
        assert probe.received(payload)
        assert not probe.received(payload)                    # a duplicate is not counted
    rtt_ms, loss = probe.figures(clock.t)
    assert rtt_ms == pytest.approx(20.0) and loss == 0.0      # median: one slow sample ignored
    clock.t = 2.0
    assert probe.due(clock.t) is not None                     # never comes back
    clock.t = 2.5
    lost_late = probe.due(clock.t)
    assert lost_late is not None
    clock.t = 3.6                                             # too late: counted lost
    assert not probe.received(lost_late)
    assert probe.figures(clock.t)[1] == pytest.approx(2 / 5)
    clock.t = 4.0
    assert probe.due(clock.t) is not None
    probe.send_failed()                                       # no broker: lost at once
    assert probe.figures(clock.t)[1] == pytest.approx(3 / 6)


def test_probe_ignores_what_is_not_its_own() -> None:
    clock = _Clock()
    probe = BrokerProbe(period_s=1.0, timeout_s=1.0, clock=clock)
    other = BrokerProbe(period_s=1.0, timeout_s=1.0, clock=clock)
    mine, theirs = probe.due(0.0), other.due(0.0)
    assert mine is not None and theirs is not None
    assert not probe.received(theirs)                         # another process's nonce
    assert not probe.received(b"junk")
    assert not probe.received(mine[:-1] + bytes([mine[-1] ^ 1]))
    assert probe.rejected == 3
    assert probe.received(mine)


def test_swarm_status_link_column_says_when_a_drone_has_no_radio() -> None:
    from swarm.cli.status import _link_cell, rows

    base = {"v": 1, "online": True, "role": "follower", "leader": 1, "term": 2, "t": 0,
            "link_score": 0.97}
    statuses = {1: {**base, "node": 1, "link": {"radio": None, "radio_source": "absent"}},
                2: {**base, "node": 2, "link": {"radio": 0.97, "radio_source": "radio_status"}},
                3: {**base, "node": 3, "link": {"radio": None, "radio_source": None}},
                4: {**base, "node": 4, "link": {"radio_source": "bogus"}}, 5: {**base, "node": 5, "link": 7}}
    table = rows(statuses, 0)
    cells = {r["node"]: _link_cell(r["link_score"], r["radio_source"]) for r in table}
    # 4 and 5 are malformed: refused whole (swarm.node_status), shown as invalid rows.
    assert cells == {1: "0.97 no radio", 2: "0.97", 3: "0.97", 4: "-", 5: "-"}
    assert {r["node"]: r["role"] for r in table if r["invalid"]} == {4: "invalid", 5: "invalid"}
