"""The launcher on real processes: dependency order and readiness waits, respawn,
clean shutdown, and no process left behind even when the launcher is SIGKILLed.

The nodes are tests/launch/launch_node.py, a stand-in that listens, prints, touches
files, crashes or ignores SIGTERM on command; leftovers are found by scanning /proc for
an environment token every process of one run inherits (launcher, sentinel, nodes,
grandchildren).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from launch_harness import processes_with_token, wait_until

from swarm.bus.broker import free_port


_free_port = free_port


def _said(text: str, name: str) -> list[str]:
    """What node ``name`` printed, without the (padded) prefix."""
    return [line.split("| ", 1)[1] for line in text.splitlines()
            if line.split(" ", 1)[0] == name and "| " in line]


def _events(record: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()[:2]) for line in record.read_text().splitlines()]  # type: ignore[misc]


def test_nodes_start_in_dependency_order_each_after_the_readiness_it_waits_for(
        launch, tmp_path: Path) -> None:
    port = _free_port()
    record = tmp_path / "record"
    flag = tmp_path / "c.flag"
    run = launch(f"""
args:
  port: "{port}"
nodes:
  # Declared out of order: the start order comes from after:, not from the file.
  - name: c
    cmd: NODE --name c --record {record} --delay 0.5 --touch {flag} --expect-port $(arg port)
    after: [b]
    ready: {{file: {flag}, timeout: 60}}
  - name: a
    cmd: NODE --name a --record {record} --delay 1.0 --listen $(arg port)
    ready: {{tcp: 127.0.0.1:$(arg port), timeout: 60}}
  - name: b
    cmd: NODE --name b --record {record} --delay 0.5 --say "b is up" --expect-port $(arg port)
    after: a
    ready: {{log: "^b is up$", timeout: 60}}
  - name: d
    cmd: NODE --name d --record {record} --expect-file {flag} --exit 0 --run 0.3
    after: [c]
    ready: {{exit: 0, timeout: 60}}
  - name: e
    cmd: NODE --name e --record {record} --expect-file {flag} --exit 0
    after: [d]
    on_exit: shutdown
""")
    assert run.wait(90) == 0, run.text()
    events = _events(record)
    starts = [name for name, event in events if event == "start"]
    assert starts == ["a", "b", "c", "d", "e"], run.text()
    # Every node ran its expectation check successfully: nothing exited with 3.
    assert "exited with status 3" not in run.text()
    # Shutdown goes in reverse dependency order: c (waits on b, a) before b before a.
    terms = [name for name, event in events if event == "term"]
    assert terms == ["c", "b", "a"], run.text()
    assert _said(run.text(), "b") == ["b is up"]
    assert processes_with_token(run.token) == []


def _long_running_swarm(record: Path) -> str:
    # Each node leaves a grandchild in its process group; "stubborn" ignores SIGTERM.
    return f"""
nodes:
  - name: first
    cmd: NODE --name first --record {record} --child --say ready
    ready: {{log: ready, timeout: 60}}
  - name: second
    cmd: NODE --name second --record {record} --child --say ready
    after: first
    ready: {{log: ready, timeout: 60}}
  - name: stubborn
    cmd: NODE --name stubborn --record {record} --child --ignore-term --say ready
    after: second
    ready: {{log: ready, timeout: 60}}
    grace: 1
  - name: shell
    cmd: "sh -c '{os.sys.executable} -c \\"import time; time.sleep(600)\\" & sleep 600'"
    after: stubborn
