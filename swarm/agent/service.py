"""The client protocol's server side, sans-I/O: requests in, proposals and reads to
the node, replies out.

:class:`ClientService` runs on the thread that owns the node's driver (it calls
``propose_many`` and ``read_index`` directly) and is fed what the driver reports:
applied entries (with their session results) and reads that became servable or
expired. Time comes from the ``clock`` passed in (monotonic seconds), so tests drive it
by hand.

How each request is answered (docs/protocol.md):

* ``register``: the registration is proposed; when it is applied *on this node* (every
  node applies every entry) the REGISTERED result carrying the request's nonce names
  the new session (thesis §6.3: the session id is the registration's log index).
* ``propose``: each command (the state machine's, swarm/agent/machine.py: a map
  command, or a register put), wrapped in its session and sequence number, is
  proposed; a follower's node forwards it to the leader through Raft (so any node
  accepts any request). A command's outcome is known when this node applies the entry
  whose session result has that (session, seq): ``committed`` with the index, the state
  machine's version and its own result, or ``invalid`` with its reason.
  A retry of a (session, seq) still pending here joins the pending one (no second
  proposal while the first may still commit); one already applied is answered from
  the session's cache by the state machine, exactly once.
  A batch (``commands``) is one request: the commands it admits are proposed together
  (``Driver.propose_many``: one append, one forward from a follower, so they share a
  Ready, its fsync and its AppendEntries), and its one reply, listing every command's
  outcome in order, goes out when the last is known or the request's deadline passes
  (those still open: ``timeout``). One command (``seq`` + ``command``) is a batch of
  one whose outcome is the reply itself.
* ``read``: a ReadIndex (thesis §6.4) round is started; the state (or one item) is read
  only once the driver says the read index is applied, which a quorum confirmed after
  the request arrived: a deposed or paused leader cannot pass that, so it can never
  answer with a stale map.
* ``status``: answered at once from the node's status.

Bounds: at most ``max_pending`` commands (a batch counts each of its commands; a
registration or a read counts one) wait at once: a request that finds no room is
answered ``busy`` whole, and a batch that finds less room than it has commands is
admitted up to the room, its other commands answered ``busy``. Admission comes before
the commands are parsed (for the map, most of a request's cost), so under a flood
``busy`` is cheap: the request's envelope is read, its commands are not. While the
leader's uncommitted log is full (the driver raised Busy), further proposals and
registrations are answered ``busy`` the same way until an entry is applied here; each
request waits at most ``timeout_s`` (then ``timeout``: outcome unknown, a retry with the
same session and sequence number is safe). A duplicate delivery of a request id that is
still pending (MQTT QoS 1 redelivers) is ignored.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from consensus.driver import AppliedEntry, Busy
from consensus.raft import ProposalDropped
from consensus.session import SessionError, SessionResult, SessionStatus, decode_results, \
    encode_command, encode_commands, encode_register

from .machine import AgentMachine, CommandRefused
from .machine import Outcome as MachineOutcome
from .protocol import MAX_COMMAND_BYTES, ErrorCode, Op, ProposedCommand, ReplyAddress, \
    Request, RequestError, encode_reply, error_reply, parse_request

__all__ = ["ClientService", "Node", "OutgoingReply"]


class Node(Protocol):
    """What the service needs of the driver (consensus.driver.Driver)."""

    def propose_many(self, datas: list[bytes]) -> None: ...

    def read_index(self, ctx: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class OutgoingReply:
    topic: str
    correlation: bytes | None
    payload: bytes


#: One command's outcome, as its reply (or its member of a batch reply) carries it:
#: ``{"status": "committed", "index", "map_version", "result", "cached"}`` or
#: ``{"status": "error", "code", "message"}``.
Outcome = dict[str, Any]


def _failed(code: ErrorCode, message: str) -> Outcome:
    return {"status": "error", "code": code.value, "message": message}


def _label(outcome: Outcome) -> str:
    return str(outcome["code"] if outcome["status"] == "error" else outcome["status"])


@dataclass(slots=True)
class _Waiter:
    """One request waiting here. ``open`` is what it counts in ``pending()``: its
    commands without an outcome yet (PROPOSE), else 1."""

    request: Request
    started: float
    deadline: float
    key: Any = None  # REGISTER: the nonce; READ: the read context
    #: PROPOSE: each command's outcome in the request's order (None: not yet known).
    outcomes: list[Outcome | None] = field(default_factory=list)
    open: int = 0


@dataclass(slots=True)
class _Proposal:
    """One (session, seq) on its way through this node: the bytes proposed (proposed
    again after a leader change) and each request's command waiting on it (the waiter
    and the command's position in its request)."""

    data: bytes
    waiters: list[tuple[_Waiter, int]]
    #: How often this node proposed ``data`` (again after each leader change): a
    #: refusal from the leader says only that its own copy was not appended.
    proposed: int = 1


