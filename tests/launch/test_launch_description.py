"""Loading launch files: substitutions, arguments, includes, conditions, start order,
and errors that name the file, the line and the key. No process is started here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from swarm.launch import LaunchError, ParameterStyle, RespawnPolicy, load_launch, parse_overrides


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _error(path: Path, overrides: dict[str, str] | None = None) -> LaunchError:
    with pytest.raises(LaunchError) as info:
        load_launch(path, overrides)
    return info.value


def test_a_full_node_loads_into_a_validated_spec(tmp_path: Path) -> None:
    path = _write(tmp_path, "full.yaml", """
description: everything a node can say
args:
  port: {default: 1883, description: broker port}
nodes:
  - name: broker
    module: swarm
    args: [broker, --port, $(arg port)]
    env: {SWARM_LOG: debug, HOME: null}
    ready: {tcp: "localhost:$(arg port)", timeout: 2.5}
    respawn: {policy: always, limit: unlimited, backoff: 0.5, max_backoff: 4}
    grace: 2
  - name: script
    entry_point: swarm.__main__:main
    args: "check-command '-'"
    after: broker
    on_exit: shutdown
""")
    description = load_launch(path)
    assert description.description == "everything a node can say"
    assert description.args == {"port": "1883"}
    broker, script = description.nodes
    assert broker.command == (sys.executable, "-m", "swarm", "broker", "--port", "1883")
    assert broker.env == (("SWARM_LOG", "debug"), ("HOME", None))
    assert "HOME" not in broker.environment({"HOME": "/root", "PATH": "/bin"})
    assert broker.ready is not None and broker.ready.tcp == ("localhost", 1883)
    assert broker.ready.timeout_s == 2.5
    assert broker.respawn.policy is RespawnPolicy.ALWAYS and broker.respawn.limit is None
    assert [broker.respawn.delay_s(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert broker.grace_s == 2.0
    assert script.command[:2] == (sys.executable, "-c")
    assert script.command[3:] == ("check-command", "-")
    assert script.after == ("broker",) and script.shutdown_on_exit


def test_overrides_replace_defaults_and_plain_substitutions_keep_yaml_types(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", """
args:
  id: 1
  name: drone-$(arg id)
  headless: "false"
nodes:
  - name: agent
    cmd: agent
    parameters_as: toml
    parameters: {id: $(arg id), name: $(arg name), quoted: "$(arg id)", headless: $(arg headless)}
""")
    node = load_launch(path, parse_overrides(["id:=4"])).nodes[0]
    assert node.parameter_style is ParameterStyle.TOML
    assert node.parameters == {"id": 4, "name": "drone-4", "quoted": "4", "headless": False}
    assert node.argv("/run/x.toml") == ["agent", "--config", "/run/x.toml"]


def test_env_and_dirname_and_free_port_substitutions(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", """
args:
  port: $(find-free-port)
nodes:
  - name: n
    cmd: [prog, $(env SWARM_TEST_X), "$(env SWARM_TEST_UNSET fallback value)", $(dirname),
          $(arg port), $(arg port), $(find-free-port), $(python)]
""")
    command = load_launch(path, environ={"SWARM_TEST_X": "x"}).nodes[0].command
    assert command[7] == sys.executable
    assert command[1:4] == ("x", "fallback value", str(tmp_path))
    assert command[4] == command[5] != command[6]      # one port per $(find-free-port)
    assert all(1024 <= int(p) <= 65535 for p in command[4:7])


def test_includes_pass_arguments_and_resolve_paths_relative_to_the_including_file(
        tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub", "broker.yaml", """
args:
  port: 1883
nodes:
  - name: broker
    cmd: [mosquitto, -p, $(arg port)]
""")
    top = _write(tmp_path, "top.yaml", """
args:
  port: 2000
include:
  - file: sub/broker.yaml
    args: {port: $(arg port)}
nodes:
  - name: gcs
    cmd: [gcs, --broker, "127.0.0.1:$(arg port)"]
    after: broker
""")
    description = load_launch(top, {"port": "2001"})
    assert [n.name for n in description.nodes] == ["broker", "gcs"]
    assert description.node("broker").command == ("mosquitto", "-p", "2001")
    assert description.files == (str(top), str(tmp_path / "sub" / "broker.yaml"))


def test_conditions_switch_nodes_off_and_drop_the_waits_on_them(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", """
args:
  mosquitto: "true"
