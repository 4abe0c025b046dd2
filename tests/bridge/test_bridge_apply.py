"""Plan applier rules that need no vehicle: read-back comparison and where to resume."""

from __future__ import annotations

import math

import pytest

from mavlink_bridge.apply import ApplierConfig, home_item, items_match, resume_seq
from mavlink_bridge.plan import (
    CMD_DO_CHANGE_SPEED, CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, CMD_NAV_LAND, CMD_NAV_TAKEOFF,
    CMD_NAV_WAYPOINT, FRAME_GLOBAL, FRAME_GLOBAL_INT, FRAME_GLOBAL_RELATIVE_ALT,
    FRAME_GLOBAL_RELATIVE_ALT_INT, FRAME_MISSION, MissionItem,
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
    assert items_match(sent, sent) is None
    assert items_match(sent, MissionItem(command=CMD_DO_CHANGE_SPEED, frame=FRAME_MISSION,
                                         param1=1.0, param2=5.0, param3=7.0)) is not None


def test_fence_vertices_compare_position_not_frame_or_altitude():
    sent = MissionItem.at(CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, 47.1, 8.2, 0.0, param1=4.0)
    back = MissionItem(command=sent.command, frame=FRAME_GLOBAL, param1=4.0, x=sent.x, y=sent.y)
    assert items_match(sent, back) is None
    assert items_match(sent, MissionItem(command=sent.command, frame=FRAME_GLOBAL, param1=5.0,
                                         x=sent.x, y=sent.y)) is not None


def test_home_item_is_global_frame_waypoint():
    h = home_item(47.0, 8.0, 512.5)
    assert (h.command, h.frame, h.z) == (CMD_NAV_WAYPOINT, FRAME_GLOBAL, 512.5)


def _line(n: int) -> list[MissionItem]:
    # takeoff at the origin, then waypoints 100 m apart going north
    return [MissionItem.at(CMD_NAV_TAKEOFF, 47.0, 8.0, 20.0)] + [
        MissionItem.at(CMD_NAV_WAYPOINT, 47.0 + i * 0.0009, 8.0, 20.0) for i in range(1, n + 1)]


def test_resume_picks_nearest_waypoint_never_the_takeoff():
    mission = _line(5)
    # standing on the takeoff point: the first waypoint, not the takeoff (wire seq 2)
    assert resume_seq(mission, 47.0, 8.0) == 2
    # on waypoint 3 (mission index 3): wire seq 4, since home is wire item 0
    assert resume_seq(mission, 47.0 + 3 * 0.0009, 8.0) == 4
    assert resume_seq(mission, 47.0 + 3 * 0.0009, 8.0, first_seq=0) == 3


def test_resume_goes_forward_when_already_past_the_nearest():
    mission = _line(5)
    # between waypoint 2 and 3, slightly past 2: continue to 3 rather than turn back
    lat = 47.0 + 2 * 0.0009 + 0.0002
    assert resume_seq(mission, lat, 8.0) == 1 + 3
    # before waypoint 2 (between 1 and 2, nearer 2): go to 2
    lat = 47.0 + 2 * 0.0009 - 0.0002
    assert resume_seq(mission, lat, 8.0) == 1 + 2


def test_resume_with_no_positioned_item_is_none():
    assert resume_seq([MissionItem(command=CMD_DO_CHANGE_SPEED, frame=FRAME_MISSION)], 47, 8) is None
    assert resume_seq([], 47, 8) is None


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
