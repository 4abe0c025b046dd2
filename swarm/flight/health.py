"""When this drone's own telemetry changes what the swarm should do with it.

Telemetry arrives many times a second; the replicated map must change only when the
drone's availability does (issue 10): the flight-controller link is lost (the drone is
unavailable), the battery falls to critical (the drone must go home and gets no new
work), or the drone is back in service. :class:`HealthMonitor` turns samples into those
few transitions with two guards against flapping:

* **thresholds with hysteresis**: the battery is critical at or below
  ``battery_critical_pct`` and in service again only at or above
  ``battery_recovered_pct`` (a sagging battery under load crosses one value many times);
* **dwell times**: a condition must hold for ``lost_after_s`` / ``critical_after_s`` /
  ``recovered_after_s`` before it counts (a dropped MAVLink packet or a voltage spike
  during a climb is not a state change).

Pure and clock-free: the caller passes monotonic seconds, so tests drive it by hand.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = ["Availability", "HealthMonitor", "HealthPolicy"]


class Availability(enum.Enum):
    """What the map should say about this drone."""

    IN_SERVICE = "in_service"          # alive, may be given work
    BATTERY_CRITICAL = "battery_critical"  # alive, must return home, no new work
    UNAVAILABLE = "unavailable"        # flight controller unreachable: not alive


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    battery_critical_pct: float = 20.0
    battery_recovered_pct: float = 30.0
    lost_after_s: float = 5.0
    critical_after_s: float = 3.0
    recovered_after_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("battery_critical_pct", "battery_recovered_pct", "lost_after_s",
                     "critical_after_s", "recovered_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0 <= self.battery_critical_pct < self.battery_recovered_pct <= 100:
            raise ValueError("need 0 <= battery_critical_pct < battery_recovered_pct <= 100 "
                             f"(got {self.battery_critical_pct}, {self.battery_recovered_pct}): "
                             "the gap between them is the hysteresis")


class HealthMonitor:
    """Debounced availability from (fc_connected, battery) samples.

    :meth:`update` returns the new :class:`Availability` when it changes, else None.
    The first state is UNAVAILABLE until the flight controller has been connected for
    ``recovered_after_s`` (a drone is put in service only once it has proved it is up).
    That first state is not yet a verdict: :attr:`decided` turns True with the first
    transition, or once the flight controller has stayed unreachable for
    ``lost_after_s`` from the first sample. Until then nothing should be committed
    about the drone (an agent restarted under a flying drone must not mark it dead
    for the seconds it takes to hear its flight controller again).
    An unknown battery (None) keeps the battery verdict as it is.
    """

    def __init__(self, policy: HealthPolicy = HealthPolicy()) -> None:
        self.policy = policy
        self.state = Availability.UNAVAILABLE
        self._candidate: Availability | None = None
        self._since = 0.0
        self._battery_low = False
        self._first: float | None = None
        self.decided = False
        self.transitions = 0

    def _raw(self, fc_connected: bool, battery_pct: float | None) -> Availability:
        p = self.policy
        if battery_pct is not None and math.isfinite(battery_pct):
            if battery_pct <= p.battery_critical_pct:
                self._battery_low = True
            elif battery_pct >= p.battery_recovered_pct:
                self._battery_low = False
            # in between: the verdict stays (hysteresis band)
        if not fc_connected:
            return Availability.UNAVAILABLE
        return Availability.BATTERY_CRITICAL if self._battery_low else Availability.IN_SERVICE

    def _dwell(self, target: Availability) -> float:
        p = self.policy
        if target is Availability.UNAVAILABLE:
            return p.lost_after_s
        if target is Availability.BATTERY_CRITICAL:
            return p.critical_after_s
        return p.recovered_after_s

    def update(self, now: float, fc_connected: bool, battery_pct: float | None) -> Availability | None:
        raw = self._raw(fc_connected, battery_pct)
        if self._first is None:
            self._first = now
        if raw is self.state:
            self._candidate = None
            if not self.decided and now - self._first >= self._dwell(raw):
                self.decided = True  # unreachable from the start, for the whole dwell
            return None
        if raw is not self._candidate:
            self._candidate, self._since = raw, now
        if now - self._since < self._dwell(raw):
            return None
        self.state, self._candidate = raw, None
        self.decided = True
        self.transitions += 1
        return raw
