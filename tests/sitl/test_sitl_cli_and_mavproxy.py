"""The ``python -m sitl`` command line, and MAVProxy (a real third-party GCS) against it."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sitl_client import SimClient, fast_config

from sitl.builtin import SimulatorServer

_ENV = {**os.environ, "MAVLINK20": "1", "PYTHONUNBUFFERED": "1"}


class _Lines:
    """Reads a child's stdout on a thread so every wait on it is bounded."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.seen: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, needle: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            if needle in line:
                return line
        pytest.fail(f"{needle!r} not printed within {timeout} s; output so far: {self.seen[-30:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_cli_starts_n_copters_prints_their_endpoints_and_exits_on_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "sitl", "--count", "2", "--base-port", "0", "--speedup", "10",
                             "--time-to-ready", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_ENV)
    try:
        lines = _Lines(proc)
        endpoints = [lines.wait_for("tcp:127.0.0.1:"), lines.wait_for("tcp:127.0.0.1:")]
        assert len(set(endpoints)) == 2
        for sysid, endpoint in enumerate(endpoints, start=1):
            c = SimClient(endpoint, target=sysid)
            try:
                assert c.wait("HEARTBEAT").get_srcSystem() == sysid
            finally:
                c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        _stop(proc)


@pytest.mark.parametrize("args, complaint", [
    (["--count", "0"], "count must be in 1..254"),
    (["--count", "two"], "is not an integer"),
    (["--speedup", "-2"], "must be a finite number > 0"),
    (["--home", "95,10,0"], "off the globe"),
    (["--home", "1;2"], "home must be"),
    (["--base-port", "70000"], "port must be in 0..65535"),
    (["--count", "10", "--base-port", "65530"], "run past 65535"),
])
def test_cli_rejects_bad_arguments_with_a_clear_error(args, complaint):
    done = subprocess.run([sys.executable, "-m", "sitl", *args], capture_output=True, text=True, env=_ENV,
                          timeout=30)
    assert done.returncode == 2
    assert complaint in done.stderr


def test_cli_reports_a_port_already_in_use():
    with SimulatorServer([fast_config()]) as sim:
        done = subprocess.run([sys.executable, "-m", "sitl", "--base-port", str(sim.ports[0])],
                              capture_output=True, text=True, env=_ENV, timeout=30)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{sim.ports[0]}" in done.stderr


_WPL = """QGC WPL 110
0\t1\t0\t16\t0\t0\t0\t0\t-35.363261\t149.165230\t584.000000\t1
1\t0\t3\t22\t0\t0\t0\t0\t0\t0\t10.000000\t1
2\t0\t3\t16\t0\t0\t0\t0\t-35.362000\t149.165230\t15.000000\t1
3\t0\t3\t16\t0\t0\t0\t0\t-35.362000\t149.166500\t15.000000\t1
"""


def _mavproxy() -> str:
    """MAVProxy's script in the environment running the tests (a declared test
    dependency, installed with the project): the bin/ next to sys.executable, which
    need not be on PATH. Missing means a broken install, so the test fails."""
    script = Path(sys.executable).parent / "mavproxy.py"
    if not script.is_file():
        found = shutil.which("mavproxy.py")
        assert found, f"MAVProxy is a test dependency but {script} does not exist (pip install -e '.[test]')"
        return found
    return str(script)


def test_mavproxy_connects_loads_a_wpl_mission_lists_it_back_and_switches_mode(tmp_path: Path):
    (tmp_path / "mission.txt").write_text(_WPL)
    with SimulatorServer([fast_config(speedup=10.0, time_to_ready_s=1.0)]) as sim:
        proc = subprocess.Popen([sys.executable, _mavproxy(), "--master", sim.endpoints[0], "--default-modules",
                                 "wp,mode,cmdlong,param"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, cwd=tmp_path, env=_ENV)
        try:
            out = _Lines(proc)
            out.wait_for("online system 1")
            # past boot: AP_Mission answers NO_SPACE until initialised (as on real SITL)
            out.wait_for("EKF3 IMU0 is using GPS")
            assert proc.stdin is not None
            proc.stdin.write("wp load mission.txt\n")
            proc.stdin.flush()
            out.wait_for("Sent all 4 waypoints")
            out.wait_for("Flight plan received")
            proc.stdin.write("wp list\n")
            proc.stdin.flush()
            out.wait_for("Saved 4 waypoints")
            listed = [line for line in out.seen if line.startswith(("16 ", "22 "))]
            assert any(line.startswith("16 3 -35.3620000000 149.1665000000 15.0") for line in listed), listed
            proc.stdin.write("mode GUIDED\n")
            proc.stdin.flush()
            out.wait_for("DO_SET_MODE: ACCEPTED")
            state = sim.state(0)
            assert state.mode_name == "GUIDED"
            assert [(i.command, i.frame) for i in state.mission] == [(16, 0), (22, 3), (16, 3), (16, 3)]
            assert state.mission[3].x == -353620000 and state.mission[3].y == 1491665000
        finally:
            if proc.stdin is not None and proc.poll() is None:
                try:
                    proc.stdin.write("exit\n")
                    proc.stdin.flush()
                except OSError:
                    pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            _stop(proc)
