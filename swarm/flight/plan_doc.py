"""The ``plan/<node>`` document (docs/protocol.md, "Plan") and fence geometry."""

from __future__ import annotations

import math
from typing import Any

from mavlink_bridge.plan import CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, \
    CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION, MissionItem
from swarm.planner import PlanResult, VehicleState

__all__ = ["fence_polygons", "plan_document"]

_VERTICES = (CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION)


def fence_polygons(fence: tuple[MissionItem, ...] | list[MissionItem],
                   kind: int = CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION) -> list[list[tuple[float, float]]]:
    """The polygons of one kind in a fence list as (lat, lon) rings (not closed).

    Vertices come in groups of ``param1`` (common.xml MAV_CMD_NAV_FENCE_POLYGON_VERTEX_*);
    a list that is not made of whole groups raises ValueError.
    """
    out: list[list[tuple[float, float]]] = []
    i = 0
    while i < len(fence):
        item = fence[i]
        if item.command not in _VERTICES:
            i += 1  # a circle: one item
            continue
        count = int(item.param1)
        group = list(fence[i:i + count])
        if count < 3 or len(group) != count or any(g.command != item.command for g in group):
            raise ValueError(f"fence item {i}: not a whole polygon of {count} vertices")
        if item.command == kind:
            out.append([(g.lat, g.lon) for g in group])
        i += count
    return out


def _row(item: MissionItem) -> list[Any]:
    params = [None if math.isnan(p) else p for p in (item.param1, item.param2, item.param3, item.param4)]
    return [item.command, item.frame, *params, item.x, item.y, item.z, item.autocontinue]


def plan_document(node: int, name: str, result: PlanResult, vehicle: VehicleState,
                  fc_map_version: int | None) -> dict[str, Any]:
    """``plan/<node>``: what this drone flies, and which map version its FC holds."""
    plan = result.plan
    nav = [i for i in plan.mission if (i.x, i.y) != (0, 0)]
    return {
        "v": 1, "node": node, "name": name, "map_version": result.map_version,
        "status": str(result.status), "reasons": list(result.reasons),
        "mission": [[i.lat, i.lon, i.z, i.command] for i in nav],
        "fences": [[[lat, lon] for lat, lon in ring] for ring in fence_polygons(plan.fence)],
        "rally": [[i.lat, i.lon, i.z] for i in plan.rally],
        "fc_map_version": fc_map_version,
        "home": [vehicle.home.lat, vehicle.home.lon, vehicle.home.alt],
        "items": {"mission": [_row(i) for i in plan.mission], "fence": [_row(i) for i in plan.fence],
                  "rally": [_row(i) for i in plan.rally]},
    }
