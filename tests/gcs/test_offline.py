"""The page works with no internet: every asset is served by the station, nothing refers
elsewhere, and Chromium, in a network namespace that has only loopback, loads the page
and its assets with no request to anywhere but the station."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import browser
from gcs_helpers import http

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
_URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'`)<>]*""")
# Not requests: XML namespace names and the link Leaflet's attribution prefix would show
# (disabled by the page: attributionControl.setPrefix(false)).
_NOT_FETCHED = ("http://www.w3.org/2000/svg", "https://leafletjs.com")


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []  # everything the page points at
        self.assets: list[str] = []  # what the browser fetches to show it

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = [v for k, v in attrs if k in ("src", "href") and v]
        self.refs += found
        if tag in ("script", "link", "img"):
            self.assets += found


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def test_every_asset_is_served_and_refers_nowhere_else(make_station) -> None:
    st = make_station(connect=False)
    code, html, headers = http("GET", st.url + "/")
    assert code == 200 and "default-src 'self'" in headers["Content-Security-Policy"]
    parser = _Refs()
    parser.feed(html)
    assert parser.refs, "the page references its assets"
    assets = list(parser.assets)
    for ref in parser.refs:
        assert ref.startswith("/") and not ref.startswith("//"), f"{ref} is not on this server"
    checked = 0
    while assets:
        ref = assets.pop()
        code, body, _ = http("GET", st.url + ref)
        assert code == 200, f"{ref}: HTTP {code}"
        checked += 1
        if ref.endswith(".css"):
            for url in re.findall(r"url\(['\"]?([^'\")]+)", _strip_comments(body)):
                if not url.startswith(("data:", "#")):  # "#default#VML": an old-IE behaviour name
                    assets.append(str(Path(ref).parent / url) if not url.startswith("/") else url)
        if ref.endswith((".js", ".css", ".html", ".svg")):
            found = [u for u in _URL.findall(_strip_comments(body))
                     if not any(u.startswith(ok) for ok in _NOT_FETCHED)]
            assert not found, f"{ref} refers to {found}"
    assert checked >= 5  # page assets, Leaflet, its images


@pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux")
def test_page_loads_with_only_loopback_and_requests_nothing_else(tmp_path: Path) -> None:
    problem = browser.missing()
    if problem:
        pytest.fail(problem)
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("unshare and ip (util-linux, iproute2) are needed for the namespace")
    script = (f"ip link set lo up && exec {sys.executable} {HERE / 'offline_check.py'} "
              f"{tmp_path / 'tiles'}")
    done = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True,
                          text=True, timeout=240, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    origin = result["origin"].rstrip("/")
    assert any(u.endswith("/leaflet/leaflet.js") for u in result["requests"])
    assert any("/tiles/" in u for u in result["requests"]), "offline tiles were requested"
    # chrome:// and data: are the browser's own (its new-tab page before navigation);
    # every request that could leave the machine has a network scheme.
    network = [u for u in result["requests"] if not u.startswith(("chrome:", "data:", "about:"))]
    foreign = [u for u in network if not u.startswith(origin + "/")]
    assert foreign == [], f"requests outside the station: {foreign}"
    assert result["external_in_dom"] == []
    assert result["tiles_drawn"] > 0
    assert result["errors"] == []
