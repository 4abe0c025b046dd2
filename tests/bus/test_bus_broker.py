"""swarm broker: mosquitto with the generated config, the embedded fallback (iotcore),
and the command that runs either until SIGTERM."""

from __future__ import annotations

import queue
import time
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from swarm.bus.broker import LocalBroker, main, mosquitto_config
from swarm.bus.client import BrokerAddress, Bus, BusConfig, MqttVersion, Received

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0


def echo_through(address: BrokerAddress, protocol: MqttVersion = MqttVersion.V5) -> bytes:
    got: queue.Queue[Received] = queue.Queue()
    with Bus(BusConfig((address,), "echo", protocol=protocol)) as b:
        b.subscribe("swarm/t/events", got.put, 1)
        assert b.wait_connected(WAIT)
        for _ in range(40):
            b.publish("swarm/t/events", b"ping", 1)
            try:
                return got.get(timeout=0.5).payload
            except queue.Empty:
                continue
    raise AssertionError("nothing came back")


def test_generated_mosquitto_config_explains_the_queue_settings():
    text = mosquitto_config(1999)
    for setting in ("listener 1999 127.0.0.1", "persistence false", "max_queued_messages 20000",
                    "max_inflight_messages 100", "max_packet_size", "set_tcp_nodelay true"):
        assert setting in text
        # Each setting is preceded by the comment that says why.
        before = text.split(setting)[0].rstrip("\n").splitlines()
        assert before[-1].startswith("#") or setting.startswith("listener"), setting
    assert "max_queued_messages" not in mosquitto_config(1999, queued_messages=None)


def test_mosquitto_restarts_on_the_same_port(mosquitto):
    port = mosquitto.port
    assert echo_through(mosquitto.address) == b"ping"
    mosquitto.kill()
    assert not mosquitto.running
    assert mosquitto.start() == ("127.0.0.1", port)
    assert echo_through(mosquitto.address, MqttVersion.V311) == b"ping"


def test_embedded_broker_speaks_mqtt5_on_loopback_only():
    broker = LocalBroker("embedded")
    assert broker.kind == "embedded"
    host, port = broker.start()
    try:
        assert host == "127.0.0.1"
        assert f'listen = "127.0.0.1:{port}"' in broker.config_path.with_suffix(".toml").read_text()
        assert echo_through(broker.address) == b"ping"
    finally:
        broker.close()
    assert not broker.running


def test_embedded_broker_refuses_mosquitto_only_options(tmp_path):
    with pytest.raises(ValueError, match="need mosquitto"):
        LocalBroker("embedded", password_file=tmp_path / "p")


