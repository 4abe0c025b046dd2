"""The flight side and the autopilot's own fences (issue 10): swarm.flight.Flight (the
agent's flight side) with a simulated copter (sitl.vehicles, x10).

A fence left out of a plan because the drone was inside it comes back as soon as the
drone is out, not with the next map version (built-in copter):

The copter hovers at 20 m over its home, 20 m south of a burned zone: inside the zone's
50 m safety margin, so inside its fence. The plan for that version leaves the zone's
fence out (uploaded, the copter would be in breach at once and FENCE_ACTION would take
over). The copter is then moved 150 m south, out of the buffer (a GUIDED goto, as a
second ground station would send it); with no new map version the flight side plans the
same version again and the flight controller's fence (read back by the applier) then
holds the zone's polygon, and the copter is not in breach.

A plan beyond the autopilot's circle fence (FENCE_RADIUS) is reported and holds the
launch until the operator raises FENCE_RADIUS (built-in copter and real SITL alike).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import shapely

from mavlink_bridge import MissionType
from mavlink_bridge.plan import CMD_NAV_TAKEOFF, CMD_NAV_WAYPOINT, MissionItem, MissionPlan
from sitl.vehicles import ardupilot_binary_from_env, launch
from swarm.evacmap import DroneTask, EvacuationMap, MapView, SetDroneTask, SetZone, ZoneStatus
from swarm.flight import Flight, FlightConfig, OwnCommits
from swarm.flight.plan_doc import fence_polygons
from swarm.planner import PlanResult, PlanStatus

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_flight_processes import _connect, _take_off  # noqa: E402  (the copter's take-off)
from test_leadership_processes import _goto_north, _wait  # noqa: E402  (a second ground station's goto)

HOME = (-35.363261, 149.165230, 584.0)
pytestmark = pytest.mark.slow


def vehicle_binary(kind: str) -> Path | None:
    """The ArduCopter binary for ``kind`` "ardupilot" (the test is skipped without
    one), None for the built-in copter."""
    binary = ardupilot_binary_from_env() if kind == "ardupilot" else None
    if kind == "ardupilot" and binary is None:
        pytest.skip("real ArduCopter SITL: ARDUPILOT_SITL_BIN is not set")
    return binary


def drone_1_flight(config: FlightConfig, events: list[tuple[str, str]]) -> Flight:
    """drone-1's flight side (node 1 of swarm "t") with no broker: plans are not
    published, events are appended to ``events`` as (kind, text)."""
    return Flight(config, swarm="t", node_id=1, name="drone-1", publish=lambda *a: None,
                  event=lambda kind, text: events.append((kind, text)),
                  commits=OwnCommits("drone-1", retry_ticks=10))


def searching_at_home() -> MapView:
    """A map whose one drone, drone-1, searches from HOME."""
    lat, lon, alt = HOME
    m = EvacuationMap()
    assert m.apply_command(1, SetDroneTask("drone-1", DroneTask.SEARCH, True, False, [lon, lat, alt])).ok
    return m.view()


def test_a_fence_left_out_inside_its_buffer_returns_once_the_drone_is_out() -> None:
    lat, lon, alt = HOME
    m = EvacuationMap()
    assert m.apply_command(1, SetDroneTask("drone-1", DroneTask.SEARCH, True, False, [lon, lat, alt])).ok
    south, north, half = lat + 20 / 111_320.0, lat + 100 / 111_320.0, 40 / (111_320.0 * 0.815)
    ring = ((lon - half, south), (lon + half, south), (lon + half, north), (lon - half, north),
            (lon - half, south))  # 20 to 100 m north of home, 80 m wide
    assert m.apply_command(2, SetZone("burned", ring, ZoneStatus.BURNED, "test", 1)).ok
    view = m.view()
    events: list[tuple[str, str]] = []
    with launch("builtin", speedup=10.0, home=HOME) as copter:
        _take_off(copter.endpoint, copter.sysid)
        link, fc = _connect(copter.endpoint, copter.sysid)
        try:
            fc.set_param("FENCE_RADIUS", 2000.0)  # the circle is not what this test is about
        finally:
            fc.detach()
            link.close()
        flight = drone_1_flight(FlightConfig(copter.endpoint, sysid=copter.sysid), events)
        try:
            flight.start()
            flight.map_applied(view)

            def describe() -> str:
                pos = flight.vehicle.state().position
                return (f"{flight.status()} {flight.stats} {flight.applier.verified(MissionType.FENCE)} {events} "
                        f"at {pos and (pos.lat, pos.lon)}; left out {flight._left_out}")

            _wait(lambda: flight.status()["map_version_held"] == view.version, 60,
                  "the first plan on the flight controller", describe)
            assert flight.applier.verified(MissionType.FENCE) in ((), None), describe()  # left out
            assert flight.stats["uploads"] == 1
            plans = flight.stats["plans"]

            for _ in range(3):  # idempotent; three in case one meets a half-parsed frame
                _goto_north(copter, -150.0)
                time.sleep(0.2)

            def fence_back() -> bool:
                fence = flight.applier.verified(MissionType.FENCE)
                return bool(fence) and any(shapely.Polygon([(x, y) for y, x in r]).contains(shapely.Point(lon, (south + north) / 2))
                                           for r in fence_polygons(fence))

            _wait(fence_back, 60, "the zone's fence on the flight controller, same map version", describe)
            status = flight.status()
            assert status["map_version_held"] == view.version and flight.stats["plans"] > plans
            assert status["mode"] == "GUIDED" and status["armed"], status  # no breach, no fence action
            assert not [t for k, t in events if k == "alert"], events
            # Read back from the vehicle itself, not only the applier's record.
            got = flight.vehicle.download(MissionType.FENCE)
            assert [(i.x, i.y) for i in got] == [(i.x, i.y) for i in flight.applier.verified(MissionType.FENCE) or ()]
        finally:
            flight.close()


@pytest.mark.parametrize("kind", ["builtin", "ardupilot"])
def test_a_plan_beyond_the_circle_fence_is_reported_blocks_launch_and_clears_when_fixed(kind: str) -> None:
    """A plan reaching beyond FENCE_RADIUS (150 m in SITL's copter.parm, on both kinds)
    with the fence switched on: status ``fc.fence_problem`` and one alert name the
    parameter, the launch waits on it; the operator raising FENCE_RADIUS clears it
    within ``retry_max_s`` (the monitor re-reads the parameters) with no new map."""
    binary = vehicle_binary(kind)
    view = searching_at_home()
    lat, lon, _ = HOME
    far = MissionPlan(mission=(MissionItem.at(CMD_NAV_TAKEOFF, lat, lon, 20.0),
                               MissionItem.at(CMD_NAV_WAYPOINT, lat + 400 / 111_320.0, lon, 20.0)),
                      fence_enable=True)
    result = PlanResult("drone-1", view.version, PlanStatus.OK, far)
    events: list[tuple[str, str]] = []
    with launch(kind, speedup=10.0, home=HOME, binary=binary) as copter:  # type: ignore[arg-type]
        flight = drone_1_flight(FlightConfig(copter.endpoint, sysid=copter.sysid, retry_max_s=0.5),
                                events)
        try:
            flight.start()
            _wait(lambda: flight.fc_connected, 30, "the flight controller link")
            flight._check_fc_fences(view, result, ())
            problem = flight.status()["fence_problem"]
            assert problem is not None and "FENCE_RADIUS 150 m" in problem and "at least 4" in problem, problem
            assert [k for k, _ in events if k == "alert"] == ["alert"] and "FENCE_RADIUS" in events[-1][1]
            # Everything else ready for a launch: the problem is what holds it.
            _wait(lambda: flight.status()["availability"] == "in_service", 30, "in service")
            flight._held_version = view.version
            assert flight._launch_blocked(view, result, flight.vehicle.state()) == problem
            flight._check_fc_fences(view, result, ())  # the same reason: no second alert
            assert len([k for k, _ in events if k == "alert"]) == 1
            flight.vehicle.set_param("FENCE_RADIUS", 1000.0)
            _wait(lambda: flight.status()["fence_problem"] is None, 30, "the problem cleared",
                  lambda: str(flight.status()))
            assert flight._launch_blocked(view, result, flight.vehicle.state()) is None
        finally:
            flight.close()
