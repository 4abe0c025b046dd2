"""The client protocol on the wire (docs/protocol.md, "Client protocol"), sans-I/O:
request payloads parsed into frozen :class:`Request` values, replies encoded, and the
stable error codes.

A request arrives on ``swarm/<swarm>/request/<node>`` as JSON. Where its reply goes:
over MQTT 5 the message's Response Topic and Correlation Data; over MQTT 3.1.1 (which
has neither) the ``reply_to`` member of the payload. A request with neither cannot be
answered and is dropped (and counted) by the caller.

Everything from outside is validated here: size, JSON, schema version, every field's
type and range, the embedded command (by the state machine's own parser,
swarm/agent/machine.py, so a rejection names the field), and the reply topic (never one
of the swarm's own topics, so a client cannot make an agent publish into another node's
Raft or status topic).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, NoReturn

from consensus.types import MAX_U64

from .machine import CommandRefused

__all__ = [
    "ErrorCode",
    "MAX_REQUEST_BYTES",
    "Op",
    "ReplyAddress",
    "Request",
    "RequestError",
    "encode_reply",
    "error_reply",
    "parse_command_of",
    "parse_request",
]

#: A request is one map command (swarm.evacmap.MAX_COMMAND_BYTES) plus a little envelope.
MAX_REQUEST_BYTES = 64 * 1024 + 4096
MAX_ID_CHARS = 128
MAX_TOPIC_CHARS = 256
MAX_ITEM_CHARS = 200
MAX_NONCE_CHARS = 200
_VERSION = 1


class Op(enum.Enum):
    REGISTER = "register"
    PROPOSE = "propose"
    READ = "read"
    STATUS = "status"


class ErrorCode(enum.Enum):
    """The stable error codes of docs/protocol.md (clients switch on them)."""

    INVALID = "invalid"                  # the state machine refused the command (names the field)
    BAD_REQUEST = "bad_request"          # the request itself is malformed
    NO_LEADER = "no_leader"              # no leader known now: retry
    BUSY = "busy"                        # a bound is full: retry later
    TIMEOUT = "timeout"                  # outcome unknown: retry with the same session+seq
    SESSION_EXPIRED = "session_expired"  # register again
    NOT_FOUND = "not_found"              # read of an item that does not exist
    UNAUTHORIZED = "unauthorized"        # ground station actions without the right token


@dataclass(frozen=True, slots=True)
class ReplyAddress:
    """Where a reply goes: a topic, and the MQTT 5 Correlation Data to echo (None over
    3.1.1)."""

    topic: str
    correlation: bytes | None = None


@dataclass(frozen=True, slots=True)
class Request:
    op: Op
    id: str
    reply: ReplyAddress
    #: PROPOSE: the session (client id), sequence number and ack (thesis §6.3).
    session: int = 0
    seq: int = 0
    ack: int = 0
    #: PROPOSE: the command in the state machine's canonical form (what is proposed);
    #: empty until :func:`parse_command_of` parsed ``raw_command``.
    command: bytes = b""
    raw_command: dict[str, Any] | None = None
    #: READ: one item (a GeoJSON feature id such as "zone:fire-1"), or None: the map.
    item: str | None = None
    #: REGISTER: the client's unique string, echoed by the committed registration.
    nonce: str = ""


class RequestError(ValueError):
    """A request that cannot be served. ``reply`` is where to say so (None when the
    request did not even name a reply address), ``request_id`` its id if it had one."""

    def __init__(self, code: ErrorCode, message: str, reply: ReplyAddress | None,
                 request_id: str | None) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.reply = reply
        self.request_id = request_id


def encode_reply(request_id: str | None, status: str, **fields: Any) -> bytes:
    """A reply payload: ``{"v": 1, "id": ..., "status": ..., ...}`` (compact JSON)."""
    body: dict[str, Any] = {"v": _VERSION, "id": request_id, "status": status, **fields}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def error_reply(request_id: str | None, code: ErrorCode, message: str) -> bytes:
    return encode_reply(request_id, "error", code=code.value, message=message)


def _own_topic(topic: str, swarm: str) -> bool:
    # Every topic of docs/protocol.md lives under swarm/<swarm>/<kind>; replies must go
    # elsewhere (clients use e.g. swarm-client/<client id>/reply).
    return topic == f"swarm/{swarm}" or topic.startswith(f"swarm/{swarm}/")


def _check_topic(value: object, swarm: str) -> str | None:
    """The problem with a reply topic, or None if it is fine."""
    if type(value) is not str or not value:
        return "must be a non-empty string"
    if len(value) > MAX_TOPIC_CHARS:
        return f"is longer than {MAX_TOPIC_CHARS} characters"
    if any(c in value for c in "+#\x00"):
        return "must not contain '+', '#' or NUL (it is a topic, not a filter)"
    if value.startswith("$"):
        return "must not be a broker ($...) topic"
    if _own_topic(value, swarm):
        return f"must not be one of the swarm's own topics (swarm/{swarm}/...)"
    return None


def _u64(obj: dict[str, Any], key: str, lo: int, fail: Callable[[str], NoReturn]) -> int:
    v = obj.get(key)
    if type(v) is not int or not lo <= v <= MAX_U64:
        fail(f"{key} must be an integer in [{lo}, 2**64), got {_short(v)}")
    return v


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_request(payload: bytes, swarm: str, response_topic: str | None = None,
                  correlation: bytes | None = None) -> Request:
    """Parse one request published to this node. ``response_topic`` / ``correlation``
    are the MQTT 5 properties (None over 3.1.1). Raises :class:`RequestError`.

    Everything is checked but the embedded command, which is left in ``raw_command``
    for :func:`parse_command_of`: the map's own parser is most of a request's cost
    (geometry), so the service first decides whether it will admit the request at all
    (``busy``, a retry joining one already pending)."""
    reply: ReplyAddress | None = None
    request_id: str | None = None
    if response_topic is not None:
        problem = _check_topic(response_topic, swarm)
        if problem is None:
            if correlation is not None and (type(correlation) is not bytes
                                            or len(correlation) > 256):
                correlation = None
            reply = ReplyAddress(response_topic, correlation)

    def fail(message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> NoReturn:
        raise RequestError(code, message, reply, request_id)

    if response_topic is not None and reply is None:
        fail(f"response topic {_short(response_topic)} {_check_topic(response_topic, swarm)}")
    if type(payload) is not bytes:
        fail("payload must be bytes")
    if len(payload) > MAX_REQUEST_BYTES:
        fail(f"request is {len(payload)} bytes, over the {MAX_REQUEST_BYTES}-byte limit")
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        fail(f"not JSON: {str(exc)[:120]}")
    if not isinstance(obj, dict):
        fail("a request is a JSON object")
    raw_id = obj.get("id")
    if type(raw_id) is str and 0 < len(raw_id) <= MAX_ID_CHARS:
        request_id = raw_id
    if reply is None and "reply_to" in obj:
        problem = _check_topic(obj["reply_to"], swarm)
        if problem is not None:
            fail(f"reply_to {problem}")
        reply = ReplyAddress(obj["reply_to"], None)
    if obj.get("v") != _VERSION:
        fail(f"v must be {_VERSION}, got {_short(obj.get('v'))}")
    if request_id is None:
        fail(f"id must be a string of 1 to {MAX_ID_CHARS} characters, got {_short(raw_id)}")
    if reply is None:
        fail("no reply address: send a Response Topic (MQTT 5) or reply_to (MQTT 3.1.1)")
    assert reply is not None and request_id is not None
    try:
        op = Op(obj.get("op"))
    except ValueError:
        fail(f"op must be one of {', '.join(o.value for o in Op)}, got {_short(obj.get('op'))}")
    if op is Op.REGISTER:
        nonce = obj.get("nonce")
        if type(nonce) is not str or not 0 < len(nonce) <= MAX_NONCE_CHARS:
            fail(f"nonce must be a string of 1 to {MAX_NONCE_CHARS} characters")
        return Request(op, request_id, reply, nonce=nonce)
    if op is Op.PROPOSE:
        session = _u64(obj, "session", 1, fail)
        seq = _u64(obj, "seq", 1, fail)
        ack = _u64(obj, "ack", 0, fail) if "ack" in obj else seq
        if ack > seq:
            fail(f"ack ({ack}) must not exceed seq ({seq})")
        command = obj.get("command")
        if not isinstance(command, dict):
            fail("command must be a JSON object (one map command, docs/map.md, or a "
                 "register put, docs/agent.md)")
        return Request(op, request_id, reply, session=session, seq=seq, ack=ack,
                       raw_command=command)
    if op is Op.READ:
        item = obj.get("item")
        if item is not None and (type(item) is not str or not 0 < len(item) <= MAX_ITEM_CHARS):
            fail(f"item must be a feature id string of 1 to {MAX_ITEM_CHARS} characters")
        return Request(op, request_id, reply, item=item)
    return Request(op, request_id, reply)


def parse_command_of(request: Request,
                     parse: Callable[[dict[str, Any]], bytes]) -> Request:
    """``request`` with its command parsed and encoded canonically (``command``) by
    ``parse``, the state machine's own parser (swarm.agent.machine.AgentMachine
    .parse_command). Raises :class:`RequestError` (``invalid``, naming the field) for a
    command the state machine refuses."""
    if request.command or request.raw_command is None:
        return request
    try:
        data = parse(request.raw_command)
    except CommandRefused as exc:
        raise RequestError(ErrorCode.INVALID, str(exc), request.reply, request.id) from None
    return dataclasses.replace(request, command=data, raw_command=None)
