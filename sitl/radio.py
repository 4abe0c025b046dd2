"""A SiK telemetry-radio signal model for the simulator.

ArduPilot SITL never sends RADIO_STATUS; on real aircraft the SiK radio injects it
itself (sysid 51, compid 68 = MAV_COMP_ID_TELEMETRY_RADIO). The built-in simulator
can emulate such a radio: received power falls with the log-distance path-loss law,
plus seeded log-normal shadowing, and the link drops out now and then once the fade
margin over the noise floor falls below 20 dB (more often as it shrinks). During a
dropout the simulator delivers nothing at all to the client, as a lost radio link would. Values are reported in SiK units, where
``dBm = rssi / 1.9 - 127`` (SiK firmware ``radio.c``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["RadioModel", "RadioSample", "dbm_to_sik"]


def dbm_to_sik(dbm: float) -> int:
    """SiK's 0..254 RSSI scale for a power in dBm."""
    return int(max(0, min(254, round((dbm + 127.0) * 1.9))))


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
