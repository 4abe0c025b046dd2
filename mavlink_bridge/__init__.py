"""The link to one flight controller: telemetry and signal strength in, missions and
fences out. Knows nothing of consensus or of the map: it takes plans in MAVLink terms.

Typical use on a companion computer::

    link = MavlinkLink(LinkConfig("/dev/ttyAMA0,921600", target_system=1)).start()
    vehicle = Vehicle(link, sysid=1)
    vehicle.request_streams()
    applier = PlanApplier(vehicle)
    applier.apply(plan)                    # upload what changed, verify by reading back;
                                           # VehicleNotReady: just booted, call again shortly
    vehicle.state(); vehicle.link_quality()
"""

from mavlink_bridge.apply import (
    ApplierConfig, ApplyReport, PlanApplier, PlanVerificationError, VehicleNotReady, home_item,
    items_match, resume_seq,
)
from mavlink_bridge.link import (
    ConnectionSpec, ConnectionStringError, LinkConfig, LinkStats, MavlinkLink, SystemInfo,
    parse_connection_string,
)
from mavlink_bridge.mission_protocol import (
    MissionError, MissionProtocolError, MissionResult, MissionResultError, MissionTimeoutError,
    MissionTransfer, TransferTimeouts,
)
from mavlink_bridge.plan import MissionItem, MissionPlan, MissionType
from mavlink_bridge.signal import (
    LinkQuality, LinkQualitySource, RadioStatusSource,
)
from mavlink_bridge.telemetry import (
    Battery, CopterMode, EkfStatus, FenceStatus, GpsFix, Heartbeat, ItemReached, MissionProgress,
    Position, RadioStatus, StatusText, TelemetryDecoder, TelemetryTracker, VehicleState,
)
from mavlink_bridge.vehicle import (
    CommandAck, CommandError, CommandResult, CommandTimeoutError, ParamError, Vehicle,
)

__all__ = [
    "ApplierConfig", "ApplyReport", "PlanApplier", "PlanVerificationError", "VehicleNotReady", "home_item",
    "items_match", "resume_seq",
    "ConnectionSpec", "ConnectionStringError", "LinkConfig", "LinkStats", "MavlinkLink",
    "SystemInfo", "parse_connection_string",
    "MissionError", "MissionProtocolError", "MissionResult", "MissionResultError",
    "MissionTimeoutError", "MissionTransfer", "TransferTimeouts",
    "MissionItem", "MissionPlan", "MissionType",
    "LinkQuality", "LinkQualitySource", "RadioStatusSource",
    "Battery", "CopterMode", "EkfStatus", "FenceStatus", "GpsFix", "Heartbeat", "ItemReached",
    "MissionProgress", "Position", "RadioStatus", "StatusText", "TelemetryDecoder",
    "TelemetryTracker", "VehicleState",
    "CommandAck", "CommandError", "CommandResult", "CommandTimeoutError", "ParamError", "Vehicle",
]
