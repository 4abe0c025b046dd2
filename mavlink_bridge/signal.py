"""Link quality: one score in [0, 1] with an age, from a radio or from a model.

The agent uses the score to prefer the best-connected drone as Raft leader. There are
two sources behind one small interface (:class:`LinkQualitySource`), the way Skybrush
keeps "where RSSI comes from" apart from the driver (ext/mavlink/rssi.py):

* :class:`RadioStatusSource`: RADIO_STATUS from a SiK telemetry radio. The radio itself
  sends it as system 51 ('3'), component 68 ('D'). Its rssi/noise fields are raw SiK
  units of about 1.9 per dB (SiK docs: dBm = rssi / 1.9 - 127). The fade margin
  rssi - noise says how far the signal is above the noise floor; we take the weaker of
  the local and remote ends, smooth it, and map 0 dB -> 0 and ``full_scale_db`` -> 1.
* :class:`SimulatedSignalSource`: ArduPilot SITL never sends RADIO_STATUS, so in
  simulation the margin comes from a log-distance path-loss model from the ground
  station, with seeded log-normal shadowing and random dropouts. Same seed and same
  positions give the same scores.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

import pymap3d

from mavlink_bridge._mav import SIK_RADIO_SYSID
from mavlink_bridge.telemetry import RadioStatus

__all__ = ["LinkQuality", "LinkQualitySource", "RadioStatusSource", "SignalModel",
           "SimulatedSignalSource", "score_from_margin_db", "SIK_UNITS_PER_DB"]

SIK_UNITS_PER_DB = 1.9


@dataclass(frozen=True, slots=True)
class LinkQuality:
    """A link-quality measurement: ``score`` in [0, 1], taken at ``measured_at``."""

    score: float
    measured_at: float
    source: str
    fade_margin_db: float | None = None
    rssi_dbm: float | None = None
    dropout: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.score) and 0.0 <= self.score <= 1.0):
            raise ValueError(f"score {self.score!r} must be in [0, 1]")
        if not math.isfinite(self.measured_at):
            raise ValueError("measured_at must be finite")

    def age(self, now: float) -> float:
        return max(0.0, now - self.measured_at)

    def score_at(self, now: float, max_age_s: float = 5.0) -> float:
        """The score, or 0 once the measurement is older than ``max_age_s``: a radio
        that stopped reporting is no evidence of a good link."""
        return self.score if self.age(now) <= max_age_s else 0.0


class LinkQualitySource(Protocol):
    def quality(self, now: float) -> LinkQuality | None:
        """The latest smoothed measurement, or None before the first one."""
        ...


def score_from_margin_db(margin_db: float, full_scale_db: float = 30.0) -> float:
    """Fade margin (dB above the noise floor) -> score: linear from 0 dB to full scale."""
    if not math.isfinite(margin_db):
        return 0.0
    return min(1.0, max(0.0, margin_db / full_scale_db))


class _Ewma:
    def __init__(self, alpha: float) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"smoothing alpha {alpha!r} must be in (0, 1]")
        self.alpha = alpha
        self.value: float | None = None

    def update(self, x: float) -> float:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)
        return self.value


class RadioStatusSource:
    """Link quality from RADIO_STATUS.

    ``accept_sysids``: systems whose RADIO_STATUS counts; the default is SiK radios
    (51). Pass ``None`` to accept any system (e.g. a radio configured differently).
    """

    name = "radio_status"

    def __init__(self, accept_sysids: frozenset[int] | None = frozenset({SIK_RADIO_SYSID}),
                 alpha: float = 0.3, full_scale_db: float = 30.0) -> None:
        self.accept_sysids = accept_sysids
        self.full_scale_db = full_scale_db
        self._margin = _Ewma(alpha)
        self._rssi = _Ewma(alpha)
        self._latest: LinkQuality | None = None
        self.accepted = 0
        self.ignored = 0

    def feed(self, sysid: int, status: RadioStatus, now: float) -> bool:
        """Take one RADIO_STATUS from ``sysid``; False when ignored (other system, or
        rssi/noise unknown)."""
        if self.accept_sysids is not None and sysid not in self.accept_sysids:
            self.ignored += 1
            return False
        margins = []
        if status.rssi is not None and status.noise is not None:
            margins.append(status.rssi - status.noise)
        if status.remrssi is not None and status.remnoise is not None:
            margins.append(status.remrssi - status.remnoise)
        if not margins:
            self.ignored += 1
            return False
        margin_db = self._margin.update(min(margins) / SIK_UNITS_PER_DB)
        rssi_dbm = None
        if status.rssi is not None:
            rssi_dbm = self._rssi.update(status.rssi / SIK_UNITS_PER_DB - 127.0)
        self._latest = LinkQuality(score=score_from_margin_db(margin_db, self.full_scale_db),
                                   measured_at=now, source=self.name,
                                   fade_margin_db=margin_db, rssi_dbm=rssi_dbm)
        self.accepted += 1
        return True

    def quality(self, now: float) -> LinkQuality | None:
        return self._latest


@dataclass(frozen=True, slots=True)
class SignalModel:
    """Log-distance path loss: PL(d) = ref_loss_db + 10 n log10(d / 1 m) + X_sigma.

    Defaults suit a 915 MHz SiK radio at 20 dBm in open air (free-space loss at 1 m
    is about 31.7 dB at 915 MHz; n a little above 2 for air-to-ground).
    """

    tx_power_dbm: float = 20.0
    ref_loss_db: float = 31.7
    path_loss_exponent: float = 2.2
    noise_floor_dbm: float = -110.0
    shadowing_sigma_db: float = 2.0
    dropout_probability: float = 0.02
    full_scale_db: float = 30.0
    smoothing_alpha: float = 0.3

    def __post_init__(self) -> None:
        for name in ("tx_power_dbm", "ref_loss_db", "path_loss_exponent", "noise_floor_dbm",
                     "shadowing_sigma_db", "dropout_probability", "full_scale_db"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if self.path_loss_exponent <= 0 or self.full_scale_db <= 0 or self.shadowing_sigma_db < 0:
            raise ValueError("path_loss_exponent and full_scale_db must be > 0, sigma >= 0")
        if not 0.0 <= self.dropout_probability < 1.0:
            raise ValueError("dropout_probability must be in [0, 1)")


class SimulatedSignalSource:
    """Modelled link quality between a vehicle and a ground station (for SITL).

    Call :meth:`sample` with the vehicle position each time telemetry arrives;
    :meth:`quality` returns the latest smoothed result.
    """

    name = "simulated"

    def __init__(self, ground_station: tuple[float, float, float], seed: int,
                 model: SignalModel = SignalModel()) -> None:
        lat, lon, alt = ground_station
        if not (-90 <= lat <= 90 and -180 <= lon <= 180 and math.isfinite(alt)):
            raise ValueError(f"ground station {ground_station!r} is not a valid position")
        self.ground_station = (float(lat), float(lon), float(alt))
        self.model = model
        self._rng = random.Random(seed)
        self._margin = _Ewma(model.smoothing_alpha)
        self._latest: LinkQuality | None = None

    def distance_m(self, lat: float, lon: float, alt: float) -> float:
        e, n, u = pymap3d.geodetic2enu(lat, lon, alt, *self.ground_station)
        return math.sqrt(e * e + n * n + u * u)

    def rssi_dbm(self, distance_m: float) -> float:
        """Mean received power at ``distance_m`` (without shadowing)."""
        m = self.model
        d = max(distance_m, 1.0)
        return m.tx_power_dbm - (m.ref_loss_db + 10.0 * m.path_loss_exponent * math.log10(d))

    def sample(self, lat: float, lon: float, alt: float, now: float) -> LinkQuality:
        if not (math.isfinite(lat) and math.isfinite(lon) and math.isfinite(alt)):
            raise ValueError("vehicle position must be finite")
        m = self.model
        # Draw both random numbers every time so a dropout does not shift the sequence.
        shadow = self._rng.gauss(0.0, m.shadowing_sigma_db) if m.shadowing_sigma_db else 0.0
        dropped = self._rng.random() < m.dropout_probability
        rssi = self.rssi_dbm(self.distance_m(lat, lon, alt)) + shadow
        if dropped:
            self._latest = LinkQuality(score=0.0, measured_at=now, source=self.name,
                                       fade_margin_db=None, rssi_dbm=None, dropout=True)
            return self._latest
        margin = self._margin.update(rssi - m.noise_floor_dbm)
        self._latest = LinkQuality(score=score_from_margin_db(margin, m.full_scale_db),
                                   measured_at=now, source=self.name, fade_margin_db=margin,
                                   rssi_dbm=rssi)
        return self._latest

    def quality(self, now: float) -> LinkQuality | None:
        return self._latest
