"""The ground station: a web page that shows the swarm's agreed map and health live, and
lets an operator add to the map, with no internet.

An MQTT client of the swarm (not a Raft member): :class:`SwarmState` keeps the latest of
every topic (status, map, plan, telemetry, events; bounded), :class:`GroundStation`
serves the page (Leaflet from the XStatic-Leaflet package, nothing fetched from
elsewhere), a JSON API and a server-sent-events stream, and sends operator actions
through the client protocol (:class:`OperatorClient`). ``swarm gcs`` runs it; see
docs/gcs.md.
"""

from .config import ConfigError, GcsConfig, load_config
from .operator import OperatorClient, Outcome, build_command
from .server import GroundStation, serve
from .state import Limits, SwarmState, Thresholds

__all__ = [
    "ConfigError",
    "GcsConfig",
    "GroundStation",
    "Limits",
    "OperatorClient",
    "Outcome",
    "SwarmState",
    "Thresholds",
    "build_command",
    "load_config",
    "serve",
]
