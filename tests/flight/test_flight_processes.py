"""The agreed map flies every drone (issue 10), with real processes: 5 agent processes
(``python -m swarm agent`` with ``[mavlink]``) on a real mosquitto, each connected to one
built-in simulated copter (sitl.builtin, ArduPilot's protocol on TCP, x4 speed).

One module-scoped swarm, in this order (each test leaves it as the next expects):

* the copters stand on the ground with their plans uploaded and nobody arms them until
  the operator's ``launch``; then every drone takes off and flies its committed share
  in AUTO;
* a burned zone proposed by one client reaches all 5 flight controllers as new missions
  and fences that avoid it (what each vehicle holds, tested with shapely);
* SIGKILL of the leader mid-flight: a new leader, missions keep updating; the killed
  agent's copter keeps flying, and the agent restarted catches up;
* a drone cut off from the broker (fault proxy) keeps flying its last plan (its FC's
  mission unchanged: nothing invented) and rejoins;
* a flight-controller link loss (fault proxy on the MAVLink TCP link) shows in status
  and recovers when the link returns;
* ``recall`` brings every drone home and lands it; then each vehicle's mission and
  fence are downloaded over MAVLink and checked against every zone.

Liveness waits are generous and bounded (a loaded 2-core machine); the safety checks
(no arming before launch, no path through a zone, the cut drone's mission unchanged)
are strict.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import shapely
from paho.mqtt.enums import CallbackAPIVersion

from mavlink_bridge import CopterMode, LinkConfig, MavlinkLink, MissionItem, MissionType, Vehicle
from sitl.builtin import SimulatorServer, VehicleConfig, configs_for
from swarm.bus import topics
from swarm.client import SwarmClient
from swarm.flight import fence_polygons, flown_path
from swarm.geo import LocalFrame

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_cluster import AgentCluster  # noqa: E402  (tests/agent: the agents' process harness)
from fault_proxy import FaultProxy  # noqa: E402

AGENTS = 5
SPEEDUP = 4.0
HOME = (-35.363261, 149.165230, 584.0)
#: Drone reaching the broker through a fault proxy, and drone whose MAVLink link does.
BROKER_CUT = 5
FC_CUT = 4
WAIT_S = 120.0
pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _square(frame: LocalFrame, x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return [[round(v, 7) for v in frame.point_to_geodetic(x, y)] for x, y in corners]


def _wait(predicate: Callable[[], Any], timeout: float, what: str,
          describe: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout} s: {describe()}")


def _items(stored) -> tuple[MissionItem, ...]:
    """The simulator's stored items as the bridge's MissionItem (same MISSION_ITEM_INT fields)."""
    return tuple(MissionItem(command=i.command, frame=i.frame, param1=i.param1, param2=i.param2,
                             param3=i.param3, param4=i.param4, x=i.x, y=i.y, z=i.z,
                             autocontinue=i.autocontinue) for i in stored)


@dataclass
class Swarm:
    sim: SimulatorServer
    configs: list[VehicleConfig]
    cluster: AgentCluster
    client: SwarmClient
    broker_proxy: FaultProxy
    fc_proxy: FaultProxy
    frame: LocalFrame
    area: list[list[float]]
    plans: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Every plan document seen, in order: (node, map version) (a plan document is
    #: published after each upload the FC acknowledged and read back).
    plan_log: list[tuple[int, int]] = field(default_factory=list)
    zones: dict[str, list[list[float]]] = field(default_factory=dict)
    armed_before_launch: list[int] = field(default_factory=list)
    launch_version: int = 0

    def statuses(self) -> dict[int, dict[str, Any]]:
        return self.client.statuses(wait_s=0.3)

    def fc(self, node: int) -> dict[str, Any]:
        return self.statuses().get(node, {}).get("fc") or {}

    def held(self, version: int, among: list[int]) -> bool:
        """Every node of ``among`` says its FC holds map version >= ``version`` (status)."""
        st = self.statuses()
        return all((st.get(n, {}).get("fc") or {}).get("connected")
                   and ((st[n]["fc"].get("map_version_held") or 0) >= version) for n in among)

    def settled(self) -> int:
        """Wait until every node applied the same map version with a current assignment
        and every FC holds it (nothing in flight); return that version."""
        def check() -> int | None:
            st = self.statuses()
            if len(st) < AGENTS or not all(s.get("online") for s in st.values()):
                return None
            versions = {s["map_version"] for s in st.values()}
            if len(versions) != 1 or not all((s.get("assignment") or {}).get("current")
                                             for s in st.values()):
                return None
            version = versions.pop()
            return version if self.held(version, self.cluster.ids) else None
        return _wait(check, WAIT_S, "the swarm settled on one map version", self.describe)

    def flying_auto(self, among: list[int]) -> bool:
        states = self.sim.states()
        return all(states[n - 1].armed and states[n - 1].mode_name == "AUTO"
                   and states[n - 1].relative_alt > 10 for n in among)

    def describe(self) -> str:
        st = self.statuses()
        vehicles = [(s.sysid, s.mode_name, s.armed, round(s.relative_alt, 1), s.mission_current)
                    for s in self.sim.states()]
        return (f"fc: { {n: s.get('fc') for n, s in st.items()} }\nvehicles: {vehicles}\n"
                f"plans: { {n: (p.get('map_version'), p.get('status')) for n, p in self.plans.items()} }\n"
                + self.cluster.logs())

    def propose(self, command: dict[str, Any]) -> int:
        reply = self.client.propose(command, timeout_s=60)
        assert reply.committed, reply.message
        return int(reply.body["index"])

    def propose_zone(self, zid: str, ring: list[list[float]]) -> int:
        self.zones[zid] = ring
        return self.propose({"type": "set_zone", "id": zid, "polygon": ring, "status": "burned",
                             "source": "test", "time_ms": int(time.time() * 1000)})

    def clear_square(self, size_m: float) -> tuple[list[list[float]], float]:
        """A ``size_m`` square in the search area as far as possible from every drone
        now (a drone inside a new zone's buffer legitimately gets no fence for it), and
        that distance in metres."""
        xs = [self.frame.point_to_enu(s.lon, s.lat) for s in self.sim.states()]
        drones = shapely.MultiPoint(xs)
        best: tuple[float, tuple[float, float]] = (-1.0, (0.0, 0.0))
        for x0 in range(-500, 501 - int(size_m), 50):
            for y0 in range(100, 901 - int(size_m), 50):
                sq = shapely.box(x0, y0, x0 + size_m, y0 + size_m)
                best = max(best, (sq.distance(drones), (x0, y0)))
        (x0, y0) = best[1]
        return _square(self.frame, x0, y0, x0 + size_m, y0 + size_m), best[0]


def _check_holds(swarm: Swarm, node: int, mission: tuple[MissionItem, ...],
                 fence: tuple[MissionItem, ...], *, fences_may_omit: bool,
                 landed: bool = False) -> None:
    """``node``'s vehicle holds a mission whose path keeps out of every zone and a fence
    excluding each zone (unless the plan says it was left out: the vehicle was inside
    its buffer when planned). A ``landed`` drone re-planned on the ground with nothing
    to fly holds an empty mission (only home)."""
    assert len(mission) >= (1 if landed else 2), f"vehicle {node} holds no mission"
    path = flown_path((mission[1].lon, mission[1].lat), mission[2:]) if len(mission) >= 2 else []
    exclusions = [shapely.Polygon([(lon, lat) for lat, lon in ring]) for ring in fence_polygons(fence)]
    reasons = " ".join(swarm.plans.get(node, {}).get("reasons", []))
    for zid, ring in swarm.zones.items():
        zone = shapely.Polygon([(lon, lat) for lon, lat in ring])
        if len(path) >= 2:
            assert not shapely.LineString(path).intersects(zone), \
                f"vehicle {node}'s mission crosses zone {zid}: {path}"
        if fences_may_omit and "left out" in reasons and zid in reasons:
            continue
        assert any(p.buffer(1e-9).covers(zone) for p in exclusions), \
            f"vehicle {node}'s fence does not exclude zone {zid} ({reasons})"


def _connect(endpoint: str, sysid: int) -> tuple[MavlinkLink, Vehicle]:
    link = MavlinkLink(LinkConfig(endpoint, target_system=sysid)).start()
    vehicle = Vehicle(link, sysid)
    assert link.wait_for_heartbeat(30), f"no heartbeat from {endpoint}"
    vehicle.request_streams(timeout_s=2.0)
    return link, vehicle


def _take_off(endpoint: str, sysid: int, altitude_m: float = 20.0) -> None:
    """Take a copter off in GUIDED by hand, as a pilot would (test_leadership_processes
    hovers its copters this way; the agents here launch theirs)."""
    link, vehicle = _connect(endpoint, sysid)
    try:
        vehicle.wait_until(lambda s: s.position is not None and s.ekf is not None, 60)
        deadline = time.monotonic() + 60
        while True:  # the EKF may need a moment more before GUIDED and arming are allowed
            if vehicle.set_mode(CopterMode.GUIDED).accepted and vehicle.arm().accepted:
                break
            assert time.monotonic() < deadline, "could not arm in GUIDED"
            time.sleep(0.5)
        vehicle.takeoff(altitude_m).raise_for_result()
        vehicle.wait_until(lambda s: s.position is not None and s.position.alt_rel > altitude_m - 2, 60)
    finally:
        vehicle.detach()
        link.close()


def _configure(endpoint: str, sysid: int) -> None:
    """The operator's pre-flight setup: ArduCopter's circle fence (FENCE_TYPE bit 2,
    FENCE_RADIUS 300 m by default) must cover the search area, or enabling the fences
    with the first zone makes every drone beyond 300 m breach it and RTL. The applier
    keeps the operator's fence bits (mavlink_bridge.apply), so the radius is set here."""
    link, vehicle = _connect(endpoint, sysid)
    try:
        vehicle.set_param("FENCE_RADIUS", 2000.0)
    finally:
        vehicle.detach()
        link.close()


def _download(endpoint: str, sysid: int) -> tuple[tuple[MissionItem, ...], tuple[MissionItem, ...]]:
    link = MavlinkLink(LinkConfig(endpoint, target_system=sysid)).start()
    vehicle = Vehicle(link, sysid)
    try:
        assert link.wait_for_heartbeat(30), f"no heartbeat from {endpoint}"
        return vehicle.download(MissionType.MISSION), vehicle.download(MissionType.FENCE)
    finally:
        vehicle.detach()
        link.close()


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory, mosquitto_module) -> Iterator[Swarm]:
    tmp = tmp_path_factory.mktemp("flight")
    configs = configs_for(AGENTS, speedup=SPEEDUP, time_to_ready_s=2.0, home=HOME, base_port=0,
                          spacing_m=30.0)
    with SimulatorServer(configs) as sim:
        for i, endpoint in enumerate(sim.endpoints):
            _configure(endpoint, i + 1)
        broker_proxy = FaultProxy(mosquitto_module.host, mosquitto_module.port)
        fc_port = int(sim.endpoints[FC_CUT - 1].rsplit(":", 1)[1])
        fc_proxy = FaultProxy("127.0.0.1", fc_port)
        cluster = AgentCluster(tmp, mosquitto_module, AGENTS)
        for i in cluster.ids:
            endpoint = f"tcp:{fc_proxy.host}:{fc_proxy.port}" if i == FC_CUT else sim.endpoints[i - 1]
            cluster.add_mavlink(i, endpoint, sysid=i)
        cluster.route_broker(BROKER_CUT, mosquitto_module, broker_proxy.host, broker_proxy.port)
        plans: dict[int, dict[str, Any]] = {}
        plan_log: list[tuple[int, int]] = []
        lock = threading.Lock()

        def on_plan(c, u, m) -> None:
            try:
                doc = json.loads(m.payload)
                with lock:
                    plans[int(doc["node"])] = doc
                    plan_log.append((int(doc["node"]), int(doc["map_version"])))
            except (ValueError, KeyError, TypeError):
                pass

        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="flight-test-plans")
        sub.on_message = on_plan
        sub.connect(mosquitto_module.host, mosquitto_module.port)
        sub.subscribe(topics.plan(cluster.swarm, 1).rsplit("/", 1)[0] + "/+", 1)
        sub.loop_start()
        try:
            cluster.start_all()
            client = cluster.client(timeout_s=20.0)
            cluster.wait_leader(client, timeout=90)
            frame = LocalFrame(HOME[0], HOME[1])
            area = _square(frame, -500, 100, 500, 900)
            s = Swarm(sim, configs, cluster, client, broker_proxy, fc_proxy, frame, area, plans,
                      plan_log)
            version = s.propose({"type": "set_search_area", "polygon": area})
            # Every drone joins the map by itself, the leader commits the assignment, and
            # every FC holds a plan to fly: still on the ground, disarmed.
            _wait(lambda: s.held(version, cluster.ids) and all(
                      p.get("status") == "ok" and p.get("map_version", 0) > version
                      for p in [plans.get(i, {}) for i in cluster.ids]),
                  WAIT_S, "committed plans on every FC", s.describe)
            time.sleep(1.0)  # a moment in which nothing may arm them
            s.armed_before_launch = [st.sysid for st in sim.states() if st.armed]
            s.launch_version = s.propose({"type": "launch", "time_ms": int(time.time() * 1000)})
            _wait(lambda: s.flying_auto(cluster.ids), WAIT_S, "every drone flying AUTO after launch",
                  s.describe)
            yield s
        finally:
            cluster.close()
            sub.loop_stop()
            sub.disconnect()
            broker_proxy.close()
            fc_proxy.close()


