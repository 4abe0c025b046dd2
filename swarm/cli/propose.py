"""``swarm propose FILE|-``: propose one map command (JSON, docs/map.md) to the swarm
and print the reply (JSON). Exit status: 0 committed, 2 invalid (the map or the request
was refused; nothing changed), 3 not committed (no leader, busy, timeout: the outcome
may be unknown, see the message), 1 the file cannot be read."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ._client_args import add_client_args, open_client
from ._input import read_bounded

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="swarm propose", allow_abbrev=False,
        description="Propose one map command to the swarm (any node; followers forward to "
                    "the leader) and print the reply. Retries keep the session and sequence "
                    "number, so the command is applied at most once.")
    parser.add_argument("file", help="JSON file with one map command, or - for standard input")
    add_client_args(parser)
    args = parser.parse_args(argv)
    from swarm.evacmap import MAX_COMMAND_BYTES

    try:
        data = read_bounded(args.file, MAX_COMMAND_BYTES)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    if len(data) > MAX_COMMAND_BYTES:
        print(f"invalid: the command is over {MAX_COMMAND_BYTES} bytes", file=sys.stderr)
        return 2
    client = open_client(args)
    if client is None:
        return 3
    try:
        reply = client.propose(data)
    except Exception as exc:  # ClientError (registration failed) and the like
        print(f"not committed: {exc}", file=sys.stderr)
        return 3
    finally:
        client.close()
    print(json.dumps(dict(reply.body), indent=2, sort_keys=True))
    if reply.committed:
        return 0
    if reply.code in ("invalid", "bad_request"):
        return 2
    return 3
