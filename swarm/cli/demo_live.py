"""``swarm demo``: the wildfire demo on real processes (see swarm/demo_live.py).

Starts launch/demo.yaml (broker, 5 simulated copters, 5 agents, ground station), plays
the wildfire scenario through the client protocol, SIGKILLs the leader mid-run, shows a
live status table, and ends with measured figures. Exit status 0 only if the run
completed and every node holds the same map snapshot; 1 otherwise."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from swarm.cli.demo import out_dir_arg, seed_arg

__all__ = ["main"]

_MAX_DURATION_S = 3600.0


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= _MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"duration {value:g} s must be in [0, {_MAX_DURATION_S:g}]")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} must be in [1, 65535]")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm demo", allow_abbrev=False,
        description="The wildfire demo on real processes: an MQTT broker, 5 simulated copters, "
                    "5 Raft agents and the ground station (launch/demo.yaml); the scenario is "
                    "played through the client protocol and the leader is SIGKILLed mid-run. "
                    "Exits 1 if the nodes disagree at the end. (The virtual-time teaching run "
                    "is 'swarm demo-virtual'.)")
    parser.add_argument("--duration", type=_duration, default=60.0,
                        help="seconds over which the scenario is played (default 60; 0: as fast "
                             "as the swarm commits). The fly-away and the flight home after the "
                             "recall take their own time on top (about a minute)")
    parser.add_argument("--headless", action="store_true",
                        help="no live table: plain progress lines, for scripts and CI")
    parser.add_argument("--seed", type=seed_arg, default=1, help="seed of the scenario (default 1)")
    parser.add_argument("--gcs-port", type=_port, default=None,
                        help="ground-station port (default 8080 when free, else a free port)")
    parser.add_argument("--out", type=out_dir_arg, default=Path("out"),
                        help="folder for demo-launch.log (every node's output) and demo-summary.json "
                             "(the measured figures) (default ./out/)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from swarm.demo_live import LiveDemoConfig, LiveDemoError, run_live_demo

    console = Console(highlight=False)
    config = LiveDemoConfig(seed=args.seed, duration_s=args.duration, gcs_port=args.gcs_port,
                            out_dir=args.out)
    lines: list[str] = []
    lock = threading.Lock()
    holder: dict[str, object] = {}
    live: Live | None = None

    def log(line: str) -> None:
        if live is None:
            console.print(line, soft_wrap=True)
        else:
            with lock:
                lines.append(line)
                del lines[:-12]
            live.update(_render(holder, lines), refresh=False)

    def on_change() -> None:
        if live is not None:
            live.update(_render(holder, lines), refresh=False)

    def on_ready(result: object, monitor: object) -> None:
        holder["result"], holder["monitor"] = result, monitor
        line = f"ground station: [bold]{getattr(result, 'gcs_url')}[/bold]   " \
               f"(every node's output: {getattr(result, 'log_file')})"
        if live is None:
            console.print(line)
        else:
            holder["header"] = line

    console.print("[bold]swarm demo[/bold]: starting broker, 5 copters, 5 agents and the "
                  "ground station (launch/demo.yaml)")
    try:
        if args.headless:
            result = run_live_demo(config, log, on_change, on_ready)
        else:
            with Live(Text("starting ..."), console=console, refresh_per_second=4) as live:
                result = run_live_demo(config, log, on_change, on_ready)
            live = None
    except LiveDemoError as exc:
        console.print(f"[bold red]demo failed:[/bold red] {exc}")
        return 1
    _summary(console, result)
    return 0 if result.ok else 1


def _render(holder: dict[str, object], lines: list[str]) -> Group:
    from swarm.demo_live import SwarmMonitor

    monitor = holder.get("monitor")
    parts: list[object] = []
    if "header" in holder:
        parts.append(Text.from_markup(str(holder["header"])))
    if isinstance(monitor, SwarmMonitor):
        lead = monitor.leader()
        _, _, leaders = monitor.snapshot()
        parts.append(Text.from_markup(
            f"leader: [bold]{'drone-%d' % lead[0] if lead else 'none'}[/bold]   "
            f"term: {lead[1] if lead else '-'}   leaders elected: {len(leaders)}"))
        parts.append(_table(monitor))
    with_lines = list(lines)
    parts.extend(Text.from_markup(line) for line in with_lines)
    return Group(*parts)  # type: ignore[arg-type]


def _table(monitor: object) -> Table:
    from swarm.demo_live import SwarmMonitor

    assert isinstance(monitor, SwarmMonitor)
    table = Table("drone", "online", "role", "term", "applied", "map version",
                  "fc map version", "flying", "link", "map sha256", box=None)
    status, _, _ = monitor.snapshot()
    for v in monitor.views():
        role = f"[bold green]{v.role}[/bold green]" if v.role == "leader" else v.role
        seen = monitor.telemetry_of(v.node) or {}
        alt = seen.get("alt_rel_m")
        flying = (f"{seen.get('mode', '?')} {alt:.0f} m" if isinstance(alt, (int, float))
                  and seen.get("armed") is True else "on the ground" if seen else "-")
        score = status[v.node].body.get("link_score") if v.node in status else None
        table.add_row(f"drone-{v.node}", "yes" if v.online else "[red]no[/red]", role,
                      str(v.term), str(v.applied), str(v.map_version),
                      "-" if v.fc_map_version is None else str(v.fc_map_version),
                      flying, "-" if not isinstance(score, (int, float)) else f"{score:.2f}",
                      (v.map_sha256 or "-")[:12])
    return table


def _handover(h: dict | None) -> str:
    if h is None:
        return "[red]leadership did not move[/red]"
    return (f"drone-{h['node']} {h['distance_m']} m out: drone-{h['new_leader']} leads "
            f"(by {h['by']}) {h['set_off_to_handover_s']:.1f} s after it set off")


def _summary(console: Console, result) -> None:  # result: swarm.demo_live.LiveDemoResult
    console.print()
    console.rule("swarm demo: measured")
    table = Table("node", "online", "role", "term", "applied", "fc map version", "map sha256",
                  "assignment sha256", "positions", box=None)
    for v in result.nodes:
        table.add_row(f"drone-{v.node}", "yes" if v.online else "[red]no[/red]", v.role,
                      str(v.term), str(v.applied),
                      "-" if v.fc_map_version is None else str(v.fc_map_version),
                      (v.map_sha256 or "-")[:16], (v.assignment_sha256 or "-")[:16],
                      str(result.positions_checked.get(v.node, 0)))
    console.print(table)
    rows = [
        ("ground station", result.gcs_url),
        ("commands committed", str(result.commits)),
        ("commands refused (validation/apply)", str(len(result.rejected))),
        ("outcome unknown", str(len(result.unknown))),
        ("final log index", str(result.final_index)),
        ("leaders elected", str(result.elections)),
        ("failover (SIGKILL to new leader)",
         "-" if result.failover_s is None else f"{result.failover_s * 1000:.0f} ms"),
        ("killed leader back online (respawn + start)",
         "-" if result.back_online_s is None else f"{result.back_online_s:.1f} s after the kill"),
        ("killed leader caught up",
         "-" if result.catch_up_s is None else f"{result.catch_up_s:.1f} s after the kill"),
        ("missions converged (last scenario command to every FC holding the final map)",
         "n/a (no plan/<node> carries fc_map_version)" if result.missions_converged_s is None
         else f"{result.missions_converged_s:.1f} s"),
        ("take-off (launch to every drone airborne in AUTO)",
         "[red]no[/red]" if result.launch is None else f"{result.launch['airborne_auto_s']:.1f} s"),
        ("drones seen flying AUTO (highest altitude)",
         f"{sum(1 for f in result.flight.values() if f['auto'] > 0)} of {len(result.nodes)} ("
         + ", ".join(f"{f['max_alt_m']:.0f} m" for f in result.flight.values()) + ")"),
        ("drone flown out of radio range", _handover(result.radio_handover)),
        ("recall committed", "yes" if result.recalled else "[red]no[/red]"),
        ("recall to every drone landed",
         "[red]not all landed[/red]" if result.landed_s is None else
         f"{result.landed_s:.1f} s, within "
         f"{max(result.landed_from_home_m.values(), default=0):.0f} m of home"),
        ("disagreements (map snapshot)", str(result.disagreements)),
        ("disagreements (committed assignment)", str(result.assignment_disagreements)),
        ("drones that flew into a burning/burned zone",
         f"{len({e['node'] for e in result.zone_violations})} "
         f"({len(result.zone_violations)} entries; "
         f"{sum(result.positions_checked.values())} positions checked)"),
        ("drones inside a zone when it was declared", str(len(result.zone_caught))),
        ("wall time", f"{result.elapsed_s:.1f} s"),
    ]
    figures = Table(box=None, show_header=False)
    for k, v in rows:
        figures.add_row(k, v)
    console.print(figures)
    for t, term, node in result.leaders:
        console.print(f"  {t:6.1f} s  drone-{node} leader (term {term})")
    for what in result.rejected:
        console.print(f"  [yellow]refused[/yellow] {what}")
    for what in result.unknown:
        console.print(f"  [red]unknown outcome[/red] {what}")
    for e in result.zone_violations:
        console.print(f"  [bold red]drone-{e['node']} flew into {e['zone']}[/bold red] at "
                      f"{e['at_s']:.1f} s ({e['lat']:.7f}, {e['lon']:.7f})")
    for e in result.zone_caught:
        console.print(f"  drone-{e['node']} was inside {e['zone']} when it came in force "
                      f"({e['at_s']:.1f} s)")
    if result.unchecked_tracks:
        console.print("[bold red]no telemetry position from[/bold red] "
                      + ", ".join(f"drone-{n}" for n in result.unchecked_tracks)
                      + ": their tracks could not be checked")
    if result.missing_features:
        console.print(f"[bold red]missing from the agreed map:[/bold red] "
                      f"{', '.join(result.missing_features)}")
    if result.error:
        console.print(f"[bold red]demo failed:[/bold red] {result.error}")
    if result.ok:
        console.print("[bold green]All nodes agree (identical map snapshots and committed "
                      "assignments); no drone flew into a burning or burned zone.[/bold green]")
    else:
        console.print("[bold red]DEMO FAILED[/bold red] (see above; every node's output: "
                      f"{result.log_file})")
