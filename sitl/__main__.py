"""``python -m sitl``: start N built-in simulated copters and print their connection strings.

    python -m sitl --count 3 --speedup 1 --home -35.363261,149.165230,584
    tcp:127.0.0.1:5760
    tcp:127.0.0.1:5770
    tcp:127.0.0.1:5780

With ``--ardupilot`` it runs real ArduPilot SITL copters instead (see ``sitl.ardupilot``),
waits until each is ready, then prints the same connection strings. With ``--radio`` a
simulated SiK radio (``sitl.radio.SikRadioRelay``, the one radio model) sits in front of
each copter of either kind, and the strings printed are the radios'.

With ``--serial1`` each copter also takes MAVLink on TCP ``port + 2``, where real SITL
has SERIAL1 (a second ground station, e.g. a pilot's, while the companion holds
serial0): commands sent there reach the copter; its replies go to serial0's client,
since this simulator has one output port (``SimulatorServer.inject``).

Runs until Ctrl-C or SIGTERM. Point MAVProxy (``mavproxy.py --master tcp:127.0.0.1:5760``)
or QGroundControl (a TCP comm link to 127.0.0.1:5760) at any of them.
"""

from __future__ import annotations

import argparse
import math
import selectors
import signal
import socket
import sys
import threading
from typing import Any, Callable, Sequence

from sitl.builtin import BASE_PORT, DEFAULT_HOME, SimulatorServer, configs_for


