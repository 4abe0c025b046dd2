"""The client protocol's server side, sans-I/O, over a real Driver and the real map
(a single-voter cluster in memory): validation, stable error codes, exactly-once
retries, the pending table's bounds and timeouts, linearizable reads; and the same
seams with the register (swarm/agent/register.py) in the map's place; batched
proposals (``commands``): one reply per batch, each command exactly once."""

from __future__ import annotations

import json
from typing import Any

import msgpack
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
                 raft: dict[str, Any] | None = None, **service_options: Any) -> None:
        self.machine = machine if machine is not None else MapMachine()
        if isinstance(self.machine, MapMachine):
            self.map = self.machine.map
        self.sent: list[Any] = []
        self.driver = Driver(Config(id=1, election_tick=10, heartbeat_tick=1, **(raft or {})),
                             MemoryStorage(ConfState.of(voters)),
                             SessionStateMachine(self.machine.fsm,
                                                 batch_entries=self.machine.batch_entries), self)
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

            def proposals_refused(self, driver, datas):  # type: ignore[no-untyped-def]
                svc.on_proposals_refused(datas)

            def read_refused(self, driver, ctx):  # type: ignore[no-untyped-def]
                svc.on_read_refused(ctx)

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
    (b"[" * 150_000 + b"]" * 150_000, "request is"),  # over MAX_REQUEST_BYTES
    (b" " * (MAX_REQUEST_BYTES + 1), "over the"),
    (json.dumps({"v": 1, "id": "x", "op": "read", "item": 7}).encode(), "item must be"),
    (json.dumps({"v": 1, "id": "x", "op": "register", "nonce": ""}).encode(), "nonce must be"),
    # Unpaired surrogate escapes: strings that are not Unicode text, anywhere in it.
    (b'{"v": 1, "id": "x\\ud800", "op": "status"}', "not part of a surrogate pair"),
    (b'{"v": 1, "id": "x", "op": "register", "nonce": "\\uDFFF"}', "surrogate pair"),
    (b'{"v": 1, "id": "x", "op": "propose", "session": 1, "seq": 1, "command": '
     b'{"type": "remove_zone", "id": "z", "\\udc00": 1}}', "surrogate pair"),
])
def test_malformed_requests_get_bad_request_and_change_nothing(payload: bytes, message: str) -> None:
    node = Node()
    before = (node.driver.raw.status().last_index, node.map.version)
    [reply] = node.ask(payload)
    assert reply["status"] == "error" and reply["code"] == "bad_request", reply
    assert message in reply["message"]
    assert (node.driver.raw.status().last_index, node.map.version) == before


def test_surrogate_pairs_are_text_and_a_reply_never_fails_to_encode() -> None:
    from swarm.agent.protocol import encode_reply

    node = Node()
    [reply] = node.ask(b'{"v": 1, "id": "\\ud83d\\ude00", "op": "status"}')  # a pair: an emoji
    assert reply["status"] == "ok" and reply["id"] == "\U0001F600"
    # A string that is not Unicode text is escaped, never an exception on the way out.
    assert json.loads(encode_reply("a\ud800", "ok")) == {"v": 1, "id": "a\ud800", "status": "ok"}
    # Over 3.1.1 a reply_to that is not Unicode text is no address: dropped, counted.
    before = node.service.stats.requests.get("rejected bad_request", 0)
    assert node.ask(b'{"v": 1, "id": "x", "op": "status", "reply_to": "r/\\ud800"}',
                    v5=False) == []
    assert node.service.stats.requests["rejected bad_request"] == before + 1


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


# -- batched proposals (docs/protocol.md, "Batches")


def _batch(session: int, seqs: list[int], rid: str = "b", **extra: Any) -> dict[str, Any]:
    return {"op": "propose", "id": rid, "session": session,
            "commands": [{"seq": q, "command": _zone(f"z{q}")} for q in seqs], **extra}


