"""``$(...)`` substitutions in launch files, in the spirit of ROS 2 launch.

    $(arg NAME)          the launch argument NAME (declared under ``args:``)
    $(env NAME)          the environment variable NAME (an error when unset)
    $(env NAME DEFAULT)  ... or DEFAULT when unset (DEFAULT may contain spaces)
    $(dirname)           the folder of the launch file being read
    $(python)            the Python interpreter running the launcher (its venv's)
    $(find-free-port)    a TCP port free on 127.0.0.1 now, different for every use
    $(eval EXPR)         integer arithmetic: + - * // % on integers, no parentheses
                         (``$(eval $(arg base) + 10)``: inner substitutions go first)

A substitution is resolved once, when the file is loaded: an argument whose default is
``$(find-free-port)`` is one port, shared by every ``$(arg ...)`` that names it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["SubstitutionContext", "SubstitutionError", "substitute"]

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


_MAX_NESTING = 4


def substitute(text: str, context: SubstitutionContext) -> str:
    """Resolve every ``$(...)`` in ``text``, innermost first (``$(eval $(arg a) + 1)``).

    Only what the file itself nests is resolved again: a value brought in by a
    substitution (an environment variable holding "$(...)") is never expanded.
    """
    pieces = _split(text)
    return "".join(_expand(piece, context, 0) for piece in pieces)


def _split(text: str) -> list[str | list[object]]:
    """Parse ``text`` into literal strings and substitution trees (nested lists)."""
    out: list[str | list[object]] = []
    stack: list[list[object]] = []
    i = 0
    literal = ""
    while i < len(text):
        if text.startswith("$(", i):
            if len(stack) >= _MAX_NESTING:
                raise SubstitutionError(f"substitutions nested deeper than {_MAX_NESTING}")
            if not stack and literal:
                out.append(literal)
                literal = ""
            elif stack and literal:
                stack[-1].append(literal)
                literal = ""
            stack.append([])
            i += 2
            continue
        if text[i] == ")" and stack:
            if literal:
                stack[-1].append(literal)
                literal = ""
            node = stack.pop()
            if stack:
                stack[-1].append(node)
            else:
                out.append(node)
            i += 1
            continue
        if text[i] == "(" and stack:
            raise SubstitutionError(f"'(' inside a substitution in {text!r}")
        literal += text[i]
        i += 1
    if stack:
        raise SubstitutionError(f"unclosed $( in {text!r}")
    if literal:
        out.append(literal)
    return out


def _expand(piece: str | list[object], context: SubstitutionContext, depth: int) -> str:
    if isinstance(piece, str):
        return piece
    body = "".join(_expand(part, context, depth + 1) for part in piece)  # type: ignore[arg-type]
    return _resolve(body, context)


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
    if kind == "eval":
        return str(_evaluate(body[len("eval"):].strip(), body))
    if kind == "python":
        if rest:
            raise SubstitutionError(f"$({body}): $(python) takes no argument")
        return sys.executable
    if kind == "find-free-port":
        if rest:
            raise SubstitutionError(f"$({body}): $(find-free-port) takes no argument")
        return str(context.free_port())
    raise SubstitutionError(
        f"unknown substitution $({body}) (known: arg, env, dirname, python, find-free-port, "
        "eval)")


_TOKEN = re.compile(r"\s*(?:(\d+)|(//|[-+*%]))")


def _evaluate(expression: str, body: str) -> int:
    """Integer arithmetic, left to right with * // % before + -, no parentheses."""
    tokens: list[str] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            raise SubstitutionError(f"$({body}): only integers and + - * // % are allowed")
        tokens.append(match.group(1) or match.group(2))
        position = match.end()
    if not tokens:
        raise SubstitutionError(f"$({body}): empty expression")

    def number(i: int) -> tuple[int, int]:
        sign = 1
        while i < len(tokens) and tokens[i] in "+-" and not tokens[i].isdigit():
            sign = -sign if tokens[i] == "-" else sign
            i += 1
        if i >= len(tokens) or not tokens[i].isdigit():
            raise SubstitutionError(f"$({body}): a number is missing")
        return sign * int(tokens[i]), i + 1

    def term(i: int) -> tuple[int, int]:
        value, i = number(i)
        while i < len(tokens) and tokens[i] in ("*", "//", "%"):
            operator = tokens[i]
            right, i = number(i + 1)
            if operator != "*" and right == 0:
                raise SubstitutionError(f"$({body}): division by zero")
            value = value * right if operator == "*" else (
                value // right if operator == "//" else value % right)
        return value, i

    value, i = term(0)
    while i < len(tokens):
        operator = tokens[i]
        if operator not in ("+", "-"):
            raise SubstitutionError(f"$({body}): unexpected {operator!r}")
        right, i = term(i + 1)
        value = value + right if operator == "+" else value - right
    if abs(value) > 10**18:
        raise SubstitutionError(f"$({body}): result out of range")
    return value


class _FreePorts:
    """Hands out ports free on loopback now, never the same one twice in one launch.

    The port is released before the node binds it, so another program could take it in
    between; on a developer machine or in a test that race is rare, and the node then
    fails to bind loudly. Production files name their ports.
    """

    def __init__(self) -> None:
        self._given: set[int] = set()

    def take(self) -> int:
        # The one picker (below the ephemeral range; it says why); imported here so that
        # loading a launch file does not load the MQTT client.
        from swarm.bus.broker import free_port
        for _ in range(100):
            port = free_port()
            if port not in self._given:
                self._given.add(port)
                return port
        raise SubstitutionError("$(find-free-port): no free port found")
