"""``swarm broker-acl --swarm ID --nodes 1,2,3 [--ground-user gcs ...]``: print the
mosquitto ACL for a deployed swarm (swarm/deploy/broker_acl.py says what it grants)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _nodes(text: str) -> tuple[int, ...]:
    from swarm.deploy.node_ids import parse_node_ids

    try:
        return parse_node_ids(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    from swarm.deploy.broker_acl import AclError, render_acl

    parser = argparse.ArgumentParser(
        prog="swarm broker-acl", allow_abbrev=False,
        description="Print the mosquitto ACL for a swarm: each drone (user drone-N) may "
                    "publish only its own topics; ground-station users read everything and "
                    "publish requests.")
    parser.add_argument("--swarm", required=True, help="swarm id (as in every drone's config)")
    parser.add_argument("--nodes", required=True, type=_nodes,
                        help="the drones' Raft node ids: 1,2,3 or 1-5")
    parser.add_argument("--ground-user", action="append", dest="ground_users",
                        help="a ground-station MQTT user (repeatable; default: gcs)")
    args = parser.parse_args(argv)
    try:
        text = render_acl(args.swarm, args.nodes, tuple(args.ground_users or ("gcs",)))
    except AclError as exc:
        print(f"swarm broker-acl: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
