"""The ``swarm`` command: one entry point, one subcommand per job.

    swarm <command> [options]          (also: python -m swarm <command> ...)
    swarm --help                       lists the commands
    swarm <command> --help             that command's options

This module is only a dispatcher. Each command lives in its own module exposing
``main(argv: list[str]) -> int``; the table :data:`COMMANDS` names that module, and it
is imported only when its command runs, so ``swarm --help`` stays fast on a Raspberry Pi
and a broken optional dependency of one command cannot break the others.

To add a command, add one row to :data:`COMMANDS` and write its module (by convention
``swarm/cli/<command>.py``, whose parser uses ``prog="swarm <command>"`` and
``allow_abbrev=False``). Commands that wrap another package's tool (``sim``, ``sitl``,
``bridge-check``) keep their ``python -m`` entry points working as well.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence
from typing import NamedTuple, NoReturn

__all__ = ["COMMANDS", "Command", "main"]


class Command(NamedTuple):
    #: Module with ``main(argv: list[str]) -> int``, imported when the command runs.
    module: str
    #: One line for ``swarm --help``.
    summary: str
    #: Heading it is listed under in ``swarm --help``.
    group: str


_SWARM = "run a swarm"
_CLIENT = "talk to a running swarm"
_TOOLS = "simulation and checks"

#: Every subcommand of ``swarm``, in the order ``swarm --help`` lists them.
COMMANDS: dict[str, Command] = {
    "agent": Command("swarm.cli.agent", "run one drone's Raft node on the MQTT bus "
                     "(--config drone.toml)", _SWARM),
    "launch": Command("swarm.cli.launch", "run a launch file (YAML): nodes in dependency order, "
                      "supervised, stopped cleanly", _SWARM),
    "init-drone": Command("swarm.cli.init_drone", "write a drone's commented config and its "
                          "hardened systemd unit", _SWARM),
    "doctor": Command("swarm.cli.doctor", "pre-flight checks of a companion computer (config, "
                      "keys, disk, fsync, clock, broker, flight controller)", _SWARM),
    "broker-acl": Command("swarm.cli.broker_acl", "print the mosquitto ACL for a deployed swarm "
                          "(each drone publishes only its own topics)", _SWARM),
    "broker": Command("swarm.bus.broker", "run one local MQTT broker (mosquitto with the bus's "
                      "settings, else the embedded one) on loopback", _SWARM),
    "keygen": Command("swarm.bus.keys", "write a new swarm key file (the HMAC key every "
                      "drone shares; mode 0600)", _SWARM),
    "gcs": Command("swarm.cli.gcs", "ground station: the agreed map and the swarm's health "
                   "live in a browser, with operator actions", _CLIENT),
    "propose": Command("swarm.cli.propose", "propose one map command (JSON) and print the reply",
                       _CLIENT),
    "read": Command("swarm.cli.read", "read the agreed map, or one item (linearizable)", _CLIENT),
    "status": Command("swarm.cli.status", "every node's role, term, leader, commit, lag",
                      _CLIENT),
    "demo": Command("swarm.cli.demo_live", "the wildfire demo on real processes: broker, 5 "
                    "copters, 5 agents, ground station; the leader killed mid-run", _SWARM),
    "demo-virtual": Command("swarm.cli.demo", "virtual-time demo: simulated drones agree on a "
                            "wildfire map in one process", _TOOLS),
    "check-command": Command("swarm.cli.check_command",
                             "validate one map command (JSON) and print its canonical form",
                             _TOOLS),
    "sim": Command("swarm.cli.sim", "seeded fault simulation of the Raft core (python -m consensus.sim)",
                   _TOOLS),
    "sitl": Command("swarm.cli.sitl", "simulated copters: built-in, or real ArduPilot SITL "
                    "(python -m sitl)", _TOOLS),
    "bridge-check": Command("swarm.cli.bridge_check", "check the wiring to a flight controller "
                            "(python -m mavlink_bridge)", _TOOLS),
}

_GROUP_ORDER = (_SWARM, _CLIENT, _TOOLS)


def _usage() -> str:
    lines = ["usage: swarm <command> [options]", "",
             "The wildfire swarm: drones agree through Raft over MQTT on one evacuation map,",
             "and fly by it.", ""]
    width = max(len(name) for name in COMMANDS)
    for group in _GROUP_ORDER + tuple(sorted({c.group for c in COMMANDS.values()}
                                             - set(_GROUP_ORDER))):
        names = [n for n, c in COMMANDS.items() if c.group == group]
        if not names:
            continue
        lines.append(f"{group}:")
        lines.extend(f"  {n:<{width}}  {COMMANDS[n].summary}" for n in names)
        lines.append("")
    lines.append("'swarm <command> --help' shows a command's options.")
    return "\n".join(lines)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"swarm {version('wildfire-swarm')}"
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "swarm (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``swarm`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Usage errors exit with status 2 through :class:`SystemExit`, as argparse does."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        if args and args[0] in ("-h", "--help"):
            print(_usage())
            return 0
        if args and args[0] == "--version":
            print(_version())
            return 0
        problem = (f"unrecognized option {args[0]!r}" if args
                   else "a command is required")
        _usage_error(problem)
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        close = difflib.get_close_matches(name, COMMANDS, n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        _usage_error(f"unknown command {name!r}{hint}")
    run = importlib.import_module(command.module).main
    status = run(rest)
    return int(status or 0)


def _usage_error(problem: str) -> NoReturn:
    print("usage: swarm <command> [options]   ('swarm --help' lists the commands)",
          file=sys.stderr)
    print(f"swarm: error: {problem}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    sys.exit(main())
