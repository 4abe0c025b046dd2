"""``$(...)`` substitutions in launch files, in the spirit of ROS 2 launch.

    $(arg NAME)          the launch argument NAME (declared under ``args:``)
    $(env NAME)          the environment variable NAME (an error when unset)
    $(env NAME DEFAULT)  ... or DEFAULT when unset (DEFAULT may contain spaces)
    $(dirname)           the folder of the launch file being read
    $(find-free-port)    a TCP port free on 127.0.0.1 now, different for every use

A substitution is resolved once, when the file is loaded: an argument whose default is
``$(find-free-port)`` is one port, shared by every ``$(arg ...)`` that names it.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["SubstitutionContext", "SubstitutionError", "substitute"]

_PATTERN = re.compile(r"\$\(([^()]*)\)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


class SubstitutionError(ValueError):
    """A ``$(...)`` that cannot be resolved; the message names it."""


@dataclass
class SubstitutionContext:
    """What substitutions resolve against while one file is loaded."""

    args: Mapping[str, str]
    dirname: str
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    free_port: Callable[[], int] = field(default_factory=lambda: _FreePorts().take)


def substitute(text: str, context: SubstitutionContext) -> str:
    """Resolve every ``$(...)`` in ``text``."""
    return _PATTERN.sub(lambda match: _resolve(match.group(1), context), text)


def _resolve(body: str, context: SubstitutionContext) -> str:
    words = body.split()
    if not words:
        raise SubstitutionError("empty substitution $()")
    kind, rest = words[0], words[1:]
    if kind == "arg":
        if len(rest) != 1 or not _NAME.match(rest[0]):
            raise SubstitutionError(f"$({body}): expected $(arg NAME)")
        if rest[0] not in context.args:
            known = ", ".join(sorted(context.args)) or "none"
            raise SubstitutionError(
                f"$(arg {rest[0]}): no argument {rest[0]!r} is declared (declared: {known})")
        return context.args[rest[0]]
    if kind == "env":
        if not rest or not _NAME.match(rest[0]):
            raise SubstitutionError(f"$({body}): expected $(env NAME) or $(env NAME DEFAULT)")
        value = context.environ.get(rest[0])
        if value is not None:
            return value
        if len(rest) > 1:
            return body.split(None, 2)[2]
        raise SubstitutionError(
            f"$(env {rest[0]}): environment variable {rest[0]} is not set "
            f"(give a default: $(env {rest[0]} DEFAULT))")
    if kind == "dirname":
        if rest:
            raise SubstitutionError(f"$({body}): $(dirname) takes no argument")
        return context.dirname
    if kind == "find-free-port":
        if rest:
            raise SubstitutionError(f"$({body}): $(find-free-port) takes no argument")
        return str(context.free_port())
    raise SubstitutionError(
        f"unknown substitution $({body}) (known: arg, env, dirname, find-free-port)")


class _FreePorts:
    """Hands out ports free on loopback now, never the same one twice in one launch.

    The port is released before the node binds it, so another program could take it in
    between; on a developer machine or in a test that race is rare, and the node then
    fails to bind loudly. Production files name their ports.
    """

    def __init__(self) -> None:
        self._given: set[int] = set()

    def take(self) -> int:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in self._given:
                self._given.add(port)
                return port
        raise SubstitutionError("$(find-free-port): no free port found")
