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
    "encode_register",
    "encode_command",
    "decode_result",
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


def decode_result(data: bytes) -> SessionResult:
    obj = _unpack(data)
    if not (isinstance(obj, list) and len(obj) == 6 and obj[0] == _VERSION):
        raise SessionError("not a session result")
    _, status, client_id, seq, payload, cached = obj
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
    WINDOW_FULL, without application, until it acknowledges)."""

    def __init__(self, inner: StateMachine, *, max_sessions: int = 4096,
                 max_responses: int = 64) -> None:
        if max_sessions < 1 or max_responses < 1:
            raise ValueError("session limits must be positive")
        self.inner = inner
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
