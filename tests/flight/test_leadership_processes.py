"""The best-signal drone leads (issue 10), with real processes: 5 agent processes
(``python -m swarm agent`` with ``[mavlink]``) on a real mosquitto, each flying one
built-in simulated copter (sitl.vehicles, x10) behind its simulated SiK radio
(sitl.radio.SikRadioRelay: RADIO_STATUS from the one radio model, the ground station at
the copter's take-off spot). All five hover at 20 m.

The leader's copter is then flown 2 km away (a GUIDED goto, as a ground station on the
aircraft's other telemetry port would send it), so its radio degrades with distance; its
agent's link score falls, and the leader hands leadership to a better-placed drone. The
test checks that leadership moves within a bounded time of the score gap appearing, that
score-driven transfers stay within their bound (one per ``interval_s`` per leader) over
the run and leadership does not come back to the far drone, and safety: at most one
leader per term in every status seen, and every node holding the same map at the end.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sitl._site import east_of
from sitl.vehicles import SimulatedVehicle, launch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_cluster import ROOT, AgentCluster, StatusLog  # noqa: E402  (tests/agent: the agents' process harness)
from test_flight_processes import _connect, _take_off  # noqa: E402  (the copters' take-off)

os.environ.setdefault("MAVLINK20", "1")
from pymavlink.dialects.v20 import ardupilotmega as mavlink  # noqa: E402

AGENTS = 5
SPEEDUP = 10.0
HOME = (-35.363261, 149.165230, 584.0)
SPACING_M = 30.0
FAR_M = 2000.0          # north of home: about 20 dB of fade margin left (score ~0.67)
WPNAV_SPEED_CMS = 2000  # ArduCopter's maximum: 20 m/s
INTERVAL_S = 10.0       # [leadership] interval_s for the test (default 30 s): keeps it short
MARGIN = 0.1
LEADERSHIP = f"[leadership]\ninterval_s = {INTERVAL_S}\nmargin = {MARGIN}\ndwell_s = 1.0\n"
pytestmark = pytest.mark.slow


def _wait(predicate, timeout: float, what: str, describe=lambda: "") -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s: {describe()}")


def _goto_north(vehicle: SimulatedVehicle, metres: float) -> None:
    """A GUIDED goto (SET_POSITION_TARGET_GLOBAL_INT, position only, 20 m above home)
    handed to the copter as a second ground station would send it (its agent holds the
    copter's serial port, through the radio)."""
    server = vehicle.server
    assert server is not None
    mav = mavlink.MAVLink(None, srcSystem=246, srcComponent=mavlink.MAV_COMP_ID_MISSIONPLANNER)
    lat = vehicle.home[0] + metres / 111_320.0
    ignore_all_but_position = 0b0000_1111_1111_1000
    msg = mav.set_position_target_global_int_encode(
        0, vehicle.sysid, 1, mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, ignore_all_but_position,
        int(lat * 1e7), int(vehicle.home[1] * 1e7), 20.0, 0, 0, 0, 0, 0, 0, 0, 0)
    server.inject(0, bytes(msg.pack(mav)))


def _distance_m(vehicle: SimulatedVehicle) -> float:
    assert vehicle.server is not None
    s = vehicle.server.state(0)
    dn = (s.lat - vehicle.home[0]) * 111_320.0
    de = (s.lon - vehicle.home[1]) * 111_320.0 * math.cos(math.radians(s.lat))
    return math.hypot(dn, de)


def test_the_drone_flown_away_loses_leadership_to_a_better_placed_one(tmp_path: Path, mosquitto) -> None:
    vehicles: list[SimulatedVehicle] = []
    cluster: AgentCluster | None = None
    log: StatusLog | None = None
    try:
        for i in range(AGENTS):
            home = (HOME[0], east_of(HOME[0], HOME[1], i * SPACING_M), HOME[2])
            vehicles.append(launch("builtin", speedup=SPEEDUP, home=home, radio=True, radio_seed=i))
        for v in vehicles:
            _take_off(v.vehicle_endpoint, v.sysid)
            link, fc = _connect(v.vehicle_endpoint, v.sysid)
            try:
                fc.set_param("WPNAV_SPEED", WPNAV_SPEED_CMS)
            finally:
                fc.detach()
                link.close()

        cluster = AgentCluster(tmp_path, mosquitto, AGENTS, extra=LEADERSHIP)
        for i, v in zip(cluster.ids, vehicles):
            cluster.add_mavlink(i, v.endpoint, sysid=v.sysid)
        log = StatusLog(cluster, client_id="leadership-test-log")
        started = time.monotonic()
        cluster.start_all()

        def describe() -> str:
            assert log is not None and cluster is not None
            return str({n: (s.get("role"), s.get("term"), s.get("link_score"), s.get("link"))
                        for n, s in sorted(log.snapshot().items())}) + "\n" + cluster.logs()

        def every_score_known() -> bool:
            assert log is not None
            st = log.snapshot()
            # All close to the ground station: every radio near full score.
            return len(st) == AGENTS and log.leader() is not None and all(
                (s.get("link_score") or 0) > 0.9 and ((s.get("link") or {}).get("radio") or 0) > 0.9
                for s in st.values())

        _wait(every_score_known, 90, "a leader and every node's link score", describe)
        agreed = log.leader()
        assert agreed is not None
        far, first_term = agreed

        # `swarm status` shows each node's score.
        broker = cluster.brokers[0]
        out = subprocess.run([sys.executable, "-m", "swarm", "status", "--json", "--broker",
                              f"{broker.host}:{broker.port}", "--swarm", cluster.swarm],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        rows = {r["node"]: r for r in json.loads(out.stdout)["nodes"]}
        assert sorted(rows) == cluster.ids and all(
            isinstance(r["link_score"], float) for r in rows.values()), out.stdout + out.stderr

        # Fly the leader's drone away from the ground station (and the others).
        flown_at = time.monotonic()
        for _ in range(3):  # idempotent; three in case one meets a half-parsed frame
            _goto_north(vehicles[far - 1], FAR_M)
            time.sleep(0.2)

        def gap_seen() -> bool:
            """The leader sees a follower beat its own score by the margin."""
            assert log is not None
            s = log.snapshot().get(far, {})
            own, theirs = s.get("link_score"), (s.get("link_scores") or {}).values()
            return (s.get("role") == "leader" and own is not None and bool(theirs)
                    and max(theirs) >= own + MARGIN)

        def moved() -> bool:
            assert log is not None
            lead = log.leader()
            return lead is not None and lead[0] != far and lead[1] > first_term

        gap_at = _wait(lambda: gap_seen() or moved(), 90, "the far drone's score to fall below "
                       "the others'", lambda: f"{_distance_m(vehicles[far - 1]):.0f} m away; "
                       + describe())
        moved_at = _wait(moved, 2 * INTERVAL_S + 15, "leadership to move off the far drone",
                         lambda: f"{_distance_m(vehicles[far - 1]):.0f} m away; " + describe())
        lead = log.leader()
        assert lead is not None and lead[0] != far
        distance_at_move = _distance_m(vehicles[far - 1])

        # Then it stays with the well-placed drones: watch a little over one interval.
        observe_until = time.monotonic() + INTERVAL_S + 2
        while time.monotonic() < observe_until:
            time.sleep(0.5)
        _wait(lambda: (lambda x: x is not None and x[0] != far)(log.leader()), INTERVAL_S + 10,
              "a leader other than the far drone", describe)
        run_s = time.monotonic() - started
        final = log.snapshot()
        far_status = final[far]
        best = max(s["link_score"] for n, s in final.items() if n != far)
        assert far_status["link_score"] <= best - MARGIN, describe()

        client = cluster.client(timeout_s=20.0)
        cluster.wait_converged(client, timeout=60)

        # Safety: at most one leader per term in every status any node published.
        with log.lock:
            statuses = list(log.statuses)
            events = list(log.events)
        leaders: dict[int, set[int]] = {}
        for _, node, body in statuses:
            if body.get("online") and body.get("role") == "leader":
                leaders.setdefault(int(body["term"]), set()).add(node)
        assert all(len(nodes) == 1 for nodes in leaders.values()), leaders

        # Bounded transfers: each leader hands over at most once per interval.
        transfers = sum(int(s.get("score_transfers", 0)) for s in final.values())
        bound = math.floor(run_s / INTERVAL_S) + 1
        assert 1 <= transfers <= bound, (transfers, bound, events)
        handed = [e for _, e in events if e.get("kind") == "transfer"]
        assert any(e.get("node") == far for e in handed), handed
        print(f"\nleadership moved {moved_at - gap_at:.1f} s after the score gap "
              f"({moved_at - flown_at:.1f} s after the goto, far drone at {distance_at_move:.0f} m; "
              f"scores {[(n, s.get('link_score')) for n, s in sorted(final.items())]}); "
              f"{transfers} score-driven transfer(s) and {len(leaders)} terms in {run_s:.0f} s "
              f"(bound {bound})")
    finally:
        if log is not None:
            log.close()
        if cluster is not None:
            for i in cluster.ids:
                if cluster.alive(i):
                    cluster.stop(i)
            cluster.close()
        for v in vehicles:
            v.close()