def test_nothing_arms_before_launch_then_every_drone_flies_its_share_in_auto(swarm: Swarm) -> None:
    assert swarm.armed_before_launch == [], "a copter was armed before the operator's launch"
    # status/<node> is republished at least every 2 s: it shows them flying AUTO.
    _wait(lambda: all(swarm.fc(n).get("mode") == "AUTO" and swarm.fc(n).get("armed")
                      and swarm.fc(n).get("launch_waits") is None for n in swarm.cluster.ids),
          30, "status shows every drone armed in AUTO", swarm.describe)
    states = swarm.sim.states()
    for n in swarm.cluster.ids:
        # Flying the committed mission: the FC's items are the plan's, past the takeoff.
        assert len(states[n - 1].mission) >= 4 and states[n - 1].mission_current >= 1
    # Each flies its own share: the mission legs of two drones are not the same.
    firsts = {(states[n - 1].mission[2].x, states[n - 1].mission[2].y) for n in swarm.cluster.ids}
    assert len(firsts) == AGENTS


def test_a_burned_zone_reaches_all_five_flight_controllers_as_missions_and_fences(swarm: Swarm) -> None:
    ring, clearance = swarm.clear_square(150.0)
    version = swarm.propose_zone("burn-1", ring)
    _wait(lambda: swarm.held(version, swarm.cluster.ids), WAIT_S, "the zone on every FC",
          swarm.describe)
    states = swarm.sim.states()
    for n in swarm.cluster.ids:
        _check_holds(swarm, n, _items(states[n - 1].mission), _items(states[n - 1].fence),
                     fences_may_omit=clearance < 120)
    assert swarm.flying_auto(swarm.cluster.ids), swarm.describe()


