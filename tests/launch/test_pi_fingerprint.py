"""deploy/pi/fingerprint.py keeps working (it is how docs/deploy-pi.md compares an
emulated or real Pi with x86): a run records every node's hashes and the exported
files, and compare tells a last-bit float difference (harmless) from a differing
hash or export (a failure). The aarch64 run itself is a developer tool
(deploy/pi/emulate-aarch64.sh), not run here."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "deploy" / "pi" / "fingerprint.py"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pi_fingerprint", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("fingerprint")
    proc = subprocess.run([sys.executable, str(TOOL), "run", "--seed", "3", "--nodes", "3",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data: dict[str, Any] = json.loads((out / "fingerprint.json").read_text())
    return data


def test_a_run_records_every_node_and_every_export(run: dict[str, Any]) -> None:
    equal = run["equal"]
    assert equal["all_nodes_agree"] is True
    assert sorted(equal["nodes"]) == ["drone-1", "drone-2", "drone-3"]
    assert len({n["assignment_sha256"] for n in equal["nodes"].values()}) == 1
    assert equal["nodes"]["drone-1"]["assignment_sha256"] is not None
    files = set(equal["exports_sha256"])
    assert {"map.geojson", "drone-1.plan", "drone-1.waypoints"} <= files
    # The issue-13 probe point, computed on this machine.
    lon, lat = run["floats"]["issue13_probe_lon_lat"]
    assert round(lon, 7) == -121.6248173 and round(lat, 7) == 39.7573483


def test_compare_accepts_last_bit_float_differences(run: dict[str, Any]) -> None:
    other = copy.deepcopy(run)
    lon, lat = other["floats"]["issue13_probe_lon_lat"]
    other["floats"]["issue13_probe_lon_lat"] = [math.nextafter(lon, 0.0), lat]
    equal, lines = _tool().compare(run, other)
    assert equal, lines
    assert any("issue13_probe_lon_lat: 1 of 2 differ, at most 1 ulp" in line for line in lines)


def test_compare_rejects_a_differing_hash_or_export(run: dict[str, Any]) -> None:
    tool = _tool()
    other = copy.deepcopy(run)
    other["equal"]["nodes"]["drone-2"]["assignment_sha256"] = "0" * 64
    equal, lines = tool.compare(run, other)
    assert not equal
    assert any(line.startswith("DIFFERS nodes.drone-2.assignment_sha256") for line in lines)
    other = copy.deepcopy(run)
    del other["equal"]["exports_sha256"]["drone-1.plan"]
    equal, lines = tool.compare(run, other)
    assert not equal
    assert any("exports_sha256.drone-1.plan" in line for line in lines)
