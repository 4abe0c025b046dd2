"""Process-level tests: real agent processes on a real mosquitto, driven from a client
in this (separate) process and through the ``swarm`` CLI. The guarantees the core
proves in simulation, shown with kill -9, SIGSTOP, broker restarts and a hostile
client on the broker."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swarm.bus import topics
from swarm.bus.broker import LocalBroker
from swarm.client import SwarmClient

from agent_cluster import ROOT, AgentCluster, zone

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def cluster_factory(tmp_path: Path, mosquitto: LocalBroker):
    made: list[AgentCluster] = []

    def make(n: int, **kwargs) -> AgentCluster:
        c = AgentCluster(tmp_path, mosquitto, n, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _guarded_swarm(cluster_factory: Callable[[int], AgentCluster]
                   ) -> tuple[AgentCluster, SwarmClient, int, dict[int, dict[str, Any]]]:
    """3 agents that committed "guarded", and their converged statuses. The client makes
    one attempt per request (no hedging): a hedged duplicate of "guarded" committing
    late, answered from the session cache, would legitimately move every node's log past
    ``before``, and the rogue-traffic tests assert the log does not move."""
    cluster = cluster_factory(3)
    cluster.start_all()
    client = cluster.client(attempt_timeout_s=60, timeout_s=60)
    leader = cluster.wait_leader(client)
    _propose_ok(client, zone("guarded"))
    return cluster, client, leader, cluster.wait_converged(client)


def _propose_ok(client: SwarmClient, command: dict) -> dict:
    reply = client.propose(command, timeout_s=60)
    assert reply.committed, reply.body
    return dict(reply.body)


def _zone_ids(client: SwarmClient) -> set[str]:
    _, doc = client.read_map()
    return {f["properties"]["id"] for f in doc["features"] if f["properties"]["kind"] == "zone"}


@pytest.mark.parametrize("n", [3, 5])
def test_agents_elect_and_commit_from_a_separate_client_process(cluster_factory, n) -> None:
    cluster = cluster_factory(n)
    cluster.start_all()
    client = cluster.client()
    leader = cluster.wait_leader(client)
    assert leader in cluster.ids
    # A separate client process: the CLI, through any node (here a follower's topic
    # may be chosen: followers forward).
    for k in range(3):
        proc = subprocess.run(
            [sys.executable, "-m", "swarm", "propose", "-", "--broker", cluster.broker_list()[0],
             "--swarm", cluster.swarm, "--timeout", "60"],
            input=json.dumps(zone(f"cli-{k}")).encode(), capture_output=True, timeout=90,
            cwd=ROOT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["status"] == "committed"
    # ... and this process's client, sent to every node in turn, followers included.
    for node in cluster.ids:
        reply = client.request(node, {"op": "register", "nonce": f"direct-{node}"}, 30)
        assert reply.status == "registered", reply.body
    for k in range(10):
        _propose_ok(client, zone(f"z-{k}"))
    # A client that was never connect()ed: it connects on first use.
    lazy = SwarmClient(cluster.broker_list(), cluster.swarm)
    try:
        _propose_ok(lazy, zone("lazy"))
    finally:
        lazy.close()
    bad = client.propose({"type": "remove_zone", "id": "no-such-zone"})
    assert bad.code == "invalid" and "no-such-zone" in bad.message
    statuses = cluster.wait_converged(client)
    assert len({s["map_sha256"] for s in statuses.values()}) == 1
    assert _zone_ids(client) == {f"cli-{k}" for k in range(3)} | {f"z-{k}" for k in range(10)} \
        | {"lazy"}
    # The CLI's read and status agree.
    out = subprocess.run([sys.executable, "-m", "swarm", "status", "--json", "--broker",
                          cluster.broker_list()[0], "--swarm", cluster.swarm],
                         capture_output=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["nodes"]
    assert [r["node"] for r in rows] == cluster.ids
    assert sum(r["role"] == "leader" for r in rows) == 1
    for i in cluster.ids:
        m, status = cluster.metrics_with_status(client, i)
        assert m["swarm_raft_applied_index"] >= statuses[i]["applied"]
        assert m["swarm_raft_commit_index"] >= status["commit"]
        assert m["swarm_storage_write_seconds_count"] > 0
    assert cluster.metrics(leader)["swarm_commit_latency_seconds_count"] >= 1
    for i in cluster.ids:
        assert cluster.stop(i) == 0, cluster.logs()


def test_sigkill_of_the_leader_loses_nothing_acknowledged(cluster_factory) -> None:
    cluster = cluster_factory(3)
    cluster.start_all()
    client = cluster.client()
    old = cluster.wait_leader(client)
    acked = set()
    for k in range(8):
        _propose_ok(client, zone(f"before-{k}"))
        acked.add(f"before-{k}")
    term_before = client.statuses()[old]["term"]
    cluster.kill(old)
    survivors = [i for i in cluster.ids if i != old]
    new = cluster.wait_leader(client, among=survivors)
    assert new != old
    assert client.statuses()[new]["term"] > term_before
    for k in range(5):
        _propose_ok(client, zone(f"after-{k}"))
        acked.add(f"after-{k}")
    assert acked <= _zone_ids(client)
    cluster.start(old)   # it recovers from its SQLite store and catches up
    statuses = cluster.wait_converged(client)
    assert len({s["map_sha256"] for s in statuses.values()}) == 1
    assert acked <= _zone_ids(client)


def test_followers_and_then_every_node_killed_recover_from_sqlite(cluster_factory) -> None:
    """SIGKILL the followers, then every node: each restarts from its SQLite store with
    nothing acknowledged lost, the map exactly as it was, and the session table too (a
    retry of an acknowledged command is answered from it, not applied again). Snapshots
    every 4 entries and a 1-entry tail: the stores hold snapshot + log, and a follower
    killed while 8 entries commit comes back behind the leader's log and is sent a
    snapshot (InstallSnapshot over the bus).

    Whole state-machine hashes are compared only at one applied index
    (``wait_converged``). Across the restart the map is compared instead (its version
    and its GeoJSON): the cluster legitimately appends entries that change no map, the
    new leader's no-op and any retry of an acknowledged command (a client's hedged
    attempt that arrives late, or this test's own retry), and the session table records
    the retry (the session's last use), so the hash at the later index differs."""
    cluster = cluster_factory(3, extra="[raft]\nsnapshot_every = 4\ncompact_keep = 1\n")
    cluster.start_all()
    client = cluster.client()
    leader = cluster.wait_leader(client)
    for k in range(5):
        _propose_ok(client, zone(f"a-{k}"))
    behind, other = [i for i in cluster.ids if i != leader]
    cluster.kill(behind)
    for k in range(4):
        _propose_ok(client, zone(f"b-{k}"))
    for k in range(4):
        _propose_ok(client, zone(f"bb-{k}"))
    cluster.start(behind)   # its log ends before the leader's first index
    cluster.kill(other)
    cluster.start(other)    # recovers from its own snapshot and log tail
    leader = cluster.wait_leader(client)
    # The last write through a session of the test's own, to retry it after the restart.
    reply = client.request(leader, {"op": "register", "nonce": "recover-test"}, 60)
    assert reply.status == "registered", reply.body
    last = {"op": "propose", "session": reply.body["session"], "seq": 1, "ack": 1,
            "command": zone("b-4")}
    reply = client.request(leader, last, 60)
    assert reply.committed and not reply.body["cached"], reply.body
    last_index = reply.body["index"]
    before = cluster.wait_converged(client)
    map_before = client.read_map()
    assert map_before[0] == last_index
    assert cluster.metrics_with_status(client, behind)[0]["swarm_snapshots_installed_total"] >= 1
    for i in cluster.ids:
        cluster.kill(i)
    for i in cluster.ids:
        cluster.start(i)
    leader = cluster.wait_leader(client, timeout=90)
    after = cluster.wait_converged(client, timeout=90)
    for i in cluster.ids:
        # Each came up from its own snapshot (the index its start-up line restored).
        restored = re.findall(r"map version \d+, applied (\d+);",
                              cluster.log_path(i).read_text(errors="replace"))
        assert int(restored[-1]) >= 4, (i, restored)
        assert after[i]["applied"] >= before[i]["applied"], (i, before[i], after[i])
        assert after[i]["map_version"] == before[i]["map_version"] == last_index, (i, after[i])
    assert client.read_map() == map_before, "recovered a different map"
    assert {f"a-{k}" for k in range(5)} | {f"b-{k}" for k in range(5)} \
        | {f"bb-{k}" for k in range(4)} <= _zone_ids(client)
    # Exactly once across the restart: the retry is answered from the recovered session
    # table with the original index, and the map does not change.
    reply = client.request(leader, last, 60)
    assert reply.committed and reply.body["cached"] and reply.body["index"] == last_index, \
        reply.body
    assert client.read_map() == map_before
    cluster.wait_converged(client, timeout=90)
    _propose_ok(client, zone("c-0"))


def test_a_paused_leader_never_serves_a_stale_read_nor_commits_alone(cluster_factory) -> None:
    cluster = cluster_factory(3)
    cluster.start_all()
    client = cluster.client(attempt_timeout_s=20)
    old = cluster.wait_leader(client)
    _propose_ok(client, zone("before"))
    cluster.signal(old, signal.SIGSTOP)
    try:
        survivors = [i for i in cluster.ids if i != old]
        # Past an election timeout, the others elect a new leader (its status is fresh;
        # the paused node's retained status is stale but still "online").
        deadline = time.monotonic() + 60
        new = None
        while time.monotonic() < deadline:
            st = client.statuses(wait_s=0.5)
            leaders = {st[i].get("leader") for i in survivors}
            if len(leaders) == 1 and (leader := leaders.pop()) in survivors:
                new = leader
                break
            time.sleep(0.2)
        assert new is not None, cluster.logs()
        # Written and acknowledged through the new leader while the old one sleeps.
        reply = client.request(new, {"op": "register", "nonce": "pause-test"}, 30)
        assert reply.status == "registered", reply.body
        session = reply.body["session"]
        r = client.request(new, {"op": "propose", "session": session, "seq": 1, "ack": 1,
                                 "command": zone("during")}, 30)
        assert r.status == "committed", r.body
        # Now, after that acknowledgement, a read and a write go to the paused node.
        # They wait in its socket until it resumes.
        import threading

        results: dict[str, object] = {}

        def ask_read() -> None:
            results["read"] = client.request(old, {"op": "read"}, 30)

        def ask_write() -> None:
            results["write"] = client.request(old, {"op": "propose", "session": session,
                                                    "seq": 2, "ack": 2,
                                                    "command": zone("via-old")}, 30)

        threads = [threading.Thread(target=ask_read), threading.Thread(target=ask_write)]
        for t in threads:
            t.start()
        time.sleep(1.0)
    finally:
        cluster.signal(old, signal.SIGCONT)
    for t in threads:
        t.join(60)
    read = results["read"]
    if read.status == "ok":  # type: ignore[attr-defined]
        ids = {f["properties"]["id"] for f in read.body["map"]["features"]}  # type: ignore[attr-defined]
        assert "during" in ids, "the resumed old leader served a stale read"
    else:
        assert read.code in ("timeout", "no_leader"), read.body  # type: ignore[attr-defined]
    write = results["write"]
    statuses = cluster.wait_converged(client)
    zone_ids = _zone_ids(client)
    if write.status == "committed":  # type: ignore[attr-defined]
        # Committed means committed by a quorum under the new term: it is in the log of
        # the cluster, not only in the old leader's.
        assert "via-old" in zone_ids
    assert {"before", "during"} <= zone_ids
    assert len({s["map_sha256"] for s in statuses.values()}) == 1


def test_broker_restart_is_survived_and_loses_nothing(cluster_factory, mosquitto) -> None:
    cluster = cluster_factory(3)
    cluster.start_all()
    client = cluster.client()
    cluster.wait_leader(client)
    for k in range(5):
        _propose_ok(client, zone(f"pre-{k}"))
    mosquitto.kill()
    time.sleep(1.0)
    mosquitto.start()
    assert client._bus.wait_connected(30)
    cluster.wait_leader(client, timeout=90)
    for k in range(5):
        _propose_ok(client, zone(f"post-{k}"))
    cluster.wait_converged(client)
    assert {f"pre-{k}" for k in range(5)} | {f"post-{k}" for k in range(5)} <= _zone_ids(client)
    assert max(cluster.metrics(i)["swarm_broker_reconnects_total"] for i in cluster.ids) >= 1


def test_mqtt_311_agents_and_clients_work_with_reply_to(cluster_factory) -> None:
    cluster = cluster_factory(3, mqtt="3.1.1")
    cluster.start_all()
    client = cluster.client()
    cluster.wait_leader(client)
    _propose_ok(client, zone("v311"))
    # A batch too: its one reply goes to reply_to (no Correlation Data on 3.1.1).
    replies = client.propose_many([zone("v311-a"), zone("v311-b")], timeout_s=60)
    assert [r.status for r in replies] == ["committed"] * 2, [r.body for r in replies]
    assert {"v311", "v311-a", "v311-b"} <= _zone_ids(client)
    reply = client.read("zone:v311")
    assert reply.status == "ok" and reply.body["item"]["id"] == "zone:v311"
    assert client.read("zone:nothing").code == "not_found"


def test_heartbeats_go_per_follower_with_broadcast_heartbeats_off(cluster_factory, mosquitto) -> None:
    """``[raft] broadcast_heartbeats = false`` (a swarm upgrading from agents without
    the broadcast): the leader's heartbeats travel on raft/<node> as before and nothing
    on raft-all, and the swarm elects, commits and keeps its leader."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from swarm.bus.envelope import claimed_sender

    cluster = cluster_factory(3, extra="[raft]\nbroadcast_heartbeats = false\n")
    cluster.start_all()
    client = cluster.client()
    leader = cluster.wait_leader(client)
    _propose_ok(client, zone("per-follower"))
    seen: list[str] = []
    watcher = paho.Client(CallbackAPIVersion.VERSION2, client_id="watcher", protocol=paho.MQTTv5)
    watcher.on_message = lambda c, u, m: seen.append(m.topic) if claimed_sender(
        bytes(m.payload)) == leader else None
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.subscribe([(f"swarm/{cluster.swarm}/raft/+", 0), (topics.raft_all(cluster.swarm), 0)])
    watcher.loop_start()
    try:
        followers = {topics.raft(cluster.swarm, i) for i in cluster.ids if i != leader}
        deadline = time.monotonic() + 30
        while not followers <= set(seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)   # 20 heartbeat rounds on lan
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    assert followers <= set(seen), seen
    assert topics.raft_all(cluster.swarm) not in seen
    assert cluster.wait_leader(client) == leader
    _propose_ok(client, zone("per-follower-2"))


def test_a_rogue_client_on_the_broker_changes_nothing(cluster_factory, mosquitto) -> None:
    """Forged votes and broadcast heartbeats (a key the swarm does not hold, or a
    tampered tag), envelopes captured off the wire (per node and broadcast) and
    replayed, oversized and garbage payloads: every node's term, log and map stay as
    they were, and each rejection is counted by reason."""
    import os
    import random

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from consensus.types import Message, MessageType
    from swarm.bus.envelope import DEFAULT_MAX_ENVELOPE_BYTES, EnvelopeSealer, Keyring, \
        claimed_sender
    from swarm.bus.keys import SwarmKey

    cluster, client, leader, before = _guarded_swarm(cluster_factory)

    captured: list[tuple[str, bytes]] = []
    rogue = paho.Client(CallbackAPIVersion.VERSION2, client_id="rogue",
                        protocol=paho.MQTTv5)
    rogue.on_message = lambda c, u, m: captured.append((m.topic, bytes(m.payload)))
    rogue.connect(mosquitto.host, mosquitto.port)
    all_topic = topics.raft_all(cluster.swarm)
    rogue.subscribe([(f"swarm/{cluster.swarm}/raft/+", 0), (all_topic, 0)])
    rogue.loop_start()
    try:
        deadline = time.monotonic() + 30
        while (len(captured) < 20 or not any(t == all_topic for t, _ in captured)) \
                and time.monotonic() < deadline:
            time.sleep(0.05)   # heartbeats and their replies, recorded off the wire
        assert len(captured) >= 20
        rogue.unsubscribe([f"swarm/{cluster.swarm}/raft/+", all_topic])
        time.sleep(0.2)
        stranger = Keyring(SwarmKey(os.urandom(32)))
        rng = random.Random(7)
        for target in cluster.ids:
            topic = topics.raft(cluster.swarm, target)
            claimed = next(i for i in cluster.ids if i != target)
            # A vote request for a huge term, from a node id it claims, under a key the
            # swarm does not hold.
            forged = EnvelopeSealer(cluster.swarm, claimed, stranger, epoch=1 << 40)
            vote = Message(MessageType.VOTE, to=target, frm=claimed, term=2**40,
                           index=10**6, log_term=2**40 - 1)
            for env in forged.seal(target, [vote]):
                rogue.publish(topic, env, 1)
            # A real envelope with one payload bit flipped: the tag no longer verifies
            # (an idle follower hears only broadcasts: a broadcast then, sent to it).
            real = next(p for t, p in captured
                        if t == topic or (t == all_topic and claimed_sender(p) != target))
            tampered = bytearray(real)
            tampered[40] ^= 0x01
            rogue.publish(topic, bytes(tampered), 1)
            # Oversized (over the envelope limit, under the broker's packet limit) and
            # garbage of every length class.
            rogue.publish(topic, b"\x01" * (DEFAULT_MAX_ENVELOPE_BYTES + 1024), 1)
            for size in (0, 3, 61, 500):
                rogue.publish(topic, bytes(rng.getrandbits(8) for _ in range(size)), 1)
        # The same on the broadcast topic: a heartbeat round for a huge term claiming
        # the leader's id, a tampered broadcast, oversized and garbage.
        forged = EnvelopeSealer(cluster.swarm, leader, stranger, epoch=1 << 40)
        beats = [Message(MessageType.HEARTBEAT, to=i, frm=leader, term=2**40, commit=10**6)
                 for i in cluster.ids if i != leader]
        for env in forged.seal_broadcast(beats):
            rogue.publish(all_topic, env, 1)
        tampered = bytearray(next(p for t, p in captured if t == all_topic))
        tampered[40] ^= 0x01
        rogue.publish(all_topic, bytes(tampered), 1)
        rogue.publish(all_topic, b"\x01" * (DEFAULT_MAX_ENVELOPE_BYTES + 1024), 1)
        for size in (0, 3, 61, 500):
            rogue.publish(all_topic, bytes(rng.getrandbits(8) for _ in range(size)), 1)
        # Replays of everything captured, in order and shuffled.
        replays = captured[:]
        rng.shuffle(replays)
        for t, p in captured + replays:
            rogue.publish(t, p, 1)
        time.sleep(2.0)
    finally:
        rogue.disconnect()
        rogue.loop_stop()

    after = cluster.wait_converged(client)
    assert cluster.wait_leader(client) == leader
    for i in cluster.ids:
        for key in ("term", "last_index", "commit", "map_sha256"):
            assert after[i][key] == before[i][key], (i, key, before[i][key], after[i][key])

    def rejected(reason: str) -> float:
        return sum(cluster.metrics(i).get(f'swarm_raft_messages_rejected_total{{reason="{reason}"}}',
                                          0.0) for i in cluster.ids)

    deadline = time.monotonic() + 30   # metrics follow the status period (2 s)
    while time.monotonic() < deadline:
        counts = {r: rejected(r) for r in ("unknown_key", "bad_mac", "replayed", "garbled",
                                           "oversized_received")}
        if all(counts.values()):
            break
        time.sleep(0.5)
    # Per node: 3 targets; the broadcast forgeries reach the 2 followers.
    assert counts["unknown_key"] >= 5 and counts["bad_mac"] >= 5, counts
    assert counts["replayed"] >= len(captured), counts
    assert counts["garbled"] >= 3 and counts["oversized_received"] >= 3, counts
    # ... and the swarm still works.
    _propose_ok(client, zone("after-rogue"))


def test_hostile_client_requests_are_refused_and_never_stop_an_agent(cluster_factory,
                                                                     mosquitto) -> None:
    """Requests a rogue client publishes to every node: strings that are not Unicode
    text (an unpaired surrogate escape in the id, a command's field, the nonce, the
    3.1.1 reply topic), garbage and truncated JSON. Each with a reply address is
    answered ``bad_request``; every agent keeps running with its term, log and map
    unchanged, and the swarm still commits. (An unpaired surrogate in a request's id
    once raised on the node thread while encoding the reply, stopping the agent.)"""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    cluster, client, leader, before = _guarded_swarm(cluster_factory)
    replies: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_message(c: Any, u: Any, m: Any) -> None:
        with lock:
            replies.append(json.loads(m.payload))

    rogue = paho.Client(CallbackAPIVersion.VERSION2, client_id="rogue-requests",
                        protocol=paho.MQTTv5)
    rogue.on_message = on_message
    rogue.connect(mosquitto.host, mosquitto.port)
    rogue.loop_start()
    hostile = [
        b'{"v":1,"id":"a\\ud800","op":"status"}',
        b'{"v":1,"id":"b","op":"register","nonce":"n\\udfff"}',
        b'{"v":1,"id":"c","op":"propose","session":1,"seq":1,'
        b'"command":{"type":"remove_zone","id":"z","\\ud800":1}}',
        b'{"v":1,"id":"d","op":"read","item":"zone:\\udc00x"}',
        b'{"v":1,"id":"e","op":"status","reply_to":"r/\\ud800"}',   # no address to answer
        b'{"v":1,"id":"f","op":"propose","session":',
        bytes(range(256)),
    ]
    answerable = 6   # all but the one whose only reply address is not Unicode text
    try:
        subscribed = threading.Event()
        rogue.on_subscribe = lambda *a: subscribed.set()
        rogue.subscribe("rogue/reply", qos=1)
        assert subscribed.wait(10)
        for node in cluster.ids:
            for payload in hostile:
                props = Properties(PacketTypes.PUBLISH)
                props.ResponseTopic = "rogue/reply"
                props.CorrelationData = b"x"
                if b'"reply_to"' in payload:
                    props = None
                rogue.publish(topics.request(cluster.swarm, node), payload, 1,
                              properties=props).wait_for_publish(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                if len(replies) >= answerable * len(cluster.ids):
                    break
            time.sleep(0.2)
    finally:
        rogue.disconnect()
        rogue.loop_stop()
    with lock:
        got = list(replies)
    assert len(got) == answerable * len(cluster.ids), got
    assert {(r["status"], r["code"]) for r in got} == {("error", "bad_request")}, got
    assert all(cluster.alive(i) for i in cluster.ids), cluster.logs()
    after = cluster.wait_converged(client)
    assert cluster.wait_leader(client) == leader
    for i in cluster.ids:
        for key in ("term", "last_index", "commit", "map_sha256"):
            assert after[i][key] == before[i][key], (i, key, before[i][key], after[i][key])
    _propose_ok(client, zone("after-hostile-requests"))


def test_a_flood_of_large_garbage_raft_payloads_is_dropped_counted_and_changes_nothing(
        cluster_factory, mosquitto) -> None:
    """A client with no key floods the leader's and a follower's Raft topics with the
    largest payloads the bus accepts (2 MiB, unauthenticated: they are queued for the
    node thread before anything is checked). Each one is counted exactly once, as
    dropped by the inbox's bounds (``raft_queue_full``) or rejected by the envelope
    opener, none is stepped, and every node's term, log and map stay as they were
    (docs/agent.md, "Bounded memory"). Half of them claim envelope version 1 and the
    no-hurry flag, so they pass the header's first bytes and wait in the queue without
    waking the node thread, as a forger's would."""
    import os

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from swarm.bus.envelope import DEFAULT_MAX_ENVELOPE_BYTES, FLAG_NO_HURRY

    cluster, client, leader, before = _guarded_swarm(cluster_factory)
    follower = next(i for i in cluster.ids if i != leader)
    targets = (leader, follower)

    def counted(i: int) -> float:
        m = cluster.metrics(i)
        return sum(v for k, v in m.items()
                   if k.startswith("swarm_raft_messages_rejected_total")
                   or k == 'swarm_raft_messages_dropped_total{reason="raft_queue_full"}')

    time.sleep(2.5)   # metrics follow the status period (2 s): a settled baseline
    base = {i: counted(i) for i in targets}
    per_target = 40
    rogue = paho.Client(CallbackAPIVersion.VERSION2, client_id="flood", protocol=paho.MQTTv5)
    rogue.connect(mosquitto.host, mosquitto.port)
    rogue.loop_start()
    try:
        garbage = [bytearray(os.urandom(DEFAULT_MAX_ENVELOPE_BYTES)) for _ in range(2)]
        garbage[1][0:2] = bytes([1, FLAG_NO_HURRY])
        infos = [rogue.publish(topics.raft(cluster.swarm, target), bytes(garbage[k % 2]), 1)
                 for k in range(per_target) for target in targets]
        for info in infos:
            info.wait_for_publish(60)
    finally:
        rogue.disconnect()
        rogue.loop_stop()

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = {i: counted(i) - base[i] for i in targets}
        if all(n >= per_target for n in got.values()):
            break
        time.sleep(0.5)
    # Every payload accounted for (more only if the bound also dropped some of the
    # cluster's own messages meanwhile, which Raft retransmits).
    assert all(n >= per_target for n in got.values()), (got, cluster.logs())
    after = cluster.wait_converged(client)
    assert cluster.wait_leader(client) == leader
    for i in cluster.ids:
        for key in ("term", "last_index", "commit", "map_sha256"):
            assert after[i][key] == before[i][key], (i, key, before[i][key], after[i][key])
    _propose_ok(client, zone("after-flood"))


def test_fail_over_between_two_bridged_brokers(tmp_path: Path, bridged_mosquittos) -> None:
    """Nodes 1 and 2 prefer broker A, node 3 broker B; B bridges swarm/# to A. Killing
    B moves node 3 (and the client) to A: consensus resumes, nothing acknowledged lost."""
    first, second = bridged_mosquittos
    cluster = AgentCluster(tmp_path, [first, second], 3)
    try:
        cluster.prefer(3, [second, first])
        cluster.start_all()
        client = SwarmClient([f"{second.host}:{second.port}", f"{first.host}:{first.port}"],
                             cluster.swarm)
        client.connect()
        cluster._clients.append(client)
        cluster.wait_leader(client, timeout=90)
        # The client is on B; nodes 1 and 2 are on A: each answers across the bridge
        # (one attempt each, no other node to fall back on).
        for node in (1, 2):
            reply = client.request(node, {"op": "status"}, 30)
            assert reply.status == "ok" and reply.body["node"]["node"] == node, reply.body
        acked = set()
        for k in range(5):
            _propose_ok(client, zone(f"bridged-{k}"))
            acked.add(f"bridged-{k}")
        cluster.wait_converged(client)
        second.kill()
        assert client._bus.wait_connected(30)
        deadline = time.monotonic() + 60
        while cluster.metrics(3)["swarm_broker_failovers_total"] < 1:
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.5)
        cluster.wait_leader(client, timeout=90)
        for k in range(5):
            _propose_ok(client, zone(f"failed-over-{k}"))
            acked.add(f"failed-over-{k}")
        statuses = cluster.wait_converged(client, timeout=90)
        assert len({s["map_sha256"] for s in statuses.values()}) == 1
        assert acked <= _zone_ids(client)
    finally:
        cluster.close()


