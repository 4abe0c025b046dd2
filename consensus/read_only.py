"""ReadIndex bookkeeping on the leader (thesis §6.4, etcd-io/raft ``read_only.go``).

A read request gets the leader's commit index at the time it arrives; the leader then
confirms it is still the leader by a heartbeat round carrying the request's context;
once a quorum acknowledges that round, every request queued up to it may be served
when the state machine has applied its index. A deposed leader never completes the
round (its followers answer in a higher term), so it never serves a stale read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ReadIndexStatus", "ReadOnly"]


@dataclass
class ReadIndexStatus:
    #: The forwarding follower (or this leader) that asked, and its request context.
    frm: int
    ctx: bytes
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    def __init__(self) -> None:
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, frm: int, ctx: bytes) -> None:
        if ctx in self.pending:
            return  # a duplicate of a request already in the round
        self.pending[ctx] = ReadIndexStatus(frm, ctx, index)
        self.queue.append(ctx)

    def recv_ack(self, frm: int, ctx: bytes) -> set[int] | None:
        """Record that ``frm`` acknowledged the round of ``ctx``; return the ackers."""
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks.add(frm)
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """The round of ``ctx`` reached a quorum: it and every earlier request are
        confirmed (a later heartbeat round confirms leadership for earlier ones too)."""
        if ctx not in self.pending:
            return []
        i = self.queue.index(ctx)
        done = self.queue[: i + 1]
        del self.queue[: i + 1]
        return [self.pending.pop(c) for c in done]

    def last_pending_ctx(self) -> bytes | None:
        return self.queue[-1] if self.queue else None

    def clear(self) -> None:
        self.pending.clear()
        self.queue.clear()
