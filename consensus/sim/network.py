"""A virtual network for the cluster simulator: messages in, messages out at a later
virtual tick, with the faults an asynchronous network is allowed to commit (Raft §5.1
assumes nothing else): loss, duplication, reordering, unbounded delay and partitions.

Every decision is drawn from the one seeded ``random.Random`` the simulator owns, in an
order fixed by the order of calls, so a run replays exactly from its seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from random import Random
from typing import Generic, Protocol, TypeVar

__all__ = ["Addressed", "NetworkFaults", "NetworkStats", "VirtualNetwork"]


class Addressed(Protocol):
    """Anything with a sender and a receiver (the core's Message is one)."""

    @property
    def to(self) -> int: ...

    @property
    def frm(self) -> int: ...


M = TypeVar("M", bound=Addressed)


@dataclass(frozen=True)
class NetworkFaults:
    """How unreliable the network is. Probabilities are per message sent; delays are in
    ticks. Reordering comes from independent random delays: with ``reorder`` set, a
    message may be held back an extra ``0..max_delay`` ticks past later messages."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    min_delay: int = 1
    max_delay: int = 1

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder"):
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"NetworkFaults.{name} must be a probability in [0, 1], got {p!r}")
        if type(self.min_delay) is not int or self.min_delay < 0:
            raise ValueError(f"NetworkFaults.min_delay must be an int >= 0, got {self.min_delay!r}")
        if type(self.max_delay) is not int or self.max_delay < self.min_delay:
            raise ValueError(
                f"NetworkFaults.max_delay must be an int >= min_delay ({self.min_delay}), got {self.max_delay!r}"
            )


@dataclass
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    cut: int = 0  # lost to a partition or a down node


class VirtualNetwork(Generic[M]):
    """Point-to-point links between node ids, cut by partitions.

    A link is checked both when a message is sent and when it would be delivered, so a
    partition also swallows what was in flight when it began, as a real network would.
    """

    def __init__(self, rng: Random, faults: NetworkFaults | None = None) -> None:
        self._rng = rng
        self.faults = faults if faults is not None else NetworkFaults()
        self._queue: list[tuple[int, int, M]] = []  # (deliver_at, seq, message)
        self._seq = 0
        self._cut: set[tuple[int, int]] = set()
        self._down: set[int] = set()
        self.stats = NetworkStats()

    # --- topology -----------------------------------------------------------------

    def partition(self, *groups: Iterable[int]) -> None:
        """Split the nodes into ``groups``: links across groups are cut both ways.
        Replaces any earlier partition. Nodes in no group are isolated from all."""
        sets = [frozenset(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                if a & b:
                    raise ValueError(f"partition groups overlap: {sorted(a & b)}")
        self._cut = set()
        for i, a in enumerate(sets):
            for j, b in enumerate(sets):
                if i != j:
                    self._cut.update((x, y) for x in a for y in b)

    def cut_link(self, a: int, b: int, *, both_ways: bool = True) -> None:
        """Cut the link from ``a`` to ``b`` (and back, unless ``both_ways`` is False):
        partial and one-way partitions, where connectivity is not transitive."""
        self._cut.add((a, b))
        if both_ways:
            self._cut.add((b, a))

    def heal(self) -> None:
        """Reconnect every link."""
        self._cut.clear()

    def set_down(self, node: int, down: bool) -> None:
        """A crashed node receives nothing; its messages in flight still arrive (they
        left the machine before it crashed)."""
        if down:
            self._down.add(node)
        else:
            self._down.discard(node)

    def connected(self, a: int, b: int) -> bool:
        return (a, b) not in self._cut

    @property
    def partitioned(self) -> bool:
        return bool(self._cut)

    # --- traffic ------------------------------------------------------------------

    def send(self, msg: M, now: int) -> None:
        f = self.faults
        rng = self._rng
        self.stats.sent += 1
        if not self.connected(msg.frm, msg.to):
            self.stats.cut += 1
            return
        if f.drop and rng.random() < f.drop:
            self.stats.dropped += 1
            return
        copies = 1
        if f.duplicate and rng.random() < f.duplicate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            delay = f.min_delay if f.max_delay == f.min_delay else rng.randint(f.min_delay, f.max_delay)
            if f.reorder and rng.random() < f.reorder:
                delay += rng.randint(1, max(1, f.max_delay) * 3)
            self._seq += 1
            heapq.heappush(self._queue, (now + delay, self._seq, msg))

    def deliver(self, now: int) -> list[M]:
        """Messages due at or before ``now`` that survive the links as they are now,
        in delivery order."""
        out: list[M] = []
        q = self._queue
        while q and q[0][0] <= now:
            _, _, msg = heapq.heappop(q)
            if msg.to in self._down or not self.connected(msg.frm, msg.to):
                self.stats.cut += 1
                continue
            self.stats.delivered += 1
            out.append(msg)
        return out
