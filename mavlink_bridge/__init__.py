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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Where each name lives. Imported on first use (PEP 562), so that what needs only the
#: plan types (the planner, and through it every agent) does not load pymavlink's
#: dialect tables (~12 MB of an agent's RSS) until a flight controller is linked.
_NAMES: dict[str, tuple[str, ...]] = {
    "mavlink_bridge.apply": (
        "ApplierConfig", "ApplyReport", "PlanApplier", "PlanVerificationError",
        "VehicleNotReady", "home_item", "items_match", "resume_seq",
    ),
    "mavlink_bridge.link": (
        "ConnectionSpec", "ConnectionStringError", "LinkConfig", "LinkStats", "MavlinkLink",
        "SystemInfo", "parse_connection_string",
    ),
    "mavlink_bridge.mission_protocol": (
        "MissionError", "MissionProtocolError", "MissionResult", "MissionResultError",
        "MissionTimeoutError", "MissionTransfer", "TransferTimeouts",
    ),
    "mavlink_bridge.plan": (
        "MissionItem", "MissionPlan", "MissionType",
    ),
    "mavlink_bridge.signal": (
        "LinkQuality", "LinkQualitySource", "RadioStatusSource",
    ),
    "mavlink_bridge.telemetry": (
        "Battery", "CopterMode", "EkfStatus", "FenceStatus", "GpsFix", "Heartbeat",
        "ItemReached", "MissionProgress", "Position", "RadioStatus", "StatusText",
        "TelemetryDecoder", "TelemetryTracker", "VehicleState",
    ),
    "mavlink_bridge.vehicle": (
        "CommandAck", "CommandError", "CommandResult", "CommandTimeoutError", "ParamError",
        "Vehicle",
    ),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mavlink_bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
