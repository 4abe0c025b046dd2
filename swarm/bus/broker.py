"""``swarm broker``: one MQTT broker for local use (a laptop swarm, the tests, the demo).

mosquitto when it is installed, with a generated configuration (:func:`mosquitto_config`,
every setting explained where it is written); otherwise the embedded broker from PyPI,
iotcore (rumqttd compiled into a wheel; docs/protocol.md "Brokers" says why it is the
fallback). Both listen on loopback only, on a free port unless one is given.

    broker = LocalBroker()
    host, port = broker.start()      # port=0: a free one
    ...
    broker.stop()
"""

from __future__ import annotations

import argparse
import atexit
import getpass
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .client import BrokerAddress
from .envelope import DEFAULT_MAX_ENVELOPE_BYTES

__all__ = [
    "BrokerError",
    "BridgeSpec",
    "LocalBroker",
    "MosquittoTls",
    "find_mosquitto",
    "free_port",
    "main",
    "mosquitto_config",
]

#: Per-client queue the generated mosquitto config allows (see mosquitto_config).
QUEUED_MESSAGES = 20000
INFLIGHT_MESSAGES = 100
#: Largest MQTT packet the broker accepts: the largest envelope plus topic/properties.
MAX_PACKET_BYTES = DEFAULT_MAX_ENVELOPE_BYTES + 64 * 1024


class BrokerError(RuntimeError):
    """The broker could not be started (the message says why and what to do)."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto executable, or None (Debian puts it in /usr/sbin, often
    not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


#: Where :func:`free_port` looks when the kernel's ephemeral range leaves no room below it.
_LISTEN_PORTS_FLOOR = 20000


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default if it
    cannot be read)."""
    try:
        low, high = (int(x) for x in
                     Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1", *, rng: random.Random | None = None) -> int:
    """A TCP port free on ``host`` right now, for a listener started a moment later.

    Taken at random *below* the kernel's ephemeral range, never by binding port 0: a
    port the kernel hands out for port 0 comes from the range outgoing connections use,
    so between this call and the listener's bind any connect() (a client, an agent's
    second MQTT connection) could take it ("Address already in use", seen in the agent
    process tests). Another program may still take a port below the range, but nothing
    does so by chance. ``sitl.vehicles.free_port_block`` does the same for port blocks.
    """
    rng = rng or random.SystemRandom()
    low, _ = _ephemeral_ports()
    top = low if low - _LISTEN_PORTS_FLOOR >= 1000 else 65536
    bottom = _LISTEN_PORTS_FLOOR if top == low else 1024
    for _ in range(200):
        port = rng.randrange(bottom, top)
        if _port_free(host, port):
            return port
    raise OSError(f"no free TCP port on {host} in {bottom}..{top - 1}")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Same option mosquitto sets, so a port in TIME_WAIT after a restart counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True, slots=True)