def test_a_faulty_link_between_one_drone_and_the_broker(cluster_factory, mosquitto) -> None:
    """Each drone reaches the broker through its own fault-injecting TCP proxy. The
    leader's link is delayed, then cut (a new leader takes over, writes resume), then
    healed (the old leader rejoins and catches up): nothing acknowledged is lost."""
    from fault_proxy import FaultProxy

    cluster = cluster_factory(3)
    proxies = {i: FaultProxy(mosquitto.host, mosquitto.port) for i in cluster.ids}
    try:
        for i, p in proxies.items():
            cluster.route_broker(i, mosquitto, p.host, p.port)
        cluster.start_all()
        client = cluster.client()
        leader = cluster.wait_leader(client)
        acked = set()

        def write(tag: str) -> None:
            _propose_ok(client, zone(tag))
            acked.add(tag)

        write("clean")
        proxies[leader].delay(0.05)     # a slow link: still leads, writes still commit
        for k in range(3):
            write(f"slow-{k}")
        proxies[leader].cut()
        survivors = [i for i in cluster.ids if i != leader]
        new = cluster.wait_leader(client, among=survivors)
        assert new != leader
        for k in range(3):
            write(f"cut-{k}")
        proxies[leader].heal()
        statuses = cluster.wait_converged(client, timeout=90)
        assert len({s["map_sha256"] for s in statuses.values()}) == 1
        assert acked <= _zone_ids(client)
        write("healed")
    finally:
        cluster.close()
        for p in proxies.values():
            p.close()


