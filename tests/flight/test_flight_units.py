"""Unit tests: the health hysteresis, the latest-wins worker, the pre-upload fire check."""

from __future__ import annotations

import threading
import time

import pytest
import shapely

from mavlink_bridge.plan import CMD_NAV_TAKEOFF, CMD_NAV_WAYPOINT, MissionItem
from swarm.flight import Availability, HealthMonitor, HealthPolicy, LatestWins, fence_polygons, \
    hazards_crossed, hazards_near_line
from mavlink_bridge.plan import fence_polygon

POLICY = HealthPolicy(battery_critical_pct=20, battery_recovered_pct=30, lost_after_s=5,
                      critical_after_s=3, recovered_after_s=2)


def _feed(m: HealthMonitor, samples: list[tuple[float, bool, float | None]]) -> list[tuple[float, Availability]]:
    out = []
    for t, connected, battery in samples:
        change = m.update(t, connected, battery)
        if change is not None:
            out.append((t, change))
    return out


def test_in_service_only_after_the_link_held_for_the_dwell() -> None:
    m = HealthMonitor(POLICY)
    assert m.state is Availability.UNAVAILABLE
    assert _feed(m, [(0, True, 90), (1, True, 90), (1.9, True, 90), (2.0, True, 90)]) == \
        [(2.0, Availability.IN_SERVICE)]


def test_no_verdict_until_the_link_proved_up_or_stayed_down_for_the_dwell() -> None:
    # An agent restarted under a flying drone must not commit "unavailable" for the
    # moment before it hears its flight controller (Flight._desired_entry waits).
    m = HealthMonitor(POLICY)
    _feed(m, [(0, False, None), (0.5, True, 90), (1.5, True, 90)])
    assert not m.decided and m.state is Availability.UNAVAILABLE
    _feed(m, [(2.5, True, 90)])
    assert m.decided and m.state is Availability.IN_SERVICE
    never = HealthMonitor(POLICY)  # a flight controller that never answers
    _feed(never, [(0, False, None), (4.9, False, None)])
    assert not never.decided
    assert _feed(never, [(5.0, False, None)]) == [] and never.decided
    assert never.state is Availability.UNAVAILABLE


def test_a_short_link_dropout_changes_nothing_a_long_one_does() -> None:
    m = HealthMonitor(POLICY)
    _feed(m, [(0, True, 90), (2, True, 90)])
    assert _feed(m, [(3, False, None), (7.9, False, None), (8, True, 90)]) == []
    assert _feed(m, [(10, False, None), (14.9, False, None), (15, False, None)]) == \
        [(15, Availability.UNAVAILABLE)]
    assert _feed(m, [(16, True, 90), (18, True, 90)]) == [(18, Availability.IN_SERVICE)]


def test_battery_noise_around_the_threshold_gives_one_transition_each_way() -> None:
    m = HealthMonitor(POLICY)
    _feed(m, [(0, True, 90), (2, True, 90)])
    # A sagging battery under load: noise of +-4 % around 20 %, for a minute at 10 Hz.
    samples = [(2 + k / 10, True, 20 + (4 if k % 2 else -4)) for k in range(600)]
    changes = _feed(m, samples)
    assert [c for _, c in changes] == [Availability.BATTERY_CRITICAL]
    # Inside the hysteresis band (20..30) it stays critical; only >= 30 for the dwell ends it.
    assert _feed(m, [(70 + k / 10, True, 27) for k in range(100)]) == []
    changes = _feed(m, [(90 + k / 10, True, 31) for k in range(30)])
    assert [c for _, c in changes] == [Availability.IN_SERVICE]
    assert m.transitions == 3


def test_unknown_battery_keeps_the_battery_verdict() -> None:
    m = HealthMonitor(POLICY)
    _feed(m, [(0, True, 10), (3, True, 10)])
    assert m.state is Availability.BATTERY_CRITICAL
    assert _feed(m, [(4 + k, True, None) for k in range(10)]) == []


@pytest.mark.parametrize("kwargs", [dict(battery_critical_pct=30, battery_recovered_pct=30),
                                    dict(lost_after_s=-1), dict(critical_after_s=float("nan"))])
def test_bad_policies_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        HealthPolicy(**kwargs)