"""


def test_sigterm_to_the_launcher_mid_run_stops_everything_and_leaves_no_orphan(
        launch, tmp_path: Path) -> None:
    run = launch(_long_running_swarm(tmp_path / "record"))
    run.wait_for_output("started shell")
    # launcher + sentinel + 4 nodes + 4 grandchildren (the shell's two children).
    wait_until(lambda: len(processes_with_token(run.token)) >= 10, 60, "every process up")
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(60) == 0, run.text()
    assert "SIGTERM: shutting down" in run.text()
    assert "stubborn still running 1 s after SIGTERM: SIGKILL" in run.text()
    # Nothing left: no node, no grandchild, no sentinel.
    wait_until(lambda: not processes_with_token(run.token), 10, "no process left")


def test_sigkill_to_the_launcher_leaves_no_orphan(launch, tmp_path: Path) -> None:
    run = launch(_long_running_swarm(tmp_path / "record"))
    run.wait_for_output("started shell")
    wait_until(lambda: len(processes_with_token(run.token)) >= 10, 60, "every process up")
    run.proc.send_signal(signal.SIGKILL)
    run.wait(10)
    # PDEATHSIG kills the nodes at once; the sentinel takes their grandchildren
    # (SIGTERM, then SIGKILL for the one that ignores it after the grace period).
    wait_until(lambda: not processes_with_token(run.token), 30,
               "the sentinel to stop every group the launcher left")


def test_a_crashing_node_with_respawn_is_restarted_until_it_runs(launch, tmp_path: Path) -> None:
    record = tmp_path / "record"
    run = launch(f"""
nodes:
  - name: flaky
    cmd: NODE --name flaky --record {record} --fail-first 2 {tmp_path / 'count'} --say running
    respawn: {{policy: on-failure, limit: 5, backoff: 0.1}}
    ready: {{log: running, timeout: 60}}
  - name: after_flaky
    cmd: NODE --name after_flaky --record {record} --exit 0
    after: flaky
    on_exit: shutdown
""")
    assert run.wait(90) == 0, run.text()
    text = run.text()
    assert _said(text, "flaky") == ["failing on purpose (run 1)", "failing on purpose (run 2)",
                                    "running"]
    assert "respawning flaky in 0.1 s (1 of 5, policy on-failure)" in text
    assert "respawning flaky in 0.2 s (2 of 5, policy on-failure)" in text
    assert "flaky ready" in text
    starts = [name for name, event in _events(record) if event == "start"]
    # The node that waits for flaky starts once, after flaky's third (good) start.
    assert starts == ["flaky", "flaky", "flaky", "after_flaky"], text
    assert processes_with_token(run.token) == []


def test_respawn_always_restarts_a_clean_exit_and_gives_up_at_its_limit(
        launch, tmp_path: Path) -> None:
    record = tmp_path / "record"
    run = launch(f"""
nodes:
  - name: looper
    cmd: NODE --name looper --record {record} --exit 0
    respawn: {{policy: always, limit: 2, backoff: 0.05}}
""")
    assert run.wait(60) == 1, run.text()
    assert [e for e in _events(record) if e[1] == "start"] == [("looper", "start")] * 3
    assert "looper: respawn limit 2 reached" in run.text()


def test_a_node_that_never_becomes_ready_stops_the_launch_and_its_dependents_never_start(
        launch, tmp_path: Path) -> None:
    record = tmp_path / "record"
    run = launch(f"""
nodes:
  - name: silent
    cmd: NODE --name silent --record {record}
    ready: {{tcp: {_free_port()}, timeout: 1}}
  - name: dependent
    cmd: NODE --name dependent --record {record}
    after: silent
""")
    assert run.wait(60) == 1, run.text()
    assert "silent not ready after 1 s (waited for TCP 127.0.0.1:" in run.text()
    assert "dependent cannot start; shutting down" in run.text()
    assert [name for name, _ in _events(record)] == ["silent", "silent"]  # start, term
    assert processes_with_token(run.token) == []


def test_a_node_that_exits_before_it_is_ready_fails_the_launch(launch, tmp_path: Path) -> None:
    run = launch("""
nodes:
  - name: quitter
    cmd: NODE --exit 4
    ready: {log: never-printed, timeout: 60}
  - name: dependent
    cmd: NODE
    after: quitter
""")
    assert run.wait(60) == 1, run.text()
    assert "quitter exited with status 4 before it was ready" in run.text()
    assert "started dependent" not in run.text()


def test_on_exit_shutdown_passes_the_node_status_on(launch) -> None:
    run = launch("""
nodes:
  - name: server
    cmd: NODE
  - name: scenario
    cmd: NODE --exit 7 --run 0.2
    on_exit: shutdown
""")
    assert run.wait(60) == 7, run.text()
    said = _said(run.text(), "launch")
    assert said.index("scenario ended and has on_exit: shutdown") < next(
        i for i, line in enumerate(said) if line.startswith("server exited with status 0"))


def test_output_is_prefixed_with_the_node_name_and_coloured_only_when_asked(launch) -> None:
    text = """