@pytest.mark.parametrize("kind", ["mosquitto", "embedded"])
def test_swarm_broker_runs_until_sigterm(kind):
    proc = subprocess.Popen(
        [sys.executable, "-c",
         f"import sys; from swarm.bus.broker import main; sys.exit(main(['--port', '0', '--kind', {kind!r}]))"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"{kind} broker listening on 127.0.0.1:"), line + proc.stderr.read() \
            if proc.poll() is not None else line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        assert echo_through(BrokerAddress("127.0.0.1", port)) == b"ping"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    finally:
        proc.kill()
        proc.wait(WAIT)


def test_swarm_broker_reports_a_busy_port(mosquitto, capsys):
    assert main(["--port", str(mosquitto.port), "--kind", "mosquitto"]) == 1
    assert "already in use" in capsys.readouterr().err


def test_print_config(capsys):
    assert main(["--print-config", "--port", "1884"]) == 0
    assert "listener 1884 127.0.0.1" in capsys.readouterr().out


def test_packets_above_the_limits_never_reach_a_subscriber(mosquitto):
    """The broker refuses packets above max_packet_size; and an MQTT 5 subscriber's
    Maximum Packet Size (its max_payload_bytes) keeps the broker from forwarding more."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from swarm.bus.broker import MAX_PACKET_BYTES

    got: queue.Queue[Received] = queue.Queue()
    cfg = BusConfig((mosquitto.address,), "small-sub", max_payload_bytes=4096)
    with Bus(cfg) as sub:
        sub.subscribe("swarm/t/raft/+", got.put, 0)
        assert sub.wait_connected(WAIT)
        raw = paho.Client(CallbackAPIVersion.VERSION2, client_id="big-pub", protocol=paho.MQTTv5)
        raw.connect(mosquitto.host, mosquitto.port)
        raw.loop_start()
        try:
            for _ in range(40):                    # until the subscription is active
                raw.publish("swarm/t/raft/9", b"probe", 1).wait_for_publish(WAIT)
                try:
                    got.get(timeout=0.5)
                    break
                except queue.Empty:
                    continue
            raw.publish("swarm/t/raft/1", b"m" * 8192, 1).wait_for_publish(WAIT)
            raw.publish("swarm/t/raft/2", b"ok", 1).wait_for_publish(WAIT)
            first = got.get(timeout=WAIT)
            while first.payload == b"probe":
                first = got.get(timeout=WAIT)
            assert first.payload == b"ok"          # the 8 KiB one was never forwarded
        finally:
            raw.disconnect()
            raw.loop_stop()
        # Above the broker's own limit: an MQTT 3.1.1 publisher (no Maximum Packet Size in
        # its CONNACK to stop it locally) is cut off, and nothing is delivered.
        raw = paho.Client(CallbackAPIVersion.VERSION2, client_id="huge-pub", protocol=paho.MQTTv311)
        raw.connect(mosquitto.host, mosquitto.port)
        raw.loop_start()
        try:
            assert wait_connected_raw(raw)
            raw.publish("swarm/t/raft/3", b"h" * (MAX_PACKET_BYTES + 1), 0)
            deadline = time.monotonic() + WAIT
            while raw.is_connected() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not raw.is_connected()
        finally:
            raw.disconnect()
            raw.loop_stop()
        assert sub.connected and got.empty()


def wait_connected_raw(client) -> bool:
    deadline = time.monotonic() + WAIT
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    return client.is_connected()


def test_a_broker_is_started_only_when_the_listener_is_its_own(tmp_path):
    """free_port() is a guess: when another process listens on the port first (a
    concurrent test session's broker), the connection succeeds while our mosquitto
    fails to bind. That must count as a failed start (LocalBroker then tries another
    port), never as a broker that clients would share with a stranger."""
    import socket

    from swarm.bus.broker import _wait_listening

    stranger = socket.create_server(("127.0.0.1", 0))
    port = stranger.getsockname()[1]
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    own = subprocess.Popen([sys.executable, "-c",
                            "import socket, time; s = socket.create_server(('127.0.0.1', 0)); "
                            "print(s.getsockname()[1], flush=True); time.sleep(30)"],
                           stdout=subprocess.PIPE)
    try:
        assert not _wait_listening("127.0.0.1", port, idle, timeout=1.0)
        assert own.stdout is not None
        own_port = int(own.stdout.readline())
        assert _wait_listening("127.0.0.1", own_port, own, timeout=WAIT)
    finally:
        stranger.close()
        for p in (idle, own):
            p.kill()
            p.wait(10)


def test_free_ports_come_from_below_the_ephemeral_range_so_no_connect_can_take_them() -> None:
    """A port from bind(0) is one an outgoing connection may be given before the listener
    binds it ("Address already in use" in the agent process tests); free_port() stays
    below the kernel's range for outgoing connections, and the port is bindable."""
    import random
    import socket

    from swarm.bus.broker import _ephemeral_ports, free_port

    low, _ = _ephemeral_ports()
    rng = random.Random(7)
    ports = [free_port(rng=rng) for _ in range(50)]
    assert all(20000 <= p < low for p in ports), ports
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))  # taken at once: nothing else can be quicker here
