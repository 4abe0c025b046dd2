"""The mission planner: from the agreed evacuation map to each drone's MAVLink mission.

Pure and deterministic: the same map version, drone id and vehicle state give the same
plan on every drone. ``assign_tasks(evac_map)`` says who does what (sectors, survivors
to confirm); ``plan_for_drone(evac_map, drone_id, vehicle_state, config)`` gives one
drone's :class:`PlanResult` (a ``mavlink_bridge.plan.MissionPlan`` with fences and rally
points, plus status and reasons); ``export`` writes and reads QGroundControl ``.plan``
and ``QGC WPL 110`` files. The algorithm and rules are in docs/planner.md.
"""

from .assignment import Assignment, assign, map_frame
from .committed import assignment_hash, needs_assignment, propose_assignment, share_of
from .export import PlanFile, PlanFileError, read_qgc_plan, read_wpl, write_qgc_plan, write_wpl
from .from_map import assign_tasks, plan_all, plan_for_drone, planner_map
from ..geo import LocalFrame
from .model import (
    DroneInfo,
    GeoPoint,
    PlannerConfig,
    PlannerMap,
    PlanResult,
    PlanStatus,
    RouteInfo,
    SurvivorInfo,
    VehicleState,
    ZoneInfo,
)
from .planner import PlanContext, hold_instead, plan, prepare

__all__ = [
    "Assignment",
    "DroneInfo",
    "GeoPoint",
    "LocalFrame",
    "PlanContext",
    "PlanFile",
    "PlanFileError",
    "PlanResult",
    "PlanStatus",
    "PlannerConfig",
    "PlannerMap",
    "RouteInfo",
    "SurvivorInfo",
    "VehicleState",
    "ZoneInfo",
    "assign",
    "assign_tasks",
    "assignment_hash",
    "hold_instead",
    "map_frame",
    "needs_assignment",
    "plan",
    "plan_all",
    "plan_for_drone",
    "planner_map",
    "prepare",
    "propose_assignment",
    "read_qgc_plan",
    "read_wpl",
    "share_of",
    "write_qgc_plan",
    "write_wpl",
]