nodes:
  - name: talker
    cmd: "sh -c 'echo to stdout; echo to stderr >&2; printf no-newline'"
"""
    plain = launch(text)
    assert plain.wait(60) == 0, plain.text()
    assert _said(plain.text(), "talker") == ["to stdout", "to stderr", "no-newline"]
    assert "\x1b[" not in plain.text()


def test_colour_on_request(launch, tmp_path: Path) -> None:
    run = launch("""
nodes:
  - name: talker
    cmd: "echo hello"
""", "--colour")
    assert run.wait(60) == 0, run.text()
    assert "\x1b[36mtalker |\x1b[0m hello" in run.text()


def test_duration_stops_the_launch_cleanly(launch) -> None:
    run = launch("""
nodes:
  - name: sleeper
    cmd: NODE --child
""", "--duration", "1")
    assert run.wait(60) == 0, run.text()
    assert "duration 1 s reached: shutting down" in run.text()
    assert processes_with_token(run.token) == []


def test_parameters_reach_the_node_as_arguments_and_as_a_generated_config(
        launch, tmp_path: Path) -> None:
    script = tmp_path / "show.py"
    script.write_text(
        "import sys, tomllib\n"
        "out, args = sys.argv[1], sys.argv[2:]\n"
        "config = None\n"
        "if '--config' in args:\n"
        "    config = tomllib.load(open(args[args.index('--config') + 1], 'rb'))\n"
        "open(out, 'w').write(repr((args, config)))\n")
    run = launch(f"""
args:
  id: 3
nodes:
  - name: with_args
    cmd: [{os.sys.executable}, {script}, {tmp_path / 'args.txt'}]
    parameters: {{seed: 7, headless: true, verbose: false, peer: [a, b]}}
  - name: with_config
    cmd: [{os.sys.executable}, {script}, {tmp_path / 'config.txt'}]
    parameters_as: toml
    parameters: {{node_id: $(arg id), name: "drone-$(arg id)", bus: {{port: 1883}}}}
""")
    assert run.wait(60) == 0, run.text()
    args, config = eval((tmp_path / "args.txt").read_text())
    assert (args, config) == (["--seed", "7", "--headless", "--peer", "a", "--peer", "b"], None)
    args, config = eval((tmp_path / "config.txt").read_text())
    assert args[0] == "--config" and args[1].endswith("/with_config.toml")
    # $(arg id) unquoted is the integer 3, as `node_id: 3` would be; quoted, a string.
    assert config == {"node_id": 3, "name": "drone-3", "bus": {"port": 1883}}
    # The generated file lived in the launcher's run folder, removed at the end.
    assert not os.path.exists(args[1])


def test_a_bad_file_gives_a_clear_error_and_starts_nothing(launch, tmp_path: Path) -> None:
    run = launch("""nodes:
  - name: broker
    cmd: mosquitto
    ready: {tcp: 1883, timeout: soon}
""")
    assert run.wait(60) == 2
    assert run.text().strip() == (
        f"error: {run.file}:4: nodes[0].ready.timeout: must be a number of seconds, got 'soon'")


def test_a_missing_program_is_reported_and_the_launch_stops(launch) -> None:
    run = launch("""
nodes:
  - name: ghost
    cmd: /nonexistent/program --flag
""")
    assert run.wait(60) == 1
    assert "cannot start ghost (/nonexistent/program): No such file or directory" in run.text()


def test_a_node_that_never_stops_printing_does_not_starve_the_others(tmp_path: Path) -> None:
    # `yes` writes faster than any launcher can print: the other node's readiness, the
    # start of the node after it, and the shutdown that one asks for must still happen.
    import subprocess
    import sys
    import time
    flag = tmp_path / "flag"
    launch_file = tmp_path / "spam.yaml"
    launch_file.write_text(f"""
nodes:
  - name: spammer
    cmd: yes spam
  - name: quiet
    cmd: [touch, {flag}]
    ready: {{exit: 0, timeout: 60}}
  - name: after_quiet
    cmd: [touch, {flag}.2]
    after: quiet
    on_exit: shutdown
""")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "swarm", "launch", str(launch_file)],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert flag.exists() and Path(f"{flag}.2").exists()
    assert time.monotonic() - start < 60
