"""``swarm propose FILE|-``: propose one map command (JSON, docs/map.md) to the swarm
and print the reply (JSON); or, when the file holds a JSON array of commands, propose
them all in batches (``SwarmClient.propose_many``, docs/protocol.md "Batches") and print
the array of their replies, in order. Exit status (also in ``--help``, and README):

- 0 committed (every command);
- 1 the file cannot be read;
- 2 invalid: nothing was proposed or nothing changed, and sending it again cannot help.
  The command (or array) was refused by the map or the node, or is not JSON, or is over
  its size limit; or the flags or the config are wrong (a missing or invalid
  ``--config``, a bad swarm id or broker address), as argparse exits 2 for bad flags.
  For an array: every command not committed was refused.
  An empty array is refused too: it has nothing to commit;
- 3 not committed: no broker answered, no node online, no leader, busy, timeout; a
  retry may work, and the outcome may be unknown (see the message). For an array: any
  command."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence

from ._client_args import add_client_args, open_client
from ._input import read_bounded

__all__ = ["main"]

#: A file of many commands (an array) may be this big; one command is bounded by the
#: map's own limit (swarm.evacmap.MAX_COMMAND_BYTES).
MAX_ARRAY_BYTES = 16 * 1024 * 1024
REFUSED = ("invalid", "bad_request")
EPILOG = """exit status:
  0  committed (every command of an array)
  1  the file cannot be read
  2  invalid, nothing changed, a retry cannot help: refused by the map or the node,
     not JSON, too big; or a usage or config error (bad flags, missing or invalid
     --config, bad swarm id or broker)
     or an empty array (nothing to commit)
  3  not committed: no broker, no node online, no leader, busy, timeout (the outcome
     may be unknown); a retry may work"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="swarm propose", allow_abbrev=False,
        description=textwrap.fill(
            "Propose one map command to the swarm (any node; followers forward to the "
            "leader) and print the reply, or a JSON array of commands in batches and "
            "print the array of replies. Retries keep the session and sequence "
            "number, so each command is applied at most once.", 78),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="JSON file with one map command or an array of them, "
                                     "or - for standard input")
    add_client_args(parser)
    args = parser.parse_args(argv)
    from swarm.evacmap import MAX_COMMAND_BYTES

    try:
        data = read_bounded(args.file, MAX_ARRAY_BYTES)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    many = data.lstrip()[:1] == b"["
    limit = MAX_ARRAY_BYTES if many else MAX_COMMAND_BYTES
    if len(data) > limit:
        print(f"invalid: the {'array of commands' if many else 'command'} is over "
              f"{limit} bytes", file=sys.stderr)
        return 2
    commands = None
    if many:
        try:
            commands = json.loads(data)
        except ValueError as exc:
            print(f"invalid: the file is not a JSON array of commands: {exc}", file=sys.stderr)
            return 2
        if commands == []:
            # Nothing to propose: exiting 0 ("committed") would tell a script that
            # generated the array that its commands are in the map.
            print("invalid: the array holds no command (give one command or a non-empty "
                  "array)", file=sys.stderr)
            return 2
    client = open_client(args)
    if isinstance(client, int):
        return client
    try:
        if commands is not None:
            replies = client.propose_many(commands)
        else:
            replies = [client.propose(data)]
    except Exception as exc:  # ClientError (registration failed) and the like
        print(f"not committed: {exc}", file=sys.stderr)
        return 3
    finally:
        client.close()
    bodies = [dict(r.body) for r in replies]
    print(json.dumps(bodies if commands is not None else bodies[0], indent=2, sort_keys=True))
    if all(r.committed for r in replies):
        return 0
    if all(r.committed or r.code in REFUSED for r in replies):
        return 2
    return 3
