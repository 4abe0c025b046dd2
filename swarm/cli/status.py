"""``swarm status [--json]``: every node's status from the swarm's retained status
topics: a table of node, role, term, leader, commit, applied, last contact, lag, each
node's link score (best-signal leadership: the best-connected drone leads), and the map
version each drone's flight controller holds (with its mode, or "lost" when the agent
cannot reach it).

Statuses are outside input (anyone on the broker can retain one): a node whose latest
status is malformed is listed with role ``invalid`` and, under the table, why it was
refused (in ``--json``: the row's ``invalid``); nothing it says is shown or used. It is
listed rather than skipped because a broken agent or a stray publisher on a node's
topic is exactly what an operator looking at this table needs to see.

The table is as wide as its contents when the output is not a terminal (a pipe, a
file), so no column is cut; on a terminal it fits the terminal's width.

Exit status 0 when a leader is known, 2 for a usage or config error (bad flags, an
unreadable or invalid --config, a bad swarm id or broker address), 3 otherwise (no
broker answered, no leader)."""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from collections.abc import Mapping, Sequence
from typing import Any

from swarm.node_status import FcStatus, NodeStatus, StatusError, leader_of, parse_status

from ._client_args import add_client_args, open_client

__all__ = ["main"]

EPILOG = """exit status:
  0  a leader is known
  2  usage or config error (bad flags, missing or invalid --config, bad swarm id or
     broker): a retry cannot help
  3  no broker answered, or no leader; a retry may work"""


def _raw_json(status: Mapping[str, Any]) -> Any:
    """A status as published, for ``--json``: only what strict JSON can carry. Its
    fields beyond the ones parse_status checks come straight off the wire, where
    Python's JSON reader accepts NaN and Infinity (which would make the output invalid
    JSON) and nesting that json.dumps cannot print back."""
    try:
        json.dumps(status, allow_nan=False)
    except (ValueError, RecursionError) as exc:
        return {"not_shown": f"not strict JSON: {str(exc)[:80]}"}
    return status


def rows(statuses: Mapping[int, Mapping[str, Any]], now_ms: int,
         rejected: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """One row per node, from its status as published (``SwarmClient.statuses``) or the
    reason it was refused (``SwarmClient.rejected``). Each status is validated by
    swarm.node_status.parse_status, the client's own check: one that breaks it is a row
    with role ``invalid`` and the reason in ``invalid``, and is used for nothing else
    (not for the leader, not for lag). Lag and last contact come from the leader's view
    (the leader tracks each follower's match index and when it last heard from it)."""
    parsed: dict[int, NodeStatus] = {}
    refused = dict(rejected or {})
    for node, raw in statuses.items():
        try:
            parsed[node] = parse_status(raw, node)
        except StatusError as exc:
            refused[node] = str(exc)
    lead = leader_of(parsed.values())
    leader_status = parsed.get(lead) if lead is not None else None
    peers = leader_status.peers if leader_status is not None else {}
    out = []
    for node in sorted(set(parsed) | set(refused)):
        s = parsed.get(node)
        if s is None:
            out.append({**_EMPTY_ROW, "node": node, "role": "invalid",
                        "invalid": refused[node]})
            continue
        peer = peers.get(node)
        is_leader = leader_status is not None and leader_status.node == node
        out.append({
            "node": node, "name": s.name or "", "online": s.online,
            "role": s.role if s.online and s.role else "offline",
            "term": s.term, "leader": s.leader, "commit": s.commit,
            "applied": s.applied, "map_version": s.map_version,
            "lag": 0 if is_leader else peer.lag if peer else None,
            "last_contact_ms": 0 if is_leader else peer.last_contact_ms if peer else None,
            "status_age_ms": now_ms - s.t if s.t is not None else None,
            "link_score": s.link_score, "radio_source": s.radio_source,
            "fc": _fc(s.fc), "invalid": None,
        })
    return out


#: The cells of a node whose status was refused: nothing it said is shown.
_EMPTY_ROW: dict[str, Any] = {
    "name": "", "online": False, "term": None, "leader": None, "commit": None,
    "applied": None, "map_version": None, "lag": None, "last_contact_ms": None,
    "status_age_ms": None, "link_score": None, "radio_source": None, "fc": None}


def _fc(fc: FcStatus | None) -> dict[str, Any] | None:
    return None if fc is None else {"connected": fc.connected, "map_version_held":
                                    fc.map_version_held, "mode": fc.mode, "armed": fc.armed}


def _link_cell(score: float | None, source: str | None) -> str:
    cell = "-" if score is None else f"{score:.2f}"
    return cell + {"absent": " no radio", "none": " no radio", "detecting": " radio?"}.get(source or "", "")


def _fc_cell(fc: dict[str, Any] | None) -> str:
    if fc is None:
        return "-"
    held = _cell(fc["map_version_held"])
    if not fc["connected"]:
        return f"{held} (lost)"
    return f"{held} ({fc['mode'] or '?'}{', armed' if fc['armed'] else ''})"


#: Wide enough for any row (names and modes are at most 64 characters each).
_PIPE_WIDTH = 1000


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="swarm status", allow_abbrev=False,
        description=textwrap.fill(
            "Show every node of the swarm: role, term, leader, commit and applied "
            "index, last contact and replication lag (as the leader sees them).", 78),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--wait", type=float, default=2.0, metavar="SECONDS",
                        help="how long to collect statuses (default 2)")
    add_client_args(parser)
    args = parser.parse_args(argv)
    if not 0 < args.wait <= 60:
        parser.error("--wait must be in (0, 60] seconds")
    client = open_client(args)
    if isinstance(client, int):
        return client
    try:
        statuses = client.statuses(wait_s=args.wait)
        rejected = client.rejected()
    finally:
        client.close()
    table = rows(statuses, int(time.time() * 1000), rejected)
    has_leader = any(r["role"] == "leader" for r in table)
    if args.json:
        print(json.dumps({"nodes": table, "raw": {str(n): _raw_json(s)
                                                   for n, s in statuses.items()}},
                         indent=2, sort_keys=True, allow_nan=False))
        return 0 if has_leader else 3
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table("node", "name", "role", "term", "leader", "commit", "applied", "map",
              "last contact", "lag", "link", "fc holds", box=None)
    for r in table:
        role = r["role"]
        colour = {"leader": "bold green", "offline": "red", "invalid": "yellow"}.get(role, "")
        t.add_row(str(r["node"]), escape(r["name"]),
                  f"[{colour}]{role}[/{colour}]" if colour else role,
                  _cell(r["term"]), _cell(r["leader"]), _cell(r["commit"]), _cell(r["applied"]),
                  _cell(r["map_version"]),
                  "-" if r["last_contact_ms"] is None else f"{r['last_contact_ms']} ms",
                  _cell(r["lag"]),
                  _link_cell(r["link_score"], r["radio_source"]), escape(_fc_cell(r["fc"])))
    console = Console(highlight=False)
    if not console.is_terminal:
        # Not a terminal, rich assumes 80 columns and cuts cells ("lead…"): a script
        # reading the output wants every cell whole, so give it all the width it needs.
        console = Console(highlight=False, width=_PIPE_WIDTH)
    if not table:
        console.print("no node has published a status")
    else:
        console.print(t)
    for r in table:
        if r["invalid"] is not None:
            console.print(f"[yellow]node {r['node']}: status ignored: "
                          f"{escape(r['invalid'])}[/yellow]", soft_wrap=True)
    if not has_leader:
        console.print("[yellow]no leader[/yellow]")
    return 0 if has_leader else 3
