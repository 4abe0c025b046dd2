"""The window of AppendEntries in flight to one follower (etcd-io/raft
``tracker/inflights.go``): bounded in message count and in entry bytes, so a fast
leader cannot bury a slow follower (or the bus) under unacknowledged data."""

from __future__ import annotations

from collections import deque

__all__ = ["Inflights"]


class Inflights:
    """FIFO of (last index, bytes) of sent, unacknowledged AppendEntries."""

    __slots__ = ("_cap", "_max_bytes", "_items", "_bytes")

    def __init__(self, capacity: int, max_bytes: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._cap = capacity
        self._max_bytes = max_bytes  # 0: no byte limit
        self._items: deque[tuple[int, int]] = deque()
        self._bytes = 0

    def add(self, index: int, nbytes: int) -> None:
        """Record a message whose last entry is ``index``. Indexes must increase."""
        if self.full():
            raise RuntimeError("cannot add into a full inflights window")
        if self._items and index <= self._items[-1][0]:
            raise ValueError(f"inflight index {index} not after {self._items[-1][0]}")
        self._items.append((index, nbytes))
        self._bytes += nbytes

    def free_le(self, index: int) -> None:
        """The follower acknowledged everything up to ``index``: free those slots."""
        items = self._items
        while items and items[0][0] <= index:
            self._bytes -= items.popleft()[1]

    def free_first_one(self) -> None:
        """Free the oldest slot: a heartbeat reply shows the follower is alive although
        acknowledgements went missing; letting one more message out lets it reveal,
        by accepting or rejecting, where its log really is (etcd FreeFirstOne)."""
        if self._items:
            self._bytes -= self._items.popleft()[1]

    def full(self) -> bool:
        return len(self._items) >= self._cap or (
            self._max_bytes > 0 and self._bytes >= self._max_bytes)

    def count(self) -> int:
        return len(self._items)

    def bytes(self) -> int:
        return self._bytes

    def reset(self) -> None:
        self._items.clear()
        self._bytes = 0
