"""The launch files shipped in launch/: each one passes `swarm launch --check`, and the
ground station runs for real (broker + web page), then stops leaving nothing behind."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import pytest
from broker_harness import free_port
from launch_harness import processes_with_token, wait_until

from sitl.vehicles import free_port_block
from swarm.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "launch").glob("*.yaml"))   # include/ holds included pieces


def test_the_expected_launch_files_are_shipped() -> None:
    assert {p.name for p in SHIPPED} == {"ground_station.yaml", "demo.yaml",
                                         "ardupilot_sitl.yaml", "drone.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_each_shipped_launch_file_passes_check(path: Path, capsys) -> None:
    assert main(["launch", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: ok, ")


def test_the_ground_station_serves_its_page_and_stops_cleanly(launch) -> None:
    broker_port, gcs_port = free_port(), free_port()
    run = launch(ROOT / "launch" / "ground_station.yaml", f"broker_port:={broker_port}",
                 f"gcs_port:={gcs_port}")
    run.wait_for_output("gcs ready", timeout=120)
    with urllib.request.urlopen(f"http://127.0.0.1:{gcs_port}/", timeout=30) as page:
        assert page.status == 200
        assert b"<html" in page.read().lower()
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(60) == 0, run.text()
    # Stopped in reverse order: the page before the broker it reads from.
    text = run.text()
    ended = [line.split("| ", 1)[1].split()[0] for line in text.splitlines()
             if line.startswith("launch ") and (" exited with " in line or " was killed by " in line)]
    assert ended == ["gcs", "broker"], text
    # swarm broker's own mosquitto child went too.
    wait_until(lambda: not processes_with_token(run.token), 10, "no process left")


def test_the_demo_brings_up_five_agents_that_elect_a_leader_and_agree(launch, tmp_path) -> None:
    from swarm.client import SwarmClient

    broker_port, gcs_port = free_port(), free_port()
    run = launch(ROOT / "launch" / "demo.yaml", f"broker_port:={broker_port}",
                 f"gcs_port:={gcs_port}", f"fc_base_port:={free_port_block(50)}",
                 f"data:={tmp_path / 'state'}")
    run.wait_for_output("started drone-5", timeout=180)
    client = SwarmClient([f"127.0.0.1:{broker_port}"], "wildfire")
    client.connect()
    try:
        def online() -> dict:
            statuses = client.statuses(wait_s=2.0)
            return {n: s for n, s in statuses.items() if s.get("online")}
        wait_until(lambda: len(online()) == 5 and client.leader() is not None, 180,
                   "five agents online with a leader")
        zone = {"type": "set_zone", "id": "fire-1", "status": "burning", "source": "test",
                "time_ms": 1,
                "polygon": [[149.16, -35.36], [149.17, -35.36], [149.17, -35.35], [149.16, -35.36]]}
        reply = client.propose(zone, timeout_s=60)
        assert reply.committed, reply.body

        def agreed() -> bool:
            statuses = online()
            return (len(statuses) == 5
                    and len({s.get("map_sha256") for s in statuses.values()}) == 1
                    and all(s.get("map_version", 0) >= reply.body["index"] for s in statuses.values()))
        wait_until(agreed, 120, "every agent applying the committed zone")
        _, doc = client.read_map()
        assert "fire-1" in {f["properties"]["id"] for f in doc["features"]}
    finally:
        client.close()
    run.wait_for_output("gcs ready", timeout=180)
    with urllib.request.urlopen(f"http://127.0.0.1:{gcs_port}/", timeout=30) as page:
        assert page.status == 200
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(120) == 0, run.text()
    wait_until(lambda: not processes_with_token(run.token), 15, "no process left")


def test_ardupilot_sitl_file_flies_the_agreed_map_on_real_arducopter(launch, tmp_path) -> None:
    """launch/ardupilot_sitl.yaml for real: five arducopter SITL instances (x10, so GPS and
    EKF are ready in seconds), five agents, a leader, a burning zone committed and held
    by every real flight controller as a plan; SIGTERM stops everything, arducopter
    included. Runs whenever ARDUPILOT_SITL_BIN is set (CI sets it); skipped only without."""
    from sitl.vehicles import ardupilot_binary_from_env
    from swarm.client import SwarmClient

    binary = ardupilot_binary_from_env()
    if binary is None:
        pytest.skip("no ArduPilot SITL build: set ARDUPILOT_SITL_BIN to build/sitl/bin/arducopter")
    broker_port, gcs_port = free_port(), free_port()
    run = launch(ROOT / "launch" / "ardupilot_sitl.yaml", f"broker_port:={broker_port}",
                 f"gcs_port:={gcs_port}", f"fc_base_port:={free_port_block(50)}", "speedup:=10",
                 f"ardupilot_bin:={binary}", f"data:={tmp_path / 'state'}")
    run.wait_for_output("copters ready", timeout=240)
    client = SwarmClient([f"127.0.0.1:{broker_port}"], "wildfire")
    try:
        def flying() -> dict:
            statuses = client.statuses(wait_s=2.0)
            return {n: s for n, s in statuses.items()
                    if s.get("online") and (s.get("fc") or {}).get("connected")}
        wait_until(lambda: len(flying()) == 5 and client.leader() is not None, 180,
                   "five agents online on connected real flight controllers, with a leader")
        zone = {"type": "set_zone", "id": "fire-1", "status": "burning", "source": "test",
                "time_ms": 1,
                "polygon": [[149.16, -35.36], [149.17, -35.36], [149.17, -35.35], [149.16, -35.36]]}
        reply = client.propose(zone, timeout_s=60)
        assert reply.committed, reply.body

        def held() -> bool:
            statuses = flying()
            return len(statuses) == 5 and len({s.get("map_sha256") for s in statuses.values()}) == 1 \
                and all((s["fc"].get("map_version_held") or 0) >= reply.body["index"]
                        for s in statuses.values())
        wait_until(held, 120, "every real flight controller holding the plan with the zone")
    finally:
        client.close()
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(120) == 0, run.text()[-4000:]
    wait_until(lambda: not processes_with_token(run.token), 30, "no process left (arducopter too)")


def _bench_drone(tmp_path: Path, broker_port: int, fc_port: int) -> Path:
    """A drone config from `swarm init-drone`, pointed at a plain loopback broker and a
    simulated flight controller (a single-voter swarm, so it leads itself)."""
    etc = tmp_path / "etc"
    assert main(["init-drone", "--id", "3", "--swarm", "wildfire", "--voters", "3",
                 "--broker", f"mqtt://127.0.0.1:{broker_port}", "--config-dir", str(etc),
                 "--data-root", str(tmp_path / "var"), "--out", str(etc), "--profile", "lan"]) == 0
    config = etc / "drone.toml"
    text = config.read_text()
    for line in ('username = "drone-3"', 'password_file = "mqtt.password"'):
        text = text.replace(line, "# " + line)      # the test broker is anonymous
    text = text.replace('connection = "/dev/serial0"', f'connection = "tcp:127.0.0.1:{fc_port}"')
    text = text.replace("sysid = 3 ", "sysid = 1 ")
    config.write_text(text)
    assert main(["keygen", "--out", str(etc / "swarm.key")]) == 0
    return config


def test_the_drone_file_gates_the_agent_on_its_preflight_checks(launch, tmp_path, mosquitto,
                                                                capsys) -> None:
    from sitl.builtin import SimulatorServer, VehicleConfig

    with SimulatorServer([VehicleConfig(instance=0, tcp_port=0, speedup=10)]) as sim:
        config = _bench_drone(tmp_path, mosquitto.port, sim.ports[0])
        capsys.readouterr()
        run = launch(ROOT / "launch" / "drone.yaml", f"config:={config}")
        run.wait_for_output("preflight ready", timeout=120)
        run.wait_for_output("leader is now node 3", timeout=120)
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0, run.text()
        wait_until(lambda: not processes_with_token(run.token), 15, "no process left")

        # A broken piece (here the swarm key readable by others): the agent never starts.
        (config.parent / "swarm.key").chmod(0o644)
        failed = launch(ROOT / "launch" / "drone.yaml", f"config:={config}")
        assert failed.wait(120) == 1, failed.text()
        assert "FAIL  keys" in failed.text() and "chmod 600" in failed.text()
        assert "preflight exited with status 1 before it was ready" in failed.text()
        assert "started agent" not in failed.text()
