"""Map changes this drone makes about itself, through the agent's own client session.

The flight side (its own thread) decides that the map must say something about this
drone (registered, unavailable, battery critical, back in service). It never touches the
Raft node: it hands the command to :class:`OwnCommits` (thread-safe, bounded), and the
node thread, which owns the driver, pumps it: commands go through one
:class:`consensus.session.SessionClient` (thesis §6.3: registered once, numbered,
retried through the same session, so a retry is applied at most once), proposed to the
local node, which forwards them to the leader like any client's.

Without a quorum nothing commits: the commands wait (retried every ``retry_ticks``),
the map does not change, and the drone keeps flying its last agreed plan.
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Callable
from typing import Protocol

from consensus.raft import ProposalDropped
from consensus.session import Completed, GaveUp, SessionClient, SessionClientBusy, SessionError, \
    decode_result
from consensus.driver import AppliedEntry
from swarm.evacmap import Command, CommandError, encode_command
from swarm.evacmap import decode_result as decode_map_result

__all__ = ["OwnCommits"]

log = logging.getLogger("swarm.flight")


class _Proposer(Protocol):
    def propose(self, data: bytes) -> None: ...


class OwnCommits:
    """``submit`` from any thread; ``tick``/``pump``/``on_applied`` on the node thread."""

    def __init__(self, node_name: str, *, retry_ticks: int, max_queued: int = 64,
                 wake: Callable[[], None] | None = None) -> None:
        # A fresh nonce per process: a restarted agent registers a new session.
        nonce = f"flight:{node_name}:{os.urandom(6).hex()}".encode()
        self.client = SessionClient(nonce, retry_ticks=retry_ticks, window=1,
                                    max_queued=max_queued)
        self._incoming: queue.Queue[Command] = queue.Queue(maxsize=max_queued)
        self._what: dict[int, str] = {}
        self._used = False  # the session registers on first use, not at start
        #: Called after each submit, so a node thread sleeping through idle ticks wakes.
        self._wake = wake
        self.committed = 0
        self.refused = 0
        self.dropped = 0

    def submit(self, command: Command) -> bool:
        """Queue ``command`` for commit (any thread). False when the queue is full."""
        try:
            self._incoming.put_nowait(command)
        except queue.Full:
            self.dropped += 1
            return False
        if self._wake is not None:
            self._wake()
        return True

    def pending(self) -> int:
        return self._incoming.qsize() + self.client.pending()

    def tick(self) -> None:
        self.client.tick()

    def pump(self, node: _Proposer) -> None:
        """Move new commands into the session and propose what is due (node thread).
        Nothing until the first command: an agent that never commits anything of its
        own (a follower without a flight controller) registers no session."""
        if not self._used:
            if self._incoming.empty():
                return
            self._used = True
        while True:
            try:
                command = self._incoming.get_nowait()
            except queue.Empty:
                break
            try:
                request = self.client.submit(encode_command(command))
            except (SessionClientBusy, CommandError) as exc:
                self.dropped += 1
                log.warning("own map change %s not queued: %s", command.TYPE, exc)
                continue
            self._what[request] = f"{command.TYPE} {getattr(command, 'id', '')}".strip()
        for proposal in self.client.poll():
            try:
                node.propose(proposal.data)
            except ProposalDropped:
                self.client.dropped(proposal.seq)  # no leader known: soon again

    def on_applied(self, entry: AppliedEntry) -> None:
        """Every applied entry with a session result (node thread)."""
        if entry.result is None:
            return
        try:
            result = decode_result(entry.result)
        except SessionError:
            return
        self.client.on_result(result)
        for event in self.client.events():
            what = self._what.pop(event.request, "?")
            if isinstance(event, Completed):
                try:
                    outcome = decode_map_result(event.result.payload)
                except CommandError:
                    continue
                if outcome.ok:
                    self.committed += 1
                    log.info("committed own map change: %s (map version %s)", what,
                             outcome.version)
                else:
                    self.refused += 1
                    log.warning("the map refused own change %s: %s", what, outcome.error)
            elif isinstance(event, GaveUp):
                self.refused += 1
                log.warning("gave up own map change %s: %s", what, event.reason)
