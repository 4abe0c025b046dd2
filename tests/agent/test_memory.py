"""Freed heap back to the OS after a burst (swarm/agent/memory.py): one trim once a burst
of applied entries is followed by quiet, and glibc's malloc_trim really returning free
pages from inside the heap."""

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
