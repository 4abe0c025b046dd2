"""The ground station's broker templates (deploy/mosquitto/) on a real mosquitto:
the TLS listener, the password file, the per-drone ACL (drone-2 cannot publish drone-3's
status, nor read drone-3's Raft traffic) and the bridge example to a second broker.

Throwaway certificates come from openssl; passwords from mosquitto_passwd; both brokers
listen on free loopback ports. mosquitto is installed by `make system-packages`.
"""

from __future__ import annotations

import queue
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from broker_harness import Broker as _Broker
from broker_harness import free_port as _free_port
from broker_harness import as_test_user as _as_test_user
from broker_harness import certificates as _certificates
from broker_harness import passwords as _passwords

from swarm.bus import broker as bus_broker
from swarm.deploy import render_acl

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "deploy" / "mosquitto"
SWARM = "wildfire"

pytestmark = pytest.mark.skipif(bus_broker.find_mosquitto() is None, reason="mosquitto is installed by "
                                "`make system-packages`; run it first")


def _installed_conf(template: str, folder: Path, replacements: dict[str, str]) -> str:
    """The template as installed, with this test's folder and ports."""
    text = template.replace("/etc/mosquitto/swarm/", f"{folder}/")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return _as_test_user(text.replace("log_dest syslog", "log_dest stderr"))


