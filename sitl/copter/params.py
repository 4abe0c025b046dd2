"""The small ArduPilot Copter parameter set the simulator honours.

Each entry mirrors the parameter's AP_Param type (sent as PARAM_VALUE.param_type),
its Copter default and its documented range; a PARAM_SET outside the range is
clamped the way AP_Param stores into a narrower integer type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pymavlink.dialects.v20 import ardupilotmega as _mav

_INT8, _INT16, _INT32, _REAL32 = (_mav.MAV_PARAM_TYPE_INT8, _mav.MAV_PARAM_TYPE_INT16,
                                  _mav.MAV_PARAM_TYPE_INT32, _mav.MAV_PARAM_TYPE_REAL32)
_INTEGER_TYPES = frozenset({_INT8, _INT16, _INT32})  # stored rounded; each spec's range fits its type


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    ptype: int
    default: float
    low: float
    high: float


def copter_param_specs(sysid: int, wp_speed_cms: float, wp_radius_cm: float,
                       battery_capacity_mah: float) -> tuple[ParamSpec, ...]:
    """The parameter table, in the order PARAM_REQUEST_LIST reports it."""
    return (
        ParamSpec("ARMING_CHECK", _INT32, 1, 0, 2**31 - 1),
        ParamSpec("BATT_CAPACITY", _INT32, battery_capacity_mah, 0, 1_000_000),
        ParamSpec("DISARM_DELAY", _INT8, 10, 0, 127),
        ParamSpec("FENCE_ACTION", _INT8, 1, 0, 7),
        ParamSpec("FENCE_ALT_MAX", _REAL32, 100, 10, 1000),
        ParamSpec("FENCE_ENABLE", _INT8, 0, 0, 1),
        ParamSpec("FENCE_MARGIN", _REAL32, 2, 1, 10),
        ParamSpec("FENCE_RADIUS", _REAL32, 150, 30, 10000),  # SITL copter.parm (ArduCopter: 300)
        ParamSpec("FENCE_TYPE", _INT8, 7, 0, 15),
        ParamSpec("LAND_ALT_LOW", _INT16, 1000, 100, 10000),
        ParamSpec("LAND_SPEED", _INT16, 50, 30, 200),
        ParamSpec("LAND_SPEED_HIGH", _INT16, 0, 0, 2500),
        ParamSpec("MOT_SPOOL_TIME", _REAL32, 0.5, 0, 2),
        ParamSpec("PSC_JERK_Z", _REAL32, 5, 5, 50),
        ParamSpec("RTL_ALT", _INT32, 1500, 200, 300000),
        ParamSpec("RTL_LOIT_TIME", _INT32, 5000, 0, 60000),
        ParamSpec("RTL_SPEED", _INT16, 0, 0, 2000),
        ParamSpec("SYSID_THISMAV", _INT16, sysid, 1, 255),
        ParamSpec("TKOFF_SLEW_TIME", _REAL32, 2, 0.25, 5),
        ParamSpec("TKOFF_THR_MAX", _REAL32, 0.9, 0, 0.9),
        ParamSpec("WPNAV_ACCEL", _REAL32, 250, 50, 500),
        ParamSpec("WPNAV_ACCEL_Z", _REAL32, 100, 50, 500),
        ParamSpec("WPNAV_JERK", _REAL32, 1, 1, 20),
        ParamSpec("WPNAV_RADIUS", _REAL32, wp_radius_cm, 5, 1000),
        ParamSpec("WPNAV_SPEED", _REAL32, wp_speed_cms, 20, 2000),
        ParamSpec("WPNAV_SPEED_DN", _REAL32, 150, 10, 500),
        ParamSpec("WPNAV_SPEED_UP", _REAL32, 250, 10, 1000),
    )


class ParamTable:
    """Name -> value store with AP_Param's typing and clamping."""

    def __init__(self, specs: tuple[ParamSpec, ...]) -> None:
        self._specs = {s.name: s for s in specs}
        self._order = [s.name for s in specs]
        self._values = {s.name: float(s.default) for s in specs}

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, name: str) -> float:
        return self._values[name]

    def names(self) -> list[str]:
        return list(self._order)

    def index(self, name: str) -> int:
        return self._order.index(name)

    def ptype(self, name: str) -> int:
        return self._specs[name].ptype

    def set(self, name: str, value: float) -> float | None:
        """Store ``value`` (clamped to range, rounded for integer types); None if rejected."""
        spec = self._specs.get(name)
        if spec is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        value = min(max(float(value), spec.low), spec.high)
        if spec.ptype in _INTEGER_TYPES:
            value = float(round(value))
        self._values[name] = value
        return value
