"""Run inside a network namespace that has only loopback (test_offline.py starts it with
``unshare --net``): serve the station with offline tiles, load the page in Chromium,
and print, as JSON, every URL the browser requested, every external reference in the
DOM, and the console errors."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from browser import Browser  # noqa: E402
from gcs_helpers import StationThread, wait_for  # noqa: E402
from swarm.gcs import GcsConfig  # noqa: E402
from swarm.gcs.link import BrokerAddress  # noqa: E402

# A 1x1 PNG tile.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201e2210bc7"
                    "0000000049454e44ae426082")


def main() -> None:
    tiles = Path(sys.argv[1])
    for z, x, y in [(z, x, y) for z in range(0, 3) for x in range(2**z) for y in range(2**z)]:
        (tiles / str(z) / str(x)).mkdir(parents=True, exist_ok=True)
        (tiles / str(z) / str(x) / f"{y}.png").write_bytes(PNG)
    station = StationThread(GcsConfig(swarm="offline", brokers=(BrokerAddress("127.0.0.1", 1),),
                                      port=0, tiles=tiles, tiles_max_zoom=2), connect=False)
    browser = Browser()
    try:
        browser.driver.get(station.url + "/")
        wait_for(lambda: browser.js("return !!(window.gcs && gcs.state.health)"), 30, "the page")
        time.sleep(1.0)
        external = browser.js("""
            const out = [];
            for (const el of document.querySelectorAll('[src],[href]')) {
              const u = el.src || el.href;
              if (u && !u.startsWith(location.origin) && !u.startsWith('data:')) out.push(u);
            }
            return out;""")
        tiles_drawn = browser.js("return document.querySelectorAll('img.leaflet-tile-loaded').length")
        errors = browser.errors()
        print(json.dumps({"origin": station.url, "requests": browser.requests,
                          "external_in_dom": external, "errors": errors,
                          "tiles_drawn": tiles_drawn}))
    finally:
        browser.close()
        station.close()


if __name__ == "__main__":
    main()
