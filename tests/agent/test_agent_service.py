"""The client protocol's server side, sans-I/O, over a real Driver and the real map
(a single-voter cluster in memory): validation, stable error codes, exactly-once
retries, the pending table's bounds and timeouts, linearizable reads; and the same
seams with the register (swarm/agent/register.py) in the map's place."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consensus.config import Config
from consensus.driver import Driver
from consensus.session import SessionStateMachine
from consensus.storage import MemoryStorage
from consensus.types import ConfState, StateRole
from swarm.agent.protocol import MAX_REQUEST_BYTES
from swarm.agent.machine import AgentMachine, MapMachine
from swarm.agent.register import Register
from swarm.agent.service import ClientService

REPLY = "client/r"


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Node:
    """One node of a cluster of ``voters`` (only node 1 exists, so with more voters it
    never has a leader)."""

    def __init__(self, voters: tuple[int, ...] = (1,), machine: AgentMachine | None = None,
                 **service_options: Any) -> None:
        self.machine = machine if machine is not None else MapMachine()
        if isinstance(self.machine, MapMachine):
            self.map = self.machine.map
        self.sent: list[Any] = []
        self.driver = Driver(Config(id=1, election_tick=10, heartbeat_tick=1),
                             MemoryStorage(ConfState.of(voters)),
                             SessionStateMachine(self.machine.fsm), self)
        self.clock = _Clock()
        self.latencies: list[float] = []
        self.service = ClientService(
            self.driver, 1, "test", machine=self.machine,
            status=lambda: {"node": 1}, clock=self.clock,
            on_commit_latency=self.latencies.append, **service_options)
        self.driver.observer = self._observer()
        if voters == (1,):
            self.driver.raw.campaign()
            self.run()
            assert self.driver.raw.status().role is StateRole.LEADER

    def send(self, messages: Any) -> None:
        self.sent.extend(messages)

    def _observer(self):  # type: ignore[no-untyped-def]
        from consensus.driver import DriverObserver

        svc = self.service

        class Obs(DriverObserver):
            def applied(self, driver, entry):  # type: ignore[no-untyped-def]
                svc.on_applied(entry)

            def read_ready(self, driver, ctx, index):  # type: ignore[no-untyped-def]
                svc.on_read_ready(ctx, index)

            def read_expired(self, driver, ctx):  # type: ignore[no-untyped-def]
                svc.on_read_expired(ctx)

        return Obs()

    def run(self) -> None:
        for _ in range(20):
            if not self.driver.process():
                break

    def ask(self, body: dict[str, Any] | bytes, *, v5: bool = True, run: bool = True,
            response_topic: str | None = REPLY) -> list[dict[str, Any]]:
        if isinstance(body, dict):
            body = {"v": 1, **body}
            if not v5:
                body["reply_to"] = REPLY
            payload = json.dumps(body).encode()
        else:
            payload = body
        self.service.on_request(payload, response_topic if v5 else None,
                                b"corr" if v5 else None)
        if run:
            self.run()
        return self.replies()

    def replies(self) -> list[dict[str, Any]]:
        out = [json.loads(r.payload) for r in self.service.outbox]
        self.service.outbox.clear()
        return out


def _zone(zid: str) -> dict[str, Any]:
    return {"type": "set_zone", "id": zid, "status": "burning", "source": "t", "time_ms": 1,
            "polygon": [[-122.1, 37.4], [-122.09, 37.4], [-122.09, 37.41], [-122.1, 37.4]]}


def _register(node: Node) -> int:
    [reply] = node.ask({"op": "register", "id": "r1", "nonce": "n1"})
    assert reply["status"] == "registered", reply
    return int(reply["session"])


def test_register_propose_and_exactly_once_retry() -> None:
    node = Node()
    session = _register(node)
    [reply] = node.ask({"op": "propose", "id": "p1", "session": session, "seq": 1,
                        "command": _zone("a")})
    assert reply["status"] == "committed" and reply["id"] == "p1"
    assert reply["result"] == {"ok": True, "version": reply["index"]}
    assert reply["map_version"] == node.map.version == reply["index"]
    assert node.latencies and node.latencies[0] >= 0
    # A retry of the same (session, seq), e.g. after a lost reply, is answered from the
    # session's cache: the map does not change again.
    version = node.map.version
    [again] = node.ask({"op": "propose", "id": "p1-retry", "session": session, "seq": 1,
                        "command": _zone("a")})
    assert again["status"] == "committed" and again["cached"] is True
    assert again["index"] == reply["index"] and node.map.version == version


def test_a_retry_while_the_first_is_pending_joins_it() -> None:
    node = Node()
    session = _register(node)
    last = node.driver.raw.status().last_index
    body = {"op": "propose", "session": session, "seq": 1, "command": _zone("a")}
    assert node.ask({**body, "id": "first"}, run=False) == []
    assert node.ask({**body, "id": "second"}, run=False) == []
    node.ask({**body, "id": "first"}, run=False)  # QoS 1 redelivery: ignored
    assert node.driver.raw.status().last_index == last + 1  # proposed once
    node.run()
    replies = node.replies()
    assert sorted(r["id"] for r in replies) == ["first", "second"]
    assert all(r["status"] == "committed" and not r["cached"] for r in replies)
    assert node.service.stats.requests["duplicate"] == 1


def test_a_leader_change_proposes_what_waits_again_and_it_applies_once() -> None:
    # A forward to a leader that then died is lost with it: on a new leader the node
    # proposes its pending commands and registrations again; the session applies the
    # command once and the first registration answers.
    node = Node()
    session = _register(node)
    last = node.driver.raw.status().last_index
    node.ask({"op": "propose", "id": "p", "session": session, "seq": 1,
              "command": _zone("a")}, run=False)
    node.ask({"op": "register", "id": "r2", "nonce": "n2"}, run=False)
    node.service.on_leader_change()
    assert node.driver.raw.status().last_index == last + 4  # each proposed twice
    node.run()
    replies = {r["id"]: r for r in node.replies()}
    assert replies["p"]["status"] == "committed" and not replies["p"]["cached"]
    assert replies["r2"]["status"] == "registered"
    assert node.map.version == replies["p"]["index"]  # the duplicate changed nothing
    assert node.service.pending() == 0
    assert node.service.stats.requests["re-proposed after a leader change"] == 2


def test_a_command_the_map_refuses_is_invalid_and_names_the_field() -> None:
    node = Node()
    session = _register(node)
    last = node.driver.raw.status().last_index
    [reply] = node.ask({"op": "propose", "id": "p", "session": session, "seq": 1,
                        "command": {"type": "remove_zone", "id": "z", "colour": "red"}})
    assert reply["code"] == "invalid" and "remove_zone.colour: unknown field" in reply["message"]
    assert node.driver.raw.status().last_index == last  # never proposed
    # Valid syntax, refused by the map's state at apply: committed, but answered invalid.
    [reply] = node.ask({"op": "propose", "id": "q", "session": session, "seq": 1,
                        "command": {"type": "remove_zone", "id": "nowhere"}})
    assert reply["code"] == "invalid" and "nowhere" in reply["message"]


@pytest.mark.parametrize("payload, message", [
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "a request is a JSON object"),
    (json.dumps({"v": 2, "id": "x", "op": "status"}).encode(), "v must be 1"),
    (json.dumps({"v": 1, "op": "status"}).encode(), "id must be a string"),
    (json.dumps({"v": 1, "id": "x", "op": "fly"}).encode(), "op must be one of"),
    (json.dumps({"v": 1, "id": "x", "op": "propose", "session": 0, "seq": 1,
                 "command": {}}).encode(), "session must be an integer"),
    (json.dumps({"v": 1, "id": "x", "op": "propose", "session": 1, "seq": 1, "ack": 2,
                 "command": {}}).encode(), "ack (2) must not exceed seq (1)"),
    (json.dumps({"v": 1, "id": "x", "op": "propose", "session": 1, "seq": True,
                 "command": {}}).encode(), "seq must be an integer"),
    (json.dumps({"v": 1, "id": "x", "op": "propose", "session": 1, "seq": 1,
                 "command": "zone"}).encode(), "command must be a JSON object"),
    (b'{"v": 1, "id": "x", "op": "propose", "session": ' + b"9" * 5000 + b"}", "not JSON"),
    (b"[" * 30_000 + b"]" * 30_000, "not JSON"),   # nesting deeper than the parser's stack
    (b"[" * 100_000 + b"]" * 100_000, "request is"),
    (b" " * (MAX_REQUEST_BYTES + 1), "over the"),
    (json.dumps({"v": 1, "id": "x", "op": "read", "item": 7}).encode(), "item must be"),
    (json.dumps({"v": 1, "id": "x", "op": "register", "nonce": ""}).encode(), "nonce must be"),
])
def test_malformed_requests_get_bad_request_and_change_nothing(payload: bytes, message: str) -> None:
    node = Node()
    before = (node.driver.raw.status().last_index, node.map.version)
    [reply] = node.ask(payload)
    assert reply["status"] == "error" and reply["code"] == "bad_request", reply
    assert message in reply["message"]
    assert (node.driver.raw.status().last_index, node.map.version) == before


def test_reply_addresses_are_required_and_never_the_swarms_own_topics() -> None:
    node = Node()
    # No Response Topic and no reply_to: nothing can be answered; dropped and counted.
    assert node.ask({"op": "status", "id": "x"}, response_topic=None) == []
    assert node.service.stats.requests["rejected bad_request"] == 1
    for topic in ("swarm/test/raft/2", "swarm/test/status/1", "a/+/b", "$SYS/x"):
        body = {"v": 1, "id": "x", "op": "status", "reply_to": topic}
        assert node.ask(json.dumps(body).encode(), v5=False) == [], topic
        # ... and an MQTT 5 Response Topic inside the swarm is refused the same way.
        assert node.ask({"op": "status", "id": "y"}, response_topic=topic) == []
    # Over 3.1.1 the reply goes to reply_to.
    node.service.on_request(json.dumps({"v": 1, "id": "z", "op": "status",
                                        "reply_to": "client/311"}).encode())
    [out] = node.service.outbox
    assert out.topic == "client/311" and out.correlation is None


def test_busy_over_the_pending_bound_and_timeout_past_the_deadline() -> None:
    node = Node(max_pending=2, timeout_s=5.0)
    session = _register(node)
    for seq in (1, 2):
        assert node.ask({"op": "propose", "id": f"p{seq}", "session": session, "seq": seq,
                         "command": _zone(f"z{seq}")}, run=False) == []
    [busy] = node.ask({"op": "propose", "id": "p3", "session": session, "seq": 3,
                       "command": _zone("z3")}, run=False)
    assert busy["code"] == "busy"
    node.clock.now += 5.0
    node.service.expire()
    replies = node.replies()
    assert [r["code"] for r in replies] == ["timeout", "timeout"]
    assert "retrying with session" in replies[0]["message"]
    assert node.service.pending() == 0
    node.run()  # they commit after all: nobody waits any more; nothing is answered twice
    assert node.replies() == []


def test_no_leader_is_answered_at_once() -> None:
    node = Node(voters=(1, 2, 3))
    [reply] = node.ask({"op": "register", "id": "r", "nonce": "n"})
    assert reply["code"] == "no_leader"
    [reply] = node.ask({"op": "read", "id": "q"})
    assert reply["code"] == "no_leader"


def test_reads_are_served_after_the_read_index_is_applied() -> None:
    node = Node()
    session = _register(node)
    node.ask({"op": "propose", "id": "p", "session": session, "seq": 1, "command": _zone("a")})
    assert node.ask({"op": "read", "id": "q"}, run=False) == []  # waits for ReadIndex
    node.run()
    [reply] = node.replies()
    assert reply["status"] == "ok" and reply["map_version"] == node.map.version
    assert [f["id"] for f in reply["map"]["features"]] == ["zone:a"]
    [item] = node.ask({"op": "read", "id": "i", "item": "zone:a"})
    assert item["item"]["properties"]["status"] == "burning"
    [missing] = node.ask({"op": "read", "id": "m", "item": "zone:b"})
    assert missing["code"] == "not_found"


def test_shutdown_answers_every_pending_request() -> None:
    from swarm.agent.protocol import ErrorCode

    node = Node()
    session = _register(node)
    node.ask({"op": "propose", "id": "p", "session": session, "seq": 1, "command": _zone("a")},
             run=False)
    node.service.fail_all(ErrorCode.TIMEOUT, "shutting down")
    [reply] = node.replies()
    assert reply["code"] == "timeout" and node.service.pending() == 0


def test_the_register_behind_the_same_seams() -> None:
    register = Register()
    node = Node(machine=register)
    session = _register(node)
    put = {"type": "put", "key": "k", "value": "v1"}
    [reply] = node.ask({"op": "propose", "id": "p1", "session": session, "seq": 1,
                        "command": put})
    assert reply["status"] == "committed", reply
    assert reply["result"] == {"ok": True, "version": reply["index"]}
    assert reply["map_version"] == register.version == reply["index"]
    # Exactly once: a retry of (session, 1) with another value changes nothing.
    [again] = node.ask({"op": "propose", "id": "p1-retry", "session": session, "seq": 1,
                        "command": {**put, "value": "other"}})
    assert again["cached"] is True and again["index"] == reply["index"]
    assert register.values == {"k": "v1"}
    # Refused at intake, naming the field, never proposed.
    last = node.driver.raw.status().last_index
    [bad] = node.ask({"op": "propose", "id": "p2", "session": session, "seq": 2,
                      "command": {"type": "put", "key": "k" * 65, "value": "v"}})
    assert bad["code"] == "invalid" and bad["message"].startswith("put.key:"), bad
    [bad] = node.ask({"op": "propose", "id": "p3", "session": session, "seq": 2,
                      "command": {"type": "set_zone", "id": "z"}})
    assert bad["code"] == "invalid" and "unknown type 'set_zone'" in bad["message"]
    assert node.driver.raw.status().last_index == last
    # Linearizable reads of the whole register and of one key, through ReadIndex.
    node.ask({"op": "propose", "id": "p4", "session": session, "seq": 2,
              "command": {"type": "put", "key": "j", "value": ""}})
    assert node.ask({"op": "read", "id": "q"}, run=False) == []
    node.run()
    [whole] = node.replies()
    assert whole["map"] == {"j": "", "k": "v1"} and whole["map_version"] == register.version
    [one] = node.ask({"op": "read", "id": "i", "item": "k"})
    assert one["item"] == "v1"
    [missing] = node.ask({"op": "read", "id": "m", "item": "nope"})
    assert missing["code"] == "not_found" and "no register item 'nope'" in missing["message"]
