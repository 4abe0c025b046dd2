"""The evacuation map on the seeded consensus simulator, with the committed-assignment
checks (issue 13). ``python -m swarm.sim --seeds N`` (see :mod:`.cli`)."""

from swarm.sim.checks import (
    AssignmentLedger,
    assignment_digest,
    assignment_problems,
    available_drones,
    stale_problem,
)
from swarm.sim.workload import EvacuationMapApp, MapWorkload

__all__ = [
    "AssignmentLedger",
    "EvacuationMapApp",
    "MapWorkload",
    "assignment_digest",
    "assignment_problems",
    "available_drones",
    "stale_problem",
]
