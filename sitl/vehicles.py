"""One simulated copter behind one handle, whichever simulator runs it.

:func:`launch` starts a copter of either kind, real ArduPilot SITL (``"ardupilot"``) or
the built-in simulator (``"builtin"``), on a free TCP port in its own temporary folder,
and returns a :class:`SimulatedVehicle`: its ``endpoint``, ``sysid`` and ``home``, and
the life-cycle a test or a benchmark needs: :meth:`~SimulatedVehicle.kill` (SIGKILL for
SITL: no clean shutdown, as a crash or a pulled battery), :meth:`~SimulatedVehicle.boot`
(a fresh start on the same endpoint, with a wiped EEPROM like ``arducopter -w``), and
:meth:`~SimulatedVehicle.close`. With ``radio=True`` a simulated SiK radio
(:class:`sitl.radio.SikRadioRelay`) sits in front of the copter and ``endpoint`` is the
radio's: the companion gets RADIO_STATUS from system 51 from either kind. Code written against the handle runs unchanged on
both kinds: that is how the bridge's tests and bench/ compare the two side by side.

:func:`ardupilot_binary_from_env` is the policy for "is real SITL expected here":
``$ARDUPILOT_SITL_BIN`` set means yes, and a missing or broken binary is an error
(raised, never a skip); unset means the user has no build.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from sitl._site import DEFAULT_HEADING, DEFAULT_HOME
from sitl.ardupilot import (
    ArduPilotConfig, ArduPilotNotFound, build_command, find_arducopter, find_copter_defaults, wait_ready,
)
from sitl.builtin import SimulatorServer, VehicleConfig
from sitl.radio import RadioModel, SikRadioRelay

__all__ = ["KINDS", "SimulatedVehicle", "VehicleKind", "ardupilot_binary_from_env", "free_port_block", "launch"]

VehicleKind = Literal["builtin", "ardupilot"]
KINDS: tuple[VehicleKind, ...] = ("builtin", "ardupilot")

# Simulated seconds the built-in copter's EKF needs before it has a position. Real SITL
# takes about 40 s of vehicle time from boot; tests and benchmarks want the built-in one
# faster, and nothing in it depends on the exact value.
BUILTIN_TIME_TO_READY_S = 10.0


def ardupilot_binary_from_env(env: dict[str, str] | None = None) -> Path | None:
    """The SITL binary ``$ARDUPILOT_SITL_BIN`` names, None when the variable is unset.

    Raises :class:`~sitl.ardupilot.ArduPilotNotFound` when it is set but names no
    executable file: whoever set it expects real SITL, so its absence is a failure.
    """
    env = dict(os.environ) if env is None else env
    configured = env.get("ARDUPILOT_SITL_BIN", "").strip()
    if not configured:
        return None
    path = Path(configured).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ArduPilotNotFound(f"ARDUPILOT_SITL_BIN={configured!r} is not an executable file")
    return path.resolve()


def free_port_block(size: int = 10, rng: random.Random | None = None, host: str = "127.0.0.1") -> int:
    """A base port P with P..P+size-1 free for TCP and UDP on ``host`` right now.

    SITL instance 0 with ``--base-port P`` opens serial0..2 on TCP P, P+2, P+3 and its
    simulator inputs nearby; a block of 10 (SITL's own spacing per instance) covers them.
    Chosen at random in 20000 up to the kernel's ephemeral range (32768 by default), so
    parallel test runs rarely even try the same block, and no outgoing connection can take
    one of its ports before SITL binds it (``swarm.bus.broker.free_port`` explains).
    """
    rng = rng or random.Random()
    try:
        top = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        top = 32768
    if top - 20000 < 10 * size:
        top = 60000  # an unusual range: fall back to anywhere above 20000
    for _ in range(200):
        base = rng.randrange(20000, top - size)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise OSError("no free block of ports found")


class SimulatedVehicle:
    """A copter of ``kind`` on ``endpoint`` (system id 1), homed at ``home``.

    Not started by the constructor: :meth:`boot` starts it (``wait_ready`` waits, as
    :func:`sitl.ardupilot.wait_ready` does, until the GPS has a fix and the EKF a
    position, then lets go of the connection); :meth:`close` stops it for good.
    """

    def __init__(self, kind: VehicleKind, *, speedup: float, home: tuple[float, float, float],
                 binary: Path | None = None, workdir: Path | None = None,
                 builtin_time_to_ready_s: float = BUILTIN_TIME_TO_READY_S,
                 ready_timeout_s: float = 120.0, radio: bool = False, radio_seed: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"vehicle kind must be one of {KINDS}, not {kind!r}")
        self.kind: VehicleKind = kind
        self.speedup = float(speedup)
        self.home = home
        self.sysid = 1
        self.ready_timeout_s = ready_timeout_s
        self._builtin_ready_s = builtin_time_to_ready_s
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sitl-{kind}-")) if workdir is None else Path(workdir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._server: SimulatorServer | None = None
        self.boots = 0
        self.radio: SikRadioRelay | None = None
        self._radio_seed = radio_seed if radio else None
        if kind == "ardupilot":
            self.binary = find_arducopter(str(binary) if binary else None)
            defaults = find_copter_defaults(self.binary)
            if defaults is None:
                raise ArduPilotNotFound(f"no Tools/autotest/default_params/copter.parm next to {self.binary}")
            self.defaults = defaults
            self.port = free_port_block()
        else:
            self.port = free_port_block(1)

    @property
    def endpoint(self) -> str:
        """Where a companion connects: through the simulated SiK radio when there is one
        (it outlives the vehicle's restarts, as a radio stays powered)."""
        if self.radio is not None:
            return self.radio.endpoint
        return f"tcp:127.0.0.1:{self.port}"

    @property
    def vehicle_endpoint(self) -> str:
        """The vehicle's own serial0, bypassing any radio."""
        return f"tcp:127.0.0.1:{self.port}"

    @property
    def server(self) -> SimulatorServer | None:
        """The built-in simulator serving the copter (None for real SITL, or when stopped):
        tests may read its ground truth (``server.state(0)``)."""
        return self._server

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._server is not None

    @property
    def log_path(self) -> Path:
        return self.workdir / "sitl.log"

    def boot(self, wait_ready: bool = True) -> "SimulatedVehicle":
        """Start the copter afresh (EEPROM wiped: parameters at their defaults, no
        mission, fence or rally). With ``wait_ready`` return once it could be armed in
        GUIDED; otherwise at once (it boots when the first client connects)."""
        if self.running:
            raise RuntimeError(f"{self.kind} vehicle already running")
        if self.kind == "ardupilot":
            self._start_sitl()
        else:
            cfg = VehicleConfig(instance=0, tcp_port=self.port, speedup=self.speedup,
                                time_to_ready_s=self._builtin_ready_s, home_lat=self.home[0],
                                home_lon=self.home[1], home_alt=self.home[2])
            self._server = SimulatorServer([cfg])
            self._server.start()
        self.boots += 1
        if self._radio_seed is not None and self.radio is None:
            # The ground station's radio is at home; the vehicle's one is on serial0.
            self.radio = SikRadioRelay(self.port, self.home, RadioModel(seed=self._radio_seed))
        if wait_ready:
            try:
                self.wait_ready()
            except BaseException:
                self.kill()
                raise
        return self

    def wait_ready(self) -> None:
        try:
            wait_ready(self.vehicle_endpoint, self.ready_timeout_s)
        except (TimeoutError, ConnectionError) as exc:
            raise type(exc)(f"{exc}{self._log_tail()}") from None

    def _start_sitl(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        identity = self.workdir / "identity.parm"
        identity.write_text(f"SYSID_THISMAV {self.sysid}\n")
        config = ArduPilotConfig(count=1, speedup=self.speedup, base_port=self.port,
                                 home=(*self.home, DEFAULT_HEADING), workdir=str(self.workdir))
        argv = build_command(config, 0, self.binary, [self.defaults], identity)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30.0
        while True:  # SITL opens serial0 a moment after it starts; fail fast if it dies
            if self._proc.poll() is not None:
                raise RuntimeError(f"arducopter exited with status {self._proc.returncode} at start"
                                   f"{self._log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise ConnectionError(f"arducopter did not open {self.endpoint}{self._log_tail()}") from None
                time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-15:]
        except OSError:
            return ""
        return "\n--- sitl.log (tail) ---\n" + "\n".join(lines) if lines else ""

    def kill(self) -> None:
        """Stop the copter without a clean shutdown (SIGKILL to SITL's process group)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._proc.wait(timeout=10)
            self._proc = None
            # A killed SITL leaves its EEPROM: boot() must start wiped, as -w says.
            (self.workdir / "eeprom.bin").unlink(missing_ok=True)
        if self._server is not None:
            self._server.stop()
            self._server = None

    def restart(self, wait_ready: bool = True) -> "SimulatedVehicle":
        self.kill()
        return self.boot(wait_ready=wait_ready)

    def close(self) -> None:
        self.kill()
        if self.radio is not None:
            self.radio.close()
            self.radio = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "SimulatedVehicle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SimulatedVehicle({self.kind!r}, {self.endpoint}, boots={self.boots})"


def launch(kind: VehicleKind, *, speedup: float = 10.0,
           home: tuple[float, float, float] = DEFAULT_HOME, binary: Path | None = None,
           wait_ready: bool = True, **options: Any) -> SimulatedVehicle:
    """Start one copter of ``kind`` and return its handle (close it when done).

    For ``"ardupilot"`` the binary is ``binary``, else found as :func:`find_arducopter`
    does; ``speedup`` is SITL's ``--speedup`` or the built-in simulator's.
    """
    vehicle = SimulatedVehicle(kind, speedup=speedup, home=home, binary=binary, **options)  # type: ignore[arg-type]
    try:
        return vehicle.boot(wait_ready=wait_ready)
    except BaseException:
        vehicle.close()
        raise
