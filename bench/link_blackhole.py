"""A silent loss of the leader's link to the broker (a blackhole: nothing flows, nothing
is closed) on real agents and a real mosquitto: how long until the connected two have
a new leader, until the cut-off leader stops claiming to lead (CheckQuorum), and until
each end of its MQTT connections gives up on it (paho by its keepalive, mosquitto by
its keepalive timeout, or by a close that reaches it through a direction that still
flows); then, after the heal, until it holds the others' state again.

Real processes: 3 agent processes (``python -m swarm agent``) with the shipped timing
profile and ``[bus] keepalive_s`` as given (10 s is the shipped default), each through
its own fault-injecting TCP proxy (tests/agent/fault_proxy.py). Loopback only; every
wait is bounded.

    python bench/link_blackhole.py [--keepalive 10] [--profile lan] [--trials 3]
                                   [--direction both|up|down] [--keep DIR]
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

from agent_cluster import new_leader_after, proxied_cluster, wait_noticed, zone  # noqa: E402
from swarm.agent.config import PROFILES  # noqa: E402
from swarm.bus.broker import LocalBroker  # noqa: E402

DIRECTIONS = {"both": (True, True), "up": (True, False), "down": (False, True)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keepalive", type=int, default=10)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="lan")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--direction", choices=sorted(DIRECTIONS), default="both")
    ap.add_argument("--keep", type=Path, help="keep the agents' configs and logs here")
    args = ap.parse_args(argv)
    if not 1 <= args.keepalive <= 120 or not 1 <= args.trials <= 50:
        ap.error("--keepalive in [1, 120], --trials in [1, 50]")
    tick_ms, election_ticks, _ = PROFILES[args.profile]
    print(f"profile {args.profile}: election timeout {tick_ms * election_ticks} to "
          f"{2 * tick_ms * election_ticks} ms; keepalive {args.keepalive} s; "
          f"blackhole {args.direction}")
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = scratch if args.keep is None else str(args.keep)
        Path(tmp).mkdir(parents=True, exist_ok=True)
        broker = LocalBroker("mosquitto")
        broker.start()
        try:
            with proxied_cluster(Path(tmp), broker, profile=args.profile, election_ticks=None,
                                 keepalive_s=args.keepalive) as (cluster, proxies, log):
                client = cluster.client()
                for trial in range(args.trials):
                    leader = cluster.wait_leader(client, timeout=120)
                    assert client.propose(zone(f"t{trial}"), timeout_s=60).committed
                    cluster.wait_converged(client, timeout=120)
                    term = client.statuses(wait_s=0.5)[leader]["term"]
                    survivors = [i for i in cluster.ids if i != leader]
                    log_from = len(cluster.log_path(leader).read_text(errors="replace"))
                    wall0, mono0 = time.time(), time.monotonic()
                    proxies[leader].blackhole(*DIRECTIONS[args.direction])
                    deadline = time.monotonic() + 120
                    while cluster.metrics(leader).get('swarm_raft_role{role="leader"}') == 1.0:
                        assert time.monotonic() < deadline, "the cut-off leader still leads"
                        time.sleep(0.05)
                    stepped_down = time.monotonic() - mono0
                    noticed = wait_noticed(cluster, log, leader, wall0, mono0, log_from, timeout=180)
                    elected = new_leader_after(log, mono0, survivors, term)
                    healed = time.monotonic()
                    proxies[leader].heal()
                    cluster.wait_converged(client, timeout=120)
                    rejoined = time.monotonic() - healed
                    row = {"new leader": elected, "stepped down": stepped_down,
                           "agent raft conn": noticed.raft_bus,
                           "agent client conn": (float("nan") if noticed.client_bus is None
                                                 else noticed.client_bus),
                           "broker": noticed.broker, "rejoined after heal": rejoined}
                    rows.append(row)
                    print(f"trial {trial}: leader {leader}: " + ", ".join(
                        f"{k} {v:.2f} s" for k, v in row.items()), flush=True)
        finally:
            broker.close()
    print("median: " + ", ".join(f"{k} {statistics.median(r[k] for r in rows):.2f} s"
                                 for k in rows[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