def test_sigkill_of_the_leader_mid_flight_and_missions_keep_updating(swarm: Swarm) -> None:
    cluster = swarm.cluster
    leader = cluster.wait_leader(swarm.client, timeout=60)
    cluster.kill(leader)
    rest = [i for i in cluster.ids if i != leader]
    new = cluster.wait_leader(swarm.client, among=rest, timeout=60)
    assert new != leader
    ring, clearance = swarm.clear_square(120.0)
    version = swarm.propose_zone("burn-2", ring)
    _wait(lambda: swarm.held(version, rest), WAIT_S, "the new leader's map on the other FCs",
          swarm.describe)
    states = swarm.sim.states()
    for n in rest:
        _check_holds(swarm, n, _items(states[n - 1].mission), _items(states[n - 1].fence),
                     fences_may_omit=clearance < 120)
    # The killed agent's copter flew on by its last plan; restarted, the agent catches up.
    assert swarm.flying_auto([leader]), swarm.describe()
    held_before = swarm.plans[leader]["map_version"]
    mark = len(swarm.plan_log)
    cluster.start(leader)
    _wait(lambda: swarm.held(version, cluster.ids), WAIT_S, "the restarted agent's FC up to date",
          swarm.describe)
    # Replaying its log from version 0, the restarted agent never uploads a plan older
    # than the one its FC held (it would lack the zones committed since).
    uploaded = [v for n, v in swarm.plan_log[mark:] if n == leader]
    assert uploaded and min(uploaded) >= held_before, \
        f"restarted agent {leader} uploaded map versions {uploaded}, FC held {held_before}"


