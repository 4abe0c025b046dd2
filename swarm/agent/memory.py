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

A flood of large payloads is the other burst (docs/agent.md, "Memory after a flood"):
garbage on a Raft topic, up to 2 MiB each, queued before anything is authenticated,
applies no entry. glibc maps an allocation of 128 KiB or more on its own and unmaps it
when freed, but its threshold is dynamic: once such a chunk is freed the threshold
rises to its size (up to 32 MiB on 64-bit), so every later payload comes from the heap,
where the small blocks allocated between them pin the freed megabytes: measured, up to
11 MB of RSS that stayed after 150 x 2 MiB (docs/benchmarks.md, "RSS after load"). So
the large payloads handed to the node (:data:`LARGE_PAYLOAD_BYTES` or more, counted by
the inbox) count as a burst too: :data:`TRIM_AFTER_BYTES` of them, then quiet (none
for :data:`QUIET_S`, no entry applied either), and it trims once. Fixing the threshold
instead (``mallopt(M_MMAP_THRESHOLD)``) was tried and not kept: every large payload
then pays its page faults afresh, and sealing and opening a legitimate 256 KiB
AppendEntries took 70-80 % longer.

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
#: A payload this large or larger is one glibc would have mapped on its own before its
#: threshold rose (its initial M_MMAP_THRESHOLD): what a flood leaves in the heap.
LARGE_PAYLOAD_BYTES = 128 * 1024
#: ... and this many bytes of them since the last trim are a burst (two of the largest
#: envelopes): less is not worth a heap walk.
TRIM_AFTER_BYTES = 4 * 1024 * 1024


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
    """Calls ``trim`` once after each burst of applied entries or of large payloads
    received (see the module docstring). The node thread calls :meth:`note` every turn
    with the applied index and the inbox's running count of large payload bytes;
    ``trim`` None (not glibc) makes it do nothing."""

    def __init__(self, trim: Callable[[], int] | None, *,
                 after_entries: int = TRIM_AFTER_ENTRIES,
                 after_bytes: int = TRIM_AFTER_BYTES, quiet_s: float = QUIET_S) -> None:
        self._trim = trim
        self.after_entries = after_entries
        self.after_bytes = after_bytes
        self.quiet_s = quiet_s
        #: Applied index and large bytes received at the last trim (or the start).
        self._trimmed_at: tuple[int, int] | None = None
        self._applied = 0
        self._received = 0
        self._changed = 0.0                   # when either last moved
        self.trims = 0

    def note(self, now: float, applied: int, received: int = 0) -> bool:
        """The node's applied index and large payload bytes received so far
        (Inbox.large_bytes) at monotonic time ``now``; True if it trimmed."""
        if self._trim is None:
            return False
        if self._trimmed_at is None:          # the first call: what it starts from
            self._trimmed_at = (applied, received)
            self._applied, self._received = applied, received
            self._changed = now
            return False
        if applied != self._applied or received != self._received:
            self._applied, self._received, self._changed = applied, received, now
            return False
        entries, payload_bytes = applied - self._trimmed_at[0], received - self._trimmed_at[1]
        if (entries < self.after_entries and payload_bytes < self.after_bytes) \
                or now - self._changed < self.quiet_s:
            return False
        self._trimmed_at = (applied, received)
        released = self._trim()
        self.trims += 1
        log.debug("burst over at applied index %d, %d large payload bytes after the last "
                  "trim: malloc_trim %s", applied, payload_bytes,
                  "released memory" if released else "found nothing to release")
        return True
