"""Running a LaunchDescription: start in dependency order, supervise, stop cleanly.

One thread, one loop (``Launcher.run``): every turn it starts the nodes whose waits are
met, checks readiness, reads output, reaps exits, schedules respawns, and, once a stop
is asked for, stops nodes in reverse dependency order (a node stops only after every
node that waits for it has stopped: agents before the broker they talk through). A
stop is SIGTERM to the node's process group, then SIGKILL after its grace period;
a second Ctrl-C skips the grace. See _process.py for why nothing outlives the launcher.
"""

from __future__ import annotations

import enum
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import TextIO

import yaml

from . import _toml
from ._process import Sentinel, group_alive, signal_group, spawn
from .description import LaunchDescription, NodeSpec, ParameterStyle

__all__ = ["Launcher", "run_launch"]

_POLL_S = 0.05
_MAX_LINE = 64 * 1024
_MAX_READS = 16
_MAX_FINAL_READS = 256     # after an exit: what is left in the pipe, up to 16 MiB
_TCP_PROBE_S = 0.2
_COLOURS = ("36", "33", "35", "32", "34", "91", "96", "93", "95", "92")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _State(enum.Enum):
    WAITING = "waiting"        # for the nodes it comes after
    STARTING = "starting"      # running, not ready yet
    READY = "ready"            # running (or exited 0, for exit readiness) and ready
    BACKOFF = "backoff"        # exited; will be started again at restart_at
    STOPPED = "stopped"        # exited for good


@dataclass
class _Node:
    spec: NodeSpec
    colour: str
    state: _State = _State.WAITING
    proc: subprocess.Popen[bytes] | None = None
    pgid: int | None = None
    started_at: float = 0.0
    ready_deadline: float = 0.0
    next_probe: float = 0.0
    ever_ready: bool = False
    log_matched: bool = False
    restarts: int = 0
    restart_at: float = 0.0
    returncode: int | None = None
    buffer: bytes = b""
    term_sent_at: float | None = None
    killed: bool = False
    leftover_groups: dict[int, float] = field(default_factory=dict)  # pgid -> SIGKILL time

    @property
    def running(self) -> bool:
        return self.proc is not None


