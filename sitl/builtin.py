"""The built-in simulator: many ArduPilot-like copters in one process, each on its own TCP port.

Each vehicle behaves like ArduPilot Copter SITL's serial0 (``tcp:5760+10*I``): it waits
for a client, prints the plain-text boot banner, then speaks MAVLink 2 (pymavlink,
ardupilotmega dialect) as sysid ``instance+1``, compid 1. One I/O thread serves every
vehicle with a selector; the vehicles themselves are sans-I/O (``sitl.copter``).

    with SimulatorServer([VehicleConfig(instance=i, tcp_port=0, speedup=10) for i in range(3)]) as sim:
        print(sim.endpoints)          # ['tcp:127.0.0.1:40123', ...]
        state = sim.state(0)          # VehicleState snapshot: mode, armed, position, mission...
"""

from __future__ import annotations

import errno
import math
import selectors
import socket
import threading
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from sitl._site import BASE_PORT, DEFAULT_HEADING, DEFAULT_HOME, east_of
from sitl.copter import Copter, VehicleState
from sitl.clock import SimClock

__all__ = ["VehicleConfig", "SimulatorServer", "VehicleState", "DEFAULT_HOME", "BASE_PORT"]

_MAX_OUTBUF = 1 << 20  # a client that stops reading loses frames beyond this, like a full UART
_MAX_WAKE_S = 0.01  # I/O thread wakes at least this often (wall seconds)


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class VehicleConfig:
    """One simulated copter. Every time is in simulated seconds (scaled by ``speedup``).

    ``sysid`` defaults to ``instance + 1`` and ``tcp_port`` to ``5760 + 10 * instance``;
    ``tcp_port=0`` picks a free port. ``time_to_ready_s`` is how long after boot the EKF
    has a position (arming refused before, like ArduPilot's ~40 s). With
    ``wait_for_connection`` (SITL's ``tcp:0:wait`` on serial0) the vehicle boots when
    its first client connects; otherwise when the server starts. ``gcs_*`` place the
    ground-station radio for the RADIO_STATUS signal model (default: home).
    """

    instance: int = 0
    sysid: int | None = None
    home_lat: float = DEFAULT_HOME[0]
    home_lon: float = DEFAULT_HOME[1]
    home_alt: float = DEFAULT_HOME[2]
    home_heading: float = DEFAULT_HEADING
    tcp_port: int | None = None
    speedup: float = 1.0
    time_to_ready_s: float = 40.0
    radio_status: bool = False
    battery_capacity_mah: float = 5000.0
    battery_voltage_full: float = 12.6
    battery_voltage_empty: float = 10.5
    battery_idle_current_a: float = 0.5
    battery_hover_current_a: float = 12.0
    battery_initial_pct: float = 100.0
    wp_speed_ms: float = 10.0
    wp_radius_m: float = 2.0
    gcs_lat: float | None = None
    gcs_lon: float | None = None
    gcs_alt: float | None = None
    seed: int = 0
    wait_for_connection: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.instance, bool) or not isinstance(self.instance, int) or not 0 <= self.instance <= 253:
            raise ValueError(f"instance must be an int in 0..253, not {self.instance!r}")
        sysid = self.instance + 1 if self.sysid is None else self.sysid
        if isinstance(sysid, bool) or not isinstance(sysid, int) or not 1 <= sysid <= 254:
            raise ValueError(f"sysid must be an int in 1..254, not {sysid!r}")
        object.__setattr__(self, "sysid", sysid)
        port = BASE_PORT + 10 * self.instance if self.tcp_port is None else self.tcp_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"tcp_port must be an int in 0..65535, not {port!r}")
        object.__setattr__(self, "tcp_port", port)
        if not -90 <= _finite("home_lat", self.home_lat) <= 90:
            raise ValueError(f"home_lat {self.home_lat} is outside -90..90")
        if not -180 <= _finite("home_lon", self.home_lon) <= 180:
            raise ValueError(f"home_lon {self.home_lon} is outside -180..180")
        if not -500 <= _finite("home_alt", self.home_alt) <= 9000:
            raise ValueError(f"home_alt {self.home_alt} m is not a plausible altitude")
        _finite("home_heading", self.home_heading)
        if _finite("speedup", self.speedup) <= 0:
            raise ValueError("speedup must be > 0")
        if _finite("time_to_ready_s", self.time_to_ready_s) < 0:
            raise ValueError("time_to_ready_s must be >= 0")
        for name in ("battery_capacity_mah", "battery_voltage_full", "wp_speed_ms", "wp_radius_m"):
            if _finite(name, getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("battery_voltage_empty", "battery_idle_current_a", "battery_hover_current_a"):
            if _finite(name, getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.battery_voltage_empty >= self.battery_voltage_full:
            raise ValueError("battery_voltage_empty must be below battery_voltage_full")
        if not 0 <= _finite("battery_initial_pct", self.battery_initial_pct) <= 100:
            raise ValueError("battery_initial_pct must be in 0..100")
        if self.gcs_lat is not None and not -90 <= _finite("gcs_lat", self.gcs_lat) <= 90:
            raise ValueError("gcs_lat is outside -90..90")
        if self.gcs_lon is not None and not -180 <= _finite("gcs_lon", self.gcs_lon) <= 180:
            raise ValueError("gcs_lon is outside -180..180")
        if self.gcs_alt is not None:
            _finite("gcs_alt", self.gcs_alt)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, not {self.seed!r}")
        for name in ("radio_status", "wait_for_connection"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool")


@dataclass
class _Slot:
    """A vehicle with its clock, listening socket and (at most one) client, like a SITL UART."""

    vehicle: Copter
    clock: SimClock
    listener: socket.socket
    port: int
    client: socket.socket | None = None
    pending: bytearray = field(default_factory=bytearray)


class SimulatorServer:
    """Serves ``configs`` (one copter each) from one background thread.

    A context manager; ``start()`` binds every port (raising ``OSError`` with the port
    number if one is taken) and returns once all are listening; ``stop()`` closes them
    and joins the thread. ``endpoints`` lists ``"tcp:127.0.0.1:PORT"`` per vehicle, in
    config order.
    """

    def __init__(self, configs: VehicleConfig | Iterable[VehicleConfig], host: str = "127.0.0.1") -> None:
        if isinstance(configs, VehicleConfig):
            configs = [configs]
        self._configs: list[VehicleConfig] = list(configs)
        if not self._configs:
            raise ValueError("SimulatorServer needs at least one VehicleConfig")
        for c in self._configs:
            if not isinstance(c, VehicleConfig):
                raise TypeError(f"expected VehicleConfig, got {type(c).__name__}")
        sysids = [c.sysid for c in self._configs]
        if len(set(sysids)) != len(sysids):
            raise ValueError(f"duplicate sysids {sysids}: every vehicle needs its own")
        ports = [c.tcp_port for c in self._configs if c.tcp_port]
        if len(set(ports)) != len(ports):
            raise ValueError(f"duplicate TCP ports {ports}")
        self._host = host
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._selector: selectors.BaseSelector | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "SimulatorServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("SimulatorServer already started")
        selector = selectors.DefaultSelector()
        slots: list[_Slot] = []
        try:
            for config in self._configs:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    listener.bind((self._host, config.tcp_port))
                except OSError as exc:
                    listener.close()
                    raise OSError(exc.errno, f"cannot listen on {self._host}:{config.tcp_port} "
                                             f"for instance {config.instance}: {exc.strerror}") from exc
                listener.listen(1)
                listener.setblocking(False)
                slot = _Slot(Copter(config), SimClock(config.speedup), listener, listener.getsockname()[1])
                slots.append(slot)
                selector.register(listener, selectors.EVENT_READ, (slot, "listen"))
        except BaseException:
            for s in slots:
                s.listener.close()
            selector.close()
            raise
        self._slots, self._selector = slots, selector
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="sitl-builtin", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout=5.0)
        self._thread = None
        assert self._selector is not None
        for slot in self._slots:
            if slot.client is not None:
                slot.client.close()
                slot.client = None
            slot.listener.close()
        self._selector.close()

    @property
    def endpoints(self) -> list[str]:
        """Connection strings, one per vehicle in config order (after ``start()``)."""
        if not self._slots:
            raise RuntimeError("SimulatorServer not started")
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return [f"tcp:{host}:{slot.port}" for slot in self._slots]

    @property
    def ports(self) -> list[int]:
        return [slot.port for slot in self._slots]

    def state(self, index: int) -> VehicleState:
        """A consistent snapshot of vehicle ``index`` (config order)."""
        with self._lock:
            return self._slots[index].vehicle.state()

    def states(self) -> list[VehicleState]:
        with self._lock:
            return [slot.vehicle.state() for slot in self._slots]

    def drop_connection(self, index: int) -> bool:
        """Close vehicle ``index``'s current client connection, as a cut cable would (the
        vehicle keeps flying and listening). Returns whether a client was connected."""
        with self._lock:
            slot = self._slots[index]
            had_client = slot.client is not None
            self._drop_client(slot)
            return had_client

    def inject(self, index: int, data: bytes) -> None:
        """Hand MAVLink bytes to vehicle ``index`` as if they came in on another of its
        ports (on a real autopilot: a ground station on the telemetry radio's serial
        port, while the companion holds serial0). Its replies, if any, go to the
        connected client: this simulator has one port. For tests that command a copter
        (a GUIDED goto) while an agent holds its link."""
        if type(data) is not bytes:
            raise TypeError("data must be bytes")
        with self._lock:
            slot = self._slots[index]
            slot.vehicle.on_bytes(data, slot.clock.now())

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped the I/O thread, if any."""
        return self._error

    # ------------------------------------------------------------------ the I/O thread
    def _run(self) -> None:
        assert self._selector is not None
        try:
            while not self._stopping.is_set():
                events = self._selector.select(timeout=_MAX_WAKE_S)
                with self._lock:
                    for key, _mask in events:
                        slot, kind = key.data
                        if kind == "listen":
                            self._accept(slot)
                        else:
                            self._receive(slot)
                    for slot in self._slots:
                        slot.vehicle.advance(slot.clock.now())
                        self._flush(slot)
                        if slot.vehicle.reboot_pending:
                            self._reboot(slot)
        except BaseException as exc:  # noqa: BLE001 - recorded for the owner to inspect
            self._error = exc
            raise

    def _reboot(self, slot: _Slot) -> None:
        """SITL reboots by re-executing itself: the COMMAND_ACK goes out, the TCP
        connection closes, and the new process waits for a client again."""
        self._flush(slot)
        if slot.client is not None and slot.pending:
            try:
                slot.client.setblocking(True)
                slot.client.settimeout(0.5)
                slot.client.sendall(slot.pending)
            except OSError:
                pass
        self._drop_client(slot)
        slot.vehicle.reboot()
        slot.vehicle.advance(slot.clock.now())  # boots at once when not waiting for a client

    def _accept(self, slot: _Slot) -> None:
        try:
            conn, _addr = slot.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if slot.client is not None:
            # SITL's UART serves one client: a newcomer replaces a stale one.
            self._drop_client(slot)
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        slot.client = conn
        slot.pending.clear()
        assert self._selector is not None
        self._selector.register(conn, selectors.EVENT_READ, (slot, "client"))
        slot.vehicle.on_connect(slot.clock.now())
        slot.vehicle.advance(slot.clock.now())
        self._flush(slot)

    def _drop_client(self, slot: _Slot) -> None:
        if slot.client is None:
            return
        assert self._selector is not None
        try:
            self._selector.unregister(slot.client)
        except (KeyError, ValueError):
            pass
        slot.client.close()
        slot.client = None
        slot.pending.clear()
        slot.vehicle.on_disconnect()

    def _receive(self, slot: _Slot) -> None:
        if slot.client is None:
            return
        try:
            data = slot.client.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop_client(slot)
            return
        if not data:  # EOF: the client went away; listen for the next one
            self._drop_client(slot)
            return
        slot.vehicle.on_bytes(data, slot.clock.now())

    def _flush(self, slot: _Slot) -> None:
        out = slot.vehicle.take_output()
        if slot.client is None:
            return
        if out:
            slot.pending += out
            if len(slot.pending) > _MAX_OUTBUF:
                del slot.pending[:len(slot.pending) - _MAX_OUTBUF]
        if not slot.pending:
            return
        try:
            sent = slot.client.send(slot.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self._drop_client(slot)
            return
        del slot.pending[:sent]


def configs_for(count: int, *, speedup: float = 1.0, time_to_ready_s: float = 40.0,
                home: Sequence[float] = DEFAULT_HOME, base_port: int = BASE_PORT,
                spacing_m: float = 5.0, radio_status: bool = False, seed: int = 0,
                wait_for_connection: bool = True,
                gcs: Sequence[float] | None = None) -> list[VehicleConfig]:
    """``count`` copters on SITL's port scheme, homes ``spacing_m`` apart eastward so they never share a spot."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 254:
        raise ValueError(f"count must be an int in 1..254, not {count!r}")
    if len(home) != 3:
        raise ValueError("home must be (lat, lon, alt)")
    lat, lon, alt = (_finite("home", v) for v in home)
    if isinstance(base_port, bool) or not isinstance(base_port, int) or not 0 <= base_port <= 65535:
        raise ValueError(f"base_port must be an int in 0..65535, not {base_port!r}")
    if base_port and base_port + 10 * (count - 1) > 65535:
        raise ValueError(f"{count} vehicles from port {base_port} run past 65535")
    if gcs is not None and len(gcs) not in (2, 3):
        raise ValueError("gcs must be (lat, lon) or (lat, lon, alt)")
    gcs_lat, gcs_lon, gcs_alt = (None, None, None) if gcs is None else (
        gcs[0], gcs[1], gcs[2] if len(gcs) == 3 else alt)
    configs = []
    for i in range(count):
        configs.append(VehicleConfig(
            instance=i, home_lat=lat, home_lon=east_of(lat, lon, i * spacing_m),
            home_alt=alt, tcp_port=(base_port + 10 * i) if base_port else 0, speedup=speedup,
            time_to_ready_s=time_to_ready_s, radio_status=radio_status, seed=seed + i,
            wait_for_connection=wait_for_connection, gcs_lat=gcs_lat, gcs_lon=gcs_lon, gcs_alt=gcs_alt))
    return configs