def test_a_leader_without_a_flight_controller_commits_the_assignment(cluster_factory) -> None:
    """Issue 13's assignment is the agent's job, not the flight side's: agents with no
    ``[mavlink]`` (ground-side nodes) propose it when leader, and a new leader after a
    SIGKILL proposes the next one."""
    cluster = cluster_factory(3)
    cluster.start_all()
    client = cluster.client()
    leader = cluster.wait_leader(client)
    lon, lat = -122.1, 37.4
    for k in (1, 2):
        _propose_ok(client, {"type": "set_drone_task", "id": f"drone-{k}", "task": "search",
                             "alive": True, "busy": False, "home": [lon, lat + k * 1e-3, 10.0]})
    d = 0.004
    _propose_ok(client, {"type": "set_search_area",
                         "polygon": [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d]]})

    def current_everywhere(among: list[int], epoch_above: int = 0) -> dict[int, dict]:
        deadline = time.monotonic() + 60
        last: dict[int, dict] = {}
        while time.monotonic() < deadline:
            last = {n: s.get("assignment") or {} for n, s in client.statuses(wait_s=0.3).items()
                    if n in among and s.get("online")}
            if len(last) == len(among) and all(a.get("current") and a["epoch"] > epoch_above
                                               for a in last.values()) \
                    and len({a["sha256"] for a in last.values()}) == 1:
                return last
            time.sleep(0.2)
        raise AssertionError(f"no current committed assignment on {among}: {last}\n{cluster.logs()}")

    first = current_everywhere(cluster.ids)
    epoch = next(iter(first.values()))["epoch"]
    cluster.kill(leader)
    rest = [i for i in cluster.ids if i != leader]
    cluster.wait_leader(client, among=rest, timeout=60)
    _propose_ok(client, zone("burn-a", lon + 0.001, lat + 0.001, "burned"))
    after = current_everywhere(rest, epoch_above=epoch)
    assert next(iter(after.values()))["sha256"] != next(iter(first.values()))["sha256"]


