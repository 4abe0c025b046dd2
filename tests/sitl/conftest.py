"""Fixtures for the simulator tests: a running SimulatorServer and a pymavlink client."""

from __future__ import annotations

from typing import Iterator

import pytest
from sitl_client import SimClient, fast_config

from sitl.builtin import SimulatorServer


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    server = SimulatorServer([fast_config()])
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert server.error is None


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[SimClient]:
    c = SimClient(sim.endpoints[0])
    try:
        c.wait("HEARTBEAT")
        yield c
    finally:
        c.close()
