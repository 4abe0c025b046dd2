"""swarm.client.SwarmClient against a real mosquitto: it connects on first use (no
``connect()`` needed before ``propose``/``read``), and a missing broker or a swarm with
no node online is a prompt, named ClientError, never a hang or a crash. (Committing
through a lazily connected client against real agents: test_agent_processes.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from swarm.bus import topics
from swarm.bus.broker import LocalBroker, free_port
from swarm.bus.client import BrokerAddress, Bus, BusConfig
from swarm.client import ClientError, SwarmClient

pytestmark = pytest.mark.timeout(60)


def test_no_broker_is_a_clear_error_and_a_later_call_tries_again(mosquitto: LocalBroker) -> None:
    port = free_port()  # nothing listens here yet
    client = SwarmClient([f"127.0.0.1:{port}"], "lazy", connect_timeout_s=1.0, timeout_s=5.0)
    try:
        started = time.monotonic()
        with pytest.raises(ClientError, match=f"no broker answered within 1 s .*:{port}"):
            client.propose({"type": "remove_zone", "id": "z"})
        assert time.monotonic() - started < 4.0
        with pytest.raises(ClientError, match="no broker answered"):  # tried again, not wedged
            client.read()
    finally:
        client.close()


def test_a_swarm_with_every_node_offline_is_a_clear_error(mosquitto: LocalBroker) -> None:
    # Two nodes' retained Last Wills: known, but offline.
    publisher = Bus(BusConfig(brokers=(BrokerAddress("127.0.0.1", mosquitto.port),),
                              client_id="offline-publisher"))
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        for node in (1, 2):
            assert publisher.publish(topics.status("dark", node), json.dumps(
                {"v": 1, "node": node, "online": False}).encode(), qos=1, retain=True)
        time.sleep(0.3)
        client = SwarmClient([f"127.0.0.1:{mosquitto.port}"], "dark", timeout_s=3.0)
        try:
            started = time.monotonic()
            with pytest.raises(ClientError, match=r"no node of swarm 'dark' is online \(2 known, "
                                                  r"all offline\)"):
                client.propose({"type": "remove_zone", "id": "z"})  # never connected first
            assert time.monotonic() - started < 10.0
            assert set(client.statuses()) == {1, 2}
        finally:
            client.close()
        client = SwarmClient([f"127.0.0.1:{mosquitto.port}"], "empty", timeout_s=1.0)
        try:
            with pytest.raises(ClientError, match="none has published a status"):
                client.read()
        finally:
            client.close()
    finally:
        publisher.close()


def test_statuses_waits_for_every_voter_the_statuses_name(mosquitto: LocalBroker) -> None:
    """A retained burst that trickles in (a loaded machine) still yields every voter's
    row: ``statuses`` waits, bounded, until each node named in ``voters`` has spoken,
    instead of returning whatever arrived in the first moment (the leader's row could
    be the one missing). (A status with garbage in its ``voters`` is refused whole:
    test_node_status.py and the malformed-status tests below.)"""
    publisher = Bus(BusConfig(brokers=(BrokerAddress("127.0.0.1", mosquitto.port),),
                              client_id="trickle-publisher"))
    publisher.start()

    def status(node: int, voters: list) -> bytes:
        return json.dumps({"v": 1, "node": node, "online": True, "role": "follower",
                           "term": 2, "leader": 3, "voters": voters}).encode()

    try:
        assert publisher.wait_connected(10)
        for node in (1, 2):
            assert publisher.publish(topics.status("trickle", node),
                                     status(node, [1, 2, 3]), qos=1, retain=True)
        time.sleep(0.3)
        client = SwarmClient([f"127.0.0.1:{mosquitto.port}"], "trickle", timeout_s=3.0)
        try:
            client.connect()
            time.sleep(0.3)  # nodes 1 and 2 are in; node 3 (the leader) speaks a second
            late = threading.Timer(1.0, publisher.publish, (topics.status("trickle", 3),
                                                            status(3, [1, 2, 3])),
                                   {"qos": 1, "retain": True})
            late.start()  # into the call below: more than its old fixed moment of 0.2 s
            try:
                assert set(client.statuses(wait_s=30)) == {1, 2, 3}
            finally:
                late.join()
        finally:
            client.close()
        # A late subscriber gets the whole retained set.
        client = SwarmClient([f"127.0.0.1:{mosquitto.port}"], "trickle", timeout_s=3.0)
        try:
            assert set(client.statuses(wait_s=30)) == {1, 2, 3}
        finally:
            client.close()
    finally:
        publisher.close()


class _ScriptedNode:
    """One node of swarm ``name`` on the real broker that answers the client protocol
    from a script (``answer(request) -> reply body or None``: None drops the request),
    to drive the client through outcomes real agents give only by chance (a reply lost,
    then the session evicted). Records every request it was sent."""

    def __init__(self, broker: LocalBroker, name: str, answer) -> None:
        self.name, self.answer, self.requests = name, answer, []
        self.bus = Bus(BusConfig(brokers=(BrokerAddress("127.0.0.1", broker.port),),
                                 client_id=f"scripted-{name}"))
        self.bus.subscribe(topics.request(name, 1), self._on_request, qos=1)
        self.bus.start()
        assert self.bus.wait_connected(10)
        assert self.bus.publish(topics.status(name, 1), json.dumps(
            {"v": 1, "node": 1, "online": True, "role": "leader", "term": 1, "leader": 1,
             "voters": [1]}).encode(), qos=1, retain=True)

    def _on_request(self, msg) -> None:
        request = json.loads(msg.payload)
        self.requests.append(request)
        body = self.answer(request)
        if body is not None and msg.response_topic:
            self.bus.publish(msg.response_topic, json.dumps({"v": 1, "id": request["id"],
                                                             **body}).encode(), qos=1,
                             correlation_data=msg.correlation_data)

    def proposals(self) -> list[tuple[int, int]]:
        """(session, seq) of every command proposed to it, batch members included."""
        out = []
        for r in self.requests:
            if r["op"] == "propose":
                out += [(r["session"], c["seq"]) for c in r.get("commands") or [r]]
        return out

    def close(self) -> None:
        self.bus.close()


def _sessions_from_10(request: dict) -> dict | None:
    """Registrations open sessions 10, 11, ... (the script's state is on the function)."""
    _sessions_from_10.next = getattr(_sessions_from_10, "next", 10) + 1
    return {"status": "registered", "session": _sessions_from_10.next - 1,
            "nonce": request["nonce"]}


def _expired() -> dict:
    return {"status": "error", "code": "session_expired", "message": "unknown session"}


def test_a_command_retried_into_an_expired_session_is_not_proposed_again(
        mosquitto: LocalBroker) -> None:
    """thesis §6.3: exactly-once lasts as long as the session. A command whose first
    request went unanswered (it may have been applied) and whose retry finds the session
    evicted must come back ``session_expired``, outcome unknown, and not be proposed in
    a new session (it would apply twice). One whose only request found the session gone
    was not applied: it is proposed anew, in a new session."""
    seen: dict[tuple[int, int], int] = {}

    def answer(request: dict) -> dict | None:
        if request["op"] == "register":
            return _sessions_from_10(request)
        members = request.get("commands") or [request]
        results = []
        for c in members:
            key = (request["session"], c["seq"])
            seen[key] = seen.get(key, 0) + 1
            if request["session"] == 10 and c["command"]["id"] == "lost" and seen[key] == 1:
                if "commands" not in request:
                    return None             # the first attempt's reply is lost
                results.append({"seq": c["seq"], "status": "error", "code": "timeout",
                                "message": "its outcome is not known yet"})
                continue
            if request["session"] == 10:
                results.append({"seq": c["seq"], **_expired()})
            else:
                results.append({"seq": c["seq"], "status": "committed", "index": 5,
                                "map_version": 5, "result": None, "cached": False})
        return results[0] if "commands" not in request else {"status": "batch",
                                                             "results": results}

    node = _ScriptedNode(mosquitto, "expiry", answer)
    client = SwarmClient([f"127.0.0.1:{mosquitto.port}"], "expiry", timeout_s=20.0,
                         attempt_timeout_s=0.5)
    try:
        lost = {"type": "remove_zone", "id": "lost"}
        reply = client.propose(lost)
        assert reply.code == "session_expired" and "may or may not" in reply.message
        assert [k for k in node.proposals() if k[0] != 10] == []   # not proposed anew
        # The session is replaced; a command whose one request found it gone (session
        # 11 is alive in the script) is committed there.
        _sessions_from_10.next = 10
        client.session = None
        fresh = client.propose({"type": "remove_zone", "id": "fresh"})
        assert fresh.status == "committed", fresh.body
        # A batch: "lost" (answered timeout, then its session expired) is final; "kept"
        # (its one request answered session_expired) goes on in a new session.
        _sessions_from_10.next = 10
        client.session = None
        seen.clear()
        node.requests.clear()
        replies = client.propose_many([lost, {"type": "remove_zone", "id": "kept"}])
        assert [r.code or r.status for r in replies] == ["session_expired", "committed"]
        assert "may or may not" in replies[0].message
        moved = [k for k in node.proposals() if k[0] != 10]
        assert len(moved) == 1 and moved[0][0] == 11   # only "kept", in the new session
    finally:
        client.close()
        node.close()


# -- malformed statuses and the client commands (swarm propose / read / status) --------

ROOT = Path(__file__).resolve().parents[2]


def _swarm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``swarm ARGS`` in a child process with its output piped (not a terminal)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("COLUMNS", None)   # rich's own default when piped: 80 columns
    return subprocess.run([sys.executable, "-m", "swarm", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=120, check=False,
                          cwd=ROOT)


def _committing(request: dict) -> dict | None:
    """A node that registers sessions, commits every command and reads an empty map;
    for a batch, ``{}`` is refused the way a node refuses it (its index in the request)."""
    if request["op"] == "register":
        return {"status": "registered", "session": 7, "nonce": request["nonce"]}
    if request["op"] == "read":
        return {"status": "ok", "map_version": 3, "map": {"type": "FeatureCollection",
                                                          "features": []}}
    if "commands" in request:
        return {"status": "batch", "results": [
            {"seq": c["seq"], "status": "error", "code": "invalid",
             "message": f"commands[{k}]: type: missing required field"} if not c["command"]
            else {"seq": c["seq"], "status": "committed", "index": 5, "map_version": 5}
            for k, c in enumerate(request["commands"])]}
    return {"status": "committed", "index": 5, "map_version": 5, "result": None}


#: Retained beside the real node 1 (the leader): a term that is a string (it crashed
#: max() over the terms), and a "leader" of a higher term with garbage voters (it would
#: have sent every request to a node that does not exist first).
_GARBAGE = {99: {"v": 1, "node": 99, "online": True, "role": "leader", "term": "x",
                 "leader": 99},
            98: {"v": 1, "node": 98, "online": True, "role": "leader", "term": 100,
                 "leader": 98, "voters": "all"}}


def _publish_garbage(broker: LocalBroker, swarm: str) -> Bus:
    publisher = Bus(BusConfig(brokers=(BrokerAddress("127.0.0.1", broker.port),),
                              client_id=f"garbage-{swarm}"))
    publisher.start()
    assert publisher.wait_connected(10)
    for node, body in _GARBAGE.items():
        assert publisher.publish(topics.status(swarm, node), json.dumps(body).encode(),
                                 qos=1, retain=True)
    # Node 1 (the scripted leader) names 98 and 99 as voters, so `statuses` waits for
    # their statuses too: every reader sees the garbage, none may trip on it.
    assert publisher.publish(topics.status(swarm, 1), json.dumps(
        {"v": 1, "node": 1, "online": True, "role": "leader", "term": 1, "leader": 1,
         "voters": [1, 98, 99]}).encode(), qos=1, retain=True)
    return publisher


def _until(condition, what: str, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def test_malformed_retained_statuses_are_ignored_never_a_crash(mosquitto: LocalBroker) -> None:
    node = _ScriptedNode(mosquitto, "garbled", _committing)
    publisher = _publish_garbage(mosquitto, "garbled")
    client = SwarmClient([f"127.0.0.1:{mosquitto.port}"], "garbled", timeout_s=20.0)
    try:
        client.connect()
        assert set(client.statuses(wait_s=30)) == {1}   # refused ones are not handed out
        assert set(client.rejected()) == {98, 99}
        assert "term: 'x' is not an integer" in client.rejected()[99]
        assert "voters" in client.rejected()[98]
        assert client.leader() == 1
        reply = client.propose({"type": "remove_zone", "id": "z"})
        assert reply.committed, reply.body
        assert client.read().status == "ok"
        assert {m["op"] for m in node.requests} >= {"register", "propose", "read"}
        # An empty retained payload deletes a status: the node is gone, not malformed.
        assert publisher.publish(topics.status("garbled", 99), b"", qos=1, retain=True)
        _until(lambda: 99 not in client.rejected(), "the deleted status forgotten")
        assert set(client.rejected()) == {98} and set(client.statuses()) == {1}
    finally:
        client.close()
        publisher.close()
        node.close()


def test_a_status_with_an_int_no_float_holds_is_refused_not_raised() -> None:
    """In process (no broker): the status handler, as the bus calls it. A number field
    holding 10**400 (valid JSON) raised OverflowError out of parse_status, so the bus
    logged it and the client went on trusting the node's previous status."""
    from swarm.bus.client import Received

    client = SwarmClient(["127.0.0.1:1"], "huge")
    good = {"v": 1, "node": 1, "online": True, "role": "leader", "term": 2, "leader": 1}
    client._on_status(Received(topics.status("huge", 1), json.dumps(good).encode(), 1, True))
    assert client.leader() == 1
    for field in ('"link_score"', '"peers": {"2": {"last_contact_ms"'):
        closing = "}}" if "peers" in field else ""
        payload = json.dumps(good)[:-1] + f", {field}: 1{'0' * 400}{closing}}}"
        client._on_status(Received(topics.status("huge", 1), payload.encode(), 1, True))
        assert "is not a number in" in client.rejected()[1], field
        assert client.leader() is None   # its earlier status is forgotten, not kept
        client._on_status(Received(topics.status("huge", 1), json.dumps(good).encode(), 1,
                                   True))


def test_client_commands_ignore_malformed_statuses(mosquitto: LocalBroker) -> None:
    node = _ScriptedNode(mosquitto, "garbled", _committing)
    publisher = _publish_garbage(mosquitto, "garbled")
    where = ["--broker", f"127.0.0.1:{mosquitto.port}", "--swarm", "garbled", "--timeout", "20"]
    try:
        # The retained statuses are in before any command subscribes.
        watcher = SwarmClient([f"127.0.0.1:{mosquitto.port}"], "garbled")
        try:
            watcher.connect()
            _until(lambda: set(watcher.rejected()) == {98, 99}, "the garbage is retained")
        finally:
            watcher.close()
        proposed = _swarm("propose", "-", *where, stdin='{"type": "remove_zone", "id": "z"}')
        assert proposed.returncode == 0, proposed.stderr
        assert json.loads(proposed.stdout)["status"] == "committed"
        read = _swarm("read", *where)
        assert read.returncode == 0, read.stderr
        assert read.stdout.startswith("map version 3") and "Traceback" not in read.stderr
        status = _swarm("status", *where, "--wait", "30", "--json")
        assert status.returncode == 0, status.stderr
        rows = {r["node"]: r for r in json.loads(status.stdout)["nodes"]}
        assert set(rows) == {1, 98, 99}
        assert rows[1]["role"] == "leader" and rows[1]["invalid"] is None
        for bad in (98, 99):
            assert rows[bad]["role"] == "invalid" and rows[bad]["term"] is None
            assert rows[bad]["invalid"]
    finally:
        publisher.close()
        node.close()


def test_an_array_names_each_refused_command_by_its_index_in_the_array(
        mosquitto: LocalBroker) -> None:
    """``[1, "x", {}]``: the client refuses the first two itself; the node refuses the
    third as ``commands[0]`` (its index in the request that carried it): every message
    names the command by its index in the caller's array."""
    node = _ScriptedNode(mosquitto, "indexed", _committing)
    try:
        proc = _swarm("propose", "-", "--broker", f"127.0.0.1:{mosquitto.port}", "--swarm",
                      "indexed", "--timeout", "20",
                      stdin='[1, "x", {}, {"type": "remove_zone", "id": "z"}]')
        assert proc.returncode == 2, proc.stderr   # committed, or refused: nothing to retry
        replies = json.loads(proc.stdout)
        assert [r.get("code") or r["status"] for r in replies] == [
            "bad_request", "bad_request", "invalid", "committed"]
        assert [r.get("message", "")[:12] for r in replies[:3]] == [
            "commands[0]:", "commands[1]:", "commands[2]:"]
        assert replies[2]["message"] == "commands[2]: type: missing required field"
    finally:
        node.close()


def test_swarm_status_piped_prints_whole_cells_and_flags_malformed_statuses(
        mosquitto: LocalBroker) -> None:
    """Piped, rich would lay the table out in 80 columns and cut the headers ("lead…").
    A malformed status shows as an ``invalid`` row, with why under the table."""
    publisher = Bus(BusConfig(brokers=(BrokerAddress("127.0.0.1", mosquitto.port),),
                              client_id="wide-publisher"))
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        full = {"v": 1, "online": True, "role": "follower", "term": 12, "leader": 1,
                "commit": 123456, "applied": 123456, "map_version": 123450, "t": 0,
                "voters": [1, 2, 3], "link_score": 0.91,
                "link": {"radio": None, "radio_source": "absent"},
                "fc": {"connected": True, "map_version_held": 123450, "mode": "GUIDED",
                       "armed": True}}
        bodies = {1: {**full, "node": 1, "name": "drone-with-a-long-name-1", "role": "leader",
                      "peers": {"2": {"match": 123456, "lag": 0, "last_contact_ms": 12345}}},
                  2: {**full, "node": 2, "name": "drone-with-a-long-name-2"},
                  3: {**full, "node": 3, "name": "[red]x", "term": -4}}
        for n, body in bodies.items():
            assert publisher.publish(topics.status("wide", n), json.dumps(body).encode(),
                                     qos=1, retain=True)
        proc = _swarm("status", "--broker", f"127.0.0.1:{mosquitto.port}", "--swarm", "wide",
                      "--wait", "30")
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert "…" not in out
        header = out.splitlines()[0].split()
        assert header[:5] == ["node", "name", "role", "term", "leader"]
        assert "last" in header and "contact" in header and "holds" in header
        assert "drone-with-a-long-name-1" in out and "12345 ms" in out
        assert "123450 (GUIDED, armed)" in out and "0.91 no radio" in out
        line3 = next(line for line in out.splitlines() if line.split()[:1] == ["3"])
        assert line3.split()[1] == "invalid"   # no name: nothing of it is shown
        assert "node 3: status ignored: term: -4 is not an integer" in out
    finally:
        publisher.close()


# -- replies are outside input too


@pytest.mark.parametrize("body, problem", [
    ([], "not a JSON object"),
    ({"status": "ok"}, "ok without a map_version"),
    ({"status": "ok", "map_version": "3", "map": {}}, "ok without a map_version"),
    ({"status": "registered", "session": "x"}, "without a session id"),
    ({"status": "registered", "session": 0}, "without a session id"),
    ({"status": "committed", "index": 5}, "committed without"),
    ({"status": "committed", "index": 5, "map_version": 5, "cached": "no"}, "committed without"),
    ({"status": "error", "code": 7, "message": "x"}, "an error without"),
    ({"status": "batch", "results": {}}, "batch without a results list"),
    ({"status": "batch", "results": [{"seq": "1", "status": "committed"}]}, "results[0]"),
    ({"status": "batch", "results": [{"seq": 1, "status": "ok", "node": {}}]}, "results[0]"),
    ({"status": "weird"}, "unknown status"),
])
def test_a_malformed_reply_is_named(body: object, problem: str) -> None:
    from swarm.client import reply_problem

    assert problem in (reply_problem(body) or "")


def test_every_reply_a_node_sends_is_well_formed() -> None:
    from swarm.agent.protocol import ErrorCode, encode_reply, error_reply
    from swarm.client import reply_problem

    for payload in (
            encode_reply("r", "committed", index=5, map_version=5, result=None, cached=False),
            encode_reply("r", "registered", session=3, index=3),
            encode_reply("r", "ok", map_version=2, read_index=2, map={"type": "x"}),
            encode_reply("r", "ok", map_version=2, read_index=2, item=None),
            encode_reply("r", "ok", node={"node": 1}),
            encode_reply("r", "batch", results=[
                {"seq": 1, "status": "committed", "index": 4, "map_version": 4, "result": 1,
                 "cached": True},
                {"seq": 2, "status": "error", "code": "busy", "message": "full"}]),
            error_reply("r", ErrorCode.BUSY, "full")):
        assert reply_problem(json.loads(payload)) is None, payload


class _ForgingNode(_ScriptedNode):
    """Publishes a forged, malformed reply to every request (with its correlation data,
    so it reaches the waiting call) just before the real one."""

    FORGED = {"register": {"status": "registered", "session": "x"},
              "read": {"status": "ok"},
              "propose": {"status": "committed", "index": "5"}}

    def _on_request(self, msg) -> None:
        request = json.loads(msg.payload)
        if msg.response_topic:
            self.bus.publish(msg.response_topic, json.dumps(
                {"v": 1, "id": request["id"], **self.FORGED[request["op"]]}).encode(), qos=1,
                correlation_data=msg.correlation_data)
        super()._on_request(msg)


def test_malformed_replies_are_set_aside_and_the_call_takes_the_real_one(
        mosquitto: LocalBroker) -> None:
    node = _ForgingNode(mosquitto, "forged", _committing)
    client = SwarmClient([f"127.0.0.1:{mosquitto.port}"], "forged", timeout_s=20)
    try:
        assert client.register() == 7
        assert client.propose({"type": "remove_zone", "id": "a"}).committed
        version, doc = client.read_map()
        assert version == 3 and doc["features"] == []
        assert client.malformed_replies() == 3
    finally:
        client.close()
        node.close()


def test_swarm_reads_summary_counts_malformed_features_and_never_raises() -> None:
    # The map in a read reply comes off the wire: whoever may publish on the reply topic
    # can forge one. Well-formed features are listed, the rest counted.
    from swarm.cli.read import _summary

    doc = {"features": [
        {"id": "zone:a", "properties": {"kind": "zone", "status": "burning"}},
        {"id": "zone:\ud800", "properties": {"kind": "zone"}},   # no status, id not text
        {"id": "route:r", "properties": {"kind": "route", "unsafe": True}},
        "not a feature", {"properties": []}, {"properties": {"kind": 3}}, {},
    ]}
    text = _summary(7, doc)
    assert text.splitlines() == ["map version 7", "zones: 2", "  zone:a  burning",
                                 "  zone:\\ud800  None", "routes: 1", "  route:r  UNSAFE",
                                 "(4 malformed features not shown)"]
    text.encode("utf-8")   # printable to any UTF-8 terminal
    assert _summary(1, {"features": "nope"}) == "map version 1"


def test_swarm_status_json_prints_strict_json_whatever_a_status_carries() -> None:
    # Fields parse_status does not check come off the wire as published: NaN is valid
    # to Python's reader, never in the output.
    from swarm.cli.status import _raw_json

    assert _raw_json({"v": 1, "x": 1.5}) == {"v": 1, "x": 1.5}
    assert "not strict JSON" in _raw_json({"v": 1, "x": float("nan")})["not_shown"]
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    assert "not_shown" in _raw_json({"v": 1, "deep": deep})
