"""The launcher's dead-man's switch: ``python -m swarm.launch._sentinel GRACE_S``.

Reads ``+PGID`` / ``-PGID`` lines on standard input (groups the launcher started /
has stopped). When standard input closes, which happens when the launcher exits for
any reason including SIGKILL, every group still listed gets SIGTERM, and SIGKILL once
GRACE_S seconds have passed. After a clean shutdown the list is empty and this exits
at once. It ignores SIGINT, SIGTERM and SIGHUP: it must outlive whatever killed the
launcher long enough to do its one job.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def main(argv: list[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    grace_s = float(argv[0]) if argv else 5.0
    groups: set[int] = set()
    for raw in sys.stdin.buffer:
        line = raw.strip()
        if len(line) < 2 or line[:1] not in (b"+", b"-") or not line[1:].isdigit():
            continue
        pgid = int(line[1:])
        if pgid <= 1:
            continue
        if line[:1] == b"+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    groups = {g for g in groups if _alive(g)}
    if not groups:
        return 0
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace_s
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = {g for g in groups if _alive(g)}
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
