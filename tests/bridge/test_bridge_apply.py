"""Plan applier rules that need no vehicle: read-back comparison and where to resume."""

from __future__ import annotations

import dataclasses
import math

import pytest

from mavlink_bridge.apply import ApplierConfig, home_item, items_match, resume_seq
from mavlink_bridge.plan import (
    CMD_DO_CHANGE_SPEED, CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, CMD_NAV_LAND,
    CMD_NAV_RETURN_TO_LAUNCH, CMD_NAV_TAKEOFF,
    CMD_NAV_WAYPOINT, FRAME_GLOBAL, FRAME_GLOBAL_INT, FRAME_GLOBAL_RELATIVE_ALT,
    FRAME_GLOBAL_RELATIVE_ALT_INT, FRAME_MISSION, MissionItem, MissionPlan,
)

WP = MissionItem.at(CMD_NAV_WAYPOINT, 47.1, 8.2, 30.0, param1=2.0)


def test_int_frames_match_their_float_readback():
    back = MissionItem(command=WP.command, frame=FRAME_GLOBAL_RELATIVE_ALT, param1=2.0,
                       x=WP.x, y=WP.y, z=30.0)
    assert WP.frame == FRAME_GLOBAL_RELATIVE_ALT_INT
    assert items_match(WP, back) is None
    glob = MissionItem.at(CMD_NAV_WAYPOINT, 47.1, 8.2, 500.0, frame=FRAME_GLOBAL_INT)
    assert items_match(glob, MissionItem(command=16, frame=FRAME_GLOBAL, x=glob.x, y=glob.y,
                                         z=500.0)) is None
    # but relative and absolute altitude are not the same thing
    assert "frame" in items_match(WP, MissionItem(command=16, frame=FRAME_GLOBAL, param1=2.0,
                                                  x=WP.x, y=WP.y, z=30.0))


def test_float32_rounding_is_tolerated_but_real_differences_are_not():
    z = 30.123456789
    sent = MissionItem.at(CMD_NAV_WAYPOINT, 47.1, 8.2, z)
    back = MissionItem(command=16, frame=FRAME_GLOBAL_RELATIVE_ALT, x=sent.x, y=sent.y,
                       z=float(__import__("numpy").float32(z)))
    assert items_match(sent, back) is None
    assert "z" in items_match(sent, MissionItem(command=16, frame=3, x=sent.x, y=sent.y, z=30.2))
    assert "position" in items_match(sent, MissionItem(command=16, frame=3, x=sent.x + 1,
                                                       y=sent.y, z=z))
    assert "command" in items_match(sent, MissionItem(command=CMD_NAV_LAND, frame=3, x=sent.x,
                                                      y=sent.y, z=z))


def test_parameters_not_stored_read_back_as_zero_are_accepted():
    sent = MissionItem.at(CMD_NAV_WAYPOINT, 47.1, 8.2, 30.0, param1=2.0, param4=90.0)
    stored = MissionItem(command=16, frame=3, param1=2.0, param4=0.0, x=sent.x, y=sent.y, z=30.0)
    assert items_match(sent, stored) is None
    changed = MissionItem(command=16, frame=3, param1=3.0, x=sent.x, y=sent.y, z=30.0)
    assert "param1" in items_match(sent, changed)


def test_nan_parameters_compare_equal_only_to_nan():
    sent = MissionItem(command=CMD_DO_CHANGE_SPEED, frame=FRAME_MISSION, param1=1.0,
                       param2=5.0, param3=math.nan)
    back = dataclasses.replace(sent, frame=FRAME_GLOBAL)  # no location: read back in frame 0
    assert items_match(sent, back) is None
    assert items_match(sent, MissionItem(command=CMD_DO_CHANGE_SPEED, frame=FRAME_GLOBAL,
                                         param1=1.0, param2=5.0, param3=7.0)) is not None


@pytest.mark.parametrize("frame", [FRAME_MISSION, FRAME_GLOBAL_RELATIVE_ALT_INT])
def test_commands_stored_without_a_location_read_back_in_frame_zero(frame):
    """AP_Mission::mission_cmd_to_mavlink_int starts at frame 0, x = y = z = 0 and copies
    a location only for stored_in_location commands: the planner's RTL in
    MAV_FRAME_MISSION reads back as frame 0 (regression: every planner plan failed)."""
    rtl = MissionItem(command=CMD_NAV_RETURN_TO_LAUNCH, frame=frame, z=15.0)
    assert items_match(rtl, MissionItem(command=CMD_NAV_RETURN_TO_LAUNCH, frame=FRAME_GLOBAL)) is None
    assert "position" in items_match(rtl, MissionItem(command=CMD_NAV_RETURN_TO_LAUNCH, frame=FRAME_GLOBAL,
                                                      x=5, y=5))
    jump = MissionItem(command=177, frame=frame, param1=2.0, param2=3.0)  # DO_JUMP
    assert items_match(jump, MissionItem(command=177, frame=FRAME_GLOBAL, param1=2.0, param2=3.0)) is None


def test_autocontinue_is_what_arducopter_reads_back_not_what_was_sent():
    """ArduPilot stores no autocontinue: mission items read back 1 (whatever was sent),
    fence and rally items 0 (regression: every plan with a fence failed)."""
    wp = MissionItem.at(CMD_NAV_WAYPOINT, 47.1, 8.2, 30.0)
    assert items_match(dataclasses.replace(wp, autocontinue=0), dataclasses.replace(wp, frame=3)) is None
    assert "autocontinue" in items_match(wp, dataclasses.replace(wp, frame=3, autocontinue=0))
    vertex = MissionItem.at(CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, 47.1, 8.2, 0.0, param1=4.0)
    assert items_match(vertex, dataclasses.replace(vertex, frame=FRAME_GLOBAL, autocontinue=0)) is None
    assert "autocontinue" in items_match(vertex, dataclasses.replace(vertex, frame=FRAME_GLOBAL))


