"""The launch files shipped in launch/: each one passes `swarm launch --check`, and the
ground station runs for real (broker + web page), then stops leaving nothing behind."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import pytest
from broker_harness import free_port
from launch_harness import processes_with_token, wait_until

from swarm.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "launch").glob("*.yaml"))


def test_the_expected_launch_files_are_shipped() -> None:
    assert {p.name for p in SHIPPED} >= {"ground_station.yaml"}


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
