"""A stand-in node for the launcher's process tests: does what its flags say, in order.

    --record FILE        append "<name> start <pid>" when it starts, "<name> term" on SIGTERM
    --listen PORT        accept TCP connections on 127.0.0.1:PORT (after --delay)
    --say TEXT           print TEXT (after --delay)
    --touch PATH         create PATH (after --delay)
    --child              start a grandchild that sleeps (same process group)
    --ignore-term        ignore SIGTERM (the launcher must escalate to SIGKILL)
    --fail-first N FILE  exit 1 on the first N runs (counted in FILE), then run normally
    --exit CODE          exit with CODE after --run seconds (default: run until signalled)
    --expect-port PORT   exit 3 at once unless 127.0.0.1:PORT accepts (proves a readiness wait)
    --expect-file PATH   exit 3 at once unless PATH exists
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--name", default="node")
    p.add_argument("--record")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--listen", type=int)
    p.add_argument("--say")
    p.add_argument("--touch")
    p.add_argument("--child", action="store_true")
    p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--fail-first", nargs=2)
    p.add_argument("--exit", type=int)
    p.add_argument("--run", type=float, default=0.0)
    p.add_argument("--expect-port", type=int, action="append", default=[])
    p.add_argument("--expect-file", action="append", default=[])
    args = p.parse_args()

    def record(event: str) -> None:
        if args.record:
            with open(args.record, "a") as f:
                f.write(f"{args.name} {event} {os.getpid()}\n")

    def on_term(signum: int, frame: object) -> None:
        record("term")
        sys.exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_term else on_term)
    record("start")
    for port in args.expect_port:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            print(f"port {port} is not accepting", flush=True)
            return 3
    for path in args.expect_file:
        if not os.path.exists(path):
            print(f"{path} does not exist", flush=True)
            return 3
    if args.fail_first:
        limit, counter = int(args.fail_first[0]), args.fail_first[1]
        runs = int(open(counter).read()) if os.path.exists(counter) else 0
        with open(counter, "w") as f:
            f.write(str(runs + 1))
        if runs < limit:
            print(f"failing on purpose (run {runs + 1})", flush=True)
            return 1
    if args.child:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    time.sleep(args.delay)
    server = None
    if args.listen:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", args.listen))
        server.listen()
    if args.touch:
        open(args.touch, "w").close()
    if args.say:
        print(args.say, flush=True)
    if args.exit is not None:
        time.sleep(args.run)
        record(f"exit {args.exit}")
        return args.exit
    while True:
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
