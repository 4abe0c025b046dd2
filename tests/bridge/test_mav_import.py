"""What the agent's imports load (issue 12: agent RSS <= 60 MB with [mavlink]).

Module presence, not a figure: bench/agent_footprint.py measures the RSS. Run in a
fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CODE = """
import sys
import swarm.cli.agent, swarm.agent.node
print("agent", "pymavlink" in sys.modules)
import swarm.flight.flight
print("flight", "pymavlink.mavutil" in sys.modules, "pymavlink.dialects.v10.all" in sys.modules)
from mavlink_bridge._mav import mavlink, mavutil
print("dialect", mavlink.__name__, mavutil.mavlink is mavlink)
import pymavlink.dialects.v10.all
print("v10 importable", pymavlink.dialects.v10.all.MAVLINK_MSG_ID_HEARTBEAT)
"""


def test_flight_side_skips_pymavlinks_pyinstaller_only_dialect() -> None:
    proc = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "agent False",  # an agent without [mavlink] never loads pymavlink
        "flight True False",  # mavutil, without the MAVLink 1 "all" dialect (~3 MB)
        "dialect pymavlink.dialects.v20.ardupilotmega True",
        "v10 importable 0",  # not blocked for anyone who does want it
    ]
