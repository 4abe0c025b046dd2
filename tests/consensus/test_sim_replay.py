"""The simulator is deterministic (a seed replays byte for byte, whatever Python's hash
seed), its failing runs print a replay command that means what it says, and its
command line validates what it is given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.sim.cli import build_parser, main, parse_faults
from consensus.sim.cluster import ALL_FAULTS, SimConfig, replay_command, run_seed
from consensus.sim.network import NetworkFaults, VirtualNetwork
from consensus.types import Message, MessageType

REPO = Path(__file__).resolve().parents[2]
SMALL = SimConfig(steps=200, quiet_ticks=60)


def test_same_seed_gives_a_byte_identical_trace() -> None:
    a = run_seed(7, SMALL, trace=True)
    b = run_seed(7, SMALL, trace=True)
    assert a.trace == b.trace
    assert a.trace_digest == b.trace_digest
    assert len(a.trace) > 100  # it did something worth comparing


def test_trace_digest_is_the_same_with_and_without_tracing() -> None:
    assert run_seed(3, SMALL).trace_digest == run_seed(3, SMALL, trace=True).trace_digest


def test_different_seeds_give_different_runs() -> None:
    assert run_seed(1, SMALL).trace_digest != run_seed(2, SMALL).trace_digest


def test_replay_does_not_depend_on_the_python_hash_seed() -> None:
    cmd = [sys.executable, "-m", "consensus.sim", "--seed", "11", "--steps", "150", "--verbose"]
    outputs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        proc = subprocess.run(cmd, capture_output=True, cwd=REPO, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        # The summary's timing lines differ; the trace before them must not.
        outputs.append(proc.stdout.split(b"\nruns: ")[0])
    assert outputs[0] == outputs[1]
    assert outputs[0].count(b"\n") > 100


def test_replay_command_reproduces_the_configuration() -> None:
    cfg = SimConfig(nodes=3, steps=250, faults=frozenset({"drop", "crash"}), clients=4)
    cmd = replay_command(42, cfg)
    args = build_parser().parse_args(cmd.split()[3:])
    assert (args.seed, args.start) == (42, None)  # exactly seed 42
    assert (args.nodes, args.steps, args.clients) == (3, 250, 4)
    assert args.faults == frozenset({"drop", "crash"})
    assert args.verbose
    assert "--faults all" in replay_command(1, SimConfig())
    sq = build_parser().parse_args(replay_command(1, SimConfig(storage="sqlite", wire_codec=True)).split()[3:])
    assert sq.storage == "sqlite" and sq.codec


def test_network_decisions_follow_the_seed_only() -> None:
    import random

    def deliveries(seed: int) -> list[tuple[int, int, int]]:
        net: VirtualNetwork[Message] = VirtualNetwork(
            random.Random(seed), NetworkFaults(drop=0.2, duplicate=0.2, reorder=0.3, max_delay=4)
        )
        out = []
        for t in range(50):
            net.send(Message(MessageType.HEARTBEAT, to=2, frm=1, term=1, commit=t), t)
            out += [(t, m.commit, m.to) for m in net.deliver(t)]
        return out

    first = deliveries(5)
    assert first == deliveries(5)
    assert first != deliveries(6)
    commits = [c for _, c, _ in first]
    assert commits != sorted(commits)  # reordered
    assert len(commits) != len(set(commits)) or len(commits) < 50  # duplicated or dropped


def test_partition_cuts_links_in_both_directions_and_swallows_in_flight_messages() -> None:
    import random

    net: VirtualNetwork[Message] = VirtualNetwork(random.Random(0))
    net.send(Message(MessageType.HEARTBEAT, to=2, frm=1, term=1), 0)
    net.partition([1], [2, 3])
    assert not net.connected(1, 2) and not net.connected(2, 1) and net.connected(2, 3)
    assert net.deliver(5) == []
    net.heal()
    net.send(Message(MessageType.HEARTBEAT, to=2, frm=1, term=1), 5)
    assert len(net.deliver(6)) == 1
    with pytest.raises(ValueError, match="overlap"):
        net.partition([1, 2], [2, 3])
    with pytest.raises(ValueError):
        NetworkFaults(drop=1.5)
    with pytest.raises(ValueError):
        NetworkFaults(min_delay=3, max_delay=2)


# --- the command line ----------------------------------------------------------------


def test_cli_runs_seeds_and_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--nodes", "3", "--seeds", "3", "--steps", "120", "--faults", "drop,partition,crash"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "runs: 3" in out and "violations: 0" in out and "not converged" in out
    assert "first failing seed: none" in out and "slowest seed:" in out


def test_the_summary_names_the_seeds_that_did_not_converge() -> None:
    """Liveness is reported by seed, with a replay, as violations are."""
    import dataclasses

    from consensus.sim.cli import _summary

    cfg = SimConfig(nodes=3, steps=60)
    runs = [run_seed(seed, cfg) for seed in (7, 8)]
    lines = _summary([runs[0], dataclasses.replace(runs[1], converged=False)], 1.0)
    assert "not converged after the quiet period (liveness, not a safety violation): 1" in lines
    named = [line for line in lines if line.startswith("not converged seeds:")]
    assert named == [f"not converged seeds: 8 (replay: {runs[1].replay_command})"]
    assert not any(line.startswith("not converged seeds:") for line in _summary(runs, 1.0))


def test_cli_runs_on_sqlite_storage(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--nodes", "3", "--seeds", "1", "--steps", "100", "--storage", "sqlite", "--codec"])
    assert rc == 0
    assert "violations: 0" in capsys.readouterr().out


def test_cli_verbose_prints_one_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "4", "--steps", "60", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "leads term" in out and "runs: 1" in out


def test_cli_seed_runs_exactly_that_one_seed(capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 8: "--seed 3" was a prefix of "--seeds" and ran three seeds (0, 1, 2).
    assert main(["--seed", "3", "--steps", "60", "--verbose"]) == 0
    one = capsys.readouterr().out
    assert "runs: 1" in one
    assert main(["--start", "3", "--seeds", "1", "--steps", "60", "--verbose"]) == 0
    same = capsys.readouterr().out
    # The same run: identical traces (the summary's timing lines differ).
    assert one.split("\nruns: ")[0] == same.split("\nruns: ")[0]


@pytest.mark.parametrize("argv", [["--se", "3"], ["--seed=3", "--seeds", "2"], ["--node", "3"],
                                  ["--step", "60"], ["--fault", "none"], ["--verb"]])
def test_cli_never_guesses_an_abbreviated_or_mixed_option(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err or "not allowed with" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--faults", "drop,meteor"], "unknown fault(s) 'meteor'"),
        (["--faults", "drop,,crash"], "unknown fault"),
        (["--nodes", "0"], "--nodes must be between 1 and 9"),
        (["--nodes", "12"], "--nodes must be between 1 and 9"),
        (["--nodes", "five"], "--nodes must be an integer"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--start", "-1"], "--start must be between 0"),
        (["--steps", "3"], "--steps must be between 10"),
        (["--seeds", "2", "--verbose"], "use it with --seed N"),
        (["--verbose"], "use it with --seed N"),
        (["--seed", "1", "--start", "1"], "cannot be combined with --start"),
        (["--seed", "1", "--start", "0"], "cannot be combined with --start"),
        (["--seed", "-1"], "--seed must be between 0"),
        (["--seed", "x"], "--seed must be an integer"),
        (["--storage", "floppy"], "invalid choice: 'floppy'"),
    ],
)
def test_cli_rejects_bad_arguments_clearly(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_fault_names_parse() -> None:
    assert parse_faults("all") == ALL_FAULTS
    assert parse_faults("none") == frozenset()
    assert parse_faults(" drop , dup ") == frozenset({"drop", "dup"})


def test_sim_config_validates() -> None:
    with pytest.raises(ValueError, match="unknown faults"):
        SimConfig(faults=frozenset({"fire"}))
    with pytest.raises(ValueError):
        SimConfig(nodes=0)
    with pytest.raises(ValueError):
        SimConfig(election_tick=2, heartbeat_tick=2)


def test_replay_command_keeps_the_link_score_schedule() -> None:
    cfg = SimConfig(link_scores=True, score_noise=0.08, score_change_rate=0.02)
    args = build_parser().parse_args(replay_command(5, cfg).split()[3:])
    assert args.link_scores and (args.score_noise, args.score_change_rate) == (0.08, 0.02)
