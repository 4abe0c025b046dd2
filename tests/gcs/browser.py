"""Real headless Chromium (Debian's chromium + chromium-driver) driven by Selenium."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-extensions", "--window-size=1400,900"]


def missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing: run `make system-packages` (chromium, chromium-driver)"
    return None


class Browser:
    """One Chromium with a fresh profile; browser console and network logs collected."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="gcs-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS + [f"--user-data-dir={self.profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(60)
        self.console: list[dict[str, Any]] = []
        self.requests: list[str] = []

    def collect(self) -> None:
        """Drain the browser's logs into ``console`` and ``requests``."""
        self.console += self.driver.get_log("browser")
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])

    def errors(self) -> list[dict[str, Any]]:
        self.collect()
        return [e for e in self.console if e["level"] in ("SEVERE", "ERROR")]

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def draw_zone(page: Browser, zone_id: str, offsets: list[tuple[int, int]]) -> None:
    """Draw a zone on the page as an operator does: *Draw zone*, click each corner (pixel
    offsets from the map's centre), *Finish*, give its id, *Propose*."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page.driver.find_element(By.ID, "btn-zone").click()
    map_el = page.driver.find_element(By.ID, "map")
    for dx, dy in offsets:
        ActionChains(page.driver).move_to_element_with_offset(map_el, dx, dy).click().perform()
    page.driver.find_element(By.ID, "btn-finish").click()
    form = page.driver.find_element(By.ID, "zoneform")
    assert form.is_displayed()
    form.find_element(By.NAME, "id").clear()
    form.find_element(By.NAME, "id").send_keys(zone_id)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def zone_ids(page: Browser) -> list[str]:
    """Ids of the zones of the committed map the page holds."""
    return page.js("""return ((gcs.state.map && gcs.state.map.features) || [])
        .filter(f => f.properties.kind === 'zone').map(f => f.properties.id)""")
