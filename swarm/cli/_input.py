"""Reading one command-sized input from a file or standard input."""

from __future__ import annotations

import sys

__all__ = ["read_bounded"]


def read_bounded(path: str, limit: int) -> bytes:
    """The bytes of ``path`` (``-``: standard input), at most ``limit + 1`` of them: one
    past the limit is enough for the caller to say the input is too big, without
    reading an arbitrarily large file into memory. Raises OSError."""
    if path == "-":
        return sys.stdin.buffer.read(limit + 1)
    with open(path, "rb") as handle:
        return handle.read(limit + 1)
