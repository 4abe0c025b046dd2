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

Large payloads are the other way freed memory stays (docs/agent.md, "Memory after a
flood"). glibc serves an allocation of ``M_MMAP_THRESHOLD`` bytes or more (128 KiB at
start) with its own mmap, unmapped when freed; but by default the threshold is dynamic:
each time such a chunk is freed it rises to that chunk's size (up to 32 MiB on 64-bit),
and the trim threshold with it to twice that. After the first 2 MiB payload freed,
every later one comes from the heap instead, and a flood of them (garbage on a Raft
topic: the bus accepts up to 2 MiB before anything is authenticated) leaves the heap
grown by megabytes that the small allocations made meanwhile pin in place: measured, 8
MB of RSS that stayed. :func:`fix_mmap_threshold` sets the threshold once at start, to
glibc's own initial value; a set threshold is never moved again, so every payload of
128 KiB or more is mapped and unmapped on its own and leaves nothing behind (the price:
an mmap and munmap per such allocation, a few microseconds against the milliseconds a
payload that large costs to handle).

Glibc only (``malloc_trim`` and ``mallopt``'s parameters are GNU; musl and macOS
return what they free differently): elsewhere :func:`glibc_malloc_trim` is None and
nothing is trimmed, and :func:`fix_mmap_threshold` does nothing. What stays after a
trim is CPython's own object allocator (pymalloc) holding 1 MiB arenas in which any
object still lives, and live state; neither is an allocator setting (docs/agent.md).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Callable

__all__ = ["BurstTrim", "MMAP_THRESHOLD", "fix_mmap_threshold", "glibc_malloc_trim"]

log = logging.getLogger("swarm.agent")

#: A trim follows only a burst: at least this many entries applied since the last one
#: (a map edit now and then leaves nothing worth a heap walk behind).
TRIM_AFTER_ENTRIES = 256
#: ... and only once no entry was applied for this long (the burst is over).
QUIET_S = 1.0
#: The mmap threshold the agent fixes at start (module docstring): glibc's initial
#: DEFAULT_MMAP_THRESHOLD_MIN. Below every payload worth a mapping of its own (Raft
#: envelopes up to 2 MiB, AppendEntries up to ``[raft] max_msg_bytes`` 256 KiB, client
#: requests up to 256 KiB), above the small objects a mapping per allocation would slow.
MMAP_THRESHOLD = 128 * 1024
#: mallopt's parameter number for it (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (os.confstr names glibc only there), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc_version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None
    if not libc_version or not libc_version.startswith("glibc"):
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def glibc_malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)`` as a function, or None where the C library is not
    glibc or has no such symbol."""
    libc = _glibc()
    try:
        trim = libc.malloc_trim if libc is not None else None
    except AttributeError:
        return None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes for the rest of the process
    (module docstring); True if glibc took it, False where the C library is not glibc
    or refused. Process-wide: called once, at the start of ``swarm agent``."""
    libc = _glibc()
    try:
        mallopt = libc.mallopt if libc is not None else None
    except AttributeError:
        return False
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


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
