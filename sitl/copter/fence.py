"""The geofence (``AC_Fence`` and ``Copter::fence_check``): the altitude and circle fences
from parameters, the polygon and circle fences uploaded as FENCE items, breach tracking,
and the FENCE_ACTION a breach triggers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import shapely
from pymavlink.dialects.v20 import ardupilotmega as M

from sitl.copter.modes import BRAKE, LAND, RTL, SMART_RTL
from sitl.copter.params import ParamTable

if TYPE_CHECKING:
    from sitl.copter.vehicle import Copter

# FENCE_ACTION -> the modes Copter::fence_check tries in turn (0 REPORT_ONLY does nothing;
# 1 RTL_AND_LAND and unknown values: RTL, else LAND).
_FENCE_ACTION_MODES: dict[int, tuple[int, ...]] = {
    2: (LAND,),  # ALWAYS_LAND
    3: (SMART_RTL, RTL, LAND),  # SMART_RTL, else RTL, else LAND
    4: (BRAKE, LAND),  # BRAKE, else LAND
    5: (SMART_RTL, LAND),  # SMART_RTL_OR_LAND
}
_GIVE_UP_DISTANCE_M = 100.0  # AC_FENCE_GIVE_UP_DISTANCE: further out than this, land


class Geofence:
    """The fence shapes in the local ENU frame and the state of the current breach."""

    def __init__(self) -> None:
        self.exclusions: list[Any] = []
        self.inclusions: list[Any] = []
        self.breached = 0  # FENCE_BREACH of the active breach, 0 when none
        self.breach_count = 0
        self.breach_name = ""
        self.breach_time_ms = 0

    def rebuild(self, items: Sequence[Any], to_local: Callable[[float, float], tuple[float, float]]) -> None:
        """The shapes of the stored FENCE items (vertex runs become polygons)."""
        self.exclusions, self.inclusions = [], []
        i = 0
        while i < len(items):
            item = items[i]
            if item.command in (M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION,
                                M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION):
                count = int(item.param1)
                ring = [to_local(v.x / 1e7, v.y / 1e7) for v in items[i:i + count]]
                poly = shapely.Polygon(ring)
                shapely.prepare(poly)
                target = (self.exclusions if item.command == M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION
                          else self.inclusions)
                target.append(poly)
                i += count
                continue
            if item.command in (M.MAV_CMD_NAV_FENCE_CIRCLE_EXCLUSION, M.MAV_CMD_NAV_FENCE_CIRCLE_INCLUSION):
                e, n = to_local(item.x / 1e7, item.y / 1e7)
                circle = shapely.Point(e, n).buffer(item.param1, quad_segs=16)
                shapely.prepare(circle)
                (self.exclusions if item.command == M.MAV_CMD_NAV_FENCE_CIRCLE_EXCLUSION
                 else self.inclusions).append(circle)
            i += 1

    def violation(self, params: ParamTable, e: float, n: float, u: float) -> tuple[int, str]:
        """(FENCE_BREACH, fence name as AC_Fence::get_fence_names spells it), (0, "") when inside."""
        ftype = int(params["FENCE_TYPE"])
        if ftype & 1 and u >= params["FENCE_ALT_MAX"]:
            return M.FENCE_BREACH_MAXALT, "Max Alt"
        if ftype & 2 and math.hypot(e, n) >= params["FENCE_RADIUS"]:
            return M.FENCE_BREACH_BOUNDARY, "Circle"
        if ftype & 4:
            if any(shapely.contains_xy(p, e, n) for p in self.exclusions):
                return M.FENCE_BREACH_BOUNDARY, "Polygon"
            if any(not shapely.contains_xy(p, e, n) for p in self.inclusions):
                return M.FENCE_BREACH_BOUNDARY, "Polygon"
        return 0, ""

    @staticmethod
    def breach_distance(params: ParamTable, breach_name: str, e: float, n: float, u: float) -> float:
        """AC_Fence::get_breach_distance: metres outside the altitude or circle fence
        (polygons report 0)."""
        if breach_name == "Max Alt":
            return u - params["FENCE_ALT_MAX"]
        if breach_name == "Circle":
            return math.hypot(e, n) - params["FENCE_RADIUS"]
        return 0.0


def check_fence(v: Copter) -> None:
    """AC_Fence::check + Copter::fence_check. Breaches are tracked whenever the fence
    is enabled, armed or not (so arming inside one is refused); only an armed copter
    acts on a new one: landed it disarms, in the air FENCE_ACTION picks the mode,
    and more than 100 m outside (AC_FENCE_GIVE_UP_DISTANCE) it lands."""
    fence = v.fence
    if v.params["FENCE_ENABLE"] < 1:
        fence.breached = 0
        return
    breach, name = fence.violation(v.params, v.e, v.n, v.u)
    if breach and not fence.breached:
        fence.breached = breach
        fence.breach_name = name
        fence.breach_count += 1
        fence.breach_time_ms = int(v.t * 1000)
        if v.armed and not v.landed:
            v.statustext(M.MAV_SEVERITY_NOTICE, f"{name} fence breached")  # print_fence_message
        v.emit_deferred(M.MAVLINK_MSG_ID_FENCE_STATUS)  # AC_Fence::record_breach
        if not v.armed:
            return  # "we still don't do anything when disarmed"
        action = int(v.params["FENCE_ACTION"])
        if action == 0:
            return  # REPORT_ONLY
        if v.landed:
            v.disarm("fence")
            return
        far = fence.breach_distance(v.params, name, v.e, v.n, v.u) > _GIVE_UP_DISTANCE_M
        for mode in (LAND,) if far else _FENCE_ACTION_MODES.get(action, (RTL, LAND)):
            if v.set_mode(mode):
                break
    elif not breach and fence.breached:
        fence.breached = 0
        if v.armed and not v.landed:
            v.statustext(M.MAV_SEVERITY_NOTICE, "Fence breach cleared")  # Copter::fence_check
        v.emit_deferred(M.MAVLINK_MSG_ID_FENCE_STATUS)
