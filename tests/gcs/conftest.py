"""Fixtures for the ground-station tests: the project's real mosquitto and stations
running in threads (helpers in gcs_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import browser as chromium
from gcs_helpers import StationThread
from swarm.bus.broker import LocalBroker
from swarm.gcs import GcsConfig
from swarm.gcs.link import BrokerAddress


@pytest.fixture
def broker(mosquitto: LocalBroker) -> LocalBroker:
    """The project's real mosquitto (tests/conftest.py), fresh for each test."""
    return mosquitto


@pytest.fixture
def make_station() -> Iterator[Callable[..., StationThread]]:
    made: list[StationThread] = []

    def make(swarm: str = "t1", broker: LocalBroker | None = None, connect: bool | None = None,
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



@pytest.fixture
def page() -> Iterator[chromium.Browser]:
    """A fresh headless Chromium (Debian's chromium + chromium-driver)."""
    problem = chromium.missing()
    if problem:
        pytest.fail(problem)
    b = chromium.Browser()
    yield b
    b.close()
