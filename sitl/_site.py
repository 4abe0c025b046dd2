"""ArduPilot SITL's conventions, shared by the built-in simulator and the launcher."""

from __future__ import annotations

import math

BASE_PORT = 5760  # SITL serial0: TCP 5760 + 10 * instance
DEFAULT_HOME = (-35.363261, 149.165230, 584.0)  # CMAC, ArduPilot's default SITL location
DEFAULT_HEADING = 353.0  # SITL's default CMAC heading


def east_of(lat: float, lon: float, metres: float) -> float:
    """The longitude ``metres`` east of (lat, lon): where copter I's home goes."""
    metres_per_deg_lon = 111_319.49 * math.cos(math.radians(lat))
    return lon + metres / max(metres_per_deg_lon, 1e-6)
