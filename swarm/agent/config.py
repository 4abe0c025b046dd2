"""One drone's agent configuration: a TOML file (tomllib) read into a frozen,
validated dataclass tree.

Every key is documented in docs/agent.md, and ``swarm/agent/example.toml`` is a
complete, commented example. Rules:

* unknown sections and keys are errors (a typo must not silently fall back to a
  default on an aircraft), and every error names the key: ``[bus] keepalive_s: must be
  an integer in [1, 65535], got 0``;
* relative paths (``data_dir``, key and certificate files) are relative to the config
  file's folder, so a config and its files can move together;
* command-line flags override the file (:func:`load_config`'s ``overrides``), and are
  validated exactly like the file's values;
* timings come from a profile, ``lan`` (fast failover on a healthy network) or ``radio``
  (slow, lossy links), whose tick, election and heartbeat values can each be
  overridden in ``[timing]``, and whose best-signal leadership times in
  ``[leadership]`` (on by default: the best-connected drone leads).
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from consensus.types import MAX_NODE_ID
from swarm.bus.client import BrokerAddress, BusConfigError
from swarm.bus.keys import KeyFileError, Keyring, SwarmKey, load_key

from .link import RADIO_MODES
from .machine import STATE_MACHINES

__all__ = [
    "AgentConfig",
    "BusSettings",
    "ClientConfig",
    "ConfigError",
    "LEADERSHIP_PROFILES",
    "LeadershipConfig",
    "LogConfig",
    "MavlinkConfig",
    "MetricsConfig",
    "NodeConfig",
    "PROFILES",
    "RaftConfig",
    "SwarmConfig",
    "TimingConfig",
    "TlsSettings",
    "load_config",
    "load_keyring",
    "parse_bus_section",
    "parse_config",
]

_SWARM_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file, section and key."""


# ---------------------------------------------------------------- the dataclass tree


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: int
    name: str
    #: Folder of the node's SQLite store (raft.db) and its lock.
    data_dir: Path
    #: Voters of the cluster when this node creates a fresh store (ignored afterwards:
    #: the configuration then lives in the log, thesis §4.1).
    voters: tuple[int, ...]
    #: The replicated state machine (swarm/agent/machine.py): ``map``, the evacuation
    #: map, or ``register``, a minimal register for benchmarking the consensus path.
    state_machine: str = "map"


