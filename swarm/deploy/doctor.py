"""``swarm doctor``: is this companion computer ready to fly with the swarm?

Each check prints one line, PASS / FAIL / SKIP, with the figure or the reason:

    config            the config parses and validates (the agent's own parser)
    keys              swarm key(s), broker password and TLS key: present, private (0600)
    data              the data folder exists (or can be created) and is writable
    disk              free space on the data folder's file system
    fsync             fsync latency in the data folder (what each durable Raft Ready costs)
    clock             the kernel clock is synchronised (adjtimex), and not in the past
    broker            each broker: TCP reachable, TLS verified against the CA, MQTT login
    fc                the flight controller's HEARTBEAT on the configured link

The exit status is 1 if any check failed, else 0. Checks that need a valid config are
skipped when the config fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import os
import shutil
import socket
import ssl
import stat
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from swarm.agent.config import AgentConfig, ConfigError, load_config
from swarm.bus.replay import EARLIEST_PLAUSIBLE_UNIX

__all__ = ["CHECKS", "CheckResult", "Outcome", "run_checks"]

#: Below this much free space on the data folder's file system: FAIL.
MIN_FREE_BYTES = 512 * 1024 * 1024
#: Median fsync above this: FAIL (an SD card is 5-20 ms; above 50 ms, 20 Raft
#: Ready batches a second at most, too slow for elections under load).
MAX_FSYNC_MEDIAN_S = 0.050
FSYNC_SAMPLES = 20
#: The wall clock must be past this (a Pi without RTC boots at its last shutdown time);
#: the agent's epoch claim (swarm.bus.replay) uses the same bound.
EARLIEST_PLAUSIBLE = EARLIEST_PLAUSIBLE_UNIX


class Outcome(enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class CheckResult:
    check: str
    outcome: Outcome
    detail: str

    def line(self) -> str:
        return f"{self.outcome.value}  {self.check:<8} {self.detail}"


Check = Callable[[AgentConfig, float], Iterable[CheckResult]]


def _result(check: str, ok: bool, detail: str) -> CheckResult:
    return CheckResult(check, Outcome.PASS if ok else Outcome.FAIL, detail)


# -- keys -----------------------------------------------------------------------------

def _private_file(path: Path) -> str | None:
    """The problem with a secret file, or None: the agent's own check at start
    (swarm.bus.keys.read_private_file), plus what only doctor adds (an empty file)."""
    from swarm.bus.keys import KeyFileError, read_private_file

    try:
        data = read_private_file(path, "", 1, follow_symlinks=True)
    except KeyFileError as exc:
        return str(exc).removeprefix(f" {path} ")
    if not data:
        return "is empty"
    return None


def check_keys(config: AgentConfig, timeout: float) -> Iterable[CheckResult]:
    from swarm.agent.config import load_keyring
    from swarm.bus.keys import KeyFileError, load_key

    loaded = True
    for label, path in (("swarm.key_file", config.swarm.key_file),
                        ("swarm.next_key_file", config.swarm.next_key_file),
                        ("swarm.previous_key_file", config.swarm.previous_key_file)):
        if path is None:
            continue
        try:
            load_key(path)
        except KeyFileError as exc:
            loaded = False
            yield _result("keys", False, f"{label}: {exc}")
        else:
            yield _result("keys", True, f"{label}: {path}: a valid key, mode 0600")
    if loaded and (config.swarm.next_key_file or config.swarm.previous_key_file):
        # The files are keys one by one; the rotation must also be one (two distinct keys).
        try:
            ring = load_keyring(config.swarm)
        except KeyFileError as exc:
            yield _result("keys", False, str(exc))
        else:
            yield _result("keys", True, f"swarm: key rotation, phase {ring.phase}: seals with "
                          f"{ring.sealing.key_id.hex()}, accepts "
                          f"{', '.join(k.key_id.hex() for k in ring.opening_keys(time.time()))}")
    tls = config.bus.tls
    for label, secret in (("bus.password_file", config.bus.password_file),
                          ("bus.tls.key_file", tls.key_file if tls else None)):
        if secret is None:
            continue
        problem = _private_file(secret)
        yield _result("keys", problem is None, f"{label}: {secret}" +
                      (f" {problem}" if problem else ": present, mode 0600"))
    for label, public in (("bus.tls.ca_file", tls.ca_file if tls else None),
                          ("bus.tls.cert_file", tls.cert_file if tls else None)):
        if public is not None and not Path(public).is_file():
            yield _result("keys", False, f"{label}: {public} does not exist")


# -- data folder, disk, fsync ---------------------------------------------------------

def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_data(config: AgentConfig, timeout: float) -> Iterable[CheckResult]:
    folder = config.node.data_dir
    if folder.is_dir():
        ok = os.access(folder, os.W_OK | os.X_OK)
        yield _result("data", ok, f"{folder}: " + ("writable" if ok else
                      "not writable by this user (owner must be the agent's user)"))
        return
    if folder.exists():
        yield _result("data", False, f"{folder}: exists and is not a folder")
        return
    parent = _existing_parent(folder)
    ok = os.access(parent, os.W_OK | os.X_OK)
    yield _result("data", ok, f"{folder}: does not exist yet; " +
                  (f"the agent can create it in {parent}" if ok else
                   f"{parent} is not writable by this user (systemd's StateDirectory= "
                   "creates it when the service starts)"))


def check_disk(config: AgentConfig, timeout: float) -> Iterable[CheckResult]:
    where = _existing_parent(config.node.data_dir)
    usage = shutil.disk_usage(where)
    gib = 1024 ** 3
    text = (f"{where}: {usage.free / gib:.1f} GiB free of {usage.total / gib:.1f} GiB "
            f"({100 * usage.free / usage.total:.0f} %)")
    if usage.free < MIN_FREE_BYTES:
        text += f"; at least {MIN_FREE_BYTES // 1024 ** 2} MiB needed"
    yield _result("disk", usage.free >= MIN_FREE_BYTES, text)


def measure_fsync(folder: Path, samples: int = FSYNC_SAMPLES) -> list[float]:
    """Seconds per (4 KiB write + fsync) of a scratch file in ``folder``: what one
    durable Raft Ready costs there (consensus/sqlite_storage.py syncs once per Ready)."""
    block = os.urandom(4096)
    fd, name = tempfile.mkstemp(prefix=".doctor-fsync-", dir=folder)
    try:
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            times.append(time.perf_counter() - start)
        return times
    finally:
        os.close(fd)
        os.unlink(name)


def check_fsync(config: AgentConfig, timeout: float) -> Iterable[CheckResult]:
    folder = config.node.data_dir
    if not folder.is_dir():
        folder = _existing_parent(folder)
    try:
        times = measure_fsync(folder)
    except OSError as exc:
        yield _result("fsync", False, f"{folder}: cannot write a scratch file ({exc.strerror})")
        return
    median = statistics.median(times)
    text = (f"{folder}: median {median * 1000:.2f} ms, worst {max(times) * 1000:.2f} ms over "
            f"{len(times)} syncs (about {1 / median:,.0f} durable Ready batches/s)")
    if median > MAX_FSYNC_MEDIAN_S:
        text += (f"; over {MAX_FSYNC_MEDIAN_S * 1000:.0f} ms: use a faster card or a USB SSD "
                 "(docs/deploy-pi.md, 'The SD card')")
    yield _result("fsync", median <= MAX_FSYNC_MEDIAN_S, text)


# -- clock ----------------------------------------------------------------------------

_TIME_ERROR = 5        # adjtimex(2): clock not synchronised (STA_UNSYNC)


def kernel_clock_state() -> int | None:
    """adjtimex(2)'s clock state (0 TIME_OK .. 5 TIME_ERROR), or None if unavailable.

    A read-only call (modes = 0): NTP daemons (chrony, systemd-timesyncd) clear
    STA_UNSYNC once they have disciplined the clock; the kernel then answers TIME_OK.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    timex = ctypes.create_string_buffer(512)   # struct timex is 208 bytes on 64-bit Linux
    state = libc.adjtimex(timex)
    return None if state < 0 else int(state)


