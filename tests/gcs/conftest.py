"""Fixtures for the ground-station tests: a real mosquitto, the station in a thread,
a stand-in swarm that speaks the contract, and HTTP helpers."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from swarm.gcs import GcsConfig, GroundStation
from swarm.gcs.link import BrokerAddress

ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts" / "gcs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        pytest.fail("mosquitto is not installed: run `make system-packages`")
    return found


class Mosquitto:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence false\nmax_queued_messages 10000\n")
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)],
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        wait_for(self._listening, 10, "mosquitto to listen")

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosq = Mosquitto(tmp_path)
    yield mosq
    mosq.stop()


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


@pytest.fixture
def make_station() -> Iterator[Callable[..., StationThread]]:
    made: list[StationThread] = []

    def make(swarm: str = "t1", broker: Mosquitto | None = None, connect: bool | None = None,
             **kw: Any) -> StationThread:
        brokers = (BrokerAddress("127.0.0.1", broker.port),) if broker else (
            BrokerAddress("127.0.0.1", 1),)
        config = GcsConfig(swarm=swarm, brokers=brokers, port=0, **kw)
        st = StationThread(config, connect=broker is not None if connect is None else connect)
        made.append(st)
        return st

    yield make
    for st in made:
        st.close()


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None, timeout: float = 30.0) -> tuple[int, Any, dict[str, str]]:
    """(status, decoded JSON or text, headers)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
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
