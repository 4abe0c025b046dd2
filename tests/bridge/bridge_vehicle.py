"""Helpers for the bridge's end-to-end tests, on either vehicle kind.

:func:`vehicle_for_module` boots one copter (``sitl.vehicles``) for a test module;
:func:`flying_setup` connects the bridge to it (optionally through a :class:`TcpProxy`
that can cut, pause or filter the link). Waits are bounded and generous: real SITL flies
at ArduCopter's default speeds (WPNAV_SPEED 10 m/s, climb 2.5 m/s, LAND_SPEED 0.5 m/s),
and the machine may be loaded.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import pytest

from bridge_fake_peer import TcpProxy
from mavlink_bridge.link import LinkConfig, MavlinkLink
from mavlink_bridge.mission_protocol import TransferTimeouts
from mavlink_bridge.plan import (
    CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, CMD_NAV_TAKEOFF, CMD_NAV_WAYPOINT, MissionItem,
)
from mavlink_bridge.vehicle import Vehicle
from sitl._site import DEFAULT_HOME
from sitl.vehicles import SimulatedVehicle, ardupilot_binary_from_env

HOME = DEFAULT_HOME
# Real SITL's --speedup in the tests (the issue asks for 5 or more); the built-in runs as fast.
SPEEDUP = float(os.environ.get("SITL_TEST_SPEEDUP", "10"))
FLIGHT_S = 120.0  # wall-clock bound on any one flight phase (climb, leg, RTL and landing)


class TestVehicle:
    """One copter for a test module, rebooted between tests when a test dirtied it."""

    __test__ = False  # not a test class

    def __init__(self, sim: SimulatedVehicle) -> None:
        self.sim = sim
        self._reboot = False

    @property
    def kind(self) -> str:
        return self.sim.kind

    @property
    def port(self) -> int:
        return self.sim.port

    @property
    def endpoint(self) -> str:
        return self.sim.endpoint

    @property
    def is_real(self) -> bool:
        return self.sim.kind == "ardupilot"

    def needs_reboot(self) -> None:
        """The test changed the vehicle beyond its lists: boot the next test a fresh one."""
        self._reboot = True

    def prepare(self) -> None:
        if self._reboot or not self.sim.running:
            self.sim.kill()
            self.sim.boot()
        self._reboot = False

    def after_test(self) -> None:
        if not self.sim.running:
            self._reboot = True

    def fresh_boot(self) -> None:
        """Boot a new copter now and return before it is ready (its EKF still
        initialising; it boots when the first client connects, as SITL's serial0 does)."""
        self.sim.kill()
        self.sim.boot(wait_ready=False)
        self._reboot = True

    def ground_truth(self) -> Any:
        """The built-in simulator's own state of the copter (None for real SITL)."""
        server = self.sim.server
        return server.state(0) if server is not None else None


@contextlib.contextmanager
def vehicle_for_module(kind: str) -> Iterator[TestVehicle]:
    binary = None
    if kind == "ardupilot":
        binary = ardupilot_binary_from_env()
        if binary is None:
            pytest.skip("real ArduCopter SITL: ARDUPILOT_SITL_BIN is not set")
    sim = SimulatedVehicle(kind, speedup=SPEEDUP, home=HOME, binary=binary)  # type: ignore[arg-type]
    try:
        sim.boot()
        yield TestVehicle(sim)
    finally:
        sim.close()


@contextlib.contextmanager
def flying_setup(vehicle: TestVehicle, *, proxy: bool = False, timeouts: TransferTimeouts = TransferTimeouts(),
                 drop_to_bridge: Any = None) -> Iterator[tuple[TestVehicle, MavlinkLink, Vehicle, TcpProxy | None]]:
    """A bridge ``Vehicle`` connected to ``vehicle`` (through a proxy if asked)."""
    px = TcpProxy(vehicle.port, drop_to_bridge=drop_to_bridge) if proxy else None
    endpoint = px.endpoint if px else vehicle.endpoint
    link = MavlinkLink(LinkConfig(endpoint, target_system=1, heartbeat_timeout_s=3.0,
                                  reconnect_initial_s=0.05, reconnect_max_s=0.5))
    v = Vehicle(link, 1, transfer_timeouts=timeouts)
    link.start()
    try:
        assert link.wait_for_heartbeat(30)
        yield vehicle, link, v, px
    finally:
        link.close()
        if px:
            px.close()


def ready(v: Vehicle, timeout: float = 60.0) -> None:
    """Streams requested and the EKF has a position (what arming in GUIDED needs)."""
    assert v.request_streams()
    v.wait_until(lambda s: s.ekf is not None and s.ekf.position_ok and s.position is not None
                 and s.gps is not None and s.gps.has_3d_fix, timeout)


def take_off(vehicle: TestVehicle, v: Vehicle, alt: float = 20.0) -> None:
    vehicle.needs_reboot()
    ready(v)
    v.set_mode("GUIDED").raise_for_result()
    v.arm().raise_for_result()
    v.takeoff(alt).raise_for_result()
    v.wait_until(lambda s: s.position is not None and s.position.alt_rel > alt - 2, FLIGHT_S)


def route(lat0: float, lon0: float, east_m: float, n: int = 4, step_m: float = 40.0,
          alt: float = 20.0) -> tuple[MissionItem, ...]:
    """A takeoff, then ``n`` waypoints ``step_m`` apart northward, ``east_m`` east of (lat0, lon0)."""
    dlat = step_m / 111_000.0
    dlon = east_m / (111_000.0 * 0.815)  # cos(-35.36°)
    return (MissionItem.at(CMD_NAV_TAKEOFF, lat0, lon0, alt),) + tuple(
        MissionItem.at(CMD_NAV_WAYPOINT, lat0 + i * dlat, lon0 + dlon, alt) for i in range(1, n + 1))


def exclusion_square(lat: float, lon: float, d: float = 0.0005) -> tuple[MissionItem, ...]:
    corners = [(lat, lon), (lat, lon + d), (lat + d, lon + d), (lat + d, lon)]
    return tuple(MissionItem.at(CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, a, b, 0.0, param1=4.0)
                 for a, b in corners)
