"""swarm broker: mosquitto with the generated config, the embedded fallback (iotcore),
and the command that runs either until SIGTERM."""

from __future__ import annotations

import queue
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