def _number(kind: type, ok: Callable[[Any], bool], bound: str) -> Callable[[str], Any]:
    """An argparse type: parse ``text`` as ``kind`` (int or a finite float) and require ``ok``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not (ok(value) and math.isfinite(value)):  # ok first: a huge int overflows isfinite
            raise argparse.ArgumentTypeError(bound.format(text=text, value=value))
        return value

    return parse


_positive_float = _number(float, lambda v: v > 0, "{text!r} must be a finite number > 0")
_non_negative_float = _number(float, lambda v: v >= 0, "{text!r} must be a finite number >= 0")
_count = _number(int, lambda v: 1 <= v <= 254, "count must be in 1..254, not {value}")
_port = _number(int, lambda v: 0 <= v <= 65535, "port must be in 0..65535 (0 = pick free ports), not {value}")


def _home(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"home must be LAT,LON[,ALT], not {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"home must be numbers LAT,LON[,ALT], not {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError("home values must be finite")
    lat, lon = values[0], values[1]
    alt = values[2] if len(values) == 3 else DEFAULT_HOME[2]
    if not -90 <= lat <= 90 or not -180 <= lon <= 180:
        raise argparse.ArgumentTypeError(f"home {lat},{lon} is off the globe")
    return lat, lon, alt


def build_parser(prog: str = "python -m sitl") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False,
        description="Run N simulated ArduPilot-like copters (MAVLink 2 over TCP, SITL port scheme).")
    parser.add_argument("--count", type=_count, default=1, help="number of copters (1..254, default 1)")
    parser.add_argument("--speedup", type=_positive_float, default=1.0,
                        help="simulation speed-up factor (default 1: real time)")
    parser.add_argument("--time-to-ready", type=_non_negative_float, default=40.0, metavar="SECONDS",
                        help="simulated seconds from boot until the EKF has a position (default 40)")
    parser.add_argument("--home", type=_home, default=DEFAULT_HOME, metavar="LAT,LON[,ALT]",
                        help="home of copter 0; the others are placed 5 m apart eastward")
    parser.add_argument("--base-port", type=_port, default=BASE_PORT,
                        help="TCP port of copter 0; copter I listens on BASE+10*I (0: free ports)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--radio", action="store_true",
                        help="emulate a SiK radio: RADIO_STATUS from sysid 51 falling with distance")
    parser.add_argument("--gcs", type=_home, default=None, metavar="LAT,LON[,ALT]",
                        help="ground-station radio position for --radio (default: each copter's home)")
    parser.add_argument("--no-wait", action="store_true",
                        help="boot at start instead of waiting for each copter's first client")
    parser.add_argument("--seed", type=int, default=0, help="seed for the radio model noise")
    parser.add_argument("--serial1", action="store_true",
                        help="also take MAVLink on each copter's port + 2 (SITL's SERIAL1: a second "
                             "ground station); replies go to serial0's client")
    real = parser.add_argument_group("real ArduPilot SITL instead of the built-in simulator")
    real.add_argument("--ardupilot", action="store_true",
                      help="run real 'arducopter' SITL binaries (found via --ardupilot-bin, "
                           "$ARDUPILOT_SITL_BIN, $ARDUPILOT_HOME or PATH) and wait until each is ready")
    real.add_argument("--ardupilot-bin", default=None, metavar="PATH", help="the arducopter SITL binary")
    real.add_argument("--workdir", default="sitl-run", help="folder for the instances' working folders")
    return parser


class Serial1Inlet:
    """One TCP listener per copter on its port + 2 (SITL's SERIAL1); every byte a client
    sends is handed to that copter (:meth:`SimulatorServer.inject`). One thread."""

    def __init__(self, server: SimulatorServer, host: str) -> None:
        self._server = server
        self._selector = selectors.DefaultSelector()
        self._listeners = []
        for index, port in enumerate(server.ports):
            listener = socket.create_server((host, port + 2))
            listener.setblocking(False)
            self._listeners.append(listener)
            self._selector.register(listener, selectors.EVENT_READ, (index, None))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serial1", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                index, conn = key.data
                if conn is None:
                    try:
                        client, _addr = key.fileobj.accept()  # type: ignore[union-attr]
                    except OSError:
                        continue
                    client.setblocking(False)
                    self._selector.register(client, selectors.EVENT_READ, (index, client))
                    continue
                try:
                    data = conn.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    self._server.inject(index, data)
                else:
                    self._selector.unregister(conn)
                    conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


def _run_ardupilot(args: argparse.Namespace, stop: threading.Event, prog: str) -> int:
    from sitl.ardupilot import ArduPilotConfig, ArduPilotNotFound, ArduPilotSITL

    from sitl.radio import RadioModel, SikRadioRelay

    if args.base_port == 0 or args.host != "127.0.0.1":
        print(f"{prog}: error: --ardupilot needs a fixed --base-port and does not support --host",
              file=sys.stderr)
        return 2
    try:
        config = ArduPilotConfig(count=args.count, binary=args.ardupilot_bin, home=(*args.home, 0.0),
                                 speedup=args.speedup, base_port=args.base_port, workdir=args.workdir)
        fleet = ArduPilotSITL(config)
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (ArduPilotNotFound, FileNotFoundError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    try:
        fleet.start()
    except (TimeoutError, ConnectionError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    radios: list[SikRadioRelay] = []
    try:
        endpoints = fleet.endpoints
        if args.radio:
            # ArduPilot SITL sends no RADIO_STATUS: a relay on each serial0 injects it, from
            # a ground-station radio at --gcs (default: that copter's home).
            for instance, endpoint in enumerate(fleet.endpoints):
                gcs = args.gcs or config.home_of(instance)[:3]
                radios.append(SikRadioRelay(int(endpoint.rsplit(":", 1)[1]), gcs,
                                            RadioModel(seed=args.seed + instance)))
            endpoints = [radio.endpoint for radio in radios]
        for endpoint in endpoints:
            print(endpoint, flush=True)
        stop.wait()
    finally:
        for radio in radios:
            radio.close()
        fleet.stop()
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m sitl") -> int:
    args = build_parser(prog).parse_args(argv)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if args.ardupilot:
        return _run_ardupilot(args, stop, prog)
    try:
        configs = configs_for(args.count, speedup=args.speedup, time_to_ready_s=args.time_to_ready,
                              home=args.home, base_port=args.base_port, radio_status=args.radio,
                              seed=args.seed, wait_for_connection=not args.no_wait, gcs=args.gcs)
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    server = SimulatorServer(configs, host=args.host)
    inlet: Serial1Inlet | None = None
    try:
        server.start()
        if args.serial1:
            inlet = Serial1Inlet(server, args.host)
    except OSError as exc:
        server.stop()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    try:
        for endpoint in server.endpoints:
            print(endpoint, flush=True)
        while not stop.wait(0.5):
            if server.error is not None:
                print(f"{prog}: simulator stopped: {server.error!r}", file=sys.stderr)
                return 1
    finally:
        if inlet is not None:
            inlet.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
