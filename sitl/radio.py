"""The simulated telemetry radio: the project's one radio path-loss model, and a SiK
radio that sits in the MAVLink path the way a real one sits between flight controller
and companion computer.

ArduPilot SITL never sends RADIO_STATUS; on real aircraft the SiK radio injects it
itself (sysid 51, compid 68 = MAV_COMP_ID_TELEMETRY_RADIO). The radio is part of the
simulated world, so it lives here, not in the bridge (which only reads RADIO_STATUS, from
hardware or from this). :class:`SikRadio` computes one report from the vehicle position
it relays; :class:`SikRadioRelay` is a loopback TCP relay in front of any vehicle (real
SITL or the built-in one) that injects those reports; the built-in simulator's
``radio_status`` option uses :class:`SikRadio` in its own simulated time.

The model: received power falls with the log-distance path-loss law,
plus seeded log-normal shadowing, and the link drops out now and then once the fade
margin over the noise floor falls below 20 dB (more often as it shrinks). During a
dropout the simulator delivers nothing at all to the client, as a lost radio link would. Values are reported in SiK units, where
``dBm = rssi / 1.9 - 127`` (SiK firmware ``radio.c``).
"""

from __future__ import annotations

import math
import os
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import pymap3d

os.environ.setdefault("MAVLINK20", "1")
from pymavlink.dialects.v20 import ardupilotmega as _mav  # noqa: E402

# The SiK unit conversion and ids live once, with the bridge that reads them.
from mavlink_bridge._mav import SIK_RADIO_SYSID  # noqa: E402
from mavlink_bridge.signal import dbm_to_sik  # noqa: E402

__all__ = ["RADIO_COMPID", "RADIO_SYSID", "RadioModel", "RadioSample", "SikRadio", "SikRadioRelay",
           "dbm_to_sik"]

RADIO_SYSID, RADIO_COMPID = SIK_RADIO_SYSID, _mav.MAV_COMP_ID_TELEMETRY_RADIO  # SiK firmware's own ids


@dataclass(frozen=True, slots=True)
class RadioSample:
    """One RADIO_STATUS worth of signal figures (SiK units) and whether the link is up."""

    rssi: int
    remrssi: int
    noise: int
    remnoise: int
    link_up: bool


@dataclass
class RadioModel:
    """Log-distance path loss with shadowing and dropouts, seeded.

    ``reference_dbm`` is the received power at ``reference_m``; ``exponent`` is the
    path-loss exponent (2 in free space, 2.5-3 near the ground). A dropout starts with
    a probability per second that grows as the fade margin over ``noise_dbm`` shrinks
    and lasts ``dropout_s`` simulated seconds.
    """

    seed: int = 0
    reference_dbm: float = -30.0
    reference_m: float = 10.0
    exponent: float = 2.6
    shadowing_db: float = 2.0
    noise_dbm: float = -110.0
    dropout_base_per_s: float = 0.01
    dropout_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("reference_dbm", "reference_m", "exponent", "shadowing_db", "noise_dbm",
                     "dropout_base_per_s", "dropout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value!r}")
        if self.reference_m <= 0 or self.exponent <= 0:
            raise ValueError("reference_m and exponent must be > 0")
        if self.shadowing_db < 0 or self.dropout_base_per_s < 0 or self.dropout_s < 0:
            raise ValueError("shadowing_db, dropout_base_per_s and dropout_s must be >= 0")
        self._rng = random.Random(self.seed)
        self._dropout_until = -math.inf

    def mean_dbm(self, distance_m: float) -> float:
        """Mean received power at ``distance_m`` (no shadowing)."""
        d = max(distance_m, self.reference_m)
        return self.reference_dbm - 10.0 * self.exponent * math.log10(d / self.reference_m)

    def sample(self, distance_m: float, now: float, dt: float = 1.0) -> RadioSample:
        """Figures for one report at simulated time ``now``, ``dt`` seconds after the last."""
        if not math.isfinite(distance_m) or distance_m < 0:
            raise ValueError(f"distance must be a finite number >= 0, not {distance_m!r}")
        mean = self.mean_dbm(distance_m)
        local = mean + self._rng.gauss(0.0, self.shadowing_db)
        remote = mean + self._rng.gauss(0.0, self.shadowing_db)
        noise = self.noise_dbm + self._rng.gauss(0.0, 1.0)
        remnoise = self.noise_dbm + self._rng.gauss(0.0, 1.0)
        margin = min(local, remote) - noise
        # With more than 20 dB of fade margin the link is solid (no dropouts: with the
        # defaults, out to ~2 km); below it dropouts grow more frequent, and at 0 dB the
        # link is gone (~12 km).
        rate = 0.0 if margin >= 20.0 else self.dropout_base_per_s * math.exp((20.0 - margin) / 4.0)
        if now >= self._dropout_until and self._rng.random() < 1.0 - math.exp(-rate * dt):
            self._dropout_until = now + self.dropout_s
        link_up = now >= self._dropout_until and margin > 0.0
        return RadioSample(dbm_to_sik(local), dbm_to_sik(remote), dbm_to_sik(noise),
                           dbm_to_sik(remnoise), link_up)


