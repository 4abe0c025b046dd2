"""A plan the fire check refuses is not flown: the drone holds where it is (swarm.flight.Flight
with a simulated copter: the built-in one and real ArduCopter SITL, x10).

The fire check (swarm/flight/safety.py) is deliberately not the planner's code, so a
planner bug cannot pass its own test. When it refuses a plan, keeping the mission the
flight controller holds is no answer: that one was planned from an older map version,
before this fire was known. The drone holds where it is instead, as it does when the
planner itself finds no safe path (``swarm.planner.hold_instead``: LOITER_UNLIM there).

The copter flies map version 1's survey (a square south-west of home) in AUTO; version 2 adds a burned zone, and the
planner is replaced by a faulty one whose plan for version 2 flies through that zone.
The flight controller ends up holding one LOITER_UNLIM at the aircraft's position (read
back over MAVLink), flown at once in AUTO: the copter stays within a few metres of it.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import pytest

from mavlink_bridge import CopterMode, MissionType
from mavlink_bridge.plan import CMD_NAV_LOITER_UNLIM, CMD_NAV_WAYPOINT, MissionItem
from sitl.vehicles import launch
from swarm.evacmap import DroneTask, EvacuationMap, SetDroneTask, SetZone, ZoneStatus, parse_command
from swarm.flight import FlightConfig
from swarm.flight import flight as flight_module
from swarm.geo import LocalFrame
from swarm.planner import PlanStatus, propose_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_fence_return import HOME, drone_1_flight, vehicle_binary  # noqa: E402
from test_flight_processes import _take_off  # noqa: E402
from test_leadership_processes import _wait  # noqa: E402

pytestmark = pytest.mark.slow

#: Metres east/north of home (swarm.geo's frame, the one the planner uses).
FRAME = LocalFrame(HOME[0], HOME[1])


def _lon_lat(east: float, north: float) -> list[float]:
    return list(FRAME.point_to_geodetic(east, north))


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance between two (lat, lon) points."""
    return math.dist(FRAME.point_to_enu(a[1], a[0]), FRAME.point_to_enu(b[1], b[0]))


