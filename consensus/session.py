"""Client sessions: exactly-once application of client commands (thesis §6.3).

A client that times out cannot tell whether its command was committed; if it simply
retried, the command could be applied twice. So a client first registers (the
REGISTER entry's log index becomes its client id), then numbers its commands 1, 2,
3 ... :class:`SessionStateMachine` wraps the application's state machine, applies each
(client id, sequence number) once, and answers a retry with the cached result.

Everything is deterministic, as the replicated state machine must be (§5.4.3): the
session table lives in the snapshot, and when it is full the session touched at the
lowest log index is expired — by log position, never by wall clock, so every replica
expires the same session at the same entry. A command from an expired (or unknown)
session is not applied; it gets ``SESSION_EXPIRED`` so the client knows exactly-once
can no longer be promised and re-registers.

Clients may pipeline: each command carries ``ack``, the lowest sequence number whose
result the client has not received yet; results below it are discarded and those
numbers answer STALE (thesis §6.3 "multiple concurrent requests"). At or above
``ack``, the session remembers exactly which numbers were applied, so pipelined
commands may commit out of order (one lost in a leader crash and retried after its
successor committed) and each is still applied once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .fsm import StateMachine
from .types import MAX_U64

__all__ = [
    "SessionStatus",
    "SessionResult",
    "SessionError",
    "SessionStateMachine",
    "ClientSession",
    "SessionClient",
    "SessionClientBusy",
    "SessionProposal",
    "Completed",
    "GaveUp",
    "SessionEvent",
    "encode_register",
    "encode_command",
    "encode_commands",
    "decode_result",
    "decode_results",
]

_VERSION = 1


class SessionError(ValueError):
    """A malformed session envelope, result or snapshot."""


class SessionStatus(enum.IntEnum):
    #: The command was applied (now, or earlier: then ``cached`` is True).
    OK = 0
    #: REGISTER succeeded; ``client_id`` is the new session's id.
    REGISTERED = 1
    #: The session is unknown or expired: the command was NOT applied.
    SESSION_EXPIRED = 2
    #: The client already acknowledged this sequence number (``ack`` moved past it), so
    #: it was applied before and its result discarded. Not applied again.
    STALE = 3
    #: The entry is not a valid session envelope; nothing was applied.
    INVALID = 4
    #: The session already holds ``max_responses`` unacknowledged results: the command
    #: was NOT applied. The client must acknowledge earlier results (raise ``ack``)
    #: and retry it.
    WINDOW_FULL = 5


@dataclass(frozen=True)
class SessionResult:
    status: SessionStatus
    client_id: int = 0
    seq: int = 0
    payload: bytes = b""
    cached: bool = False

    def encode(self) -> bytes:
        return _packb([_VERSION, int(self.status), self.client_id, self.seq,
                       self.payload, self.cached])


def encode_register(nonce: bytes = b"") -> bytes:
    """The command that opens a session. ``nonce`` (unique per registration attempt)
    is echoed in the REGISTERED result's payload, so the server that proposed it can
    route the new client id to the client that asked."""
    if type(nonce) is not bytes or len(nonce) > 256:
        raise SessionError("nonce must be at most 256 bytes")
    return _packb([_VERSION, "register", nonce])


def encode_command(client_id: int, seq: int, payload: bytes, ack: int = 0) -> bytes:
    """Command ``seq`` (1, 2, ...) of session ``client_id``. ``ack`` is the lowest
    sequence number whose result the client still waits for (0: ``seq`` itself)."""
    _check_u64("client_id", client_id, 1)
    _check_u64("seq", seq, 1)
    _check_u64("ack", ack, 0)
    if type(payload) is not bytes:
        raise SessionError("payload must be bytes")
    return _packb([_VERSION, "cmd", client_id, seq, ack or seq, payload])


def encode_commands(client_id: int, ack: int, commands: list[tuple[int, bytes]]) -> bytes:
    """One entry carrying commands ``(seq, payload), ...`` of session ``client_id``
    (applied in this order; see the module docstring). ``ack`` as in
    :func:`encode_command` (0: the lowest seq), at most the lowest seq."""
    _check_u64("client_id", client_id, 1)
    _check_u64("ack", ack, 0)
    if not commands:
        raise SessionError("a batch entry needs at least one command")
    for seq, payload in commands:
        _check_u64("seq", seq, 1)
        if type(payload) is not bytes:
            raise SessionError("payload must be bytes")
    lowest = min(seq for seq, _ in commands)
    if ack > lowest:
        raise SessionError("ack beyond the batch's lowest sequence number")
    return _packb([_VERSION, "cmds", client_id, ack or lowest,
                   [[seq, payload] for seq, payload in commands]])


def decode_result(data: bytes) -> SessionResult:
    """The result of an entry holding one command (or a registration); a batch entry's
    is a list: :func:`decode_results`."""
    return _result_of(_unpack(data))


def decode_results(data: bytes) -> list[SessionResult]:
    """The session results of any entry, in its commands' order: one for a single
    command or a registration, one per command for a batch entry."""
    obj = _unpack(data)
    if isinstance(obj, list) and len(obj) == 4 and obj[0] == _VERSION and obj[1] == "results":
        _, _, client_id, rows = obj
        _check_u64("client_id", client_id, 1)
        if not isinstance(rows, list) or not rows:
            raise SessionError("malformed batch result")
        out = []
        for row in rows:   # one row per command: [status, seq, payload, cached]
            if not (type(row) is list and len(row) == 4):
                raise SessionError("malformed batch result")
            status, seq, payload, cached = row
            out.append(_checked_result(status, client_id, seq, payload, cached))
        return out
    return [_result_of(obj)]


def _result_of(obj: Any) -> SessionResult:
    if not (isinstance(obj, list) and len(obj) == 6 and obj[0] == _VERSION):
        raise SessionError("not a session result")
    _, status, client_id, seq, payload, cached = obj
    return _checked_result(status, client_id, seq, payload, cached)


def _checked_result(status: Any, client_id: Any, seq: Any, payload: Any,
                    cached: Any) -> SessionResult:
    if type(status) is not int or status not in SessionStatus._value2member_map_:
        raise SessionError(f"unknown session status {status!r}")
    _check_u64("client_id", client_id, 0)
    _check_u64("seq", seq, 0)
    if type(payload) is not bytes or type(cached) is not bool:
        raise SessionError("malformed session result")
    return SessionResult(SessionStatus(status), client_id, seq, payload, cached)


def _packb(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _check_u64(name: str, v: Any, lo: int) -> None:
    if type(v) is not int or not lo <= v <= MAX_U64:
        raise SessionError(f"{name} must be an integer in [{lo}, 2**64), got {v!r}")


def _unpack(data: bytes) -> Any:
    if type(data) is not bytes:
        raise SessionError("expected bytes")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types on malformed input
        raise SessionError(f"malformed msgpack: {exc}") from None


@dataclass
class _Session:
    last_index: int  # log index of the last command touching it (the LRU key)
    #: Every sequence number below it was applied and its result acknowledged by the
    #: client (the highest ``ack`` seen).
    floor: int = 1
    #: Results of the commands applied at or above ``floor``. A sequence number at or
    #: above ``floor`` that is not here was never applied (thesis §6.3): commands of a
    #: pipelining client may commit out of order, e.g. when one is lost in a leader
    #: crash and retried after its successor committed.
    responses: dict[int, bytes] = field(default_factory=dict)

    def highest(self) -> int:
        return max(self.responses) if self.responses else self.floor - 1


class SessionStateMachine:
    """Wraps an application :class:`StateMachine` with client sessions.

    ``max_sessions`` bounds the table (LRU by log index); ``max_responses`` bounds the
    unacknowledged results kept per session (a client pipelining more than that gets
    WINDOW_FULL, without application, until it acknowledges). ``batch_entries``: the
    inner machine's commands may share a log index, so batch entries are applied
    (module docstring); every replica must be built with the same value."""

    def __init__(self, inner: StateMachine, *, max_sessions: int = 4096,
                 max_responses: int = 64, batch_entries: bool = False) -> None:
        if max_sessions < 1 or max_responses < 1:
            raise ValueError("session limits must be positive")
        self.inner = inner
        self.batch_entries = batch_entries
        self.max_sessions = max_sessions
        self.max_responses = max_responses
        self._sessions: dict[int, _Session] = {}

    def sessions(self) -> dict[int, int]:
        """client id -> highest applied sequence number (for inspection; with pipelining
        a lower one may still be unapplied: use :meth:`has_applied`)."""
        return {c: s.highest() for c, s in self._sessions.items()}

    def has_applied(self, client_id: int, seq: int) -> bool:
        """Whether command ``seq`` of session ``client_id`` was applied (False also when
        the session is unknown or expired)."""
        s = self._sessions.get(client_id)
        return s is not None and (seq < s.floor or seq in s.responses)

    def apply(self, index: int, data: bytes) -> bytes:
        try:
            obj = _unpack(data)
        except SessionError:
            return SessionResult(SessionStatus.INVALID).encode()
        if (isinstance(obj, list) and len(obj) == 3 and obj[:2] == [_VERSION, "register"]
                and type(obj[2]) is bytes):
            return self._register(index, obj[2]).encode()
        if (self.batch_entries and isinstance(obj, list) and len(obj) == 5
                and obj[:2] == [_VERSION, "cmds"]):
            return self._batch(index, obj)
        if not (isinstance(obj, list) and len(obj) == 6 and obj[0] == _VERSION
                and obj[1] == "cmd"):
            return SessionResult(SessionStatus.INVALID).encode()
        _, _, client_id, seq, ack, payload = obj
        try:
            _check_u64("client_id", client_id, 1)
            _check_u64("seq", seq, 1)
            _check_u64("ack", ack, 0)
            if type(payload) is not bytes:
                raise SessionError("payload must be bytes")
            if ack > seq:
                raise SessionError("ack beyond the command's own sequence number")
        except SessionError:
            return SessionResult(SessionStatus.INVALID).encode()
        return self._command(index, client_id, seq, ack, payload).encode()

    def _batch(self, index: int, obj: list[Any]) -> bytes:
        """A batch entry (encode_commands): every command validated before any is
        applied (a malformed entry changes nothing), then each in order as if alone."""
        _, _, client_id, ack, commands = obj
        try:
            _check_u64("client_id", client_id, 1)
            _check_u64("ack", ack, 0)
            if not isinstance(commands, list) or not commands:
                raise SessionError("no commands")
            for c in commands:
                if not (isinstance(c, list) and len(c) == 2 and type(c[1]) is bytes):
                    raise SessionError("malformed command")
                _check_u64("seq", c[0], 1)
                if ack > c[0]:
                    raise SessionError("ack beyond a command's own sequence number")
        except SessionError:
            return SessionResult(SessionStatus.INVALID).encode()
        rows = []
        for seq, payload in commands:
            r = self._command(index, client_id, seq, ack, payload)
            rows.append([int(r.status), seq, r.payload, r.cached])
        return _packb([_VERSION, "results", client_id, rows])

    def _register(self, index: int, nonce: bytes) -> SessionResult:
        # thesis §6.3: the session id is the index of the registration entry: unique
        # and identical on every replica.
        self._sessions[index] = _Session(last_index=index)
        self._expire(keep=index)
        return SessionResult(SessionStatus.REGISTERED, client_id=index, payload=nonce)

    def _expire(self, keep: int) -> None:
        while len(self._sessions) > self.max_sessions:
            victim = min((s.last_index, c) for c, s in self._sessions.items() if c != keep)[1]
            del self._sessions[victim]

    def _command(self, index: int, client_id: int, seq: int, ack: int,
                 payload: bytes) -> SessionResult:
        s = self._sessions.get(client_id)
        if s is None:
            return SessionResult(SessionStatus.SESSION_EXPIRED, client_id, seq)
        s.last_index = index
        if ack > s.floor:
            # The client has every result below ack: forget them (thesis §6.3).
            s.floor = ack
            for old in [k for k in s.responses if k < ack]:
                del s.responses[old]
        if seq < s.floor:
            return SessionResult(SessionStatus.STALE, client_id, seq)
        cached = s.responses.get(seq)
        if cached is not None:
            return SessionResult(SessionStatus.OK, client_id, seq, cached, cached=True)
        if len(s.responses) >= self.max_responses:
            # Dropping a result the client has not acknowledged would make a retry of
            # it indistinguishable from a new command; refuse instead.
            return SessionResult(SessionStatus.WINDOW_FULL, client_id, seq)
        result = self.inner.apply(index, payload)
        s.responses[seq] = result
        return SessionResult(SessionStatus.OK, client_id, seq, result)

    def snapshot(self) -> bytes:
        table = [[c, s.last_index, s.floor, sorted(s.responses.items())]
                 for c, s in sorted(self._sessions.items())]
        return _packb([_VERSION, self.inner.snapshot(), table])

    def restore(self, data: bytes) -> None:
        obj = _unpack(data)
        if not (isinstance(obj, list) and len(obj) == 3 and obj[0] == _VERSION
                and type(obj[1]) is bytes and isinstance(obj[2], list)):
            raise SessionError("not a session snapshot")
        sessions: dict[int, _Session] = {}
        for row in obj[2]:
            if not (isinstance(row, list) and len(row) == 4 and isinstance(row[3], list)):
                raise SessionError("malformed session row")
            c, last, floor, responses = row
            _check_u64("client_id", c, 1)
            _check_u64("last_index", last, 0)
            _check_u64("floor", floor, 1)
            rs: dict[int, bytes] = {}
            for pair in responses:
                if not (isinstance(pair, list) and len(pair) == 2 and type(pair[1]) is bytes):
                    raise SessionError("malformed cached response")
                _check_u64("seq", pair[0], floor)
                rs[pair[0]] = pair[1]
            sessions[c] = _Session(last, floor, rs)
        # Validate everything before changing anything; the inner restore validates
        # its own part and raises without change.
        self.inner.restore(obj[1])
        self._sessions = sessions


class ClientSession:
    """The client's side (sans-I/O): numbers commands and remembers what to retry."""

    def __init__(self, client_id: int) -> None:
        _check_u64("client_id", client_id, 1)
        self.client_id = client_id
        self._next_seq = 1
        self._outstanding: dict[int, bytes] = {}

    def command(self, payload: bytes) -> tuple[int, bytes]:
        """A new command: its sequence number and the bytes to propose."""
        seq = self._next_seq
        self._next_seq += 1
        self._outstanding[seq] = payload
        return seq, self.encoded(seq)

    def encoded(self, seq: int) -> bytes:
        """The bytes to propose for ``seq``, first time or retry (a retry may carry a
        newer ``ack``; the command is the same)."""
        ack = min(self._outstanding) if self._outstanding else seq
        return encode_command(self.client_id, seq, self._outstanding[seq], ack)

    def outstanding(self) -> list[int]:
        return sorted(self._outstanding)

    def completed(self, seq: int) -> None:
        self._outstanding.pop(seq, None)


