"""The benchmark register (swarm/agent/register.py): commands validated with errors
naming the field, deterministic apply that never raises, canonical snapshots that
restore exactly, exactly-once behind the session layer; and how an agent selects it
(``[node] state_machine``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.session import SessionStateMachine, SessionStatus, decode_result, \
    encode_command, encode_register
from swarm.agent.config import ConfigError, load_config
from swarm.agent.machine import CommandRefused, claim_data_dir, make_machine
from swarm.agent.register import MAX_KEYS, MAX_VALUE_CHARS, Register

from test_agent_config import MINIMAL, _write


def _put(key: str, value: str = "v") -> bytes:
    return json.dumps({"type": "put", "key": key, "value": value}).encode()


@pytest.mark.parametrize("command, message", [
    ({"key": "k", "value": "v"}, "command: missing 'type'"),
    ({"type": "get", "key": "k"}, "command: unknown type 'get' (known: put)"),
    ({"type": "put", "key": "k", "value": "v", "ttl": 3}, "put.ttl: unknown field"),
    ({"type": "put", "value": "v"}, "put.key: must be a string of 1 to 64 characters, got nothing"),
    ({"type": "put", "key": "", "value": "v"}, "put.key: must be a string of 1 to 64"),
    ({"type": "put", "key": "k" * 65, "value": "v"}, "put.key: must be a string of 1 to 64"),
    ({"type": "put", "key": 7, "value": "v"}, "put.key: must be a string"),
    ({"type": "put", "key": "k"}, "put.value: must be a string of at most 1024 characters"),
    ({"type": "put", "key": "k", "value": "v" * (MAX_VALUE_CHARS + 1)}, "put.value:"),
    ({"type": "put", "key": "k", "value": None}, "put.value:"),
])
def test_bad_commands_are_refused_naming_the_field(command: dict, message: str) -> None:
    register = Register()
    with pytest.raises(CommandRefused) as refused:
        register.parse_command(command)
    assert str(refused.value).startswith(message), str(refused.value)
    # The same verdict when such an entry is committed anyway: refused, nothing changes.
    result = register.apply(1, json.dumps(command).encode())
    assert json.loads(result) == {"ok": False, "error": str(refused.value)}
    assert register.values == {} and register.version == 0


@settings(max_examples=300, deadline=None)
@given(key=st.text(min_size=1, max_size=64), value=st.text(max_size=200))
def test_a_put_is_proposed_in_json_dumps_canonical_form(key: str, value: str) -> None:
    # parse_command writes the canonical bytes itself (speed); every node's apply and
    # any replay depend on them being exactly json.dumps's, escapes included.
    command = {"value": value, "type": "put", "key": key}
    try:
        expected = json.dumps({"key": key, "type": "put", "value": value},
                              separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:   # a lone surrogate: neither can encode it
        with pytest.raises(UnicodeEncodeError):
            Register().parse_command(command)
        return
    assert Register().parse_command(command) == expected
    r = Register()
    assert r.apply(1, expected) == b'{"ok":true,"version":1}' and r.values == {key: value}


def test_apply_puts_and_versions() -> None:
    register = Register()
    data = register.parse_command({"type": "put", "key": "ключ", "value": "ü" * MAX_VALUE_CHARS})
    outcome = register.outcome(register.apply(3, data))
    assert outcome.ok and outcome.version == 3 and outcome.result == {"ok": True, "version": 3}
    assert register.apply(5, _put("ключ", "second")) == b'{"ok":true,"version":5}'
    assert register.read(None) == (5, {"ключ": "second"})
    assert register.read("ключ") == (5, "second")
    with pytest.raises(KeyError):
        register.read("other")
    # Garbage entries are refused, never raised; the version stays.
    for garbage in (b"\xff", b"[", b"[1]", b"{}" * 10_000, b"[" * 50_000):
        refused = register.outcome(register.apply(6, garbage))
        assert not refused.ok and refused.error and refused.version is None
    assert register.version == 5
    with pytest.raises(ValueError):
        register.outcome(b'{"ok": true}')


def test_the_register_is_bounded() -> None:
    register = Register()
    for k in range(MAX_KEYS):
        assert register.outcome(register.apply(k + 1, _put(f"k{k}"))).ok
    full = register.outcome(register.apply(MAX_KEYS + 1, _put("one-more")))
    assert not full.ok and full.error is not None and full.error.startswith("put.key:")
    assert register.outcome(register.apply(MAX_KEYS + 2, _put("k0", "new"))).ok  # existing key


def test_snapshot_round_trip_and_bad_snapshots_change_nothing() -> None:
    a, b = Register(), Register()
    for i, (k, v) in enumerate([("b", "1"), ("a", "2"), ("b", "3")], start=1):
        a.apply(i, _put(k, v))
    # Same state, other order of first insertion: the same canonical bytes.
    b.apply(1, _put("a", "2"))
    b.apply(3, _put("b", "3"))
    assert a.snapshot() == b.snapshot()
    c = Register()
    c.restore(a.snapshot())
    assert (c.values, c.version, c.snapshot()) == ({"a": "2", "b": "3"}, 3, a.snapshot())
    good = json.loads(a.snapshot())
    for bad in (b"", b"\xff", b"[]", json.dumps({**good, "format": "x"}).encode(),
                json.dumps({**good, "version": -1}).encode(),
                json.dumps({**good, "extra": 1}).encode(),
                json.dumps({**good, "values": {"k" * 65: "v"}}).encode(),
                json.dumps({**good, "values": {"k": 1}}).encode()):
        with pytest.raises(ValueError):
            c.restore(bad)
        assert c.snapshot() == a.snapshot()


def test_exactly_once_behind_the_session_layer() -> None:
    register = Register()
    fsm = SessionStateMachine(register)
    client = decode_result(fsm.apply(1, encode_register(b"n"))).client_id
    first = decode_result(fsm.apply(2, encode_command(client, 1, _put("k", "a"))))
    assert first.status is SessionStatus.OK and not first.cached
    # The retry of seq 1 (another value, as a buggy client might send) is not applied.
    retry = decode_result(fsm.apply(3, encode_command(client, 1, _put("k", "b"))))
    assert retry.status is SessionStatus.OK and retry.cached and retry.payload == first.payload
    assert register.values == {"k": "a"} and register.version == 2
    # The session table and the register travel in one snapshot.
    other = SessionStateMachine(Register())
    other.restore(fsm.snapshot())
    assert other.snapshot() == fsm.snapshot()
    assert decode_result(other.apply(4, encode_command(client, 1, _put("k", "c")))).cached


def test_state_machine_is_chosen_in_the_config(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, MINIMAL)).node.state_machine == "map"
    text = MINIMAL.replace("voters = [1, 2, 3]", 'voters = [1, 2, 3]\nstate_machine = "register"')
    cfg = load_config(_write(tmp_path, text))
    assert cfg.node.state_machine == "register"
    assert make_machine(cfg.node.state_machine).name == "register"
    with pytest.raises(ConfigError, match=r"\[node\] state_machine: must be one of 'map', "
                                          r"'register', got 'kv'"):
        load_config(_write(tmp_path, text.replace('"register"', '"kv"')))
    # The flight side needs the map: [mavlink] with the register is refused.
    with pytest.raises(ConfigError, match=r"\[node\] state_machine: 'register' cannot fly a "
                                          r"drone: the flight side \(\[mavlink\]\) needs the map"):
        load_config(_write(tmp_path, text + '[mavlink]\nconnection = "tcp:127.0.0.1:5760"\n'))


def test_a_data_folder_keeps_its_state_machine(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    claim_data_dir(fresh, "register")
    claim_data_dir(fresh, "register")  # the same again: fine
    with pytest.raises(ValueError, match="holds the log of a 'register' state machine, but "
                                         r"\[node\] state_machine is 'map'"):
        claim_data_dir(fresh, "map")
    # A store made before the marker existed holds the map's log.
    old = tmp_path / "old"
    old.mkdir()
    (old / "raft.db").write_bytes(b"")
    with pytest.raises(ValueError, match="holds the log of a 'map' state machine"):
        claim_data_dir(old, "register")
    claim_data_dir(old, "map")


def test_the_agent_flag_selects_it_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from swarm.cli.agent import main

    path = _write(tmp_path, MINIMAL)
    assert main(["--config", str(path), "--state-machine", "register", "--check-config"]) == 0
    assert "state_machine='register'" in capsys.readouterr().out
    path.write_text(MINIMAL + '[mavlink]\nconnection = "tcp:127.0.0.1:5760"\n')
    assert main(["--config", str(path), "--state-machine", "register", "--check-config"]) == 2
    assert "[node] state_machine: 'register' cannot fly a drone" in capsys.readouterr().err
