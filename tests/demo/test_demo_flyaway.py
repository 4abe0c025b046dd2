"""The demo's second ground station (swarm/demo_flyaway.py) on a built-in copter's
SERIAL1 port (``swarm sitl --serial1``: sitl.__main__.Serial1Inlet): what it sends
reaches the copter while another client holds serial0, as on real SITL."""

from __future__ import annotations

import time

from mavlink_bridge import LinkConfig, MavlinkLink, Vehicle
from sitl.__main__ import Serial1Inlet
from sitl.builtin import SimulatorServer, configs_for
from swarm.demo_flyaway import SecondGroundStation
from swarm.demo_live import _free_copter_base


def _until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_parameters_and_guided_sent_on_serial1_reach_the_copter_whose_serial0_is_held() -> None:
    base = _free_copter_base(set())
    server = SimulatorServer(configs_for(1, base_port=base, speedup=4.0, time_to_ready_s=2.0))
    server.start()
    inlet = Serial1Inlet(server, "127.0.0.1")
    link = MavlinkLink(LinkConfig(f"tcp:127.0.0.1:{base}", target_system=1)).start()
    vehicle = Vehicle(link, 1)
    pilot = None
    try:
        assert link.wait_for_heartbeat(30)
        pilot = SecondGroundStation("127.0.0.1", base + 2, 1)
        pilot.set_param("FENCE_RADIUS", 2500.0)
        _until(lambda: vehicle.get_param("FENCE_RADIUS") == 2500.0, 20, "FENCE_RADIUS 2500")
        pilot.guided()
        _until(lambda: vehicle.state().mode == "GUIDED", 20, "GUIDED")
    finally:
        if pilot is not None:
            pilot.close()
        vehicle.detach()
        link.close()
        inlet.close()
        server.stop()


def test_the_pilot_route_is_straight_when_clear_and_round_a_fire_otherwise() -> None:
    import shapely

    from swarm.demo_flyaway import pilot_route
    from swarm.geo import LocalFrame

    frame = LocalFrame(39.76, -121.62)
    ll = frame.point_to_geodetic
    fire = [ll(-100, -100), ll(100, -100), ll(100, 100), ll(-100, 100), ll(-100, -100)]
    west, east = ll(-1000, 0), ll(1000, 0)
    assert pilot_route(frame, east, ll(1000, 800), [fire]) == [ll(1000, 800)]   # clear
    route = pilot_route(frame, east, west, [fire])
    assert route is not None and route[-1] == west and len(route) == 3
    path = shapely.LineString([frame.point_to_enu(*p) for p in [east, *route]])
    assert path.distance(shapely.Polygon([frame.point_to_enu(*p) for p in fire])) >= 80
    assert pilot_route(frame, ll(0, 0), west, [fire]) == [west]     # inside: straight out