@dataclass(frozen=True, slots=True)
class SwarmConfig:
    """The swarm id and its keys. A key rotation is two phases, each one config change
    rolled out drone by drone (swarm.bus.keys.Keyring, docs/protocol.md "Key
    rotation"): phase 1 names the new key ``next_key_file`` (accepted, not sealing);
    phase 2 makes it ``key_file`` and the old one ``previous_key_file``, accepted until
    ``previous_until``."""

    id: str
    #: The swarm key this node seals with (``swarm keygen``): must not be readable by
    #: group or others.
    key_file: Path
    #: Phase 1 of a rotation: the new key, accepted but not used to seal.
    next_key_file: Path | None = None
    #: Phase 2: the old key, still accepted until ``previous_until``.
    previous_key_file: Path | None = None
    #: End of phase 2's overlap: an absolute time (timezone-aware, UTC), so a restart
    #: does not extend it.
    previous_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Paths only: the files are opened (and checked) when the agent connects, so a
    config can be validated on a machine without the certificates."""

    #: The CA that signed the broker's certificate (the broker's host name is checked).
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class BusSettings:
    #: Brokers in order of preference; the bus fails over down the list.
    brokers: tuple[BrokerAddress, ...]
    #: "5" (MQTT 5, default) or "3.1.1".
    protocol: str = "5"
    keepalive_s: int = 10
    username: str | None = None
    password_file: Path | None = None
    #: TLS to every broker when set.
    tls: TlsSettings | None = None
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0


@dataclass(frozen=True, slots=True)
class TimingConfig:
    profile: str
    tick_ms: int
    election_ticks: int
    heartbeat_ticks: int

    @property
    def election_timeout_ms(self) -> tuple[int, int]:
        """The randomized election timeout range (Raft §5.2: [T, 2T))."""
        return self.tick_ms * self.election_ticks, 2 * self.tick_ms * self.election_ticks


@dataclass(frozen=True, slots=True)
class RaftConfig:
    #: Uncommitted tail a leader accepts before answering ``busy`` (0: the driver's
    #: default, consensus.driver.DEFAULT_MAX_UNCOMMITTED_BYTES).
    max_uncommitted_bytes: int = 0
    #: Snapshot the map and compact the log every this many applied entries.
    snapshot_every: int = 4096
    #: Entries kept behind a snapshot for briefly lagging followers.
    compact_keep: int = 512
    #: Raft messages received and not yet stepped; more are dropped (and counted).
    max_inbound: int = 4096
    #: Bytes of entries in one AppendEntries message.
    max_msg_bytes: int = 256 * 1024
    #: AppendEntries in flight to one follower (the broker's queue must hold them).
    max_inflight_msgs: int = 64
    #: A leader sends each heartbeat round as one broadcast envelope on ``raft-all``
    #: instead of one envelope per follower (docs/protocol.md). Off only while a swarm
    #: still has agents older than the broadcast (they would hear no heartbeats).
    broadcast_heartbeats: bool = True


@dataclass(frozen=True, slots=True)
class ClientConfig:
    #: Client requests this node holds unanswered; more are answered ``busy``.
    max_pending: int = 1024
    #: Requests received and not yet taken by the node thread (swarm/agent/inbox.py);
    #: one over it is answered ``busy`` by the network thread without being queued.
    max_queued_requests: int = 4096
    #: A request not answered by then gets ``timeout`` (outcome unknown).
    request_timeout_s: float = 5.0
    #: Sessions the map remembers (exactly-once); the least recently used expires.
    max_sessions: int = 4096


@dataclass(frozen=True, slots=True)
class MavlinkConfig:
    #: ``tcp:HOST:PORT``, ``udpin:``/``udpout:HOST:PORT`` or a serial device.
    connection: str
    baud: int | None = None
    sysid: int = 1
    #: How often the agent publishes telemetry/<node> (and asks the flight controller
    #: for positions at least this often).
    telemetry_hz: float = 5.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    #: ``HOST:PORT`` of the Prometheus endpoint, or None when disabled. Loopback by
    #: default: metrics are not for the whole network.
    listen: tuple[str, int] | None = ("127.0.0.1", 9464)


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: str = "text"
    level: str = "info"


@dataclass(frozen=True, slots=True)
class LeadershipConfig:
    """Best-signal leadership (docs/agent.md, "Best-signal leadership"): the leader hands
    over to a caught-up voter whose link score (swarm/agent/link.py) beats its own by
    ``margin`` for ``dwell_s``, at most once per ``interval_s``; a node with a poor score
    waits up to ``election_delay_s`` longer before campaigning. Times are in seconds;
    :meth:`ticks` turns them into the core's ticks (consensus.Config)."""

    by_link_score: bool = True
    margin: float = 0.1
    dwell_s: float = 3.0
    interval_s: float = 30.0
    election_delay_s: float = 0.15
    #: The broker self-ping (round trip and loss): one probe per this period.
    probe_period_s: float = 0.5
    rtt_good_ms: float = 50.0
    rtt_bad_ms: float = 500.0
    #: Where the radio factor comes from with ``[mavlink]`` (swarm/agent/link.py,
    #: RadioFactor): ``radio_status`` (a SiK radio's RADIO_STATUS), ``none`` (no
    #: telemetry radio in the drone's path: the radio factor is 1 and the broker link
    #: decides, as for a node without ``[mavlink]``), or ``auto``: RADIO_STATUS once one
    #: is heard, no radio after ``radio_detect_s`` of flight-controller link without one.
    radio: str = "auto"
    radio_detect_s: float = 10.0

    def ticks(self, tick_ms: int) -> tuple[int, int, int]:
        """(dwell, interval, election delay) in ticks of ``tick_ms``."""
        def t(seconds: float) -> int:
            return math.ceil(round(seconds * 1000.0 / tick_ms, 6))
        return max(1, t(self.dwell_s)), t(self.interval_s), t(self.election_delay_s)

    @property
    def probe_timeout_s(self) -> float:
        """A probe not back by then is lost: twice "useless", and at least two periods."""
        return max(2.0 * self.rtt_bad_ms / 1000.0, 2.0 * self.probe_period_s)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    node: NodeConfig
    swarm: SwarmConfig
    bus: BusSettings
    timing: TimingConfig
    raft: RaftConfig = field(default_factory=RaftConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    mavlink: MavlinkConfig | None = None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    leadership: LeadershipConfig = field(default_factory=LeadershipConfig)
    #: The file it was read from (None when built from a mapping).
    source: Path | None = None


#: Timing profiles: (tick_ms, election_ticks, heartbeat_ticks).
#: ``lan``: 10 ms ticks, election timeout 150-300 ms, heartbeat every 50 ms: a crashed
#: leader is replaced in a few hundred ms on a healthy network (issue 9's goal: failover
#: p50 <= 300 ms, measured in docs/benchmarks.md). Heartbeats are most of an idle
#: agent's CPU (each is sealed, published and answered per peer): every 50 ms rather
#: than 30 ms cut the idle leader from ~3.8 % to ~2.4 % of a core; three fit in the
#: shortest election timeout, and PreVote keeps one late follower from disrupting the
#: others. ``radio``: 50 ms ticks, election 1-2 s, heartbeat every 200 ms: a
#: telemetry radio's latency and loss do not trigger spurious elections.
PROFILES: dict[str, tuple[int, int, int]] = {
    "lan": (10, 15, 5),
    "radio": (50, 20, 4),
}

#: Best-signal leadership defaults per timing profile: (dwell_s, interval_s,
#: election_delay_s, probe_period_s, rtt_good_ms, rtt_bad_ms). ``lan``: a clearly
#: better link leads after 3 s (three RADIO_STATUS reports: one is too few to tell a
#: change from noise; docs/benchmarks.md), at most one hand-over per 30 s (<= 120 per hour
#: whatever the noise), a node with no link waits one election timeout (150 ms) longer; loopback
#: and LAN round trips are well under 50 ms. ``radio``: slower and calmer (5 s dwell, one
#: hand-over per minute, up to 1 s extra election wait), for brokers reached over
#: telemetry radio or cellular, where 300 ms round trips are normal.
LEADERSHIP_PROFILES: dict[str, tuple[float, float, float, float, float, float]] = {
    "lan": (3.0, 30.0, 0.15, 0.5, 50.0, 500.0),
    "radio": (5.0, 60.0, 1.0, 1.0, 300.0, 3000.0),
}


# ---------------------------------------------------------------- reading


class _Section:
    """One TOML table being read: typed getters that name the key in errors, and a
    check that no key was left unread (a typo)."""

    def __init__(self, name: str, data: object, base: Path) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"[{name}]: must be a table, got {type(data).__name__}")
        self.name = name
        self.data: dict[str, Any] = data
        self.base = base
        self.used: set[str] = set()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"[{self.name}] {key}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def integer(self, key: str, default: int | None, lo: int, hi: int) -> int:
        value = self.raw(key, default)
        if value is None:
            raise self.error(key, "is required")
        if type(value) is not int or not lo <= value <= hi:
            raise self.error(key, f"must be an integer in [{lo}, {hi}], got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if type(value) is not bool:
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.raw(key, default)
        if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
            raise self.error(key, f"must be a number in [{lo:g}, {hi:g}], got {value!r}")
        return float(value)

    def string(self, key: str, default: str | None) -> str:
        value = self.raw(key, default)
        if value is None:
            raise self.error(key, "is required")
        if type(value) is not str or not value:
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key, None) if self.has(key) else self.raw(key)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return str(value)

    def path(self, key: str, required: bool = False) -> Path | None:
        if not self.has(key):
            if required:
                raise self.error(key, "is required")
            self.used.add(key)
            return None
        text = self.string(key, None)
        p = Path(text).expanduser()
        return p if p.is_absolute() else self.base / p

    def finish(self) -> None:
        for key in self.data:
            if key not in self.used:
                close = difflib.get_close_matches(key, sorted(self.used), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise self.error(key, f"unknown key{hint}")


def _broker(text: object, where: _Section, key: str, tls: bool) -> BrokerAddress:
    """``HOST[:PORT]``, ``[IPv6]:PORT``, optionally led by ``mqtt://`` or ``mqtts://``.
    The bus speaks TLS to every broker or to none ([bus.tls]), so the scheme must agree
    with it; it only makes the intent visible (and picks the default port)."""
    if type(text) is not str or not text:
        raise where.error(key, f"a broker must be a string \"HOST[:PORT]\", got {text!r}")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = ("mqtts" if tls else "mqtt"), text
    if scheme not in ("mqtt", "mqtts"):
        raise where.error(key, f"{text!r}: the scheme must be mqtt:// or mqtts://")
    if (scheme == "mqtts") != tls:
        raise where.error(key, f"{text!r}: mqtts:// needs [bus.tls] (ca_file), and with "
                               "[bus.tls] every broker is TLS (mqtts:// or no scheme)")
    try:
        return BrokerAddress.parse(rest.rstrip("/"), 8883 if tls else 1883)
    except BusConfigError as exc:
        raise where.error(key, f"{exc} (credentials are username / password_file)") from None


def _swarm_keys(s: _Section, swarm_id: str) -> SwarmConfig:
    """``[swarm]``'s key settings: at most one rotation phase, each phase complete."""
    if s.has("previous_key_overlap_s"):
        raise s.error("previous_key_overlap_s", "replaced by previous_until, the end of the "
                      "overlap as a UTC time (e.g. 2026-06-01T12:00:00Z): a duration "
                      "restarted at every agent start and so never ended")
    key_file = s.path("key_file", required=True)
    assert key_file is not None
    next_key_file = s.path("next_key_file")
    previous_key_file = s.path("previous_key_file")
    until = _timestamp(s, "previous_until")
    if next_key_file is not None and previous_key_file is not None:
        raise s.error("next_key_file", "and previous_key_file together: one rotation at a "
                      "time (phase 1 names the new key next_key_file; phase 2 makes it "
                      "key_file and the old one previous_key_file)")
    if previous_key_file is not None and until is None:
        raise s.error("previous_until", "is required with previous_key_file: when the old "
                      "key stops being accepted, a UTC time such as 2026-06-01T12:00:00Z")
    if until is not None and previous_key_file is None:
        raise s.error("previous_until", "without previous_key_file: it ends the previous "
                      "key's overlap, and there is no previous key")
    for name, path in (("next_key_file", next_key_file),
                       ("previous_key_file", previous_key_file)):
        if path is not None and path.resolve() == key_file.resolve():
            raise s.error(name, f"{path} is key_file itself: name the other key of the "
                          "rotation")
    return SwarmConfig(swarm_id, key_file, next_key_file, previous_key_file, until)


def _timestamp(s: _Section, key: str) -> datetime | None:
    """A TOML offset date-time (``2026-06-01T12:00:00Z``) or the same as an ISO 8601
    string, with an explicit offset: a drone's local time zone must not move it."""
    value = s.raw(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise s.error(key, f"{value!r} is not an ISO 8601 date and time "
                          "(e.g. 2026-06-01T12:00:00Z)") from None
    if not isinstance(value, datetime):
        kind = "a date without a time" if isinstance(value, date) else repr(value)
        raise s.error(key, f"must be a date and time with an offset (e.g. "
                      f"2026-06-01T12:00:00Z), got {kind}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise s.error(key, f"{value.isoformat()} has no offset: add Z (UTC) or +HH:MM")
    return value.astimezone(timezone.utc)


def load_keyring(swarm: SwarmConfig) -> Keyring:
    """Read ``[swarm]``'s key files into the node's keyring; :class:`KeyFileError` names
    the setting and the file (and keeps load_key's permission checks)."""
    def load(name: str, path: Path) -> SwarmKey:
        try:
            return load_key(path)
        except KeyFileError as exc:
            raise KeyFileError(f"[swarm] {name}: {exc}") from None

    sealing = load("key_file", swarm.key_file)
    nxt = prev = None
    if swarm.next_key_file is not None:
        nxt = load("next_key_file", swarm.next_key_file)
    if swarm.previous_key_file is not None:
        prev = load("previous_key_file", swarm.previous_key_file)
    for name, path, key in (("next_key_file", swarm.next_key_file, nxt),
                            ("previous_key_file", swarm.previous_key_file, prev)):
        if key is not None and key.key_id == sealing.key_id:
            raise KeyFileError(f"[swarm] {name}: {path} holds the same key as key_file "
                               f"{swarm.key_file} (key id {key.key_id.hex()}): name the "
                               "other key of the rotation")
    until = swarm.previous_until.timestamp() if swarm.previous_until is not None else None
    return Keyring(sealing, next=nxt, previous=prev, previous_until=until)


def _listen(value: object, where: _Section, key: str) -> tuple[str, int] | None:
    if value in ("", "off", False):
        return None
    if type(value) is not str:
        raise where.error(key, f"must be \"HOST:PORT\" or \"off\", got {value!r}")
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise where.error(key, f"must be \"HOST:PORT\" (port 0-65535) or \"off\", got {value!r}")
    return host, int(port_text)


_SECTIONS = ("node", "swarm", "bus", "timing", "leadership", "raft", "client", "mavlink", "metrics",
             "log")


def parse_bus_section(data: object, base: Path = Path(".")) -> BusSettings:
    """The ``[bus]`` table (with ``[bus.tls]``) of a config file: brokers, MQTT version,
    credentials, TLS, reconnect backoff. Relative paths are relative to ``base``. Also
    read by the ground station (swarm/gcs/config.py), so both speak to the broker alike.
    Raises :class:`ConfigError` naming the key."""
    s = _Section("bus", data, base)
    tls = None
    if s.has("tls"):
        t = _Section("bus.tls", s.raw("tls"), base)
        ca_file = t.path("ca_file", required=True)
        assert ca_file is not None
        cert_file, key_file = t.path("cert_file"), t.path("key_file")
        if (cert_file is None) != (key_file is None):
            raise t.error("key_file" if key_file is None else "cert_file",
                          "cert_file and key_file go together (a client certificate)")
        tls = TlsSettings(ca_file, cert_file, key_file)
        t.finish()
    else:
        s.used.add("tls")
    brokers_raw = s.raw("brokers")
    if not isinstance(brokers_raw, list) or not brokers_raw:
        raise s.error("brokers", "must be a non-empty list like [\"127.0.0.1:1883\"], "
                                 f"got {brokers_raw!r}")
    brokers = tuple(_broker(b, s, "brokers", tls is not None) for b in brokers_raw)
    if len(set(brokers)) != len(brokers):
        raise s.error("brokers", f"lists a broker twice: {brokers_raw!r}")
    protocol = s.choice("protocol", "5", ("5", "3.1.1"))
    keepalive = s.integer("keepalive_s", 10, 1, 65535)
    username = s.optional_string("username")
    password_file = s.path("password_file")
    if password_file is not None and username is None:
        raise s.error("password_file", "needs username")
    rmin = s.number("reconnect_min_s", 0.1, 0.01, 60)
    rmax = s.number("reconnect_max_s", 5.0, 0.01, 600)
    if rmax < rmin:
        raise s.error("reconnect_max_s", f"must be >= reconnect_min_s ({rmin:g}), got {rmax:g}")
    s.finish()
    return BusSettings(brokers, protocol, keepalive, username, password_file, tls, rmin, rmax)


def parse_config(data: Mapping[str, Any], base: Path = Path("."),
                 source: Path | None = None) -> AgentConfig:
    """Validate a parsed TOML document. Raises :class:`ConfigError` naming the key."""
    if not isinstance(data, Mapping):
        raise ConfigError("the configuration must be a table")
    for name in data:
        if name not in _SECTIONS:
            close = difflib.get_close_matches(name, _SECTIONS, n=1)
            hint = f" (did you mean [{close[0]}]?)" if close else ""
            raise ConfigError(f"[{name}]: unknown section{hint}; sections are "
                              f"{', '.join(f'[{s}]' for s in _SECTIONS)}")

    def section(name: str, required: bool = False) -> _Section | None:
        if name not in data:
            if required:
                raise ConfigError(f"[{name}]: section is required")
            return None
        return _Section(name, data[name], base)

    s = section("node", required=True)
    assert s is not None
    node_id = s.integer("id", None, 1, MAX_NODE_ID)
    name = s.string("name", f"drone-{node_id}")
    if not _NAME.fullmatch(name):
        raise s.error("name", f"{name!r}: 1-64 letters, digits, '_', '.', '-'")
    data_dir = s.path("data_dir", required=True)
    assert data_dir is not None
    voters_raw = s.raw("voters")
    if voters_raw is None:
        raise s.error("voters", "is required (the node ids of the initial cluster, e.g. "
                                "[1, 2, 3])")
    if (not isinstance(voters_raw, list) or not voters_raw
            or any(type(v) is not int or not 1 <= v <= MAX_NODE_ID for v in voters_raw)):
        raise s.error("voters", f"must be a non-empty list of node ids in [1, {MAX_NODE_ID}], "
                                f"got {voters_raw!r}")
    if len(set(voters_raw)) != len(voters_raw):
        raise s.error("voters", f"lists a node twice: {voters_raw!r}")
    if node_id not in voters_raw:
        raise s.error("voters", f"must include this node's id {node_id}, got {voters_raw!r}")
    state_machine = s.choice("state_machine", STATE_MACHINES[0], STATE_MACHINES)
    s.finish()
    node = NodeConfig(node_id, name, data_dir, tuple(sorted(voters_raw)), state_machine)

    s = section("swarm", required=True)
    assert s is not None
    swarm_id = s.string("id", None)
    if not _SWARM_ID.fullmatch(swarm_id):
        raise s.error("id", f"{swarm_id!r}: 1-32 characters of a-z, 0-9 and '-', starting "
                            "with a letter or digit")
    swarm = _swarm_keys(s, swarm_id)
    s.finish()

    if "bus" not in data:
        raise ConfigError("[bus]: section is required")
    bus = parse_bus_section(data["bus"], base)

    s = section("timing") or _Section("timing", {}, base)
    profile = s.choice("profile", "lan", tuple(PROFILES))
    tick, election, heartbeat = PROFILES[profile]
    tick = s.integer("tick_ms", tick, 1, 1000)
    election = s.integer("election_ticks", election, 2, 1000)
    heartbeat = s.integer("heartbeat_ticks", heartbeat, 1, 999)
    if heartbeat >= election:
        raise s.error("heartbeat_ticks", f"must be less than election_ticks ({election}), "
                                         f"got {heartbeat} (Raft §5.2)")
    s.finish()
    timing = TimingConfig(profile, tick, election, heartbeat)

    s = section("leadership") or _Section("leadership", {}, base)
    leadership = _leadership(s, timing)
    s.finish()

    s = section("raft") or _Section("raft", {}, base)
    d = RaftConfig()
    raft = RaftConfig(
        max_uncommitted_bytes=s.integer("max_uncommitted_bytes", d.max_uncommitted_bytes,
                                        0, 1 << 34),
        snapshot_every=s.integer("snapshot_every", d.snapshot_every, 0, 1 << 32),
        compact_keep=s.integer("compact_keep", d.compact_keep, 0, 1 << 32),
        max_inbound=s.integer("max_inbound", d.max_inbound, 1, 1 << 20),
        max_msg_bytes=s.integer("max_msg_bytes", d.max_msg_bytes, 1024, 64 << 20),
        max_inflight_msgs=s.integer("max_inflight_msgs", d.max_inflight_msgs, 1, 4096),
        broadcast_heartbeats=s.boolean("broadcast_heartbeats", d.broadcast_heartbeats),
    )
    s.finish()

    s = section("client") or _Section("client", {}, base)
    c = ClientConfig()
    client = ClientConfig(
        max_pending=s.integer("max_pending", c.max_pending, 1, 1 << 20),
        max_queued_requests=s.integer("max_queued_requests", c.max_queued_requests, 1, 1 << 20),
        request_timeout_s=s.number("request_timeout_s", c.request_timeout_s, 0.05, 3600),
        max_sessions=s.integer("max_sessions", c.max_sessions, 1, 1 << 20),
    )
    s.finish()

    mavlink = None
    s = section("mavlink")
    if s is not None and state_machine != "map":
        raise ConfigError(f"[node] state_machine: {state_machine!r} cannot fly a drone: the "
                          "flight side ([mavlink]) needs the map; remove [mavlink] or use "
                          "\"map\"")
    if s is not None:
        connection = s.string("connection", None)
        baud = s.integer("baud", None, 1, 10_000_000) if s.has("baud") else s.raw("baud")
        sysid = s.integer("sysid", 1, 1, 255)
        telemetry_hz = s.number("telemetry_hz", 5.0, 0.2, 50.0)
        try:
            from mavlink_bridge.link import parse_connection_string

            parse_connection_string(connection, baud)
        except ValueError as exc:
            raise s.error("connection", str(exc)) from None
        s.finish()
        mavlink = MavlinkConfig(connection, baud, sysid, telemetry_hz)

    s = section("metrics") or _Section("metrics", {}, base)
    metrics = MetricsConfig(_listen(s.raw("listen", "127.0.0.1:9464"), s, "listen"))
    s.finish()

    s = section("log") or _Section("log", {}, base)
    log = LogConfig(s.choice("format", "text", ("text", "json")),
                    s.choice("level", "info", ("debug", "info", "warning", "error")))
    s.finish()

    return AgentConfig(node, swarm, bus, timing, raft, client, mavlink, metrics, log, leadership,
                       source)


def _leadership(s: _Section, timing: TimingConfig) -> LeadershipConfig:
    """``[leadership]``, defaults from the timing profile; the bounds the Raft core needs
    (consensus.Config) are checked here so the error names the key."""
    dwell, interval, delay, probe, good, bad = LEADERSHIP_PROFILES[timing.profile]
    on = s.boolean("by_link_score", True)
    election_s = timing.election_ticks * timing.tick_ms / 1000.0
    cfg = LeadershipConfig(
        by_link_score=on,
        margin=s.number("margin", 0.1, 0.01, 1.0),
        dwell_s=s.number("dwell_s", dwell, timing.tick_ms / 1000.0, 3600),
        interval_s=s.number("interval_s", max(interval, 2 * election_s), 0, 86400),
        election_delay_s=s.number("election_delay_s", min(delay, 10 * election_s), 0, 3600),
        probe_period_s=s.number("probe_period_s", probe, 0.05, 60),
        rtt_good_ms=s.number("rtt_good_ms", good, 0, 60_000),
        rtt_bad_ms=s.number("rtt_bad_ms", bad, 1, 600_000),
        radio=s.choice("radio", "auto", RADIO_MODES),
        radio_detect_s=s.number("radio_detect_s", 10.0, 1.0, 600),
    )
    if cfg.interval_s < 2 * election_s:
        # A transfer is abandoned after an election timeout (thesis §3.10); the next may
        # start only after that, with room for the new leader to settle.
        raise s.error("interval_s", f"must be at least twice the election timeout "
                                    f"({2 * election_s:g} s with [timing]), got {cfg.interval_s:g}")
    if cfg.election_delay_s > 10 * election_s:
        raise s.error("election_delay_s", f"must be at most ten election timeouts "
                                          f"({10 * election_s:g} s with [timing]), got "
                                          f"{cfg.election_delay_s:g}")
    if cfg.rtt_bad_ms <= cfg.rtt_good_ms:
        raise s.error("rtt_bad_ms", f"must be above rtt_good_ms ({cfg.rtt_good_ms:g}), got "
                                    f"{cfg.rtt_bad_ms:g}")
    return cfg


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> AgentConfig:
    """Read and validate a config file. ``overrides`` maps ``"section.key"`` to a value
    (command-line flags); each replaces the file's value before validation, so it is
    checked the same way. Raises :class:`ConfigError` naming the file and the key."""
    p = Path(path)
    try:
        with open(p, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not valid TOML: not UTF-8 text") from None
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{p}: [{section}]: must be a table")
        table[key] = value
    try:
        return parse_config(data, p.resolve().parent, p)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
