"""A small synchronous client of the swarm's client protocol (docs/protocol.md),
used by the CLI (``swarm propose / read / status``), the tests, the benchmarks and the
ground station.

    with SwarmClient(["127.0.0.1:1883"], "wildfire") as client:
        reply = client.propose({"type": "remove_zone", "id": "fire-1"})
        if reply.committed: print(reply.body["index"])
        version, geojson = client.read_map()
        statuses = client.statuses()
        replies = client.propose_many([cmd1, cmd2, ...])   # batched: one Reply each

Exactly once: the client registers a session once, numbers its commands, and retries a
command after ``no_leader``, ``busy`` or ``timeout`` (and when no reply comes at all)
with the **same session and sequence number**, on any node; the swarm's session table
applies it once and answers a retry from its cache (thesis §6.3). A command answered
``session_expired`` after its one request was not applied: the client registers again
and proposes it anew; one retried before its session expired may have been applied in
it, so it is answered ``session_expired`` (outcome unknown) and not proposed again.
:meth:`SwarmClient.propose_many` does the same per command, sending up to 64 commands in
one request message and getting their outcomes in one reply (docs/protocol.md,
"Batches"): per-message costs (the broker, paho, JSON envelopes) are paid once a batch.

Which node: any node accepts any request (followers forward to the leader). The client
learns the nodes and the leader from their retained status topics and sends to the
leader when it knows one (one hop less), otherwise round-robin over online nodes.
Statuses are outside input: each is validated by :func:`swarm.node_status.parse_status`
and a malformed one is set aside (:meth:`SwarmClient.rejected`), never used.

Connecting: every call connects on first use (``connect()`` is optional, as with a
``with`` block); a broker that does not answer within ``connect_timeout_s`` is a
:class:`ClientError`, and a later call tries again. With no node online after that, a
call waits up to 5 s for one to publish its status, then raises :class:`ClientError`.

Thread-safety: one thread at a time per client (calls are synchronous); replies arrive
on paho's network thread and are handed over through per-request events.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm.bus import topics
from swarm.bus.client import BrokerAddress, Bus, BusConfig, MqttVersion, Received, TlsConfig
from swarm.node_status import NodeStatus, StatusError, leader_of, parse_status

__all__ = ["ClientError", "Reply", "SwarmClient", "RETRYABLE", "reply_problem"]

#: Error codes after which the same request may be sent again (docs/protocol.md).
log = logging.getLogger(__name__)
RETRYABLE = frozenset({"no_leader", "busy", "timeout"})


class ClientError(RuntimeError):
    """The client could not do what was asked (no broker, no node answered ...)."""


def _u64(value: object) -> bool:
    return type(value) is int and 0 <= value < 1 << 64


def reply_problem(body: object) -> str | None:
    """What is wrong with a reply payload (decoded JSON) by docs/protocol.md, or None:
    the fields a caller reads (``Reply`` and its users: the session, the map and its
    version, each batch member's seq and outcome) have their types, so a forged or
    garbled reply can neither crash a caller nor pass for an answer."""
    if not isinstance(body, dict):
        return "not a JSON object"
    status = body.get("status")
    if status == "error":
        if not isinstance(body.get("code"), str) or not isinstance(body.get("message", ""), str):
            return "an error without a string code and message"
        return None
    if status == "committed":
        if not (_u64(body.get("index")) and _u64(body.get("map_version"))
                and type(body.get("cached", False)) is bool):
            return "committed without an integer index and map_version"
        return None
    if status == "registered":
        return None if _u64(body.get("session")) and body["session"] > 0 else \
            "registered without a session id"
    if status == "ok":
        if isinstance(body.get("node"), dict):
            return None   # the status op
        if not _u64(body.get("map_version")) or not ("item" in body or isinstance(
                body.get("map"), dict)):
            return "ok without a map_version and a map or an item"
        return None
    if status == "batch":
        results = body.get("results")
        if not isinstance(results, list):
            return "batch without a results list"
        for k, r in enumerate(results):
            if not isinstance(r, dict) or not _u64(r.get("seq")):
                return f"results[{k}]: not an object with an integer seq"
            problem = reply_problem(r)
            if problem is not None or r.get("status") not in ("committed", "error"):
                return f"results[{k}]: {problem or 'neither committed nor error'}"
        return None
    return f"unknown status {str(status)[:40]!r}"


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply as sent by a node: ``status`` is ``committed``, ``registered``, ``ok``
    or ``error`` (then ``code`` and ``message``). ``body`` is the whole JSON object."""

    body: Mapping[str, Any]
    node: int | None = None
    attempts: int = 1

    @property
    def status(self) -> str:
        return str(self.body.get("status"))

    @property
    def committed(self) -> bool:
        return self.status == "committed"

    @property
    def ok(self) -> bool:
        return self.status in ("committed", "registered", "ok")

    @property
    def code(self) -> str | None:
        code = self.body.get("code")
        return str(code) if code is not None else None

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


class _Waiter:
    """Where the replies of one call's attempts go: the first one wins. ``nudged``: a
    status said the node an attempt waits on is gone or no longer leads (the event is
    set without a reply: try elsewhere now rather than after the hedge delay)."""

    __slots__ = ("event", "reply", "rid", "nudged", "hedging")

    def __init__(self, hedging: bool = False) -> None:
        self.event = threading.Event()
        self.reply: dict[str, Any] | None = None
        self.rid: str | None = None
        self.nudged = False
        self.hedging = hedging  # only a call that may try elsewhere is nudged

    def reset(self) -> None:
        self.reply = None
        self.rid = None
        self.nudged = False
        self.event.clear()


class SwarmClient:
    """See the module docstring. ``brokers``: ``"HOST[:PORT]"`` strings (or a ready
    :class:`swarm.bus.client.BusConfig` via ``bus_config``). ``attempt_timeout_s`` is
    how long one attempt waits before the call also tries the next node (and how long
    :meth:`request` waits); ``timeout_s`` bounds a whole call."""

    def __init__(self, brokers: Sequence[str] = (), swarm: str = "wildfire", *,
                 protocol: str = "5", client_id: str | None = None,
                 username: str | None = None, password: str | None = None,
                 tls: TlsConfig | None = None, bus_config: BusConfig | None = None,
                 timeout_s: float = 30.0, attempt_timeout_s: float = 1.0,
                 connect_timeout_s: float = 10.0) -> None:
        self.swarm = topics.check_swarm_id(swarm)
        self.client_id = client_id or f"client-{uuid.uuid4().hex[:16]}"
        if bus_config is None:
            if not brokers:
                raise ValueError("give at least one broker (HOST[:PORT])")
            bus_config = BusConfig(
                brokers=tuple(BrokerAddress.parse(b, 8883 if tls else 1883) for b in brokers),
                client_id=self.client_id, protocol=MqttVersion(protocol), username=username,
                password=password, tls=tls)
        self.bus_config = bus_config
        self.v5 = bus_config.protocol is MqttVersion.V5
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.reply_topic = f"swarm-client/{self.client_id}/reply"
        self._bus = Bus(bus_config)
        self._lock = threading.Lock()
        self._waiters: dict[str, _Waiter] = {}
        self._nodes: dict[str, int] = {}   # request id -> node it was sent to
        # Per node, its latest status: valid, or refused (why).
        self._statuses: dict[int, NodeStatus] = {}
        self._rejected: dict[int, str] = {}
        #: Replies set aside as malformed (reply_problem); see malformed_replies().
        self._malformed_replies = 0
        self._status_event = threading.Event()
        self._ids = itertools.count(1)
        self._rr = itertools.count()
        self.session: int | None = None
        self._next_seq = 1
        self._started = False
        self._connect_lock = threading.Lock()

    # -- connection --------------------------------------------------------------------

    def connect(self) -> "SwarmClient":
        """Connect to the first broker that answers and subscribe to the replies and
        the nodes' statuses. Called by every request, so calling it is optional; raises
        :class:`ClientError` when no broker answers (a later call tries again)."""
        with self._connect_lock:
            if self._started:
                return self
            self._bus.subscribe(self.reply_topic, self._on_reply, qos=1)
            self._bus.subscribe(topics.wildcard(self.swarm, topics.Kind.STATUS),
                                self._on_status, qos=1)
            self._bus.start()
            if not self._bus.wait_connected(self.connect_timeout_s):
                self._bus.close()
                self._bus = Bus(self.bus_config)  # a Bus starts once: a fresh one to retry
                raise ClientError(f"no broker answered within {self.connect_timeout_s:g} s "
                                  f"({', '.join(map(str, self.bus_config.brokers))})")
            self._started = True
            return self

    def close(self) -> None:
        self._bus.close()

    def __enter__(self) -> "SwarmClient":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_reply(self, msg: Received) -> None:
        try:
            body = json.loads(msg.payload)
        except (ValueError, RecursionError):
            return
        problem = reply_problem(body)
        if problem is not None:
            # Outside input (anyone allowed to publish on the reply topic): a reply that
            # breaks docs/protocol.md is set aside, and the call waits for a real one.
            with self._lock:
                self._malformed_replies += 1
            log.debug("ignored a malformed reply on %s: %s", msg.topic, problem)
            return
        key = body.get("id")
        if msg.correlation_data is not None:
            try:
                key = msg.correlation_data.decode()
            except UnicodeDecodeError:
                return
        with self._lock:
            waiter = self._waiters.get(key) if isinstance(key, str) else None
            if waiter is not None and waiter.reply is None:
                waiter.reply = body
                waiter.rid = key
                waiter.event.set()

    def _on_status(self, msg: Received) -> None:
        try:
            topic = topics.parse(msg.topic)
        except topics.TopicError:
            return
        if topic.node is None:
            return
        node = topic.node
        if not msg.payload:
            # An empty retained message deletes the retained status (MQTT 3.3.1.3): the
            # node has no status now, which is not a malformed one.
            with self._lock:
                self._statuses.pop(node, None)
                self._rejected.pop(node, None)
            return
        try:
            status = parse_status(msg.payload, node)
        except StatusError as exc:
            # The node's latest word is unusable: forget what it said before too (a
            # fresh client, seeing only this retained payload, would know nothing of
            # it either), and keep why for `swarm status`.
            with self._lock:
                self._statuses.pop(node, None)
                self._rejected[node] = str(exc)
            self._status_event.set()
            return
        gone = not status.online
        leads = status.role == "leader"
        with self._lock:
            self._statuses[node] = status
            self._rejected.pop(node, None)
            if gone or leads:
                # A crashed leader's Last Will, or a new leader: attempts waiting on the
                # vanished node, or on any other node once a leader speaks, are retried
                # now (failover costs an election, not a hedge delay).
                for rid, waiting_on in self._nodes.items():
                    waiter = self._waiters.get(rid)
                    if (waiter is not None and waiter.hedging and waiter.reply is None
                            and (waiting_on == node) == gone):
                        waiter.nudged = True
                        waiter.event.set()
        self._status_event.set()

    # -- status ------------------------------------------------------------------------

    def statuses(self, wait_s: float = 1.0) -> dict[int, dict[str, Any]]:
        """Every node's latest retained status (``online: false`` for a node whose
        agent stopped or vanished), as published, for the nodes whose latest status is
        valid (the others: :meth:`rejected`). Waits up to ``wait_s`` until it holds one
        from every voter the statuses name (retained statuses arrive one by one just
        after subscribing, and on a loaded machine the burst can take longer than a
        moment: a table missing the leader's row would say there is none); with no
        voter list to go by, waits for a first status and then a moment for the rest.
        A node whose status was refused has spoken: it is not waited for."""
        self.connect()
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                held = set(self._statuses) | set(self._rejected)
                named = _named_voters(self._statuses.values())
                if held and named and named <= held:
                    return {n: dict(s.raw) for n, s in sorted(self._statuses.items())}
                # set again by the next status (it is stored under the lock, then set)
                self._status_event.clear()
            left = deadline - time.monotonic()
            if left <= 0 or (held and not named):
                break
            self._status_event.wait(left)
        if held and not named:
            time.sleep(max(0.0, min(0.2, deadline - time.monotonic())))
        with self._lock:
            return {n: dict(s.raw) for n, s in sorted(self._statuses.items())}

    def malformed_replies(self) -> int:
        """Replies that arrived and were set aside as breaking docs/protocol.md."""
        with self._lock:
            return self._malformed_replies

    def rejected(self) -> dict[int, str]:
        """The nodes whose latest status was refused as malformed, with the reason
        (:func:`swarm.node_status.parse_status`)."""
        with self._lock:
            return dict(sorted(self._rejected.items()))

    def leader(self) -> int | None:
        """The leader named by the freshest online status of the highest term."""
        with self._lock:
            return leader_of(self._statuses.values())

    def _targets(self) -> list[int]:
        """Online nodes, the leader first; waits (bounded) for a first online status."""
        self.connect()
        deadline = time.monotonic() + min(5.0, self.timeout_s)
        while True:
            with self._lock:
                online = sorted(n for n, s in self._statuses.items() if s.online)
                if not online:
                    self._status_event.clear()  # set again by the next status (under lock)
            if online:
                break
            left = deadline - time.monotonic()
            if left <= 0 or not self._status_event.wait(left):
                with self._lock:
                    known = len(self._statuses)
                    refused = len(self._rejected)
                raise ClientError(f"no node of swarm {self.swarm!r} is online" + (
                    f" ({known} known, all offline)" if known else " (none has published "
                    "a status)") + (f"; {refused} malformed status(es) ignored" if refused
                                    else ""))
        leader = self.leader()
        start = next(self._rr) % len(online)
        order = online[start:] + online[:start]
        if leader in order:
            order.remove(leader)
            order.insert(0, leader)
        return order

    # -- requests ----------------------------------------------------------------------

    def _send(self, node: int, body: dict[str, Any], waiter: _Waiter) -> str | None:
        """Publish one attempt of ``body`` to ``node``; its reply will go to ``waiter``.
        Returns the request id, or None when it could not even be queued."""
        self.connect()
        rid = f"{self.client_id}-{next(self._ids)}"
        payload = {"v": 1, **body, "id": rid}
        with self._lock:
            self._waiters[rid] = waiter
            self._nodes[rid] = node
        if self.v5:
            sent = self._bus.publish(topics.request(self.swarm, node),
                                     json.dumps(payload).encode(), qos=1,
                                     response_topic=self.reply_topic,
                                     correlation_data=rid.encode())
        else:
            payload["reply_to"] = self.reply_topic
            sent = self._bus.publish(topics.request(self.swarm, node),
                                     json.dumps(payload).encode(), qos=1)
        if not sent:
            self._forget([rid])
            return None
        return rid

    def _forget(self, rids: list[str]) -> None:
        with self._lock:
            for rid in rids:
                self._waiters.pop(rid, None)
                self._nodes.pop(rid, None)

    def request(self, node: int, body: dict[str, Any], timeout_s: float | None = None) -> Reply:
        """One attempt: send ``body`` (``v`` and ``id`` are filled in) to ``node`` and
        wait for its reply; a missing reply is reported as a ``timeout`` error reply."""
        waiter = _Waiter()
        rid = self._send(node, body, waiter)
        if rid is None:
            return Reply({"v": 1, "status": "error", "code": "busy",
                          "message": "the request could not be queued to the broker"}, node)
        try:
            waiter.event.wait(self.attempt_timeout_s if timeout_s is None else timeout_s)
        finally:
            self._forget([rid])
        if waiter.reply is None:
            return Reply({"v": 1, "id": rid, "status": "error", "code": "timeout",
                          "message": f"node {node} did not answer in time"}, node)
        return Reply(waiter.reply, node)

    def _with_retries(self, body: dict[str, Any], deadline: float) -> Reply:
        """Send ``body`` until a final reply or the deadline. An attempt not answered
        within ``attempt_timeout_s`` is *hedged*: the same request (same session and
        sequence number, so applied at most once) goes to the next node too, and a late
        reply to any earlier attempt still counts. An attempt waiting on a node whose
        Last Will arrives (it vanished), or on another node than a newly announced
        leader, is retried at once on the current targets (``_Waiter.nudged``). So a
        crashed leader costs its replacement's election, not a hedge delay."""
        waiter = _Waiter(hedging=True)
        rids: list[str] = []
        attempts = 0
        backoff = 0.05
        last: Reply | None = None
        try:
            while time.monotonic() < deadline:
                for node in self._targets():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    attempts += 1
                    rid = self._send(node, body, waiter)
                    if rid is not None:
                        rids.append(rid)
                    waiter.event.wait(min(self.attempt_timeout_s, left))
                    nudged = False
                    with self._lock:
                        if waiter.reply is None and waiter.nudged:
                            waiter.nudged = False
                            waiter.event.clear()
                            nudged = True
                    if nudged:
                        break         # its node is gone or not the leader: new targets
                    if waiter.reply is None:
                        continue      # no answer yet: hedge on the next node
                    with self._lock:
                        answered_by = self._nodes.get(waiter.rid or "")
                        last = Reply(dict(waiter.reply), answered_by, attempts)
                        if last.code in RETRYABLE:
                            waiter.reset()   # a retryable answer: keep listening
                    if last.code not in RETRYABLE:
                        return last
                    if last.code != "timeout":
                        time.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                        backoff = min(backoff * 2, 1.0)
            return last or Reply({"v": 1, "status": "error", "code": "timeout",
                                  "message": f"no node answered within the deadline "
                                             f"({attempts} attempts)"}, None, attempts)
        finally:
            self._forget(rids)

    def register(self) -> int:
        """Open a session (exactly-once) and return its id."""
        deadline = time.monotonic() + self.timeout_s
        nonce = f"{self.client_id}-{os.urandom(6).hex()}"
        reply = self._with_retries({"op": "register", "nonce": nonce}, deadline)
        if reply.status != "registered":
            raise ClientError(f"registration failed: {reply.code}: {reply.message}")
        self.session = int(reply.body["session"])
        self._next_seq = 1
        return self.session

    def propose(self, command: Mapping[str, Any] | bytes | str,
                timeout_s: float | None = None) -> Reply:
        """Propose one map command; retries keep the session and sequence number, so
        it is applied at most once. Returns the final reply: ``committed``, or an error
        (``invalid`` and ``bad_request`` are final; ``timeout`` etc. after the deadline
        mean the outcome is unknown)."""
        obj, problem = _command_object(command)
        if problem is not None:
            return problem
        assert obj is not None
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        for _ in range(3):   # re-registrations after session_expired
            if self.session is None:
                self.register()
            assert self.session is not None
            seq = self._next_seq
            self._next_seq += 1
            reply = self._with_retries({"op": "propose", "session": self.session, "seq": seq,
                                        "ack": seq, "command": obj}, deadline)
            if reply.code == "session_expired":
                self.session = None
                if reply.attempts > 1:
                    return _outcome_unknown(reply)
                continue   # its one request found the session gone: not applied
            return reply
        return reply

    def propose_many(self, commands: Sequence[Mapping[str, Any] | bytes | str],
                     timeout_s: float | None = None) -> list[Reply]:
        """Propose many commands in batches (docs/protocol.md, "Batches"): up to
        MAX_BATCH_COMMANDS per request message and within its size limit, each command
        with its own sequence number of this client's session, so each is applied at
        most once however often it is retried. Returns one :class:`Reply` per command,
        in the order given, each as :meth:`propose` would return it (``seq`` added).

        A command answered ``busy``, ``no_leader`` or ``timeout`` (or not answered) is
        sent again with the same sequence number until ``timeout_s`` (the client's
        ``timeout_s`` by default) for the whole call. When the session expires, a
        command sent once and answered ``session_expired`` (or ``busy`` / ``no_leader``:
        never proposed) is proposed anew in a new session; one sent more than once, or
        last answered ``timeout``, may have been applied in the old session and is
        answered ``session_expired`` (outcome unknown), never proposed again. A
        batch goes out when the one before it is answered (a session keeps 64
        unacknowledged results, so two batches of one session cannot be in flight
        together). Order: a batch's commands are appended in the order given, but a
        command that is retried is applied after those that were not; use
        :meth:`propose` one by one when order matters. A reply's message that names a
        command (``commands[2]: ...``) names it by its index in ``commands``, not in the
        batch that carried it."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        out: list[Reply | None] = [None] * len(commands)
        parsed: list[tuple[int, dict[str, Any], int]] = []   # (position, command, its size)
        for pos, command in enumerate(commands):
            obj, problem = _command_object(command)
            if problem is not None:
                out[pos] = _renamed(problem, None, pos)
            else:
                assert obj is not None
                parsed.append((pos, obj, len(json.dumps(obj, separators=(",", ":")))))
        for chunk in _batches(parsed):
            self._propose_batch(chunk, out, deadline)
        return [r if r is not None else _timeout_reply("no node answered within the deadline")
                for r in out]

    def _propose_batch(self, chunk: list[tuple[int, dict[str, Any]]], out: list[Reply | None],
                       deadline: float) -> None:
        """One batch's commands until each has a final answer or the deadline passes."""
        seqs: dict[int, int] = {}      # position -> seq, for the commands still open
        sends: dict[int, int] = {}     # position -> requests that carried it with that seq
        last_code: dict[int, str | None] = {}   # position -> its latest answer's code
        registrations = 0
        attempts = 0
        backoff = 0.05
        commands = dict(chunk)
        while commands and time.monotonic() < deadline:
            if self.session is None:
                # The old session is gone: what it may have applied, it can no longer
                # say, so only commands known not to be applied go into the new one.
                for pos in [p for p in commands if p in seqs and not _never_applied(
                        sends[p], last_code.get(p))]:
                    out[pos] = _outcome_unknown(out[pos] or _timeout_reply(
                        "no node answered within the deadline"))
                    del commands[pos]
                if not commands:
                    return
                if registrations == 3:
                    break
                registrations += 1
                self.register()
                seqs.clear()
                sends.clear()
                last_code.clear()
            assert self.session is not None
            for pos in commands:
                if pos not in seqs:
                    seqs[pos] = self._next_seq
                    self._next_seq += 1
            order = list(commands)   # position in this request -> position in the call
            body = {"op": "propose", "session": self.session, "ack": min(seqs.values()),
                    "commands": [{"seq": seqs[pos], "command": command}
                                 for pos, command in commands.items()]}
            reply = self._with_retries(body, deadline)
            attempts += reply.attempts
            for pos in commands:
                sends[pos] = sends.get(pos, 0) + max(1, reply.attempts)
                last_code[pos] = None   # not answered, unless its result below says
            if reply.status != "batch":
                # The request as a whole: refused (bad_request), or the deadline passed
                # on retryable answers; the same for each of its commands.
                for pos in commands:
                    out[pos] = Reply({**reply.body, "seq": seqs[pos]}, reply.node, attempts)
                return
            results = {r.get("seq"): r for r in reply.body.get("results") or ()
                       if isinstance(r, dict)}
            retry = False
            for pos in list(commands):
                result = results.get(seqs[pos])
                if result is None:
                    retry = True     # not answered (a malformed reply): send it again
                    continue
                out[pos] = _renamed(Reply({"v": 1, "id": reply.body.get("id"), **result},
                                          reply.node, attempts), order.index(pos), pos)
                code = result.get("code")
                last_code[pos] = code if isinstance(code, str) else None
                if code in RETRYABLE:
                    retry = True
                elif code == "session_expired":
                    # A new session is registered above; this command goes into it only
                    # if it cannot have been applied in this one (_never_applied).
                    self.session = None
                else:
                    del commands[pos]
                    del seqs[pos]
            if retry and self.session is not None:
                time.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, 1.0)

    def read(self, item: str | None = None, timeout_s: float | None = None) -> Reply:
        """A linearizable read of the whole map (``map``) or one feature (``item``)."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        body: dict[str, Any] = {"op": "read"}
        if item is not None:
            body["item"] = item
        return self._with_retries(body, deadline)

    def read_map(self) -> tuple[int, dict[str, Any]]:
        """(map version, GeoJSON FeatureCollection); raises ClientError on failure."""
        reply = self.read()
        if reply.status != "ok":
            raise ClientError(f"read failed: {reply.code}: {reply.message}")
        return int(reply.body["map_version"]), dict(reply.body["map"])

    def node_status(self, node: int) -> Reply:
        """Ask one node for its status directly (the ``status`` op)."""
        return self.request(node, {"op": "status"})


def _command_object(command: Mapping[str, Any] | bytes | str
                    ) -> tuple[dict[str, Any] | None, Reply | None]:
    """A command as a JSON object, or the ``bad_request`` reply saying why it is not."""
    if isinstance(command, (bytes, str)):
        try:
            command = json.loads(command)
        except ValueError as exc:
            return None, Reply({"v": 1, "status": "error", "code": "bad_request",
                                "message": f"the command is not JSON: {exc}"})
    if not isinstance(command, Mapping):
        return None, Reply({"v": 1, "status": "error", "code": "bad_request",
                            "message": "a command is a JSON object"})
    return dict(command), None


def _renamed(reply: Reply, in_request: int | None, pos: int) -> Reply:
    """``reply`` with its message naming the command by ``pos``, its index in the
    caller's list: a node names a batch's command by its index in that request
    (``commands[0]: ...``, swarm/agent/service.py), which is not the caller's when
    the batch is a later chunk or others were refused before it was sent
    (``in_request`` None: the client refused it itself and named no index)."""
    message = reply.message
    prefix = "" if in_request is None else f"commands[{in_request}]: "
    if not message.startswith(prefix):
        return reply
    return Reply({**reply.body, "message": f"commands[{pos}]: {message[len(prefix):]}"},
                 reply.node, reply.attempts)


def _never_applied(sends: int, last_code: str | None) -> bool:
    """Whether a command whose session expired is known not to have been applied in
    it: the one request that carried it was answered ``session_expired`` (a copy
    proposed earlier would have been applied, and answered, first) or refused before
    it was proposed (``busy``, ``no_leader``). More requests, a ``timeout`` or no
    answer: an earlier one may have been applied before the session expired."""
    return sends == 1 and last_code in ("session_expired", "busy", "no_leader")


def _outcome_unknown(reply: Reply) -> Reply:
    """``session_expired`` for a command that may have been applied before its session
    expired (thesis §6.3: exactly-once ends with the session): final, never proposed
    again, since a new session could apply it a second time."""
    return Reply({**reply.body, "status": "error", "code": "session_expired",
                  "message": "the session expired while this command was retried: it may "
                             "or may not have been applied (read the state to find out); "
                             "not proposed again"}, reply.node, reply.attempts)


def _timeout_reply(message: str) -> Reply:
    return Reply({"v": 1, "status": "error", "code": "timeout", "message": message})


#: Room left in a batch request for its envelope (id, session, ack, reply_to).
_BATCH_ENVELOPE_BYTES = 1024


def _batches(parsed: list[tuple[int, dict[str, Any], int]]
             ) -> list[list[tuple[int, dict[str, Any]]]]:
    """Consecutive commands packed into batches of at most MAX_BATCH_COMMANDS and
    within MAX_REQUEST_BYTES (a command too big for any batch goes alone: the node's
    answer names the problem)."""
    from swarm.agent.protocol import MAX_BATCH_COMMANDS, MAX_REQUEST_BYTES

    room = MAX_REQUEST_BYTES - _BATCH_ENVELOPE_BYTES
    out: list[list[tuple[int, dict[str, Any]]]] = []
    size = 0
    for pos, command, n in parsed:
        n += 40   # {"seq": ..., "command": ...},
        if not out or len(out[-1]) >= MAX_BATCH_COMMANDS or size + n > room:
            out.append([])
            size = 0
        out[-1].append((pos, command))
        size += n
    return out


def client_from_agent_config(path: str | Path, **kwargs: Any) -> SwarmClient:
    """A client for the swarm an agent config describes (brokers, swarm id, TLS,
    credentials); the CLI's ``--config``."""
    from swarm.agent.config import load_config

    cfg = load_config(path)
    b = cfg.bus
    password = b.password_file.read_text().strip() if b.password_file else None
    tls = TlsConfig(b.tls.ca_file, b.tls.cert_file, b.tls.key_file) if b.tls else None
    return SwarmClient([str(a) for a in b.brokers], cfg.swarm.id,
                       protocol=b.protocol, username=b.username, password=password, tls=tls,
                       **kwargs)


def _named_voters(statuses: Iterable[NodeStatus]) -> set[int]:
    """The node ids the online statuses list as voters (docs/protocol.md, "Node
    status")."""
    return {v for s in statuses if s.online for v in s.voters}
