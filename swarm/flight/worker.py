"""A worker thread that always works on the latest input (latest-wins coalescing).

The agent applies map versions on its node thread, which also ticks Raft: planning
and uploading a mission there would delay heartbeats and start elections. The node
thread only hands the newest map view to :class:`LatestWins` (a non-blocking
``submit``); the worker runs the job on the newest item it holds. Items submitted while
a job runs replace one another (only the last is kept: an older map version is never
worth planning once a newer one is applied), so a slow job delays nothing but itself.

A job may ask to be run again later on the same item (the flight controller is not
ready yet): it returns a delay in seconds, and the worker waits that long or until a
newer item arrives, whichever comes first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["LatestWins"]

T = TypeVar("T")
log = logging.getLogger("swarm.flight")


class LatestWins(Generic[T]):
    """``job(item)`` on a worker thread, always on the latest submitted item.

    ``job`` returns None when done with the item, or a delay in seconds after which it
    wants the same item again (unless a newer one arrives first). An exception from
    ``job`` is logged and counted, and the item is dropped (the next submit runs
    again). ``coalesced`` counts the items replaced before they were run.
    """

    def __init__(self, job: Callable[[T], float | None], name: str = "latest-wins") -> None:
        self._job = job
        self._cond = threading.Condition()
        self._item: T | None = None
        self._has_item = False
        self._stopping = False
        self._busy = False
        self.submitted = 0
        self.coalesced = 0
        self.runs = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        """Hand ``item`` to the worker without waiting; replaces one not yet started."""
        with self._cond:
            if self._stopping:
                return
            self.submitted += 1
            if self._has_item:
                self.coalesced += 1
            self._item, self._has_item = item, True
            self._cond.notify()

    def idle(self) -> bool:
        """True when nothing is queued or running."""
        with self._cond:
            return not self._has_item and not self._busy

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the job in progress (if any); queued items are dropped."""
        with self._cond:
            self._stopping = True
            self._has_item = False
            self._item = None
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._has_item and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item = self._item
                self._item, self._has_item = None, False
                self._busy = True
            assert item is not None
            again = self._run_job(item)
            with self._cond:
                self._busy = False
                if again is not None and not self._stopping:
                    # Wait for a newer item, at most ``again`` seconds; then retry this one.
                    if not self._has_item:
                        self._cond.wait(timeout=again)
                    if not self._has_item and not self._stopping:
                        self._item, self._has_item = item, True

    def _run_job(self, item: T) -> float | None:
        self.runs += 1
        try:
            again = self._job(item)
        except Exception:  # a bug in one job must not kill the worker
            self.failures += 1
            log.exception("%s: job failed", self._thread.name)
            return None
        return None if again is None else max(0.0, float(again))
