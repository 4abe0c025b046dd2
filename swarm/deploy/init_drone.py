"""``swarm init-drone``: one drone's commented config and its systemd unit.

The config is rendered as TOML text with comments (what a person edits on the Pi),
then parsed with the agent's own parser (swarm.agent.config) before anything is
written, so init-drone never writes a config the agent would refuse. The unit runs the
agent as an unprivileged user with Restart=always and systemd's sandboxing: read-only
system, writable data folder only, no capabilities, no new privileges, only the serial
device of the flight controller.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from swarm.agent.config import ConfigError, parse_config

__all__ = ["DroneSetup", "InitError", "UNIT_NAME", "render_config", "render_unit", "write_files"]

UNIT_NAME = "wildfire-swarm.service"
CONFIG_NAME = "drone.toml"
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")
_SERIAL_GROUPS = ("char-ttyAMA", "char-ttyS", "char-ttyACM", "char-ttyUSB")


class InitError(ValueError):
    """Input init-drone cannot turn into a valid config (the message says which)."""


def _default_swarm_command() -> str:
    # The `swarm` script of the environment running us (the Pi's venv), else the
    # documented symlink.
    candidate = Path(sys.executable).parent / "swarm"
    return str(candidate) if candidate.is_file() else "/usr/local/bin/swarm"


@dataclass(frozen=True)
class DroneSetup:
    node_id: int
    swarm: str
    voters: tuple[int, ...]
    brokers: tuple[str, ...]
    config_dir: Path = Path("/etc/wildfire-swarm")
    data_root: Path = Path("/var/lib/wildfire-swarm")
    user: str = "swarm"
    serial: str | None = "/dev/serial0"     # None: no flight controller
    baud: int = 921600
    sysid: int | None = None                 # default: the node id
    profile: str = "radio"
    swarm_command: str = ""                  # default: _default_swarm_command()

    @property
    def name(self) -> str:
        return f"drone-{self.node_id}"

    @property
    def data_dir(self) -> Path:
        return self.data_root / self.name

    @property
    def config_path(self) -> Path:
        return self.config_dir / CONFIG_NAME

    @property
    def uses_tls(self) -> bool:
        return any(b.startswith("mqtts://") for b in self.brokers)


def _toml_string(text: str) -> str:
    import json
    return json.dumps(text)


def render_config(setup: DroneSetup) -> str:
    """The commented drone.toml; raises InitError if the agent would refuse it."""
    if not _USER.match(setup.user):
        raise InitError(f"user {setup.user!r} is not a valid system user name")
    for folder, what in ((setup.config_dir, "--config-dir"), (setup.data_root, "--data-root")):
        if not folder.is_absolute():
            raise InitError(f"{what} {folder}: must be an absolute path (systemd needs one)")
    sysid = setup.sysid if setup.sysid is not None else setup.node_id
    brokers = ", ".join(_toml_string(b) for b in setup.brokers)
    voters = ", ".join(str(v) for v in setup.voters)
    tls = setup.uses_tls
    mavlink = (
        f"""[mavlink]                         # the flight controller (docs/deploy-pi.md, "serial port")
connection = {_toml_string(setup.serial)}     # the Pi's PL011 UART (enable_uart=1, no serial console)
baud = {setup.baud}                     # ArduPilot SERIALn_BAUD = {setup.baud // 1000}, SERIALn_PROTOCOL = 2
sysid = {sysid}                         # the flight controller's SYSID_THISMAV
""" if setup.serial is not None else
        """# [mavlink]                       # no flight controller configured
# connection = "/dev/serial0"
# baud = 921600
# sysid = 1
""")
    text = f"""# {setup.name} of swarm {setup.swarm!r}: `swarm agent --config {setup.config_path}`.
# Written by `swarm init-drone`; every key is described in docs/agent.md. Relative
# paths are relative to this file's folder. Check it with `swarm doctor --config {setup.config_path}`.

[node]
id = {setup.node_id}                          # this drone's Raft node id, unique in the swarm
name = {_toml_string(setup.name)}
data_dir = {_toml_string(str(setup.data_dir))}   # the SQLite store: persistent storage, owned by {setup.user}
voters = [{voters}]               # the initial cluster (used only when the store is created)