class Launcher:
    """Runs one launch description until it ends, is stopped, or ``duration_s`` passes."""

    def __init__(self, description: LaunchDescription, out: TextIO | None = None,
                 colour: bool | None = None, duration_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.description = description
        self.out = out if out is not None else sys.stdout
        if colour is None:
            colour = _wants_colour(self.out)
        self.colour = colour
        self.duration_s = duration_s
        self.clock = clock
        self.nodes = [_Node(spec, _COLOURS[i % len(_COLOURS)])
                      for i, spec in enumerate(description.nodes)]
        self.by_name = {n.spec.name: n for n in self.nodes}
        width = max([len(n.spec.name) for n in self.nodes] + [len("launch")])
        self.width = width
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.hurry = False
        self.exit_code = 0
        self.run_dir: str | None = None
        self.sentinel: Sentinel | None = None
        self._signals: list[int] = []

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Run to the end; returns the launcher's exit status."""
        previous = {s: signal.signal(s, self._on_signal)
                    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        self.run_dir = tempfile.mkdtemp(prefix="swarm-launch-")
        self.sentinel = Sentinel(max(n.spec.grace_s for n in self.nodes))
        deadline = None if self.duration_s is None else self.clock() + self.duration_s
        try:
            while True:
                self._handle_signals()
                now = self.clock()
                if deadline is not None and now >= deadline and not self.stopping:
                    self._say(f"duration {self.duration_s:g} s reached: shutting down")
                    self._begin_stop(0)
                if not self.stopping:
                    self._check_readiness(now)
                    self._start_ready_nodes(now)
                    self._respawn_due(now)
                else:
                    self._stop_step(now)
                # Output before exits: a node's last lines are printed before the
                # line saying it ended, and a log readiness match is seen first.
                self._read_output(_POLL_S)
                self._reap(self.clock())
                self._clear_leftovers(self.clock())
                if self._finished():
                    break
        finally:
            self._kill_everything()
            self.sentinel.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.exit_code

    def _finished(self) -> bool:
        for node in self.nodes:
            if node.running or node.leftover_groups:
                return False
            if not self.stopping and node.state in (_State.WAITING, _State.BACKOFF):
                return False
        if not self.stopping:
            failed = [n.spec.name for n in self.nodes if n.returncode not in (0, None)]
            self._say("every node has exited" + (f"; failed: {', '.join(failed)}" if failed else ""))
            self.exit_code = 1 if failed else 0
        return True

    # -- signals -------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            name = signal.Signals(signum).name
            if not self.stopping:
                self._say(f"{name}: shutting down (again to skip the grace period)")
                self._begin_stop(0)
            elif not self.hurry:
                self._say(f"{name} again: killing every node now")
                self.hurry = True

    # -- starting ------------------------------------------------------------------------

    def _start_ready_nodes(self, now: float) -> None:
        for node in self.nodes:
            if node.state is not _State.WAITING:
                continue
            if all(self.by_name[dep].ever_ready for dep in node.spec.after):
                self._start(node, now)

    def _start(self, node: _Node, now: float) -> None:
        spec = node.spec
        config = self._write_config(spec)
        argv = spec.argv(config)
        env = spec.environment(os.environ)
        env["SWARM_LAUNCH_NODE"] = spec.name
        env["SWARM_LAUNCH_PID"] = str(os.getpid())
        try:
            proc = spawn(argv, env, spec.cwd)
        except OSError as exc:
            self._say(f"cannot start {spec.name} ({argv[0]}): {exc.strerror or exc}",
                      error=True)
            node.state = _State.STOPPED
            node.returncode = 127
            self._node_failed(node, "could not be started")
            return
        assert proc.stdout is not None
        assert self.sentinel is not None
        self.sentinel.watch(proc.pid)
        os.set_blocking(proc.stdout.fileno(), False)
        self.selector.register(proc.stdout, selectors.EVENT_READ, node)
        node.proc, node.pgid, node.started_at = proc, proc.pid, now
        node.returncode, node.log_matched, node.buffer = None, False, b""
        node.term_sent_at, node.killed = None, False
        again = f" (restart {node.restarts})" if node.restarts else ""
        self._say(f"started {spec.name}{again}: pid {proc.pid}: {_shown(argv)}")
        if node.ever_ready:
            node.state = _State.READY
        elif spec.ready is None:
            self._became_ready(node)
        else:
            if node.state is _State.WAITING:
                node.ready_deadline = now + spec.ready.timeout_s
            node.state = _State.STARTING

    def _write_config(self, spec: NodeSpec) -> str | None:
        if spec.parameter_style is ParameterStyle.ARGS or not spec.parameters:
            return None
        assert self.run_dir is not None
        path = os.path.join(self.run_dir, f"{spec.name}.{spec.parameter_style.value}")
        if spec.parameter_style is ParameterStyle.TOML:
            text = _toml.dumps(spec.parameters)
        elif spec.parameter_style is ParameterStyle.JSON:
            text = json.dumps(spec.parameters, indent=2) + "\n"
        else:
            text = yaml.safe_dump(dict(spec.parameters), sort_keys=False)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return path

    def _check_readiness(self, now: float) -> None:
        for node in self.nodes:
            if node.state is not _State.STARTING or node.proc is None:
                continue
            ready = node.spec.ready
            assert ready is not None
            if ready.exit_zero:
                continue            # decided when it is reaped
            if ready.tcp is not None:
                # One probe per _TCP_PROBE_S: a connect to a silent host blocks that long.
                if now >= node.next_probe:
                    node.next_probe = now + _TCP_PROBE_S
                    if _accepts(*ready.tcp):
                        self._became_ready(node)
                        continue
                if now >= node.ready_deadline:
                    self._not_ready(node)
            elif ready.log is not None and node.log_matched:
                self._became_ready(node)
            elif ready.file is not None and os.path.exists(
                    os.path.join(node.spec.cwd or os.getcwd(), ready.file)):
                self._became_ready(node)
            elif now >= node.ready_deadline:
                self._not_ready(node)

    def _not_ready(self, node: _Node) -> None:
        ready = node.spec.ready
        assert ready is not None
        self._say(f"{node.spec.name} not ready after {ready.timeout_s:g} s "
                  f"(waited for {ready.describe()})", error=True)
        self._node_failed(node, "never became ready")

    def _became_ready(self, node: _Node) -> None:
        node.state = _State.READY
        if not node.ever_ready:
            node.ever_ready = True
            took = self.clock() - node.started_at
            if node.spec.ready is not None:
                self._say(f"{node.spec.name} ready ({node.spec.ready.describe()}, "
                          f"{took:.2f} s)")

    def _node_failed(self, node: _Node, why: str) -> None:
        waiting = [n.spec.name for n in self.nodes
                   if n.state is _State.WAITING and self._depends_on(n, node.spec.name)]
        if waiting:
            self._say(f"{node.spec.name} {why}: {', '.join(waiting)} cannot start; "
                      "shutting down", error=True)
        else:
            self._say(f"{node.spec.name} {why}: shutting down", error=True)
        self._begin_stop(1)

    def _depends_on(self, node: _Node, name: str) -> bool:
        seen: set[str] = set()
        todo = list(node.spec.after)
        while todo:
            dep = todo.pop()
            if dep == name:
                return True
            if dep not in seen:
                seen.add(dep)
                todo.extend(self.by_name[dep].spec.after)
        return False

    # -- output --------------------------------------------------------------------------

    def _read_output(self, timeout: float) -> None:
        if not self.selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self.selector.select(timeout):
            self._drain(key.data, final=False)

    def _drain(self, node: _Node, final: bool) -> None:
        proc = node.proc
        if proc is None or proc.stdout is None:
            return
        # At most _MAX_READS chunks per turn: a node that never stops printing must not
        # starve the loop (readiness, reaping, signals) or the other nodes' output.
        for _ in range(_MAX_FINAL_READS if final else _MAX_READS):
            try:
                chunk = os.read(proc.stdout.fileno(), 65536)
            except BlockingIOError:
                chunk = None
            except OSError:
                chunk = b""
            if chunk:
                node.buffer += chunk
                self._emit_lines(node)
                continue
            if chunk == b"" or final:
                # EOF (or the process is gone): nothing more will come on this pipe.
                if chunk == b"":
                    self._unregister(node)
                if node.buffer:
                    self._line(node, node.buffer)
                    node.buffer = b""
            return

    def _emit_lines(self, node: _Node) -> None:
        *lines, node.buffer = node.buffer.split(b"\n")
        for line in lines:
            self._line(node, line)
        if len(node.buffer) > _MAX_LINE:
            self._line(node, node.buffer)
            node.buffer = b""

    def _line(self, node: _Node, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        ready = node.spec.ready
        if (ready is not None and ready.log is not None and not node.log_matched
                and ready.log.search(_ANSI.sub("", text))):
            node.log_matched = True
        self._write(node.spec.name, node.colour, text)

    def _unregister(self, node: _Node) -> None:
        if node.proc is not None and node.proc.stdout is not None:
            try:
                self.selector.unregister(node.proc.stdout)
            except (KeyError, ValueError):
                pass

    def _write(self, name: str, colour: str, text: str) -> None:
        if self.colour:
            prefix = f"\x1b[{colour}m{name:<{self.width}} |\x1b[0m "
        else:
            text = _ANSI.sub("", text)
            prefix = f"{name:<{self.width}} | "
        try:
            self.out.write(prefix + text + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass   # nobody is reading our output any more; keep supervising

    def _say(self, text: str, error: bool = False) -> None:
        self._write("launch", "1;31" if error else "1", text)

    # -- exits and respawns --------------------------------------------------------------

    def _reap(self, now: float) -> None:
        for node in self.nodes:
            proc = node.proc
            if proc is None or proc.poll() is None:
                continue
            self._drain(node, final=True)
            self._unregister(node)
            if proc.stdout is not None:
                proc.stdout.close()
            code = proc.returncode
            node.proc, node.returncode = None, code
            ran = now - node.started_at
            self._say(f"{node.spec.name} {_how_it_ended(code)} after {ran:.1f} s")
            if node.pgid is not None:
                # Whatever it started and left behind in its group goes with it.
                if group_alive(node.pgid):
                    signal_group(node.pgid, signal.SIGTERM)
                    node.leftover_groups[node.pgid] = now + min(node.spec.grace_s, 2.0)
                elif self.sentinel is not None:
                    self.sentinel.forget(node.pgid)
                node.pgid = None
            if self.stopping:
                node.state = _State.STOPPED
                continue
            self._after_exit(node, code, ran, now)

    def _after_exit(self, node: _Node, code: int, ran: float, now: float) -> None:
        spec = node.spec
        was_starting = node.state is _State.STARTING
        if was_starting and spec.ready is not None and spec.ready.exit_zero and code == 0:
            node.state = _State.STOPPED
            self._became_ready(node)
            return
        respawn = spec.respawn
        if ran >= respawn.reset_after_s:
            node.restarts = 0
        if respawn.wants_restart(code):
            if respawn.limit is None or node.restarts < respawn.limit:
                delay = respawn.delay_s(node.restarts)
                node.restarts += 1
                node.state = _State.BACKOFF
                node.restart_at = now + delay
                self._say(f"respawning {spec.name} in {delay:.1f} s "
                          f"({node.restarts}"
                          + (f" of {respawn.limit}" if respawn.limit is not None else "")
                          + f", policy {respawn.policy.value})")
                return
            self._say(f"{spec.name}: respawn limit {respawn.limit} reached", error=True)
            node.state = _State.STOPPED
            self._node_failed(node, "keeps failing")
            return
        node.state = _State.STOPPED
        if was_starting:
            self._node_failed(node, f"{_how_it_ended(code)} before it was ready")
        elif spec.shutdown_on_exit:
            self._say(f"{spec.name} ended and has on_exit: shutdown")
            self._begin_stop(_exit_status(code))

    def _respawn_due(self, now: float) -> None:
        for node in self.nodes:
            if (node.state is _State.BACKOFF and now >= node.restart_at
                    and not node.leftover_groups):
                self._start(node, now)

    def _clear_leftovers(self, now: float) -> None:
        for node in self.nodes:
            for pgid, kill_at in list(node.leftover_groups.items()):
                if not group_alive(pgid):
                    del node.leftover_groups[pgid]
                    if self.sentinel is not None:
                        self.sentinel.forget(pgid)
                elif now >= kill_at or self.hurry:
                    signal_group(pgid, signal.SIGKILL)

    # -- stopping ------------------------------------------------------------------------

    def _begin_stop(self, code: int) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.exit_code = code
        for node in self.nodes:
            if not node.running:
                node.state = _State.STOPPED

    def _stop_step(self, now: float) -> None:
        running = [n for n in self.nodes if n.running]
        for node in running:
            # Dependents first: a node is stopped once nothing running waits for it.
            if any(self._depends_on(other, node.spec.name) for other in running
                   if other is not node):
                if not self.hurry:
                    continue
            assert node.pgid is not None
            if node.term_sent_at is None:
                node.term_sent_at = now
                signal_group(node.pgid, signal.SIGTERM)
            elif not node.killed and (self.hurry or now - node.term_sent_at >= node.spec.grace_s):
                self._say(f"{node.spec.name} still running "
                          + ("" if self.hurry else f"{node.spec.grace_s:g} s after SIGTERM")
                          + ": SIGKILL")
                node.killed = True
                signal_group(node.pgid, signal.SIGKILL)

    def _kill_everything(self) -> None:
        """Last resort on the way out (an exception in the loop): leave nothing behind."""
        for node in self.nodes:
            groups = list(node.leftover_groups)
            if node.pgid is not None:
                groups.append(node.pgid)
            for pgid in groups:
                signal_group(pgid, signal.SIGKILL)
            if node.proc is not None:
                node.proc.wait()
                node.proc = None


def run_launch(description: LaunchDescription, duration_s: float | None = None,
               out: TextIO | None = None, colour: bool | None = None) -> int:
    return Launcher(description, out=out, colour=colour, duration_s=duration_s).run()


def _wants_colour(out: TextIO) -> bool:
    # https://no-color.org: NO_COLOR set (to anything) turns colour off.
    if "NO_COLOR" in os.environ:
        return False
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _exit_status(code: int) -> int:
    return 128 - code if code < 0 else code


def _shown(argv: list[str]) -> str:
    text = " ".join(shlex.quote(a) for a in argv)
    return text if len(text) <= 300 else text[:297] + "..."