def check_clock(config: AgentConfig, timeout: float) -> Iterable[CheckResult]:
    now = time.time()
    if now < EARLIEST_PLAUSIBLE:
        yield _result("clock", False, f"the wall clock says {time.strftime('%Y-%m-%d', time.gmtime(now))}: "
                      "not set (no RTC, no NTP); TLS certificates will look invalid")
        return
    state = kernel_clock_state()
    if state is None:
        yield _result("clock", False, "cannot ask the kernel (adjtimex) whether the clock is synced")
    elif state == _TIME_ERROR:
        yield _result("clock", False, "not synchronised (kernel STA_UNSYNC): start chrony or "
                      "systemd-timesyncd, or point it at the ground station (docs/deploy-pi.md)")
    else:
        yield _result("clock", True, f"synchronised (adjtimex state {state}), "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(now))}")


# -- broker ---------------------------------------------------------------------------

def _tls_context(config: AgentConfig) -> ssl.SSLContext:
    tls = config.bus.tls
    assert tls is not None
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


def _mqtt_login(config: AgentConfig, host: str, port: int, tls: bool,
                timeout: float) -> str | None:
    """Log in over MQTT as the agent would; the CONNACK's failure reason, or None."""
    import paho.mqtt.client as mqtt

    from swarm.bus.keys import KeyFileError, read_password_file

    v5 = config.bus.protocol == "5"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"{config.node.name}-doctor-{os.getpid()}",
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    if config.bus.username is not None:
        password = None
        if config.bus.password_file is not None:
            try:
                password = read_password_file(config.bus.password_file)
            except KeyFileError as exc:
                return f"not tried: {exc}"
        client.username_pw_set(config.bus.username, password)
    if tls:
        client.tls_set_context(_tls_context(config))
    answered = threading.Event()
    outcome: list[str | None] = ["no CONNACK"]

    def on_connect(c: object, u: object, flags: object, reason: object, props: object) -> None:
        failure = getattr(reason, "is_failure", False)
        outcome[0] = f"refused: {reason}" if failure else None
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
        client.loop_start()
        answered.wait(timeout)
    except (OSError, ssl.SSLError) as exc:
        return f"connect failed: {exc}"
    finally:
        try:
            client.disconnect()
        finally:
            client.loop_stop()
    return outcome[0] if answered.is_set() else f"no CONNACK within {timeout:g} s"


