"""The evacuation map on the seeded consensus simulator (swarm.sim, issue 13).

A short seeded set runs in CI; ``--soak`` runs many seeds. The checks must be able to
fail: a leader proposing broken assignments (a survivor given twice, overlapping
sectors, a stale one the map is made to accept) is caught, and so is a hand-built
assignment with each kind of defect.
"""

from __future__ import annotations

import dataclasses

import pytest

import swarm.evacmap.state as map_state
from consensus.sim.cluster import run_seed
from swarm.evacmap import (
    DroneTask,
    EvacuationMap,
    MapView,
    Recall,
    ReportSurvivor,
    SetAssignment,
    SetDroneTask,
    SetSearchArea,
)
from swarm.planner import propose_assignment
from swarm.sim import EvacuationMapApp, assignment_problems, stale_problem
from swarm.sim.cli import BASE, SOAK_SEEDS, main

CFG = dataclasses.replace(BASE, clients=2)
CI_SEEDS = range(30)


def _run(seed: int, app: EvacuationMapApp | None = None, **kw):  # type: ignore[no-untyped-def]
    app = app or EvacuationMapApp(seed)
    return run_seed(seed, dataclasses.replace(CFG, **kw), app=app, prog="python -m swarm.sim"), app


@pytest.fixture(scope="module")
def ci_runs():  # type: ignore[no-untyped-def]
    """The short seeded set, run once for the tests below."""
    return {seed: _run(seed) for seed in CI_SEEDS}


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_every_seed_keeps_one_sound_committed_assignment_on_every_node(ci_runs, seed: int) -> None:  # type: ignore[no-untyped-def]
    res, app = ci_runs[seed]
    assert res.ok, f"{res.violation}\n{res.details}\nreplay: {res.replay_command}"
    c = res.counts
    # The run exercised what it claims to check.
    assert c["assignments committed"] >= 3, c
    assert app.checks >= 3
    assert app.ledger.compared > 50
    assert c["map commands accepted"] >= 10
    # Liveness: after the quiet period the map holds a current assignment everywhere.
    assert res.converged, f"not converged; replay: {res.replay_command}"


def test_a_removed_leaders_stranded_proposal_does_not_hold_up_convergence() -> None:
    """Seed 5021, one of the 18 of 500 soak seeds (from 5000) that reported "not
    converged": node 5 leads term 2, proposes an assignment and commits its own
    removal before the proposal commits. Removed, it never hears of a leader again, so
    its agent's session retries that proposal for ever and it is dropped at node 5
    every time. The new leader proposes for the current epoch itself and the map
    converges; only members of the leader's configuration count for settling."""
    res, app = _run(5021)
    assert res.ok, res.violation
    assert res.converged
    assert app._agents[5].client.pending() == 1  # the stranded proposal is still there


def test_the_set_mixes_faults_stale_proposals_and_every_map_change(ci_runs) -> None:  # type: ignore[no-untyped-def]
    totals: dict[str, int] = {}
    for res, _ in ci_runs.values():
        for k, v in res.counts.items():
            totals[k] = totals.get(k, 0) + v
    for key in ("crashes", "partitions", "snapshots installed", "leader transfers asked",
                "assignments refused as stale or superseded", "map set_zone sent",
                "map recall sent", "map resume sent", "map report_survivor sent",
                "map update_survivor sent", "map set_drone_task sent", "map remove_drone sent"):
        assert totals.get(key, 0) > 0, (key, totals)
    assert totals["runs ending with a current assignment"] >= len(CI_SEEDS) - 2


def test_a_seed_replays_byte_for_byte(ci_runs) -> None:  # type: ignore[no-untyped-def]
    a = ci_runs[5][0]
    b, _ = _run(5)
    assert a.trace_digest == b.trace_digest
    assert a.trace_digest != ci_runs[6][0].trace_digest
    assert a.replay_command.startswith("python -m swarm.sim ") and "--seed 5 " in a.replay_command


@pytest.mark.parametrize("storage,codec", [("sqlite", True)])
def test_sqlite_storage_and_the_wire_codec(tmp_path, storage: str, codec: bool) -> None:  # type: ignore[no-untyped-def]
    app = EvacuationMapApp(3)
    res = run_seed(3, dataclasses.replace(CFG, storage=storage, wire_codec=codec), app=app,
                   storage_dir=tmp_path)
    assert res.ok, res.violation
    assert res.counts["assignments committed"] >= 3


