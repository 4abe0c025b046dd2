"""The application's side of replication: the replicated state machine (Raft §2,
hashicorp/raft's ``FSM``)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["StateMachine"]


@runtime_checkable
class StateMachine(Protocol):
    """A deterministic state machine fed the committed log in order.

    Every replica applies the same entries in the same order (State Machine Safety,
    §5.4.3), so ``apply`` must depend only on its arguments and the current state: no
    clocks, randomness or I/O. ``apply`` must not raise for bad *content*: a command
    that is invalid is still committed, and every replica must reach the same verdict,
    so it returns an error result instead.
    """

    def apply(self, index: int, data: bytes) -> bytes:
        """Apply the committed entry at ``index``; return the result for the client."""
        ...

    def snapshot(self) -> bytes:
        """Serialize the whole state (as of the last applied index)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot taken by :meth:`snapshot`.

        Must validate ``data`` and raise ``ValueError`` without changing state when it
        is malformed."""
        ...
