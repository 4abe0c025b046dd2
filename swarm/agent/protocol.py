"""The client protocol on the wire (docs/protocol.md, "Client protocol"), sans-I/O:
request payloads parsed into frozen :class:`Request` values, replies encoded, and the
stable error codes.

A request arrives on ``swarm/<swarm>/request/<node>`` as JSON. Where its reply goes:
over MQTT 5 the message's Response Topic and Correlation Data; over MQTT 3.1.1 (which
has neither) the ``reply_to`` member of the payload. A request with neither cannot be
answered and is dropped (and counted) by the caller.

Everything from outside is validated here: size, JSON, schema version, every field's
type and range (a batch's members named by their index: ``commands[3].seq``), and the
reply topic (never one of the swarm's own topics, so a client cannot make an agent
publish into another node's Raft or status topic). The embedded commands are parsed by
the state machine's own parser (swarm/agent/machine.py, so a refusal names the field)
when the service admits them, not here.

A ``propose`` carries one command (``seq`` + ``command``) or a batch (``commands``: up
to MAX_BATCH_COMMANDS of ``{"seq", "command"}``, one session); each command is still
exactly-once through its own sequence number, and one reply lists every outcome.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, NoReturn

from consensus.types import MAX_U64

__all__ = [
    "ErrorCode",
    "MAX_BATCH_COMMANDS",
    "MAX_COMMAND_BYTES",
    "MAX_REQUEST_BYTES",
    "Op",
    "ProposedCommand",
    "ReplyAddress",
    "Request",
    "RequestError",
    "encode_reply",
    "error_reply",
    "parse_request",
]

#: One command, in the state machine's canonical form (swarm.evacmap.MAX_COMMAND_BYTES:
#: the map refuses a longer one at apply, so the agent refuses it at intake).
MAX_COMMAND_BYTES = 64 * 1024
#: A request, whole: one command of the largest size plus its envelope fits, and so does
#: a batch of MAX_BATCH_COMMANDS typical commands (a map ``set_zone`` is 300-500 bytes)
#: with room to spare. A batch of big commands is split by the client (swarm.client).
MAX_REQUEST_BYTES = 256 * 1024
#: Commands in one ``propose`` batch: the session table keeps 64 unacknowledged results
#: per session (consensus.session.SessionStateMachine max_responses), so a 65th
#: command of one session beyond the acknowledged floor would only be answered ``busy``.
MAX_BATCH_COMMANDS = 64
MAX_ID_CHARS = 128
MAX_TOPIC_CHARS = 256
MAX_ITEM_CHARS = 200
#: A JSON escape of a UTF-16 surrogate (``\ud800``-``\udfff``). JSON allows one
#: unpaired, and Python then holds a str that cannot be encoded as UTF-8: echoed in a
#: reply (the id, a field name in an error message) or stored and snapshotted, it
#: raised UnicodeEncodeError on the node thread and stopped the agent. Only a payload
#: that has such an escape is checked further (pairs, an emoji say, are fine).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
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
class ProposedCommand:
    """One command of a ``propose`` request: its session sequence number and the
    command as the client sent it (JSON object), parsed by the state machine only once
    the service admits it (``AgentMachine.parse_command``)."""

    seq: int
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Request:
    op: Op
    id: str
    reply: ReplyAddress
    #: PROPOSE: the session (client id) and ack (thesis §6.3: the client holds every
    #: result below it), and the commands: one (``seq`` + ``command``), or a batch
    #: (``commands``, ``batch`` True: one reply lists every command's outcome in order).
    session: int = 0
    ack: int = 0
    commands: tuple[ProposedCommand, ...] = ()
    batch: bool = False
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
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # A string that is not Unicode text (an unpaired surrogate) reached a reply,
        # though parse_request refuses requests carrying one: escaped as JSON allows,
        # never an exception on the thread that answers.
        return json.dumps(body, separators=(",", ":")).encode()


def _unpaired_surrogate(payload: bytes, obj: object) -> bool:
    """Whether the decoded request holds a string that is not Unicode text."""
    if _SURROGATE_ESCAPE.search(payload) is None:
        return False
    try:
        json.dumps(obj, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


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
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "must be Unicode text (it holds an unpaired surrogate)"
    if value.startswith("$"):
        return "must not be a broker ($...) topic"
    if _own_topic(value, swarm):
        return f"must not be one of the swarm's own topics (swarm/{swarm}/...)"
    return None


def _u64(obj: dict[str, Any], key: str, lo: int, fail: Callable[[str], NoReturn],
         name: str | None = None) -> int:
    v = obj.get(key)
    if type(v) is not int or not lo <= v <= MAX_U64:
        fail(f"{name or key} must be an integer in [{lo}, 2**64), got {_short(v)}")
    return v


_COMMAND_KINDS = "one map command, docs/map.md, or a register put, docs/agent.md"


def _commands(obj: dict[str, Any], fail: Callable[[str], NoReturn]) -> tuple[ProposedCommand, ...]:
    """A batch's ``commands``: 1 to MAX_BATCH_COMMANDS objects ``{"seq", "command"}``
    with distinct sequence numbers; a problem names the member by its index."""
    items = obj.get("commands")
    if type(items) is not list or not 0 < len(items) <= MAX_BATCH_COMMANDS:
        fail(f"commands must be a list of 1 to {MAX_BATCH_COMMANDS} commands, got "
             + (f"{len(items)}" if type(items) is list else _short(items)))
    out: list[ProposedCommand] = []
    first: dict[int, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            fail(f"commands[{i}] must be an object {{\"seq\": ..., \"command\": {{...}}}}, "
                 f"got {_short(item)}")
        seq = _u64(item, "seq", 1, fail, f"commands[{i}].seq")
        if seq in first:
            fail(f"commands[{i}].seq {seq} repeats commands[{first[seq]}].seq (one "
                 "sequence number per command)")
        first[seq] = i
        command = item.get("command")
        if not isinstance(command, dict):
            fail(f"commands[{i}].command must be a JSON object ({_COMMAND_KINDS})")
        out.append(ProposedCommand(seq, command))
    return tuple(out)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_request(payload: bytes, swarm: str, response_topic: str | None = None,
                  correlation: bytes | None = None) -> Request:
    """Parse one request published to this node. ``response_topic`` / ``correlation``
    are the MQTT 5 properties (None over 3.1.1). Raises :class:`RequestError`.

    Everything is checked but the embedded commands, which are left as the client sent
    them (``ProposedCommand.raw``) for the state machine's parser: the map's is most of
    a request's cost (geometry), so the service first decides whether it will admit
    them at all (``busy``, a retry joining one already pending)."""
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
    if _unpaired_surrogate(payload, obj):
        fail("request: holds a \\ud800-\\udfff escape that is not part of a surrogate "
             "pair, so a string in it is not Unicode text")
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
        batch = "commands" in obj
        if batch and ("seq" in obj or "command" in obj):
            fail("a propose carries either seq and command (one command) or commands "
                 "(a batch), not both")
        if batch:
            commands = _commands(obj, fail)
        else:
            seq = _u64(obj, "seq", 1, fail)
            command = obj.get("command")
            if not isinstance(command, dict):
                fail(f"command must be a JSON object ({_COMMAND_KINDS})")
            commands = (ProposedCommand(seq, command),)
        lowest = min(c.seq for c in commands)
        ack = _u64(obj, "ack", 0, fail) if "ack" in obj else lowest
        if ack > lowest:
            fail(f"ack ({ack}) must not exceed seq ({lowest})" if not batch else
                 f"ack ({ack}) must not exceed the lowest seq of the batch ({lowest})")
        return Request(op, request_id, reply, session=session, ack=ack, commands=commands,
                       batch=batch)
    if op is Op.READ:
        item = obj.get("item")
        if item is not None and (type(item) is not str or not 0 < len(item) <= MAX_ITEM_CHARS):
            fail(f"item must be a feature id string of 1 to {MAX_ITEM_CHARS} characters")
        return Request(op, request_id, reply, item=item)
    return Request(op, request_id, reply)