def test_cli_runs_seeds_prints_the_summary_and_replays_one(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--seeds", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "runs: 2" in out and "violations: 0" in out
    outputs = []
    for _ in range(2):
        assert main(["--seed", "1", "--verbose"]) == 0
        lines = capsys.readouterr().out.splitlines()
        outputs.append([x for x in lines if not x.startswith(("slowest seed", "elapsed"))])
    assert outputs[0] == outputs[1]  # the trace, line for line
    assert any("proposes the assignment for epoch" in x for x in outputs[0])


def test_cli_soak_means_many_seeds_unless_told(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen = {}

    def fake_main(args, prog, **kw):  # type: ignore[no-untyped-def]
        seen["args"] = args
        return 0

    monkeypatch.setattr("swarm.sim.cli.sim_main", fake_main)
    main(["--soak"])
    assert seen["args"] == ["--seeds", str(SOAK_SEEDS)]
    main(["--soak", "--seeds", "7"])
    assert seen["args"] == ["--seeds", "7"]


# ------------------------------------------------------------- the checks can fail


def _twice_given_survivor(view: MapView) -> SetAssignment:
    """A survivor given to a second drone. The command refuses to be built that way,
    so it is forged past its validation, as a buggy or hostile leader's bytes would be."""
    good = propose_assignment(view)
    survivors = dict(good.survivors)
    owners = sorted({d for d, _ in good.sectors} | set(survivors))
    given = [s for ids in survivors.values() for s in ids]
    if len(owners) < 2 or not given:
        return good
    other = next(d for d in owners if given[0] not in survivors.get(d, ()))
    survivors[other] = (*survivors.get(other, ()), given[0])
    forged = dataclasses.replace(good)
    object.__setattr__(forged, "survivors", tuple(sorted(survivors.items())))
    return forged


def _overlapping_sectors(view: MapView) -> SetAssignment:
    good = propose_assignment(view)
    sectors = dict(good.sectors)
    if len(sectors) < 2:
        return good
    first, second = sorted(sectors)[:2]
    sectors[second] = sectors[first]
    return SetAssignment(good.epoch, {d: [[list(map(list, r)) for r in p] for p in ps]  # type: ignore[arg-type]
                                      for d, ps in sectors.items()},
                         {d: list(ids) for d, ids in good.survivors},  # type: ignore[arg-type]
                         dict(good.unserved))  # type: ignore[arg-type]


@pytest.mark.parametrize("broken,expected", [
    # The map refuses the forged bytes: a current assignment refused is a violation.
    (_twice_given_survivor, "although it was current"),
    (_overlapping_sectors, "overlap"),
])
def test_a_leader_proposing_broken_assignments_is_caught(broken, expected: str) -> None:  # type: ignore[no-untyped-def]
    caught = []
    for seed in range(6):
        res, _ = _run(seed, EvacuationMapApp(seed, propose=broken))
        if not res.ok:
            caught.append(res.violation)
    assert caught, "no seed caught the broken assignment"
    assert all(expected in v for v in caught), caught


def test_a_map_that_accepted_stale_assignments_is_caught(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The map's own guard is switched off: the simulation's check must catch what
    # gets through (a checker that only trusted the map could not fail).
    monkeypatch.setattr(map_state, "_check_assignment", lambda state, command: None)

    def stale(view: MapView) -> SetAssignment:
        good = propose_assignment(view)
        return dataclasses.replace(good, epoch=max(0, good.epoch - 1))

    res, _ = _run(0, EvacuationMapApp(0, propose=stale))
    assert not res.ok and "stale assignment was applied" in (res.violation or ""), res.violation


# ------------------------------------------------------------- hand-built maps

AREA = [[-120.01, 37.99], [-119.99, 37.99], [-119.99, 38.01], [-120.01, 38.01]]


def _map() -> EvacuationMap:
    m = EvacuationMap()
    commands = [SetSearchArea(AREA)]  # type: ignore[arg-type]
    for i in (1, 2):
        commands.append(SetDroneTask(f"drone-{i}", DroneTask.SEARCH, True, False,
                                     [-120.0 + i / 1000, 37.98, 300.0]))  # type: ignore[arg-type]
    commands.append(ReportSurvivor("s1", [-120.005, 38.0], 2, 0.9, "drone-1", 1))  # type: ignore[arg-type]
    for i, c in enumerate(commands, 1):
        assert m.apply_command(i, c).ok
    return m


def _with(m: EvacuationMap, command: SetAssignment) -> MapView:
    # Hand-built defects the map would refuse: put them in place directly, as a map
    # bug would.
    m._state = dataclasses.replace(m._state, assignment=command)
    return m.view()


def _forged(epoch: int, sectors, survivors, unserved) -> SetAssignment:  # type: ignore[no-untyped-def]
    """An assignment with the given (possibly invalid) fields, past the command's own
    validation (which refuses some of these defects when built normally)."""
    command = SetAssignment(epoch, {}, {}, {})  # type: ignore[arg-type]
    object.__setattr__(command, "sectors", tuple(sorted(
        (d, tuple(tuple(tuple(tuple(p) for p in ring) for ring in poly) for poly in polys))
        for d, polys in sectors.items())))
    object.__setattr__(command, "survivors", tuple(sorted(
        (d, tuple(ids)) for d, ids in survivors.items())))
    object.__setattr__(command, "unserved", tuple(sorted(unserved.items())))
    return command


def _half(west: float, east: float) -> list[list[list[list[float]]]]:
    return [[[[west, 37.99], [east, 37.99], [east, 38.01], [west, 38.01]]]]


def test_the_planners_assignment_is_sound() -> None:
    m = _map()
    assert m.apply_command(5, propose_assignment(m)).ok
    assert assignment_problems(m.view()) == []
    assert stale_problem(m.view()) is None


@pytest.mark.parametrize("sectors,survivors,unserved,expected", [
    ({"drone-1": _half(-120.01, -120.0), "drone-2": _half(-120.0, -119.99)}, {}, {},
     "neither owned by a drone nor unserved"),
    ({"drone-1": _half(-120.01, -120.0), "drone-2": _half(-120.0, -119.99)},
     {"drone-1": ["s1"]}, {"survivor:s1": "far"}, "both owned"),
    ({"drone-1": _half(-120.01, -120.0)}, {"drone-1": ["s1"]}, {},
     "owned by no drone"),
    ({"drone-1": _half(-120.01, -119.995), "drone-2": _half(-120.0, -119.99)},
     {"drone-1": ["s1"]}, {}, "overlap"),
    ({"drone-1": _half(-120.01, -120.0), "drone-3": _half(-120.0, -119.99)},
     {"drone-1": ["s1"]}, {}, "'drone-3', which is not an available drone"),
])
def test_each_kind_of_defect_is_named(sectors, survivors, unserved, expected: str) -> None:  # type: ignore[no-untyped-def]
    m = _map()
    view = _with(m, _forged(m.assignment_epoch, sectors, survivors, unserved))
    problems = assignment_problems(view)
    assert any(expected in p for p in problems), problems


def test_work_for_a_recalled_drone_and_a_stale_epoch_are_named() -> None:
    m = _map()
    good = propose_assignment(m)
    assert m.apply_command(5, good).ok
    assert m.apply_command(6, Recall(("drone-2",))).ok  # type: ignore[arg-type]
    view = m.view()
    assert "stale assignment" in (stale_problem(view) or "")
    if dict(good.sectors).get("drone-2") or dict(good.survivors).get("drone-2"):
        view = _with(m, dataclasses.replace(good, epoch=m.assignment_epoch))
        assert any("'drone-2', which is not an available drone" in p
                   for p in assignment_problems(view))


@pytest.mark.soak
def test_soak_many_seeds() -> None:
    failures = []
    for seed in range(1000, 1000 + SOAK_SEEDS):
        res, _ = _run(seed)
        if not res.ok:
            failures.append(f"{res.violation} -- replay: {res.replay_command}")
        elif not res.converged:
            failures.append(f"not converged -- replay: {res.replay_command}")
    assert not failures, failures[:5]
