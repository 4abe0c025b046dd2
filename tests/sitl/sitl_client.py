"""Test helpers for the simulator tests: a pymavlink GCS client with bounded waits.

The client is a plain pymavlink ``mavutil`` TCP connection (sysid 255, the GCS id) so
the simulator is exercised by a real third-party MAVLink implementation; every wait is
bounded and expressed as "until this message arrives", never as a timing assertion.
"""

from __future__ import annotations

import os

os.environ.setdefault("MAVLINK20", "1")

import time
from typing import Any, Callable

import pytest
from pymavlink import mavutil

from sitl.builtin import VehicleConfig

M = mavutil.mavlink
SPEEDUP = 20.0
READY_S = 2.0
WAIT_S = 15.0  # generous wall-clock bound for any single expected event


def _seq_is(seq: int) -> Callable[[Any], bool]:
    """A wait condition: the mission message for item ``seq``."""
    return lambda m: m.seq == seq


def wait_for(conn: Any, types: str | list[str], cond: Callable[[Any], bool], timeout: float) -> Any:
    """The next message of ``types`` on a mavutil connection meeting ``cond``; fails the
    test after ``timeout`` wall-clock seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = conn.recv_match(type=types, blocking=True, timeout=min(0.5, deadline - time.monotonic()))
        if msg is not None and cond(msg):
            return msg
    pytest.fail(f"no {types} matching the condition within {timeout} s")


class SimClient:
    """A GCS-side pymavlink connection with bounded waits."""

    def __init__(self, endpoint: str, target: int = 1) -> None:
        self.conn = mavutil.mavlink_connection(endpoint, source_system=255, source_component=190,
                                               dialect="ardupilotmega", autoreconnect=False)
        self.mav = self.conn.mav
        self.target = target

    def close(self) -> None:
        self.conn.close()

    def wait(self, types: str | list[str], cond: Callable[[Any], bool] = lambda m: True,
             timeout: float = WAIT_S) -> Any:
        """The next message of ``types`` meeting ``cond``; fails the test after ``timeout``."""
        return wait_for(self.conn, types, cond, timeout)

    def collect(self, types: str | list[str], until: Callable[[Any], bool], timeout: float = WAIT_S) -> list[Any]:
        """Every message of ``types`` up to and including the first for which ``until`` holds."""
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.conn.recv_match(type=types, blocking=True, timeout=min(0.5, deadline - time.monotonic()))
            if msg is None:
                continue
            got.append(msg)
            if until(msg):
                return got
        pytest.fail(f"condition on {types} not met within {timeout} s; got {[m.get_type() for m in got]}")

    def drain(self) -> None:
        while self.conn.recv_match(blocking=False) is not None:
            pass

    def command(self, command: int, *params: float, timeout: float = WAIT_S) -> int:
        p = list(params) + [0.0] * (7 - len(params))
        self.mav.command_long_send(self.target, 1, command, 0, *p)
        return self.wait("COMMAND_ACK", lambda m: m.command == command, timeout).result

    def set_mode(self, mode: int) -> int:
        return self.command(M.MAV_CMD_DO_SET_MODE, M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, mode)

    def wait_ready(self) -> None:
        self.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_EKF_STATUS_REPORT, 100_000)
        self.wait("EKF_STATUS_REPORT", lambda m: m.flags & M.EKF_POS_HORIZ_ABS)

    def arm_and_takeoff(self, alt: float) -> None:
        self.wait_ready()
        assert self.set_mode(4) == M.MAV_RESULT_ACCEPTED
        assert self.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1) == M.MAV_RESULT_ACCEPTED
        assert self.command(M.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, alt) == M.MAV_RESULT_ACCEPTED

    def fly_to_once_up(self, dn_m: float, de_m: float, alt: float) -> tuple[int, int]:
        """After a takeoff to 10 m: stream GLOBAL_POSITION_INT at 5 Hz, wait until above
        9.5 m, then send a GUIDED position target ``dn_m``/``de_m`` from home at ``alt``
        (relative). Returns the target's degE7 (lat, lon)."""
        self.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 200_000)
        self.wait("GLOBAL_POSITION_INT", lambda m: m.relative_alt > 9_500)
        lat, lon = home_plus(dn_m, de_m)
        self.mav.set_position_target_global_int_send(0, 1, 1, M.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, 0b110111111000,
                                                     lat, lon, alt, 0, 0, 0, 0, 0, 0, 0, 0)
        return lat, lon

    def upload(self, items: list[tuple], mission_type: int = 0, legacy_items: bool = False) -> tuple[int, list[Any]]:
        """Upload ``items`` (command, frame, p1..p4, x, y, z); returns (ack type, requests seen)."""
        self.mav.mission_count_send(self.target, 1, len(items), mission_type)
        requests: list[Any] = []
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            msg = self.conn.recv_match(type=["MISSION_REQUEST", "MISSION_REQUEST_INT", "MISSION_ACK"],
                                       blocking=True, timeout=0.5)
            if msg is None:
                continue
            if msg.get_type() == "MISSION_ACK":
                return msg.type, requests
            requests.append(msg)
            self.send_item(msg.seq, items[msg.seq], mission_type, legacy_items)
        pytest.fail("upload did not finish")

    def send_item(self, seq: int, item: tuple, mission_type: int = 0, legacy: bool = False) -> None:
        command, frame, p1, p2, p3, p4, x, y, z = item
        if legacy:
            self.mav.mission_item_send(self.target, 1, seq, frame, command, 0, 1, p1, p2, p3, p4,
                                       x / 1e7 if frame in (0, 3, 5, 6) else x,
                                       y / 1e7 if frame in (0, 3, 5, 6) else y, z, mission_type)
        else:
            self.mav.mission_item_int_send(self.target, 1, seq, frame, command, 0, 1, p1, p2, p3, p4,
                                           x, y, z, mission_type)

    def download(self, mission_type: int = 0, legacy: bool = False) -> list[Any]:
        self.mav.mission_request_list_send(self.target, 1, mission_type)
        count = self.wait("MISSION_COUNT", lambda m: m.mission_type == mission_type).count
        items = []
        for seq in range(count):
            if legacy:
                self.mav.mission_request_send(self.target, 1, seq, mission_type)
                items.append(self.wait("MISSION_ITEM", _seq_is(seq)))
            else:
                self.mav.mission_request_int_send(self.target, 1, seq, mission_type)
                items.append(self.wait("MISSION_ITEM_INT", _seq_is(seq)))
        self.mav.mission_ack_send(self.target, 1, M.MAV_MISSION_ACCEPTED, mission_type)
        return items


def fast_config(**overrides: Any) -> VehicleConfig:
    values: dict[str, Any] = dict(instance=0, tcp_port=0, speedup=SPEEDUP, time_to_ready_s=READY_S, seed=1)
    values.update(overrides)
    return VehicleConfig(**values)


def home_plus(dn_m: float, de_m: float) -> tuple[int, int]:
    """degE7 of a point ``dn_m`` north and ``de_m`` east of the default home."""
    import pymap3d

    from sitl.builtin import DEFAULT_HOME
    lat, lon, _ = pymap3d.enu2geodetic(de_m, dn_m, 0, *DEFAULT_HOME)
    return round(float(lat) * 1e7), round(float(lon) * 1e7)