class MosquittoTls:
    """A TLS listener: the broker's certificate and key, and the CA clients are checked
    against when ``require_client_cert``."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_client_cert: bool = False


@dataclass(frozen=True, slots=True)
class BridgeSpec:
    """Bridge this mosquitto to another broker: every topic of ``topics`` both ways. The
    default joins two brokers into one swarm: the swarm's topics and the clients' reply
    topics (``swarm-client/<client id>/reply``, outside ``swarm/``: docs/protocol.md), so
    a client on one broker hears the replies of agents on the other."""

    name: str
    remote: BrokerAddress
    topics: tuple[str, ...] = ("swarm/#", "swarm-client/#")


def mosquitto_config(port: int, host: str = "127.0.0.1", *, password_file: Path | None = None,
                     tls: MosquittoTls | None = None, bridge: BridgeSpec | None = None,
                     queued_messages: int | None = QUEUED_MESSAGES) -> str:
    """The mosquitto 2.0 configuration the bus expects. ``queued_messages=None`` leaves
    mosquitto's queue defaults (for the flow-control benchmark)."""
    lines = [
        "# Generated by swarm.bus.broker (swarm broker). One listener, loopback unless told.",
        "per_listener_settings false",
        "# Run as whoever started it: started as root, mosquitto would otherwise switch to",
        "# the 'mosquitto' user and could not read this run's own key and password files.",
        f"user {getpass.getuser()}",
        f"listener {port} {host}",
    ]
    if tls is not None:
        lines += [
            f"cafile {tls.ca_file}",
            f"certfile {tls.cert_file}",
            f"keyfile {tls.key_file}",
            f"require_certificate {'true' if tls.require_client_cert else 'false'}",
        ]
    if password_file is not None:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
    else:
        lines += ["# Local use on loopback: anonymous clients (Raft traffic is HMAC-authenticated",
                  "# anyway; a deployed broker uses a password file or client certificates).",
                  "allow_anonymous true"]
    lines += [
        "# Raft state lives in each agent's SQLite; broker state is disposable, and writing",
        "# it would cost SD-card wear and latency for nothing.",
        "persistence false",
    ]
    if queued_messages is not None:
        lines += [
            "# QoS 0 is dropped, not queued, once a subscriber has max_queued_messages packets",
            "# waiting on its socket (mosquitto's default 1000 dropped up to a fifth of a burst;",
            "# docs/benchmarks.md). A Raft peer has at most max_inflight_msgs (256) appends",
            "# in flight to each follower, so 20000 covers a 10-drone swarm plus client traffic.",
            f"max_queued_messages {queued_messages}",
            "# No byte cap on that queue beyond the count (memory is bounded by count x",
            "# max_packet_size, and Raft's own in-flight window bounds it far below).",
            "max_queued_bytes 0",
            "# QoS 1/2 messages in flight per client (client requests, replies, retained",
            "# status): above mosquitto's default 20 so a burst of requests is not serialised",
            "# behind PUBACKs.",
            f"max_inflight_messages {INFLIGHT_MESSAGES}",
        ]
    lines += [
        "# Largest packet accepted: the largest Raft envelope plus topic and properties;",
        "# anything bigger is refused at the broker and never reaches an agent.",
        f"max_packet_size {MAX_PACKET_BYTES}",
        "# Raft heartbeats and votes are small and latency-bound: no Nagle delay.",
        "set_tcp_nodelay true",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "connection_messages false",
    ]
    if bridge is not None:
        lines += [
            "# Bridge: every swarm topic and client reply both ways: one swarm over both brokers.",
            f"connection {bridge.name}",
            f"address {bridge.remote.host}:{bridge.remote.port}",
            *(f"topic {t} both 0" for t in bridge.topics),
            "# MQTT 5 across the bridge: a 3.1.1 bridge drops the Response Topic and",
            "# Correlation Data of client requests and replies (docs/protocol.md).",
            "bridge_protocol_version mqttv50",
            "cleansession true",
            "restart_timeout 1 5",
            "keepalive_interval 5",
            "try_private true",
        ]
    return "\n".join(lines) + "\n"


def _iotcore_config(host: str, port: int) -> str:
    # rumqttd's TOML (iotcore passes it through). MQTT 5 needs a v5 listener; rumqttd
    # binds 0.0.0.0 unless told, so the address is always explicit.
    return f"""id = 0

[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 2000
max_segment_size = 104857600
max_segment_count = 10

[v5.1]
name = "v5-1"
listen = "{host}:{port}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {MAX_PACKET_BYTES}
    max_inflight_count = {INFLIGHT_MESSAGES}
"""