# --- the client's whole protocol, sans-I/O ---------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionProposal:
    """Bytes the client wants proposed now. ``seq`` 0 is a registration; ``attempt``
    counts the times this command (or this registration round) was proposed."""

    data: bytes
    seq: int
    attempt: int

    @property
    def is_retry(self) -> bool:
        return self.attempt > 1


@dataclass(frozen=True, slots=True)
class Completed:
    """Request ``request`` (the number :meth:`SessionClient.submit` returned) was
    applied as command ``seq``; ``result.payload`` is the state machine's result and
    ``result.cached`` says a retry was answered from the session's cache."""

    request: int
    seq: int
    result: SessionResult


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The client stopped trying request ``request``. ``applied`` is False when it is
    known not to have been applied (its session expired), None when the outcome is
    unknown (it may still commit: the client protocol's ``timeout``)."""

    request: int
    seq: int
    reason: str
    applied: bool | None


SessionEvent = Completed | GaveUp


@dataclass(slots=True)
class _Pending:
    request: int
    payload: bytes
    seq: int = 0
    attempt: int = 0
    due: int = 0  # tick at (or after) which it is (re)proposed


class SessionClient:
    """One client of a :class:`SessionStateMachine` (thesis §6.3), sans-I/O: ticks,
    submitted payloads and applied session results in; proposals and outcomes out.

    * registers first, with ``nonce`` (a later round, after an expiry, appends
      ``.N``), and keeps the first REGISTERED result echoing its current nonce;
    * numbers commands 1, 2, ... and keeps up to ``window`` of them in flight
      (pipelining is safe: the session applies each number once even when they commit
      out of order; it does not order them — submit one at a time when order matters);
    * re-proposes a command (or the registration) unanswered for ``retry_ticks``
      through the same session, so a retry is applied at most once, and after
      ``dropped_retry_ticks`` when the node refused the proposal (:meth:`dropped`);
    * on SESSION_EXPIRED registers again; the expired session's commands are given up
      (:class:`GaveUp`: the one answered EXPIRED with ``applied=False``, the others
      unknown), queued ones carry over to the new session;
    * gives up a command after ``max_attempts`` proposals (0: never) with
      ``applied=None``;
    * bounds its queue: :meth:`submit` raises :class:`SessionClientBusy` over
      ``max_queued`` requests not yet answered.

    Results are matched by (client id, seq): feed it every session result the node
    it proposes through applies (:meth:`on_result`); others are ignored.
    """

    def __init__(self, nonce: bytes, *, retry_ticks: int, window: int = 1,
                 dropped_retry_ticks: int = 2, max_attempts: int = 0, max_queued: int = 1024) -> None:
        if type(nonce) is not bytes or not 0 < len(nonce) <= 240:
            raise ValueError("nonce must be 1 to 240 bytes")
        for name, v, lo in (("retry_ticks", retry_ticks, 1), ("window", window, 1),
                            ("dropped_retry_ticks", dropped_retry_ticks, 1),
                            ("max_attempts", max_attempts, 0), ("max_queued", max_queued, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        self._base_nonce = nonce
        self.retry_ticks = retry_ticks
        self.window = window
        self.dropped_retry_ticks = dropped_retry_ticks
        self.max_attempts = max_attempts
        self.max_queued = max_queued
        self._now = 0
        self._round = 0
        self._session: ClientSession | None = None
        self._register_attempt = 0
        self._register_due = 0
        self._queue: list[_Pending] = []  # submitted, not yet numbered
        self._inflight: dict[int, _Pending] = {}  # seq -> request
        self._events: list[SessionEvent] = []
        self._next_request = 1

    # -- inspection

    @property
    def nonce(self) -> bytes:
        """The nonce of the current registration round."""
        return self._base_nonce if self._round == 0 else self._base_nonce + b".%d" % self._round

    @property
    def client_id(self) -> int | None:
        return self._session.client_id if self._session is not None else None

    def pending(self) -> int:
        """Requests submitted and not yet completed or given up."""
        return len(self._queue) + len(self._inflight)

    def inflight_seqs(self) -> list[int]:
        return sorted(self._inflight)

    # -- inputs

    def tick(self) -> None:
        self._now += 1

    def submit(self, payload: bytes) -> int:
        """Queue a command; returns its request number (events name it)."""
        if type(payload) is not bytes:
            raise TypeError("payload must be bytes")
        if self.pending() >= self.max_queued:
            raise SessionClientBusy(f"{self.max_queued} requests already pending")
        request = self._next_request
        self._next_request += 1
        self._queue.append(_Pending(request, payload))
        return request

    def dropped(self, seq: int) -> None:
        """The node refused the proposal of ``seq`` (0: the registration), e.g. no
        leader known: propose it again soon (a new leader is usually found within an
        election timeout) rather than after a whole ``retry_ticks``."""
        soon = self._now + self.dropped_retry_ticks
        if seq == 0:
            self._register_due = min(self._register_due, soon)
        elif seq in self._inflight:
            p = self._inflight[seq]
            p.due = min(p.due, soon)

    def on_result(self, result: SessionResult) -> None:
        """A session result applied by the node (any client's: only ours count)."""
        if result.status is SessionStatus.REGISTERED:
            if self._session is None and result.payload == self.nonce:
                self._session = ClientSession(result.client_id)
            return
        session = self._session
        if session is None or result.client_id != session.client_id:
            return
        p = self._inflight.get(result.seq)
        if p is None:
            return  # a late duplicate of something already answered
        status = result.status
        if status is SessionStatus.OK:
            self._finish(p)
            self._events.append(Completed(p.request, p.seq, result))
        elif status is SessionStatus.SESSION_EXPIRED:
            self._expired(p)
        elif status is SessionStatus.WINDOW_FULL:
            p.due = min(p.due, self._now + self.dropped_retry_ticks)  # not applied: again
        else:
            # STALE / INVALID: no correct client sees them for a command in flight.
            self._finish(p)
            self._events.append(GaveUp(p.request, p.seq, status.name.lower(), None))

    def abandon(self, resume_after: int = 0) -> list[GaveUp]:
        """Drop the session and everything pending (the client crashed or quits); a
        :meth:`poll` ``resume_after`` ticks from now registers a new round. Returns the
        outcomes given up."""
        out = [GaveUp(p.request, p.seq, "abandoned", None)
               for p in [*self._inflight.values(), *self._queue]]
        self._inflight.clear()
        self._queue.clear()
        self._new_round()
        self._register_due = self._now + resume_after
        return out

    # -- outputs

    def poll(self) -> list[SessionProposal]:
        """What to propose now, in order: the registration, new commands up to the
        window, then retries due (oldest sequence number first)."""
        out: list[SessionProposal] = []
        session = self._session
        if session is None:
            if self._now >= self._register_due:
                self._register_attempt += 1
                self._register_due = self._now + self.retry_ticks
                out.append(SessionProposal(encode_register(self.nonce), 0, self._register_attempt))
            return out
        while self._queue and len(self._inflight) < self.window:
            p = self._queue.pop(0)
            p.seq, data = session.command(p.payload)
            p.attempt, p.due = 1, self._now + self.retry_ticks
            self._inflight[p.seq] = p
            out.append(SessionProposal(data, p.seq, 1))
        for seq in sorted(self._inflight):
            p = self._inflight[seq]
            if self._now < p.due:
                continue
            if self.max_attempts and p.attempt >= self.max_attempts:
                self._finish(p)
                self._events.append(GaveUp(p.request, seq, "attempts", None))
                continue
            p.attempt += 1
            p.due = self._now + self.retry_ticks
            out.append(SessionProposal(session.encoded(seq), seq, p.attempt))
        return out

    def events(self) -> list[SessionEvent]:
        """Outcomes since the last call, in the order they happened."""
        out, self._events = self._events, []
        return out

    # -- internals

    def _finish(self, p: _Pending) -> None:
        del self._inflight[p.seq]
        assert self._session is not None
        self._session.completed(p.seq)

    def _expired(self, answered: _Pending) -> None:
        for p in sorted(self._inflight.values(), key=lambda q: q.seq):
            known = p is answered
            self._events.append(GaveUp(p.request, p.seq, "session_expired", False if known else None))
        self._inflight.clear()
        self._new_round()

    def _new_round(self) -> None:
        self._session = None
        self._round += 1
        self._register_attempt = 0
        self._register_due = self._now


class SessionClientBusy(Exception):
    """The client already holds ``max_queued`` unanswered requests."""
