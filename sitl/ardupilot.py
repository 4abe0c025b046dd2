"""Launch N real ArduPilot SITL copters (for users with an ArduPilot build).

Each instance I runs ``arducopter`` in its own working folder (its ``eeprom.bin``, logs
and terrain cache live there) as::

    arducopter --model quad --speedup S [--base-port P] -I I --home LAT,LON,ALT,HDG \\
               --defaults <ardupilot>/Tools/autotest/default_params/copter.parm,<dir>/identity.parm -w

``identity.parm`` sets ``SYSID_THISMAV I+1``; ``-w`` wipes the EEPROM so the defaults
apply. serial0 is MAVLink on TCP ``5760 + 10*I`` (SITL's ``tcp:0:wait``: the vehicle
boots when the first client connects). Homes are offset eastward so drones never share a
spot. :func:`wait_ready` connects, asks for EKF_STATUS_REPORT and GPS_RAW_INT, and
returns when the GPS has a 3D fix and the EKF reports an absolute horizontal position
(or says "EKF3 IMU0 is using GPS"), then disconnects so the user's link can take serial0.

:meth:`ArduPilotSITL.start` waits for every instance at once: an instance does not boot
until its serial0 is connected, so waiting one after the other made five copters boot
one after the other (about 45 s each at load 4: 208 s for five, over a 300 s launch
deadline on a loaded machine). An instance that exits while being waited for (for
example ``bind failed on port 5772 - Address already in use``: serial1/2 are on the base
port + 2 and + 3) is reported at once with the end of its ``sitl.log``, not as "nothing
listening" 30 s later.

The binary is found from the config, then ``$ARDUPILOT_SITL_BIN``, then
``$ARDUPILOT_HOME/build/sitl/bin/arducopter``, then ``arducopter`` on ``PATH``.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sitl._site import BASE_PORT, DEFAULT_HEADING, DEFAULT_HOME, east_of

__all__ = ["ArduPilotConfig", "ArduPilotNotFound", "ArduPilotSITL", "InstanceExited", "ReadyReport",
           "build_command",
           "find_arducopter", "find_copter_defaults", "wait_ready"]

_DEFAULTS_REL = Path("Tools/autotest/default_params/copter.parm")


class InstanceExited(ConnectionError):
    """The SITL process being waited for exited (the message says how, and what it logged)."""


class ArduPilotNotFound(FileNotFoundError):
    """No usable ``arducopter`` SITL binary (the message says where it looked)."""


@dataclass(frozen=True)
class ArduPilotConfig:
    """How to run ``count`` SITL copters. ``workdir`` holds one folder per instance."""

    count: int = 1
    binary: str | None = None
    defaults: tuple[str, ...] | None = None
    home: tuple[float, float, float, float] = (*DEFAULT_HOME, DEFAULT_HEADING)
    spacing_m: float = 5.0
    model: str = "quad"
    speedup: float = 1.0
    base_port: int = BASE_PORT
    workdir: str = "sitl-run"
    wipe: bool = True
    extra_args: tuple[str, ...] = ()
    ready_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count <= 254:
            raise ValueError(f"count must be an int in 1..254, not {self.count!r}")
        if len(self.home) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in self.home):
            raise ValueError(f"home must be four finite numbers (lat, lon, alt, heading), not {self.home!r}")
        if not -90 <= self.home[0] <= 90 or not -180 <= self.home[1] <= 180:
            raise ValueError(f"home {self.home[:2]} is off the globe")
        for name in ("spacing_m", "speedup", "ready_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, not {value!r}")
        if isinstance(self.base_port, bool) or not isinstance(self.base_port, int) \
                or not 1024 <= self.base_port <= 65535 - 10 * self.count:
            raise ValueError(f"base_port {self.base_port!r} leaves no room for {self.count} instances")
        if not self.model or any(c.isspace() for c in self.model):
            raise ValueError(f"model must be a SITL model name such as 'quad', not {self.model!r}")

    def port(self, instance: int) -> int:
        return self.base_port + 10 * instance

    def home_of(self, instance: int) -> tuple[float, float, float, float]:
        lat, lon, alt, hdg = self.home
        return lat, east_of(lat, lon, instance * self.spacing_m), alt, hdg


def find_arducopter(configured: str | None = None, env: dict[str, str] | None = None) -> Path:
    """The SITL binary to run, or :class:`ArduPilotNotFound` naming every place tried."""
    env = dict(os.environ) if env is None else env
    tried: list[str] = []
    candidates: list[str] = []
    if configured:
        candidates.append(configured)
    if env.get("ARDUPILOT_SITL_BIN"):
        candidates.append(env["ARDUPILOT_SITL_BIN"])
    if env.get("ARDUPILOT_HOME"):
        candidates.append(str(Path(env["ARDUPILOT_HOME"]) / "build/sitl/bin/arducopter"))
    for candidate in candidates:
        path = Path(candidate).expanduser()
        tried.append(str(path))
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
    on_path = shutil.which("arducopter", path=env.get("PATH"))
    tried.append("arducopter on PATH")
    if on_path:
        return Path(on_path).resolve()
    raise ArduPilotNotFound(
        "no ArduPilot SITL binary found (tried: " + ", ".join(tried) + "). Build one with "
        "'./waf configure --board sitl && ./waf copter' in an ArduPilot checkout and set "
        "ARDUPILOT_SITL_BIN=<checkout>/build/sitl/bin/arducopter, or use the built-in simulator "
        "(python -m sitl).")


def find_copter_defaults(binary: Path, env: dict[str, str] | None = None) -> Path | None:
    """``Tools/autotest/default_params/copter.parm`` of the checkout the binary was built in."""
    env = dict(os.environ) if env is None else env
    roots = [Path(env["ARDUPILOT_HOME"])] if env.get("ARDUPILOT_HOME") else []
    roots += list(binary.parents)[:5]  # <checkout>/build/sitl/bin/arducopter
    for root in roots:
        candidate = root / _DEFAULTS_REL
        if candidate.is_file():
            return candidate
    return None


def build_command(config: ArduPilotConfig, instance: int, binary: Path, defaults: Sequence[Path],
                  identity_parm: Path) -> list[str]:
    """The argv for SITL instance ``instance`` (options as ``SITL_cmdline.cpp`` parses them)."""
    if not 0 <= instance < config.count:
        raise ValueError(f"instance {instance} outside 0..{config.count - 1}")
    lat, lon, alt, hdg = config.home_of(instance)
    argv = [str(binary), "--model", config.model, "--speedup", f"{config.speedup:g}"]
    if config.base_port != BASE_PORT:
        # An explicit --base-port is not shifted by -I (observed on Copter 4.6 SITL: a
        # second instance given the same --base-port fails to bind it): give each
        # instance its own. It must precede -I.
        argv += ["--base-port", str(config.port(instance))]
    argv += ["-I", str(instance), "--home", f"{lat:.7f},{lon:.7f},{alt:g},{hdg:g}",
             "--defaults", ",".join([str(p) for p in defaults] + [str(identity_parm)])]
    if config.wipe:
        argv.append("-w")
    argv += list(config.extra_args)
    return argv


@dataclass(frozen=True)
class ReadyReport:
    """What :func:`wait_ready` saw: the vehicle's ids, GPS fix and EKF flags."""

    endpoint: str
    sysid: int
    fix_type: int
    ekf_flags: int
    seconds: float
    statustexts: tuple[str, ...] = field(default=())


