"""A rolling swarm-key rotation on real agent processes and a real mosquitto
(docs/protocol.md, "Key rotation"): three drones restarted one at a time through both
phases and the end, while a client keeps committing. Nothing acknowledged is lost,
every node ends with the same state, no node ever met a key it did not accept, and
afterwards the old key opens nothing."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from swarm.bus import topics
from swarm.bus.broker import LocalBroker
from swarm.bus.keys import SwarmKey, generate_key_file, load_key
from swarm.client import ClientError, SwarmClient

from agent_cluster import AgentCluster, zone

pytestmark = pytest.mark.timeout(600)

UNKNOWN_KEY = 'swarm_raft_messages_rejected_total{reason="unknown_key"}'


class _Writer(threading.Thread):
    """Proposes one new zone after another on its own connection, and records the ones
    acknowledged as committed (a timeout's outcome is unknown: not recorded)."""

    def __init__(self, client: SwarmClient) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[str] = []
        self.unacked = 0

    def run(self) -> None:
        k = 0
        while not self.stop.is_set():
            zid = f"w-{k}"
            k += 1
            try:
                reply = self.client.propose(zone(zid), timeout_s=30)
                committed = reply.committed
            except ClientError:
                committed = False
            with self.lock:
                if committed:
                    self.acked.append(zid)
                else:
                    self.unacked += 1
            self.stop.wait(0.05)   # a steady trickle, not a benchmark

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_progress(self, writes: int, timeout: float, cluster: AgentCluster) -> None:
        """Liveness (bounded, generous): ``writes`` more acknowledged writes."""
        target = self.count() + writes
        deadline = time.monotonic() + timeout
        while self.count() < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the swarm stopped committing: {self.count()} acked, "
                                     f"waited for {target} ({self.unacked} unacknowledged)"
                                     f"\n{cluster.logs()}")
            time.sleep(0.1)


def _set_swarm_keys(cluster: AgentCluster, i: int, lines: str) -> None:
    """Replace node ``i``'s [swarm] key settings (everything after its id)."""
    path = cluster.config_path(i)
    text, n = re.subn(r"(\[swarm\]\nid = \"[^\"]*\"\n)(?:.*\n)*?(?=\[bus\])",
                      lambda m: m.group(1) + lines, path.read_text())
    assert n == 1, text
    path.write_text(text)


def _wait_keys(cluster: AgentCluster, client: SwarmClient, i: int, seal: SwarmKey,
               accept: tuple[SwarmKey, ...], timeout: float = 60.0) -> None:
    """Wait for node ``i``'s own report that it runs with these keys: what an operator
    checks (swarm status) before moving the next drone or the next phase on."""
    want = {"seal": seal.key_id.hex(), "accept": [k.key_id.hex() for k in accept]}
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        status = client.statuses(wait_s=0.5).get(i, {})
        seen = status.get("keys")
        if status.get("online") and seen == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"node {i} reports keys {seen}, expected {want}\n{cluster.logs()}")


def _unknown_key(cluster: AgentCluster, i: int) -> float:
    return cluster.metrics(i).get(UNKNOWN_KEY, 0.0)