@pytest.mark.parametrize("kind", ["builtin", "ardupilot"])
def test_a_plan_the_fire_check_refuses_is_not_flown_and_the_drone_holds_where_it_is(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = vehicle_binary(kind)
    lat, lon, alt = HOME
    m = EvacuationMap()
    assert m.apply_command(1, SetDroneTask("drone-1", DroneTask.SEARCH, True, False, [lon, lat, alt])).ok
    # Version 1: a 200 m square to search south-west of home, committed to drone-1.
    area = [_lon_lat(-200, -200), _lon_lat(0, -200), _lon_lat(0, 0), _lon_lat(-200, 0)]
    assert m.apply_command(2, parse_command({"type": "set_search_area", "polygon": area})).ok
    assert m.apply_command(3, propose_assignment(m.view())).ok
    v1 = m.view()
    # Version 2: a burned square 400-500 m north-east of home, off the survey's first legs.
    zlon, zlat = _lon_lat(450, 450)
    square = tuple(tuple(_lon_lat(e, n)) for e, n in ((400, 400), (500, 400), (500, 500), (400, 500), (400, 400)))
    assert m.apply_command(4, SetZone("fire", square, ZoneStatus.BURNED, "test", 1)).ok
    v2 = m.view()

    real_planner = flight_module.plan_for_drone

    def faulty_planner(view, name, vehicle, config):
        """The real plan, except that version 2's goes through the burned zone's middle
        right after its first item: a planner bug the fire check is there to catch."""
        result = real_planner(view, name, vehicle, config)
        if view.version != v2.version:
            return result
        through = MissionItem.at(CMD_NAV_WAYPOINT, zlat, zlon, 20.0)
        mission = (*result.plan.mission[:1], through, *result.plan.mission[1:])
        return dataclasses.replace(result, plan=dataclasses.replace(result.plan, mission=mission))

    monkeypatch.setattr(flight_module, "plan_for_drone", faulty_planner)
    events: list[tuple[str, str]] = []
    with launch(kind, speedup=10.0, home=HOME, binary=binary) as copter:  # type: ignore[arg-type]
        _take_off(copter.endpoint, copter.sysid)   # hovering at 20 m in GUIDED
        flight = drone_1_flight(FlightConfig(copter.endpoint, sysid=copter.sysid, retry_max_s=0.5),
                                events)
        try:
            flight.start()
            _wait(lambda: flight.fc_connected, 30, "the flight controller link")
            flight.vehicle.set_param("FENCE_RADIUS", 2000.0)  # the circle is not what this is about
            flight.map_applied(v1)

            def describe() -> str:
                state = flight.vehicle.state()
                pos = state.position
                return (f"{flight.status()} {flight.stats} {events} mode {state.mode} "
                        f"at {pos and (pos.lat, pos.lon, pos.alt_rel)} mission {state.mission}")

            _wait(lambda: flight.status()["map_version_held"] == v1.version, 60,
                  "version 1's plan on the flight controller", describe)
            assert flight.vehicle.set_mode(CopterMode.AUTO).accepted, describe()
            _wait(lambda: (flight.vehicle.state().mission or 0) and flight.vehicle.state().mission.seq >= 2,
                  60, "the survey flown in AUTO", describe)
            assert not [t for k, t in events if k == "alert"], events

            flight.map_applied(v2)
            _wait(lambda: flight.stats["unsafe_refused"] == 1
                  and flight.status()["map_version_held"] == v2.version, 60,
                  "version 2's refused plan replaced by the hold", describe)
            alerts = [t for k, t in events if k == "alert"]
            assert len(alerts) == 1 and "crosses hazard zone(s) fire: not flown; holding where it is" \
                in alerts[0], alerts
            assert flight._planned is not None and flight._planned[1].status is PlanStatus.NO_SAFE_PATH
            assert any("refused by the fire check" in r for r in flight._planned[1].reasons)

            # What the vehicle holds, downloaded: home, then one LOITER_UNLIM, no survey.
            held = flight.vehicle.download(MissionType.MISSION)
            assert [i.command for i in held[1:]] == [CMD_NAV_LOITER_UNLIM], held
            hold = (held[1].lat, held[1].lon)
            # Flown at once in AUTO: the copter settles at the hold and stays there.
            state = flight.vehicle.state()
            assert state.mode == CopterMode.AUTO.name and state.armed, describe()
            _wait(lambda: flight.vehicle.state().mission is not None
                  and flight.vehicle.state().mission.seq == 1, 30, "the hold is the current item",
                  describe)

            def off_hold() -> float:
                pos = flight.vehicle.state().position
                assert pos is not None
                return _metres((pos.lat, pos.lon), hold)

            def settled() -> bool:
                # At the hold and stopped: a copter arriving at speed crosses 5 m on its
                # way in and may overshoot (seen on real ArduCopter: 5.9 m) before it
                # stops there; the hold is judged from then on.
                pos = flight.vehicle.state().position
                return (pos is not None and off_hold() < 5.0
                        and math.hypot(pos.vn, pos.ve) < 0.5)

            _wait(settled, 60, "the copter stopped at its hold", describe)
            worst = 0.0
            end = time.monotonic() + 3.0   # 30 s of flight at x10
            while time.monotonic() < end:
                worst = max(worst, off_hold())
                time.sleep(0.1)
            assert worst < 5.0, f"drifted {worst:.1f} m from the hold: {describe()}"
            pos = flight.vehicle.state().position
            assert pos is not None and _metres((pos.lat, pos.lon), (zlat, zlon)) > 150, describe()
            assert flight._last_doc is not None and flight._last_doc["status"] == "no_safe_path"
        finally:
            flight.close()
