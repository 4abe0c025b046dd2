"""This drone's applied map, turned into what its flight controller holds (docs/flight.md).

Used by the agent when its config has a ``[mavlink]`` section: :class:`Flight` (bridge,
telemetry, plan worker, recall), :class:`OwnCommits` (the drone's own map changes through
the agent's session), :class:`HealthMonitor` (when telemetry changes what drones should
do), :class:`LatestWins` (the coalescing worker), :func:`hazards_crossed` (the last check
before upload).
"""

from .commits import OwnCommits
from .flight import Flight, FlightConfig
from .health import Availability, HealthMonitor, HealthPolicy
from .plan_doc import fence_polygons, plan_document
from .safety import flown_path, hazards_crossed
from .worker import LatestWins

__all__ = ["Availability", "Flight", "FlightConfig", "HealthMonitor", "HealthPolicy", "LatestWins",
           "OwnCommits", "fence_polygons", "flown_path", "hazards_crossed", "plan_document"]