def test_register_agents_commit_read_linearizably_and_survive_a_leader_kill(cluster_factory) -> None:
    # The benchmark register ([node] state_machine = "register") behind the same session
    # layer, client protocol and storage as the map.
    cluster = cluster_factory(3, state_machine="register")
    cluster.start_all()
    client = cluster.client()
    old = cluster.wait_leader(client)
    acked: dict[str, str] = {}

    def put(key: str, value: str) -> None:
        reply = client.propose({"type": "put", "key": key, "value": value}, timeout_s=60)
        assert reply.committed, reply.body
        acked[key] = value

    for k in range(10):
        put(f"k{k % 4}", f"before-{k}")
        # Linearizable: a read after the acknowledgement sees the write, from any node
        # (a follower's read goes through the leader's ReadIndex round).
        node = cluster.ids[k % 3]
        read = client.request(node, {"op": "read", "item": f"k{k % 4}"}, 30)
        assert read.status == "ok" and read.body["item"] == f"before-{k}", read.body
    bad = client.propose({"type": "put", "key": "", "value": "v"})
    assert bad.code == "invalid" and bad.message.startswith("put.key:"), bad.body
    statuses = cluster.wait_converged(client)
    assert len({s["map_sha256"] for s in statuses.values()}) == 1
    assert {s["state_machine"] for s in statuses.values()} == {"register"}
    assert all("assignment" not in s for s in statuses.values())
    cluster.kill(old)
    new = cluster.wait_leader(client, among=[i for i in cluster.ids if i != old])
    assert new != old
    for k in range(5):
        put(f"after-{k}", str(k))
    reply = client.read()
    assert reply.status == "ok" and reply.body["map"] == acked, reply.body
    cluster.start(old)  # recovers the register from its SQLite store and catches up
    statuses = cluster.wait_converged(client)
    assert len({s["map_sha256"] for s in statuses.values()}) == 1
    assert client.request(old, {"op": "read"}, 30).body["map"] == acked