def test_fence_vertices_compare_position_not_frame_or_altitude():
    sent = MissionItem.at(CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, 47.1, 8.2, 0.0, param1=4.0)
    back = MissionItem(command=sent.command, frame=FRAME_GLOBAL, param1=4.0, x=sent.x, y=sent.y,
                       autocontinue=0)  # AC_PolyFence stores no autocontinue: reads back 0
    assert items_match(sent, back) is None
    assert items_match(sent, MissionItem(command=sent.command, frame=FRAME_GLOBAL, param1=5.0,
                                         x=sent.x, y=sent.y, autocontinue=0)) is not None


def test_home_item_is_global_frame_waypoint():
    h = home_item(47.0, 8.0, 512.5)
    assert (h.command, h.frame, h.z) == (CMD_NAV_WAYPOINT, FRAME_GLOBAL, 512.5)


def _line(n: int) -> list[MissionItem]:
    # takeoff at the origin, then waypoints 100 m apart going north
    return [MissionItem.at(CMD_NAV_TAKEOFF, 47.0, 8.0, 20.0)] + [
        MissionItem.at(CMD_NAV_WAYPOINT, 47.0 + i * 0.0009, 8.0, 20.0) for i in range(1, n + 1)]


def test_resume_continues_at_the_leg_the_replan_kept():
    """No resume_index: if the item being flown to is still in the new mission, unchanged,
    the copter keeps flying to it (wire seq = mission index + 1, item 0 is home)."""
    old = _line(5)
    new = old[:3] + [MissionItem.at(CMD_NAV_WAYPOINT, 47.0, 8.001, 20.0)] + old[3:]
    assert resume_seq(new, old, current_seq=3) == 3  # flying to old[2], still at index 2
    assert resume_seq(new, old, current_seq=5) == 6  # old[4] moved one down in the new mission
    assert resume_seq(new, old, current_seq=4, first_seq=0) == 5


def test_resume_never_guesses_from_geometry():
    """Regression: the nearest waypoint of the new mission could be behind the copter
    (mid survey line), skipping the rest of the sweep. Without a kept leg or a
    resume_index the new mission is flown from its first leg, never skipping any."""
    old = _line(5)
    new = [MissionItem.at(CMD_NAV_TAKEOFF, 47.0, 8.0, 20.0)] + [
        MissionItem.at(CMD_NAV_WAYPOINT, 47.0 + i * 0.0009, 8.002, 20.0) for i in range(1, 6)]
    assert resume_seq(new, old, current_seq=5) == 2  # first item after the takeoff
    assert resume_seq(new) == 2
    assert resume_seq([MissionItem(command=CMD_NAV_RETURN_TO_LAUNCH, frame=FRAME_MISSION)]) == 1


def test_resume_with_nothing_to_fly_is_none():
    assert resume_seq([MissionItem(command=CMD_DO_CHANGE_SPEED, frame=FRAME_MISSION)]) is None
    assert resume_seq([]) is None


@pytest.mark.parametrize("bad", [-1, 6, True, 1.0])
def test_plan_resume_index_must_index_the_mission(bad):
    with pytest.raises(ValueError, match="resume_index"):
        MissionPlan(mission=tuple(_line(5)), resume_index=bad)
    assert MissionPlan(mission=tuple(_line(5)), resume_index=5).resume_index == 5


def test_applier_config_validates_fence_type():
    with pytest.raises(ValueError):
        ApplierConfig(fence_type=99)


def test_fence_polygon_builds_exclusion_vertices_with_count():
    from mavlink_bridge.plan import fence_polygon, validate_fence
    square = [(47.0, 8.0), (47.0, 8.001), (47.001, 8.001), (47.001, 8.0), (47.0, 8.0)]
    items = fence_polygon(square)
    assert len(items) == 4  # the closing vertex is not repeated
    assert all(i.command == CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION and i.param1 == 4.0 for i in items)
    validate_fence(items + fence_polygon(square[:3], exclusion=False))
    with pytest.raises(ValueError):
        fence_polygon([(47.0, 8.0), (47.0, 8.001)])


@pytest.mark.parametrize("bad", [
    lambda items: items[:3],                                  # incomplete polygon
    lambda items: items[:2] + (items[2].__class__(**{**_fields(items[2]), "param1": 5.0}),) + items[3:],
    lambda items: items + (WP,),                              # a waypoint in the fence list
])
def test_validate_fence_rejects_malformed_lists(bad):
    from mavlink_bridge.plan import fence_polygon, validate_fence
    items = fence_polygon([(47.0, 8.0), (47.0, 8.001), (47.001, 8.001), (47.001, 8.0)])
    with pytest.raises(ValueError):
        validate_fence(bad(items))


def _fields(item):
    return {name: getattr(item, name) for name in item.__dataclass_fields__}


@pytest.mark.parametrize("frame", [10, 11])  # MAV_FRAME_GLOBAL_TERRAIN_ALT(_INT)
def test_terrain_frame_items_are_checked_to_be_on_the_globe(frame):
    # Regression: the globe check knew only the GLOBAL and GLOBAL_RELATIVE_ALT frames,
    # so a terrain-following item 95 degrees north was accepted.
    MissionItem(command=CMD_NAV_WAYPOINT, frame=frame, x=47 * 10**7, y=8 * 10**7)
    with pytest.raises(ValueError, match="off the globe"):
        MissionItem(command=CMD_NAV_WAYPOINT, frame=frame, x=95 * 10**7, y=8 * 10**7)
