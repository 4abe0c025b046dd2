"""Operator actions: a map command from the page, validated, proposed through the client
protocol (docs/protocol.md), and answered only with what the swarm said.

The ground station is a client of the swarm, not a Raft member: it proposes through
:class:`swarm.client.SwarmClient`, which registers one session and retries a command
after a timeout or a lost leader with the same (session, seq), so the swarm applies it
at most once (consensus/session.py). Proposals are serialised, one in flight at a time,
which is ample for a human.

The page is told ``committed`` (with the log index and map version) only when a node
replied so; anything else is an error with the protocol's stable code, so the page
never shows an uncommitted change as done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from swarm.client import ClientError, SwarmClient
from swarm.evacmap import Command, CommandError, decode_result, parse_command

__all__ = ["OperatorClient", "Outcome", "build_command"]

# Commands an operator may send from the page, and the fields the server fills in.
OPERATOR_COMMANDS = frozenset({
    "set_zone", "set_route", "report_survivor", "update_survivor", "set_search_area",
    "remove_zone", "remove_route", "remove_survivor", "recall", "resume",
})
_STAMPED = {"set_zone": "source", "report_survivor": "reporter", "update_survivor": "reporter"}


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
    if not isinstance(kind, str) or kind not in OPERATOR_COMMANDS:  # (a list is unhashable)
        raise CommandError(f"command.type: {repr(kind)[:80]} is not an operator action "
                           f"(allowed: {', '.join(sorted(OPERATOR_COMMANDS))})")
    fields = dict(body)
    stamp = _STAMPED.get(kind)
    if stamp is not None:
        fields.setdefault(stamp, operator)
        fields.setdefault("time_ms", now_ms)
    return parse_command(fields)


class OperatorClient:
    """The station's one client session of the swarm: :class:`swarm.client.SwarmClient`
    (registration, numbering, retries with the same session and seq, leader choice),
    run on its own thread so the event loop never blocks on it, one proposal at a time.
    """

    def __init__(self, client: SwarmClient, *, timeout_s: float = 10.0) -> None:
        self._client = client
        self.timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gcs-operator")

    async def propose(self, command: Command) -> Outcome:
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                reply = await loop.run_in_executor(self._executor, self._propose,
                                                   command.to_json())
            except ClientError as exc:
                message = str(exc)
                code = "no_leader" if "no_leader" in message else "unavailable"
                return Outcome("error", code, message)
            return _outcome(reply.body, reply.node)

    def _propose(self, command: dict[str, Any]) -> Any:
        self._client.timeout_s = self.timeout_s  # bounds registration too
        return self._client.propose(command, timeout_s=self.timeout_s)

    def close(self) -> None:
        """Disconnect the session's client (after the proposal in flight, if any, for
        at most 10 s; then regardless: its reply can no longer reach a page)."""
        try:
            self._executor.submit(self._client.close).result(timeout=10)
        except FutureTimeout:
            self._client.close()
        self._executor.shutdown(wait=False)


def _outcome(reply: Mapping[str, Any], node: int | None) -> Outcome:
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
