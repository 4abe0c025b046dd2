"""Quorum arithmetic, pure functions over id sets (etcd-io/raft ``quorum/``).

A majority configuration commits an index once more than half of its voters hold it
(§5.3, §5.4.2); a joint configuration (thesis §4.3, kept for completeness and for
checkers even though membership here changes one server at a time) needs both halves.
"""

from __future__ import annotations

import enum
from typing import Callable, Collection, Mapping

from .types import MAX_U64

__all__ = [
    "VoteResult",
    "majority_size",
    "majority_committed_index",
    "majority_vote_result",
    "joint_committed_index",
    "joint_vote_result",
]


class VoteResult(enum.Enum):
    PENDING = "pending"
    LOST = "lost"
    WON = "won"


def majority_size(n: int) -> int:
    """Smallest number of voters that is more than half of ``n``."""
    return n // 2 + 1


def majority_committed_index(voters: Collection[int], acked: Callable[[int], int | None]) -> int:
    """The largest index acknowledged by a majority of ``voters``.

    ``acked(id)`` is the highest index voter ``id`` is known to hold (None if unknown,
    counted as 0). An empty configuration commits everything (returns a huge value), so
    that a joint configuration with an empty half behaves as the other half alone.
    """
    if not voters:
        return MAX_U64
    indexes = sorted(((acked(v) or 0) for v in voters), reverse=True)
    # The majority_size-th largest index is held by at least a majority.
    return indexes[majority_size(len(indexes)) - 1]


def majority_vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """Won when a majority granted, lost when a majority can no longer grant (§5.2)."""
    if not voters:
        return VoteResult.WON
    granted = sum(1 for v in voters if votes.get(v) is True)
    missing = sum(1 for v in voters if v not in votes)
    need = majority_size(len(voters))
    if granted >= need:
        return VoteResult.WON
    if granted + missing >= need:
        return VoteResult.PENDING
    return VoteResult.LOST


def joint_committed_index(incoming: Collection[int], outgoing: Collection[int],
                          acked: Callable[[int], int | None]) -> int:
    """Committed in a joint configuration: the smaller of both halves' indexes."""
    return min(majority_committed_index(incoming, acked),
               majority_committed_index(outgoing, acked))


def joint_vote_result(incoming: Collection[int], outgoing: Collection[int],
                      votes: Mapping[int, bool]) -> VoteResult:
    """Won only if both halves won; lost if either lost."""
    a = majority_vote_result(incoming, votes)
    b = majority_vote_result(outgoing, votes)
    if a is b:
        return a
    if VoteResult.LOST in (a, b):
        return VoteResult.LOST
    return VoteResult.PENDING
