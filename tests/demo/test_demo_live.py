"""``swarm demo`` on real processes: the whole swarm (broker, copters, agents, ground
station) comes up, the copters take off on the committed launch and fly AUTO, the
wildfire scenario commits on every node through a drone flown out of radio range and a
leader SIGKILL, the recall lands them at home, and nothing is left running afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "launch"))
from launch_harness import processes_with_token  # noqa: E402  (tests/launch/, one /proc scan)

from swarm.__main__ import main  # noqa: E402
from swarm.demo_live import NODES, NodeView, count_disagreements  # noqa: E402
from swarm.scenario import MarkCrashedDrone, Propose, ProposeRaw, wildfire_scenario  # noqa: E402


def _view(node: int, sha: str | None, online: bool = True) -> NodeView:
    return NodeView(node, online, "follower", 3, 10, 10, sha, None)


def test_assignment_disagreements_count_the_same_way() -> None:
    views = [NodeView(n, True, "follower", 3, 10, 10, "m", None, "a") for n in range(1, 6)]
    key = lambda v: v.assignment_sha256  # noqa: E731
    assert count_disagreements(views, key=key) == 0
    views[2] = NodeView(3, True, "follower", 3, 10, 10, "m", None, "b")
    views[4] = NodeView(5, True, "follower", 3, 10, 10, "m", None, None)   # none committed
    assert count_disagreements(views, key=key) == 2
    assert count_disagreements(views) == 0                                 # maps agree


def test_disagreements_count_minority_and_unchecked_nodes() -> None:
    assert count_disagreements([_view(n, "a") for n in range(1, 6)]) == 0
    assert count_disagreements([_view(1, "b")] + [_view(n, "a") for n in range(2, 6)]) == 1
    # A node that cannot be checked is not counted as agreeing.
    assert count_disagreements([_view(1, "a", online=False)]
                               + [_view(n, "a") for n in range(2, 6)]) == 1
    assert count_disagreements([_view(1, None)] + [_view(n, "a") for n in range(2, 6)]) == 1
    assert count_disagreements([_view(n, None) for n in range(1, 6)]) == 5


@pytest.mark.parametrize("argv, message", [
    (["demo", "--duration", "-1"], "must be in"),
    (["demo", "--duration", "soon"], "is not a number of seconds"),
    (["demo", "--gcs-port", "70000"], "must be in [1, 65535]"),
    (["demo", "--seed", "x"], "is not an integer"),
    (["demo", "--bogus"], "unrecognized arguments"),
])
def test_bad_arguments_are_named(argv: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_out_folder_must_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "f"
    file.write_text("")
    with pytest.raises(SystemExit):
        main(["demo", "--out", str(file)])
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.timeout(600)
def test_headless_demo_on_real_processes(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    env = dict(os.environ, LAUNCH_TEST_TOKEN=token, NO_COLOR="1")
    out = tmp_path / "out"
    try:
        run = subprocess.run(
            [sys.executable, "-m", "swarm", "demo", "--headless", "--duration", "5",
             "--out", str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=480)
    finally:
        left = processes_with_token(token)
        for pid in left:   # never leave them running, even when the test fails
            os.kill(pid, 9)
    log = (out / "demo-launch.log").read_text() if (out / "demo-launch.log").exists() else ""
    assert left == [], f"processes left behind: {left}\n{log[-3000:]}"
    assert run.returncode == 0, run.stdout[-4000:] + "\n--- launch log ---\n" + log[-4000:]
    summary = json.loads((out / "demo-summary.json").read_text())

    # All nodes up, the same map snapshot, everything applied.
    nodes = summary["nodes"]
    assert [n["node"] for n in nodes] == list(range(1, NODES + 1))
    assert all(n["online"] for n in nodes)
    assert len({n["map_sha256"] for n in nodes}) == 1 and nodes[0]["map_sha256"]
    assert all(n["applied"] == summary["final_index"] for n in nodes)
    assert summary["disagreements"] == 0 and summary["ok"] is True
    # The committed assignment: one hash, held by every node (issue 13).
    assert len({n["assignment_sha256"] for n in nodes}) == 1 and nodes[0]["assignment_sha256"]
    assert summary["assignment_disagreements"] == 0
    # Every drone's track was followed against the zones in force; none flew into fire.
    assert summary["zone_violations"] == [] and summary["unchecked_tracks"] == []
    assert all(summary["positions_checked"][str(n)] > 0 for n in range(1, NODES + 1))
    assert [n["role"] for n in nodes].count("leader") == 1

    # Every scenario command has an outcome: committed, or refused with a reason (the
    # second report of the farmhouse and the two garbled commands).
    scenario = wildfire_scenario(1, [f"drone-{i}" for i in range(1, NODES + 1)])
    actions = [a for p in scenario.phases for a in p.actions]
    proposals = sum(isinstance(a, (Propose, ProposeRaw, MarkCrashedDrone)) for a in actions)
    assert summary["unknown"] == []
    # + the launch and the recall
    assert summary["commits"] + len(summary["rejected"]) == proposals + 2
    assert summary["recalled"] is True
    assert len(summary["rejected"]) == 3, summary["rejected"]
    assert summary["missing_features"] == []

    # The leader was killed, replaced, and came back.
    assert summary["crashed"] in range(1, NODES + 1)
    assert summary["failover_s"] is not None and summary["failover_s"] > 0
    assert summary["catch_up_s"] is not None
    terms = [term for _, term, _ in summary["leaders"]]
    assert len(terms) >= 2 and terms == sorted(terms)
    assert summary["leaders"][-1][2] != summary["crashed"] or len(terms) >= 3
    assert "SIGKILL" in run.stdout and "ground station" in run.stdout

    # They flew: the committed launch armed every copter, which flew its share in AUTO
    # (its agent's telemetry: armed, above 5 m, mode AUTO) at the survey altitude.
    assert summary["launch"] is not None and summary["launch"]["airborne_auto_s"] > 0
    flight = summary["flight"]
    assert sorted(flight) == [str(n) for n in range(1, NODES + 1)], flight
    assert all(f["auto"] > 0 and f["max_alt_m"] > 20 for f in flight.values()), flight
    # The leader flown out of radio range lost leadership to another drone, far out.
    handover = summary["radio_handover"]
    assert handover is not None and handover["new_leader"] != handover["node"], handover
    assert handover["by"] in ("transfer", "election", "election before it set off"), handover
    assert handover["distance_m"] > 500, handover
    assert "flies out of radio range" in run.stdout and "leads (by" in run.stdout
    # The recall brought every drone home: landed and disarmed where it took off.
    assert summary["landed_s"] is not None, summary["landed_from_home_m"]
    landed = summary["landed_from_home_m"]
    assert sorted(landed) == [str(n) for n in range(1, NODES + 1)]
    assert all(d <= 10 for d in landed.values()), landed


@pytest.mark.timeout(600)
def test_ctrl_c_mid_run_stops_everything(tmp_path: Path) -> None:
    """Ctrl-C during the scenario: the launcher stops every node, the demo reports the
    run as not completed (exit 1), and nothing is left running."""
    import signal
    import time

    token = uuid.uuid4().hex
    env = dict(os.environ, LAUNCH_TEST_TOKEN=token, NO_COLOR="1")
    out = tmp_path / "out"
    output = tmp_path / "stdout.txt"
    with open(output, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swarm", "demo", "--headless", "--duration", "40",
             "--out", str(out)], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while "== The fire grows" not in output.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, output.read_text()[-3000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left = processes_with_token(token)
        for pid in left:
            os.kill(pid, 9)
    text = output.read_text()
    assert left == [], f"processes left behind: {left}"
    assert code == 1, text[-3000:]
    summary = json.loads((out / "demo-summary.json").read_text())
    assert summary["completed"] is False and summary["ok"] is False
    assert "DEMO FAILED" in text