def wait_ready(endpoint: str, timeout_s: float = 120.0, connect_timeout_s: float = 30.0,
               exited: Callable[[], str | None] = lambda: None) -> ReadyReport:
    """Connect to ``endpoint``, wait for heartbeat, 3D GPS fix and EKF position, then disconnect.

    Raises ``TimeoutError`` (saying which condition was still missing) when ``timeout_s``
    passes, and ``ConnectionError`` when nothing listens within ``connect_timeout_s`` or
    when ``exited()`` (polled while waiting) says why the process serving it is gone.
    """
    os.environ.setdefault("MAVLINK20", "1")
    from pymavlink import mavutil

    mav = mavutil.mavlink
    host, port = _tcp_host_port(endpoint)
    deadline = time.monotonic() + connect_timeout_s
    while True:  # SITL opens its port a moment after the process starts
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            break
        except OSError:
            gone = exited()
            if gone is not None:
                raise InstanceExited(f"{endpoint}: {gone}") from None
            if time.monotonic() > deadline:
                raise ConnectionError(f"nothing is listening on {endpoint} after {connect_timeout_s} s") from None
            time.sleep(0.2)
    try:
        start = time.monotonic()
        conn = mavutil.mavlink_connection(endpoint, source_system=255, source_component=190,
                                          dialect="ardupilotmega", autoreconnect=False)
        try:
            texts: list[str] = []
            sysid, fix, flags, using_gps = 0, 0, 0, False
            requested_at = -math.inf
            deadline = start + timeout_s
            while time.monotonic() < deadline:
                msg = conn.recv_match(blocking=True, timeout=0.5)
                now = time.monotonic()
                gone = exited()
                if gone is not None:
                    raise InstanceExited(f"{endpoint}: {gone}")
                if sysid and now - requested_at > 2.0:
                    # ArduPilot streams nothing unless asked; ask again in case a request was lost.
                    requested_at = now
                    for msgid in (mav.MAVLINK_MSG_ID_EKF_STATUS_REPORT, mav.MAVLINK_MSG_ID_GPS_RAW_INT):
                        conn.mav.command_long_send(sysid, 1, mav.MAV_CMD_SET_MESSAGE_INTERVAL, 0,
                                                   msgid, 500_000, 0, 0, 0, 0, 0)
                if msg is None:
                    continue
                kind = msg.get_type()
                if kind == "HEARTBEAT" and msg.get_srcComponent() == 1 and msg.type != mav.MAV_TYPE_GCS:
                    sysid = msg.get_srcSystem()
                elif kind == "GPS_RAW_INT":
                    fix = msg.fix_type
                elif kind == "EKF_STATUS_REPORT":
                    flags = msg.flags
                elif kind == "STATUSTEXT":
                    texts.append(msg.text)
                    using_gps = using_gps or ("is using GPS" in msg.text)
                ekf_ok = (bool(flags & mav.EKF_POS_HORIZ_ABS) and not flags & mav.EKF_CONST_POS_MODE) or using_gps
                if sysid and fix >= 3 and ekf_ok:
                    return ReadyReport(endpoint, sysid, fix, flags, now - start, tuple(texts))
            missing = [name for name, ok in (("heartbeat", sysid), ("3D GPS fix", fix >= 3),
                                             ("EKF position", (flags & mav.EKF_POS_HORIZ_ABS) or using_gps)) if not ok]
            raise TimeoutError(f"{endpoint} not ready after {timeout_s} s: no {', '.join(missing)}")
        finally:
            conn.close()
    except (InstanceExited, TimeoutError):
        raise
    except OSError as exc:
        # The instance went away under us (e.g. it bound serial0, then failed to bind
        # serial1 and exited: the connection is reset): say why, if it did.
        for _ in range(20):
            gone = exited()
            if gone is not None:
                raise InstanceExited(f"{endpoint}: {gone}") from exc
            time.sleep(0.1)
        raise


