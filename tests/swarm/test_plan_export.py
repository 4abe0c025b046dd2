"""Exports: QGroundControl .plan and QGC WPL 110 round-trip through our readers, carry
QGroundControl's documented keys, and malformed files are rejected with clear errors."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mavlink_bridge.plan import (
    CMD_NAV_FENCE_CIRCLE_EXCLUSION,
    CMD_NAV_LOITER_TIME,
    CMD_NAV_WAYPOINT,
    FRAME_GLOBAL,
    MissionItem,
    MissionPlan,
)
from swarm.planner import (
    GeoPoint,
    PlanFileError,
    PlannerConfig,
    PlannerMap,
    RouteInfo,
    plan,
    read_qgc_plan,
    read_wpl,
    write_qgc_plan,
    write_wpl,
)
from test_planner_support import drones, gp, rect, survivor, vehicle, zone


def carried(home: GeoPoint) -> GeoPoint:
    """The home as the formats carry it: degE7 latitude/longitude, centimetre altitude."""
    return GeoPoint(round(home.lat * 1e7) / 1e7, round(home.lon * 1e7) / 1e7,
                    round(home.alt, 2) + 0.0)

CONFIG = PlannerConfig(safety_margin_m=40.0, line_spacing_m=100.0)


@pytest.fixture(scope="module")
def planned():
    view = PlannerMap(12, rect(-1000, -500, 1000, 500),
                      zones=(zone("z1", rect(-50, -300, 50, 300)), zone("z2", rect(500, 100, 700, 250))),
                      survivors=(survivor("s1", 300, -200),),
                      routes=(RouteInfo("r1", (gp(0, 0), gp(900, 900))),),
                      drones=drones("d1"))
    v = vehicle(0, -600)
    result = plan(view, "d1", v, CONFIG)
    assert result.plan.fence and result.plan.rally and len(result.plan.mission) > 5
    return result.plan, v.home


def test_qgc_plan_round_trips(planned):
    mission_plan, home = planned
    text = write_qgc_plan(mission_plan, home)
    back = read_qgc_plan(text)
    assert back.plan == mission_plan
    assert back.home == carried(home)
    assert write_qgc_plan(back.plan, back.home) == text  # byte-stable


def test_qgc_plan_has_the_documented_keys(planned):
    mission_plan, home = planned
    doc = json.loads(write_qgc_plan(mission_plan, home))
    assert {"fileType", "version", "groundStation", "mission", "geoFence", "rallyPoints"} <= set(doc)
    assert doc["fileType"] == "Plan" and doc["version"] == 1
    m = doc["mission"]
    assert {"version", "firmwareType", "vehicleType", "cruiseSpeed", "hoverSpeed",
            "plannedHomePosition", "items", "globalPlanAltitudeMode"} <= set(m)
    assert (m["version"], m["firmwareType"], m["vehicleType"]) == (2, 3, 2)
    h = carried(home)
    assert m["plannedHomePosition"] == [h.lat, h.lon, h.alt]
    for n, item in enumerate(m["items"], start=1):
        assert {"type", "command", "frame", "params", "autoContinue", "doJumpId"} <= set(item)
        assert item["type"] == "SimpleItem" and item["doJumpId"] == n and len(item["params"]) == 7
        if item["frame"] == 3:  # positional items carry QGC's altitude keys
            assert {"AMSLAltAboveTerrain", "Altitude", "AltitudeMode"} <= set(item)
            assert item["AltitudeMode"] == 1 and item["Altitude"] == item["params"][6]
    fence = doc["geoFence"]
    assert fence["version"] == 2 and fence["circles"] == [] and len(fence["polygons"]) == 2
    for p in fence["polygons"]:
        assert set(p) == {"polygon", "inclusion", "version"}
        assert p["inclusion"] is False and p["version"] == 1 and len(p["polygon"]) >= 3
        # QGroundControl documents clockwise winding: negative shoelace area in (lon, lat).
        pts = [(lon, lat) for lat, lon in p["polygon"]]
        area2 = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]))
        assert area2 < 0
    assert doc["rallyPoints"]["version"] == 2
    assert all(len(pt) == 3 for pt in doc["rallyPoints"]["points"])


def test_nan_params_are_null_in_json_and_read_back_as_nan():
    item = MissionItem.at(CMD_NAV_WAYPOINT, -35.0, 149.0, 30.0, frame=3, param4=math.nan)
    circle = MissionItem.at(CMD_NAV_FENCE_CIRCLE_EXCLUSION, -35.001, 149.001, 0.0,
                            frame=FRAME_GLOBAL, param1=80.0)
    text = write_qgc_plan(MissionPlan(mission=(item,), fence=(circle,)), gp(0, 0, 500.0))
    assert json.loads(text)["mission"]["items"][0]["params"][3] is None
    back = read_qgc_plan(text)
    assert math.isnan(back.plan.mission[0].param4)
    assert back.plan.fence == (circle,)


def test_wpl_round_trips(planned):
    mission_plan, home = planned
    text = write_wpl(mission_plan, home)
    lines = text.splitlines()
    assert lines[0] == "QGC WPL 110"
    home_fields = lines[1].split("\t")
    assert home_fields[:4] == ["0", "1", "0", "16"] and len(home_fields) == 12
    assert all(len(ln.split("\t")) == 12 for ln in lines[1:])
    back = read_wpl(text)
    assert back.plan.mission == mission_plan.mission
    assert back.home == carried(home)
    assert read_wpl(text.replace("\n", "\r\n")).plan.mission == mission_plan.mission


def test_wpl_loiter_and_rtl_lines_carry_mavlink_fields(planned):
    mission_plan, home = planned
    lines = write_wpl(mission_plan, home).splitlines()[2:]
    loiter = [ln.split("\t") for ln in lines if ln.split("\t")[3] == str(CMD_NAV_LOITER_TIME)]
    assert loiter and float(loiter[0][4]) == CONFIG.loiter_time_s
    rtl = lines[-1].split("\t")
    assert rtl[2:4] == ["2", "20"]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(fileType="Mission"), "fileType"),
    (lambda d: d.update(version=2), "version"),
    (lambda d: d["mission"].update(version=1), "mission.version"),
    (lambda d: d["mission"]["items"][0].update(params=[0, 0, 0]), "params: expected 7"),
    (lambda d: d["mission"]["items"][0].update(command="22"), "command"),
    (lambda d: d["mission"]["items"][0].update(type="ComplexItem", complexItemType="survey"), "ComplexItem"),
    (lambda d: d["mission"]["items"][1]["params"].__setitem__(4, 123.0), "latitude"),
    (lambda d: d["mission"].update(plannedHomePosition=[1, 2]), "plannedHomePosition"),
    (lambda d: d["geoFence"]["polygons"][0].update(polygon=[[0, 0], [1, 1]]), "polygon"),
    (lambda d: d["geoFence"]["polygons"][0].update(inclusion="no"), "inclusion"),
    (lambda d: d["rallyPoints"]["points"].append([1, 2]), "rallyPoints.points"),
    (lambda d: d["mission"]["items"][0].update(autoContinue=1), "autoContinue"),
    (lambda d: d["mission"].update(items={}), "mission.items: expected a list"),
    (lambda d: d.update(geoFence=[]), "geoFence: expected an object"),
    (lambda d: d.update(rallyPoints=None), "rallyPoints: expected an object"),
    # Integers beyond a double's range (valid JSON) once escaped as OverflowError.
    (lambda d: d["mission"].update(cruiseSpeed=10**400), "mission.cruiseSpeed"),
    (lambda d: d["mission"]["items"][0]["params"].__setitem__(6, -10**400),
     r"items\[0\].params\[6\]"),
    (lambda d: d["rallyPoints"]["points"][0].__setitem__(2, 10**400),
     r"rallyPoints.points\[0\]\[2\]"),
])
def test_malformed_qgc_plan_is_rejected_with_the_field_named(planned, mutate, message):
    doc = json.loads(write_qgc_plan(*planned))
    mutate(doc)
    with pytest.raises(PlanFileError, match=message):
        read_qgc_plan(json.dumps(doc))


def test_not_json_or_nan_constant_is_rejected():
    with pytest.raises(PlanFileError, match="not valid JSON"):
        read_qgc_plan("{")
    with pytest.raises(PlanFileError, match="not valid JSON"):
        read_qgc_plan('{"fileType": "Plan", "x": NaN}')


@pytest.mark.parametrize("mutate, message", [
    (lambda ls: ls.__setitem__(0, "QGC WPL 100"), "header"),
    (lambda ls: ls.__setitem__(2, ls[2] + "\t1"), "12 tab-separated"),
    (lambda ls: ls.__setitem__(2, "5" + ls[2][1:]), "sequence number 5"),
    (lambda ls: ls.__setitem__(2, ls[2].replace("\t", "\tx\t", 1)[:0] + "1\tx" + ls[2][3:]), "integer"),
    (lambda ls: ls.__setitem__(1, ls[1].replace("-35.", "-95.", 1)), "latitude"),
    (lambda ls: ls.__delitem__(slice(1, None)), "home line"),
])
def test_malformed_wpl_is_rejected_with_the_line_named(planned, mutate, message):
    lines = write_wpl(*planned).splitlines()
    mutate(lines)
    with pytest.raises(PlanFileError, match=message):
        read_wpl("\n".join(lines))


def test_writer_refuses_a_fence_whose_vertex_count_is_inconsistent():
    bad = MissionItem.at(5002, -35.0, 149.0, 0.0, frame=FRAME_GLOBAL, param1=4.0)
    with pytest.raises(ValueError, match="consecutive"):
        write_qgc_plan(MissionPlan(fence=(bad, bad, bad)), gp(0, 0))


_GLOBAL_ITEM = st.builds(
    lambda cmd, frame, p, lat, lon, z, auto: MissionItem(
        command=cmd, frame=frame, param1=p[0], param2=p[1], param3=p[2], param4=p[3],
        x=lat, y=lon, z=z, autocontinue=auto),
    st.sampled_from([16, 17, 19, 21, 22]), st.sampled_from([0, 3, 5, 6]),
    st.tuples(*[st.floats(-1e6, 1e6, allow_nan=False)] * 4),
    st.integers(-90 * 10**7, 90 * 10**7), st.integers(-180 * 10**7, 180 * 10**7),
    st.floats(-500, 10_000, allow_nan=False), st.sampled_from([0, 1]))
_FRAMELESS_ITEM = st.builds(
    lambda cmd, p1: MissionItem(command=cmd, frame=2, param1=p1),
    st.sampled_from([20, 178, 224]), st.floats(-100, 100, allow_nan=False))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.one_of(_GLOBAL_ITEM, _FRAMELESS_ITEM), min_size=1, max_size=20),
       st.floats(-89.9, 89.9), st.floats(-179.9, 179.9), st.floats(-400, 8000))
def test_any_mission_round_trips_through_both_formats(items, lat, lon, alt):
    mission_plan = MissionPlan(mission=tuple(items))
    home = GeoPoint(lat, lon, alt)
    via_plan = read_qgc_plan(write_qgc_plan(mission_plan, home))
    via_wpl = read_wpl(write_wpl(mission_plan, home))
    assert via_plan.plan.mission == mission_plan.mission and via_plan.home == carried(home)
    assert via_wpl.plan.mission == mission_plan.mission and via_wpl.home == carried(home)


def test_files_from_two_machines_compare_equal_when_floats_differ_in_the_last_bit(planned):
    """Issue 13: a home longitude came out -121.6248173111136 on aarch64 and
    -121.62481731111357 on x86-64; the files must not differ."""
    mission_plan, _ = planned
    x86 = GeoPoint(39.7573, -121.62481731111357, 540.0)
    arm = GeoPoint(39.7573, -121.6248173111136, 540.0)
    assert write_qgc_plan(mission_plan, x86) == write_qgc_plan(mission_plan, arm)
    assert write_wpl(mission_plan, x86) == write_wpl(mission_plan, arm)
