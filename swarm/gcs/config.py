"""The ground station's configuration: a TOML file, command-line flags, or both.

The file uses the sections of a drone's agent config (docs/agent.md) that a ground
station needs, ``[swarm]`` and ``[bus]``, plus its own ``[gcs]``; other sections (an
agent's ``[node]``, ``[raft]`` ...) are ignored, so a copy of a drone's file works.
Keys of the sections read are checked strictly: a typo is an error, not a silently
ignored setting::

    [swarm]
    id = "wildfire"

    [bus]
    brokers = ["mqtt://127.0.0.1:1883", "mqtt://10.0.0.2:1883"]   # fail over in order
    # username = "gcs"
    # password_file = "mqtt.password"      # mode 0600

    [gcs]
    host = "127.0.0.1"            # loopback by default
    port = 8080
    operator = "gcs"              # source/reporter stamped on operator commands
    # token_file = "gcs.token"    # required when host is not loopback; mode 0600
    # tiles = "tiles/"            # offline tiles: a z/x/y folder or an .mbtiles file
    # tiles_max_zoom = 19

Relative paths are relative to the file's folder.
"""

from __future__ import annotations

import ipaddress
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from swarm.evacmap import ID_PATTERN

from .link import BrokerAddress, parse_broker
from .state import check_swarm_id

__all__ = ["ConfigError", "GcsConfig", "is_loopback", "load_config"]

_GCS_KEYS = frozenset({"host", "port", "operator", "token_file", "tiles", "tiles_max_zoom"})
_MAX_CONFIG_BYTES = 1024 * 1024
_MIN_TOKEN_CHARS = 16


class ConfigError(ValueError):
    """The configuration is invalid; the message names the setting."""


@dataclass(frozen=True, slots=True)
class GcsConfig:
    swarm: str
    brokers: tuple[BrokerAddress, ...] = (BrokerAddress("127.0.0.1", 1883),)
    host: str = "127.0.0.1"
    port: int = 8080
    operator: str = "gcs"
    token: str | None = field(default=None, repr=False)
    tiles: Path | None = None
    tiles_max_zoom: int = 19
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        try:
            check_swarm_id(self.swarm)
        except ValueError as exc:
            raise ConfigError(f"swarm: {exc}") from None
        if not 0 <= self.port <= 65535:  # 0: any free port (tests)
            raise ConfigError(f"gcs.port: {self.port} is outside 0..65535")
        if not re.fullmatch(ID_PATTERN, self.operator):
            raise ConfigError(f"gcs.operator: {self.operator!r} is not a valid map id")
        if self.token is not None and len(self.token) < _MIN_TOKEN_CHARS:
            raise ConfigError(f"gcs.token_file: the token must be at least "
                              f"{_MIN_TOKEN_CHARS} characters")
        if not is_loopback(self.host) and self.token is None:
            raise ConfigError(
                f"gcs.host: {self.host} is not a loopback address, so operator actions need "
                "a token: set gcs.token_file (or --token-file)")
        if self.tiles is not None and not self.tiles.exists():
            raise ConfigError(f"gcs.tiles: {self.tiles} does not exist")
        if not 0 <= self.tiles_max_zoom <= 24:
            raise ConfigError(f"gcs.tiles_max_zoom: {self.tiles_max_zoom} is outside 0..24")

    @property
    def token_required(self) -> bool:
        return self.token is not None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_secret(path: Path, what: str) -> str:
    """A secret from a file (stripped); refused when others may read the file."""
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{what}: {path} is readable by others (chmod 600 it)")
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{what}: {path} is empty")
    return text


def _expect(value: Any, kinds: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and kinds is not bool or not isinstance(value, kinds):
        raise ConfigError(f"{where}: expected {getattr(kinds, '__name__', kinds)}, "
                          f"got {type(value).__name__}")
    return value


def _section(doc: dict[str, Any], name: str, known: frozenset[str]) -> dict[str, Any]:
    section = _expect(doc.get(name, {}), dict, f"[{name}]")
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown setting (known: {', '.join(sorted(known))})")
    return section


_SWARM_KEYS = frozenset({"id", "key_file", "previous_key_file"})  # keys: the agent's
_BUS_KEYS = frozenset({"brokers", "protocol", "keepalive_s", "username", "password_file",
                       "tls", "reconnect_min_s", "reconnect_max_s"})


def load_config(path: Path | None, *, swarm: str | None = None,
                brokers: list[str] | None = None, host: str | None = None,
                port: int | None = None, token_file: Path | None = None,
                tiles: Path | None = None) -> GcsConfig:
    """The file at ``path`` (if any), overridden by the flags given (not None)."""
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
        if len(raw) > _MAX_CONFIG_BYTES:
            raise ConfigError(f"--config: {path} is over {_MAX_CONFIG_BYTES} bytes")
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from None
    base = path.parent if path is not None else Path.cwd()
    swarm_section = _section(doc, "swarm", _SWARM_KEYS)
    bus = _section(doc, "bus", _BUS_KEYS)
    section = _section(doc, "gcs", _GCS_KEYS)
    swarm_id = swarm if swarm is not None else swarm_section.get("id")
    if swarm_id is None:
        raise ConfigError("swarm.id: missing (give --swarm or [swarm] id in the config file)")
    _expect(swarm_id, str, "swarm.id")
    if bus.get("tls") or any(str(b).startswith("mqtts://") for b in bus.get("brokers", [])):
        raise ConfigError("bus: TLS brokers (mqtts://, [bus.tls]) are not supported by the "
                          "ground station yet")
    if brokers:
        broker_texts = list(brokers)
    else:
        listed = _expect(bus.get("brokers", ["mqtt://127.0.0.1:1883"]), list, "bus.brokers")
        broker_texts = [_expect(b, str, f"bus.brokers[{k}]") for k, b in enumerate(listed)]
    try:
        addresses = tuple(parse_broker(b) for b in broker_texts)
    except ValueError as exc:
        raise ConfigError(f"bus.brokers: {exc}") from None
    if not addresses:
        raise ConfigError("bus.brokers: empty list")

    def rel(p: Any, where: str) -> Path:
        candidate = Path(_expect(p, str, where))
        return candidate if candidate.is_absolute() else base / candidate

    token_path = token_file if token_file is not None else (
        rel(section["token_file"], "gcs.token_file") if "token_file" in section else None)
    token = read_secret(token_path, "gcs.token_file") if token_path is not None else None
    username = bus.get("username")
    password = None
    if username is not None:
        _expect(username, str, "bus.username")
        if "password_file" in bus:
            password = read_secret(rel(bus["password_file"], "bus.password_file"),
                                   "bus.password_file")
    return GcsConfig(
        swarm=swarm_id, brokers=addresses,
        host=host if host is not None else _expect(section.get("host", "127.0.0.1"), str,
                                                   "gcs.host"),
        port=port if port is not None else _expect(section.get("port", 8080), int, "gcs.port"),
        operator=_expect(section.get("operator", "gcs"), str, "gcs.operator"),
        token=token,
        tiles=tiles if tiles is not None else (
            rel(section["tiles"], "gcs.tiles") if "tiles" in section else None),
        tiles_max_zoom=_expect(section.get("tiles_max_zoom", 19), int, "gcs.tiles_max_zoom"),
        mqtt_username=username, mqtt_password=password)
