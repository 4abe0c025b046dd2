"""A stand-in for ArduPilot's ``arducopter`` SITL binary, built on the built-in simulator.

Used only where the real binary is absent, to exercise the launcher end to end: it
parses the same options the launcher passes (SITL_cmdline.cpp's --model, --speedup,
--base-port, -I, --home, --defaults, -w), reads SYSID_THISMAV from the defaults files,
records its argv and working folder, and serves serial0 until SIGTERM on the --base-port
given (Copter 4.6 SITL does not shift an explicit one by -I), else on 5760 + 10*I.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from sitl.builtin import SimulatorServer, VehicleConfig


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--speedup", type=float, default=1.0)
    p.add_argument("--base-port", type=int, default=5760)
    p.add_argument("-I", type=int, default=0)
    p.add_argument("--home", required=True)
    p.add_argument("--defaults", default="")
    p.add_argument("-w", action="store_true")
    argv = sys.argv[1:]
    if "--home" in argv:  # getopt takes "-35.3,..." as the value; argparse needs it attached
        i = argv.index("--home")
        argv[i:i + 2] = [f"--home={argv[i + 1]}"]
    args = p.parse_args(argv)
    explicit_base = "--base-port" in argv
    lat, lon, alt, hdg = (float(v) for v in args.home.split(","))
    sysid = args.I + 1
    for path in filter(None, args.defaults.split(",")):
        for line in Path(path).read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "SYSID_THISMAV":
                sysid = int(float(fields[1]))
    Path("argv.json").write_text(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd()}))
    config = VehicleConfig(instance=args.I, sysid=sysid, home_lat=lat, home_lon=lon, home_alt=alt,
                           home_heading=hdg, tcp_port=args.base_port if explicit_base else args.base_port + 10 * args.I, speedup=args.speedup,
                           time_to_ready_s=float(os.environ.get("STAND_IN_READY_S", "40")))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SimulatorServer([config]):
        print(f"Serial port 0 on TCP port {config.tcp_port}", flush=True)
        print("Waiting for connection ....", flush=True)
        stop.wait(120)  # bounded: a stray stand-in never outlives a test run by much
    return 0


if __name__ == "__main__":
    sys.exit(main())
