"""Best-signal leadership on real agents: how fast leadership follows a change in signal,
and how often it moves under noisy signal.

Real processes: N agent processes (``python -m swarm agent``, ``lan`` profile, best-signal
leadership on, as shipped) on a real mosquitto, each with ``[mavlink]`` to one built-in
simulated copter on the ground behind its simulated SiK radio (sitl.vehicles with
``radio=True``: sitl.radio.SikRadioRelay, one RADIO_STATUS a second from the one radio
model). Loopback only; every phase is bounded.

* **follow** (``--trials``): wait until the leader has led for ``interval_s`` (so a
  hand-over is allowed at once) and every score is high; then move the leader's
  ground-station radio 2 km away (the radio model's geometry: a step change in signal,
  as a drone flown out of range, without the flight time) and time until every node
  agrees on another leader. Split into "signal step -> the leader sees a follower beat
  it by the margin" (RADIO_STATUS once a second, smoothed) and "-> new leader" (the
  dwell, TimeoutNow and the election). The radio is put back before the next trial.
* **noise** (``--noise-minutes``): every radio 1.5 km out (score about 0.78) with 4 dB
  shadowing instead of 2, so all five scores wander around the same mean (the worst
  case for flapping), the shipped ``interval_s`` (30 s); score-driven transfers per hour
  beside the bound (3600 / interval_s).

    python bench/leadership_follow.py [--agents 5] [--trials 10] [--noise-minutes 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_cluster import AgentCluster, StatusLog  # noqa: E402
from sitl._site import east_of  # noqa: E402
from sitl.vehicles import SimulatedVehicle, launch  # noqa: E402
from swarm.agent.config import LEADERSHIP_PROFILES  # noqa: E402
from swarm.bus.broker import LocalBroker  # noqa: E402

HOME = (-35.363261, 149.165230, 584.0)
MARGIN = 0.1
FOLLOW_INTERVAL_S = 5.0
LAN_DWELL_S, LAN_INTERVAL_S = LEADERSHIP_PROFILES["lan"][:2]  # what agents ship with


def _north(home: tuple[float, float, float], metres: float) -> tuple[float, float, float]:
    return (home[0] + metres / 111_320.0, home[1], home[2])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _wait(predicate, timeout: float, what: str, log: StatusLog | None = None) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    seen = "" if log is None else ": " + str(
        {n: (s.get("role"), s.get("link_score"), s.get("link")) for n, s in sorted(log.snapshot().items())})
    raise TimeoutError(f"{what} not within {timeout} s{seen}")


def _cluster(tmp: Path, broker: LocalBroker, vehicles: list[SimulatedVehicle],
             leadership: str) -> AgentCluster:
    tmp.mkdir(parents=True, exist_ok=True)
    cluster = AgentCluster(tmp, broker, len(vehicles), swarm="bench", extra=leadership)
    for i, v in zip(cluster.ids, vehicles):
        cluster.add_mavlink(i, v.endpoint, sysid=v.sysid)
    return cluster


def _leader_since(log: StatusLog, leader: int, term: int) -> float | None:
    with log.lock:
        times = [t for t, n, s in log.statuses
                 if n == leader and s.get("role") == "leader" and s.get("term") == term]
    return min(times) if times else None


def follow(log: StatusLog, vehicles: list[SimulatedVehicle], trials: int) -> None:
    totals, gaps, hands = [], [], []
    for trial in range(trials):
        def settled() -> bool:
            lead = log.leader()
            if lead is None:
                return False
            since = _leader_since(log, *lead)
            return (since is not None and time.monotonic() - since >= FOLLOW_INTERVAL_S + 0.5
                    and all((s.get("link_score") or 0) >= 0.9 for s in log.snapshot().values()))

        _wait(settled, 120, "a settled leader with every score high", log)
        lead = log.leader()
        assert lead is not None
        leader, term = lead
        radio = vehicles[leader - 1].radio
        assert radio is not None
        home = radio.radio.gcs
        stepped = time.monotonic()
        radio.radio.gcs = _north(home, 2000.0)  # the leader's signal drops

        def gap() -> bool:
            s = log.snapshot().get(leader, {})
            own, theirs = s.get("link_score"), list((s.get("link_scores") or {}).values())
            return own is not None and bool(theirs) and max(theirs) >= own + MARGIN

        def moved() -> bool:
            now = log.leader()
            return now is not None and now[0] != leader and now[1] > term

        gap_at = _wait(lambda: gap() or moved(), 60, "the leader's score gap")
        moved_at = _wait(moved, 60, "leadership to move")
        radio.radio.gcs = home
        totals.append(moved_at - stepped)
        gaps.append(gap_at - stepped)
        hands.append(moved_at - gap_at)
        print(f"  trial {trial + 1}: node {leader} -> node {log.leader()}: "
              f"{moved_at - stepped:.2f} s (gap after {gap_at - stepped:.2f} s)", flush=True)
    print(f"follow a step in signal, {trials} trials: p50 {statistics.median(totals):.2f} s, "
          f"p90 {_pct(totals, 0.9):.2f} s, max {max(totals):.2f} s; of which signal -> gap "
          f"p50 {statistics.median(gaps):.2f} s, gap -> new leader p50 "
          f"{statistics.median(hands):.2f} s")


def noise(log: StatusLog, vehicles: list[SimulatedVehicle], minutes: float, interval_s: float,
          shadowing_db: float) -> None:
    for v in vehicles:
        assert v.radio is not None
        v.radio.radio.model.shadowing_db = shadowing_db
        v.radio.radio.gcs = _north(v.home, 1500.0)
    _wait(lambda: log.leader() is not None and all(
        0 < (s.get("link_score") or 0) < 0.9 for s in log.snapshot().values()), 60,
        "every score in the noisy middle", log)

    def transfers() -> int:
        return sum(int(s.get("score_transfers", 0)) for s in log.snapshot().values())

    def terms() -> set[int]:
        with log.lock:
            return {int(s["term"]) for _, _, s in log.statuses if s.get("role") == "leader"}

    before, terms_before = transfers(), terms()
    started = time.monotonic()
    end = started + minutes * 60
    while time.monotonic() < end:
        time.sleep(1.0)
    elapsed = time.monotonic() - started
    moved = transfers() - before
    scores = [s.get("link_score") for _, s in sorted(log.snapshot().items())]
    print(f"noise ({minutes:g} min, {shadowing_db:g} dB shadowing, scores now {scores}): "
          f"{moved} score-driven transfers = "
          f"{moved * 3600 / elapsed:.0f}/h (bound {3600 / interval_s:.0f}/h at interval_s "
          f"{interval_s:g}); {len(terms() - terms_before)} new terms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--agents", type=int, default=5)
    p.add_argument("--trials", type=int, default=10, help="signal steps to time (0: skip)")
    p.add_argument("--noise-minutes", type=float, default=2.0, help="noisy run length (0: skip)")
    p.add_argument("--shadowing-db", type=float, default=4.0,
                   help="radio shadowing in the noisy run (the model's default is 2)")
    p.add_argument("--dwell-s", type=float, default=None,
                   help="[leadership] dwell_s (default: the lan profile's)")
    args = p.parse_args()
    if not 3 <= args.agents <= 9 or args.trials < 0 or not 0 <= args.noise_minutes <= 60 \
            or not 0 <= args.shadowing_db <= 20:
        p.error("--agents in [3, 9], --trials >= 0, --noise-minutes in [0, 60], "
                "--shadowing-db in [0, 20]")
    vehicles: list[SimulatedVehicle] = []
    with tempfile.TemporaryDirectory() as tmp, LocalBroker("mosquitto") as broker:
        try:
            for i in range(args.agents):
                home = (HOME[0], east_of(HOME[0], HOME[1], 30.0 * i), HOME[2])
                vehicles.append(launch("builtin", speedup=1.0, home=home, radio=True,
                                       radio_seed=i, builtin_time_to_ready_s=1.0))
            if args.trials:
                print(f"{args.agents} agents, lan profile, [leadership] interval_s "
                      f"{FOLLOW_INTERVAL_S:g} (so trials need not wait 30 s), dwell_s "
                      f"{args.dwell_s or LAN_DWELL_S:g}, margin {MARGIN}", flush=True)
                dwell = "" if args.dwell_s is None else f"dwell_s = {args.dwell_s}\n"
                cluster = _cluster(Path(tmp) / "follow", broker, vehicles,
                                   f"[leadership]\ninterval_s = {FOLLOW_INTERVAL_S}\n{dwell}")
                run(cluster, lambda log: follow(log, vehicles, args.trials))
            if args.noise_minutes:
                interval = LAN_INTERVAL_S
                dwell = "" if args.dwell_s is None else f"[leadership]\ndwell_s = {args.dwell_s}\n"
                print(f"noisy run: shipped lan [leadership] (interval_s {interval:g}, dwell_s "
                      f"{args.dwell_s or LAN_DWELL_S:g})", flush=True)
                noisy = _cluster(Path(tmp) / "noise", broker, vehicles, dwell)
                run(noisy, lambda log: noise(log, vehicles, args.noise_minutes, interval,
                                             args.shadowing_db))
        finally:
            for v in vehicles:
                v.close()
    return 0


def run(cluster: AgentCluster, body) -> None:
    log = StatusLog(cluster, client_id=f"bench-log-{id(cluster)}")
    try:
        cluster.start_all()
        body(log)
    finally:
        log.close()
        for i in cluster.ids:
            if cluster.alive(i):
                cluster.stop(i)
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
