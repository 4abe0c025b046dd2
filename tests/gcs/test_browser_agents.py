"""The page in real headless Chromium against 3 real agents (``python -m swarm agent``,
Raft over a real mosquitto; tests/agent/agent_cluster.py starts them): the drones and
the leader are shown, a zone proposed by another client appears, an operator draws a
zone and it is committed in the swarm, killing the leader (SIGKILL) shows the new one,
and the console has no errors. Screenshot: out/test-artifacts/gcs/browser-agents.png.

The agents do not drive flight controllers yet (their ``[mavlink]`` section is parsed,
not used), so they publish no telemetry or plans: drone positions, planned paths and
plan exports are covered by test_browser.py against the contract stand-in.
"""

from __future__ import annotations

import sys
from pathlib import Path

import browser as chromium
from gcs_helpers import ARTIFACTS, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_cluster import AgentCluster, zone  # noqa: E402

LON, LAT = -121.62, 39.76


def _text(page, element_id: str) -> str:
    return page.js("return document.getElementById(arguments[0]).textContent", element_id)


def test_page_with_three_real_agents(tmp_path, broker, make_station, page) -> None:
    cluster = AgentCluster(tmp_path, broker, 3, swarm="gcs-live")
    try:
        cluster.start_all()
        client = cluster.client()
        leader = cluster.wait_leader(client, timeout=90)
        st = make_station(swarm="gcs-live", broker=broker)
        page.driver.get(st.url + "/")

        # The drones (health rows: real agents publish status, not telemetry yet) and the leader.
        wait_for(lambda: page.js("return document.querySelectorAll('#nodes tbody tr').length") == 3,
                 60, "three nodes in the health panel")
        wait_for(lambda: _text(page, "s-leader") == f"drone-{leader}", 60, "the leader shown")
        assert page.js("return [...document.querySelectorAll('#nodes tbody tr.leader')]"
                       ".map(r => r.firstChild.textContent)") == [f"★ drone-{leader}"]

        # Another client's zone appears.
        reply = client.propose(zone("z-other", lon=LON, lat=LAT))
        assert reply.committed, reply.body
        wait_for(lambda: "z-other" in chromium.zone_ids(page), 30, "z-other on the page")
        page.js("gcs.map.fitBounds([[39.755, -121.63], [39.770, -121.605]])")

        # The operator draws a zone; it is committed by the swarm.
        chromium.draw_zone(page, "op-drawn", [(-150, 100), (-60, 110), (-70, 190), (-160, 180)])
        outcome = wait_for(lambda: page.js("""const li = document.querySelector('#pending li');
            return li && li.className !== 'wait' && li.textContent"""), 60, "the action's outcome")
        assert "committed at index" in outcome, outcome
        version, doc = client.read_map()  # linearizable read from the swarm itself
        assert any(f["properties"]["id"] == "op-drawn" for f in doc["features"])
        wait_for(lambda: "op-drawn" in chromium.zone_ids(page), 30, "op-drawn drawn from the map")

        # Kill the leader: the page shows the new one.
        cluster.kill(leader)
        others = [n for n in cluster.ids if n != leader]
        new_leader = cluster.wait_leader(client, among=others, timeout=90)
        wait_for(lambda: _text(page, "s-leader") == f"drone-{new_leader}", 60, "the new leader")
        wait_for(lambda: any(f"drone-{leader} unreachable" in a for a in page.js(
            "return [...document.querySelectorAll('#alerts li')].map(l => l.textContent)")),
            30, "the old leader reported unreachable")

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.driver.save_screenshot(str(ARTIFACTS / "browser-agents.png"))
        assert page.errors() == []
        assert all(u.startswith(st.url) for u in page.requests
                   if not u.startswith(("chrome:", "data:", "about:")))
    finally:
        cluster.close()
