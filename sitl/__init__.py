"""Simulated vehicles: launch real ArduPilot SITL copters (``sitl.ardupilot``), or run the
built-in simulator (``sitl.builtin``) whose copters speak the same MAVLink subset the way
ArduPilot does, on SITL's port scheme (TCP 5760 + 10 * instance). Knows no swarm."""

from sitl.builtin import BASE_PORT, DEFAULT_HOME, SimulatorServer, VehicleConfig, VehicleState, configs_for
from sitl.clock import SimClock
from sitl.radio import RadioModel, RadioSample

__all__ = [
    "BASE_PORT", "DEFAULT_HOME", "RadioModel", "RadioSample", "SimClock", "SimulatorServer",
    "VehicleConfig", "VehicleState", "configs_for",
]
