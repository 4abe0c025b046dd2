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
    # [bus.tls]                            # TLS to every broker (then mqtts://, port 8883)
    # ca_file = "ca.crt"                   # the CA that signed the brokers' certificates
    # cert_file = "gcs.crt"                # a client certificate, if the broker asks
    # key_file = "gcs.key"

    [gcs]
    host = "127.0.0.1"            # loopback by default
    port = 8080
    operator = "gcs"              # source/reporter stamped on operator commands
    # token_file = "gcs.token"    # required when host is not loopback; mode 0600
    # https_cert = "station.crt"  # serve the page over HTTPS (with https_key)
    # https_key = "station.key"   # mode 0600
    # tiles = "tiles/"            # offline tiles: a z/x/y folder or an .mbtiles file
    # tiles_max_zoom = 19

``[bus]`` is read by the agent's own parser (:func:`swarm.agent.config.parse_bus_section`),
so the station reaches the broker exactly as a drone does: the same brokers, MQTT
version, keepalive, reconnect backoff, credentials and TLS. Relative paths are relative
to the file's folder; paths given as flags, to the working directory.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from swarm.agent.config import ConfigError as BusSectionError
from swarm.agent.config import parse_bus_section
from swarm.bus.client import BrokerAddress, BusConfig, BusConfigError, MqttVersion, TlsConfig
from swarm.bus.keys import KeyFileError, read_private_file
from swarm.evacmap import ID_PATTERN

from .state import check_swarm_id

__all__ = ["ConfigError", "GcsConfig", "is_loopback", "load_config"]

_GCS_KEYS = frozenset({"host", "port", "operator", "token_file", "https_cert", "https_key",
                       "tiles", "tiles_max_zoom"})
