"""The commit path's timestamps, for an instrumented run (bench/agent_latency.py).

With ``SWARM_LATENCY_TRACE=<folder>`` in its environment, an agent records when each
stage of a map command's way through it happened (a request taken off the bus, an
AppendEntries sent or received, the write begun and done, an entry applied, a reply
handed to paho, ...) and writes them to ``<folder>/trace-<node>.txt`` when it stops:
one ``<monotonic seconds> <stage>`` line each. ``time.monotonic`` is CLOCK_MONOTONIC,
one clock for every process of a machine, so the bench lines up the nodes' stages and
its own client's into one timeline per command (docs/benchmarks.md, "Commit path").

Off (the default), every hook is one ``is None`` test. On, a mark is one tuple
appended to a bounded deque (the oldest are dropped), so a long run cannot grow it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

__all__ = ["ENV", "LatencyTrace", "from_env"]

ENV = "SWARM_LATENCY_TRACE"
#: Marks kept (the newest); about 10 per committed command on a leader.
MAX_MARKS = 200_000


class LatencyTrace:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._marks: deque[tuple[float, str]] = deque(maxlen=MAX_MARKS)
        #: Per peer, the highest log index an acknowledgement to or from it carried that
        #: was marked. Only an acknowledgement of new entries is a stage of a command's
        #: path: the answers to an append carrying only the commit index repeat the index
        #: already acknowledged, and marking them would let the bench take one of them
        #: for the next command's acknowledgement.
        self.acked_index: dict[int, int] = {}

    def mark(self, stage: str, at: float | None = None) -> None:
        """``stage`` happened now (or at monotonic time ``at``); any thread."""
        self._marks.append((time.monotonic() if at is None else at, stage))

    def new_ack(self, peer: int, index: int) -> bool:
        """True, and ``index`` recorded, when an accepting append acknowledgement to or
        from ``peer`` carries an index higher than any marked before (node thread)."""
        if index <= self.acked_index.get(peer, 0):
            return False
        self.acked_index[peer] = index
        return True

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.writelines(f"{t:.7f} {stage}\n" for t, stage in list(self._marks))
        os.replace(tmp, self.path)


def from_env(node_id: int) -> LatencyTrace | None:
    """The trace ``SWARM_LATENCY_TRACE`` asks for, or None. Raises ValueError when it
    names no existing folder (the agent refuses to start with that message)."""
    folder = os.environ.get(ENV)
    if not folder:
        return None
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"{ENV}={folder!r} is not an existing folder")
    return LatencyTrace(path / f"trace-{node_id}.txt")
