"""``swarm doctor --config drone.toml [--check NAME ...]``: pre-flight checks of a
companion computer, one PASS/FAIL/SKIP line each (swarm/deploy/doctor.py); exit 1 on
any failure."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from swarm.deploy.doctor import ALL_CHECKS, Outcome, run_checks

    parser = argparse.ArgumentParser(
        prog="swarm doctor", allow_abbrev=False,
        description="Check that this machine is ready to run its drone's agent: config, key "
                    "permissions, data folder, free disk, fsync latency, clock sync, broker "
                    "reachability/TLS/login and the flight controller's heartbeat.")
    parser.add_argument("--config", type=Path, required=True, help="the agent's drone.toml")
    parser.add_argument("--check", action="append", choices=ALL_CHECKS, dest="checks",
                        help="run only this check (repeatable; default: all)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the broker and the flight controller (default 5)")
    args = parser.parse_args(argv)
    if not 0 < args.timeout <= 300:
        parser.error("--timeout must be in (0, 300]")
    results = run_checks(args.config, args.checks or ALL_CHECKS, args.timeout)
    for result in results:
        print(result.line(), flush=True)
    failed = [r for r in results if r.outcome is Outcome.FAIL]
    print(f"{len(failed)} check(s) failed" if failed else "all checks passed")
    return 1 if failed else 0
