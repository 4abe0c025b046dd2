"""recall / resume map commands: validation, state, snapshot (docs/map.md)."""

from __future__ import annotations

import json

import pytest

from swarm.evacmap import CommandError, DroneTask, EvacuationMap, Recall, RemoveDrone, Resume, \
    SetDroneTask, parse_command


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