nodes:
  - name: mosquitto
    cmd: mosquitto
    if: $(arg mosquitto)
  - name: embedded
    cmd: embedded-broker
    unless: $(arg mosquitto)
  - name: agent
    cmd: agent
    after: [mosquitto, embedded]
""")
    assert [n.name for n in load_launch(path).nodes] == ["mosquitto", "agent"]
    nodes = load_launch(path, {"mosquitto": "no"}).nodes
    assert [(n.name, n.after) for n in nodes] == [("embedded", ()), ("agent", ("embedded",))]


def test_start_order_follows_waits_and_otherwise_file_order(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", """
nodes:
  - {name: gcs, cmd: g, after: [broker]}
  - {name: agent-1, cmd: a, after: [broker]}
  - {name: broker, cmd: b}
  - {name: scenario, cmd: s, after: [agent-1, gcs]}
""")
    assert [n.name for n in load_launch(path).nodes] == ["broker", "gcs", "agent-1", "scenario"]


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    ("nodes:\n  - name: a\n    cmd: x\n    colour: red\n", 4, "nodes[0].colour",
     "unknown key 'colour'"),
    ("nodes:\n  - name: a\n    cmd: x\n    ready: {tcp: 99999}\n", 4, "nodes[0].ready.tcp",
     "port 99999 is not in 1..65535"),
    ("nodes:\n  - name: a\n    cmd: x\n    ready: {log: '(', timeout: 1}\n", 4,
     "nodes[0].ready.log", "invalid regular expression"),
    ("nodes:\n  - name: a\n    cmd: x\n    ready: {tcp: 1, file: f}\n", 4, "nodes[0].ready",
     "needs exactly one of tcp:, log:, file:, exit: (has tcp, file)"),
    ("nodes:\n  - name: a\n    cmd: x\n    respawn: sometimes\n", 4, "nodes[0].respawn.policy",
     "'sometimes' is not one of never, on-failure, always"),
    ("nodes:\n  - name: a\n    cmd: x\n    respawn: {limit: -1}\n", 4, "nodes[0].respawn.limit",
     "must be a count"),
    ("nodes:\n  - name: a\n    module: x\n    cmd: y\n", 2, "nodes[0]",
     "needs exactly one of cmd:, module:, entry_point: (has cmd, module)"),
    ("nodes:\n  - name: a\n    entry_point: swarm.main\n", 3, "nodes[0].entry_point",
     "is not of the form package.module:function"),
    ("nodes:\n  - name: a b\n    cmd: x\n", 2, "nodes[0].name", "every node needs a name"),
    ("nodes:\n  - {name: a, cmd: x}\n  - {name: a, cmd: y}\n", 3, "nodes[1].name",
     "node name 'a' is already used at"),
    ("nodes:\n  - {name: a, cmd: x, after: [b]}\n", 2, "nodes[0].after",
     "node 'a' waits for 'b', which no file declares"),
    ("nodes:\n  - {name: a, cmd: x, after: [b]}\n  - {name: b, cmd: x, after: [a]}\n", 2,
     "nodes[0].after", "dependency cycle: a -> b -> a"),
    ("nodes:\n  - name: a\n    cmd: [x, $(arg nope)]\n", 3, "nodes[0].cmd[1]",
     "$(arg nope): no argument 'nope' is declared"),
    ("nodes:\n  - name: a\n    cmd: $(shell rm -rf /)\n", 3, "nodes[0].cmd",
     "unknown substitution $(shell rm -rf /)"),
    ("nodes:\n  - name: a\n    cmd: x\n    parameters: {bus: {port: 1}}\n", 4,
     "nodes[0].parameters.bus", "a nested parameter needs parameters_as"),
    ("nodes:\n  - name: a\n    cmd: x\n    if: maybe\n", 4, "nodes[0].if", "is not true or false"),
    ("nodes:\n  - name: a\n    cmd: x\n  - name: a\n", 4, "nodes[1].name",
     "node name 'a' is already used"),
    ("nodes:\n  - name: a\n    cmd: x\n    cmd: y\n", 4, None, "duplicate key 'cmd'"),
    ("nodes:\n  - name: a\n    cmd: [x\n", 4, None, "invalid YAML"),
    ("nodes: []\n", 1, None, "declares no nodes and includes nothing"),
    ("- just a list\n", 1, None, "a launch file is a mapping"),
    ("args:\n  port: {description: the port}\nnodes:\n  - {name: a, cmd: x}\n", 2,
     "args.port", "argument 'port' is required (the port): give port:=VALUE"),
    ("args:\n  mode: {default: fast, choices: [safe, slow]}\nnodes:\n  - {name: a, cmd: x}\n",
     2, "args.mode", "'fast' is not one of safe, slow"),
])
def test_errors_name_the_file_the_line_and_the_key(tmp_path: Path, text: str, line: int,
                                                   key: str | None, message: str) -> None:
    path = _write(tmp_path, "bad.yaml", text)
    error = _error(path)
    assert (error.file, error.line, error.key) == (str(path), line, key)
    assert message in error.message
    assert str(error).startswith(f"{path}:{line}: ")


def test_an_unknown_command_line_argument_is_refused_with_the_declared_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", "args:\n  port: 1\n  swarm: w\nnodes:\n  - {name: a, cmd: x}\n")
    error = _error(path, {"prot": "2"})
    assert str(error) == f"{path}: unknown argument(s) prot (this file declares: port, swarm)"


@pytest.mark.parametrize(("words", "message"), [
    (["port=1"], "is not of the form name:=value"),
    (["1x:=2"], "is not a valid argument name"),
    (["a:=1", "a:=2"], "argument 'a' is given twice"),
])
def test_command_line_overrides_are_checked(words: list[str], message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        parse_overrides(words)


def test_include_errors_point_at_the_include(tmp_path: Path) -> None:
    _write(tmp_path, "child.yaml", "args:\n  a: 1\nnodes:\n  - {name: c, cmd: x}\n")
    top = _write(tmp_path, "top.yaml",
                 "include:\n  - file: child.yaml\n    args: {b: 2}\n  - file: missing.yaml\n")
    error = _error(top)
    assert (error.line, error.key) == (3, "include[0].args")
    assert "unknown argument(s) b" in error.message
    _write(tmp_path, "top.yaml", "include:\n  - missing.yaml\n")
    error = _error(top)
    assert (error.line, error.key) == (2, "include[0].file")
    assert "cannot read" in error.message and "No such file or directory" in error.message


def test_an_include_cycle_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "include: [b.yaml]\n")
    _write(tmp_path, "b.yaml", "include: [a.yaml]\n")
    error = _error(tmp_path / "a.yaml")
    assert "include cycle" in error.message and error.file == str(tmp_path / "b.yaml")


def test_node_names_collide_across_included_files(tmp_path: Path) -> None:
    _write(tmp_path, "child.yaml", "nodes:\n  - {name: broker, cmd: x}\n")
    top = _write(tmp_path, "top.yaml", "include: [child.yaml]\nnodes:\n  - {name: broker, cmd: y}\n")
    error = _error(top)
    assert error.file == str(top) and error.line == 3
    assert f"already used at {tmp_path / 'child.yaml'}:2" in error.message


def test_an_unreadable_or_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    assert "cannot read launch file" in _error(tmp_path / "nope.yaml").message
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in _error(path).message


def test_eval_and_nested_substitutions(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", """
args:
  base: 5760
  voters: "[1, 2, 3]"
