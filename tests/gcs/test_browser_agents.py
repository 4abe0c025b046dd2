"""The page in real headless Chromium against the real thing: 3 agent processes
(``python -m swarm agent``, Raft over a real mosquitto; tests/agent/agent_cluster.py),
each flying a built-in simulated copter (sitl.builtin, ArduPilot's protocol on TCP)
through its flight side, which publishes the telemetry and plans the page draws.

One module-scoped setup (broker, copters airborne, agents, station, browser); the tests
below run in order against it:

* the drones are drawn where the simulator has them, the leader is marked, and each
  drone's planned path and sector are drawn;
* a zone proposed by another client appears; an operator draws a zone on the page and
  the swarm commits it (checked by a linearizable read);
* *Recall all* (confirmed) is committed, every drone is shown recalled, its flight
  controller flies RTL (seen on the page and in the simulator), the GeoJSON export says
  so; *Resume* ends it; one drone is recalled and resumed from its row;
* SIGKILL of the leader: the new one is shown, the old one reported unreachable;
* a screenshot (out/test-artifacts/gcs/browser-agents.png), no console errors, and no
  request to anywhere but the station.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import browser as chromium
from gcs_helpers import ARTIFACTS, StationThread, http, wait_for
from sitl.builtin import SimulatorServer, configs_for
from swarm.bus.broker import LocalBroker
from swarm.client import SwarmClient
from swarm.gcs import GcsConfig
from swarm.gcs.link import BrokerAddress
from swarm.geo import LocalFrame

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "agent"))
sys.path.insert(0, str(TESTS / "flight"))
from agent_cluster import AgentCluster  # noqa: E402  (the agents' process harness)
from test_flight_processes import _take_off  # noqa: E402  (copters airborne in GUIDED)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

AGENTS = 3
SWARM = "gcs-live"
HOME = (-35.363261, 149.165230, 584.0)
FRAME = LocalFrame(HOME[0], HOME[1])


def _square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """[lon, lat] corners of a rectangle given in metres east/north of HOME."""
    return [[round(v, 7) for v in FRAME.point_to_geodetic(x, y)]
            for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]


@dataclass
class Live:
    sim: SimulatorServer
    cluster: AgentCluster
    client: SwarmClient
    station: StationThread
    page: chromium.Browser
    leader: int

    def text(self, element_id: str) -> str:
        return str(self.page.js("return document.getElementById(arguments[0]).textContent",
                                element_id))

    def outcome(self, label: str, timeout: float = 60.0) -> str:
        """The page's final line for the action ``label`` (not while it is pending)."""
        return str(wait_for(lambda: self.page.js(
            "const li = [...document.querySelectorAll('#pending li')].find(l => "
            "l.textContent.startsWith(arguments[0] + ':'));"
            "return li && li.className !== 'wait' && li.textContent", label), timeout,
            f"the outcome of {label!r}"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, mosquitto_module: LocalBroker) -> Iterator[Live]:
    problem = chromium.missing()
    if problem:
        pytest.fail(problem)
    tmp = tmp_path_factory.mktemp("gcs-live")
    configs = configs_for(AGENTS, speedup=4.0, time_to_ready_s=2.0, home=HOME, base_port=0,
                          spacing_m=30.0)
    with SimulatorServer(configs) as sim:
        for i, endpoint in enumerate(sim.endpoints):
            _take_off(endpoint, i + 1)
        cluster = AgentCluster(tmp, mosquitto_module, AGENTS, swarm=SWARM)
        for i in cluster.ids:
            cluster.add_mavlink(i, sim.endpoints[i - 1], sysid=i)
        station = page = None
        try:
            cluster.start_all()
            client = cluster.client(timeout_s=30.0)
            leader = cluster.wait_leader(client, timeout=90)
            station = StationThread(GcsConfig(
                swarm=SWARM, brokers=(BrokerAddress("127.0.0.1", mosquitto_module.port),), port=0))
            page = chromium.Browser()
            page.driver.get(station.url + "/")
            yield Live(sim, cluster, client, station, page, leader)
        finally:
            if page is not None:
                page.close()
            if station is not None:
                station.close()
            cluster.close()


def test_drones_at_their_positions_the_leader_and_planned_paths(live: Live) -> None:
    page = live.page
    # A search area for the swarm: the leader assigns sectors, every drone plans a path.
    reply = live.client.propose({"type": "set_search_area", "polygon": _square(-300, 100, 300, 700)})
    assert reply.committed, reply.body
    wait_for(lambda: page.js("return document.querySelectorAll('.drone-icon').length") == AGENTS,
             90, "a marker per drone (their telemetry)")
    wait_for(lambda: live.text("s-leader") == f"drone-{live.leader}", 60, "the leader shown")
    assert page.js("return [...document.querySelectorAll('.drone-icon.leader .lbl')]"
                   ".map(l => l.textContent)") == [f"drone-{live.leader}"]

    def markers_off_their_copters() -> dict[str, float] | None:
        # Each labelled marker against its own copter (drone-i flies simulator vehicle
        # i - 1), read in one script and compared with the simulator at once. 25 m: a
        # few frames of flight at the simulator's 4x speed-up; the copters are 30 m apart.
        drawn = page.js("return gcs.layers.drones.getLayers().map(m => [m.options.icon"
                        ".options.html.match(/class=\"lbl\">([^<]*)</)[1], m.getLatLng().lat,"
                        " m.getLatLng().lng])")
        truth = {f"drone-{i + 1}": (s.lon, s.lat) for i, s in enumerate(live.sim.states())}
        off = {name: math.dist(FRAME.point_to_enu(lon, lat), FRAME.point_to_enu(*truth[name]))
               for name, lat, lon in drawn if name in truth}
        return None if len(off) == AGENTS and max(off.values()) < 25.0 else off

    wait_for(lambda: markers_off_their_copters() is None, 30,
             "each drone's marker where the simulator has its copter")

    wait_for(lambda: page.js("return gcs.state.plans.filter(p => p.mission.length > 1).length")
             == AGENTS, 120, "every drone's planned path on the page")
    # Drawn: a path per drone, and each drone's committed sector (the map's assignment).
    wait_for(lambda: page.js("return [gcs.layers.paths.getLayers().length, gcs.layers.sectors"
                             ".getLayers().filter(l => l.feature).map(l => l.feature.properties.id)"
                             ".sort()]") == [AGENTS, [f"drone-{i}" for i in range(1, AGENTS + 1)]],
             60, "a path and a sector drawn per drone")
    # And the files a drone's plan exports to.
    code, text, _ = http("GET", live.station.url + f"/api/export/{live.leader}.plan")
    assert code == 200 and text["fileType"] == "Plan", text


def test_another_clients_zone_appears_and_an_operator_drawn_zone_is_committed(live: Live) -> None:
    page = live.page
    reply = live.client.propose({"type": "set_zone", "id": "z-other", "status": "burned",
                                 "source": "drone-2", "time_ms": 1,
                                 "polygon": _square(150, 550, 250, 650)})
    assert reply.committed, reply.body
    wait_for(lambda: "z-other" in chromium.zone_ids(page), 30, "z-other on the page")
    south_west, north_east = FRAME.point_to_geodetic(-400, 0), FRAME.point_to_geodetic(400, 800)
    page.js("gcs.map.fitBounds([[arguments[0], arguments[1]], [arguments[2], arguments[3]]])",
            south_west[1], south_west[0], north_east[1], north_east[0])
    chromium.draw_zone(page, "op-drawn", [(-150, -120), (-60, -110), (-70, -40), (-160, -50)])
    assert "committed at index" in live.outcome("zone op-drawn (burning)")
    _, doc = live.client.read_map()  # a linearizable read from the swarm itself
    assert any(f["properties"]["id"] == "op-drawn" for f in doc["features"])
    wait_for(lambda: "op-drawn" in chromium.zone_ids(page), 30, "op-drawn drawn from the map")


def test_recall_all_flies_every_drone_home_and_resume_ends_it(live: Live) -> None:
    from selenium.webdriver.common.by import By

    page = live.page
    assert live.text("s-recall") == "none"
    page.driver.find_element(By.ID, "btn-recall").click()
    assert page.driver.find_element(By.ID, "recallconfirm").is_displayed()
    assert live.client.read_map()[1]["recall"]["all"] is False  # nothing before confirming
    page.driver.find_element(By.ID, "btn-recall-confirm").click()
    assert "committed at index" in live.outcome("recall all")
    assert live.client.read_map()[1]["recall"] == {"all": True, "drones": []}
    wait_for(lambda: live.text("s-recall") == "ALL drones ordered home", 30, "recall shown")
    wait_for(lambda: page.js("return document.querySelectorAll('.drone-icon.recalled').length")
             == AGENTS, 30, "every drone marked recalled")
    # Each agent switched its flight controller to RTL: the simulator and the page say so.
    wait_for(lambda: all(s.mode_name == "RTL" or s.landed for s in live.sim.states()), 60,
             "every copter in RTL")
    wait_for(lambda: page.js("return [...document.querySelectorAll('#drones tbody tr')]"
                             ".map(r => r.children[3].textContent)").count("RTL") == AGENTS,
             30, "RTL in the drones table")
    code, text, _ = http("GET", live.station.url + "/api/export/map.geojson")
    doc = json.loads(text) if isinstance(text, str) else text
    assert code == 200 and doc["recall"] == {"all": True, "drones": []}
    homes = [f for f in doc["features"] if f["properties"]["kind"] == "drone_home"]
    assert len(homes) == AGENTS and all(f["properties"]["recalled"] for f in homes)

    page.driver.find_element(By.ID, "btn-resume").click()
    assert "committed at index" in live.outcome("resume all")
    assert live.client.read_map()[1]["recall"] == {"all": False, "drones": []}
    wait_for(lambda: live.text("s-recall") == "none", 30, "the recall ended on the page")
    wait_for(lambda: page.js("return document.querySelectorAll('.drone-icon.recalled').length")
             == 0, 30, "no drone marked recalled")

    # One drone, from its row in the drones table (rebuilt with every frame: the button
    # is found and clicked in one script).
    def row_button(node: int, kind: str) -> bool:
        return bool(page.js("const b = document.querySelector(`#drones tbody tr[data-node='${"
                            "arguments[0]}'] button[data-${arguments[1]}]`); if (b) b.click();"
                            " return !!b;", node, kind))

    wait_for(lambda: row_button(2, "recall"), 30, "drone-2's recall button")
    assert "committed at index" in live.outcome("recall drone-2")
    assert live.client.read_map()[1]["recall"] == {"all": False, "drones": ["drone-2"]}
    wait_for(lambda: page.js("return [...document.querySelectorAll('.drone-icon.recalled .lbl')]"
                             ".map(l => l.textContent)") == ["drone-2"], 30, "drone-2 recalled")
    wait_for(lambda: row_button(2, "resume"), 30, "drone-2's resume button")
    assert "committed at index" in live.outcome("resume drone-2")
    assert live.client.read_map()[1]["recall"] == {"all": False, "drones": []}
    wait_for(lambda: live.text("s-recall") == "none", 30, "drone-2 resumed on the page")


def test_killing_the_leader_shows_the_new_one(live: Live) -> None:
    page = live.page
    old = live.leader
    live.cluster.kill(old)
    others = [n for n in live.cluster.ids if n != old]
    new = live.cluster.wait_leader(live.client, among=others, timeout=90)
    wait_for(lambda: live.text("s-leader") == f"drone-{new}", 60, "the new leader")
    wait_for(lambda: any(f"drone-{old} unreachable" in a for a in page.js(
        "return [...document.querySelectorAll('#alerts li')].map(l => l.textContent)")),
        30, "the old leader reported unreachable")
    # Its agent is gone, so is its telemetry: its marker fades (stale).
    wait_for(lambda: page.js("return [...document.querySelectorAll('.drone-icon.stale .lbl')]"
                             ".map(l => l.textContent)") == [f"drone-{old}"], 30,
             "the dead agent's drone shown stale")


def test_screenshot_no_console_errors_and_nothing_but_the_station(live: Live) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    live.page.driver.save_screenshot(str(ARTIFACTS / "browser-agents.png"))
    assert live.page.errors() == []
    assert all(u.startswith(live.station.url) for u in live.page.requests
               if not u.startswith(("chrome:", "data:", "about:")))
