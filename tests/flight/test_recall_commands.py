"""recall / resume / launch map commands: validation, state, snapshot, and what a recall
does to the assignment (docs/map.md)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from swarm.evacmap import CommandError, DroneTask, EvacuationMap, Launch, LaunchOrder, Recall, \
    RemoveDrone, Resume, SetDroneTask, parse_command
from swarm.planner import GeoPoint, VehicleState, needs_assignment, plan_for_drone, \
    propose_assignment, share_of
from swarm.planner.assignment import map_frame
from swarm.planner.from_map import planner_map


def _map(*drones: str) -> EvacuationMap:
    m = EvacuationMap()
    for d in drones:
        assert m.apply_command(m.version + 1, SetDroneTask(d, DroneTask.SEARCH, True, False,
                                                           [-121.6, 39.7, 500.0])).ok
    return m


def test_recall_all_then_resume_all() -> None:
    m = _map("drone-1", "drone-2")
    assert m.apply_command(m.version + 1, Recall()).ok
    assert m.recall.covers("drone-1") and m.recall.covers("drone-9")  # also later joiners
    assert m.view().recall == m.recall
    assert m.apply_command(m.version + 1, Resume()).ok
    assert not m.recall.covers("drone-1")


def test_named_recall_and_resume() -> None:
    m = _map("drone-1", "drone-2", "drone-3")
    assert m.apply_command(m.version + 1, Recall(["drone-3", "drone-1"])).ok
    assert [d for d in ("drone-1", "drone-2", "drone-3") if m.recall.covers(d)] == ["drone-1", "drone-3"]
    assert m.apply_command(m.version + 1, Resume(["drone-1"])).ok
    assert m.recall.drones == {"drone-3"}


@pytest.mark.parametrize("command, message", [
    (Recall(["drone-7"]), "no drone 'drone-7'"),
    (Resume(["drone-2"]), "'drone-2' is not recalled"),
])
def test_rejections_name_the_problem_and_change_nothing(command, message) -> None:
    m = _map("drone-1", "drone-2")
    before = m.snapshot()
    result = m.apply_command(m.version + 1, command)
    assert not result.ok and message in (result.error or "")
    assert m.snapshot() == before


def test_resume_of_one_drone_after_recall_of_all_is_refused() -> None:
    m = _map("drone-1")
    assert m.apply_command(m.version + 1, Recall()).ok
    result = m.apply_command(m.version + 1, Resume(["drone-1"]))
    assert not result.ok and "resume without 'drones'" in (result.error or "")
    assert m.recall.all


@pytest.mark.parametrize("obj, message", [
    ({"type": "recall", "drones": []}, "non-empty list"),
    ({"type": "recall", "drones": "drone-1"}, "non-empty list"),
    ({"type": "recall", "drones": ["drone-1", "drone-1"]}, "twice"),
    ({"type": "recall", "drones": ["bad id!"]}, "recall.drones[0]"),
    ({"type": "resume", "drones": [f"d{i}" for i in range(65)]}, "exceed 64"),
    ({"type": "recall", "drones": None}, "null is not allowed"),
    ({"type": "recall", "all": True}, "unknown field"),
])
def test_malformed_commands_are_rejected_clearly(obj, message) -> None:
    with pytest.raises(CommandError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_command(obj)


def test_recall_survives_snapshot_and_removal() -> None:
    m = _map("drone-1", "drone-2")
    assert m.apply_command(m.version + 1, Recall(["drone-2", "drone-1"])).ok
    other = EvacuationMap()
    other.restore(m.snapshot())
    assert other.recall == m.recall and other.snapshot() == m.snapshot()
    assert json.loads(m.snapshot())["recall"] == {"all": False, "drones": ["drone-1", "drone-2"]}
    assert m.apply_command(m.version + 1, RemoveDrone("drone-2")).ok
    assert m.recall.drones == {"drone-1"}


def test_snapshot_recalling_an_unknown_drone_is_refused() -> None:
    m = _map("drone-1")
    doc = json.loads(m.snapshot())
    doc["recall"] = {"all": False, "drones": ["ghost"]}
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    other = EvacuationMap()
    with pytest.raises(CommandError, match="not on the map"):
        other.restore(data)
    assert other.version == 0


# -- a recalled drone is not available for work (issue 10): its share goes to the others

def _apply(m: EvacuationMap, command):
    """Apply at the next log index (a refused command uses an index, not a version)."""
    m._test_index = getattr(m, "_test_index", m.version) + 1  # type: ignore[attr-defined]
    return m.apply_command(m._test_index, command)  # type: ignore[attr-defined]


def _area_map(*drones: str) -> EvacuationMap:
    m = EvacuationMap()
    lon, lat = -121.6, 39.7
    for k, d in enumerate(drones):
        assert _apply(m, SetDroneTask(
            d, DroneTask.SEARCH, True, False, [lon + 0.001 * k, lat, 500.0])).ok
    dd = 0.006
    assert _apply(m, parse_command(
        {"type": "set_search_area",
         "polygon": [[lon, lat + 0.001], [lon + dd, lat + 0.001], [lon + dd, lat + dd],
                     [lon, lat + dd]]})).ok
    assert _apply(m, parse_command(
        {"type": "report_survivor", "id": "s1", "position": [lon + 0.0005, lat + 0.002],
         "count": 2, "confidence": 0.9, "reporter": "test", "time_ms": 1})).ok
    return m


def _commit_assignment(m: EvacuationMap):
    command = propose_assignment(m.view())
    assert _apply(m, command).ok
    return m.view().assignment


def _workers(assignment) -> set[str]:
    return {d for d, _ in assignment.sectors} | {d for d, ids in assignment.survivors if ids}


def test_a_recalled_drone_gets_no_work_and_resume_gives_it_back() -> None:
    m = _area_map("drone-1", "drone-2", "drone-3")
    first = _commit_assignment(m)
    assert _workers(first) == {"drone-1", "drone-2", "drone-3"}
    owner = next(d for d, ids in first.survivors if "s1" in ids)
    epoch = m.assignment_epoch
    assert _apply(m, Recall([owner])).ok
    assert m.assignment_epoch == epoch + 1 and needs_assignment(m.view())
    # Before the new one commits, the recalled drone's stale share is dropped at once
    # (its plan only goes home), the others keep theirs.
    share = share_of(planner_map(m.view()), map_frame(planner_map(m.view())))
    assert owner not in share.free_drones and owner not in share.sectors
    assert owner not in share.survivors and len(share.sectors) == 2
    # The leader's next assignment gives its sector and survivor to the others.
    second = _commit_assignment(m)
    assert owner not in _workers(second) and len(_workers(second)) == 2
    assert any("s1" in ids for _, ids in second.survivors)
    # An assignment that still gives it work is refused whole.
    bad = _apply(m, replace(second, sectors=first.sectors))
    assert not bad.ok and "not recalled" in (bad.error or "") and owner in (bad.error or "")
    # Its plan goes home.
    home = m.drones[owner].home
    state = VehicleState(GeoPoint(home[1], home[0] + 0.002, home[2] + 40), 40.0,
                         GeoPoint(home[1], home[0], home[2]), 90.0)
    result = plan_for_drone(m.view(), owner, state)
    assert any("recalled" in r for r in result.reasons) and not result.survivors
    # A second recall of the same drone changes nothing; resume makes it available.
    epoch = m.assignment_epoch
    assert _apply(m, Recall([owner])).ok
    assert m.assignment_epoch == epoch
    assert _apply(m, Resume([owner])).ok
    assert m.assignment_epoch == epoch + 1
    assert _workers(_commit_assignment(m)) == {"drone-1", "drone-2", "drone-3"}


def test_recall_of_all_leaves_the_work_unserved_with_a_reason() -> None:
    m = _area_map("drone-1", "drone-2")
    _commit_assignment(m)
    assert _apply(m, Recall()).ok
    assignment = _commit_assignment(m)
    assert _workers(assignment) == set()
    reasons = dict(assignment.unserved)
    assert "recalled" in reasons["search_area"] and "recalled" in reasons["survivor:s1"]


# -- launch: the operator's explicit order to take off (docs/map.md, docs/flight.md)

def test_launch_records_each_drone_once_and_a_recall_cancels_it() -> None:
    m = _map("drone-1", "drone-2", "drone-3")
    epoch = m.assignment_epoch
    assert _apply(m, Launch(1000, ["drone-2"])).ok
    assert dict(m.view().launches) == {"drone-2": LaunchOrder(m.version, 1000)}
    assert m.assignment_epoch == epoch  # a launch does not change who does what
    assert _apply(m, Launch(2000)).ok
    v = m.version
    assert dict(m.view().launches) == {d: LaunchOrder(v, 2000) for d in ("drone-1", "drone-2", "drone-3")}
    # A recall cancels the launch of the drones it covers; they cannot be launched
    # again until resumed.
    assert _apply(m, Recall(["drone-1"])).ok
    assert set(m.view().launches) == {"drone-2", "drone-3"}
    refused = _apply(m, Launch(3000, ["drone-1"]))
    assert not refused.ok and "recalled; resume it first" in (refused.error or "")
    assert _apply(m, Launch(3000)).ok  # all: the ones not recalled
    assert set(m.view().launches) == {"drone-2", "drone-3"}
    assert m.view().launches["drone-2"].time_ms == 3000
    assert _apply(m, RemoveDrone("drone-3")).ok
    assert set(m.view().launches) == {"drone-2"}
    assert _apply(m, Recall()).ok
    assert dict(m.view().launches) == {}
    refused = _apply(m, Launch(4000))
    assert not refused.ok and "every drone is recalled" in (refused.error or "")


def test_launch_survives_snapshot_and_bad_snapshots_are_refused() -> None:
    m = _map("drone-1", "drone-2")
    assert _apply(m, Launch(1234, ["drone-2"])).ok
    other = EvacuationMap()
    other.restore(m.snapshot())
    assert other.snapshot() == m.snapshot() and other.view().launches == m.view().launches
    doc = json.loads(m.snapshot())
    assert doc["launch"] == [{"drone": "drone-2", "time_ms": 1234, "version": m.version}]
    for bad, message in ((
            [{"drone": "ghost", "time_ms": 1, "version": 1}], "not on the map"),
            ([{"drone": "drone-2", "time_ms": 1, "version": 99}], "version"),
            ([{"drone": "drone-2", "time_ms": -1, "version": 1}], "time_ms"),
            ({"drone-2": 1}, "expected a list")):
        doc["launch"] = bad
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        fresh = EvacuationMap()
        with pytest.raises(CommandError, match=message):
            fresh.restore(data)
        assert fresh.version == 0


@pytest.mark.parametrize("obj, message", [
    ({"type": "launch"}, "launch.time_ms: missing required field"),
    ({"type": "launch", "time_ms": -5}, "launch.time_ms"),
    ({"type": "launch", "time_ms": True}, "launch.time_ms"),
    ({"type": "launch", "time_ms": 1, "drones": []}, "non-empty list"),
    ({"type": "launch", "time_ms": 1, "drones": ["a", "a"]}, "twice"),
    ({"type": "launch", "time_ms": 1, "arm": True}, "unknown field"),
])
def test_malformed_launch_is_rejected_clearly(obj, message) -> None:
    with pytest.raises(CommandError, match=message):
        parse_command(obj)


def test_launch_of_an_unknown_drone_or_an_empty_map_changes_nothing() -> None:
    m = _map("drone-1")
    before = m.snapshot()
    result = _apply(m, Launch(1, ["drone-9"]))
    assert not result.ok and "no drone 'drone-9'" in (result.error or "")
    assert m.snapshot() == before
    empty = EvacuationMap()
    result = empty.apply_command(1, Launch(1))
    assert not result.ok and "no drone on the map" in (result.error or "")