def check_broker(config: AgentConfig, timeout: float) -> Iterable[CheckResult]:
    for broker in config.bus.brokers:
        label = str(broker)
        try:
            raw = socket.create_connection((broker.host, broker.port), timeout=timeout)
        except OSError as exc:
            yield _result("broker", False, f"{label}: unreachable ({exc.strerror or exc})")
            continue
        detail = "reachable"
        use_tls = config.bus.tls is not None   # [bus.tls]: TLS to every broker
        try:
            if use_tls:
                try:
                    with _tls_context(config).wrap_socket(raw, server_hostname=broker.host) as tls:
                        cert = tls.getpeercert() or {}
                        detail = f"TLS {tls.version()} verified, certificate valid until " \
                                 f"{cert.get('notAfter', '?')}"
                except (ssl.SSLError, OSError) as exc:
                    yield _result("broker", False, f"{label}: TLS failed: {exc}")
                    continue
        finally:
            raw.close()
        problem = _mqtt_login(config, broker.host, broker.port, use_tls, timeout)
        user = config.bus.username or "anonymous"
        yield _result("broker", problem is None, f"{label}: {detail}; MQTT login as {user} "
                      + ("accepted" if problem is None else problem))


# -- flight controller ----------------------------------------------------------------

def check_fc(config: AgentConfig, timeout: float) -> Iterable[CheckResult]:
    if config.mavlink is None:
        yield CheckResult("fc", Outcome.SKIP, "no [mavlink] section: no flight controller")
        return
    from mavlink_bridge.link import ConnectionStringError, LinkConfig, MavlinkLink

    m = config.mavlink
    try:
        link_config = LinkConfig(m.connection, baud=m.baud, target_system=m.sysid)
    except (ConnectionStringError, ValueError) as exc:
        yield _result("fc", False, f"{m.connection}: {exc}")
        return
    link = MavlinkLink(link_config)
    with link:
        heard = link.wait_for_heartbeat(timeout)
        error = link.last_error
    where = f"{link_config.spec}"
    if heard:
        yield _result("fc", True, f"{where}: HEARTBEAT from system {m.sysid}")
    else:
        yield _result("fc", False, f"{where}: no HEARTBEAT from system {m.sysid} within "
                      f"{timeout:g} s ({error or 'nothing received'}; wiring, baud, "
                      "SERIALn_PROTOCOL=2, serial console off?)")


CHECKS: dict[str, Check] = {
    "keys": check_keys,
    "data": check_data,
    "disk": check_disk,
    "fsync": check_fsync,
    "clock": check_clock,
    "broker": check_broker,
    "fc": check_fc,
}
ALL_CHECKS = ("config", *CHECKS)


def run_checks(config_path: Path, only: Iterable[str] = ALL_CHECKS,
               timeout: float = 5.0) -> list[CheckResult]:
    """Run the selected checks in order; every one yields at least one line."""
    selected = list(only)
    results: list[CheckResult] = []
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        results.append(_result("config", False, str(exc)))
        results += [CheckResult(name, Outcome.SKIP, "needs a valid config")
                    for name in selected if name != "config"]
        return results
    except OSError as exc:
        results.append(_result("config", False, f"{config_path}: {exc.strerror or exc}"))
        return results
    if "config" in selected:
        results.append(_result("config", True, f"{config_path}: {config.node.name} (node "
                               f"{config.node.id}) of swarm {config.swarm.id}, voters "
                               f"{', '.join(map(str, config.node.voters))}"))
    for name, check in CHECKS.items():
        if name not in selected:
            continue
        try:
            results.extend(check(config, timeout))
        except Exception as exc:   # a check must never take the others down with it
            results.append(_result(name, False, f"the check itself failed: {exc!r}"))
    return results
