"""Harness for the launcher's process tests: run `python -m swarm launch` for real and
find every process it left behind by an environment token (scanning /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE = Path(__file__).resolve().parent / "launch_node.py"


def processes_with_token(token: str) -> list[int]:
    """Every live (non-zombie) process whose environment carries ``token``."""
    needle = f"LAUNCH_TEST_TOKEN={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != b"Z":
            found.append(int(entry))
    return found


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class LaunchRun:
    """One `python -m swarm launch` process, its output in a file, its token."""

    def __init__(self, tmp: Path, text: str | Path, *extra: str) -> None:
        """``text``: a launch file's text (NODE stands for the stand-in node), or the
        path of an existing launch file."""
        self.token = uuid.uuid4().hex
        if isinstance(text, Path):
            self.file = text
        else:
            self.file = tmp / "test.yaml"
            self.file.write_text(text.replace("NODE", f"{sys.executable} {NODE}"))
        self.output = tmp / f"launch-{self.token[:8]}.out"
        env = dict(os.environ, LAUNCH_TEST_TOKEN=self.token)
        env.pop("NO_COLOR", None)
        self._out = open(self.output, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "swarm", "launch", str(self.file), *extra], cwd=tmp,
            env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for_output(self, needle: str, timeout: float = 60) -> None:
        wait_until(lambda: needle in self.text() or self.proc.poll() is not None, timeout,
                   f"{needle!r} in the launcher's output")
        assert needle in self.text(), f"launcher ended without {needle!r}:\n{self.text()}"

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"launcher still running after {timeout} s:\n{self.text()}")

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in processes_with_token(self.token):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._out.close()


