"""``swarm read [--item ID] [--json]``: a linearizable read of the agreed map (or one
item) from the swarm (ReadIndex: never stale). Exit status 0, 2 for a usage or config
error (bad flags, an unreadable or invalid --config, a bad swarm id or broker address),
3 when it could not be read (no broker answered, no leader, timeout), 4 when the item
does not exist."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from ._client_args import add_client_args, open_client

__all__ = ["main"]

EPILOG = """exit status:
  0  read
  2  usage or config error (bad flags, missing or invalid --config, bad swarm id or
     broker): a retry cannot help
  3  not read: no broker, no node online, no leader, timeout; a retry may work
  4  the item does not exist"""


def _summary(version: int, doc: dict[str, Any]) -> str:
    lines = [f"map version {version}"]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for f in doc.get("features", []):
        by_kind.setdefault(f["properties"]["kind"], []).append(f)
    for kind in ("search_area", "zone", "route", "survivor", "drone_home"):
        features = by_kind.get(kind, [])
        if not features:
            continue
        lines.append(f"{kind}s: {len(features)}")
        for f in features:
            p = f["properties"]
            detail = {"zone": lambda: p["status"],
                      "route": lambda: "UNSAFE" if p["unsafe"] else "safe",
                      "survivor": lambda: f"{p['count']} people, {p['status']}"
                                          + (", URGENT" if p["urgent"] else ""),
                      "drone_home": lambda: f"task {p['task']}",
                      "search_area": lambda: ""}[kind]()
            lines.append(f"  {f['id']}  {detail}".rstrip())
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="swarm read", allow_abbrev=False,
        description=textwrap.fill(
            "Read the agreed evacuation map from the swarm, linearizably (a node "
            "answers only after a quorum confirmed it is up to date).", 78),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--item", metavar="ID", help="one feature, e.g. zone:fire-1")
    parser.add_argument("--json", action="store_true", help="print the reply's JSON")
    add_client_args(parser)
    args = parser.parse_args(argv)
    from swarm.client import ClientError

    client = open_client(args)
    if isinstance(client, int):
        return client
    try:
        reply = client.read(args.item)
    except ClientError as exc:   # no node online, no broker: may work on a retry
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        client.close()
    if reply.status != "ok":
        print(f"{reply.code}: {reply.message}", file=sys.stderr)
        return 4 if reply.code == "not_found" else 3
    body = reply.body
    if args.json:
        print(json.dumps(body.get("item", body.get("map")), indent=2, sort_keys=True))
    elif args.item is not None:
        print(f"map version {body['map_version']}")
        print(json.dumps(body["item"], indent=2, sort_keys=True))
    else:
        print(_summary(int(body["map_version"]), body["map"]))
    return 0
