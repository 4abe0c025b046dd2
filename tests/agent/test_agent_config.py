"""The agent's TOML config: every key validated, errors that name the key, flags that
override the file, timing profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.agent.config import LEADERSHIP_PROFILES, PROFILES, ConfigError, load_config
from swarm.bus.client import BrokerAddress

EXAMPLE = Path(__file__).resolve().parents[2] / "swarm" / "agent" / "example.toml"

MINIMAL = """
[node]
id = 2
data_dir = "d2"
voters = [1, 2, 3]
[swarm]
id = "wildfire"
key_file = "k"
[bus]
brokers = ["127.0.0.1:1883"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "drone.toml"
    p.write_text(text)
    return p


def test_the_shipped_example_is_valid_and_documents_every_default() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.node.id == 1 and cfg.node.voters == (1, 2, 3)
    assert cfg.timing.profile == "lan" and cfg.timing.tick_ms == 10
    assert cfg.metrics.listen == ("127.0.0.1", 9464)
    assert cfg.bus.brokers == (BrokerAddress("127.0.0.1", 1883),)
    # relative paths are relative to the file's folder
    assert cfg.node.data_dir == EXAMPLE.parent / "data" / "drone-1"


def test_minimal_config_takes_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL))
    assert cfg.node.name == "drone-2"
    assert cfg.node.data_dir == tmp_path / "d2"
    assert cfg.swarm.key_file == tmp_path / "k"
    assert cfg.bus.protocol == "5" and cfg.bus.keepalive_s == 10
    assert cfg.mavlink is None
    assert cfg.log.format == "text"
    assert cfg.raft.broadcast_heartbeats
    assert (cfg.timing.tick_ms, cfg.timing.election_ticks, cfg.timing.heartbeat_ticks) \
        == PROFILES["lan"]


def test_radio_profile_and_per_value_overrides(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL + '[timing]\nprofile = "radio"\n'
                                                  'heartbeat_ticks = 5\n'))
    assert cfg.timing.tick_ms == PROFILES["radio"][0]
    assert cfg.timing.heartbeat_ticks == 5
    assert cfg.timing.election_timeout_ms == (1000, 2000)


def test_best_signal_leadership_is_on_by_default_with_profile_times(tmp_path: Path) -> None:
    lan = load_config(_write(tmp_path, MINIMAL)).leadership
    assert lan.by_link_score and lan.margin == 0.1
    assert (lan.dwell_s, lan.interval_s, lan.election_delay_s, lan.probe_period_s,
            lan.rtt_good_ms, lan.rtt_bad_ms) == LEADERSHIP_PROFILES["lan"]
    assert lan.ticks(10) == (300, 3000, 15)  # 3 s dwell, 30 s interval, 150 ms delay
    radio = load_config(_write(tmp_path, MINIMAL + '[timing]\nprofile = "radio"\n'
                                                   '[leadership]\nmargin = 0.2\n')).leadership
    assert radio.margin == 0.2
    assert (radio.dwell_s, radio.interval_s) == LEADERSHIP_PROFILES["radio"][:2]
    assert radio.ticks(50) == (100, 1200, 20)
    off = load_config(_write(tmp_path, MINIMAL + "[leadership]\nby_link_score = false\n"
                                                 "radio = \"none\"\n"))
    assert not off.leadership.by_link_score and off.leadership.radio == "none"
    assert lan.radio == "auto" and lan.radio_detect_s == 10.0
    probe = load_config(_write(tmp_path, MINIMAL + '[leadership]\nradio = "radio_status"\n'
                                                   "radio_detect_s = 3\n")).leadership
    assert (probe.radio, probe.radio_detect_s) == ("radio_status", 3.0)
    # A longer election timeout raises the interval's floor with it.
    slow = load_config(_write(tmp_path, MINIMAL + "[timing]\ntick_ms = 20\nelection_ticks = 1000\n"))
    assert slow.leadership.interval_s == 40.0  # two 20 s election timeouts (20 ms ticks)
    with pytest.raises(ConfigError, match=r"interval_s: must be at least twice the election "
                                          r"timeout \(20 s"):
        load_config(_write(tmp_path, MINIMAL + "[timing]\nelection_ticks = 1000\n"
                                               "[leadership]\ninterval_s = 19\n"))