def test_a_drone_cut_off_from_the_broker_keeps_flying_its_last_plan_and_rejoins(swarm: Swarm) -> None:
    n = BROKER_CUT
    swarm.settled()  # nothing committed before the cut still on its way to the FC
    before = swarm.sim.state(n - 1).mission
    swarm.broker_proxy.cut()
    try:  # healed whatever happens: a drone left cut off would fail every later test
        others = [i for i in swarm.cluster.ids if i != n]
        ring, _ = swarm.clear_square(100.0)
        version = swarm.propose_zone("burn-3", ring)
        _wait(lambda: swarm.held(version, others), WAIT_S, "the zone on the connected FCs",
              swarm.describe)
        time.sleep(2.0)  # time in which the cut-off agent could invent something: it must not
        state = swarm.sim.state(n - 1)
        assert state.mission == before, \
            f"the cut-off drone's mission changed without a quorum\n{swarm.describe()}"
        assert state.armed and state.mode_name == "AUTO", swarm.describe()
    finally:
        swarm.broker_proxy.heal()
    _wait(lambda: swarm.held(version, swarm.cluster.ids), WAIT_S, "the cut-off drone caught up",
          swarm.describe)


def test_a_lost_flight_controller_link_shows_in_status_and_recovers(swarm: Swarm) -> None:
    n = FC_CUT
    swarm.fc_proxy.cut()
    try:
        _wait(lambda: swarm.fc(n).get("connected") is False, WAIT_S,
              "fc.connected false in status", swarm.describe)
        # After the health dwell the map says it is unavailable (its work goes to others).
        _wait(lambda: swarm.fc(n).get("availability") == "unavailable", WAIT_S,
              "availability unavailable", swarm.describe)
        assert swarm.sim.state(n - 1).armed, "the copter itself flies on without its agent"
    finally:
        swarm.fc_proxy.heal()
    _wait(lambda: swarm.fc(n).get("connected") is True
          and swarm.fc(n).get("availability") == "in_service", WAIT_S,
          "the FC link back in status", swarm.describe)
    latest = max(s["map_version"] for s in swarm.statuses().values() if s.get("online"))
    _wait(lambda: swarm.held(latest, swarm.cluster.ids), WAIT_S, "every FC on the latest map",
          swarm.describe)


