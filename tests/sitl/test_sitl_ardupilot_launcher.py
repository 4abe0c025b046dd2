"""The launcher for real ArduPilot SITL: binary lookup, command line, readiness wait, lifecycle."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sitl_client import fast_config

from sitl.ardupilot import (ArduPilotConfig, ArduPilotNotFound, ArduPilotSITL, build_command, find_arducopter,
                            find_copter_defaults, wait_ready)
from sitl.builtin import SimulatorServer
from sitl.vehicles import ardupilot_binary_from_env, free_port_block

_STAND_IN = Path(__file__).with_name("sitl_stand_in_arducopter.py")


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A directory laid out like an ArduPilot checkout with a built SITL binary."""
    (tmp_path / "ardupilot/build/sitl/bin").mkdir(parents=True)
    binary = _executable(tmp_path / "ardupilot/build/sitl/bin/arducopter", "#!/bin/sh\nexit 0\n")
    parm = tmp_path / "ardupilot/Tools/autotest/default_params/copter.parm"
    parm.parent.mkdir(parents=True)
    parm.write_text("FRAME_CLASS 1\n")
    return binary, parm


def test_binary_is_found_from_config_then_env_then_ardupilot_home(tmp_path):
    binary, _ = _checkout(tmp_path)
    assert find_arducopter(str(binary), env={}) == binary.resolve()
    assert find_arducopter(None, env={"ARDUPILOT_SITL_BIN": str(binary)}) == binary.resolve()
    assert find_arducopter(None, env={"ARDUPILOT_HOME": str(tmp_path / "ardupilot")}) == binary.resolve()


def test_missing_binary_raises_a_clear_error_naming_where_it_looked(tmp_path):
    with pytest.raises(ArduPilotNotFound) as info:
        find_arducopter(str(tmp_path / "nope"), env={"PATH": str(tmp_path)})
    assert str(tmp_path / "nope") in str(info.value) and "ARDUPILOT_SITL_BIN" in str(info.value)


def test_copter_defaults_are_found_in_the_checkout_of_the_binary(tmp_path):
    binary, parm = _checkout(tmp_path)
    assert find_copter_defaults(binary, env={}) == parm


def test_command_line_for_instance_two(tmp_path):
    binary, parm = _checkout(tmp_path)
    config = ArduPilotConfig(count=3, speedup=5, home=(-35.0, 149.0, 600.0, 90.0), spacing_m=10.0)
    argv = build_command(config, 2, binary, [parm], tmp_path / "i2" / "identity.parm")
    assert argv[0] == str(binary)
    assert argv[argv.index("--model") + 1] == "quad"
    assert argv[argv.index("--speedup") + 1] == "5"
    assert argv[argv.index("-I") + 1] == "2"
    assert "--base-port" not in argv  # SITL's own 5760 + 10*I
    lat, lon, alt, hdg = (float(v) for v in argv[argv.index("--home") + 1].split(","))
    assert (lat, alt, hdg) == (-35.0, 600.0, 90.0) and lon > 149.0  # 20 m east of instance 0
    assert abs((lon - 149.0) * 111_319.49 * 0.8191520 - 20.0) < 0.05
    assert argv[argv.index("--defaults") + 1] == f"{parm},{tmp_path / 'i2' / 'identity.parm'}"
    assert "-w" in argv
    assert config.port(2) == 5780


def test_a_custom_base_port_is_passed_before_the_instance(tmp_path):
    binary, parm = _checkout(tmp_path)
    argv = build_command(ArduPilotConfig(count=2, base_port=7000), 1, binary, [parm], tmp_path / "id.parm")
    assert argv.index("--base-port") < argv.index("-I")
    assert argv[argv.index("--base-port") + 1] == "7010"  # SITL does not add 10*I to an explicit one


@pytest.mark.parametrize("bad", [dict(count=0), dict(home=(95.0, 0.0, 0.0, 0.0)), dict(speedup=0),
                                 dict(base_port=65530, count=2), dict(model="quad --evil")])
def test_bad_launcher_config_is_rejected(bad):
    with pytest.raises(ValueError):
        ArduPilotConfig(**bad)


def test_readiness_wait_returns_once_gps_and_ekf_are_ready():
    with SimulatorServer([fast_config(instance=2, time_to_ready_s=4.0)]) as sim:
        report = wait_ready(sim.endpoints[0], timeout_s=30)
        assert report.sysid == 3 and report.fix_type >= 3
        # ready by either sign ArduPilot gives: EKF_POS_HORIZ_ABS, or the "using GPS" notice
        assert report.ekf_flags & 16 or "EKF3 IMU0 is using GPS" in report.statustexts
        assert sim.state(0).ready


def test_readiness_wait_times_out_naming_what_is_missing():
    with SimulatorServer([fast_config(speedup=1.0, time_to_ready_s=1000.0)]) as sim:
        with pytest.raises(TimeoutError, match="EKF position"):
            wait_ready(sim.endpoints[0], timeout_s=1.5)


def test_launcher_runs_instances_in_their_own_folders_waits_until_ready_and_stops_them(tmp_path, monkeypatch):
    binary = _executable(tmp_path / "arducopter",
                         f"#!/bin/sh\nexec {sys.executable} {_STAND_IN} \"$@\"\n")
    parm = tmp_path / "copter.parm"
    parm.write_text("FRAME_CLASS 1\n")
    monkeypatch.setenv("STAND_IN_READY_S", "3")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    config = ArduPilotConfig(count=2, binary=str(binary), defaults=(str(parm),), speedup=10,
                             base_port=free_port_block(20), workdir=str(tmp_path / "run"), ready_timeout_s=60)
    sitl = ArduPilotSITL(config)
    with sitl:
        assert [r.sysid for r in sitl.reports] == [1, 2]
        procs = list(sitl._procs)
        for i in range(2):
            folder = tmp_path / "run" / f"instance{i}"
            record = json.loads((folder / "argv.json").read_text())
            assert Path(record["cwd"]) == folder.resolve()
            assert record["argv"][record["argv"].index("-I") + 1] == str(i)
            assert (folder / "identity.parm").read_text() == f"SYSID_THISMAV {i + 1}\n"
    assert all(p.poll() is not None for p in procs)


