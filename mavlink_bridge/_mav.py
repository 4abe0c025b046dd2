"""pymavlink, imported once for the whole package in MAVLink 2 mode.

pymavlink picks MAVLink 1 or 2 when ``mavutil`` is first imported, from the MAVLINK20
environment variable, so it must be set before anything imports it. The dialect is
ardupilotmega (a superset of common.xml with ArduPilot's messages and enums).
"""

from __future__ import annotations

import os
import struct
import sys

os.environ.setdefault("MAVLINK20", "1")
os.environ.setdefault("MAVLINK_DIALECT", "ardupilotmega")

# mavutil also imports pymavlink.dialects.v10.all at load, only "so that pyinstaller
# finds it" (inside try/except Exception; pymavlink 2.4.x). Nothing here speaks
# MAVLink 1 or the "all" dialect, and that module costs the agent 3.3 MB of RSS
# (issue 12: <= 60 MB). A None entry in sys.modules makes just that import fail
# fast, which mavutil catches; the entry goes again right after, so anyone who wants
# the module can still import it.
_PYINSTALLER_ONLY = "pymavlink.dialects.v10.all"
_skip_pyinstaller_only = (_PYINSTALLER_ONLY not in sys.modules
                          and "pymavlink.mavutil" not in sys.modules)
if _skip_pyinstaller_only:
    sys.modules[_PYINSTALLER_ONLY] = None  # type: ignore[assignment]
try:
    from pymavlink import mavutil
finally:
    if _skip_pyinstaller_only and sys.modules.get(_PYINSTALLER_ONLY, "") is None:
        del sys.modules[_PYINSTALLER_ONLY]
from pymavlink.dialects.v20 import ardupilotmega as mavlink  # noqa: E402

# If pymavlink was imported in MAVLink 1 mode before us, mavutil's own codec is v1; the
# link therefore always installs its own ``mavlink.MAVLink`` (v2) codec on each
# connection rather than trusting mavutil's module-level choice.

MAV_COMP_ID_ONBOARD_COMPUTER = mavlink.MAV_COMP_ID_ONBOARD_COMPUTER  # 191
MAV_COMP_ID_AUTOPILOT1 = mavlink.MAV_COMP_ID_AUTOPILOT1  # 1
SIK_RADIO_SYSID = 51  # SiK firmware sends RADIO_STATUS as system '3' (51), component 'D' (68)

# HEARTBEAT.type of components that share a system id with the autopilot but are not it
# (MAV_TYPE, common.xml): a GCS, this companion, a gimbal, camera, ADS-B receiver, ...
_NOT_A_VEHICLE = frozenset({
    mavlink.MAV_TYPE_GCS, mavlink.MAV_TYPE_ONBOARD_CONTROLLER, mavlink.MAV_TYPE_GIMBAL,
    mavlink.MAV_TYPE_CAMERA, mavlink.MAV_TYPE_ADSB, mavlink.MAV_TYPE_ANTENNA_TRACKER,
    mavlink.MAV_TYPE_SERVO, mavlink.MAV_TYPE_ODID, mavlink.MAV_TYPE_PARACHUTE,
    mavlink.MAV_TYPE_BATTERY, mavlink.MAV_TYPE_FLARM, mavlink.MAV_TYPE_CHARGING_STATION,
    mavlink.MAV_TYPE_LOG, mavlink.MAV_TYPE_OSD, mavlink.MAV_TYPE_IMU, mavlink.MAV_TYPE_GPS,
    mavlink.MAV_TYPE_WINCH, mavlink.MAV_TYPE_GENERIC,
})


def is_autopilot_heartbeat(msg: object) -> bool:
    """True if ``msg`` is a HEARTBEAT from a flight controller.

    Other components on the same system id send HEARTBEATs too: a gimbal (compid 154),
    a camera, an ADS-B receiver (some say MAV_AUTOPILOT_GENERIC), a GCS. Taking their
    custom_mode and base_mode as the vehicle's would report a flying copter as
    disarmed STABILIZE. This is pymavlink's ``probably_vehicle_heartbeat`` rule made
    stricter: the autopilot must be named and the type must be an airframe, and
    the sender must be an autopilot component (MAV_COMP_ID_AUTOPILOT1, which ArduPilot
    always uses).
    """
    get_type = getattr(msg, "get_type", None)
    if get_type is None or get_type() != "HEARTBEAT":
        return False
    return _is_autopilot(msg.autopilot, msg.type, msg.get_srcComponent())  # type: ignore[attr-defined]


def _is_autopilot(autopilot: int, vehicle_type: int, compid: int) -> bool:
    """The rule of :func:`is_autopilot_heartbeat`, on a HEARTBEAT's fields."""
    return (autopilot != mavlink.MAV_AUTOPILOT_INVALID and vehicle_type not in _NOT_A_VEHICLE
            and compid == MAV_COMP_ID_AUTOPILOT1)


def float32(x: float) -> float:
    """``x`` as it survives a MAVLink float field (IEEE 754 single precision)."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


__all__ = ["mavutil", "mavlink", "MAV_COMP_ID_ONBOARD_COMPUTER", "MAV_COMP_ID_AUTOPILOT1",
           "SIK_RADIO_SYSID", "is_autopilot_heartbeat", "float32"]
