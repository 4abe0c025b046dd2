"""The node thread's inbox (swarm/agent/inbox.py): Raft and client traffic in separate
bounded queues; over a bound a payload is dropped and counted, never queued."""

import threading
import time

from swarm.agent.inbox import Inbox
from swarm.bus.client import Received


def _msg(payload: bytes = b"x") -> Received:
    return Received("t", payload, 0, False)


def test_each_queue_keeps_its_own_bounds_and_counts_what_it_drops():
    inbox = Inbox(max_raft=2, max_raft_bytes=1024, max_requests=3, max_request_bytes=10)
    for _ in range(3):
        inbox.put_raft(_msg())
    inbox.put_request(_msg(b"12345"))
    inbox.put_request(_msg(b"12345"))
    inbox.put_request(_msg(b"1"))          # would pass the count, not the bytes
    assert inbox.dropped == {"raft_queue_full": 1, "request_queue_full": 1}
    assert len(inbox.take_raft()) == 2 and inbox.take_raft() == []
    assert inbox.requests_waiting() == 2
    assert inbox.take_request() is not None
    inbox.put_request(_msg(b"1"))          # the bytes came back with the take
    assert inbox.requests_waiting() == 2


def test_a_request_with_no_room_goes_to_the_refusal_outside_the_lock():
    refused: list[bytes] = []
    inbox: Inbox

    def refuse(msg: Received) -> None:
        # Outside the lock: taking from the inbox here must not deadlock.
        assert inbox.take_request() is not None
        refused.append(msg.payload)

    inbox = Inbox(max_raft=2, max_raft_bytes=1024, max_requests=1, max_request_bytes=1024,
                  refuse_request=refuse)
    inbox.put_request(_msg(b"first"))
    inbox.put_request(_msg(b"second"))     # full: refused, not queued
    assert refused == [b"second"]
    assert inbox.dropped == {"request_queue_full": 1}
    assert inbox.requests_waiting() == 0   # the refusal took the first


def test_the_raft_queue_is_bounded_in_bytes_too_and_a_take_frees_them():
    inbox = Inbox(max_raft=100, max_raft_bytes=10, max_requests=3, max_request_bytes=10)
    inbox.put_raft(_msg(b"123456"))
    inbox.put_raft(_msg(b"12345"))         # would pass the count, not the bytes
    inbox.put_raft(_msg(b"1234"))          # exactly at the bound: kept
    assert inbox.dropped == {"raft_queue_full": 1}
    assert [m.payload for m, _ in inbox.take_raft()] == [b"123456", b"1234"]
    inbox.put_raft(_msg(b"1234567890"))    # the bytes came back with the take
    inbox.put_raft(_msg(b"1"))
    assert inbox.dropped == {"raft_queue_full": 2}
    assert len(inbox.take_raft()) == 1


def test_the_agents_raft_byte_bound_is_the_in_flight_window_plus_one_envelope():
    from swarm.agent.node import raft_queue_bytes
    from swarm.bus.envelope import DEFAULT_MAX_ENVELOPE_BYTES

    # The defaults ([raft] max_msg_bytes 256 KiB, max_inflight_msgs 64): 18.06 MiB,
    # where 4096 payloads of up to 2 MiB were 8 GiB.
    assert raft_queue_bytes(256 * 1024, 64) == 18_939_904
    # However small the window, one envelope of the largest size the bus accepts fits.
    assert raft_queue_bytes(1024, 1) > DEFAULT_MAX_ENVELOPE_BYTES


def test_wait_returns_when_either_queue_gets_something_or_on_timeout():
    inbox = Inbox(8, 1024, 8, 1024)
    t0 = time.monotonic()
    inbox.wait(0.05)
    assert time.monotonic() - t0 >= 0.04
    threading.Timer(0.05, inbox.put_request, (_msg(),)).start()
    t0 = time.monotonic()
    inbox.wait(10)
    assert time.monotonic() - t0 < 5 and inbox.requests_waiting() == 1


def test_a_raft_payload_that_may_wait_is_queued_without_waking_the_node_thread():
    # Envelope byte 1 is its flags; FLAG_NO_HURRY marks heartbeat acknowledgements.
    from swarm.bus.envelope import FLAG_NO_HURRY

    inbox = Inbox(8, 1024, 8, 1024)
    inbox.put_raft(_msg(bytes([1, FLAG_NO_HURRY]) + b"rest"))
    t0 = time.monotonic()
    inbox.wait(0.05)                       # slept its whole timeout: nothing urgent
    assert time.monotonic() - t0 >= 0.04
    inbox.put_raft(_msg(bytes([1, 0]) + b"rest"))
    t0 = time.monotonic()
    inbox.wait(10)                         # an ordinary message wakes it at once
    assert time.monotonic() - t0 < 5
    assert len(inbox.take_raft()) == 2     # and the one that waited is taken with it
    t0 = time.monotonic()
    inbox.wait(0.05)
    assert time.monotonic() - t0 >= 0.04


def test_a_wake_up_posted_as_a_wait_times_out_does_not_cut_the_next_wait_short():
    # The producer finds the node thread still waiting just after its timeout ran out
    # (simulated: the wait's own lock is held across the timeout, so the producer's
    # post lands between the timeout and the wait's return).
    inbox = Inbox(8, 1024, 8, 1024)
    release = threading.Event()
    woke = threading.Event()

    def producer() -> None:
        release.wait(5)
        inbox.wake()
        woke.set()

    real_acquire = inbox._signal.acquire

    def late_acquire(blocking: bool = True, timeout: float = -1) -> bool:
        got = real_acquire(blocking, timeout)
        if timeout > 0 and not got:
            release.set()              # timed out: now the producer posts
            woke.wait(5)
        return got

    threading.Thread(target=producer, daemon=True).start()
    inbox._signal = type("Wrapped", (), {"acquire": staticmethod(late_acquire),
                                         "release": staticmethod(inbox._signal.release)})()
    t0 = time.monotonic()
    inbox.wait(0.05)
    assert woke.is_set() and time.monotonic() - t0 < 5
    t0 = time.monotonic()
    inbox.wait(0.05)                       # the late post was taken back: it sleeps
    assert time.monotonic() - t0 >= 0.04
    inbox.wake()                           # not waiting: the next wait returns at once
    t0 = time.monotonic()
    inbox.wait(10)
    assert time.monotonic() - t0 < 5
