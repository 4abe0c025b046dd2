"""ROS-style launch files: which processes (nodes) run, with which parameters, in which
order, and what to do when one ends.

``load_launch`` reads and validates a YAML launch file (with its includes and
``$(arg ...)`` substitutions) into a LaunchDescription; ``Launcher`` runs one: starts
nodes in dependency order once the nodes they wait for are ready, prefixes their output
with their names, respawns per policy, and stops everything cleanly, leaving no process
behind even if the launcher itself is killed. docs/launch.md is the reference.
"""

from .description import (
    LaunchDescription,
    LaunchError,
    NodeSpec,
    ParameterStyle,
    Readiness,
    Respawn,
    RespawnPolicy,
    load_launch,
    parse_overrides,
)
from .runner import Launcher, run_launch

__all__ = [
    "LaunchDescription",
    "LaunchError",
    "Launcher",
    "NodeSpec",
    "ParameterStyle",
    "Readiness",
    "Respawn",
    "RespawnPolicy",
    "load_launch",
    "parse_overrides",
    "run_launch",
]