@dataclass(slots=True)
class _Stats:
    requests: dict[str, int] = field(default_factory=dict)
    replies: dict[str, int] = field(default_factory=dict)

    def count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n


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
        self._proposals: dict[tuple[int, int], _Proposal] = {}
        self._registrations: dict[bytes, list[_Waiter]] = {}
        self._reads: dict[bytes, _Waiter] = {}
        #: Sum of the waiters' ``open``: what max_pending bounds.
        self._open = 0
        # Read contexts are unique cluster-wide: node id, a per-boot random part (a
        # restarted node's counter restarts), a counter.
        self._ctx_prefix = node_id.to_bytes(4, "big") + os.urandom(4)
        self._ctx_counter = itertools.count(1)
        #: Why proposals are refused now (the driver's Busy), until an entry is applied.
        self._log_full: str | None = None
        #: The last command result decoded, and its outcome (see _outcome).
        self._last_outcome: tuple[bytes, MachineOutcome] | None = None

    # -- inspection

    def pending(self) -> int:
        """Commands (and registrations, reads) waiting for an outcome here."""
        return self._open

    # -- inputs from the wire

    def on_request(self, payload: bytes, response_topic: str | None = None,
                   correlation: bytes | None = None) -> None:
        """One request message. Malformed requests are answered ``bad_request`` when
        they name a reply address, and dropped otherwise; nothing else changes."""
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
        room = self.max_pending - self._open
        if room <= 0:
            self._error(request, ErrorCode.BUSY, self._full_message())
            return
        if self._log_full is not None and request.op is not Op.READ and not (
                request.op is Op.PROPOSE and any((request.session, c.seq) in self._proposals
                                                 for c in request.commands)):
            self._error(request, ErrorCode.BUSY, self._log_full)
            return
        now = self._clock()
        waiter = _Waiter(request, now, now + self.timeout_s)
        if request.op is Op.PROPOSE:
            self.stats.count(self.stats.requests, "propose commands", len(request.commands))
            self._propose(waiter, room)
        elif request.op is Op.REGISTER:
            self._register(waiter)
        else:
            self._read(waiter)

    def _full_message(self) -> str:
        return (f"node {self.node_id} already holds {self.max_pending} pending commands "
                "and requests")

    def _propose(self, w: _Waiter, room: int) -> None:
        """Admit up to ``room`` of the request's commands: each joins its (session,
        seq) if that is already on its way here, or is parsed by the state machine; the
        new ones are proposed in one ``propose_many``. The others get their outcome now
        (``busy``, ``invalid``, ``no_leader``)."""
        r = w.request
        outcomes: list[Outcome | None] = [None] * len(r.commands)
        w.outcomes = outcomes
        where = (lambda pos: f"commands[{pos}]: ") if r.batch else (lambda pos: "")
        new: list[tuple[int, int, bytes]] = []
        for pos, c in enumerate(r.commands):
            key = (r.session, c.seq)
            if pos >= room:
                outcomes[pos] = _failed(ErrorCode.BUSY, self._full_message())
                continue
            joined = self._proposals.get(key)
            if joined is not None:
                # The same command is already on its way through this node: a second
                # proposal adds nothing (the session would answer it from its cache).
                joined.waiters.append((w, pos))
                w.open += 1
                continue
            if self._log_full is not None:
                outcomes[pos] = _failed(ErrorCode.BUSY, self._log_full)
                continue
            try:
                data = self.machine.parse_command(c.raw)
            except CommandRefused as exc:
                outcomes[pos] = _failed(ErrorCode.INVALID, f"{where(pos)}{exc}")
                continue
            if len(data) > MAX_COMMAND_BYTES:
                outcomes[pos] = _failed(ErrorCode.INVALID, (
                    f"{where(pos)}command: {len(data)} bytes in canonical form, over the "
                    f"{MAX_COMMAND_BYTES}-byte limit"))
                continue
            new.append((pos, c.seq, data))
        if new:
            entries = self._entries(r.session, r.ack, new)
            refused = self._submit([data for data, _ in entries])
            for data, members in entries:
                for pos, seq in members:
                    if refused is not None:
                        outcomes[pos] = refused
                    else:
                        self._proposals[(r.session, seq)] = _Proposal(data, [(w, pos)])
                        w.open += 1
        self._admitted(w)

    def _entries(self, session: int, ack: int, new: list[tuple[int, int, bytes]]
                 ) -> list[tuple[bytes, list[tuple[int, int]]]]:
        """The log entries proposing ``new`` (position, seq, canonical command): one
        session envelope per command, or, when the state machine's commands may share a
        log index (``AgentMachine.batch_entries``), batch entries of consecutive
        commands of up to MAX_COMMAND_BYTES together (so no entry is larger than the
        largest single command's, which the Raft messages are sized for), each entry
        with the (position, seq) of the commands it carries."""
        if not self.machine.batch_entries or len(new) == 1:
            return [(encode_command(session, seq, data, ack), [(pos, seq)])
                    for pos, seq, data in new]
        out: list[tuple[bytes, list[tuple[int, int]]]] = []
        group: list[tuple[int, int, bytes]] = []
        size = 0

        def close() -> None:
            if len(group) == 1:
                pos, seq, data = group[0]
                out.append((encode_command(session, seq, data, ack), [(pos, seq)]))
            else:
                out.append((encode_commands(session, ack, [(seq, d) for _, seq, d in group]),
                            [(pos, seq) for pos, seq, _ in group]))

        for item in new:
            if group and size + len(item[2]) > MAX_COMMAND_BYTES:
                close()
                group, size = [], 0
            group.append(item)
            size += len(item[2])
        close()
        return out

    def _register(self, w: _Waiter) -> None:
        nonce = w.request.nonce.encode()
        joined = self._registrations.get(nonce)
        if joined is None:
            refused = self._submit([encode_register(nonce)])
            if refused is not None:
                self._reply(w.request, encode_reply(w.request.id, **refused), _label(refused))
                return
            joined = self._registrations[nonce] = []
        w.key = nonce
        joined.append(w)
        w.open = 1
        self._admitted(w)

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
        w.open = 1
        self._admitted(w)

    def _admitted(self, w: _Waiter) -> None:
        """``w`` waits for what it opened, or is answered now if nothing is open."""
        if w.open:
            self._open += w.open
            self._by_id[w.request.id] = w
        else:
            self._answer(w)

    def _submit(self, datas: list[bytes]) -> Outcome | None:
        """Propose ``datas`` together (one append, one forward, one Ready), or say why
        none of them was."""
        try:
            self.node.propose_many(datas)
        except Busy as exc:
            self._log_full = f"the leader's uncommitted log is full ({exc})"
            return _failed(ErrorCode.BUSY, self._log_full)
        except ProposalDropped:
            return _failed(ErrorCode.NO_LEADER,
                           "no leader is known now; retry (an election is under way)")
        return None

    # -- inputs from the driver

    def on_applied(self, entry: AppliedEntry) -> None:
        """An entry this node applied (any client's: only those waited for here count)."""
        self._log_full = None  # the uncommitted tail shrank: try proposing again
        if entry.result is None or not (self._proposals or self._registrations):
            return
        try:
            results = decode_results(entry.result)
        except SessionError:
            return
        for result in results:
            self._on_result(entry, result)

    def _on_result(self, entry: AppliedEntry, result: SessionResult) -> None:
        """One command's (or a registration's) session result, applied at ``entry``."""
        if result.status is SessionStatus.REGISTERED:
            for w in self._registrations.pop(result.payload, []):
                self._done(w)
                self._reply(w.request, encode_reply(w.request.id, "registered",
                                                    session=result.client_id,
                                                    index=entry.index), "registered")
            return
        proposal = self._proposals.pop((result.client_id, result.seq), None)
        if proposal is None:
            return
        outcome = self._outcome(result)
        now = self._clock()
        for w, pos in proposal.waiters:
            if self._on_commit_latency is not None and outcome["status"] == "committed":
                self._on_commit_latency(now - w.started)
            self._settle(w, pos, outcome)

    def _outcome(self, result: SessionResult) -> Outcome:
        """A command's outcome from its applied session result."""
        status = result.status
        if status is SessionStatus.OK:
            machine = self.machine
            payload = result.payload
            memo = self._last_outcome
            if memo is not None and memo[0] == payload:
                # The commands of a batch entry share its index, so their results are
                # usually the same bytes: decoded once.
                outcome = memo[1]
            else:
                try:
                    outcome = machine.outcome(payload)
                except ValueError:
                    return _failed(ErrorCode.INVALID,
                                   f"the {machine.name} returned an unreadable result")
                self._last_outcome = (payload, outcome)
            if not outcome.ok:
                return _failed(ErrorCode.INVALID, outcome.error or f"rejected by the {machine.name}")
            return {"status": "committed", "index": outcome.version,
                    "map_version": machine.version, "result": outcome.result,
                    "cached": result.cached}
        if status is SessionStatus.SESSION_EXPIRED:
            return _failed(ErrorCode.SESSION_EXPIRED,
                           f"session {result.client_id} is unknown or expired; register again")
        if status is SessionStatus.WINDOW_FULL:
            return _failed(ErrorCode.BUSY,
                           f"session {result.client_id} has too many unacknowledged commands; "
                           "raise ack as results arrive")
        if status is SessionStatus.STALE:
            return _failed(ErrorCode.BAD_REQUEST,
                           f"seq {result.seq} is below the session's acknowledged floor")
        return _failed(ErrorCode.BAD_REQUEST, "the session layer refused the command")

    def _settle(self, w: _Waiter, pos: int, outcome: Outcome) -> None:
        """Command ``pos`` of ``w`` has its outcome; the request is answered with its
        last one."""
        if w.outcomes[pos] is not None:
            return
        w.outcomes[pos] = outcome
        w.open -= 1
        self._open -= 1
        if not w.open:
            self._by_id.pop(w.request.id, None)
            self._answer(w)

    def on_read_ready(self, ctx: bytes, index: int) -> None:
        """The driver may serve read ``ctx``: the state machine has applied ``index``,
        confirmed by a quorum after the read was asked (thesis §6.4)."""
        w = self._reads.pop(ctx, None)
        if w is None:
            return
        self._done(w)
        item = w.request.item
        try:
            version, doc = self.machine.read(item)
        except KeyError:
            self._error(w.request, ErrorCode.NOT_FOUND, f"no {self.machine.name} item {item!r}")
            return
        body: dict[str, Any] = {"map_version": version, "read_index": index}
        body["item" if item is not None else "map"] = doc
        self._reply(w.request, encode_reply(w.request.id, "ok", **body), "ok")

    def on_read_refused(self, ctx: bytes) -> None:
        """The leader refused this node's forwarded read (too many reads wait there)."""
        self._read_failed(ctx, ErrorCode.BUSY,
                          "the leader holds too many reads waiting for a quorum; retry later")

    def on_read_expired(self, ctx: bytes) -> None:
        self._read_failed(ctx, ErrorCode.TIMEOUT,
                          "the read was not confirmed by a quorum in time; retry")

    def _read_failed(self, ctx: bytes, code: ErrorCode, message: str) -> None:
        w = self._reads.pop(ctx, None)
        if w is not None:
            self._done(w)
            self._error(w.request, code, message)

    def on_leader_change(self) -> None:
        """A new leader is known: propose again what waits here. A follower forwards a
        proposal to the leader it knows; if that leader died, the forward died with it,
        and the request would wait for its whole timeout. Proposing again is safe: the
        session answers a command applied twice from its cache (exactly once), and the
        first registration applied with a nonce answers its waiters (a second one only
        leaves an unused session, which the session table's LRU bound drops); a refusal
        (``busy``, ``no_leader``) leaves it to the client's retry."""
        self._log_full = None
        # A batch entry is the data of each of its commands' proposals: proposed once.
        by_data: dict[bytes, list[_Proposal]] = {}
        for p in self._proposals.values():
            by_data.setdefault(p.data, []).append(p)
        datas = list(by_data) + [encode_register(nonce) for nonce in self._registrations]
        for data in datas:
            try:
                self.node.propose_many([data])
            except ProposalDropped:
                return
            for p in by_data.get(data, ()):
                p.proposed += 1
            self.stats.count(self.stats.requests, "re-proposed after a leader change")

    def on_proposals_refused(self, datas: Sequence[bytes]) -> None:
        """The leader refused proposals this node forwarded (``PROPOSE_RESP``: its
        uncommitted log is full, or leadership is being transferred) and appended none
        of them: their commands are answered ``busy`` now, as the leader answers its own
        clients, rather than ``timeout`` at their deadline, and further proposals here
        are answered ``busy`` until an entry is applied. ``busy`` says this attempt was
        not applied (docs/protocol.md, ``session_expired``), so a command this node
        proposed again after a leader change keeps waiting: the new leader may hold it.
        A registration refused is answered ``busy`` whatever its copies: a second
        registration applied only leaves an unused session."""
        refused = set(datas)
        self._log_full = ("the leader's uncommitted log is full or a leadership transfer "
                          "is under way (it refused this node's forwarded proposals)")
        for key, p in list(self._proposals.items()):
            if p.proposed == 1 and p.data in refused:
                del self._proposals[key]
                for w, pos in p.waiters:
                    self._settle(w, pos, _failed(ErrorCode.BUSY, self._log_full))
        for nonce in [n for n in self._registrations if encode_register(n) in refused]:
            for w in self._registrations.pop(nonce):
                self._done(w)
                self._error(w.request, ErrorCode.BUSY, self._log_full)

    # -- time

    def expire(self) -> None:
        """Answer ``timeout`` to every request whose deadline passed (a batch: for its
        commands still open, with the others' outcomes)."""
        now = self._clock()
        late = []
        # Every request gets the same timeout, so insertion order is deadline order.
        for w in self._by_id.values():
            if w.deadline > now:
                break
            late.append(w)
        for w in late:
            r = w.request
            if r.op is Op.PROPOSE:
                self._close(w, lambda c: _failed(ErrorCode.TIMEOUT, (
                    f"not committed within {self.timeout_s:g} s: outcome unknown; retrying "
                    f"with session {r.session} seq {c.seq} is safe")))
                continue
            self._done(w)
            if r.op is Op.REGISTER:
                _leave(self._registrations, w)
                message = f"registration not committed within {self.timeout_s:g} s; retry"
            else:
                self._reads.pop(w.key, None)
                message = f"read not served within {self.timeout_s:g} s; retry"
            self._error(r, ErrorCode.TIMEOUT, message)

    def fail_all(self, code: ErrorCode, message: str) -> None:
        """Answer every pending request (shutdown)."""
        for w in list(self._by_id.values()):
            if w.request.op is Op.PROPOSE:
                self._close(w, lambda c: _failed(code, message))
            else:
                self._done(w)
                self._error(w.request, code, message)
        self._by_id.clear()
        self._proposals.clear()
        self._registrations.clear()
        self._reads.clear()
        self._open = 0

    def _close(self, w: _Waiter, outcome_of: Callable[[ProposedCommand], Outcome]) -> None:
        """Give each open command of ``w`` its outcome now (it stops waiting on its
        proposal, which may still commit: nobody here waits for it then) and answer."""
        r = w.request
        for pos, c in enumerate(r.commands):
            if w.outcomes[pos] is None:
                proposal = self._proposals.get((r.session, c.seq))
                if proposal is not None and (w, pos) in proposal.waiters:
                    proposal.waiters.remove((w, pos))
                    if not proposal.waiters:
                        del self._proposals[(r.session, c.seq)]
                self._settle(w, pos, outcome_of(c))

    # -- replies

    def _rejected(self, exc: RequestError) -> None:
        """A request that cannot be served: answered when it names a reply address."""
        self.stats.count(self.stats.requests, f"rejected {exc.code.value}")
        if exc.reply is not None:
            self._send(exc.reply, error_reply(exc.request_id, exc.code, exc.message),
                       exc.code.value)

    def _done(self, w: _Waiter) -> None:
        """A registration or read stops waiting."""
        if self._by_id.pop(w.request.id, None) is not None:
            self._open -= w.open
        w.open = 0

    def _answer(self, w: _Waiter) -> None:
        """The reply to a proposal whose every command has its outcome: the outcome
        itself for one command, ``{"status": "batch", "results": [...]}`` for a batch."""
        r = w.request
        outcomes = [o for o in w.outcomes if o is not None]
        assert len(outcomes) == len(r.commands)
        for o in outcomes:
            self.stats.count(self.stats.replies, _label(o))
        if r.batch:
            payload = encode_reply(r.id, "batch", results=[
                {"seq": c.seq, **o} for c, o in zip(r.commands, outcomes)])
        else:
            payload = encode_reply(r.id, **outcomes[0])
        self.outbox.append(OutgoingReply(r.reply.topic, r.reply.correlation, payload))

    def _error(self, request: Request, code: ErrorCode, message: str) -> None:
        self._reply(request, error_reply(request.id, code, message), code.value)

    def _reply(self, request: Request, payload: bytes, outcome: str) -> None:
        self._send(request.reply, payload, outcome)

    def _send(self, reply: ReplyAddress, payload: bytes, outcome: str) -> None:
        self.stats.count(self.stats.replies, outcome)
        self.outbox.append(OutgoingReply(reply.topic, reply.correlation, payload))


def _leave(groups: dict[Any, list[_Waiter]], w: _Waiter) -> None:
    """Remove ``w`` from the group of requests waiting on one registration."""
    group = groups.get(w.key)
    if group is not None and w in group:
        group.remove(w)
        if not group:
            del groups[w.key]
