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
    """One line per kind and per feature. The map comes from the wire (any client that
    may publish on this call's reply topic can forge one), so a feature that is not the
    shape docs/map.md gives is counted, not shown, never a crash."""
    lines = [f"map version {version}"]
    by_kind: dict[str, list[tuple[object, dict[str, Any]]]] = {}
    malformed = 0
    features = doc.get("features")
    for f in features if isinstance(features, list) else []:
        props = f.get("properties") if isinstance(f, dict) else None
        if not isinstance(props, dict) or not isinstance(props.get("kind"), str):
            malformed += 1
            continue
        by_kind.setdefault(props["kind"], []).append((f.get("id"), props))
    for kind in ("search_area", "zone", "route", "survivor", "drone_home"):
        members = by_kind.get(kind, [])
        if not members:
            continue
        lines.append(f"{kind}s: {len(members)}")
        for fid, p in members:
            detail = {"zone": lambda: f"{p.get('status')}",
                      "route": lambda: "UNSAFE" if p.get("unsafe") else "safe",
                      "survivor": lambda: f"{p.get('count')} people, {p.get('status')}"
                                          + (", URGENT" if p.get("urgent") else ""),
                      "drone_home": lambda: f"task {p.get('task')}",
                      "search_area": lambda: ""}[kind]()
            lines.append(f"  {fid}  {detail}".rstrip())
    if malformed:
        lines.append(f"({malformed} malformed features not shown)")
    # A forged id may hold an unpaired surrogate (valid JSON, not Unicode text), which
    # printing to a UTF-8 terminal would raise on: escaped instead.
    return "\n".join(lines).encode("utf-8", "backslashreplace").decode("utf-8")


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
