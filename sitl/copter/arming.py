"""Arming and disarming: ``AP_Arming::arm`` checks, disarm, and ``Copter::auto_disarm_check``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pymavlink.dialects.v20 import ardupilotmega as M

from sitl.copter.modes import AUTO, NOT_ARMABLE, REQUIRES_POSITION
from sitl.copter.nav import Nav

if TYPE_CHECKING:
    from sitl.copter.vehicle import Copter

FORCE_MAGIC = 21196  # MAV_CMD_COMPONENT_ARM_DISARM param2 that forces arm/disarm


def try_arm(v: Copter, force: bool) -> bool:
    """AP_Arming::arm from MAVLink; failures go out as "Arm: ..." STATUSTEXTs."""
    if v.armed:
        return True
    if not force:
        reason = None
        if v.mode in NOT_ARMABLE:
            reason = "Mode not armable"
        elif v.params["ARMING_CHECK"] != 0 and not v.ready:
            reason = "Need Position Estimate"
        elif v.mode in REQUIRES_POSITION and not v.ready:
            reason = "Need Position Estimate"
        elif v.battery.remaining_pct <= 0:
            reason = "Battery 1 below minimum arming capacity"
        elif v.params["FENCE_ENABLE"] >= 1 and v.fence.breached:
            # AP_Arming::fence_checks -> AC_Fence::pre_arm_check
            reason = f"Vehicle breaching {v.fence.breach_name} fence"
        if reason is not None:
            v.statustext(M.MAV_SEVERITY_CRITICAL, f"Arm: {reason}")
            return False
    v.armed = True
    v.auto_armed = False
    v.landed_armed_since = None
    v.nav = Nav("hold", v.e, v.n, v.u)
    return True


def disarm(v: Copter, reason: str) -> None:
    if not v.armed:
        return
    v.armed = False
    v.auto_armed = False
    v.throttle = 0.0
    v.landed_armed_since = None
    if reason in ("landed", "auto disarm", "land"):
        v.statustext(M.MAV_SEVERITY_INFO, "Disarming motors")


def check_auto_disarm(v: Copter) -> None:
    """Copter::auto_disarm_check: landed with motors at idle for DISARM_DELAY s."""
    delay = v.params["DISARM_DELAY"]
    taking_off = v.nav.kind == "takeoff" and (v.mode != AUTO or v.auto_armed)
    if not v.landed or taking_off or delay <= 0:
        v.landed_armed_since = None
        return
    if v.landed_armed_since is None:
        v.landed_armed_since = v.t
    elif v.t - v.landed_armed_since >= delay:
        disarm(v, "auto disarm")