def _tcp_host_port(endpoint: str) -> tuple[str, int]:
    parts = endpoint.split(":")
    if len(parts) != 3 or parts[0] != "tcp" or not parts[2].isdigit():
        raise ValueError(f"expected tcp:HOST:PORT, not {endpoint!r}")
    return parts[1], int(parts[2])


class ArduPilotSITL:
    """Runs the configured SITL copters; a context manager that stops them on exit."""

    def __init__(self, config: ArduPilotConfig) -> None:
        self.config = config
        self.binary = find_arducopter(config.binary)
        if config.defaults is not None:
            self.defaults = [Path(p) for p in config.defaults]
            missing = [str(p) for p in self.defaults if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"defaults file(s) not found: {', '.join(missing)}")
        else:
            found = find_copter_defaults(self.binary)
            self.defaults = [found] if found else []
        self._procs: list[subprocess.Popen] = []
        self._logs: list[object] = []
        self.reports: list[ReadyReport] = []

    @property
    def endpoints(self) -> list[str]:
        return [f"tcp:127.0.0.1:{self.config.port(i)}" for i in range(self.config.count)]

    def folder(self, instance: int) -> Path:
        """Instance ``instance``'s working folder (eeprom.bin, logs, identity.parm)."""
        return Path(self.config.workdir).resolve() / f"instance{instance}"

    def commands(self) -> list[list[str]]:
        return [build_command(self.config, i, self.binary, self.defaults, self.folder(i) / "identity.parm")
                for i in range(self.config.count)]

    def start(self, wait: bool = True) -> list[ReadyReport]:
        try:
            for i, argv in enumerate(self.commands()):
                folder = self.folder(i)
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "identity.parm").write_text(f"SYSID_THISMAV {i + 1}\n")
                log = open(folder / "sitl.log", "wb")  # noqa: SIM115 - closed in stop()
                self._logs.append(log)
                self._procs.append(subprocess.Popen(argv, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL, start_new_session=True))
            if wait:
                # All at once: each instance boots only once its serial0 is connected.
                with ThreadPoolExecutor(self.config.count, thread_name_prefix="sitl-ready") as pool:
                    waits = [pool.submit(wait_ready, ep, self.config.ready_timeout_s, 30.0,
                                         self._exited_reason(i))
                             for i, ep in enumerate(self.endpoints)]
                    try:
                        for done in as_completed(waits):
                            done.result()   # the first failure, as soon as it happens
                    except BaseException:
                        self.stop()         # the other waits then end at once (exited)
                        raise
                    self.reports = [w.result() for w in waits]
        except BaseException:
            self.stop()
            raise
        return self.reports

    def _exited_reason(self, instance: int) -> Callable[[], str | None]:
        """For :func:`wait_ready`: None while instance ``instance`` runs, else its exit
        status and the last lines of its sitl.log (what arducopter said before exiting)."""
        proc, path = self._procs[instance], self.folder(instance) / "sitl.log"

        def reason() -> str | None:
            status = proc.poll()
            if status is None:
                return None
            try:
                tail = path.read_text(errors="replace").strip().splitlines()[-3:]
            except OSError:
                tail = []
            return (f"arducopter instance {instance} exited with status {status}"
                    + (f" ({path}: {' / '.join(tail)})" if tail else ""))
        return reason

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for log in self._logs:
            log.close()  # type: ignore[attr-defined]
        self._procs, self._logs = [], []

    def __enter__(self) -> "ArduPilotSITL":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