def test_recall_brings_every_drone_home_and_lands_it(swarm: Swarm) -> None:
    cluster, sim = swarm.cluster, swarm.sim
    version = swarm.propose({"type": "recall"})
    _wait(lambda: all(not s.armed and s.landed for s in sim.states()), WAIT_S * 2,
          "every drone landed after recall", swarm.describe)
    for cfg, s in zip(swarm.configs, sim.states()):
        e, n = swarm.frame.point_to_enu(s.lon, s.lat)
        he, hn = swarm.frame.point_to_enu(cfg.home_lon, cfg.home_lat)
        assert abs(e - he) < 10 and abs(n - hn) < 10, f"sysid {s.sysid} landed away from home"
    _wait(lambda: swarm.held(version, cluster.ids), WAIT_S, "the recall's plans on every FC",
          swarm.describe)
    assert all(s["fc"]["recalled"] for s in swarm.statuses().values()), swarm.describe()
    for i in cluster.ids:
        assert cluster.stop(i) == 0, cluster.logs()
    # What each flight controller holds, downloaded over MAVLink: its way home, clear of
    # every zone, and fences excluding them.
    for i, endpoint in enumerate(sim.endpoints):
        mission, fence = _download(endpoint, i + 1)
        _check_holds(swarm, i + 1, mission, fence, fences_may_omit=True, landed=True)
