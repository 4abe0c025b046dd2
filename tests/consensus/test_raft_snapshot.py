"""Log compaction and InstallSnapshot (Raft §7; thesis §5, chunked transfer)."""

from __future__ import annotations

from consensus import MessageType
from consensus.progress import ProgressState

from _harness import Cluster


def _behind_follower(chunk: int, n_entries: int = 40, seed: int = 40):
    c = Cluster(3, seed=seed, snapshot_chunk_bytes=chunk)
    lead = c.elect()
    f = next(i for i in (1, 2, 3) if i != lead)
    c.crash(f)
    for k in range(n_entries):
        c.propose(lead, b"entry-%03d" % k)
    c.stabilize()
    c.tick(2)
    # The leader and the other follower compact their logs past the crashed follower.
    for i in (1, 2, 3):
        if i != f:
            c.compact(i)
    assert c.views[lead].storage.first_index() > 2
    return c, lead, f


def test_snapshot_7_compaction_keeps_state_and_new_entries_replicate():
    c, lead, f = _behind_follower(chunk=1 << 20)
    other = next(i for i in (1, 2, 3) if i not in (lead, f))
    c.propose(lead, b"after-compaction")
    c.stabilize()
    assert c.applied(other)[-1] == b"after-compaction"
    c.crash(other)
    c.restart(other)  # restarts from snapshot + remaining log
    c.tick(3)
    assert c.applied(other) == c.applied(lead)


def test_snapshot_7_install_on_a_follower_behind_the_first_index_in_chunks():
    c, lead, f = _behind_follower(chunk=64)
    snap_size = len(c.views[lead].storage.snapshot().data)
    chunks = []
    c.filter = lambda m: (chunks.append(m) or m) if m.type is MessageType.SNAPSHOT else m
    c.restart(f)
    c.tick(10)
    assert c.applied(f) == c.applied(lead)
    assert len(chunks) >= snap_size // 64  # streamed in bounded pieces
    assert all(len(m.snapshot.data) <= 64 for m in chunks)
    assert chunks[-1].snapshot_done
    assert c.views[f].storage.snapshot().meta.index == c.views[lead].storage.snapshot().meta.index
    # After the install the follower is replicated normally.
    assert c.node(lead).status().progress[f].state is ProgressState.REPLICATE
    c.propose(lead, b"next")
    c.stabilize()
    assert c.applied(f)[-1] == b"next"


def test_snapshot_crash_during_install_is_safe_and_the_transfer_restarts():
    c, lead, f = _behind_follower(chunk=32)
    before = (c.views[f].storage.snapshot(), c.views[f].storage.last_index(),
              c.views[f].storage.hard_state())
    seen = []

    def cut_after_three_chunks(m):
        # The follower's link dies after the third chunk (it crashes just after).
        if m.type is MessageType.SNAPSHOT and m.to == f:
            seen.append(m)
            if len(seen) > 3:
                return None
        return m

    c.filter = cut_after_three_chunks
    c.restart(f)
    c.tick(5)
    assert len(seen) > 3 and not seen[2].snapshot_done
    # Crash mid-transfer: nothing of the partial snapshot reached the disk.
    c.crash(f)
    after = (c.views[f].storage.snapshot(), c.views[f].storage.last_index(),
             c.views[f].storage.hard_state())
    assert after[0] == before[0] and after[1] == before[1]
    c.filter = None
    c.restart(f)
    c.tick(30)
    assert c.applied(f) == c.applied(lead)


def test_snapshot_lost_chunks_are_retransmitted():
    c, lead, f = _behind_follower(chunk=32)
    dropped = []

    def drop_some(m):
        if m.type is MessageType.SNAPSHOT and m.snapshot_offset in (64, 160) and \
                m.snapshot_offset not in dropped:
            dropped.append(m.snapshot_offset)
            return None
        return m

    c.filter = drop_some
    c.restart(f)
    c.tick(60)
    assert dropped == [64, 160]
    assert c.applied(f) == c.applied(lead)


def test_snapshot_duplicated_and_reordered_chunks_do_not_corrupt_the_install():
    c, lead, f = _behind_follower(chunk=32, seed=41)
    c.dup_rate = 0.3
    c.reorder = True
    c.restart(f)
    c.tick(80)
    c.dup_rate = 0.0
    c.reorder = False
    c.tick(10)
    assert c.applied(f) == c.applied(lead)
    c.check_state_machine_safety()


def test_snapshot_slow_link_is_not_flooded_with_retransmissions():
    c, lead, f = _behind_follower(chunk=32)
    held = []
    sent = []

    def slow(m):
        if m.type is MessageType.SNAPSHOT and m.to == f:
            sent.append(m.snapshot_offset)
            held.append(m)  # each chunk takes a few heartbeat intervals to arrive
            return None
        return m

    c.filter = slow
    c.restart(f)
    for _ in range(400):
        c.tick(3)
        chunks, held[:] = list(held), []
        for m in chunks:
            c.queue.append(m)
        c.stabilize()
        if c.applied(f) == c.applied(lead):
            break
    assert c.applied(f) == c.applied(lead)
    # Every chunk was sent once: three ticks of delay is well under the retransmit wait.
    assert len(sent) == len(set(sent)), sorted(sent)