def test_a_batch_commits_in_one_append_and_one_reply_lists_every_outcome_in_order() -> None:
    node = Node()
    session = _register(node)
    last = node.driver.raw.status().last_index
    persists = node.driver.counts["persists"]
    [reply] = node.ask(_batch(session, [3, 1, 2]))     # any order: each its own seq
    assert reply["status"] == "batch" and reply["id"] == "b"
    results = reply["results"]
    assert [r["seq"] for r in results] == [3, 1, 2]
    assert all(r["status"] == "committed" and r["cached"] is False for r in results), results
    # Proposed together: consecutive entries, in the request's order, written by one
    # Ready (a batch of one costs the same number of persists).
    assert [r["index"] for r in results] == [last + 1, last + 2, last + 3]
    assert all(r["result"] == {"ok": True, "version": r["index"]} for r in results)
    # Each command's map version is the one its apply made (the map's version then).
    assert [r["map_version"] for r in results] == [r["index"] for r in results]
    assert node.map.version == last + 3
    batch_persists = node.driver.counts["persists"] - persists
    node.ask(_batch(session, [4]))
    assert node.driver.counts["persists"] - persists - batch_persists == batch_persists
    assert len(node.latencies) == 4 and node.service.pending() == 0
    assert node.service.stats.replies["committed"] == 4
    assert node.service.stats.requests["propose commands"] == 4


def test_some_commands_of_a_batch_invalid_the_others_commit() -> None:
    node = Node()
    session = _register(node)
    last = node.driver.raw.status().last_index
    body = _batch(session, [1, 2, 3, 4])
    body["commands"][1]["command"] = {"type": "remove_zone", "id": "z", "colour": "red"}
    body["commands"][3]["command"] = {"type": "remove_zone", "id": "nowhere"}
    [reply] = node.ask(body)
    r = reply["results"]
    assert [x["status"] for x in r] == ["committed", "error", "committed", "error"]
    # Refused at intake: named by its index and field, never proposed.
    assert r[1]["code"] == "invalid" and r[1]["seq"] == 2
    assert r[1]["message"] == "commands[1]: remove_zone.colour: unknown field"
    # Valid syntax, refused by the map's state when applied: committed, answered invalid.
    assert r[3]["code"] == "invalid" and "nowhere" in r[3]["message"]
    assert node.driver.raw.status().last_index == last + 3
    assert r[0]["index"] == last + 1 and r[2]["index"] == last + 2
    # A batch whose every command the map refuses at intake is answered at once.
    [reply] = node.ask({"op": "propose", "id": "c", "session": session,
                        "commands": [{"seq": 9, "command": {"type": "nope"}}]}, run=False)
    assert reply["results"][0]["code"] == "invalid" and node.service.pending() == 0


def test_a_retried_batch_applies_each_command_once() -> None:
    node = Node(timeout_s=5.0)
    session = _register(node)
    last = node.driver.raw.status().last_index
    assert node.ask(_batch(session, [1, 2, 3], "first"), run=False) == []
    # The same batch again while it is pending (another node's attempt, a hedge):
    # joins, proposes nothing more; a QoS 1 redelivery of its id is ignored.
    assert node.ask(_batch(session, [1, 2, 3], "second"), run=False) == []
    assert node.ask(_batch(session, [1, 2, 3], "first"), run=False) == []
    assert node.driver.raw.status().last_index == last + 3
    assert node.service.pending() == 6
    # Its deadline passes before it commits: every command answered timeout, in the
    # same one reply per request, naming the session and seq to retry with.
    node.clock.now += 5.0
    node.service.expire()
    replies = node.replies()
    assert [r["id"] for r in replies] == ["first", "second"]
    assert [x["code"] for x in replies[0]["results"]] == ["timeout"] * 3
    assert f"session {session} seq 2 is safe" in replies[0]["results"][1]["message"]
    assert node.service.pending() == 0
    node.run()          # ... it commits after all; nobody waits any more
    assert node.replies() == []
    version = node.map.version
    # The client retries the whole batch with the same seqs: answered from the session
    # cache, each applied once.
    [again] = node.ask(_batch(session, [1, 2, 3], "retry"))
    assert all(x["status"] == "committed" and x["cached"] is True for x in again["results"])
    assert [x["index"] for x in again["results"]] == [last + 1, last + 2, last + 3]
    assert node.map.version == version
    # ... and a retry that adds a new command commits only the new one.
    [mixed] = node.ask(_batch(session, [2, 3, 4], "more"))
    assert [x["cached"] for x in mixed["results"]] == [True, True, False]
    assert node.map.version == mixed["results"][2]["index"]


