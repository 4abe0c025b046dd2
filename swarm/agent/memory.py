"""Giving the heap a burst freed back to the operating system (issue 9: an agent within
60 MB RSS on a Raspberry Pi, the leader after a load burst included; docs/agent.md,
"Memory after a burst").

A burst of client requests (10 000 outstanding) makes the node hold, for a while, every
request's payload, its parsed command, its entry and its reply. Once they are answered
that memory is free, but glibc's malloc keeps free memory inside its heap for the next
allocation: it returns the top of the main heap only when the topmost chunk is free,
and never the free pages between live chunks (a payload freed under a session that
outlived it). Measured on 3-agent clusters after 10 000 outstanding map commands: 2 MB
per agent was free in glibc's heap and came back with one ``malloc_trim(0)``, the
call that hands every whole free page inside the heap back (``MADV_DONTNEED``).

So once the node has applied a burst of entries and then been quiet for a moment (no
entry applied for :data:`QUIET_S`), it trims once. Not while entries flow: the memory
would be asked for again at once, and each trim walks the heap (about a millisecond).

Glibc only (``malloc_trim`` is a GNU extension; musl and macOS have none and return
what they free differently): elsewhere :func:`glibc_malloc_trim` is None and nothing
is trimmed. What stays after a trim is CPython's own object allocator (pymalloc)
holding 1 MiB arenas in which any object still lives, and live state; neither is an
allocator setting (docs/agent.md).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Callable

__all__ = ["BurstTrim", "glibc_malloc_trim"]

log = logging.getLogger("swarm.agent")

#: A trim follows only a burst: at least this many entries applied since the last one
#: (a map edit now and then leaves nothing worth a heap walk behind).
TRIM_AFTER_ENTRIES = 256
#: ... and only once no entry was applied for this long (the burst is over).
QUIET_S = 1.0


def glibc_malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)`` as a function, or None where the C library is not
    glibc (os.confstr names glibc only there) or has no such symbol."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc_version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None
    if not libc_version or not libc_version.startswith("glibc"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


class BurstTrim:
    """Calls ``trim`` once after each burst of applied entries (see the module
    docstring). The node thread calls :meth:`note` every turn with the applied index;
    ``trim`` None (not glibc) makes it do nothing."""

    def __init__(self, trim: Callable[[], int] | None, *,
                 after_entries: int = TRIM_AFTER_ENTRIES, quiet_s: float = QUIET_S) -> None:
        self._trim = trim
        self.after_entries = after_entries
        self.quiet_s = quiet_s
        self._trimmed_at: int | None = None   # applied index at the last trim (or start)
        self._applied = 0
        self._changed = 0.0                   # when the applied index last moved
        self.trims = 0

    def note(self, now: float, applied: int) -> bool:
        """The node's applied index at monotonic time ``now``; True if it trimmed."""
        if self._trim is None:
            return False
        if self._trimmed_at is None:          # the first call: what it starts from
            self._trimmed_at = self._applied = applied
            self._changed = now
            return False
        if applied != self._applied:
            self._applied, self._changed = applied, now
            return False
        if applied - self._trimmed_at < self.after_entries or now - self._changed < self.quiet_s:
            return False
        self._trimmed_at = applied
        released = self._trim()
        self.trims += 1
        log.debug("burst over at applied index %d: malloc_trim %s", applied,
                  "released memory" if released else "found nothing to release")
        return True
