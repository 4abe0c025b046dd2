"""Simulated vehicles: launch real ArduPilot SITL copters, or the built-in simulator
that speaks the same MAVLink subset the way ArduPilot does. Knows no swarm."""
