"""Options shared by the client commands (``swarm propose``, ``read``, ``status``):
where the swarm is, and how long to wait."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swarm.client import SwarmClient

__all__ = ["EXIT_UNAVAILABLE", "EXIT_USAGE", "add_client_args", "open_client"]

#: The client commands' shared exit statuses (each command's docstring lists its own):
#: 2 as argparse exits for bad flags, and for a config that cannot work (nothing was
#: sent: fix the command line or the config); 3 for what may work on a retry.
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 3600] seconds")
    return value


def add_client_args(parser: argparse.ArgumentParser) -> None:
    # Errors found after parsing (open_client) are printed under the command's name too.
    parser.set_defaults(client_prog=parser.prog)
    g = parser.add_argument_group("where the swarm is")
    g.add_argument("--config", metavar="FILE",
                   help="an agent config (drone.toml) to take brokers, swarm id, TLS and "
                        "credentials from")
    g.add_argument("--broker", action="append", metavar="HOST:PORT",
                   help="broker to connect to (repeat for fail-over; default 127.0.0.1:1883)")
    g.add_argument("--swarm", metavar="ID", help="swarm id (default wildfire)")
    g.add_argument("--mqtt", choices=("5", "3.1.1"), default=None, help="MQTT version (default 5)")
    g.add_argument("--timeout", type=_positive, default=30.0, metavar="SECONDS",
                   help="give up after this long (default 30)")


def open_client(args: argparse.Namespace) -> "SwarmClient | int":
    """A connected client, or the exit status after printing why not: EXIT_USAGE (2)
    when the flags or the config are wrong (retrying cannot help: a missing or invalid
    --config, a bad swarm id or broker address), EXIT_UNAVAILABLE (3) when no broker
    answered (it may later)."""
    from swarm.agent.config import ConfigError
    from swarm.bus.client import BusConfigError
    from swarm.bus.topics import TopicError
    from swarm.client import ClientError, SwarmClient, client_from_agent_config

    import logging

    # paho reports a refused or closed connection at ERROR through the bus's logger;
    # the command says what went wrong itself.
    logging.getLogger("swarm.bus").setLevel(logging.CRITICAL)
    connect_s = min(args.timeout, 10.0)
    prog = args.client_prog
    if args.config is not None and (args.broker or args.swarm or args.mqtt):
        print(f"{prog}: error: give either --config or --broker/--swarm/--mqtt, not both",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.config is not None:
            client = client_from_agent_config(args.config, timeout_s=args.timeout,
                                              connect_timeout_s=connect_s)
        else:
            client = SwarmClient(args.broker or ["127.0.0.1:1883"], args.swarm or "wildfire",
                                 protocol=args.mqtt or "5", timeout_s=args.timeout,
                                 connect_timeout_s=connect_s)
    except (ConfigError, BusConfigError, TopicError, ValueError, OSError) as exc:
        # OSError: the config's password file cannot be read.
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return client.connect()
    except (ClientError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
