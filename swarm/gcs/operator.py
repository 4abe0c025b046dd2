"""Operator actions: a map command from the page, validated, proposed through the client
protocol (docs/protocol.md), and answered only with what the swarm said.

The ground station is a client of the swarm, not a Raft member. It registers one
session and proposes each command with the next sequence number; a retry after a
timeout or a lost leader reuses the same (session, seq), so the swarm applies it at
most once (consensus/session.py). Proposals are serialised: one in flight at a time,
which keeps ``ack`` (every seq below it has its answer) exact and is ample for a human.

The page is told ``committed`` (with the log index and map version) only when a node
replied so; anything else is an error with the protocol's stable code, so the page
never shows an uncommitted change as done.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from swarm.evacmap import Command, CommandError, decode_result, encode_command, parse_command

__all__ = ["OperatorClient", "Outcome", "build_command"]

# Commands an operator may send from the page, and the fields the server fills in.
OPERATOR_COMMANDS = frozenset({
    "set_zone", "set_route", "report_survivor", "update_survivor", "set_search_area",
    "remove_zone", "remove_route", "remove_survivor",
})
_STAMPED = {"set_zone": "source", "report_survivor": "reporter", "update_survivor": "reporter"}
_RETRYABLE = frozenset({"no_leader", "busy", "timeout"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the swarm answered: ``committed`` (index, map_version) or an error code."""

    status: str  # "committed" | "error"
    code: str | None = None
    message: str = ""
    index: int | None = None
    map_version: int | None = None
    node: int | None = None  # who answered

    @property
    def http_status(self) -> int:
        if self.status == "committed":
            return 200
        return {"invalid": 422, "bad_request": 400, "unauthorized": 401, "not_found": 404,
                "busy": 503, "no_leader": 503, "timeout": 504,
                "unavailable": 503}.get(self.code or "", 502)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        for name in ("code", "message", "index", "map_version", "node"):
            value = getattr(self, name)
            if value not in (None, ""):
                out[name] = value
        return out


def build_command(body: object, operator: str, now_ms: int) -> Command:
    """The map command an operator's request asks for, validated (CommandError if not).

    The page sends a command as in docs/map.md; ``source``/``reporter`` and ``time_ms``
    are stamped here (the operator's id and the server's clock) when absent, so the
    log records who changed the map and when.
    """
    if not isinstance(body, Mapping):
        raise CommandError("command: expected a JSON object")
    kind = body.get("type")
    if kind not in OPERATOR_COMMANDS:
        raise CommandError(f"command.type: {kind!r} is not an operator action "
                           f"(allowed: {', '.join(sorted(OPERATOR_COMMANDS))})")
    fields = dict(body)
    stamp = _STAMPED.get(kind)
    if stamp is not None:
        fields.setdefault(stamp, operator)
        fields.setdefault("time_ms", now_ms)
    return parse_command(fields)


Request = Callable[[int, dict[str, Any], float], Awaitable[dict[str, Any]]]


class OperatorClient:
    """One client session of the swarm, used by every operator action of this server.

    ``request(node, body, timeout)`` sends one request and returns the reply (the MQTT
    link's); ``targets()`` lists the nodes to try, best first (the leader, then any
    other reachable node: any node accepts any request, a follower forwards).
    """

    def __init__(self, request: Request, targets: Callable[[], list[int]], *,
                 attempt_timeout_s: float = 3.0, deadline_s: float = 10.0) -> None:
        self._request = request
        self._targets = targets
        self.attempt_timeout_s = attempt_timeout_s
        self.deadline_s = deadline_s
        self.session: int | None = None
        self._seq = 0
        self._lock = asyncio.Lock()

    async def propose(self, command: Command) -> Outcome:
        async with self._lock:
            deadline = time.monotonic() + self.deadline_s
            data = encode_command(command)
            last = Outcome("error", "no_leader", "no reachable node to propose to")
            seq: int | None = None
            attempt = 0
            while time.monotonic() < deadline:
                targets = self._targets()
                if not targets:
                    await asyncio.sleep(0.25)
                    continue
                node = targets[attempt % len(targets)]
                attempt += 1
                if self.session is None:
                    registered = await self._register(node)
                    if registered.status == "error":
                        last = registered
                        if registered.code not in _RETRYABLE:
                            return registered
                        await asyncio.sleep(0.2)
                        continue
                if seq is None:
                    self._seq += 1
                    seq = self._seq
                body = {"v": 1, "op": "propose", "id": _request_id(), "session": self.session,
                        "seq": seq, "ack": seq - 1, "command": _json(data)}
                reply = await self._send(node, body)
                outcome = _outcome(reply, node)
                if outcome.status == "committed" or outcome.code not in _RETRYABLE | {
                        "session_expired"}:
                    return outcome
                if outcome.code == "session_expired":
                    self.session, seq = None, None
                last = outcome
                await asyncio.sleep(0.2)
            return last

    async def _register(self, node: int) -> Outcome:
        reply = await self._send(node, {"v": 1, "op": "register", "id": _request_id(),
                                        "nonce": secrets.token_hex(12)})
        if reply.get("status") == "registered" and isinstance(reply.get("session"), int):
            self.session = reply["session"]
            self._seq = 0
            return Outcome("committed", node=node)
        return _outcome(reply, node)

    async def _send(self, node: int, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._request(node, body, self.attempt_timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            return {"status": "error", "code": "timeout",
                    "message": f"no reply from node {node} in {self.attempt_timeout_s:.0f} s"}
        except ConnectionError as exc:
            return {"status": "error", "code": "unavailable", "message": str(exc)}


def _outcome(reply: Mapping[str, Any], node: int) -> Outcome:
    status = reply.get("status")
    if status == "committed":
        result = reply.get("result")
        # The entry is committed but the map may have refused it (docs/map.md: apply
        # rejects identically on every drone): that is the operator's error to see.
        if isinstance(result, (bytes, str)):
            try:
                decoded = decode_result(result.encode() if isinstance(result, str) else result)
                if not decoded.ok:
                    return Outcome("error", "invalid", decoded.error or "refused by the map",
                                   node=node)
            except (ValueError, TypeError):
                pass
        elif isinstance(result, Mapping) and result.get("ok") is False:
            return Outcome("error", "invalid", str(result.get("error") or "refused by the map"),
                           node=node)
        index = reply.get("index")
        version = reply.get("map_version")
        return Outcome("committed", index=index if isinstance(index, int) else None,
                       map_version=version if isinstance(version, int) else None, node=node)
    if status == "error":
        code = reply.get("code")
        return Outcome("error", code if isinstance(code, str) else "error",
                       str(reply.get("message") or "the swarm refused the request"), node=node)
    return Outcome("error", "bad_reply", f"node {node} sent an unexpected reply status "
                   f"{status!r}", node=node)


def _request_id() -> str:
    return secrets.token_hex(8)


def _json(data: bytes) -> Any:
    import json
    return json.loads(data)