[swarm]
id = {_toml_string(setup.swarm)}
key_file = "swarm.key"              # the key this drone seals with, the same on every drone (`swarm keygen`); mode 0600, owner {setup.user}
# Key rotation, one phase at a time on every drone (docs/protocol.md, "Key rotation"):
# next_key_file = "swarm.key.new"       # phase 1: the new key, accepted but not sealing
# previous_key_file = "swarm.key.old"   # phase 2: key_file is the new key; the old one is
# previous_until = 2026-06-01T12:00:00Z #   accepted until this UTC time

[bus]
brokers = [{brokers}]     # in order of preference; mqtts:// is TLS
username = {_toml_string(setup.name)}              # this drone's user in the broker's password file and ACL
password_file = "mqtt.password"     # mode 0600, owner {setup.user}
{"" if tls else "# "}[bus.tls]
{"" if tls else "# "}ca_file = "ca.crt"                 # the CA that signed the ground-station broker's certificate

[timing]
profile = {_toml_string(setup.profile)}                  # "radio": 1-2 s elections over lossy links; "lan": 150-300 ms

{mavlink}
[metrics]
listen = "127.0.0.1:9464"           # Prometheus /metrics on loopback; "off" disables it

[log]
format = "text"                     # journald adds the timestamps
level = "info"
"""
    try:
        parse_config(tomllib.loads(text), base=setup.config_dir)
    except (ConfigError, tomllib.TOMLDecodeError) as exc:
        raise InitError(f"the agent would refuse this config: {exc}") from None
    return text


def render_unit(setup: DroneSetup) -> str:
    """The systemd unit running the agent with this config."""
    command = setup.swarm_command or _default_swarm_command()
    if not os.path.isabs(command):
        raise InitError(f"the swarm command {command!r} must be an absolute path")
    data_root = str(setup.data_root)
    state = ""
    if data_root.startswith("/var/lib/") and data_root.count("/") == 3:
        # systemd creates it, owned by User=, before the agent starts.
        state = f"StateDirectory={data_root.removeprefix('/var/lib/')}\nStateDirectoryMode=0750\n"
    if setup.serial is not None:
        devices = (f"DeviceAllow={setup.serial} rw\n"
                   "# /dev/serial0 is a symlink: allow the UART device classes it may point to.\n"
                   + "".join(f"DeviceAllow={group} rw\n" for group in _SERIAL_GROUPS))
    else:
        devices = "PrivateDevices=yes\n"
    return f"""# {UNIT_NAME}: the wildfire swarm agent, {setup.name} of swarm {setup.swarm!r}.
# Written by `swarm init-drone`. Install:
#   sudo cp {UNIT_NAME} /etc/systemd/system/ && sudo systemctl daemon-reload
#   sudo systemctl enable --now {UNIT_NAME.removesuffix('.service')}
# Status: systemctl status {UNIT_NAME.removesuffix('.service')}; journalctl -u {UNIT_NAME.removesuffix('.service')} -f

[Unit]
Description=wildfire swarm agent ({setup.name}, swarm {setup.swarm})
Documentation=man:systemd.exec(5)
Wants=network-online.target time-sync.target
After=network-online.target time-sync.target
# Restart=always forever: an aircraft's companion computer never gives up on its agent.
StartLimitIntervalSec=0

[Service]
Type=simple
User={setup.user}
Group={setup.user}
SupplementaryGroups=dialout
ExecStart={command} agent --config {setup.config_path}
Restart=always
RestartSec=1
# The store survives kill -9 at any moment (SQLite WAL, synchronous=FULL), so SIGTERM
# and a short wait are enough; then systemd kills what is left.
TimeoutStopSec=10
{state}ReadWritePaths={data_root}
UMask=0077

# Sandboxing (systemd.exec(5)): read-only system, nothing to escalate with.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
DevicePolicy=closed
{devices}
[Install]
WantedBy=multi-user.target
"""


def write_files(setup: DroneSetup, out_dir: Path, force: bool = False) -> list[Path]:
    """Write drone.toml and the unit into ``out_dir``; refuses to overwrite unless ``force``."""
    files = [(out_dir / CONFIG_NAME, render_config(setup)), (out_dir / UNIT_NAME, render_unit(setup))]
    if not force:
        existing = [str(path) for path, _ in files if path.exists()]
        if existing:
            raise InitError(f"{', '.join(existing)} already exist(s); --force replaces")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in files:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    return [path for path, _ in files]