def _forge_with(broker: LocalBroker, cluster: AgentCluster, key: SwarmKey,
                heartbeats_from: int | None = None) -> None:
    """A rogue client publishes, sealed with ``key``, a vote for a huge term to each node
    (claiming another node as its sender) and, if ``heartbeats_from`` is given, a
    broadcast heartbeat round claiming that node leads at a huge term and commit."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from consensus.types import Message, MessageType
    from swarm.bus.envelope import EnvelopeSealer, Keyring

    rogue = paho.Client(CallbackAPIVersion.VERSION2, client_id="rogue", protocol=paho.MQTTv5)
    rogue.connect(broker.host, broker.port)
    rogue.loop_start()
    try:
        keyring = Keyring(key)
        for target in cluster.ids:
            claimed = next(i for i in cluster.ids if i != target)
            forged = EnvelopeSealer(cluster.swarm, claimed, keyring, epoch=1 << 40)
            vote = Message(MessageType.VOTE, to=target, frm=claimed, term=2**40,
                           index=10**6, log_term=2**40 - 1)
            for env in forged.seal(target, [vote]):
                rogue.publish(topics.raft(cluster.swarm, target), env, 1).wait_for_publish(10)
        if heartbeats_from is not None:
            lead = heartbeats_from
            forged = EnvelopeSealer(cluster.swarm, lead, keyring, epoch=1 << 40)
            beats = [Message(MessageType.HEARTBEAT, to=i, frm=lead, term=2**40,
                             commit=10**6) for i in cluster.ids if i != lead]
            for env in forged.seal_broadcast(beats):
                rogue.publish(topics.raft_all(cluster.swarm), env, 1).wait_for_publish(10)
    finally:
        rogue.disconnect()
        rogue.loop_stop()


def test_a_rolling_key_rotation_keeps_the_swarm_committing_and_retires_the_old_key(
        tmp_path: Path, mosquitto: LocalBroker) -> None:
    cluster = AgentCluster(tmp_path, mosquitto, 3)
    writer: _Writer | None = None
    try:
        old = load_key(cluster.key_file)   # swarm.key, what the cluster starts with
        new = generate_key_file(tmp_path / "swarm.key.new")
        until = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat(timespec="seconds")
        cluster.start_all()
        client = cluster.client()
        cluster.wait_leader(client)
        for i in cluster.ids:
            _wait_keys(cluster, client, i, old, (old,))
        writer = _Writer(cluster.client())
        writer.start()
        writer.wait_progress(5, 60, cluster)

        phases = [
            # 1: learn the new key, still seal with the old one.
            ('key_file = "swarm.key"\nnext_key_file = "swarm.key.new"\n', old, (old, new)),
            # 2: seal with the new key, still accept the old one until a UTC time.
            ('key_file = "swarm.key.new"\nprevious_key_file = "swarm.key"\n'
             f"previous_until = {until}\n", new, (new, old)),
            # end: the old key is dropped.
            ('key_file = "swarm.key.new"\n', new, (new,)),
        ]
        for lines, seal, accept in phases:
            for i in cluster.ids:
                # No node so far met an envelope under a key it did not accept (the
                # counter is per process: read it before the process goes).
                assert _unknown_key(cluster, i) == 0, (i, cluster.logs())
                assert cluster.stop(i) == 0, cluster.logs()
                _set_swarm_keys(cluster, i, lines)
                cluster.start(i)
                _wait_keys(cluster, client, i, seal, accept)
                # The swarm commits with this node back, and every node, the ones still
                # in the previous phase too, applies it all (a node that could not read
                # the leader's key would never converge).
                writer.wait_progress(5, 90, cluster)
                cluster.wait_converged(client, timeout=90)
        for i in cluster.ids:
            assert _unknown_key(cluster, i) == 0, (i, cluster.logs())

        writer.stop.set()
        writer.join(60)
        assert not writer.is_alive()
        before = cluster.wait_converged(client)
        leader = cluster.wait_leader(client)
        _, doc = client.read_map()
        zones = {f["properties"]["id"] for f in doc["features"]
                 if f["properties"]["kind"] == "zone"}
        missing = set(writer.acked) - zones
        assert not missing, f"acknowledged writes lost: {sorted(missing)[:10]}"
        assert len(writer.acked) >= 5 * (1 + 3 * len(cluster.ids))
        assert len({s["map_sha256"] for s in before.values()}) == 1

        # The old key opens nothing now: a vote for a huge term and a heartbeat round
        # claiming the leader, both sealed with it, are refused as unknown_key.
        _forge_with(mosquitto, cluster, old, heartbeats_from=leader)

        deadline = time.monotonic() + 30   # metrics follow the status period (2 s)
        counts: dict[int, float] = {}
        while time.monotonic() < deadline:
            counts = {i: _unknown_key(cluster, i) for i in cluster.ids}
            if all(counts[i] >= (1 if i == leader else 2) for i in cluster.ids):
                break
            time.sleep(0.5)
        # Each node: the vote sent to it; each follower also the broadcast heartbeats.
        assert all(counts[i] >= (1 if i == leader else 2) for i in cluster.ids), counts
        after = cluster.wait_converged(client)
        assert cluster.wait_leader(client) == leader
        for i in cluster.ids:
            for key in ("term", "commit", "map_sha256"):
                assert after[i][key] == before[i][key], (i, key, before[i][key], after[i][key])
        reply = client.propose(zone("after-rotation"), timeout_s=60)
        assert reply.committed, reply.body
        for i in cluster.ids:
            assert cluster.stop(i) == 0, cluster.logs()
    finally:
        if writer is not None:
            writer.stop.set()
        cluster.close()


#: How long after the agents' start the previous key's overlap ends: far more than
#: three agents need to start on a loaded machine (each says at start whether the
#: previous key is still accepted), short for a test.
OVERLAP_S = 45.0


def test_the_previous_key_stops_opening_at_previous_until_while_the_agents_run(
        tmp_path: Path, mosquitto: LocalBroker) -> None:
    # previous_until is a calendar time, checked as each envelope is opened: running
    # agents stop accepting the old key at that moment, with no restart (an operator who
    # forgets the end-of-rotation restart is not left trusting the old key for ever).
    cluster = AgentCluster(tmp_path, mosquitto, 3)
    writer: _Writer | None = None
    try:
        old = load_key(cluster.key_file)
        new = generate_key_file(tmp_path / "swarm.key.new")
        until_at = time.time() + OVERLAP_S
        until = datetime.fromtimestamp(until_at, timezone.utc).isoformat(timespec="seconds")
        for i in cluster.ids:
            _set_swarm_keys(cluster, i, 'key_file = "swarm.key.new"\n'
                                        'previous_key_file = "swarm.key"\n'
                                        f"previous_until = {until}\n")
        cluster.start_all()
        client = cluster.client()
        cluster.wait_leader(client)
        processes = dict(cluster.procs)
        # Each node started in phase 2, the previous key still accepted (its own word
        # at start, so no race with the clock's end of the overlap).
        phase2 = (f"accepting the previous key {old.key_id.hex()} (previous_key_file) "
                  f"until {datetime.fromisoformat(until).isoformat()}")
        for i in cluster.ids:
            assert phase2 in cluster.log_path(i).read_text(), cluster.logs()
        writer = _Writer(cluster.client())
        writer.start()
        writer.wait_progress(5, 60, cluster)
        for i in cluster.ids:   # at previous_until, by itself
            _wait_keys(cluster, client, i, new, (new,), timeout=until_at - time.time() + 60)
        assert time.time() >= until_at - 1   # not earlier (status ticks every 2 s)
        # ... in the same processes: nothing was restarted.
        assert cluster.procs == processes and all(cluster.alive(i) for i in cluster.ids)
        writer.wait_progress(5, 60, cluster)   # the swarm seals with the new key: unmoved
        writer.stop.set()
        writer.join(60)
        assert not writer.is_alive()
        before = cluster.wait_converged(client)
        leader = cluster.wait_leader(client)

        # The old key opens nothing now: a vote for a huge term, sealed with it, to each.
        _forge_with(mosquitto, cluster, old)
        deadline = time.monotonic() + 30   # metrics follow the status period (2 s)
        counts: dict[int, float] = {}
        while time.monotonic() < deadline:
            counts = {i: _unknown_key(cluster, i) for i in cluster.ids}
            if all(n >= 1 for n in counts.values()):
                break
            time.sleep(0.5)
        assert all(n >= 1 for n in counts.values()), counts
        after = cluster.wait_converged(client)
        assert cluster.wait_leader(client) == leader
        for i in cluster.ids:
            for key in ("term", "commit", "map_sha256"):
                assert after[i][key] == before[i][key], (i, key, before[i][key], after[i][key])
        _, doc = client.read_map()
        zones = {f["properties"]["id"] for f in doc["features"]
                 if f["properties"]["kind"] == "zone"}
        assert not set(writer.acked) - zones
        assert client.propose(zone("after-expiry"), timeout_s=60).committed
    finally:
        if writer is not None:
            writer.stop.set()
        cluster.close()