def test_a_batch_pending_across_a_leader_change_applies_each_command_once() -> None:
    node = Node()
    session = _register(node)
    last = node.driver.raw.status().last_index
    node.ask(_batch(session, [1, 2]), run=False)
    node.service.on_leader_change()   # a follower's forward may have died with the leader
    assert node.driver.raw.status().last_index == last + 4
    node.run()
    [reply] = node.replies()
    assert [x["cached"] for x in reply["results"]] == [False, False]
    assert [x["index"] for x in reply["results"]] == [last + 1, last + 2]
    assert node.map.version == last + 2   # the duplicates changed nothing


def test_the_pending_bound_counts_commands_not_messages() -> None:
    node = Node(max_pending=10)
    session = _register(node)
    assert node.ask(_batch(session, list(range(1, 9)), "a"), run=False) == []
    assert node.service.pending() == 8
    # Room for 2 more: the first 2 commands are taken, the others answered busy, in the
    # batch's one reply when the 2 are committed.
    assert node.ask(_batch(session, list(range(9, 15)), "b"), run=False) == []
    assert node.service.pending() == 10
    # No room at all: busy at once, whole (nothing parsed), for a batch or a single
    # command or a registration.
    [full] = node.ask(_batch(session, [20, 21], "c"), run=False)
    assert full["status"] == "error" and full["code"] == "busy"
    assert "10 pending commands" in full["message"]
    [full] = node.ask({"op": "propose", "id": "d", "session": session, "seq": 30,
                       "command": _zone("x")}, run=False)
    assert full["code"] == "busy"
    node.run()
    replies = {r["id"]: r for r in node.replies()}
    assert all(x["status"] == "committed" for x in replies["a"]["results"])
    assert [x["status"] if x["status"] != "error" else x["code"]
            for x in replies["b"]["results"]] == ["committed"] * 2 + ["busy"] * 4
    assert node.service.pending() == 0
    # The busy ones were not applied: retrying them commits them (not cached).
    [retry] = node.ask(_batch(session, list(range(11, 15)), "b2"))
    assert [x["cached"] for x in retry["results"]] == [False] * 4


def test_a_full_uncommitted_log_answers_a_batch_busy_and_joins_still_join() -> None:
    node = Node(raft={"max_uncommitted_bytes": 1000})
    session = _register(node)
    assert node.ask(_batch(session, [1, 2, 3, 4, 5, 6], "big"), run=False) == []  # 930 B
    # The tail is over its bound: the driver refuses the next batch's new commands
    # together (busy each, one reply) ...
    [busy] = node.ask(_batch(session, [7, 8], "new"), run=False)
    assert [x["code"] for x in busy["results"]] == ["busy", "busy"]
    assert "uncommitted log is full" in busy["results"][0]["message"]
    # ... and, until an entry applies, a batch naming only new commands is refused
    # whole before parsing; one that retries a pending command joins it, its new
    # command is busy.
    [whole] = node.ask(_batch(session, [7, 8], "new2"), run=False)
    assert whole["code"] == "busy" and "uncommitted log is full" in whole["message"]
    assert node.ask(_batch(session, [6, 9], "part"), run=False) == []
    node.run()
    replies = {r["id"]: r for r in node.replies()}
    part = replies["part"]["results"]
    assert part[0]["status"] == "committed" and part[0]["cached"] is False
    assert part[1]["code"] == "busy" and "uncommitted log is full" in part[1]["message"]
    # Applied: the tail drained, proposals are taken again.
    [ok] = node.ask(_batch(session, [7, 8, 9], "again"))
    assert [x["status"] for x in ok["results"]] == ["committed"] * 3


def test_a_batch_partly_answered_then_timed_out_gets_one_reply() -> None:
    node = Node(timeout_s=5.0, raft={"max_uncommitted_bytes": 200})
    session = _register(node)
    node.ask(_batch(session, [1, 2], "first"), run=False)
    [full] = node.ask(_batch(session, [4], "fills"), run=False)   # the tail is full now
    assert full["results"][0]["code"] == "busy"
    assert node.ask(_batch(session, [1, 3], "second"), run=False) == []   # 3: busy
    node.clock.now += 5.0
    node.service.expire()
    [first, second] = node.replies()
    assert [x["code"] for x in second["results"]] == ["timeout", "busy"]
    assert [x["seq"] for x in second["results"]] == [1, 3]
    assert node.service.pending() == 0