_MAX_CONFIG_BYTES = 1024 * 1024
#: A token or password file: read at most this much (a secret is a line).
_MAX_SECRET_BYTES = 64 * 1024
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
    #: TLS to every broker ([bus.tls]); None: plain MQTT.
    tls: TlsConfig | None = None
    mqtt_protocol: str = "5"
    keepalive_s: int = 10
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    #: Serve the page over HTTPS with this certificate (chain) and key.
    https_cert: Path | None = None
    https_key: Path | None = None

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
        if (self.https_cert is None) != (self.https_key is None):
            raise ConfigError("gcs.https_cert: https_cert and https_key go together")
        if self.https_cert is not None:
            self.ssl_context()  # a certificate that cannot be loaded fails now, not later
        try:
            self.bus_config("gcs-config-check")
        except (BusConfigError, ValueError) as exc:
            raise ConfigError(f"bus: {exc}") from None

    @property
    def token_required(self) -> bool:
        return self.token is not None

    @property
    def https(self) -> bool:
        return self.https_cert is not None

    def bus_config(self, client_id: str, **options: Any) -> BusConfig:
        """How the station's clients reach the broker (its listener and the operator's
        session): one place, so both use the same brokers, TLS and credentials."""
        return BusConfig(
            brokers=self.brokers, client_id=client_id, protocol=MqttVersion(self.mqtt_protocol),
            keepalive_s=self.keepalive_s, username=self.mqtt_username,
            password=self.mqtt_password, tls=self.tls, reconnect_min_s=self.reconnect_min_s,
            reconnect_max_s=self.reconnect_max_s, **options)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The HTTPS server context (TLS 1.2 or later), or None for plain HTTP."""
        if self.https_cert is None or self.https_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.https_cert, self.https_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"gcs.https_cert: cannot load {self.https_cert} with key "
                              f"{self.https_key}: {getattr(exc, 'strerror', None) or exc}") from None
        return context


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_secret(path: Path, what: str) -> str:
    """A secret from a file (stripped); refused when group or others may access the file
    (the one check of a secret file: swarm.bus.keys.read_private_file)."""
    try:
        text = read_private_file(path, f"{what}:", _MAX_SECRET_BYTES,
                                 follow_symlinks=True).decode("utf-8").strip()
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: {path} is not UTF-8 text") from None
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


# A drone's [swarm] keys, tolerated so one config file serves both (the station speaks
# the client protocol, which the swarm key does not cover).
_SWARM_KEYS = frozenset({"id", "key_file", "next_key_file", "previous_key_file",
                         "previous_until"})


def _flag_path(path: Path) -> str:
    return str(path.expanduser().resolve())


def load_config(path: Path | None, *, swarm: str | None = None,
                brokers: list[str] | None = None, host: str | None = None,
                port: int | None = None, token_file: Path | None = None,
                tiles: Path | None = None, tls_ca: Path | None = None,
                tls_cert: Path | None = None, tls_key: Path | None = None,
                https_cert: Path | None = None, https_key: Path | None = None) -> GcsConfig:
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
    section = _section(doc, "gcs", _GCS_KEYS)
    swarm_id = swarm if swarm is not None else swarm_section.get("id")
    if swarm_id is None:
        raise ConfigError("swarm.id: missing (give --swarm or [swarm] id in the config file)")
    _expect(swarm_id, str, "swarm.id")

    # [bus] as a drone reads it, with the flags laid over it (flag paths are absolute).
    bus_doc = dict(_expect(doc.get("bus", {}), dict, "[bus]"))
    if tls_ca is not None or tls_cert is not None or tls_key is not None:
        tls_doc = dict(_expect(bus_doc.get("tls", {}), dict, "[bus.tls]"))
        for name, flag in (("ca_file", tls_ca), ("cert_file", tls_cert), ("key_file", tls_key)):
            if flag is not None:
                tls_doc[name] = _flag_path(flag)
        bus_doc["tls"] = tls_doc
    if brokers:
        bus_doc["brokers"] = list(brokers)
    bus_doc.setdefault("brokers", ["127.0.0.1"])  # 1883, or 8883 with TLS
    try:
        bus = parse_bus_section(bus_doc, base)
    except BusSectionError as exc:
        raise ConfigError(str(exc)) from None

    def rel(p: Any, where: str) -> Path:
        candidate = Path(_expect(p, str, where))
        return candidate if candidate.is_absolute() else base / candidate

    token_path = token_file if token_file is not None else (
        rel(section["token_file"], "gcs.token_file") if "token_file" in section else None)
    token = read_secret(token_path, "gcs.token_file") if token_path is not None else None
    password = None
    if bus.password_file is not None:
        password = read_secret(bus.password_file, "bus.password_file")
    tls = None
    if bus.tls is not None:
        try:
            tls = TlsConfig(bus.tls.ca_file, bus.tls.cert_file, bus.tls.key_file)
        except BusConfigError as exc:
            raise ConfigError(f"bus.{exc}") from None
        if bus.tls.key_file is not None:
            _check_private(bus.tls.key_file, "bus.tls.key_file")
    cert_path = https_cert if https_cert is not None else (
        rel(section["https_cert"], "gcs.https_cert") if "https_cert" in section else None)
    key_path = https_key if https_key is not None else (
        rel(section["https_key"], "gcs.https_key") if "https_key" in section else None)
    if key_path is not None:
        _check_private(key_path, "gcs.https_key")
    return GcsConfig(
        swarm=swarm_id, brokers=bus.brokers,
        host=host if host is not None else _expect(section.get("host", "127.0.0.1"), str,
                                                   "gcs.host"),
        port=port if port is not None else _expect(section.get("port", 8080), int, "gcs.port"),
        operator=_expect(section.get("operator", "gcs"), str, "gcs.operator"),
        token=token,
        tiles=tiles if tiles is not None else (
            rel(section["tiles"], "gcs.tiles") if "tiles" in section else None),
        tiles_max_zoom=_expect(section.get("tiles_max_zoom", 19), int, "gcs.tiles_max_zoom"),
        mqtt_username=bus.username, mqtt_password=password, tls=tls,
        mqtt_protocol=bus.protocol, keepalive_s=bus.keepalive_s,
        reconnect_min_s=bus.reconnect_min_s, reconnect_max_s=bus.reconnect_max_s,
        https_cert=cert_path, https_key=key_path)


def _check_private(path: Path, what: str) -> None:
    """A private key must not be accessible by group or others (as for the token)."""
    try:
        read_private_file(path, f"{what}:", 1, follow_symlinks=True)
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None