nodes:
  - name: n
    cmd: [prog, "$(eval $(arg base) + 10 * 2)", "$(eval 7 // 2 - 5 % 3)"]
    parameters_as: toml
    parameters: {voters: $(arg voters), empty: $(env SWARM_TEST_NOPE)}
""")
    with pytest.raises(LaunchError, match="SWARM_TEST_NOPE is not set"):
        load_launch(path, environ={})
    node = load_launch(path, environ={"SWARM_TEST_NOPE": "$(arg base)"}).nodes[0]
    assert node.command[1:] == ("5780", "1")
    # A list argument is a list; a value brought in from the environment is never
    # expanded again.
    assert node.parameters == {"voters": [1, 2, 3], "empty": "$(arg base)"}


@pytest.mark.parametrize(("expression", "message"), [
    ("$(eval 1 +)", "a number is missing"), ("$(eval 1 / 2)", "only integers"),
    ("$(eval (1))", "'(' inside a substitution"), ("$(eval 1 // 0)", "division by zero"),
    ("$(arg base", "unclosed $("),
])
def test_bad_eval_is_an_error(tmp_path: Path, expression: str, message: str) -> None:
    path = _write(tmp_path, "a.yaml", f"args:\n  base: 1\nnodes:\n  - name: n\n    cmd: ['{expression}']\n")
    assert message in _error(path).message