class SikRadio:
    """One SiK radio link between the vehicle and a ground station at ``gcs``
    (lat, lon, alt AMSL): RADIO_STATUS figures from the vehicle's position, sans-I/O.

    :meth:`observe` takes the vehicle's position (or any MAVLink message: a valid
    GLOBAL_POSITION_INT of its autopilot is used); :meth:`report` gives the next
    report at time ``now`` (seconds; the caller's clock), and :meth:`radio_status`
    the same as a RADIO_STATUS message from system 51. Before any position the vehicle
    is taken to be at the ground station.
    """

    def __init__(self, gcs: tuple[float, float, float], model: RadioModel | None = None) -> None:
        lat, lon, alt = (float(v) for v in gcs)
        if not (-90 <= lat <= 90 and -180 <= lon <= 180 and math.isfinite(alt)):
            raise ValueError(f"ground station {gcs!r} is not a position")
        self.gcs = (lat, lon, alt)
        self.model = model if model is not None else RadioModel()
        self.position = self.gcs
        self._last: float | None = None
        self._mav = _mav.MAVLink(None, srcSystem=RADIO_SYSID, srcComponent=RADIO_COMPID)

    def observe_position(self, lat: float, lon: float, alt: float) -> None:
        if all(math.isfinite(v) for v in (lat, lon, alt)) and abs(lat) <= 90 and abs(lon) <= 180:
            self.position = (lat, lon, alt)

    def observe(self, msg: Any) -> None:
        if msg.get_type() == "GLOBAL_POSITION_INT" and msg.get_srcComponent() == _mav.MAV_COMP_ID_AUTOPILOT1 \
                and (msg.lat, msg.lon) != (0, 0):  # 0,0: ArduPilot before its GPS fix
            self.observe_position(msg.lat / 1e7, msg.lon / 1e7, msg.alt / 1000.0)

    def distance_m(self) -> float:
        e, n, u = pymap3d.geodetic2enu(*self.position, *self.gcs)
        return math.sqrt(e * e + n * n + u * u)

    def report(self, now: float) -> RadioSample:
        dt = 1.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        return self.model.sample(self.distance_m(), now, dt)

    def radio_status(self, sample: RadioSample) -> bytes:
        """RADIO_STATUS as the SiK firmware sends it (txbuf 100%, no errors)."""
        msg = self._mav.radio_status_encode(sample.rssi, sample.remrssi, 100, sample.noise, sample.remnoise, 0, 0)
        return bytes(msg.pack(self._mav))


class SikRadioRelay:
    """A simulated SiK radio between a vehicle's TCP serial port and its companion.

    Listens on ``127.0.0.1:port`` (0: a free one); each client is relayed to
    ``upstream_port`` byte for byte; once a second (wall clock) a RADIO_STATUS from
    system 51 computed from the vehicle positions it relayed is injected towards the
    client. While the modelled link is down nothing passes either way, as over a lost
    radio link. When the vehicle side closes (SITL killed), the client side is closed
    too, and the next client is relayed to the vehicle anew. One thread; ``close()``
    joins it.
    """

    def __init__(self, upstream_port: int, gcs: tuple[float, float, float], model: RadioModel | None = None,
                 port: int = 0, report_period_s: float = 1.0) -> None:
        self.radio = SikRadio(gcs, model)
        self.upstream_port = upstream_port
        self.report_period_s = report_period_s
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._parser = _mav.MAVLink(None)
        self._parser.robust_parsing = True
        self.reports = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sik-radio", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> "SikRadioRelay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, "listen")
        pair: tuple[socket.socket, socket.socket] | None = None
        next_report = time.monotonic()
        link_up = True

        def drop() -> None:
            nonlocal pair
            if pair is not None:
                for s in pair:
                    sel.unregister(s)
                    s.close()
                pair = None

        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.05):
                    if key.data == "listen":
                        try:
                            client, _addr = self._listener.accept()
                        except BlockingIOError:
                            continue
                        if pair is not None:  # one client, as a serial port
                            client.close()
                            continue
                        try:
                            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2.0)
                        except OSError:
                            client.close()
                            continue
                        pair = (client, upstream)
                        sel.register(client, selectors.EVENT_READ, "client")
                        sel.register(upstream, selectors.EVENT_READ, "vehicle")
                        continue
                    if pair is None:
                        continue
                    src, dst = (pair[0], pair[1]) if key.data == "client" else (pair[1], pair[0])
                    try:
                        data = src.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        drop()
                        continue
                    if key.data == "vehicle":
                        for msg in self._parser.parse_buffer(data) or ():
                            if msg.get_type() != "BAD_DATA":
                                self.radio.observe(msg)
                    if link_up:
                        try:
                            dst.sendall(data)
                        except OSError:
                            drop()
                now = time.monotonic()
                if now >= next_report:
                    next_report = now + self.report_period_s
                    sample = self.radio.report(now)
                    link_up = sample.link_up
                    if pair is not None and link_up:
                        try:
                            pair[0].sendall(self.radio.radio_status(sample))
                            self.reports += 1
                        except OSError:
                            drop()
        finally:
            drop()
            sel.close()
