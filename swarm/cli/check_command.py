"""``swarm check-command FILE|-``: validate one map command (JSON) and print its
canonical form, or the reason it would be rejected (exit 0 valid, 1 rejected, 2 the
file cannot be read)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._input import read_bounded

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm check-command", allow_abbrev=False,
        description="Validate one map command (JSON, docs/map.md) and print its canonical "
                    "form, or the reason it would be rejected.")
    parser.add_argument("file", help="JSON file, or - for standard input")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from swarm.evacmap import MAX_COMMAND_BYTES, CommandError, encode_command, parse_command

    try:
        data = read_bounded(args.file, MAX_COMMAND_BYTES)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        command = parse_command(data)
    except CommandError as exc:
        print(f"rejected: {exc}", file=sys.stderr)
        return 1
    print(encode_command(command).decode())
    return 0
