"""The agreed map reaches every flight controller (issue 10), with real processes:
agent processes (``python -m swarm agent`` with a ``[mavlink]`` section) on a real
mosquitto, each connected to one built-in simulated copter (sitl.builtin, ArduPilot's
protocol on TCP), all airborne.

* a burned zone proposed by a client reaches every flight controller as a new mission
  and fence that avoid it: after the agents stop, each vehicle's mission and fence are
  downloaded over MAVLink (the bridge's own download) and tested with shapely;
* ``recall`` brings every drone home and lands it; the retained plans say which map
  version each FC holds.

3 agents and 3 copters, not 5: the test machine is 2 cores shared by 8 engineers;
AGENTS is the knob.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import shapely

from mavlink_bridge import CopterMode, LinkConfig, MavlinkLink, MissionType, Vehicle
from sitl.builtin import SimulatorServer, configs_for
from swarm.flight import fence_polygons, flown_path
from swarm.geo import LocalFrame

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_cluster import AgentCluster  # noqa: E402  (tests/agent: the agents' process harness)

AGENTS = 3
SPEEDUP = 4.0
TAKEOFF_M = 20.0
HOME = (-35.363261, 149.165230, 584.0)
pytestmark = pytest.mark.slow


def _square(frame: LocalFrame, x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return [list(map(lambda v: round(v, 7), frame.point_to_geodetic(x, y))) for x, y in corners]


def _connect(endpoint: str, sysid: int) -> tuple[MavlinkLink, Vehicle]:
    link = MavlinkLink(LinkConfig(endpoint, target_system=sysid)).start()
    vehicle = Vehicle(link, sysid)
    assert link.wait_for_heartbeat(30), f"no heartbeat from {endpoint}"
    vehicle.request_streams(timeout_s=2.0)
    return link, vehicle


def _take_off(endpoint: str, sysid: int) -> None:
    link, vehicle = _connect(endpoint, sysid)
    try:
        vehicle.wait_until(lambda s: s.position is not None and s.ekf is not None, 60)
        deadline = time.monotonic() + 60
        while True:  # the EKF may need a moment more before GUIDED and arming are allowed
            if vehicle.set_mode(CopterMode.GUIDED).accepted and vehicle.arm().accepted:
                break
            assert time.monotonic() < deadline, "could not arm in GUIDED"
            time.sleep(0.5)
        vehicle.takeoff(TAKEOFF_M).raise_for_result()
        vehicle.wait_until(lambda s: s.position is not None and s.position.alt_rel > TAKEOFF_M - 2, 60)
    finally:
        vehicle.detach()
        link.close()


def _download(endpoint: str, sysid: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    link, vehicle = _connect(endpoint, sysid)
    try:
        return vehicle.download(MissionType.MISSION), vehicle.download(MissionType.FENCE)
    finally:
        vehicle.detach()
        link.close()


def _wait(predicate, timeout: float, what: str, describe=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout} s: {describe()}")


def test_burned_zone_reaches_every_flight_controller_and_recall_lands_them(
        tmp_path: Path, mosquitto) -> None:
    configs = configs_for(AGENTS, speedup=SPEEDUP, time_to_ready_s=2.0, home=HOME, base_port=0,
                          spacing_m=30.0)
    with SimulatorServer(configs) as sim:
        endpoints = sim.endpoints
        for i, endpoint in enumerate(endpoints):
            _take_off(endpoint, i + 1)
        cluster = AgentCluster(tmp_path, mosquitto, AGENTS)
        for i in cluster.ids:
            with open(cluster.config_path(i), "a") as f:
                f.write(f'\n[mavlink]\nconnection = "{endpoints[i - 1]}"\nsysid = {i}\n')
        try:
            cluster.start_all()
            client = cluster.client(timeout_s=20.0)
            cluster.wait_leader(client, timeout=90)
            frame = LocalFrame(HOME[0], HOME[1])
            area = _square(frame, -300, 100, 300, 700)
            reply = client.propose({"type": "set_search_area", "polygon": area})
            assert reply.committed, reply.message

            def statuses() -> dict[int, dict[str, Any]]:
                return client.statuses(wait_s=0.3)

            def held(version: int) -> bool:
                st = statuses()
                return len(st) == AGENTS and all(
                    (s.get("fc") or {}).get("connected") and
                    ((s.get("fc") or {}).get("map_version_held") or 0) >= version for s in st.values())

            def fc_view() -> str:
                return str({n: s.get("fc") for n, s in statuses().items()}) + "\n" + cluster.logs()

            # Every drone joins the map by itself (its own session) and gets a plan.
            _wait(lambda: held(reply.body["index"]), 120, "first plans on every FC", fc_view)

            # A burned zone across the middle of the search area.
            zone_ring = _square(frame, -150, 300, 150, 450)
            reply = client.propose({"type": "set_zone", "id": "burn-1", "polygon": zone_ring,
                                    "status": "burned", "source": "test", "time_ms": 1})
            assert reply.committed, reply.message
            zone_version = reply.body["index"]
            _wait(lambda: held(zone_version), 120, "the zone's plans on every FC", fc_view)

            # recall: every drone flies home (RTL) and lands.
            reply = client.propose({"type": "recall"})
            assert reply.committed, reply.message

            def all_home() -> bool:
                return all(not s.armed and s.landed for s in sim.states())

            _wait(all_home, 180, "every drone landed after recall",
                  lambda: str([(s.mode_name, s.armed, round(s.relative_alt, 1)) for s in sim.states()])
                  + fc_view())
            for cfg, s in zip(configs, sim.states()):
                e, n = frame.point_to_enu(s.lon, s.lat)
                he, hn = frame.point_to_enu(cfg.home_lon, cfg.home_lat)
                assert abs(e - he) < 10 and abs(n - hn) < 10, f"sysid {s.sysid} landed away from home"
            final = statuses()
            assert all(s["fc"]["map_version_held"] >= zone_version for s in final.values()), final
        finally:
            for i in cluster.ids:
                if cluster.alive(i):
                    cluster.stop(i)
            cluster.close()

        # What each flight controller holds, downloaded over MAVLink.
        zone = shapely.Polygon([(lon, lat) for lon, lat in zone_ring])
        for i, endpoint in enumerate(endpoints):
            mission, fence = _download(endpoint, i + 1)
            # After the recall every drone holds its way home (a recalled drone has no
            # work: issue 10), which must still keep clear of the burned zone.
            assert len(mission) >= 2, f"vehicle {i + 1} holds no mission"
            path = flown_path((mission[0].lon, mission[0].lat), mission[1:])
            assert len(path) >= 2
            assert not shapely.LineString(path).intersects(zone), \
                f"vehicle {i + 1}'s mission crosses the burned zone"
            exclusions = [shapely.Polygon([(lon, lat) for lat, lon in ring]) for ring in fence_polygons(fence)]
            assert any(p.buffer(1e-9).covers(zone) for p in exclusions), \
                f"vehicle {i + 1}'s fence does not exclude the burned zone"
