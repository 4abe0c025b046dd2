"""What paho's network thread hands the node thread: two bounded queues, one for Raft
traffic and one for client requests, and one wake-up for both.

Why two: with one FIFO, a flood of client requests sits in front of the heartbeats'
acknowledgements and the votes, the leader's node thread spends its turns decoding
requests, and the cluster answers with elections instead of ``busy``. The node thread
takes every queued Raft message first, then client requests only within a budget per
turn (swarm/agent/node.py, ``Agent._admit_requests``), so Raft traffic waits behind at
most one budget of client work however many requests arrive (docs/agent.md,
"Overload").

Bounds (memory): at most ``max_raft`` Raft payloads and ``max_raft_bytes`` of them, at
most ``max_requests`` requests and ``max_request_bytes`` of their payloads. Over a
bound the payload is not queued, and counted (``raft_queue_full`` /
``request_queue_full``, whichever bound it was): Raft retransmits; a request is handed
to ``refuse_request`` on the producer's thread, outside the lock, which answers it
``busy`` (swarm/agent/node.py, ``Agent._refuse_unqueued``), so a flood larger than the
queue is still answered, not left to time out. The node thread normally answers
``busy`` long before the request queue fills, because refusing costs far less than
admitting; the queue fills when the node thread cannot keep up (its turns, or the
broker not yet having taken its replies).

The byte bounds are what cap memory: payloads are queued here before they are
authenticated (the node thread opens them), so anyone who can publish on the broker
can fill the queues with the largest payload the bus accepts (its ``max_payload_bytes``,
the envelope maximum; larger ones never reach a handler). Without a byte bound that was
``max_raft`` x 2 MiB, 8 GiB. Nothing else is checked here: the envelope opener
(swarm/bus/envelope.py) rejects and counts garbage, a wrong version and an oversized
envelope in one place, and a pre-check a forger passes by setting one byte would bound
nothing.

A Raft payload whose envelope says it may wait (``swarm.bus.envelope.no_hurry``: a
follower's heartbeat acknowledgement) is queued without waking the node thread: it is
taken with the next turn, at the latest the leader's next heartbeat tick, and stepped
after the ticks due when it arrived, as any queued message is. A leader of four
followers thus wakes once per heartbeat round instead of once per acknowledgement
(docs/benchmarks.md, "Agent footprint").

Single consumer (the node thread), any number of producers (in practice one: paho's
network thread). Each payload is kept with the monotonic time it was handed over (the
latency trace, swarm/agent/trace.py, starts a request's or a message's clock there).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from swarm.bus.client import Received
from swarm.bus.envelope import no_hurry

from .memory import LARGE_PAYLOAD_BYTES

__all__ = ["Inbox", "Queued"]

#: A payload and the monotonic time paho's thread handed it over.
Queued = tuple[Received, float]


class Inbox:
    def __init__(self, max_raft: int, max_raft_bytes: int, max_requests: int,
                 max_request_bytes: int,
                 refuse_request: Callable[[Received], None] | None = None) -> None:
        if min(max_raft, max_raft_bytes, max_requests, max_request_bytes) < 1:
            raise ValueError("inbox bounds must be positive")
        #: Called with a request that found its queue full (the producer's thread).
        self.refuse_request = refuse_request
        self.max_raft = max_raft
        self.max_raft_bytes = max_raft_bytes
        self.max_requests = max_requests
        self.max_request_bytes = max_request_bytes
        self._raft: deque[Queued] = deque()
        self._raft_bytes = 0
        self._requests: deque[Queued] = deque()
        self._request_bytes = 0
        self._lock = threading.Lock()
        #: What the node thread sleeps on: held, except while a wake-up is posted. A
        #: producer that finds the node thread waiting releases it once (``_posted``).
        #: A bare lock rather than a Condition, which allocates a lock per wait and
        #: keeps its waiters in Python: the node thread waits 20-50 times a second.
        self._signal = threading.Lock()
        self._signal.acquire()
        self._waiting = False
        self._posted = False
        self._woken = False
        #: Raft payloads queued that want the node thread now (not ``no_hurry``).
        self._urgent = False
        #: Dropped payloads by reason (read by the node thread for metrics).
        self.dropped: Counter[str] = Counter()
        #: Bytes of the large payloads handed over so far, queued or dropped (paho's
        #: thread allocated them either way): a burst of them is followed by a heap
        #: trim (swarm/agent/memory.py, BurstTrim).
        self._large_bytes = 0

    # -- producers (paho's thread)

    def put_raft(self, msg: Received) -> None:
        size = len(msg.payload)
        with self._lock:
            if size >= LARGE_PAYLOAD_BYTES:
                self._large_bytes += size
            if (len(self._raft) >= self.max_raft
                    or self._raft_bytes + size > self.max_raft_bytes):
                self.dropped["raft_queue_full"] += 1
                return
            self._raft.append((msg, time.monotonic()))
            self._raft_bytes += size
            if no_hurry(msg.payload):
                return
            self._urgent = True
            self._notify()

    def put_request(self, msg: Received) -> None:
        size = len(msg.payload)
        with self._lock:
            if size >= LARGE_PAYLOAD_BYTES:
                self._large_bytes += size
            full = (len(self._requests) >= self.max_requests
                    or self._request_bytes + size > self.max_request_bytes)
            if full:
                self.dropped["request_queue_full"] += 1
            else:
                self._requests.append((msg, time.monotonic()))
                self._request_bytes += size
                self._notify()
        if full and self.refuse_request is not None:
            self.refuse_request(msg)

    def wake(self) -> None:
        """Wake the node thread with nothing queued (any thread): it has other work, a
        map change of the drone's own queued in OwnCommits."""
        with self._lock:
            self._woken = True
            self._notify()

    def _notify(self) -> None:
        # Under self._lock.
        if self._waiting and not self._posted:
            self._posted = True
            self._signal.release()

    # -- the consumer (the node thread)

    def wait(self, timeout: float) -> None:
        """Return when something is queued (a Raft payload that may wait does not
        count) or ``wake`` was called, or after ``timeout`` seconds."""
        with self._lock:
            if self._urgent or self._requests or self._woken or timeout <= 0:
                self._woken = False
                return
            self._waiting = True
        got = False
        try:
            got = self._signal.acquire(True, timeout)
        finally:
            with self._lock:
                self._waiting = False
                if self._posted:
                    self._posted = False
                    if not got:
                        # Posted just after the timeout: take it back (at once) so
                        # the next wait sleeps.
                        self._signal.acquire()
                self._woken = False

    def take_raft(self) -> list[Queued]:
        """Every queued Raft payload, oldest first."""
        with self._lock:
            self._urgent = False
            if not self._raft:
                return []
            out = list(self._raft)
            self._raft.clear()
            self._raft_bytes = 0
            return out

    def take_request(self) -> Queued | None:
        """The oldest queued client request, or None."""
        with self._lock:
            if not self._requests:
                return None
            item = self._requests.popleft()
            self._request_bytes -= len(item[0].payload)
            return item

    def requests_waiting(self) -> int:
        return len(self._requests)

    def large_bytes(self) -> int:
        """Bytes of payloads of LARGE_PAYLOAD_BYTES or more handed over so far."""
        with self._lock:
            return self._large_bytes