class _Client:
    """A paho MQTT 5 client that records PUBACK reason codes and received messages."""

    def __init__(self, port: int, user: str | None, password: str | None,
                 ca: Path | None) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{user}",
                                  protocol=mqtt.MQTTv5)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.acks: dict[int, ReasonCode] = {}
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc)
        self.client.on_publish = lambda c, u, mid, rc, props: self.acks.__setitem__(mid, rc)
        self.client.on_message = lambda c, u, msg: self.received.put((msg.topic, msg.payload))
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def connected(self) -> int:
        return int(self.connack.get(timeout=30).value)

    def publish(self, topic: str, payload: bytes = b"x") -> int:
        """The PUBACK's reason code: below 128 accepted (0, or 16 "no matching
        subscribers"), 135 "not authorized"."""
        info = self.client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 30
        while info.mid not in self.acks and time.monotonic() < deadline:
            time.sleep(0.01)
        return int(self.acks[info.mid].value)

    def subscribe(self, *filters: str) -> None:
        done: queue.Queue[object] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, codes, props: done.put(codes)
        self.client.subscribe([(f, 1) for f in filters])
        done.get(timeout=30)

    def topics_received(self, wait_s: float) -> list[str]:
        """Topics received until ``wait_s`` passes with nothing new."""
        seen = []
        while True:
            try:
                seen.append(self.received.get(timeout=wait_s)[0])
            except queue.Empty:
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def field_broker(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """The ground-station template running: (TLS port, loopback port, CA file)."""
    _certificates(tmp_path, "broker")
    (tmp_path / "broker-ca.crt").rename(tmp_path / "ca.crt")
    _passwords(tmp_path / "passwd", {"drone-1": "pw1", "drone-2": "pw2", "drone-3": "pw3",
                                     "gcs": "pwg"})
    (tmp_path / "acl").write_text(render_acl(SWARM, [1, 2, 3]))
    tls_port, local_port = _free_port(), _free_port()
    conf = tmp_path / "ground-station.conf"
    conf.write_text(_installed_conf((TEMPLATES / "ground-station.conf").read_text(), tmp_path, {
        "listener 8883\n": f"listener {tls_port} 127.0.0.1\n",
        "listener 1883 127.0.0.1\n": f"listener {local_port} 127.0.0.1\n",
    }))
    broker = _Broker(conf, tls_port)
    try:
        yield tls_port, local_port, tmp_path / "ca.crt"
    finally:
        broker.stop()


def test_the_template_keeps_the_queue_and_packet_limits_the_bus_relies_on() -> None:
    # The same values as the config `swarm broker` generates (swarm/bus/broker.py).
    settings = dict(line.split(None, 1) for line in
                    (TEMPLATES / "ground-station.conf").read_text().splitlines()
                    if line and not line.startswith("#") and " " in line)
    assert int(settings["max_queued_messages"]) == bus_broker.QUEUED_MESSAGES
    assert int(settings["max_inflight_messages"]) == bus_broker.INFLIGHT_MESSAGES
    assert int(settings["max_packet_size"]) == bus_broker.MAX_PACKET_BYTES


def test_the_checked_in_acl_example_is_what_the_renderer_writes() -> None:
    assert (TEMPLATES / "acl.example").read_text() == render_acl(SWARM, [1, 2, 3, 4, 5])


def test_a_drone_publishes_only_its_own_topics(field_broker) -> None:
    tls_port, _, ca = field_broker
    gcs = _Client(tls_port, "gcs", "pwg", ca)
    drone2 = _Client(tls_port, "drone-2", "pw2", ca)
    drone3 = _Client(tls_port, "drone-3", "pw3", ca)
    try:
        for client in (gcs, drone2, drone3):
            assert client.connected() == 0
        gcs.subscribe(f"swarm/{SWARM}/#", "swarm-client/test-gcs/#")
        drone3.subscribe(f"swarm/{SWARM}/raft/+", f"swarm/{SWARM}/request/+", "swarm-client/#")
        allowed = [f"swarm/{SWARM}/status/2", f"swarm/{SWARM}/plan/2",
                   f"swarm/{SWARM}/telemetry/2", f"swarm/{SWARM}/raft/1",
                   f"swarm/{SWARM}/raft/3", f"swarm/{SWARM}/request/3", f"swarm/{SWARM}/map",
                   f"swarm/{SWARM}/events", "swarm-client/test-gcs/reply"]
        denied = [f"swarm/{SWARM}/status/3", f"swarm/{SWARM}/plan/3",
                  f"swarm/{SWARM}/telemetry/1", f"swarm/{SWARM}/raft/2",
                  f"swarm/other/status/2", "elsewhere"]
        for topic in allowed:
            assert drone2.publish(topic) < 128, topic
        for topic in denied:
            # MQTT 5: mosquitto answers a refused publish with "Not authorized" (135).
            assert drone2.publish(topic) == 135, topic
        seen_by_gcs = gcs.topics_received(wait_s=1.0)
        assert sorted(seen_by_gcs) == sorted(allowed)
        # drone-3 subscribed to every raft/, request/ and reply topic, but reads only its
        # own raft and requests, and no one else's replies.
        assert sorted(drone3.topics_received(wait_s=0.5)) == [
            f"swarm/{SWARM}/raft/3", f"swarm/{SWARM}/request/3"]
        # The ground station may ask (requests) but not speak for a drone.
        assert gcs.publish(f"swarm/{SWARM}/request/2") < 128
        assert gcs.publish(f"swarm/{SWARM}/status/2") == 135
        assert gcs.publish(f"swarm/{SWARM}/raft/2") == 135
    finally:
        for client in (gcs, drone2, drone3):
            client.close()


def test_no_way_in_without_tls_and_a_valid_password(field_broker, tmp_path: Path) -> None:
    tls_port, local_port, ca = field_broker
    wrong = _Client(tls_port, "drone-2", "wrong", ca)
    anonymous = _Client(tls_port, None, None, ca)
    try:
        # Refused: "bad user name or password" (134) or "not authorized" (135, what
        # mosquitto 2.0 answers to both).
        assert wrong.connected() in (134, 135)
        assert anonymous.connected() in (134, 135)
    finally:
        wrong.close()
        anonymous.close()
    # The loopback listener is plain TCP but still wants the password.
    local = _Client(local_port, "gcs", "pwg", None)
    try:
        assert local.connected() == 0
    finally:
        local.close()
    # Plain MQTT on the TLS port gets no MQTT answer.
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw:
        raw.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        raw.settimeout(10)
        try:
            answer = raw.recv(4)
        except (ConnectionResetError, TimeoutError, socket.timeout):
            answer = b""
        assert not answer.startswith(b"\x20")     # never a CONNACK
    # A client that checks the certificate against another CA refuses the broker.
    _certificates(tmp_path, "stranger")
    with pytest.raises(ssl.SSLCertVerificationError):
        _Client(tls_port, "gcs", "pwg", tmp_path / "stranger-ca.crt")


def test_the_bridge_example_mirrors_the_map_and_status_but_not_raft(
        field_broker, tmp_path: Path) -> None:
    tls_port, local_port, ca = field_broker
    # The command post: a second mosquitto with its own CA and the bridge's account.
    post = tmp_path / "post"
    post.mkdir()
    _certificates(post, "post")
    _passwords(post / "passwd", {"field-base-1": "bridge-pw", "watcher": "pww"})
    post_port = _free_port()
    (post / "post.conf").write_text(
        f"per_listener_settings false\nlistener {post_port} 127.0.0.1\n"
        f"cafile {post}/post-ca.crt\ncertfile {post}/post.crt\nkeyfile {post}/post.key\n"
        f"allow_anonymous false\npassword_file {post}/passwd\npersistence false\n"
        "log_dest stderr\n")
    (post / "post.conf").write_text(_as_test_user((post / "post.conf").read_text()))
    remote = _Broker(post / "post.conf", post_port)
    # The field broker again, now with the bridge example included.
    bridge = (TEMPLATES / "bridge.conf").read_text()
    bridge = bridge.replace("command-post.example.org:8883", f"127.0.0.1:{post_port}")
    bridge = bridge.replace("/etc/mosquitto/swarm/command-post-ca.crt", f"{post}/post-ca.crt")
    bridge = bridge.replace("remote_password CHANGE-ME", "remote_password bridge-pw")
    field_conf = tmp_path / "ground-station.conf"
    tls2, local2 = _free_port(), _free_port()
    text = field_conf.read_text().replace(f"listener {tls_port} ", f"listener {tls2} ")
    text = text.replace(f"listener {local_port} ", f"listener {local2} ")
    (tmp_path / "with-bridge.conf").write_text(text + "\n" + bridge)
    field = _Broker(tmp_path / "with-bridge.conf", tls2)
    watcher = _Client(post_port, "watcher", "pww", post / "post-ca.crt")
    drone2 = None
    try:
        assert watcher.connected() == 0
        watcher.subscribe("swarm/#", "bridge/#")
        deadline = time.monotonic() + 30
        while "bridge/field-base-1/state" not in watcher.topics_received(0.2):
            assert time.monotonic() < deadline, field.log.read_text()
        drone2 = _Client(tls2, "drone-2", "pw2", ca)
        assert drone2.connected() == 0
        for topic in (f"swarm/{SWARM}/status/2", f"swarm/{SWARM}/map", f"swarm/{SWARM}/raft/3",
                      f"swarm/{SWARM}/telemetry/2"):
            assert drone2.publish(topic) < 128
        seen = watcher.topics_received(wait_s=2.0)
        assert f"swarm/{SWARM}/status/2" in seen and f"swarm/{SWARM}/map" in seen
        assert f"swarm/{SWARM}/telemetry/2" in seen
        assert f"swarm/{SWARM}/raft/3" not in seen
    finally:
        watcher.close()
        if drone2 is not None:
            drone2.close()
        field.stop()
        remote.stop()
