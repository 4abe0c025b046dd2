"""``swarm status [--json]``: every node's status from the swarm's retained status
topics: a table of node, role, term, leader, commit, applied, last contact, lag, each
node's link score (best-signal leadership: the best-connected drone leads), and the map
version each drone's flight controller holds (with its mode, or "lost" when the agent
cannot reach it).
Exit status 0 when a leader is known, 3 otherwise."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from ._client_args import add_client_args, open_client

__all__ = ["main"]


def rows(statuses: dict[int, dict[str, Any]], now_ms: int) -> list[dict[str, Any]]:
    """One row per node. Lag and last contact come from the leader's view (the leader
    tracks each follower's match index and when it last heard from it)."""
    leader_status = None
    online = [s for s in statuses.values() if s.get("online")]
    if online:
        top = max(online, key=lambda s: (s.get("term", 0), s.get("t", 0)))
        leader_status = statuses.get(top.get("leader", 0))
    peers = (leader_status or {}).get("peers", {})
    out = []
    for node, s in sorted(statuses.items()):
        peer = peers.get(str(node), {})
        is_leader = leader_status is not None and leader_status.get("node") == node
        out.append({
            "node": node, "name": s.get("name", ""), "online": bool(s.get("online")),
            "role": s.get("role", "offline") if s.get("online") else "offline",
            "term": s.get("term"), "leader": s.get("leader"), "commit": s.get("commit"),
            "applied": s.get("applied"), "map_version": s.get("map_version"),
            "lag": 0 if is_leader else peer.get("lag"),
            "last_contact_ms": 0 if is_leader else peer.get("last_contact_ms"),
            "status_age_ms": now_ms - s["t"] if isinstance(s.get("t"), int) else None,
            "link_score": _score(s.get("link_score")),
            "radio_source": _radio_source(s.get("link")),
            "fc": _fc(s.get("fc")),
        })
    return out


def _score(value: Any) -> float | None:
    """A status's ``link_score`` (docs/protocol.md), kept only when a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        return None
    return float(value)


def _radio_source(link: Any) -> str | None:
    """A status's ``link.radio_source`` (docs/agent.md), kept only when a known one."""
    source = link.get("radio_source") if isinstance(link, dict) else None
    return source if source in ("radio_status", "none", "absent", "detecting") else None


def _link_cell(score: float | None, source: str | None) -> str:
    cell = "-" if score is None else f"{score:.2f}"
    return cell + {"absent": " no radio", "none": " no radio", "detecting": " radio?"}.get(source or "", "")


def _fc(fc: Any) -> dict[str, Any] | None:
    """The ``fc`` member of a status (docs/protocol.md), kept only when well-formed."""
    if not isinstance(fc, dict):
        return None
    held = fc.get("map_version_held")
    mode = fc.get("mode")
    return {"connected": fc.get("connected") is True,
            "map_version_held": held if isinstance(held, int) and not isinstance(held, bool) else None,
            "mode": mode if isinstance(mode, str) else None, "armed": fc.get("armed") is True}


def _fc_cell(fc: dict[str, Any] | None) -> str:
    if fc is None:
        return "-"
    held = _cell(fc["map_version_held"])
    if not fc["connected"]:
        return f"{held} (lost)"
    return f"{held} ({fc['mode'] or '?'}{', armed' if fc['armed'] else ''})"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="swarm status", allow_abbrev=False,
        description="Show every node of the swarm: role, term, leader, commit and applied "
                    "index, last contact and replication lag (as the leader sees them).")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--wait", type=float, default=2.0, metavar="SECONDS",
                        help="how long to collect statuses (default 2)")
    add_client_args(parser)
    args = parser.parse_args(argv)
    if not 0 < args.wait <= 60:
        parser.error("--wait must be in (0, 60] seconds")
    client = open_client(args)
    if client is None:
        return 3
    try:
        statuses = client.statuses(wait_s=args.wait)
    finally:
        client.close()
    table = rows(statuses, int(time.time() * 1000))
    has_leader = any(r["role"] == "leader" for r in table)
    if args.json:
        print(json.dumps({"nodes": table, "raw": {str(n): s for n, s in statuses.items()}},
                         indent=2, sort_keys=True))
        return 0 if has_leader else 3
    from rich.console import Console
    from rich.table import Table

    t = Table("node", "name", "role", "term", "leader", "commit", "applied", "map",
              "last contact", "lag", "link", "fc holds", box=None)
    for r in table:
        role = r["role"]
        colour = {"leader": "bold green", "offline": "red"}.get(role, "")
        t.add_row(str(r["node"]), r["name"], f"[{colour}]{role}[/{colour}]" if colour else role,
                  _cell(r["term"]), _cell(r["leader"]), _cell(r["commit"]), _cell(r["applied"]),
                  _cell(r["map_version"]),
                  "-" if r["last_contact_ms"] is None else f"{r['last_contact_ms']} ms",
                  _cell(r["lag"]),
                  _link_cell(r["link_score"], r["radio_source"]), _fc_cell(r["fc"]))
    console = Console(highlight=False)
    if not table:
        console.print("no node has published a status")
    else:
        console.print(t)
    if not has_leader:
        console.print("[yellow]no leader[/yellow]")
    return 0 if has_leader else 3
