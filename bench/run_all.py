"""Run every benchmark in bench/ with the arguments docs/benchmarks.md records.

Benchmarks print figures; they never pass or fail on timings. `--quick` runs each with
small counts (a smoke run of the scripts themselves, minutes instead of ~20 minutes);
its figures are not the ones to record. `--jobs 2` runs two scripts at once (the smoke run
in tests/bench does), each script's output printed whole when it ends.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

# (script, arguments recorded in docs/benchmarks.md, quick arguments)
BENCHMARKS: tuple[tuple[str, list[str], list[str]], ...] = (
    ("consensus_throughput.py", [], ["--entries", "300"]),
    ("consensus_election.py", ["--seeds", "200"], ["--seeds", "20"]),
    ("consensus_storage.py", [], ["--seconds", "0.5"]),
    ("consensus_sim_soak.py", ["--seeds", "10000"], ["--seeds", "20"]),
    ("leadership_noise.py", [], ["--minutes", "0.2", "--seeds", "1"]),
    ("map_apply.py", [], ["--commands", "500"]),
    ("planner_time.py", ["--scenes", "20"], ["--scenes", "2"]),
    ("bridge_upload.py", ["--items", "50", "--reps", "20"], ["--items", "50", "--reps", "3"]),
    ("bridge_decode.py", ["--messages", "50000"], ["--messages", "5000"]),
    ("bridge_vehicles.py", ["--reps", "3"], ["--reps", "1"]),
    ("sitl_capacity.py", ["--counts", "1,10,50,100,200"], ["--counts", "1,10", "--seconds", "2"]),
    ("sitl_speedup.py", [], ["--sim-seconds", "60"]),
    ("bus_roundtrip.py", [], ["--pings", "200", "--messages", "2000"]),
    ("bus_envelope.py", [], ["--seconds", "0.2"]),
    ("bus_flow.py", [], ["--shapes", "1x3000,3x100", "--runs", "1"]),
    ("gcs_load.py", [], ["--seconds", "3"]),
    ("agent_cluster.py", [], ["--quick"]),
    ("agent_latency.py", ["--ops", "300"], ["--ops", "20", "--warmup", "5"]),
    ("commit_floor.py", ["--loads", "0,2"], ["--ops", "20", "--warmup", "5"]),
    ("service_path.py", [], ["--batches", "20", "--runs", "1"]),
    ("agent_footprint.py", ["--seconds", "30", "--warmup", "10"],
     ["--agents", "2", "--seconds", "2", "--warmup", "0"]),
    ("raft_flood_rss.py", [], ["--nodes", "1", "--count", "5", "--after", "1", "--idle", "0"]),
    ("link_blackhole.py", [], ["--keepalive", "2", "--trials", "1"]),
    ("flight_latency.py", ["--agents", "3", "--updates", "30"], ["--agents", "3", "--updates", "2"]),
    ("leadership_follow.py", ["--agents", "5", "--trials", "10", "--noise-minutes", "5"],
     ["--agents", "3", "--trials", "1", "--noise-minutes", "0"]),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--only", default="", help="comma-separated substrings of script names")
    parser.add_argument("--jobs", type=int, default=1,
                        help="scripts run at once (default 1: figures to record need the machine "
                             "to themselves; more only for a --quick smoke run)")
    args = parser.parse_args(argv)
    if not 1 <= args.jobs <= 8:
        parser.error(f"--jobs must be 1 to 8, not {args.jobs}")
    wanted = [w for w in args.only.split(",") if w]
    commands = [[sys.executable, str(BENCH_DIR / script), *(quick_args if args.quick else full_args)]
                for script, full_args, quick_args in BENCHMARKS
                if not wanted or any(w in script for w in wanted)]
    if args.jobs == 1:
        failures = sum(_run(command, capture=False) != 0 for command in commands)
    else:
        # Each script's output is printed whole once it ends, so runs do not interleave.
        with ThreadPoolExecutor(args.jobs) as pool:
            failures = sum(code != 0 for code in pool.map(lambda c: _run(c, capture=True), commands))
    return 1 if failures else 0


_print_lock = threading.Lock()


def _run(command: list[str], capture: bool) -> int:
    """Run one benchmark; print its banner, its output and its exit line."""
    script = Path(command[1]).name
    banner = f"\n=== {' '.join(['python', 'bench/' + script, *command[2:]])}"
    started = time.monotonic()
    if not capture:
        print(banner, flush=True)
        code = subprocess.run(command, check=False).returncode
        print(f"=== {script}: exit {code} after {time.monotonic() - started:.1f} s", flush=True)
        return code
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    with _print_lock:
        print(banner, flush=True)
        sys.stdout.write(result.stdout)
        sys.stdout.write(result.stderr)
        print(f"=== {script}: exit {result.returncode} after {time.monotonic() - started:.1f} s",
              flush=True)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
