"""A fence left out of a plan because the drone was inside it comes back as soon as the
drone is out, not with the next map version (issue 10): swarm.flight.Flight (the agent's
flight side) flying a built-in simulated copter (sitl.vehicles, x10) by one map version.

The copter hovers at 20 m over its home, 20 m south of a burned zone: inside the zone's
50 m safety margin, so inside its fence. The plan for that version leaves the zone's
fence out (uploaded, the copter would be in breach at once and FENCE_ACTION would take
over). The copter is then moved 150 m south, out of the buffer (a GUIDED goto, as a
second ground station would send it); with no new map version the flight side plans the
same version again and the flight controller's fence (read back by the applier) then
holds the zone's polygon, and the copter is not in breach.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import shapely

from mavlink_bridge import MissionType
from sitl.vehicles import launch
from swarm.evacmap import DroneTask, EvacuationMap, SetDroneTask, SetZone, ZoneStatus
from swarm.flight import Flight, FlightConfig, OwnCommits
from swarm.flight.plan_doc import fence_polygons

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_flight_processes import _connect, _take_off  # noqa: E402  (the copter's take-off)
from test_leadership_processes import _goto_north  # noqa: E402  (a second ground station's goto)

HOME = (-35.363261, 149.165230, 584.0)
pytestmark = pytest.mark.slow


def _wait(predicate, timeout: float, what: str, describe=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout} s: {describe()}")


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
        flight = Flight(FlightConfig(copter.endpoint, sysid=copter.sysid), swarm="t", node_id=1,
                        name="drone-1", publish=lambda *a: None,
                        event=lambda kind, text: events.append((kind, text)),
                        commits=OwnCommits("drone-1", retry_ticks=10))
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
