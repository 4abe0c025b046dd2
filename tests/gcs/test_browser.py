"""The page in real headless Chromium (Debian's chromium + chromium-driver, Selenium):
it shows the drones and the leader; a zone proposed by another client appears; an
operator draws a zone and it is committed; killing the leader shows the new one; the
page reconnects by itself after the station or the broker restarts; the browser
console stays free of errors. A screenshot is saved to
out/test-artifacts/gcs/browser.png.

The swarm here is tests/gcs/contract_swarm.py, a stand-in that speaks the MQTT contract
(docs/protocol.md), so the page's every action (survivors, popups, a refused action)
and its recovery from station and broker restarts are covered cheaply. The same story
against 3 real agents flying built-in copters is test_browser_agents.py.
"""

from __future__ import annotations

import time

import browser as chromium
from gcs_helpers import ARTIFACTS, StationThread, wait_for
from contract_swarm import ContractSwarm
from swarm.gcs import GcsConfig
from swarm.gcs.link import BrokerAddress


def _leader_text(page) -> str:
    return page.js("return document.getElementById('s-leader').textContent")


def _popup_button(page, title: str, label: str) -> None:
    # Found and clicked in one script: Leaflet may rebuild a popup's content right after
    # opening it (its first layout), which would leave a found element stale.
    wait_for(lambda: page.js(
        "const pop = [...document.querySelectorAll('.leaflet-popup .popup')]"
        ".find(p => p.querySelector('b').textContent === arguments[0]);"
        "const b = pop && [...pop.querySelectorAll('.acts button')]"
        ".find(b => b.textContent === arguments[1]); if (b) b.click(); return !!b;",
        title, label), 10, f"{title}: the {label!r} button")


def _wait_outcome(page, label: str) -> None:
    text = wait_for(lambda: page.js(
        "const li = [...document.querySelectorAll('#pending li')].find(l => "
        "l.textContent.startsWith(arguments[0] + ':'));"
        "return li && li.className !== 'wait' && li.textContent", label), 30, f"{label} outcome")
    assert "committed at index" in text, text


