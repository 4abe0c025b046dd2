"""Freed heap back to the OS after a burst (swarm/agent/memory.py): one trim once a burst
of applied entries or of large payloads is followed by quiet, and glibc's malloc_trim
really returning free pages from inside the heap, those a flood of large payloads
leaves there included."""

import os
import subprocess
import sys
import textwrap

import pytest

from swarm.agent.memory import BurstTrim, glibc_malloc_trim


class _Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return 1


def test_one_trim_after_a_burst_once_quiet_and_none_while_entries_flow():
    trim = _Counter()
    t = BurstTrim(trim, after_entries=100, quiet_s=1.0)
    assert not t.note(0.0, 7)                       # the start: nothing applied since
    for k in range(1, 50):                          # a burst: the index moves every turn
        assert not t.note(k * 0.1, 7 + 10 * k)
    assert trim.calls == 0
    assert not t.note(4.9 + 0.9, 497)               # quiet, but not for a second yet
    assert t.note(4.9 + 1.0, 497) and trim.calls == 1
    for k in range(20):                             # idle afterwards: no second trim
        assert not t.note(6.0 + k, 497)
    assert trim.calls == 1 and t.trims == 1


def test_no_trim_after_a_few_entries_or_without_glibc():
    trim = _Counter()
    t = BurstTrim(trim, after_entries=100, quiet_s=1.0)
    t.note(0.0, 0)
    t.note(1.0, 99)                                 # 99 entries: below the burst size
    assert not t.note(5.0, 99) and trim.calls == 0
    t.note(6.0, 100)                                # the 100th, then quiet: a burst
    assert t.note(7.0, 100) and trim.calls == 1
    none = BurstTrim(None, after_entries=1, quiet_s=0.0)
    assert not any(none.note(float(k), k * 1000) for k in range(5))
    assert none.trims == 0


def test_one_trim_after_a_flood_of_large_payloads_once_quiet():
    trim = _Counter()
    t = BurstTrim(trim, after_entries=100, after_bytes=1000, quiet_s=1.0)
    t.note(0.0, 5, 0)
    for k in range(1, 20):                          # a flood: no entry applied
        assert not t.note(k * 0.1, 5, 300 * k)
    assert not t.note(2.5, 5, 5700)                 # quiet, but not for a second yet
    assert t.note(3.0, 5, 5700) and trim.calls == 1
    assert not t.note(9.0, 5, 5700)                 # one trim per burst
    t.note(10.0, 5, 6600)                           # 900 more bytes: below a burst
    assert not t.note(12.0, 5, 6600) and trim.calls == 1
    t.note(13.0, 5, 6700)                           # 1000 since the trim
    assert t.note(14.0, 5, 6700) and trim.calls == 2


def test_the_inbox_counts_the_bytes_of_large_payloads_queued_or_dropped():
    from swarm.agent.inbox import Inbox
    from swarm.agent.memory import LARGE_PAYLOAD_BYTES
    from swarm.bus.client import Received

    big = LARGE_PAYLOAD_BYTES
    inbox = Inbox(max_raft=100, max_raft_bytes=big + 100, max_requests=10,
                  max_request_bytes=big)
    for payload in (b"x" * 100, b"x" * big, b"x" * big):   # small; queued; dropped (bytes)
        inbox.put_raft(Received("t", payload, 0, False))
    inbox.put_request(Received("t", b"x" * big, 1, False))
    assert inbox.large_bytes() == 3 * big
    assert inbox.dropped == {"raft_queue_full": 1}


def _is_glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and os.confstr(
            "CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError):
        return False


def test_glibc_malloc_trim_is_found_exactly_on_glibc():
    assert (glibc_malloc_trim() is not None) == _is_glibc()


@pytest.mark.skipif(not _is_glibc(), reason="malloc_trim is glibc's (the Pi's OS is glibc)")
def test_malloc_trim_returns_free_pages_between_live_blocks():
    # A fresh interpreter: 40 MB of 4 KiB buffers (glibc's heap, not pymalloc's), all
    # but every 64th freed, so live blocks pin the heap and nothing returns by itself.
    script = textwrap.dedent("""
        import sys
        from swarm.agent.memory import glibc_malloc_trim
        def anon_kb():
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
        blocks = [bytearray(4000) for _ in range(10000)]
        kept = blocks[::64]
        del blocks
        before = anon_kb()
        glibc_malloc_trim()()
        print(before, anon_kb(), len(kept))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    before, after = int(out[0]), int(out[1])
    assert before - after > 20_000, (before, after)


@pytest.mark.skipif(not _is_glibc(), reason="malloc_trim is glibc's (the Pi's OS is glibc)")
def test_malloc_trim_returns_what_a_flood_of_large_payloads_leaves_in_the_heap():
    # A fresh interpreter. Once a mapped chunk is freed glibc's mmap threshold rises past
    # it, so the flood's 2 MiB payloads come from the heap, and the small blocks
    # allocated between them (as the node thread's are) keep it from shrinking when they
    # are all freed: 40 MB stay, until a trim.
    script = textwrap.dedent("""
        from swarm.agent.memory import glibc_malloc_trim
        def anon_kb():
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
        first = bytearray(3 << 20)
        del first
        before = anon_kb()
        payloads, kept = [], []
        for _ in range(20):
            payloads.append(bytearray(2 << 20))
            kept.append(bytearray(4000))
        del payloads
        freed = anon_kb()
        glibc_malloc_trim()()
        print(before, freed, anon_kb(), len(kept))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    before, freed, trimmed = int(out[0]), int(out[1]), int(out[2])
    assert freed - before > 30_000, (before, freed)
    assert trimmed - before < 4_000, (before, freed, trimmed)
