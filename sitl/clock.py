"""The simulation clock: wall time scaled by a speed-up factor.

Every rate, timeout and kinematic step of the built-in simulator is expressed in
simulated seconds, so a test running at ``speedup=20`` sees the same behaviour
(8 s upload timeout, 40 s to EKF ready, 1 Hz heartbeat) twenty times sooner.
"""

from __future__ import annotations

import math
import time
from typing import Callable

__all__ = ["SimClock"]


class SimClock:
    """Simulated seconds since the clock was created, advancing ``speedup`` times faster than wall time.

    ``wall`` is injectable (defaults to :func:`time.monotonic`) so the clock can be
    driven by hand in tests that need logical time.
    """

    def __init__(self, speedup: float = 1.0, wall: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(speedup, (int, float)) or not math.isfinite(speedup) or speedup <= 0:
            raise ValueError(f"speedup must be a finite number > 0, not {speedup!r}")
        self._speedup = float(speedup)
        self._wall = wall
        self._origin = wall()

    def now(self) -> float:
        """Simulated seconds elapsed since the clock was created."""
        return (self._wall() - self._origin) * self._speedup