def test_latest_wins_runs_the_newest_item_and_coalesces_the_rest() -> None:
    started, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def job(item: int) -> None:
        seen.append(item)
        if item == 0:
            started.set()
            release.wait(10)

    w: LatestWins[int] = LatestWins(job)
    try:
        w.submit(0)
        assert started.wait(10)
        for i in range(1, 51):  # arrive while job 0 is slow
            w.submit(i)
        release.set()
        deadline = time.monotonic() + 10
        while not w.idle() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [0, 50]
        assert w.coalesced == 49 and w.runs == 2
    finally:
        w.close()


def test_latest_wins_submit_never_waits_for_a_slow_job() -> None:
    release = threading.Event()
    w: LatestWins[int] = LatestWins(lambda item: release.wait(10) and None)
    try:
        w.submit(1)
        t0 = time.perf_counter()
        for i in range(1000):
            w.submit(i)
        assert time.perf_counter() - t0 < 5.0  # generous: the point is "does not block on the job"
        assert not w.idle()
    finally:
        release.set()
        w.close()


def test_latest_wins_retries_until_a_newer_item_arrives() -> None:
    calls: list[int] = []
    done = threading.Event()

    def job(item: int) -> float | None:
        calls.append(item)
        if item == 1 and len(calls) < 4:
            return 0.01  # not ready yet: again soon
        done.set()
        return None

    w: LatestWins[int] = LatestWins(job)
    try:
        w.submit(1)
        assert done.wait(10)
        assert calls == [1, 1, 1, 1]
    finally:
        w.close()


