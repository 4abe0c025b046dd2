"""Link quality: one score in [0, 1] with an age, from RADIO_STATUS.

The agent uses the score to prefer the best-connected drone as Raft leader. The source
sits behind one small interface (:class:`LinkQualitySource`), the way Skybrush keeps
"where RSSI comes from" apart from the driver (ext/mavlink/rssi.py).

:class:`RadioStatusSource`: RADIO_STATUS from a SiK telemetry radio. The radio itself
sends it as system 51 ('3'), component 68 ('D'). Its rssi/noise fields are raw SiK
units of about 1.9 per dB (SiK docs: dBm = rssi / 1.9 - 127). The fade margin
rssi - noise says how far the signal is above the noise floor; we take the weaker of
the local and remote ends, map 0 dB -> 0 and ``full_scale_db`` -> 1, and smooth the
score. The score, not the dB: a strong link's headroom above full scale (50 dB near the
ground station) would otherwise have to drain through the smoothing before a drop
showed, several reports late; the score moves from the first report that leaves the
scored range.

The bridge models no radio: in simulation the radio is part of the simulated world
(``sitl.radio``: a simulated SiK radio in the MAVLink path sends the same RADIO_STATUS,
for real SITL and the built-in simulator alike), so the score is read the same way
from hardware and from simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from mavlink_bridge._mav import SIK_RADIO_SYSID
from mavlink_bridge.telemetry import RadioStatus

__all__ = ["LinkQuality", "LinkQualitySource", "RadioStatusSource", "score_from_margin_db",
           "SIK_UNITS_PER_DB", "dbm_to_sik", "sik_to_dbm"]

SIK_UNITS_PER_DB = 1.9
_SIK_ZERO_DBM = -127.0  # the power SiK's scale starts at


def sik_to_dbm(units: float) -> float:
    """A SiK RSSI/noise reading (0..254) in dBm (SiK firmware radio.c: rssi / 1.9 - 127)."""
    return units / SIK_UNITS_PER_DB + _SIK_ZERO_DBM


def dbm_to_sik(dbm: float) -> int:
    """SiK's 0..254 scale for a power in dBm (the inverse of :func:`sik_to_dbm`, clamped)."""
    return int(max(0, min(254, round((dbm - _SIK_ZERO_DBM) * SIK_UNITS_PER_DB))))


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
        self._score = _Ewma(alpha)
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
        raw_db = min(margins) / SIK_UNITS_PER_DB
        margin_db = self._margin.update(raw_db)
        score = min(1.0, max(0.0, self._score.update(score_from_margin_db(raw_db, self.full_scale_db))))
        rssi_dbm = None
        if status.rssi is not None:
            rssi_dbm = self._rssi.update(sik_to_dbm(status.rssi))
        self._latest = LinkQuality(score=score,
                                   measured_at=now, source=self.name,
                                   fade_margin_db=margin_db, rssi_dbm=rssi_dbm)
        self.accepted += 1
        return True

    def quality(self, now: float) -> LinkQuality | None:
        return self._latest
