"""Starting a node's process so that it can never outlive the launcher.

Three layers, because each covers a case the others miss:

1. Every node runs in its own session and process group (``setsid``), so a signal to
   the group reaches the node and everything it started (a shell's children, the
   mosquitto a broker wrapper runs, ArduPilot SITL processes), and a Ctrl-C typed at
   the launcher's terminal reaches only the launcher, which then stops the nodes in
   order instead of all at once.
2. ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in the child (prctl(2)): the kernel kills the
   node itself the moment the launcher dies, even by SIGKILL.
3. A sentinel process (``swarm.launch._sentinel``) holds the list of live process
   groups and a pipe from the launcher. If the launcher dies without stopping them,
   the pipe closes and the sentinel signals every group left: SIGTERM, then SIGKILL
   after the grace period. That reaches the grandchildren PDEATHSIG does not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

__all__ = ["Sentinel", "group_alive", "signal_group", "spawn"]

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _in_child(launcher_pid: int) -> None:
    # Runs between fork and exec (after setsid): async-signal-safe work only.
    if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(126)
    # The launcher may have died before prctl took effect; then nobody would kill us.
    if os.getppid() != launcher_pid:
        os._exit(126)


def spawn(argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> subprocess.Popen[bytes]:
    """Start one node: own session, killed with the launcher, output on one pipe.

    Must be called from the launcher's main thread: PDEATHSIG fires when the *thread*
    that forked the child exits, not only the process.
    """
    launcher_pid = os.getpid()
    return subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(env), cwd=cwd, start_new_session=True, close_fds=True,
        preexec_fn=lambda: _in_child(launcher_pid))


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        # A member changed its credentials (setuid); nothing more we may do.
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process (zombies included) is still in the group."""
    return signal_group(pgid, 0)


class Sentinel:
    """The launcher's side of the sentinel process (see the module docstring)."""

    def __init__(self, grace_s: float) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "swarm.launch._sentinel", f"{grace_s:g}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
            close_fds=True)
        assert self._proc.stdin is not None
        self._pipe = self._proc.stdin

    @property
    def pid(self) -> int:
        return self._proc.pid

    def watch(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        try:
            self._pipe.write(line.encode())
            self._pipe.flush()
        except (BrokenPipeError, ValueError):
            pass   # the sentinel is gone; PDEATHSIG still covers the direct children

    def close(self) -> None:
        """Normal end: every group is stopped already; let the sentinel exit."""
        try:
            self._pipe.close()
        except BrokenPipeError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
