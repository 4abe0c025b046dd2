"""``swarm broker-acl --swarm ID --nodes 1,2,3 [--ground-user gcs ...]``: print the
mosquitto ACL for a deployed swarm (swarm/deploy/broker_acl.py says what it grants)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _nodes(text: str) -> list[int]:
    """``1,2,3`` or ``1-5`` or a mix (``1-3,7``)."""
    nodes: list[int] = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a node id or a range N-M") from None
        if last < first or last - first > 1000:
            raise argparse.ArgumentTypeError(f"{part!r} is not a range N-M with N <= M")
        nodes.extend(range(first, last + 1))
    return nodes


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
