"""This drone's applied map, turned into what its flight controller holds (docs/flight.md).

Used by the agent when its config has a ``[mavlink]`` section: :class:`Flight` (bridge,
telemetry, plan worker, recall), :class:`OwnCommits` (the drone's own map changes through
the agent's session), :class:`HealthMonitor` (when telemetry changes what drones should
do), :class:`LatestWins` (the coalescing worker), :func:`hazards_crossed` (the last check
before upload), :func:`hazards_near_line` (whether RTL's straight line home keeps clear).
"""

from typing import TYPE_CHECKING, Any

from .commits import OwnCommits
from .health import Availability, HealthMonitor, HealthPolicy
from .plan_doc import fence_polygons, plan_document
from .safety import flown_path, hazards_crossed, hazards_near_line
from .worker import LatestWins

if TYPE_CHECKING:
    from .flight import Flight, FlightConfig

__all__ = ["Availability", "Flight", "FlightConfig", "HealthMonitor", "HealthPolicy", "LatestWins",
           "OwnCommits", "fence_polygons", "flown_path", "hazards_crossed", "hazards_near_line",
           "plan_document"]


def __getattr__(name: str) -> Any:
    # Flight and FlightConfig on first use (PEP 562): they bring the MAVLink link and
    # pymavlink's dialect tables (~12 MB), which an agent without [mavlink] never needs.
    if name in ("Flight", "FlightConfig"):
        from . import flight

        value = getattr(flight, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'swarm.flight' has no attribute {name!r}")
