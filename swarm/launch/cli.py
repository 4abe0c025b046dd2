"""``swarm launch FILE [name:=value ...]``: run a launch file (docs/launch.md)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from .description import LaunchDescription, LaunchError, load_launch, parse_overrides
from .runner import Launcher

__all__ = ["add_arguments", "main", "run"]


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be positive and finite")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="launch file (YAML)")
    parser.add_argument("overrides", nargs="*", metavar="name:=value",
                        help="launch arguments, overriding the file's defaults")
    parser.add_argument("--check", action="store_true",
                        help="load and validate the file (and its includes), print what "
                             "would run, start nothing")
    parser.add_argument("--duration", type=_duration, metavar="SECONDS",
                        help="shut down cleanly after this many seconds")
    colour = parser.add_mutually_exclusive_group()
    colour.add_argument("--colour", "--color", dest="colour", action="store_true",
                        default=None, help="colour the node prefixes even when not on a terminal")
    colour.add_argument("--no-colour", "--no-color", dest="colour", action="store_false",
                        help="never colour the output")


def run(args: argparse.Namespace) -> int:
    try:
        description = load_launch(args.file, parse_overrides(args.overrides))
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        _print_plan(description)
        return 0
    return Launcher(description, colour=args.colour, duration_s=args.duration).run()


def _print_plan(description: LaunchDescription) -> None:
    print(f"{description.file}: ok, {len(description.nodes)} node(s)"
          + (f": {description.description}" if description.description else ""))
    for included in description.files[1:]:
        print(f"  includes {included}")
    if description.args:
        print("arguments:")
        for name, value in description.args.items():
            print(f"  {name} = {value}")
    print("nodes, in start order:")
    for node in description.nodes:
        print(f"  {node.name}")
        print(f"    command: {shlex.join(node.argv('<generated config>'))}")
        if node.parameters and node.parameter_style.value != "args":
            print(f"    config ({node.parameter_style.value}): "
                  + ", ".join(sorted(node.parameters)))
        if node.after:
            print(f"    after: {', '.join(node.after)}")
        if node.ready is not None:
            print(f"    ready: {node.ready.describe()} within {node.ready.timeout_s:g} s")
        if node.respawn.policy.value != "never":
            limit = "no limit" if node.respawn.limit is None else f"at most {node.respawn.limit}"
            print(f"    respawn: {node.respawn.policy.value}, {limit}, backoff "
                  f"{node.respawn.backoff_s:g}-{node.respawn.max_backoff_s:g} s")
        if node.shutdown_on_exit:
            print("    on exit: shut the launch down")


def main(argv: Sequence[str] | None = None, prog: str = "swarm launch") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False,
        description="Run the nodes of a launch file in dependency order, supervise them, "
                    "and stop them all cleanly on Ctrl-C or SIGTERM.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