def test_shutdown_answers_a_pending_batch_once() -> None:
    from swarm.agent.protocol import ErrorCode

    node = Node()
    session = _register(node)
    body = _batch(session, [1, 2])
    body["commands"][1]["command"] = {"type": "nope"}
    node.ask(body, run=False)
    node.service.fail_all(ErrorCode.TIMEOUT, "shutting down")
    [reply] = node.replies()
    first, second = reply["results"]
    assert (first["code"], first["message"]) == ("timeout", "shutting down")
    assert second["code"] == "invalid"
    assert second["message"].startswith("commands[1]: command: unknown type 'nope'")
    assert node.service.pending() == 0
    node.run()
    assert node.replies() == []


def test_batch_replies_over_mqtt_5_and_3_1_1() -> None:
    node = Node()
    session = _register(node)
    # MQTT 5: to the Response Topic, with the Correlation Data.
    node.service.on_request(json.dumps({"v": 1, **_batch(session, [1], "v5")}).encode(),
                            REPLY, b"corr")
    node.run()
    [out] = node.service.outbox
    assert out.topic == REPLY and out.correlation == b"corr"
    assert json.loads(out.payload)["results"][0]["status"] == "committed"
    node.service.outbox.clear()
    # MQTT 3.1.1: to reply_to from the payload, no correlation.
    node.service.on_request(json.dumps({"v": 1, **_batch(session, [2], "v311"),
                                        "reply_to": "client/311"}).encode())
    node.run()
    [out] = node.service.outbox
    assert out.topic == "client/311" and out.correlation is None
    assert json.loads(out.payload)["results"][0]["status"] == "committed"


def _many(n: int) -> list[dict[str, Any]]:
    return [{"seq": k + 1, "command": {}} for k in range(n)]


@pytest.mark.parametrize("fields, message", [
    ({"commands": []}, "commands must be a list of 1 to 64 commands, got 0"),
    ({"commands": _many(65)}, "commands must be a list of 1 to 64 commands, got 65"),
    ({"commands": {"seq": 1}}, "commands must be a list of 1 to 64 commands, got {'seq': 1}"),
    ({"commands": [{"seq": 1, "command": {}}, 7]}, "commands[1] must be an object"),
    ({"commands": [{"seq": 1, "command": {}}, {"seq": 0, "command": {}}]},
     "commands[1].seq must be an integer in [1, 2**64), got 0"),
    ({"commands": [{"seq": 1, "command": {}}, {"command": {}}]},
     "commands[1].seq must be an integer in [1, 2**64), got None"),
    ({"commands": [{"seq": 1, "command": {}}, {"seq": 2, "command": {}},
                   {"seq": 1, "command": {}}]},
     "commands[2].seq 1 repeats commands[0].seq"),
    ({"commands": [{"seq": 1, "command": {}}, {"seq": 2, "command": "zone"}]},
     "commands[1].command must be a JSON object"),
    ({"commands": [{"seq": 1, "command": {}}], "seq": 1},
     "either seq and command (one command) or commands (a batch), not both"),
    ({"commands": [{"seq": 5, "command": {}}, {"seq": 3, "command": {}}], "ack": 4},
     "ack (4) must not exceed the lowest seq of the batch (3)"),
])
def test_malformed_batches_get_bad_request_naming_the_member_and_change_nothing(
        fields: dict[str, Any], message: str) -> None:
    node = Node()
    session = _register(node)
    before = (node.driver.raw.status().last_index, node.map.version)
    [reply] = node.ask({"op": "propose", "id": "x", "session": session, **fields})
    assert reply["status"] == "error" and reply["code"] == "bad_request", reply
    assert message in reply["message"], reply["message"]
    assert (node.driver.raw.status().last_index, node.map.version) == before
    assert node.service.pending() == 0


