"""The client protocol's server side, sans-I/O: requests in, proposals and reads to
the node, replies out.

:class:`ClientService` runs on the thread that owns the node's driver (it calls
``propose`` and ``read_index`` directly) and is fed what the driver reports: applied
entries (with their session results) and reads that became servable or expired. Time
comes from the ``clock`` passed in (monotonic seconds), so tests drive it by hand.

How each request is answered (docs/protocol.md):

* ``register``: the registration is proposed; when it is applied *on this node* (every
  node applies every entry) the REGISTERED result carrying the request's nonce names
  the new session (thesis §6.3: the session id is the registration's log index).
* ``propose``: the command (the state machine's, swarm/agent/machine.py: a map
  command, or a register put), wrapped in its session and sequence number, is
  proposed; a follower's node forwards it to the leader through Raft (so any node
  accepts any request). The reply is sent when this node applies the entry whose
  session result has that (session, seq): ``committed`` with the index, the state
  machine's version and its own result, or ``invalid`` with its reason.
  A retry of a (session, seq) still pending here joins the pending one (no second
  proposal while the first may still commit); one already applied is answered from
  the session's cache by the state machine, exactly once.
* ``read``: a ReadIndex (thesis §6.4) round is started; the state (or one item) is read
  only once the driver says the read index is applied, which a quorum confirmed after
  the request arrived: a deposed or paused leader cannot pass that, so it can never
  answer with a stale map.
* ``status``: answered at once from the node's status.

Bounds: at most ``max_pending`` requests wait at once (more are answered ``busy``);
admission comes before the command is parsed (for the map, most of a request's cost), so under
a flood ``busy`` is cheap: the request's envelope is read, its command is not. While
the leader's uncommitted log is full (the driver raised Busy), further proposals and
registrations are answered ``busy`` the same way until an entry is applied here;
each waits at most ``timeout_s`` (then ``timeout``: outcome unknown, a retry with the
same session and sequence number is safe). A duplicate delivery of a request id that is
still pending (MQTT QoS 1 redelivers) is ignored.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from consensus.driver import AppliedEntry, Busy
from consensus.raft import ProposalDropped
from consensus.session import SessionError, SessionResult, SessionStatus, decode_result, \
    encode_command, encode_register

from .machine import AgentMachine
from .protocol import ErrorCode, Op, ReplyAddress, Request, RequestError, encode_reply, \
    error_reply, parse_command_of, parse_request

__all__ = ["ClientService", "Node", "OutgoingReply"]


class Node(Protocol):
    """What the service needs of the driver (consensus.driver.Driver)."""

    def propose(self, data: bytes) -> None: ...

    def read_index(self, ctx: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class OutgoingReply:
    topic: str
    correlation: bytes | None
    payload: bytes


@dataclass(slots=True)
class _Waiter:
    request: Request
    started: float
    deadline: float
    key: Any = None


@dataclass(slots=True)
class _Stats:
    requests: dict[str, int] = field(default_factory=dict)
    replies: dict[str, int] = field(default_factory=dict)

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


class ClientService:
    """See the module docstring. ``machine`` is the replicated state machine the
    session layer wraps (parses commands, decodes results, serves reads);
    ``status()`` the node status dict."""

    def __init__(self, node: Node, node_id: int, swarm: str, *,
                 machine: AgentMachine,
                 status: Callable[[], Mapping[str, Any]],
                 max_pending: int = 1024, timeout_s: float = 5.0,
                 clock: Callable[[], float],
                 on_commit_latency: Callable[[float], None] | None = None) -> None:
        if max_pending < 1 or not timeout_s > 0:
            raise ValueError("max_pending must be >= 1 and timeout_s > 0")
        self.node = node
        self.node_id = node_id
        self.swarm = swarm
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.machine = machine
        self._status = status
        self._clock = clock
        self._on_commit_latency = on_commit_latency
        self.outbox: list[OutgoingReply] = []
        self.stats = _Stats()
        self._by_id: dict[str, _Waiter] = {}
        self._proposals: dict[tuple[int, int], list[_Waiter]] = {}
        self._registrations: dict[bytes, list[_Waiter]] = {}
        self._reads: dict[bytes, _Waiter] = {}
        # Read contexts are unique cluster-wide: node id, a per-boot random part (a
        # restarted node's counter restarts), a counter.
        self._ctx_prefix = node_id.to_bytes(4, "big") + os.urandom(4)
        self._ctx_counter = itertools.count(1)
        #: Why proposals are refused now (the driver's Busy), until an entry is applied.
        self._log_full: str | None = None

    # -- inspection

    def pending(self) -> int:
        return len(self._by_id)

    # -- inputs from the wire

    def on_request(self, payload: bytes, response_topic: str | None = None,
                   correlation: bytes | None = None) -> None:
        """One request message. Malformed requests are answered ``bad_request`` (or
        ``invalid`` for a refused command) when they name a reply address, and
        dropped otherwise; nothing else changes."""
        try:
            request = parse_request(payload, self.swarm, response_topic, correlation)
        except RequestError as exc:
            self._rejected(exc)
            return
        self.stats.count(self.stats.requests, request.op.value)
        if request.id in self._by_id:
            self.stats.count(self.stats.requests, "duplicate")
            return
        if request.op is Op.STATUS:
            self._reply(request, encode_reply(request.id, "ok", node=dict(self._status())), "ok")
            return
        if len(self._by_id) >= self.max_pending:
            self._error(request, ErrorCode.BUSY,
                        f"node {self.node_id} already holds {self.max_pending} pending requests")
            return
        if self._log_full is not None and request.op is not Op.READ and not (
                request.op is Op.PROPOSE and (request.session, request.seq) in self._proposals):
            self._error(request, ErrorCode.BUSY, self._log_full)
            return
        now = self._clock()
        waiter = _Waiter(request, now, now + self.timeout_s)
        if request.op is Op.PROPOSE:
            self._propose(waiter)
        elif request.op is Op.REGISTER:
            self._register(waiter)
        else:
            self._read(waiter)

    def _propose(self, w: _Waiter) -> None:
        r = w.request
        key = (r.session, r.seq)
        joined = self._proposals.get(key)
        if joined:
            # The same command is already on its way through this node: a second
            # proposal adds nothing (the session would answer it from its cache).
            w.key = key
            joined.append(w)
            self._by_id[r.id] = w
            return
        try:
            w.request = r = parse_command_of(r, self.machine.parse_command)
        except RequestError as exc:
            self._rejected(exc)
            return
        if not self._submit(w, encode_command(r.session, r.seq, r.command, r.ack)):
            return
        w.key = key
        self._proposals[key] = [w]
        self._by_id[r.id] = w

    def _register(self, w: _Waiter) -> None:
        nonce = w.request.nonce.encode()
        joined = self._registrations.get(nonce)
        if joined is None:
            if not self._submit(w, encode_register(nonce)):
                return
            joined = self._registrations[nonce] = []
        w.key = nonce
        joined.append(w)
        self._by_id[w.request.id] = w

    def _read(self, w: _Waiter) -> None:
        ctx = self._ctx_prefix + next(self._ctx_counter).to_bytes(8, "big")
        try:
            self.node.read_index(ctx)
        except Busy as exc:
            self._error(w.request, ErrorCode.BUSY, str(exc))
            return
        except ProposalDropped:
            self._error(w.request, ErrorCode.NO_LEADER,
                        "no leader is known now; retry (an election is under way)")
            return
        w.key = ctx
        self._reads[ctx] = w
        self._by_id[w.request.id] = w

    def _submit(self, w: _Waiter, data: bytes) -> bool:
        try:
            self.node.propose(data)
        except Busy as exc:
            self._log_full = f"the leader's uncommitted log is full ({exc})"
            self._error(w.request, ErrorCode.BUSY, self._log_full)
            return False
        except ProposalDropped:
            self._error(w.request, ErrorCode.NO_LEADER,
                        "no leader is known now; retry (an election is under way)")
            return False
        return True

    # -- inputs from the driver

    def on_applied(self, entry: AppliedEntry) -> None:
        """An entry this node applied (any client's: only those waited for here count)."""
        self._log_full = None  # the uncommitted tail shrank: try proposing again
        if entry.result is None or not (self._proposals or self._registrations):
            return
        try:
            result = decode_result(entry.result)
        except SessionError:
            return
        if result.status is SessionStatus.REGISTERED:
            for w in self._registrations.pop(result.payload, []):
                self._forget(w)
                self._reply(w.request, encode_reply(w.request.id, "registered",
                                                    session=result.client_id,
                                                    index=entry.index), "registered")
            return
        waiters = self._proposals.pop((result.client_id, result.seq), None)
        if not waiters:
            return
        now = self._clock()
        for w in waiters:
            self._forget(w)
            if self._on_commit_latency is not None and result.status is SessionStatus.OK:
                self._on_commit_latency(now - w.started)
            self._answer_command(w.request, entry, result)

    def _answer_command(self, request: Request, entry: AppliedEntry,
                        result: SessionResult) -> None:
        status = result.status
        if status is SessionStatus.OK:
            machine = self.machine
            try:
                outcome = machine.outcome(result.payload)
            except ValueError:
                self._error(request, ErrorCode.INVALID,
                            f"the {machine.name} returned an unreadable result")
                return
            if not outcome.ok:
                self._error(request, ErrorCode.INVALID,
                            outcome.error or f"rejected by the {machine.name}")
                return
            self._reply(request, encode_reply(
                request.id, "committed", index=outcome.version, map_version=machine.version,
                result=outcome.result, cached=result.cached), "committed")
        elif status is SessionStatus.SESSION_EXPIRED:
            self._error(request, ErrorCode.SESSION_EXPIRED,
                        f"session {request.session} is unknown or expired; register again")
        elif status is SessionStatus.WINDOW_FULL:
            self._error(request, ErrorCode.BUSY,
                        f"session {request.session} has too many unacknowledged commands; "
                        "raise ack as results arrive")
        elif status is SessionStatus.STALE:
            self._error(request, ErrorCode.BAD_REQUEST,
                        f"seq {request.seq} is below the session's acknowledged floor")
        else:
            self._error(request, ErrorCode.BAD_REQUEST, "the session layer refused the command")

    def on_read_ready(self, ctx: bytes, index: int) -> None:
        """The driver may serve read ``ctx``: the state machine has applied ``index``,
        confirmed by a quorum after the read was asked (thesis §6.4)."""
        w = self._reads.pop(ctx, None)
        if w is None:
            return
        self._forget(w)
        item = w.request.item
        try:
            version, doc = self.machine.read(item)
        except KeyError:
            self._error(w.request, ErrorCode.NOT_FOUND, f"no {self.machine.name} item {item!r}")
            return
        body: dict[str, Any] = {"map_version": version, "read_index": index}
        body["item" if item is not None else "map"] = doc
        self._reply(w.request, encode_reply(w.request.id, "ok", **body), "ok")

    def on_read_expired(self, ctx: bytes) -> None:
        w = self._reads.pop(ctx, None)
        if w is not None:
            self._forget(w)
            self._error(w.request, ErrorCode.TIMEOUT,
                        "the read was not confirmed by a quorum in time; retry")

    def on_leader_change(self) -> None:
        """A new leader is known: propose again what waits here. A follower forwards a
        proposal to the leader it knows; if that leader died, the forward died with it,
        and the request would wait for its whole timeout. Proposing again is safe: the
        session answers a command applied twice from its cache (exactly once), and the
        first registration applied with a nonce answers its waiters (a second one only
        leaves an unused session, which the session table's LRU bound drops); a refusal
        (``busy``, ``no_leader``) leaves it to the client's retry."""
        self._log_full = None
        datas = [encode_command(session, seq, ws[0].request.command, ws[0].request.ack)
                 for (session, seq), ws in self._proposals.items()]
        datas += [encode_register(nonce) for nonce in self._registrations]
        for data in datas:
            try:
                self.node.propose(data)
            except ProposalDropped:
                return
            self.stats.count(self.stats.requests, "re-proposed after a leader change")

    # -- time

    def expire(self) -> None:
        """Answer ``timeout`` to every request whose deadline passed."""
        now = self._clock()
        late = []
        # Every request gets the same timeout, so insertion order is deadline order.
        for w in self._by_id.values():
            if w.deadline > now:
                break
            late.append(w)
        for w in late:
            self._forget(w)
            r = w.request
            if r.op is Op.PROPOSE:
                _leave(self._proposals, w)
                message = (f"not committed within {self.timeout_s:g} s: outcome unknown; "
                           f"retrying with session {r.session} seq {r.seq} is safe")
            elif r.op is Op.REGISTER:
                _leave(self._registrations, w)
                message = f"registration not committed within {self.timeout_s:g} s; retry"
            else:
                self._reads.pop(w.key, None)
                message = f"read not served within {self.timeout_s:g} s; retry"
            self._error(r, ErrorCode.TIMEOUT, message)

    def fail_all(self, code: ErrorCode, message: str) -> None:
        """Answer every pending request (shutdown)."""
        for w in list(self._by_id.values()):
            self._error(w.request, code, message)
        self._by_id.clear()
        self._proposals.clear()
        self._registrations.clear()
        self._reads.clear()

    # -- replies

    def _rejected(self, exc: RequestError) -> None:
        """A request that cannot be served: answered when it names a reply address."""
        self.stats.count(self.stats.requests, f"rejected {exc.code.value}")
        if exc.reply is not None:
            self._send(exc.reply, error_reply(exc.request_id, exc.code, exc.message),
                       exc.code.value)

    def _forget(self, w: _Waiter) -> None:
        self._by_id.pop(w.request.id, None)

    def _error(self, request: Request, code: ErrorCode, message: str) -> None:
        self._reply(request, error_reply(request.id, code, message), code.value)

    def _reply(self, request: Request, payload: bytes, outcome: str) -> None:
        self._send(request.reply, payload, outcome)

    def _send(self, reply: ReplyAddress, payload: bytes, outcome: str) -> None:
        self.stats.count(self.stats.replies, outcome)
        self.outbox.append(OutgoingReply(reply.topic, reply.correlation, payload))



def _leave(groups: dict[Any, list[_Waiter]], w: _Waiter) -> None:
    """Remove ``w`` from the group of requests waiting on one proposal."""
    group = groups.get(w.key)
    if group is not None and w in group:
        group.remove(w)
        if not group:
            del groups[w.key]
