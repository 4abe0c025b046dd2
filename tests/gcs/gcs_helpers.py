"""Helpers for the ground-station tests: the station in a thread, bounded waits, HTTP.
(A module of its own, not conftest.py: several test folders have a conftest.py, so
``from conftest import`` would be ambiguous in a whole-suite run.)"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarm.bus.broker import free_port
from swarm.gcs import GcsConfig, GroundStation

__all__ = ["ARTIFACTS", "StationThread", "free_port", "http", "wait_for"]

ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts" / "gcs"


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (bounded: liveness only)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class StationThread:
    """A GroundStation on its own event loop in a background thread."""

    def __init__(self, config: GcsConfig, connect: bool = True) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.station = GroundStation(config)
        self.url = self.run(self.station.start(connect=connect)).rstrip("/")

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def wrapper() -> Any:
            return fn(*args)
        return self.run(wrapper())

    def ingest(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        self.call(self.station.ingest, topic, data)

    def close(self) -> None:
        self.run(self.station.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)




def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None, timeout: float = 30.0,
         context: ssl.SSLContext | None = None) -> tuple[int, Any, dict[str, str]]:
    """(status, decoded JSON or text, headers); ``context`` for an https:// URL."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            status, raw_body, rh = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        status, raw_body, rh = exc.code, exc.read(), dict(exc.headers)
    try:
        text = raw_body.decode()
    except UnicodeDecodeError:
        return status, raw_body, rh
    try:
        return status, json.loads(text), rh
    except ValueError:
        return status, text, rh