def _follower_of_2() -> Node:
    """Node 1 of three, following node 2 (term 1), with session 1 registered."""
    from consensus.session import encode_register
    from consensus.types import Entry, EntryKind, Message, MessageType

    node = Node(voters=(1, 2, 3))
    node.driver.step(Message(MessageType.APPEND, to=1, frm=2, term=1, log_term=0, index=0,
                             entries=(Entry(1, 1, EntryKind.NORMAL, encode_register(b"n")),),
                             commit=1))
    node.run()
    assert node.driver.raw.status().lead == 2
    node.sent.clear()
    return node


def test_a_batch_sent_to_a_follower_is_forwarded_in_one_message_and_answered_there() -> None:
    from consensus.types import Entry, EntryKind, Message, MessageType

    node = _follower_of_2()
    body = _batch(1, [1, 2, 3])
    body["commands"][1]["command"] = {"type": "nope"}
    assert node.ask(body) == []
    # The two valid commands travel to the leader as one PROPOSE of two entries.
    [forward] = [m for m in node.sent if m.type is MessageType.PROPOSE]
    assert forward.to == 2 and len(forward.entries) == 2
    # The leader appends and commits them (indices 2, 3): the follower that took the
    # request answers when it applies them.
    entries = tuple(Entry(1, 2 + k, EntryKind.NORMAL, e.data)
                    for k, e in enumerate(forward.entries))
    node.driver.step(Message(MessageType.APPEND, to=1, frm=2, term=1, log_term=1, index=1,
                             entries=entries, commit=3))
    node.run()
    [reply] = node.replies()
    r = reply["results"]
    assert [(x["seq"], x["status"]) for x in r] == [(1, "committed"), (2, "error"),
                                                   (3, "committed")]
    assert [r[0]["index"], r[2]["index"]] == [2, 3] and node.map.version == 3


def _refuse_forwards(node: Node) -> None:
    """The leader (node 2) refuses every PROPOSE node 1 sent it (PROPOSE_RESP)."""
    from consensus.types import Message, MessageType

    forwards = [m for m in node.sent if m.type is MessageType.PROPOSE]
    node.sent.clear()
    for m in forwards:
        node.driver.step(Message(MessageType.PROPOSE_RESP, to=1, frm=2, term=1,
                                 entries=m.entries))
    node.run()


def test_forwarded_commands_the_leader_refuses_are_answered_busy_at_once() -> None:
    node = _follower_of_2()
    assert node.ask(_batch(1, [1, 2])) == []
    assert node.ask({"op": "register", "id": "r2", "nonce": "n2"}) == []
    _refuse_forwards(node)
    replies = {r["id"]: r for r in node.replies()}
    assert [(x["seq"], x["code"]) for x in replies["b"]["results"]] == [(1, "busy"), (2, "busy")]
    assert replies["r2"]["code"] == "busy"
    assert node.service.pending() == 0
    # Until an entry is applied here, new proposals are answered busy without a forward
    # (the leader is full); a retry of the refused commands is proposed anew after it.
    [again] = node.ask(_batch(1, [1, 2], rid="b2"))
    assert again["code"] == "busy" and not node.sent  # the whole batch, as a full leader
    from consensus.types import Entry, EntryKind, Message, MessageType
    node.driver.step(Message(MessageType.APPEND, to=1, frm=2, term=1, log_term=1, index=1,
                             entries=(Entry(1, 2, EntryKind.NORMAL, b""),), commit=2))
    node.run()
    assert node.ask(_batch(1, [1, 2], rid="b3")) == []
    assert [m for m in node.sent if m.type is MessageType.PROPOSE]


def test_a_forwarded_read_the_leader_refuses_is_answered_busy() -> None:
    from consensus.types import Message, MessageType

    node = _follower_of_2()
    assert node.ask({"op": "read", "id": "q"}) == []
    [forward] = [m for m in node.sent if m.type is MessageType.READ_INDEX]
    node.driver.step(Message(MessageType.READ_INDEX_RESP, to=1, frm=2, term=1,
                             context=forward.context, reject=True))
    node.run()
    [reply] = node.replies()
    assert (reply["id"], reply["code"]) == ("q", "busy") and node.service.pending() == 0