def _listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the socket listening on TCP ``port`` (Linux's
    /proc); None where /proc cannot tell."""
    inodes: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 the inode.
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        fds = os.listdir(f"/proc/{pid}/fd")
    except (OSError, ValueError, IndexError):
        return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes] | None,
                    timeout: float) -> bool:
    """Until ``proc`` (None: in-process) accepts connections on ``host:port``. A
    connection alone does not prove that: free_port() is a guess, another process (a
    concurrent test session's broker) may have taken the port first, and then our
    broker exits on EADDRINUSE a moment later while its clients would be talking to a
    stranger. So the listener must also be ``proc``'s own (where /proc tells)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.2):
                pass
        except OSError:
            time.sleep(0.02)
            continue
        if proc is None or _listens(proc.pid, port) is not False:
            return True
        time.sleep(0.02)  # someone else's listener: ours fails to bind and exits
    return False


_RUNNING: "weakref.WeakSet[LocalBroker]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # A broker runs in its own session (Ctrl+C in a terminal does not reach it), so an
    # interpreter that exits without stop() would leave it running: stop it here.
    for broker in list(_RUNNING):
        broker.stop()


class LocalBroker:
    """One broker process on loopback. ``kind``: "auto" (mosquitto when installed, else
    the embedded one), "mosquitto" or "embedded". Extra keyword arguments go to
    :func:`mosquitto_config` (TLS, password file, bridge; mosquitto only)."""

    def __init__(self, kind: str = "auto", *, host: str = "127.0.0.1",
                 **mosquitto_options: object) -> None:
        if kind not in ("auto", "mosquitto", "embedded"):
            raise ValueError(f"broker kind {kind!r}: auto, mosquitto or embedded")
        self._exe = find_mosquitto()
        if kind == "mosquitto" and self._exe is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        self.kind = "mosquitto" if kind == "mosquitto" or (kind == "auto" and self._exe) \
            else "embedded"
        if self.kind == "embedded" and mosquitto_options:
            raise ValueError("TLS, passwords and bridges need mosquitto")
        self.host = host
        self.port = 0
        self._options = mosquitto_options
        self._proc: subprocess.Popen[bytes] | None = None
        self._embedded: object | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="swarm-broker-")
        self.config_path = Path(self._dir.name) / "broker.conf"
        self._stderr_path = Path(self._dir.name) / "broker.log"

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress(self.host, self.port)

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._embedded is not None

    def start(self, port: int = 0, timeout: float = 10.0) -> tuple[str, int]:
        """Start it and wait until it accepts connections; returns (host, port). A
        stopped broker can be started again (same port by default: a broker restart)."""
        if self.running:
            return self.host, self.port
        want = port or self.port
        attempts = 1 if want else 5
        if want and not _port_free(self.host, want):
            raise BrokerError(f"{self.host}:{want} is already in use (another broker?); "
                              "choose another port, or 0 for a free one")
        for _ in range(attempts):
            chosen = want or free_port(self.host)
            if self._start_once(chosen, timeout):
                self.port = chosen
                _RUNNING.add(self)
                return self.host, chosen
        raise BrokerError(f"{self.kind} broker did not start on {self.host}:{want or 'a free port'}: "
                          f"{self._last_log()}")

    def _last_log(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace").strip()[-2000:] or "no output"
        except OSError:
            return "no output"

    def _start_once(self, port: int, timeout: float) -> bool:
        if self.kind == "embedded":
            return self._start_embedded(port, timeout)
        assert self._exe is not None
        self.config_path.write_text(mosquitto_config(port, self.host, **self._options))  # type: ignore[arg-type]
        with open(self._stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                [self._exe, "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                stdout=err, stderr=err, start_new_session=True)
        if _wait_listening(self.host, port, self._proc, timeout):
            return True
        self.stop()
        return False

    def _start_embedded(self, port: int, timeout: float) -> bool:
        try:
            from iotcore import Broker
        except ImportError:
            raise BrokerError("neither mosquitto nor the embedded broker is installed: "
                              "apt-get install mosquitto, or pip install iotcore") from None
        # rumqttd picks the config format by file extension.
        toml = self.config_path.with_suffix(".toml")
        toml.write_text(_iotcore_config(self.host, port))
        broker = Broker(config_path=str(toml))
        try:
            broker.start(timeout=timeout)
        except (OSError, RuntimeError) as exc:
            self._stderr_path.write_text(str(exc))
            return False
        self._embedded = broker
        return True

    def kill(self) -> None:
        """SIGKILL the broker (a crash, for fault tests); start() brings it back."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self._proc = None
        if self._embedded is not None:
            self.stop()

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 5 s). Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        embedded, self._embedded = self._embedded, None
        if embedded is not None:
            embedded.stop()  # type: ignore[attr-defined]

    def close(self) -> None:
        """stop() and remove the generated files."""
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> "LocalBroker":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``swarm broker``: run a local broker until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="swarm broker", allow_abbrev=False,
        description="Run one MQTT broker for local use: mosquitto with the bus's queue "
                    "settings when installed, else the embedded broker (iotcore).")
    parser.add_argument("--port", type=int, default=1883,
                        help="TCP port (default 1883; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: loopback only)")
    parser.add_argument("--kind", choices=("auto", "mosquitto", "embedded"), default="auto")
    parser.add_argument("--print-config", action="store_true",
                        help="print the generated mosquitto configuration and exit")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: not in [0, 65535]")
    if args.print_config:
        print(mosquitto_config(args.port or 1883, args.host), end="")
        return 0
    try:
        broker = LocalBroker(args.kind, host=args.host)
        host, port = broker.start(args.port)
    except (BrokerError, ValueError, OSError) as exc:
        print(f"swarm broker: {exc}", file=sys.stderr)
        return 1
    print(f"{broker.kind} broker listening on {host}:{port} (Ctrl+C to stop)", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            if not broker.running:
                print(f"swarm broker: the broker exited: {broker._last_log()}", file=sys.stderr)
                return 1
    finally:
        broker.close()
    return 0