def test_flags_override_the_file_and_are_validated_the_same_way(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    cfg = load_config(path, {"bus.brokers": ["b.example:9999", "[::1]", "mqtt://c"],
                             "log.format": "json",
                             "node.data_dir": "/abs/dir", "metrics.listen": "off"})
    assert cfg.bus.brokers == (BrokerAddress("b.example", 9999), BrokerAddress("::1", 1883),
                               BrokerAddress("c", 1883))
    assert cfg.log.format == "json"
    assert cfg.node.data_dir == Path("/abs/dir")
    assert cfg.metrics.listen is None
    with pytest.raises(ConfigError, match=r"\[log\] format: must be one of 'text', 'json'"):
        load_config(path, {"log.format": "xml"})


@pytest.mark.parametrize("extra, message", [
    ("[bus]\nkeepalive_s = 0\n", r"\[bus\] keepalive_s: must be an integer in \[1, 65535\], got 0"),
    ("[bus]\nkeepalive = 5\n", r"\[bus\] keepalive: unknown key \(did you mean keepalive_s\?\)"),
    ("[buss]\n", r"\[buss\]: unknown section \(did you mean \[bus\]\?\)"),
    ("[timing]\nprofile = \"fast\"\n", r"\[timing\] profile: must be one of 'lan', 'radio'"),
    ("[timing]\nheartbeat_ticks = 15\n", r"\[timing\] heartbeat_ticks: must be less than"),
    ("[metrics]\nlisten = \"localhost\"\n", r"\[metrics\] listen: must be \"HOST:PORT\""),
    ("[mavlink]\nconnection = \"carrier-pigeon:1\"\n", r"\[mavlink\] connection:"),
    ("[mavlink]\nconnection = \"/dev/serial0\"\nbaud = -3\n", r"\[mavlink\] baud: must be"),
    ("[mavlink]\nconnection = \"/dev/serial0\"\ntelemetry_hz = 100\n",
     r"\[mavlink\] telemetry_hz: must be a number in \[0.2, 50\], got 100"),
    ("[client]\nrequest_timeout_s = nan\n", r"\[client\] request_timeout_s: must be a number"),
    ("[client]\nmax_queued_requests = 0\n", r"\[client\] max_queued_requests: must be an integer"),
    ("[bus.tls]\nca_file = \"ca\"\ncert_file = \"c\"\n",
     r"\[bus.tls\] key_file: cert_file and key_file go together"),
    ("[bus.tls]\ncert_file = \"c\"\n", r"\[bus.tls\] ca_file: is required"),
    ("[bus]\npassword_file = \"p\"\n", r"\[bus\] password_file: needs username"),
    ("[leadership]\nby_link_score = 1\n", r"\[leadership\] by_link_score: must be true or false"),
    ("[raft]\nbroadcast_heartbeats = \"yes\"\n",
     r"\[raft\] broadcast_heartbeats: must be true or false"),
    ("[leadership]\nmargin = 0\n", r"\[leadership\] margin: must be a number in \[0.01, 1\]"),
    ("[leadership]\ninterval_s = 0.2\n",
     r"\[leadership\] interval_s: must be at least twice the election timeout \(0.3 s"),
    ("[leadership]\nelection_delay_s = 2\n",
     r"\[leadership\] election_delay_s: must be at most ten election timeouts \(1.5 s"),
    ("[leadership]\nrtt_good_ms = 600\n", r"\[leadership\] rtt_bad_ms: must be above rtt_good_ms"),
    ("[leadership]\ndwell = 1\n", r"\[leadership\] dwell: unknown key \(did you mean dwell_s\?\)"),
    ("[leadership]\ndwell_s = inf\n", r"\[leadership\] dwell_s: must be a number"),
    ("[leadership]\nradio = \"wifi\"\n", r"\[leadership\] radio: must be one of 'auto', 'radio_status', 'none'"),
    ("[leadership]\nradio_detect_s = 0.5\n", r"\[leadership\] radio_detect_s: must be a number in \[1, 600\]"),
])
def test_bad_values_name_section_and_key(tmp_path: Path, extra: str, message: str) -> None:
    # Merge the extra table into MINIMAL's (TOML forbids defining [bus] twice).
    text = MINIMAL
    if extra.startswith("[bus]\n"):
        text = text.replace('[bus]\n', extra)
    else:
        text += extra
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize("node, message", [
    ("id = 0\ndata_dir = \"d\"\nvoters = [1]", r"\[node\] id: must be an integer"),
    ("id = 1\nvoters = [1]", r"\[node\] data_dir: is required"),
    ("id = 1\ndata_dir = \"d\"", r"\[node\] voters: is required"),
    ("id = 4\ndata_dir = \"d\"\nvoters = [1, 2]", r"must include this node's id 4"),
    ("id = 1\ndata_dir = \"d\"\nvoters = [1, 1]", r"lists a node twice"),
    ("id = 1\ndata_dir = \"d\"\nvoters = [1, true]", r"must be a non-empty list of node ids"),
    ("id = 1\nname = \"a b\"\ndata_dir = \"d\"\nvoters = [1]", r"\[node\] name:"),
])
def test_node_section_errors(tmp_path: Path, node: str, message: str) -> None:
    text = MINIMAL.replace('id = 2\ndata_dir = "d2"\nvoters = [1, 2, 3]', node)
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize("broker, message", [
    ('"http://x:1"', "the scheme must be mqtt:// or mqtts://"),
    ('"mqtts://x:1"', r"mqtts:// needs \[bus.tls\]"),
    ('"x:99999"', r"is not in \[1, 65535\]"),
    ('"user:pw@x:1"', "credentials are username"),
    ('"a:1", "a:1"', "lists a broker twice"),
    ("5", "a broker must be a string"),
])
def test_broker_addresses_are_validated(tmp_path: Path, broker: str, message: str) -> None:
    text = MINIMAL.replace('brokers = ["127.0.0.1:1883"]', f"brokers = [{broker}]")
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_unreadable_or_broken_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[node\nid=1"))
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe[node]")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"\[swarm\]: section is required"):
        load_config(_write(tmp_path, "[node]\nid = 1\ndata_dir = \"d\"\nvoters = [1]\n"))


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        cfg.node.id = 3  # type: ignore[misc]


def test_tls_moves_the_default_port_to_8883(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL + '[bus.tls]\nca_file = "ca.crt"\n'))
    assert cfg.bus.brokers == (BrokerAddress("127.0.0.1", 1883),)  # an explicit port stays
    cfg = load_config(_write(tmp_path, MINIMAL.replace('"127.0.0.1:1883"', '"broker.local"')
                             + '[bus.tls]\nca_file = "ca.crt"\n'))
    assert cfg.bus.brokers == (BrokerAddress("broker.local", 8883),)
    cfg = load_config(_write(tmp_path, MINIMAL.replace('"127.0.0.1:1883"', '"mqtts://b.local"')
                             + '[bus.tls]\nca_file = "ca.crt"\n'))
    assert cfg.bus.brokers == (BrokerAddress("b.local", 8883),)
    with pytest.raises(ConfigError, match=r"with \[bus.tls\] every broker is TLS"):
        load_config(_write(tmp_path, MINIMAL.replace('"127.0.0.1:1883"', '"mqtt://b.local"')
                           + '[bus.tls]\nca_file = "ca.crt"\n'))
    assert cfg.bus.tls is not None and cfg.bus.tls.ca_file == tmp_path / "ca.crt"


# -- key rotation ([swarm] key settings; docs/protocol.md, "Key rotation") -----------------

def _swarm(tmp_path: Path, lines: str) -> Path:
    return _write(tmp_path, MINIMAL.replace('key_file = "k"\n', 'key_file = "k"\n' + lines))


def test_rotation_phases_parse_and_previous_until_is_an_absolute_utc_time(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    one = load_config(_swarm(tmp_path, 'next_key_file = "k.new"\n')).swarm
    assert (one.next_key_file, one.previous_key_file, one.previous_until) \
        == (tmp_path / "k.new", None, None)
    want = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    for until in ("2026-06-01T12:00:00Z", "2026-06-01T14:00:00+02:00",
                  '"2026-06-01T12:00:00Z"', '"2026-06-01T12:00:00+00:00"'):
        two = load_config(_swarm(tmp_path, 'previous_key_file = "/keys/old"\n'
                                           f"previous_until = {until}\n")).swarm
        assert two.previous_key_file == Path("/keys/old") and two.next_key_file is None
        assert two.previous_until == want and two.previous_until.tzinfo is timezone.utc


@pytest.mark.parametrize("lines, message", [
    ('next_key_file = "n"\nprevious_key_file = "p"\nprevious_until = 2026-06-01T12:00:00Z\n',
     r"\[swarm\] next_key_file: and previous_key_file together: one rotation at a time"),
    ('previous_key_file = "p"\n', r"\[swarm\] previous_until: is required with previous_key_file"),
    ('previous_until = 2026-06-01T12:00:00Z\n',
     r"\[swarm\] previous_until: without previous_key_file"),
    ('previous_key_file = "p"\nprevious_until = 2026-06-01T12:00:00\n',
     r"\[swarm\] previous_until: 2026-06-01T12:00:00 has no offset"),
    ('previous_key_file = "p"\nprevious_until = 2026-06-01\n',
     r"\[swarm\] previous_until: must be a date and time with an offset .* a date without"),
    ('previous_key_file = "p"\nprevious_until = "next tuesday"\n',
     r"\[swarm\] previous_until: 'next tuesday' is not an ISO 8601"),
    ('previous_key_file = "p"\nprevious_until = 3600\n',
     r"\[swarm\] previous_until: must be a date and time"),
    ('next_key_file = "k"\n', r"\[swarm\] next_key_file: .*k is key_file itself"),
    ('previous_key_file = "./k"\nprevious_until = 2026-06-01T12:00:00Z\n',
     r"\[swarm\] previous_key_file: .*k is key_file itself"),
    ('previous_key_file = "p"\nprevious_key_overlap_s = 3600\n',
     r"\[swarm\] previous_key_overlap_s: replaced by previous_until"),
    ('next_key = "n"\n', r"\[swarm\] next_key: unknown key \(did you mean next_key_file\?\)"),
])
def test_rotation_settings_are_validated_naming_the_key(tmp_path: Path, lines: str,
                                                        message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_swarm(tmp_path, lines))


def test_the_keyring_is_read_from_the_config_with_each_file_checked(tmp_path: Path) -> None:
    import os
    import shutil

    from swarm.agent.config import load_keyring
    from swarm.bus.keys import KeyFileError, generate_key_file, load_key

    old, new = generate_key_file(tmp_path / "k"), generate_key_file(tmp_path / "k.new")
    ring = load_keyring(load_config(_swarm(tmp_path, 'next_key_file = "k.new"\n')).swarm)
    assert (ring.phase, ring.sealing, ring.next) == ("accept-next", old, new)
    (tmp_path / "k").rename(tmp_path / "k.old")
    (tmp_path / "k.new").rename(tmp_path / "k")
    phase2 = _swarm(tmp_path, 'previous_key_file = "k.old"\n'
                              'previous_until = 2026-06-01T12:00:00Z\n')
    ring = load_keyring(load_config(phase2).swarm)
    assert (ring.phase, ring.sealing, ring.previous) == ("overlap", new, old)
    assert ring.previous_until == 1780315200.0   # 2026-06-01T12:00:00Z
    assert ring.opening_keys(1780315199.0) == (new, old)
    assert ring.opening_keys(1780315200.0) == (new,)
    # Each file keeps load_key's checks, and the error names the setting.
    os.chmod(tmp_path / "k.old", 0o640)
    with pytest.raises(KeyFileError, match=r"\[swarm\] previous_key_file: key file .*k.old is "
                                           r"accessible by group or others"):
        load_keyring(load_config(phase2).swarm)
    (tmp_path / "k.old").unlink()
    with pytest.raises(KeyFileError, match=r"\[swarm\] previous_key_file: .*does not exist"):
        load_keyring(load_config(phase2).swarm)
    # Two files holding one key: no rotation at all (phase 2 without the new key).
    shutil.copy(tmp_path / "k", tmp_path / "k.old")
    os.chmod(tmp_path / "k.old", 0o600)
    assert load_key(tmp_path / "k.old") == new
    with pytest.raises(KeyFileError, match=r"\[swarm\] previous_key_file: .*k.old holds the "
                                           r"same key as key_file"):
        load_keyring(load_config(phase2).swarm)


def test_a_key_overlap_far_in_the_future_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    # An old key accepted for a year (a typo in previous_until's year, say) trusts
    # whoever holds it that long: the agent says so at start.
    import logging
    import types
    from datetime import datetime, timedelta, timezone

    from swarm.agent.node import _log_keys
    from swarm.bus.keys import KEY_BYTES, Keyring, SwarmKey

    new, old = SwarmKey(b"n" * KEY_BYTES), SwarmKey(b"o" * KEY_BYTES)
    for days, warned in ((2, False), (365, True)):
        until = datetime.now(timezone.utc) + timedelta(days=days)
        keyring = Keyring(new, previous=old, previous_until=until.timestamp())
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="swarm.agent"):
            _log_keys(keyring, types.SimpleNamespace(previous_until=until))  # type: ignore[arg-type]
        assert any("phase 2" in r.getMessage() for r in caplog.records)
        assert any(r.levelno == logging.WARNING and "days away" in r.getMessage()
                   for r in caplog.records) is warned, [r.getMessage() for r in caplog.records]
