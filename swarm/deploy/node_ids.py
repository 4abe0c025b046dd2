"""Node-id lists as an operator types them: ``1,2,3``, ``1-5`` or a mix (``1-3,7``)."""

from __future__ import annotations

__all__ = ["parse_node_ids"]


def parse_node_ids(text: str) -> tuple[int, ...]:
    """The node ids in ``text``; ValueError naming the bad part. Ranges hold at most 1000."""
    ids: list[int] = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise ValueError(f"{part!r} is not a node id or a range N-M") from None
        if last < first or last - first > 1000:
            raise ValueError(f"{part!r} is not a range N-M with N <= M")
        ids.extend(range(first, last + 1))
    return tuple(ids)