def test_page_live_with_the_swarm(broker, make_station, page) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    swarm = ContractSwarm("t1", "127.0.0.1", broker.port, n=3, telemetry_hz=10)
    try:
        st = make_station(broker=broker)
        page.driver.get(st.url + "/")
        # Drones and the leader.
        wait_for(lambda: page.js("return document.querySelectorAll('.drone-icon').length") == 3,
                 30, "three drone markers")
        wait_for(lambda: _leader_text(page) == "drone-1", 30, "the leader shown")
        assert page.js("return document.querySelectorAll('.drone-icon.leader').length") == 1
        # Read the table in one script: it is re-rendered with every telemetry frame.
        assert page.js("return [...document.querySelectorAll('#drones tbody tr')]"
                       ".map(r => r.className)") == ["leader", "", ""]

        # A zone proposed by another client appears.
        swarm.propose({"type": "set_zone", "id": "z-other", "status": "burning",
                       "source": "drone-2", "time_ms": 1,
                       "polygon": [[-121.6219, 39.7596], [-121.619, 39.7596],
                                   [-121.619, 39.7618]]})
        wait_for(lambda: "z-other" in chromium.zone_ids(page), 20, "z-other on the page")
        page.js("gcs.map.fitBounds([[39.755, -121.63], [39.768, -121.61]])")

        # The operator draws a zone and it is committed.
        chromium.draw_zone(page, "op-drawn", [(-120, 120), (-20, 140), (-40, 220), (-140, 210)])
        wait_for(lambda: page.js("""const li = document.querySelector('#pending li');
            return li && li.className !== 'wait' && li.textContent"""), 30, "the action's outcome")
        outcome = page.js("return document.querySelector('#pending li').textContent")
        assert "committed at index" in outcome, outcome
        assert "op-drawn" in swarm.map.zones  # committed in the swarm, not only on the page
        wait_for(lambda: "op-drawn" in chromium.zone_ids(page), 20, "op-drawn drawn from the map")
        assert len(swarm.map.zones["op-drawn"].ring) == 5  # 4 corners, closed

        # Drop a survivor, mark it rescued from its popup, remove the drawn zone.
        map_el = page.driver.find_element(By.ID, "map")
        page.driver.find_element(By.ID, "btn-survivor").click()
        ActionChains(page.driver).move_to_element_with_offset(map_el, 60, -40).click().perform()
        form = page.driver.find_element(By.ID, "survivorform")
        assert form.is_displayed()
        form.find_element(By.NAME, "id").clear()
        form.find_element(By.NAME, "id").send_keys("op-s1")
        form.find_element(By.NAME, "count").clear()
        form.find_element(By.NAME, "count").send_keys("4")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _wait_outcome(page, "survivor op-s1")
        assert swarm.map.survivors["op-s1"].count == 4
        wait_for(lambda: page.js("return [...document.querySelectorAll('#survivors td')]"
                                 ".some(td => td.textContent === 'op-s1')"), 20, "op-s1 listed")
        page.js("[...document.querySelectorAll('#survivors tr')].find(tr => "
                "tr.firstChild.textContent === 'op-s1').click()")
        _popup_button(page, "Survivor op-s1", "Mark rescued")
        _wait_outcome(page, "survivor op-s1 rescued")
        assert swarm.map.survivors["op-s1"].status.value == "rescued"
        page.js("gcs.layers.zones.eachLayer(l => { if (l.feature.properties.id === 'op-drawn') "
                "l.openPopup(l.getBounds().getCenter()); })")
        _popup_button(page, "Zone op-drawn", "Remove")
        _wait_outcome(page, "remove zone op-drawn")
        assert "op-drawn" not in swarm.map.zones
        wait_for(lambda: "op-drawn" not in chromium.zone_ids(page), 20, "op-drawn gone from the page")

        # An action the map refuses is shown as an error, never as done.
        reply = page.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "gcs.propose({type: 'remove_zone', id: 'no-such-zone'}, 'bad remove').then(done);")
        assert reply["status"] == "error" and reply["code"] == "invalid"
        assert "NOT applied" in page.js("return document.querySelector('#pending li').textContent")

        # Killing the leader shows the new one.
        new_leader = swarm.kill_leader()
        wait_for(lambda: _leader_text(page) == f"drone-{new_leader}", 20, "the new leader")
        wait_for(lambda: any("drone-1 unreachable" in a for a in page.js(
            "return [...document.querySelectorAll('#alerts li')].map(l => l.textContent)")),
            20, "drone-1 unreachable alert")

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        time.sleep(0.5)
        page.driver.save_screenshot(str(ARTIFACTS / "browser.png"))
        # The console's only error is Chrome's own line for the deliberate refusal above
        # (it logs every HTTP 4xx as a failed resource load).
        errors = page.errors()
        refused = [e for e in errors if "/api/commands" in e["message"] and "422" in e["message"]]
        assert len(refused) == 1 and [e for e in errors if e not in refused] == [], errors
        # Every request went to the station.
        assert all(u.startswith(st.url) for u in page.requests
                   if not u.startswith(("chrome:", "data:", "about:")))
    finally:
        swarm.close()


def test_page_reconnects_after_station_and_broker_restart(broker, page) -> None:
    swarm = ContractSwarm("t2", "127.0.0.1", broker.port, n=3, telemetry_hz=5)
    from gcs_helpers import free_port
    port = free_port()
    config = GcsConfig(swarm="t2", brokers=(BrokerAddress("127.0.0.1", broker.port),), port=port)
    st = StationThread(config)
    try:
        page.driver.get(st.url + "/")
        wait_for(lambda: _leader_text(page) == "drone-1", 30, "the leader shown")
        # The station restarts on the same port: the page notices and comes back.
        st.close()
        wait_for(lambda: page.js("return document.getElementById('conn').textContent")
                 == "ground station unreachable", 20, "the page to notice")
        st = StationThread(config)
        wait_for(lambda: page.js("return document.getElementById('conn').textContent") == "live"
                 and _leader_text(page) == "drone-1", 40, "the page live again")
        # The broker restarts: the station reconnects, retained state comes back.
        broker.stop()
        wait_for(lambda: page.js("return document.getElementById('conn').textContent")
                 == "broker down", 30, "broker down shown")
        broker.start()
        # (the stand-in republishes its retained topics when it reconnects: they died
        # with the broker)
        wait_for(lambda: page.js("return document.getElementById('conn').textContent") == "live"
                 and _leader_text(page) == "drone-1", 40, "live after the broker restart")
        # Only the expected failures while the station was down reach the console.
        errors = [e for e in page.errors() if "/api/stream" not in e["message"]
                  and "ERR_CONNECTION_REFUSED" not in e["message"]]
        assert errors == []
    finally:
        st.close()
        swarm.close()