def test_real_arducopter_boots_and_becomes_ready(tmp_path):
    """Runs whenever ARDUPILOT_SITL_BIN is set (CI sets it), and then a missing or
    broken binary fails it (ardupilot_binary_from_env raises); skipped only without."""
    binary = ardupilot_binary_from_env()
    if binary is None:
        pytest.skip("no ArduPilot SITL build: set ARDUPILOT_SITL_BIN to build/sitl/bin/arducopter")
    config = ArduPilotConfig(count=2, speedup=10, binary=str(binary), workdir=str(tmp_path / "run"),
                             base_port=free_port_block(20), ready_timeout_s=180)
    with ArduPilotSITL(config) as sitl:
        assert [r.sysid for r in sitl.reports] == [1, 2]
        assert all(r.fix_type >= 3 for r in sitl.reports)
        procs = list(sitl._procs)
    assert all(p.poll() is not None for p in procs)  # stopped: no orphans


def test_an_instance_that_cannot_bind_its_ports_is_reported_at_once(tmp_path):
    """Real arducopter exits with "bind failed" when a port of its block is taken (here
    instance 1's serial1, base + 10 + 2): the launcher says so, with the end of the
    instance's log, instead of "nothing is listening" 30 s later; the instance that
    was booting meanwhile is stopped."""
    binary = ardupilot_binary_from_env()
    if binary is None:
        pytest.skip("no ArduPilot SITL build: set ARDUPILOT_SITL_BIN to build/sitl/bin/arducopter")
    base = free_port_block(20)
    config = ArduPilotConfig(count=2, speedup=10, binary=str(binary), workdir=str(tmp_path / "run"),
                             base_port=base, ready_timeout_s=180)
    sitl = ArduPilotSITL(config)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 12))
        taken.listen()
        with pytest.raises(ConnectionError, match=r"instance 1 exited with status 1 .*bind failed"):
            sitl.start()
    assert sitl._procs == []


def test_a_set_but_broken_sitl_binary_is_an_error_not_a_skip(tmp_path):
    from sitl.ardupilot import ArduPilotNotFound
    with pytest.raises(ArduPilotNotFound, match="ARDUPILOT_SITL_BIN"):
        ardupilot_binary_from_env({"ARDUPILOT_SITL_BIN": str(tmp_path / "missing")})
    assert ardupilot_binary_from_env({}) is None


def test_cli_ardupilot_mode_without_a_binary_explains_where_it_looked(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("ARDUPILOT_SITL_BIN", "ARDUPILOT_HOME")}
    env["PATH"] = os.path.dirname(sys.executable)
    done = subprocess.run([sys.executable, "-m", "sitl", "--ardupilot", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 1
    assert "no ArduPilot SITL binary found" in done.stderr and "ARDUPILOT_SITL_BIN" in done.stderr


def test_cli_ardupilot_mode_runs_the_binary_and_prints_endpoints_once_ready(tmp_path):
    binary = _executable(tmp_path / "arducopter", f"#!/bin/sh\nexec {sys.executable} {_STAND_IN} \"$@\"\n")
    base = free_port_block(20)
    env = {**os.environ, "ARDUPILOT_SITL_BIN": str(binary), "STAND_IN_READY_S": "2",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "sitl", "--ardupilot", "--count", "2", "--speedup", "10",
                             "--base-port", str(base), "--workdir", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(2)]  # bounded by the readiness timeout
        assert lines == [f"tcp:127.0.0.1:{base}", f"tcp:127.0.0.1:{base + 10}"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_cli_ardupilot_mode_with_radio_puts_a_sik_radio_in_front_of_each_copter(tmp_path):
    """``--ardupilot --radio``: SITL sends no RADIO_STATUS, so a SikRadioRelay on each
    serial0 injects it (sysid 51); the printed endpoints are the radios', and the
    copter's own traffic passes through them."""
    binary = _executable(tmp_path / "arducopter", f"#!/bin/sh\nexec {sys.executable} {_STAND_IN} \"$@\"\n")
    base = free_port_block(10)
    env = {**os.environ, "ARDUPILOT_SITL_BIN": str(binary), "STAND_IN_READY_S": "2",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "sitl", "--ardupilot", "--radio", "--count", "1",
                             "--speedup", "10", "--base-port", str(base), "--workdir", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()  # bounded by the readiness timeout
        assert endpoint.startswith("tcp:127.0.0.1:") and endpoint != f"tcp:127.0.0.1:{base}"
        from pymavlink import mavutil
        conn = mavutil.mavlink_connection(endpoint, source_system=255, source_component=190, autoreconnect=False)
        try:
            seen: set[tuple[str, int]] = set()
            deadline = time.monotonic() + 30
            while not {("RADIO_STATUS", 51), ("HEARTBEAT", 1)} <= seen and time.monotonic() < deadline:
                msg = conn.recv_match(type=["RADIO_STATUS", "HEARTBEAT"], blocking=True, timeout=0.5)
                if msg is not None:
                    seen.add((msg.get_type(), msg.get_srcSystem()))
            assert {("RADIO_STATUS", 51), ("HEARTBEAT", 1)} <= seen
        finally:
            conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
