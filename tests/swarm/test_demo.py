"""The main job end to end: the seeded swarm demo and its command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarm.__main__ import main
from swarm.demo import DemoConfig, DemoResult, run_demo
from swarm.evacmap import ZoneStatus, rfc7946_problems
from swarm.planner import read_qgc_plan, read_wpl


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[DemoResult, Path]:
    out = tmp_path_factory.mktemp("demo-out")
    lines: list[str] = []
    result = run_demo(DemoConfig(seed=7, out_dir=out), lines.append)
    assert any("Phase 4" in line for line in lines)  # progress was reported
    return result, out


def test_every_node_ends_with_byte_identical_snapshots_and_plans(run) -> None:
    result, _ = run
    assert len(result.nodes) == 5
    assert len({n.map_sha256 for n in result.nodes}) == 1
    assert len({n.fsm_sha256 for n in result.nodes}) == 1
    assert len({n.plans_sha256 for n in result.nodes}) == 1
    assert result.nodes[0].plans_sha256 is not None
    assert len({n.applied for n in result.nodes}) == 1
    assert result.identical


def test_the_leader_crashed_and_another_drone_took_over(run) -> None:
    result, _ = run
    assert result.crashed is not None and result.new_leader is not None
    assert result.new_leader != result.crashed
    terms = [term for _, term, _ in result.leaders]
    assert len(result.leaders) >= 2 and terms == sorted(terms) and terms[-1] > terms[0]
    assert result.failover_ticks is not None and result.failover_ticks > 0
    # the crashed drone is back and agrees (it is one of the identical nodes)
    assert result.crashed in {n.name for n in result.nodes}
    assert result.catch_up == "snapshot"  # the leader compacted past the crashed log
    assert result.applies_checked > 100


def test_every_command_was_applied_once_and_only_the_duplicate_sighting_rejected(run) -> None:
    result, _ = run
    assert result.results
    assert all(outcome is not None for _, _, outcome in result.results)
    rejected = [(what, o.error) for _, what, o in result.results if not o.ok]
    assert len(rejected) == 1, rejected
    assert "report_survivor.id: survivor 's-farm' is already reported" in rejected[0][1]
    versions = [o.version for _, _, o in result.results if o.ok]
    assert len(set(versions)) == len(versions)  # each command is its own log entry
    before = result.rejected_before_proposing
    assert len(before) == 2
    assert "Self-intersection" in before[0]
    assert "no survivor 's-ghost' on the map" in before[1]


def test_the_story_happened_on_the_agreed_map(run) -> None:
    result, _ = run
    view = result.view
    assert view.search_area is not None
    assert view.routes["skyway"].unsafe and "z-ridge" in view.routes["skyway"].crosses
    assert not view.routes["south-road"].unsafe
    assert view.survivors["s-creek"].urgent
    assert view.survivors["s-farm"].status.value == "rescued"
    assert view.zones["z-scar"].status is ZoneStatus.CLEARED
    assert "z-bad" not in view.zones
    assert all(d.alive for d in view.drones.values()) and len(view.drones) == 5


def test_geojson_file_is_valid_rfc7946_and_matches_the_map(run) -> None:
    result, out = run
    doc = json.loads((out / "map.geojson").read_bytes())
    assert rfc7946_problems(doc) == []
    assert doc["map_version"] == result.view.version
    ids = {f["id"] for f in doc["features"]}
    assert {"route:skyway", "zone:z-ridge", "survivor:s-creek"} <= ids
    skyway = next(f for f in doc["features"] if f["id"] == "route:skyway")
    assert skyway["properties"]["unsafe"] is True


def test_plan_files_are_written_for_every_drone_and_read_back(run) -> None:
    result, out = run
    assert result.plans is not None
    assert sorted(result.plans) == [f"drone-{i}" for i in range(1, 6)]
    for name, plan in result.plans.items():
        parsed = read_qgc_plan((out / f"{name}.plan").read_text())
        assert len(parsed.plan.mission) == len(plan.plan.mission)
        waypoints = read_wpl((out / f"{name}.waypoints").read_text())
        assert len(waypoints.plan.mission) == len(plan.plan.mission)


def test_same_seed_gives_the_same_run() -> None:
    a = run_demo(DemoConfig(seed=11, nodes=3, write_files=False))
    b = run_demo(DemoConfig(seed=11, nodes=3, write_files=False))
    assert a.nodes == b.nodes
    assert a.leaders == b.leaders
    assert a.ticks == b.ticks
    assert a.identical


def test_command_line_demo_runs_quietly_and_writes_outputs(tmp_path, capsys) -> None:
    assert main(["demo-virtual", "--seed", "3", "--nodes", "4", "--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "All nodes agree" in printed
    assert "Phase 1" not in printed  # --quiet: summary only
    assert (tmp_path / "map.geojson").exists()
    plans = sorted(p.name for p in tmp_path.glob("*.plan"))
    assert plans == [f"drone-{i}.plan" for i in range(1, 5)]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo-virtual", "--nodes", "2"], "the swarm flies 3 to 10"),
        (["demo-virtual", "--nodes", "11"], "the swarm flies 3 to 10"),
        (["demo-virtual", "--nodes", "five"], "is not an integer"),
        (["demo-virtual", "--seed", "-1"], "must be in"),
        (["demo-virtual", "--bogus"], "unrecognized arguments"),
        ([], "required"),
    ],
)
def test_command_line_rejects_bad_arguments(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_command_line_rejects_an_output_path_that_is_a_file(tmp_path, capsys) -> None:
    file = tmp_path / "not-a-dir"
    file.write_text("x")
    with pytest.raises(SystemExit):
        main(["demo-virtual", "--out", str(file)])
    assert "is not a directory" in capsys.readouterr().err


def test_check_command_prints_canonical_form_or_the_reason(tmp_path, capsys) -> None:
    good = tmp_path / "good.json"
    good.write_text('{ "id": "z1", "type": "remove_zone" }')
    assert main(["check-command", str(good)]) == 0
    assert capsys.readouterr().out.strip() == '{"id":"z1","type":"remove_zone"}'
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "remove_zone", "id": "z1", "colour": "red"}')
    assert main(["check-command", str(bad)]) == 1
    assert "remove_zone.colour: unknown field" in capsys.readouterr().err
    assert main(["check-command", str(tmp_path / "missing.json")]) == 2


def test_demo_config_validates() -> None:
    with pytest.raises(ValueError, match="nodes"):
        DemoConfig(nodes=1)
    with pytest.raises(ValueError, match="seed"):
        DemoConfig(seed=-3)


def test_demo_is_identical_across_processes_and_hash_seeds(tmp_path) -> None:
    """The real entry point, twice, with different PYTHONHASHSEED: nothing in the run
    may depend on set or dict ordering of strings."""
    import os
    import subprocess
    import sys

    outputs = []
    for hash_seed in ("0", "4242"):
        out = tmp_path / hash_seed
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "COLUMNS": "200"}
        proc = subprocess.run(
            [sys.executable, "-m", "swarm", "demo-virtual", "--seed", "4", "--quiet", "--out", str(out)],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "All nodes agree" in proc.stdout
        table = [line for line in proc.stdout.splitlines() if line.startswith(" drone-")]
        outputs.append((table, (out / "map.geojson").read_bytes(),
                        (out / "drone-1.plan").read_bytes()))
    assert outputs[0] == outputs[1]
