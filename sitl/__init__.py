"""Simulated vehicles: launch real ArduPilot SITL copters (``sitl.ardupilot``), or run the
built-in simulator (``sitl.builtin``) whose copters speak the same MAVLink subset the way
ArduPilot does, on SITL's port scheme (TCP 5760 + 10 * instance); ``sitl.vehicles`` runs one
of either kind behind one handle, and ``sitl.radio`` is the simulated SiK radio (the one
radio model) that can sit in front of either. ``sitl.copter`` is the built-in copter itself,
sans-I/O (``Copter``), one module per concern. Knows no swarm."""

from sitl.builtin import BASE_PORT, DEFAULT_HOME, SimulatorServer, VehicleConfig, VehicleState, configs_for
from sitl.clock import SimClock
from sitl.copter import Copter
from sitl.radio import RadioModel, RadioSample, SikRadio, SikRadioRelay
from sitl.vehicles import SimulatedVehicle, launch

__all__ = [
    "BASE_PORT", "Copter", "DEFAULT_HOME", "RadioModel", "RadioSample", "SikRadio", "SikRadioRelay", "SimClock",
    "SimulatedVehicle", "SimulatorServer", "VehicleConfig", "VehicleState", "configs_for", "launch",
]