def test_a_refusal_does_not_answer_a_command_proposed_again_after_a_leader_change() -> None:
    # Proposed twice (again after a leader change), the command may be in the new
    # leader's log though the old one refused its copy: busy would wrongly promise the
    # client that this attempt was not applied, so it keeps waiting for its outcome.
    node = _follower_of_2()
    assert node.ask(_batch(1, [1])) == []
    node.service.on_leader_change()
    _refuse_forwards(node)
    assert node.replies() == [] and node.service.pending() == 1


# -- batch entries: with the register, a batch is proposed as ONE log entry


def _puts(session: int, seqs: list[int], rid: str = "b", value: str = "v") -> dict[str, Any]:
    return {"op": "propose", "id": rid, "session": session,
            "commands": [{"seq": q, "command": {"type": "put", "key": f"k{q}", "value": value}}
                         for q in seqs]}


def test_a_register_batch_is_one_entry_and_each_put_applies_once() -> None:
    register = Register()
    node = Node(machine=register)
    session = _register(node)
    last = node.driver.raw.status().last_index
    body = _puts(session, [3, 1, 2])
    body["commands"][1]["command"] = {"type": "put", "key": ""}     # refused at intake
    [reply] = node.ask(body)
    r = reply["results"]
    assert [(x["seq"], x["status"]) for x in r] == [(3, "committed"), (1, "error"),
                                                   (2, "committed")]
    assert r[1]["code"] == "invalid" and r[1]["message"].startswith("commands[1]: put.key:")
    # One entry carries both puts: they share its index, which is the register's version.
    assert node.driver.raw.status().last_index == last + 1
    assert r[0]["index"] == r[2]["index"] == register.version == last + 1
    assert r[0]["result"] == {"ok": True, "version": last + 1}
    assert register.values == {"k3": "v", "k2": "v"}
    # The whole batch again, as a client retries after a timeout (other values, to see
    # that nothing applies twice): the two committed ones answered from the session
    # cache, the one refused at intake, now valid, new.
    [again] = node.ask(_puts(session, [3, 1, 2], "b2", value="late"))
    a = again["results"]
    assert [x["cached"] for x in a] == [True, False, True]
    assert a[0]["index"] == last + 1 and a[1]["index"] == last + 2
    assert register.values == {"k3": "v", "k2": "v", "k1": "late"}
    # A batch of one is a plain session entry (the format single commands always had).
    [one] = node.ask(_puts(session, [4], "b3"))
    assert one["results"][0]["index"] == last + 3
    kinds = [msgpack.unpackb(e.data)[1] for e in node.driver.storage.entries(last + 1, last + 4)]
    assert kinds == ["cmds", "cmds", "cmd"]   # the retry was one entry too


def test_a_register_batch_entry_pending_across_a_leader_change_is_proposed_again_once() -> None:
    register = Register()
    node = Node(machine=register)
    session = _register(node)
    last = node.driver.raw.status().last_index
    node.ask(_puts(session, [1, 2, 3]), run=False)
    node.service.on_leader_change()       # its three commands share one entry: proposed once
    assert node.driver.raw.status().last_index == last + 2
    node.run()
    [reply] = node.replies()
    assert [x["cached"] for x in reply["results"]] == [False] * 3
    assert {x["index"] for x in reply["results"]} == {last + 1}
    assert register.version == last + 1     # the duplicate entry applied nothing


def test_a_register_batch_larger_than_one_command_limit_is_split_into_entries() -> None:
    from swarm.agent.protocol import MAX_COMMAND_BYTES

    register = Register()
    node = Node(machine=register)
    session = _register(node)
    last = node.driver.raw.status().last_index
    value = "x" * 1000                       # ~1030 canonical bytes per put
    [reply] = node.ask(_puts(session, list(range(1, 65)), value=value))
    assert all(x["status"] == "committed" for x in reply["results"])
    entries = node.driver.raw.status().last_index - last
    per_entry = MAX_COMMAND_BYTES // len(Register().parse_command(
        {"type": "put", "key": "k10", "value": value}))
    assert entries == -(-64 // per_entry) and entries > 1
    assert all(len(e.data) <= MAX_COMMAND_BYTES + 1024
               for e in node.driver.storage.entries(last + 1, last + 1 + entries))
    # In order: the puts of the first entry carry its index, and so on.
    indexes = [x["index"] for x in reply["results"]]
    assert indexes == sorted(indexes) and indexes[0] == last + 1 and indexes[-1] == last + entries
