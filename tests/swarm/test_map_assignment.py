"""The committed assignment (issue 13): ``set_assignment`` carries who does what and the
assignment epoch it was computed at; the map's epoch advances on every change that may
alter who does what, so a stale or superseded assignment is rejected whole."""

from __future__ import annotations

import json

import pytest

from swarm.evacmap import (
    CommandError,
    EvacuationMap,
    RemoveDrone,
    ReportSurvivor,
    SetAssignment,
    SetDroneTask,
    SetRoute,
    SetSearchArea,
    SetZone,
    UpdateSurvivor,
    decode_result,
    encode_command,
    parse_command,
)

T = 1_764_208_800_000
SQUARE = [[-120.0, 38.0], [-119.99, 38.0], [-119.99, 38.01], [-120.0, 38.01]]
WEST = [[-120.0, 38.0], [-119.995, 38.0], [-119.995, 38.01], [-120.0, 38.01]]
EAST = [[-119.995, 38.0], [-119.99, 38.0], [-119.99, 38.01], [-119.995, 38.01]]
HOME = [-120.001, 37.999, 300.0]


class Log:
    def __init__(self) -> None:
        self.map = EvacuationMap()
        self.index = 0

    def __call__(self, command):
        self.index += 1
        return decode_result(self.map.apply(self.index, encode_command(command)))


def _scene() -> Log:
    log = Log()
    log(SetSearchArea(SQUARE))
    log(SetDroneTask("d1", "search", True, False, HOME))
    log(SetDroneTask("d2", "search", True, False, HOME))
    log(ReportSurvivor("s1", [-119.998, 38.005], 2, 0.9, "d1", T))
    return log


def _assignment(epoch: int) -> SetAssignment:
    return SetAssignment(epoch, {"d1": [[WEST]], "d2": [[EAST]]}, {"d1": ["s1"]})


def test_an_assignment_at_the_current_epoch_is_committed_and_current():
    log = _scene()
    epoch = log.map.assignment_epoch
    assert epoch == 4 and log.map.assignment is None
    assert log(_assignment(epoch)).ok
    view = log.map.view()
    assert view.assignment == _assignment(epoch) and view.assignment_is_current
    assert view.assignment.survivors_of("d1") == ("s1",)
    assert len(view.assignment.sector_of("d2")) == 1


@pytest.mark.parametrize("change", [
    SetDroneTask("d3", "search", True, False, HOME),                 # a drone joins
    SetDroneTask("d2", "search", False, False, HOME),                # ... dies
    SetDroneTask("d2", "search", True, True, HOME),                  # ... goes busy
    SetDroneTask("d2", "return", True, False, HOME),                 # ... returns
    RemoveDrone("d2"),                                               # ... leaves
    SetSearchArea(WEST),
    SetZone("z1", EAST, "burning", "d1", T),
    ReportSurvivor("s2", [-119.992, 38.002], 1, 0.5, "d2", T),
    UpdateSurvivor("s1", "d2", T + 1, status="confirmed"),
], ids=lambda c: type(c).__name__)
def test_every_change_to_who_does_what_makes_the_assignment_stale(change):
    log = _scene()
    assert log(_assignment(log.map.assignment_epoch)).ok
    before = log.map.assignment_epoch
    assert log(change).ok
    assert log.map.assignment_epoch == before + 1
    assert not log.map.view().assignment_is_current
    # The stale assignment is still what was last committed (drones keep flying it).
    assert log.map.assignment == _assignment(before)


def test_restating_what_the_map_holds_and_routes_do_not_advance_the_epoch():
    log = _scene()
    epoch = log.map.assignment_epoch
    assert log(SetDroneTask("d1", "search", True, False, HOME)).ok  # unchanged entry
    assert log(SetSearchArea(SQUARE)).ok
    assert log(SetRoute("r1", [[-120.0, 38.0, 30.0], [-119.99, 38.01, 30.0]], 1)).ok
    assert log.map.assignment_epoch == epoch


def test_a_stale_or_future_assignment_is_rejected_and_changes_nothing():
    log = _scene()
    epoch = log.map.assignment_epoch
    assert log(_assignment(epoch)).ok
    log(SetDroneTask("d3", "search", True, False, HOME))
    snapshot = log.map.snapshot()
    stale = log(_assignment(epoch))
    assert not stale.ok and "superseded" in stale.error
    future = log(_assignment(epoch + 5))
    assert not future.ok and "not reached yet" in future.error
    assert log.map.snapshot() == snapshot


@pytest.mark.parametrize("bad, message", [
    (SetAssignment(4, {"d9": [[WEST]]}, {"d1": ["s1"]}), "not an available drone"),
    (SetAssignment(4, {}, {"d1": ["s1", "nobody"]}), "not survivors waiting"),
    (SetAssignment(4, {"d1": [[WEST]]}, {}), "neither assigned nor unserved"),
    (SetAssignment(4, {}, {}, {"survivor:ghost": "x"}), "not survivors waiting"),
])
def test_an_assignment_that_does_not_fit_the_map_is_rejected_whole(bad, message):
    log = _scene()
    snapshot = log.map.snapshot()
    result = log(bad)
    assert not result.ok and message in result.error
    assert log.map.snapshot() == snapshot


def test_the_command_validates_its_own_shape():
    with pytest.raises(CommandError, match="more than one drone"):
        SetAssignment(1, {}, {"d1": ["s1"], "d2": ["s1"]})
    with pytest.raises(CommandError, match="both assigned and unserved"):
        SetAssignment(1, {}, {"d1": ["s1"]}, {"survivor:s1": "why"})
    with pytest.raises(CommandError, match=r"sectors\.d1\[0\]\[0\]"):
        SetAssignment(1, {"d1": [[[[0, 0], [1, 1], [0, 1], [1, 0]]]]}, {})  # bow tie
    with pytest.raises(CommandError, match="unserved"):
        SetAssignment(1, {}, {}, {"nonsense": "why"})
    cmd = _assignment(4)
    assert parse_command(encode_command(cmd)) == cmd
    assert json.loads(encode_command(cmd))["sectors"]["d1"][0][0][0] == [-120.0, 38.0]


def test_snapshot_and_restore_keep_the_assignment_and_the_epoch():
    log = _scene()
    assert log(_assignment(log.map.assignment_epoch)).ok
    log(SetDroneTask("d3", "search", True, False, HOME))
    other = EvacuationMap()
    other.restore(log.map.snapshot())
    assert other.snapshot() == log.map.snapshot()
    assert other.assignment == log.map.assignment
    assert other.assignment_epoch == log.map.assignment_epoch
