"""pymavlink, imported once for the whole package in MAVLink 2 mode.

pymavlink picks MAVLink 1 or 2 when ``mavutil`` is first imported, from the MAVLINK20
environment variable, so it must be set before anything imports it. The dialect is
ardupilotmega (a superset of common.xml with ArduPilot's messages and enums).
"""

from __future__ import annotations

import os

os.environ.setdefault("MAVLINK20", "1")
os.environ.setdefault("MAVLINK_DIALECT", "ardupilotmega")

from pymavlink import mavutil  # noqa: E402
from pymavlink.dialects.v20 import ardupilotmega as mavlink  # noqa: E402

# If pymavlink was imported in MAVLink 1 mode before us, mavutil's own codec is v1; the
# link therefore always installs its own ``mavlink.MAVLink`` (v2) codec on each
# connection rather than trusting mavutil's module-level choice.

MAV_COMP_ID_ONBOARD_COMPUTER = mavlink.MAV_COMP_ID_ONBOARD_COMPUTER  # 191
MAV_COMP_ID_AUTOPILOT1 = mavlink.MAV_COMP_ID_AUTOPILOT1  # 1
SIK_RADIO_SYSID = 51  # SiK firmware sends RADIO_STATUS as system '3' (51), component 'D' (68)

__all__ = ["mavutil", "mavlink", "MAV_COMP_ID_ONBOARD_COMPUTER", "MAV_COMP_ID_AUTOPILOT1",
           "SIK_RADIO_SYSID"]
