"""`swarm init-drone` and `swarm doctor`: the written config passes doctor's config
check and the unit passes `systemd-analyze verify`; doctor against real pieces (a
mosquitto with TLS and passwords, the built-in simulated flight controller, keys from
`swarm keygen`) passes, and each broken piece fails with its reason and exit status 1."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from broker_harness import Broker, as_test_user, certificates, free_port, passwords

from sitl.builtin import SimulatorServer, VehicleConfig
from swarm.__main__ import main
from swarm.bus.broker import find_mosquitto
from swarm.deploy import doctor
from swarm.deploy.init_drone import UNIT_NAME, DroneSetup, InitError, render_config, render_unit


def _init(tmp: Path, *extra: str) -> Path:
    etc = tmp / "etc"
    assert main(["init-drone", "--id", "3", "--swarm", "wildfire", "--voters", "1-5",
                 "--broker", "mqtts://127.0.0.1:8883", "--config-dir", str(etc),
                 "--data-root", str(tmp / "var"), "--out", str(etc), *extra]) == 0
    return etc / "drone.toml"


def _doctor(config: Path, capsys, *checks: str) -> tuple[int, list[str]]:
    argv = ["doctor", "--config", str(config), "--timeout", "10"]
    for check in checks:
        argv += ["--check", check]
    code = main(argv)
    return code, capsys.readouterr().out.splitlines()


def test_init_drone_output_passes_the_doctor_config_check(tmp_path: Path, capsys) -> None:
    config = _init(tmp_path)
    capsys.readouterr()
    code, lines = _doctor(config, capsys, "config")
    assert code == 0, lines
    assert lines[0].startswith(f"PASS  config   {config}: drone-3 (node 3) of swarm wildfire")
    assert lines[-1] == "all checks passed"


def test_init_drone_refuses_to_overwrite_and_bad_input(tmp_path: Path, capsys) -> None:
    _init(tmp_path)
    capsys.readouterr()
    assert main(["init-drone", "--id", "3", "--swarm", "wildfire", "--voters", "1-5",
                 "--broker", "mqtts://h:8883", "--out", str(tmp_path / "etc")]) == 2
    assert "already exist(s); --force replaces" in capsys.readouterr().err
    with pytest.raises(InitError, match="the agent would refuse this config"):
        render_config(DroneSetup(node_id=3, swarm="Wild Fire", voters=(1, 2, 3),
                                 brokers=("mqtts://h:8883",)))
    with pytest.raises(InitError, match="must be an absolute path"):
        render_config(DroneSetup(node_id=3, swarm="w", voters=(3,), brokers=("mqtt://h",),
                                 data_root=Path("data")))


def test_the_unit_is_hardened_and_restarts_always(tmp_path: Path) -> None:
    unit = render_unit(DroneSetup(node_id=3, swarm="w", voters=(3,), brokers=("mqtt://h",),
                                  swarm_command="/opt/s/bin/swarm"))
    for line in ("User=swarm", "Restart=always", "StartLimitIntervalSec=0",
                 "ExecStart=/opt/s/bin/swarm agent --config /etc/wildfire-swarm/drone.toml",
                 "StateDirectory=wildfire-swarm", "ReadWritePaths=/var/lib/wildfire-swarm",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                 "CapabilityBoundingSet=", "DevicePolicy=closed", "DeviceAllow=/dev/serial0 rw"):
        assert line in unit.splitlines(), line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not on this machine (it comes with systemd, "
                           "not with this project); the unit is checked where it is present")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, capsys) -> None:
    _init(tmp_path, "--swarm-command", sys.executable)
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "etc" / UNIT_NAME)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def _setup_drone(tmp: Path, broker_port: int, ca: Path, fc_port: int | None) -> Path:
    etc = tmp / "etc"
    config = _init(tmp, "--force", "--profile", "lan") if (etc / "drone.toml").exists() \
        else _init(tmp, "--profile", "lan")
    text = config.read_text().replace("mqtts://127.0.0.1:8883", f"mqtts://127.0.0.1:{broker_port}")
    if fc_port is not None:
        text = text.replace('connection = "/dev/serial0"', f'connection = "tcp:127.0.0.1:{fc_port}"')
        text = text.replace("sysid = 3 ", "sysid = 1 ")
    config.write_text(text)
    assert main(["keygen", "--out", str(etc / "swarm.key")]) == 0
    (etc / "mqtt.password").write_text("pw3\n")
    (etc / "mqtt.password").chmod(0o600)
    shutil.copy(ca, etc / "ca.crt")
    return config


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is installed by "
                    "`make system-packages`; run it first")
def test_doctor_on_real_pieces_passes_and_names_each_broken_one(tmp_path: Path, capsys,
                                                                monkeypatch) -> None:
    certificates(tmp_path, "broker")
    passwords(tmp_path / "passwd", {"drone-3": "pw3"})
    port = free_port()
    (tmp_path / "b.conf").write_text(as_test_user(
        f"listener {port} 127.0.0.1\ncafile {tmp_path}/broker-ca.crt\n"
        f"certfile {tmp_path}/broker.crt\nkeyfile {tmp_path}/broker.key\n"
        f"allow_anonymous false\npassword_file {tmp_path}/passwd\nlog_dest stderr\n"))
    broker = Broker(tmp_path / "b.conf", port)
    sim = SimulatorServer([VehicleConfig(instance=0, tcp_port=0, speedup=10)])
    sim.start()
    try:
        config = _setup_drone(tmp_path, port, tmp_path / "broker-ca.crt", sim.ports[0])
        # The clock check reads the kernel's NTP state, which a test cannot set: the
        # healthy run fixes it to TIME_OK, and test_clock_check_* covers the rest.
        monkeypatch.setattr(doctor, "kernel_clock_state", lambda: 0)
        capsys.readouterr()
        code, lines = _doctor(config, capsys)
        assert code == 0, "\n".join(lines)
        by_check = {line.split()[1]: line for line in lines[:-1]}
        assert set(by_check) == {"config", "keys", "data", "disk", "fsync", "clock", "broker", "fc"}
        assert all(line.startswith("PASS") for line in by_check.values()), lines
        assert "durable Ready batches/s" in by_check["fsync"]
        assert "TLS TLSv1.3 verified" in by_check["broker"] or "TLS TLSv1.2 verified" in by_check["broker"]
        assert "MQTT login as drone-3 accepted" in by_check["broker"]
        assert "HEARTBEAT from system 1" in by_check["fc"]

        # Now break one piece at a time.
        etc = tmp_path / "etc"
        (etc / "swarm.key").chmod(0o644)
        code, lines = _doctor(config, capsys, "keys")
        assert code == 1 and lines[0].startswith("FAIL  keys") and "chmod 600" in lines[0]
        (etc / "swarm.key").chmod(0o600)

        (etc / "mqtt.password").write_text("wrong\n")
        code, lines = _doctor(config, capsys, "broker")
        assert code == 1 and "MQTT login as drone-3 refused" in lines[0], lines
        (etc / "mqtt.password").write_text("pw3\n")
        # The login reads the password as the agent does: an unsafe file is not used.
        (etc / "mqtt.password").chmod(0o644)
        code, lines = _doctor(config, capsys, "broker")
        assert code == 1 and "not tried" in lines[0] and "chmod 600" in lines[0], lines
        (etc / "mqtt.password").chmod(0o600)

        certificates(tmp_path, "stranger")
        shutil.copy(tmp_path / "stranger-ca.crt", etc / "ca.crt")
        code, lines = _doctor(config, capsys, "broker")
        assert code == 1 and "TLS failed" in lines[0] and "certificate verify failed" in lines[0]

        sim.stop()
        code, lines = _doctor(config, capsys, "fc")
        assert code == 1 and "no HEARTBEAT from system 1" in lines[0], lines

        broker.stop()
        code, lines = _doctor(config, capsys, "broker")
        assert code == 1 and "unreachable" in lines[0], lines
    finally:
        sim.stop()
        broker.stop()


def test_a_bad_config_fails_and_skips_the_checks_that_need_it(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "drone.toml"
    bad.write_text("[node]\nid = 0\n")
    code, lines = _doctor(bad, capsys)
    assert code == 1
    assert lines[0].startswith(f"FAIL  config   {bad}: [node] id")
    assert all(line.startswith("SKIP") for line in lines[1:-1]) and len(lines) == 9


@pytest.mark.parametrize(("state", "outcome", "text"), [
    (0, doctor.Outcome.PASS, "synchronised"),
    (5, doctor.Outcome.FAIL, "not synchronised (kernel STA_UNSYNC)"),
    (None, doctor.Outcome.FAIL, "cannot ask the kernel"),
])
def test_clock_check_reads_the_kernel_sync_state(monkeypatch, state, outcome, text) -> None:
    monkeypatch.setattr(doctor, "kernel_clock_state", lambda: state)
    (result,) = doctor.check_clock(None, 1.0)  # type: ignore[arg-type]
    assert result.outcome is outcome and text in result.detail


def test_the_kernel_clock_state_is_readable_here() -> None:
    assert doctor.kernel_clock_state() in range(6)


def test_fsync_is_measured_in_the_data_folder(tmp_path: Path) -> None:
    times = doctor.measure_fsync(tmp_path, samples=5)
    assert len(times) == 5 and all(t > 0 for t in times)
    assert list(tmp_path.iterdir()) == []      # the scratch file is gone


def test_doctor_names_the_rotation_phase_and_refuses_one_key_twice(tmp_path: Path,
                                                                  capsys) -> None:
    from swarm.bus.keys import generate_key_file

    config = _init(tmp_path)
    etc = config.parent
    generate_key_file(etc / "swarm.key")
    new = generate_key_file(etc / "swarm.key.new")
    text = config.read_text()
    config.write_text(text.replace('key_file = "swarm.key"',
                                   'key_file = "swarm.key"\nnext_key_file = "swarm.key.new"', 1))
    capsys.readouterr()
    _, lines = _doctor(config, capsys, "keys")
    assert any(line.startswith("PASS") and "swarm.next_key_file" in line for line in lines)
    assert any(line.startswith("PASS") and "phase accept-next" in line
               and new.key_id.hex() in line for line in lines), lines
    shutil.copy(etc / "swarm.key", etc / "swarm.key.new")
    (etc / "swarm.key.new").chmod(0o600)
    code, lines = _doctor(config, capsys, "keys")
    assert code == 1
    assert any(line.startswith("FAIL") and "[swarm] next_key_file" in line
               and "holds the same key as key_file" in line for line in lines), lines
