"""The flight side re-uses a map version's plan only while the flight controller holds
it (swarm.flight.Flight with a simulated copter: the built-in one and real ArduCopter
SITL, x10).

A version is planned once: a re-run of the same version (the link back, a leader
change) re-applies the plan it made, which the applier finds already on the vehicle.
But a mission changed on the vehicle while the agent's link was down (a second ground
station uploaded its own) must not be put back as it was planned, from where the
aircraft was then: in AUTO it would be resumed on a leg already flown. The applier
reads the mission back after the link returns (PlanApplier.holds), finds it changed,
and the version is planned again from where the aircraft is.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mavlink_bridge import MissionType
from mavlink_bridge.plan import CMD_NAV_WAYPOINT, MissionItem
from sitl.vehicles import launch
from swarm.flight import FlightConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from fault_proxy import FaultProxy  # noqa: E402  (a TCP link that can be cut and healed)
from test_fence_return import HOME, drone_1_flight, searching_at_home, vehicle_binary  # noqa: E402
from test_flight_processes import _connect, _take_off  # noqa: E402
from test_leadership_processes import _wait  # noqa: E402

pytestmark = pytest.mark.slow


def _positions(items) -> list[tuple[int, int, int, float]]:
    return [(i.command, i.x, i.y, round(i.z, 1)) for i in items]


@pytest.mark.parametrize("kind", ["builtin", "ardupilot"])
def test_a_mission_changed_on_the_vehicle_while_the_link_was_down_is_planned_again(kind: str) -> None:
    binary = vehicle_binary(kind)
    view = searching_at_home()
    lat, lon, _ = HOME
    events: list[tuple[str, str]] = []
    with launch(kind, speedup=10.0, home=HOME, binary=binary) as copter:  # type: ignore[arg-type]
        _take_off(copter.endpoint, copter.sysid)   # hovering at 20 m in GUIDED
        port = int(copter.endpoint.rsplit(":", 1)[1])
        radio = FaultProxy("127.0.0.1", port)      # the agent's link to its FC
        flight = drone_1_flight(FlightConfig(f"tcp:{radio.host}:{radio.port}", sysid=copter.sysid,
                                             retry_max_s=0.5), events)
        try:
            flight.start()
            flight.map_applied(view)

            def describe() -> str:
                return f"{flight.status()} {flight.stats} {events}"

            _wait(lambda: flight.status()["map_version_held"] == view.version, 60,
                  "the first plan on the flight controller", describe)
            first = flight.applier.verified(MissionType.MISSION)
            assert first, describe()
            plans, uploads = flight.stats["plans"], flight.stats["uploads"]

            # The same version again with the link up: re-applied, nothing planned or sent.
            flight.map_applied(view)
            _wait(lambda: flight._worker.idle(), 30, "the re-run of the same version", describe)
            assert (flight.stats["plans"], flight.stats["uploads"]) == (plans, uploads), describe()

            radio.cut()
            _wait(lambda: not flight.fc_connected, 30, "the FC link seen down", describe)
            # A second ground station (its own link to the vehicle) uploads its mission.
            link, gcs = _connect(copter.endpoint, copter.sysid)
            try:
                far = lat + 300 / 111_320.0
                foreign = (MissionItem.at(CMD_NAV_WAYPOINT, lat, lon, 0.0),
                           MissionItem.at(CMD_NAV_WAYPOINT, far, lon, 30.0),
                           MissionItem.at(CMD_NAV_WAYPOINT, far, lon + 0.002, 30.0))
                gcs.upload(MissionType.MISSION, foreign)
            finally:
                gcs.detach()
                link.close()
            radio.heal()

            _wait(lambda: flight.stats["replanned_not_held"] == 1
                  and flight.stats["uploads"] > uploads
                  and flight.status()["map_version_held"] == view.version, 60,
                  "the version planned again and uploaded after the link came back", describe)
            assert flight.stats["plans"] == plans + 1, describe()
            held = flight.applier.verified(MissionType.MISSION)
            assert held, describe()
            # What the vehicle holds, downloaded: the new plan (home first), not the other
            # station's mission.
            got = flight.vehicle.download(MissionType.MISSION)
            assert _positions(got[1:]) == _positions(held), (got, held)
            assert _positions(got[1:]) != _positions(foreign[1:])
            assert not [t for k, t in events if k == "alert"], events

            # Once it holds again, a re-run with the link up re-applies without planning.
            plans = flight.stats["plans"]
            flight.map_applied(view)
            _wait(lambda: flight._worker.idle(), 30, "the second re-run", describe)
            assert flight.stats["plans"] == plans and flight.stats["replanned_not_held"] == 1
        finally:
            flight.close()
            radio.close()
