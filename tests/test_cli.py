"""The ``swarm`` command: one dispatcher, lazily imported subcommands, strict parsing."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm.__main__ import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False, cwd=ROOT)


def test_help_lists_every_command_without_importing_them() -> None:
    # -X importtime would be flaky as a figure; instead check that no subcommand module
    # (nor the heavy libraries behind them) was imported to print the help.
    code = ("import sys; from swarm.__main__ import main; main(['--help']); "
            "print(sorted(m for m in sys.modules if m.startswith(('swarm.', 'consensus', "
            "'sitl', 'mavlink_bridge', 'numpy', 'shapely', 'paho', 'rich'))))")
    proc = _run("-c", code)
    assert proc.returncode == 0, proc.stderr
    for name, command in COMMANDS.items():
        assert name in proc.stdout
        assert command.summary in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "['swarm.__main__']"


def test_every_row_names_a_module_with_main() -> None:
    for name, command in COMMANDS.items():
        module = importlib.import_module(command.module)
        assert callable(getattr(module, "main", None)), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help_under_its_swarm_name(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert f"usage: swarm {name}" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_subcommand_accepts_abbreviated_options(name: str, capsys) -> None:
    # "--he" would be --help with abbreviations allowed (help printed, exit 0); every
    # parser refuses it instead (some first complain about a missing positional).
    with pytest.raises(SystemExit) as info:
        main([name, "--he"])
    assert info.value.code == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert f"swarm {name}: error:" in printed.err


@pytest.mark.parametrize(
    "argv, message",
    [([], "a command is required"),
     (["dmeo"], "unknown command 'dmeo' (did you mean demo?)"),
     (["--bogus"], "unrecognized option '--bogus'"),
     (["nothing-like-it"], "unknown command 'nothing-like-it'")],
)
def test_usage_errors_exit_2_and_say_what_is_wrong(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_python_dash_m_entry_points_still_work() -> None:
    for module in ("swarm", "consensus.sim", "sitl", "mavlink_bridge"):
        proc = _run("-m", module, "--help")
        assert proc.returncode == 0, (module, proc.stderr)
        assert "usage:" in proc.stdout


def test_the_installed_swarm_script_dispatches() -> None:
    script = Path(sys.executable).with_name("swarm")
    if not script.exists():
        pytest.fail(f"{script} is missing: the package is not installed with its console "
                    "script (pip install -e .)")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("swarm "), proc.stderr


def test_sim_replays_one_seed_with_one_flag(capsys) -> None:
    assert main(["sim", "--seed", "3", "--nodes", "3", "--steps", "200", "--quiet"]) == 0
    assert "runs: 1" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["sim", "--seed", "3", "--seeds", "4"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# -- the client commands' exit statuses (swarm propose / read / status), and keygen --

@pytest.mark.parametrize("command", ["propose", "read", "status"])
@pytest.mark.parametrize("flags, message", [
    (["--config", "/nonexistent/drone.toml"], "/nonexistent/drone.toml: cannot read"),
    (["--swarm", "bad/id"], "swarm id 'bad/id' is invalid"),
    (["--broker", "127.0.0.1:notaport"], "notaport"),
    (["--config", "x.toml", "--swarm", "wildfire"], "give either --config or"),
])
def test_a_config_or_usage_error_exits_2_not_3(command, flags, message, tmp_path,
                                               capsys) -> None:
    """3 means "not committed, a retry may work"; a config that cannot work is 2, as
    argparse's own usage errors are, so a script does not retry it."""
    argv = [command, *flags, "--timeout", "1"]
    if command == "propose":
        (tmp_path / "c.json").write_text('{"type": "remove_zone", "id": "z"}')
        argv.insert(1, str(tmp_path / "c.json"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"swarm {command}: error:" in err and message in err


@pytest.mark.parametrize("command", ["propose", "read", "status"])
def test_no_broker_is_3_a_retry_may_work(command, tmp_path, capsys) -> None:
    from swarm.bus.broker import free_port

    argv = [command, "--broker", f"127.0.0.1:{free_port()}", "--timeout", "1"]
    if command == "propose":
        (tmp_path / "c.json").write_text('{"type": "remove_zone", "id": "z"}')
        argv.insert(1, str(tmp_path / "c.json"))
    assert main(argv) == 3
    assert "no broker answered" in capsys.readouterr().err


def test_client_commands_document_their_exit_statuses(capsys) -> None:
    for command in ("propose", "read", "status"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "exit status:" in out and "usage or config error" in out


@pytest.mark.parametrize("text", ["[]", "  [ ]\n"])
def test_propose_refuses_an_empty_array(text, tmp_path, capsys) -> None:
    path = tmp_path / "none.json"
    path.write_text(text)
    # No broker is given or needed: it is refused before connecting.
    assert main(["propose", str(path), "--timeout", "1"]) == 2
    assert "the array holds no command" in capsys.readouterr().err


def test_keygen_into_a_missing_folder_names_the_folder_not_a_temp_file(tmp_path,
                                                                       capsys) -> None:
    target = tmp_path / "no" / "such" / "k"
    assert main(["keygen", "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {target}: the folder {target.parent} does not exist" in err
    assert ".tmp" not in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["keygen", "--out", str(blocker / "k")]) == 1
    assert f"{blocker} is not a folder" in capsys.readouterr().err
    assert main(["keygen", "--out", str(tmp_path)]) == 1
    assert f"{tmp_path} is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]   # nothing left behind
