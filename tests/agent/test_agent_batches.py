"""Batched proposals (docs/protocol.md, "Batches") on real agent processes and a real
mosquitto: a JSON array through the ``swarm propose`` CLI, a batch sent to a follower
(forwarded to the leader), and batches from ``SwarmClient.propose_many`` while the
leader is SIGKILLed mid-stream. Nothing acknowledged is lost, and the committed log,
replayed through the session layer, applied every command at most once (each
acknowledged one exactly once, at the index its reply named). The same with the
register, whose batches are one log entry each."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from consensus.session import SessionStateMachine
from consensus.sqlite_storage import SQLiteStorage
from consensus.types import EntryKind
from swarm.bus.broker import LocalBroker
from swarm.client import SwarmClient

from agent_cluster import ROOT, AgentCluster, zone

pytestmark = pytest.mark.timeout(240)

#: Rounds of one propose_many each (64 commands: one batch) that the writer may make.
MAX_ROUNDS = 24
#: Rounds written after the kill before the writer stops.
ROUNDS_AFTER_KILL = 3
#: The zone ids this test writes (the leader's own commits have others).
OURS = ("cli-", "fw-", "b")


@pytest.fixture
def cluster(tmp_path: Path, mosquitto: LocalBroker):
    c = AgentCluster(tmp_path, mosquitto, 3)
    yield c
    c.close()


class _Recorder:
    """The inner state machine of a replay: which map command applied at which index."""

    def __init__(self) -> None:
        self.applied: dict[str, list[int]] = {}

    def apply(self, index: int, data: bytes) -> bytes:
        command = json.loads(data)   # a map command's id, a register put's key
        self.applied.setdefault(str(command.get("id", command.get("key"))), []).append(index)
        return b"{}"

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        raise AssertionError("the replay starts from an uncompacted log")


def _replay(db: Path, batch_entries: bool = False) -> dict[str, list[int]]:
    """Every map command (register put) the committed log of ``db`` applied, by zone id
    (key): the log index of each application, through the session layer as the agents
    apply it (``batch_entries``: the register's, docs/protocol.md "Batches")."""
    storage = SQLiteStorage(db, create=False)
    try:
        assert storage.first_index() == 1, "compacted: raise snapshot_every for this test"
        commit = storage.initial_state()[0].commit
        recorder = _Recorder()
        sessions = SessionStateMachine(recorder, batch_entries=batch_entries)
        for e in storage.entries(1, commit + 1):
            if e.kind is EntryKind.NORMAL and e.data:
                sessions.apply(e.index, e.data)
        return recorder.applied
    finally:
        storage.close()


def test_batches_survive_a_leader_kill_and_apply_each_command_once(cluster: AgentCluster) -> None:
    cluster.start_all()
    client = cluster.client()
    old = cluster.wait_leader(client)
    acked: dict[str, int] = {}   # zone id -> the index its committed reply named

    # 1. A JSON array through the CLI (a separate client process): batched, one command
    # refused by the map (exit 2: every command not committed was refused).
    cli = [zone(f"cli-{k}") for k in range(40)] + [{"type": "remove_zone", "id": "none"}]
    proc = subprocess.run(
        [sys.executable, "-m", "swarm", "propose", "-", "--broker", cluster.broker_list()[0],
         "--swarm", cluster.swarm, "--timeout", "60"],
        input=json.dumps(cli).encode(), capture_output=True, timeout=90, cwd=ROOT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    replies = json.loads(proc.stdout)
    assert [r["status"] for r in replies] == ["committed"] * 40 + ["error"]
    assert replies[40]["code"] == "invalid" and "none" in replies[40]["message"]
    acked.update((f"cli-{k}", r["index"]) for k, r in enumerate(replies[:40]))

    # 2. A batch sent to a follower: forwarded to the leader, answered by the follower.
    follower = next(i for i in cluster.ids if i != old)
    reg = client.request(follower, {"op": "register", "nonce": "batch-follower"}, 30)
    assert reg.status == "registered", reg.body
    body = {"op": "propose", "session": reg.body["session"],
            "commands": [{"seq": k + 1, "command": zone(f"fw-{k}")} for k in range(20)]}
    reply = client.request(follower, body, 30)
    assert reply.status == "batch", reply.body
    assert [r["seq"] for r in reply.body["results"]] == list(range(1, 21))
    assert all(r["status"] == "committed" for r in reply.body["results"]), reply.body
    acked.update((f"fw-{k}", r["index"]) for k, r in enumerate(reply.body["results"]))

    # 3. Batches from propose_many while the leader is SIGKILLed mid-stream.
    rounds_done = threading.Event()
    killed = threading.Event()
    state: dict[str, Any] = {"rounds": 0, "after": 0, "not_committed": [], "error": None}

    def write() -> None:
        writer = cluster.client()
        try:
            for r in range(MAX_ROUNDS):
                ids = [f"b{r}-{k}" for k in range(64)]
                for zid, rep in zip(ids, writer.propose_many([zone(z) for z in ids],
                                                             timeout_s=60)):
                    if rep.committed:
                        acked[zid] = int(rep.body["index"])
                    else:
                        state["not_committed"].append((zid, dict(rep.body)))
                state["rounds"] += 1
                if state["rounds"] >= 2:
                    rounds_done.set()
                if killed.is_set():
                    state["after"] += 1
                    if state["after"] >= ROUNDS_AFTER_KILL:
                        return
        except Exception as exc:  # reported below, in the test's thread
            state["error"] = exc
        finally:
            rounds_done.set()
            writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    assert rounds_done.wait(120), "the writer made no progress"
    cluster.kill(old)   # the writer is in the middle of its next batch
    killed.set()
    thread.join(180)
    assert not thread.is_alive() and state["error"] is None, state["error"]
    assert state["after"] >= ROUNDS_AFTER_KILL, state
    assert not state["not_committed"], state["not_committed"][:3]
    new = cluster.wait_leader(client, among=[i for i in cluster.ids if i != old])
    assert new != old

    # Nothing acknowledged lost, on every node once the old leader has caught up.
    cluster.start(old)
    statuses = cluster.wait_converged(client)
    assert len({s["map_sha256"] for s in statuses.values()}) == 1
    _, doc = client.read_map()
    ids = {f["properties"]["id"] for f in doc["features"] if f["properties"]["kind"] == "zone"}
    assert set(acked) <= ids
    client.close()
    for i in cluster.ids:
        assert cluster.stop(i) == 0, cluster.logs()
    # Exactly once: each node's committed log, replayed through the session layer,
    # applied every command at most once, and each acknowledged one at its reply's index.
    for i in cluster.ids:
        applied = _replay(cluster.data_dir(i) / "raft.db")
        ours = {z: where for z, where in applied.items() if z.startswith(OURS)}
        twice = {z: where for z, where in ours.items() if len(where) > 1}
        assert not twice, (i, dict(list(twice.items())[:5]))
        wrong = {z: (index, applied.get(z)) for z, index in acked.items()
                 if applied.get(z) != [index]}
        assert not wrong, (i, dict(list(wrong.items())[:5]))


def test_register_batches_are_one_entry_each_and_survive_a_leader_kill(
        tmp_path: Path, mosquitto: LocalBroker) -> None:
    cluster = AgentCluster(tmp_path, mosquitto, 3, state_machine="register")
    try:
        cluster.start_all()
        client = cluster.client()
        old = cluster.wait_leader(client)
        acked: dict[str, int] = {}   # key -> the index its committed reply named
        # A batch through a follower: forwarded as one entry, all its puts at its index.
        follower = next(i for i in cluster.ids if i != old)
        reg = client.request(follower, {"op": "register", "nonce": "reg-follower"}, 30)
        assert reg.status == "registered", reg.body
        body = {"op": "propose", "session": reg.body["session"], "commands": [
            {"seq": k + 1, "command": {"type": "put", "key": f"fw-{k}", "value": "v"}}
            for k in range(20)]}
        reply = client.request(follower, body, 30)
        assert reply.status == "batch", reply.body
        results = reply.body["results"]
        assert all(r["status"] == "committed" for r in results), results
        assert len({r["index"] for r in results}) == 1
        acked.update((f"fw-{k}", r["index"]) for k, r in enumerate(results))
        # Batches from propose_many, the leader SIGKILLed between two of them and a
        # third sent right after (re-proposed by the new leader's followers, retried by
        # the client with the same seqs).
        writer = cluster.client()
        for r in range(5):
            if r == 2:
                cluster.kill(old)
            keys = [f"b{r}-{k}" for k in range(64)]
            replies = writer.propose_many(
                [{"type": "put", "key": key, "value": str(r)} for key in keys], timeout_s=60)
            for key, rep in zip(keys, replies):
                assert rep.committed, (key, rep.body)
                acked[key] = int(rep.body["index"])
        writer.close()
        cluster.start(old)
        statuses = cluster.wait_converged(client)
        assert len({s["map_sha256"] for s in statuses.values()}) == 1
        _, values = client.read_map()
        assert set(acked) <= set(values)
        client.close()
        for i in cluster.ids:
            assert cluster.stop(i) == 0, cluster.logs()
        for i in cluster.ids:
            applied = _replay(cluster.data_dir(i) / "raft.db", batch_entries=True)
            twice = {k: where for k, where in applied.items() if len(where) > 1}
            assert not twice, (i, dict(list(twice.items())[:5]))
            wrong = {k: (index, applied.get(k)) for k, index in acked.items()
                     if applied.get(k) != [index]}
            assert not wrong, (i, dict(list(wrong.items())[:5]))
        # One entry per batch: far fewer entries than puts.
        assert len(set(acked.values())) < len(acked) / 8
    finally:
        cluster.close()
