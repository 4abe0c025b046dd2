"""Fixtures for the simulator tests: a running SimulatorServer and a pymavlink client."""

from __future__ import annotations

from typing import Iterator

import pytest
from sitl_client import M, SimClient, fast_config

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
        # out of MAV_STATE_BOOT: init done, the mission store takes uploads
        c.wait("HEARTBEAT", lambda m: m.system_status != M.MAV_STATE_BOOT)
        yield c
    finally:
        c.close()
