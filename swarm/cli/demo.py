"""``swarm demo-virtual``: the virtual-time demo. Five (3 to 10) simulated drones agree on a
wildfire map through Raft in one process, a leader crash included, and print the agreed
map, each drone's plan and every node's snapshot hash; writes map.geojson and per-drone
.plan/.waypoints files (see swarm/demo.py)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

__all__ = ["main", "out_dir_arg", "seed_arg"]


def seed_arg(text: str) -> int:
    """argparse type of a run's seed (both demos)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"seed {value} must be in [0, 2**63)")
    return value


def _nodes(text: str) -> int:
    from swarm.demo import MAX_NODES, MIN_NODES

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not MIN_NODES <= value <= MAX_NODES:
        raise argparse.ArgumentTypeError(
            f"{value} drones: the swarm flies {MIN_NODES} to {MAX_NODES}")
    return value


def out_dir_arg(text: str) -> Path:
    """argparse type of an output folder (both demos)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm demo-virtual", allow_abbrev=False,
        description="Simulated drones agree on a wildfire map through Raft, in virtual time "
                    "inside one process (a leader crash included).")
    parser.add_argument("--seed", type=seed_arg, default=1, help="seed of the whole run (default 1)")
    parser.add_argument("--nodes", type=_nodes, default=5, help="number of drones (default 5)")
    parser.add_argument("--out", type=out_dir_arg, default=Path("out"),
                        help="folder for map.geojson and the .plan files (default ./out/)")
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return _demo(_parser().parse_args(argv))


def _demo(args: argparse.Namespace) -> int:
    from swarm.demo import DemoConfig, DemoError, run_demo

    console = Console(highlight=False)
    progress = None if args.quiet else console.print
    try:
        result = run_demo(DemoConfig(seed=args.seed, nodes=args.nodes, out_dir=args.out),
                          progress)
    except DemoError as exc:
        console.print(f"[bold red]demo failed:[/bold red] {exc}")
        return 1
    _print_summary(console, result)
    return 0 if result.identical else 1


def _print_summary(console: Console, result) -> None:  # result: swarm.demo.DemoResult
    view = result.view
    ms = result.tick_ms
    console.print()
    console.rule(f"Agreed evacuation map (version {view.version})")
    zones = Table("zone", "status", "vertices", "source", box=None)
    for z in view.zones.values():
        colour = {"burning": "red", "burned": "yellow", "cleared": "green"}[z.status.value]
        zones.add_row(z.id, f"[{colour}]{z.status.value}[/{colour}]", str(len(z.ring) - 1),
                      z.source)
    routes = Table("route", "priority", "safe?", "crosses", box=None)
    for r in view.routes.values():
        routes.add_row(r.id, str(r.priority),
                       "[bold red]UNSAFE[/bold red]" if r.unsafe else "[green]safe[/green]",
                       ", ".join(r.crosses) or "-")
    survivors = Table("survivor", "people", "status", "urgent?", "reporter", box=None)
    for s in view.survivors.values():
        survivors.add_row(s.id, str(s.count), s.status.value,
                          "[bold red]URGENT[/bold red] (in " + ", ".join(s.inside) + ")"
                          if s.urgent else "-", s.reporter)
    drones = Table("drone", "task", "alive", "busy", box=None)
    for d in sorted(view.drones.values(), key=lambda d: d.id):
        drones.add_row(d.id, d.task.value, "yes" if d.alive else "[red]no[/red]",
                       "yes" if d.busy else "no")
    for table in (zones, routes, survivors, drones):
        console.print(table)
        console.print()

    console.rule("Each drone's plan")
    console.print("plans from swarm.planner.plan_all, computed on every node")
    plans = Table("drone", "status", "mission", "fence", "rally", "visits", "path", box=None)
    for name, p in sorted(result.plans.items()):
        colour = "green" if str(p.status) == "ok" else "yellow"
        plans.add_row(name, f"[{colour}]{p.status}[/{colour}]", str(len(p.plan.mission)),
                      str(len(p.plan.fence)), str(len(p.plan.rally)),
                      ", ".join(p.survivors) or "-", f"{p.path_length_m / 1000:.1f} km")
    console.print(plans)
    for name, p in sorted(result.plans.items()):
        for reason in p.reasons:
            console.print(f"  [dim]{name}: {reason}[/dim]")
    console.print()

    console.rule("Consensus")
    for tick, term, name in result.leaders:
        console.print(f"  {tick * ms / 1000:7.2f}s  {name} elected leader (term {term})")
    if result.crashed is not None:
        console.print(f"  leader {result.crashed} crashed at {result.crash_tick * ms / 1000:.2f}s;"
                      f" {result.new_leader} took over "
                      f"{result.failover_ticks * ms} ms (virtual) later")
        console.print(f"  {result.crashed} restarted and caught up by "
                      f"{result.catch_up or 'not at all'}")
    console.print(f"  {result.applies_checked} applies checked: no two drones applied "
                  "different entries at the same log index (Raft §5.4.3)")
    console.print(f"  {result.retries} client retries, {result.cached_replies} answered from the "
                  f"session cache (exactly-once); {len(result.lost_with_crash)} commands lost "
                  f"with the crashed drone")
    for message in result.rejected_before_proposing:
        console.print(f"  rejected before proposing: {message}")
    for drone, what, outcome in result.results:
        if outcome is not None and not outcome.ok:
            console.print(f"  rejected by apply, identically on every drone: {drone}'s "
                          f"{what!r}: {outcome.error}")
    console.print(f"  assignments committed by the leader: {result.assignments_committed} "
                  f"({result.assignments_superseded} superseded before they committed, "
                  "rejected by apply and proposed again)")
    hashes = Table("node", "role", "term", "applied", "map version", "map snapshot sha256",
                   "assignment sha256", "plans sha256", box=None)
    for n in result.nodes:
        hashes.add_row(n.name, n.role, str(n.term), str(n.applied), str(n.map_version),
                       n.map_sha256[:16], (n.assignment_sha256 or "none")[:16],
                       n.plans_sha256[:16])
    console.print(hashes)
    if result.identical:
        console.print("[bold green]All nodes agree: identical map snapshots, session tables, "
                      "committed assignments and plans.[/bold green]")
    else:
        console.print("[bold red]NODES DISAGREE[/bold red]")
    for path in result.files:
        console.print(f"  wrote {path}")