def test_latest_wins_survives_a_failing_job() -> None:
    ok = threading.Event()

    def job(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")
        ok.set()

    w: LatestWins[int] = LatestWins(job)
    try:
        w.submit(1)
        deadline = time.monotonic() + 10
        while w.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        w.submit(2)
        assert ok.wait(10) and w.failures == 1
    finally:
        w.close()


class _Zone:
    def __init__(self, ring: list[tuple[float, float]], hazard: bool = True) -> None:
        self.polygon = shapely.Polygon(ring)
        self.is_hazard = hazard


SQUARE = [(-121.61, 39.75), (-121.60, 39.75), (-121.60, 39.76), (-121.61, 39.76)]


def _wp(lon: float, lat: float) -> MissionItem:
    return MissionItem.at(CMD_NAV_WAYPOINT, lat, lon, 30.0)


def test_a_path_through_a_hazard_is_caught_one_around_it_is_not() -> None:
    zones = {"z1": _Zone(SQUARE), "cleared": _Zone(SQUARE, hazard=False)}
    start = (-121.62, 39.755)
    through = [MissionItem(CMD_NAV_TAKEOFF, z=30.0), _wp(-121.59, 39.755)]
    around = [_wp(-121.62, 39.77), _wp(-121.59, 39.77), _wp(-121.59, 39.755)]
    assert hazards_crossed(start, through, zones) == ["z1"]
    assert hazards_crossed(start, around, zones) == []


def test_leaving_a_zone_one_is_inside_is_allowed_going_back_is_not() -> None:
    zones = {"z1": _Zone(SQUARE)}
    inside = (-121.605, 39.755)
    assert hazards_crossed(inside, [_wp(-121.62, 39.755), _wp(-121.62, 39.77)], zones) == []
    assert hazards_crossed(inside, [_wp(-121.62, 39.755), _wp(-121.59, 39.755)], zones) == ["z1"]


def test_a_straight_line_within_the_margin_of_a_hazard_is_near_one_clear_of_it_is_not() -> None:
    # RTL's straight line home (swarm.flight.safety.hazards_near_line), in metres.
    zones = {"z1": _Zone(SQUARE), "cleared": _Zone(SQUARE, hazard=False),
             "z0": _Zone([(lon + 0.03, lat) for lon, lat in SQUARE])}
    home = (-121.62, 39.755)
    assert hazards_near_line((-121.59, 39.755), home, zones, 50.0) == ["z1"]  # straight through
    assert hazards_near_line((-121.55, 39.755), home, zones, 50.0) == ["z0", "z1"]  # sorted
    assert hazards_near_line((-121.62, 39.77), home, zones, 50.0) == []  # north of it: clear
    # Along SQUARE's south edge (lat 39.75), 22 m and 111 m south of it.
    assert hazards_near_line((-121.59, 39.7498), (-121.62, 39.7498), zones, 50.0) == ["z1"]
    assert hazards_near_line((-121.59, 39.7498), (-121.62, 39.7498), zones, 20.0) == []
    assert hazards_near_line((-121.59, 39.749), (-121.62, 39.749), zones, 50.0) == []
    assert hazards_near_line((-121.59, 39.749), (-121.62, 39.749), zones, 120.0) == ["z1"]


def test_fence_polygons_reads_back_what_fence_polygon_wrote() -> None:
    ring = [(39.75, -121.61), (39.75, -121.60), (39.76, -121.60)]
    items = fence_polygon(ring) + fence_polygon(ring[::-1])
    polys = fence_polygons(items)
    assert len(polys) == 2 and [(round(a, 6), round(b, 6)) for a, b in polys[0]] == ring
    with pytest.raises(ValueError):
        fence_polygons(items[:4])


def test_swarm_status_rows_show_what_each_fc_holds_and_refuse_malformed_fc() -> None:
    from swarm.cli.status import _fc_cell, rows

    base = {"v": 1, "online": True, "role": "follower", "leader": 1, "term": 2, "t": 0}
    statuses = {
        1: {**base, "node": 1, "role": "leader",
            "fc": {"connected": True, "map_version_held": 12, "mode": "AUTO", "armed": True}},
        2: {**base, "node": 2,
            "fc": {"connected": False, "map_version_held": 9, "mode": "RTL", "armed": True}},
        3: {**base, "node": 3, "fc": {"connected": "yes", "map_version_held": True, "mode": 7}},
        4: {**base, "node": 4},
    }
    table = {r["node"]: r for r in rows(statuses, 0)}
    cells = {n: _fc_cell(r["fc"]) for n, r in table.items()}
    assert cells == {1: "12 (AUTO, armed)", 2: "9 (lost)", 3: "-", 4: "-"}
    # A malformed fc makes the whole status untrusted: flagged, nothing of it shown.
    assert table[3]["role"] == "invalid" and "fc.connected" in table[3]["invalid"]
    assert [n for n, r in table.items() if r["invalid"]] == [3]


# -- launch: obeyed once, only within the window of the operator's time, never a surprise

def _launch_setup(launch_age_s: float):
    from swarm.evacmap import DroneTask, EvacuationMap, Launch, SetDroneTask
    from swarm.flight import Flight, FlightConfig, OwnCommits
    from swarm.planner import PlanResult, PlanStatus
    from mavlink_bridge.plan import MissionPlan

    m = EvacuationMap()
    assert m.apply_command(1, SetDroneTask("drone-1", DroneTask.SEARCH, True, False,
                                           [149.16, -35.36, 584.0])).ok
    assert m.apply_command(2, Launch(int((time.time() - launch_age_s) * 1000))).ok
    events: list[tuple[str, str]] = []
    # Never started: no link, so any command to the vehicle would fail the test.
    flight = Flight(FlightConfig("tcp:127.0.0.1:9"), swarm="t", node_id=1, name="drone-1",
                    publish=lambda *a: None, event=lambda k, t: events.append((k, t)),
                    commits=OwnCommits("drone-1", retry_ticks=10))
    item = MissionItem.at(CMD_NAV_WAYPOINT, -35.36, 149.16, 40.0)
    result = PlanResult("drone-1", 2, PlanStatus.OK, MissionPlan((item, item)))
    return flight, m.view(), result, events


def test_a_launch_older_than_the_window_is_not_obeyed_and_says_so() -> None:
    flight, view, result, events = _launch_setup(launch_age_s=600)
    try:
        assert flight._obey_launch(view, result) is None
        assert flight.stats["launches_expired"] == 1 and flight.stats["launches"] == 0
        assert [k for k, _ in events] == ["alert"] and "launch window" in events[0][1]
        assert flight._obey_launch(view, result) is None  # once per launch
        assert len(events) == 1
    finally:
        flight.close()


def test_a_launch_waits_while_the_drone_is_not_in_service_and_never_arms() -> None:
    flight, view, result, events = _launch_setup(launch_age_s=0)
    try:
        again = flight._obey_launch(view, result)  # the health monitor starts unavailable
        assert again is not None and again > 0
        assert flight.status()["launch_waits"] == "drone unavailable"
        assert flight.stats["launches"] == 0 and events == []
    finally:
        flight.close()


# -- recall: RTL flies straight home, so not when that line crosses fire

def test_a_recall_rtls_only_when_the_straight_line_home_is_clear_of_fire() -> None:
    from types import SimpleNamespace

    from swarm.evacmap import DroneTask, EvacuationMap, Recall, SetDroneTask, SetZone, ZoneStatus
    from swarm.flight import Flight, FlightConfig, OwnCommits
    from swarm.planner import GeoPoint

    home = GeoPoint(39.755, -121.62, 540.0)
    east = SimpleNamespace(lat=39.755, lon=-121.59)      # SQUARE lies between it and home
    north = SimpleNamespace(lat=39.77, lon=-121.62)      # a clear line home
    # Along SQUARE's south edge (lat 39.75), 22 m and 111 m south of it: the first passes
    # within the planner's 50 m safety margin, which RTL's straight line must keep too.
    near = (SimpleNamespace(lat=39.7498, lon=-121.59), GeoPoint(39.7498, -121.62, 540.0))
    clear = (SimpleNamespace(lat=39.749, lon=-121.59), GeoPoint(39.749, -121.62, 540.0))
    for where, home, rtl in ((east, home, False), (north, home, True), (*near, False),
                             (*clear, True)):
        m = EvacuationMap()
        assert m.apply_command(1, SetDroneTask("drone-1", DroneTask.SEARCH, True, False,
                                               [home.lon, home.lat, home.alt])).ok
        assert m.apply_command(2, SetZone("fire", tuple(SQUARE + SQUARE[:1]), ZoneStatus.BURNING,
                                          "drone-1", 2)).ok
        assert m.apply_command(3, Recall()).ok
        flight = Flight(FlightConfig("tcp:127.0.0.1:9"), swarm="t", node_id=1, name="drone-1",
                        publish=lambda *a: None, event=lambda k, t: None,
                        commits=OwnCommits("drone-1", retry_ticks=10))
        modes: list[object] = []
        try:
            flight._home = home
            flight.vehicle.set_mode = lambda mode: (modes.append(mode),  # type: ignore[method-assign]
                                                    SimpleNamespace(raise_for_result=lambda: None))[1]
            state = SimpleNamespace(armed=True, mode="AUTO", position=where)
            flight._enforce_recall(m.view(), state)  # type: ignore[arg-type]
            assert [getattr(mode, "name", mode) for mode in modes] == (["RTL"] if rtl else [])
            assert flight._return_by_plan is (not rtl) and flight.stats["recalls"] == 1
        finally:
            flight.close()


# -- home from the flight controller's mission item 0: its word, checked

@pytest.mark.parametrize("item0", [
    MissionItem(command=CMD_NAV_WAYPOINT, frame=0, x=-353600000, y=1491600000, z=float("nan")),
    MissionItem(command=CMD_NAV_WAYPOINT, frame=1, x=2_000_000_000, y=5, z=584.0),  # local frame
], ids=["nan altitude", "off the globe"])
def test_an_unusable_home_item_from_the_flight_controller_is_not_learned_and_never_raises(
        item0) -> None:
    """Airborne, home is read from mission item 0. An item 0 with a NaN altitude (or a
    non-global frame whose x/y are off the globe) raised ValueError out of _learn_home,
    ending the monitor iteration before its telemetry, health and own map entry, every
    5 s; now it is logged and home stays unknown."""
    from types import SimpleNamespace

    from swarm.flight import Flight, FlightConfig, OwnCommits

    flight = Flight(FlightConfig("tcp:127.0.0.1:9"), swarm="t", node_id=1, name="drone-1",
                    publish=lambda *a: None, event=lambda k, t: None,
                    commits=OwnCommits("drone-1", retry_ticks=10))
    try:
        flight.vehicle.download = lambda mission_type: (item0,)  # type: ignore[method-assign]
        state = SimpleNamespace(armed=True, position=SimpleNamespace(
            lat=-35.36, lon=149.16, alt_msl=620.0, alt_rel=36.0))
        flight._learn_home(state, 100.0)  # type: ignore[arg-type]
        assert flight._home is None and flight._home_due == 105.0
    finally:
        flight.close()
