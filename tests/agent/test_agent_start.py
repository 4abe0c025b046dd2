"""The agent's start-up (swarm/agent/node.py Agent.start): every input is checked before
anything in the data folder changes, so a refused start leaves it as it was (absent, or
byte for byte); secret files are refused when others may read them; the config's voters
against the store's; a drone whose data folder was wiped rejoins under its own id
(its first epoch is above its old ones, swarm.bus.replay); and a peer that is refused as
stale_epoch again and again is named in a warning."""

from __future__ import annotations

import hashlib
import logging
import shutil
import socket
import threading
from pathlib import Path

import pytest

from consensus.sqlite_storage import SQLiteStorage
from consensus.types import ConfState, Message, MessageType
from swarm.agent.config import AgentConfig, load_config
from swarm.agent.machine import claim_data_dir
from swarm.agent.node import STALE_EPOCH_WARN_AFTER, Agent, AgentError, _StaleSenders
from swarm.bus import topics
from swarm.bus.broker import LocalBroker
from swarm.bus.client import Received
from swarm.bus.envelope import EnvelopeOpener, EnvelopeSealer, Keyring, RejectReason
from swarm.bus.keys import generate_key_file, load_key
from swarm.bus.replay import EPOCH_FILE, FloorStore, claim_epoch, read_epoch

from agent_cluster import AgentCluster, zone

pytestmark = pytest.mark.timeout(240)


def _config(tmp: Path, extra: str = "", bus: str = "", node: str = "",
            broker: str = "127.0.0.1:1") -> AgentConfig:
    key = tmp / "swarm.key"
    if not key.exists():
        generate_key_file(key)
    path = tmp / "drone.toml"
    path.write_text(f"""
[node]
id = 1
data_dir = "data"
voters = [1, 2, 3]
{node}
[swarm]
id = "test"
key_file = "swarm.key"
[bus]
brokers = ["{broker}"]
{bus}
[metrics]
listen = "off"
{extra}
""")
    return load_config(path)


def _tree(folder: Path) -> dict[str, str] | None:
    """Every file under ``folder`` and the hash of its bytes (None: no folder)."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _used_folder(data: Path) -> None:
    """A data folder as a stopped agent leaves it (store, marker, epoch, floors, lock)."""
    data.mkdir()
    SQLiteStorage(data / "raft.db", ConfState.of([1, 2, 3])).close()
    claim_data_dir(data, "map")
    claim_epoch(data)
    FloorStore(data).save({2: (7, 40), 3: (9, 12)})
    (data / "agent.lock").write_text("4242\n")


def _refused(config: AgentConfig) -> str:
    with pytest.raises(AgentError) as err:
        Agent(config).start()
    return str(err.value)


# -- a refused start changes nothing ------------------------------------------------------

@pytest.mark.parametrize("used", [False, True], ids=["absent", "used"])
def test_an_unsafe_key_file_is_refused_and_the_data_folder_is_left_as_it_was(tmp_path, used):
    config = _config(tmp_path)
    if used:
        _used_folder(tmp_path / "data")
    before = _tree(tmp_path / "data")
    (tmp_path / "swarm.key").chmod(0o644)
    message = _refused(config)
    assert f"chmod 600 {tmp_path / 'swarm.key'}" in message
    assert _tree(tmp_path / "data") == before


def test_a_corrupt_database_is_refused_without_claiming_an_epoch(tmp_path):
    config = _config(tmp_path)
    data = tmp_path / "data"
    _used_folder(data)
    (data / "raft.db").write_bytes(b"")  # truncated to zero: corruption, never a fresh start
    before, epoch = _tree(data), read_epoch(data)
    message = _refused(config)
    assert "raft.db" in message and "empty" in message
    assert _tree(data) == before and read_epoch(data) == epoch


@pytest.mark.parametrize("used", [False, True], ids=["absent", "used"])
def test_a_taken_metrics_port_is_refused_after_the_checks_and_undone(tmp_path, used):
    """The metrics port is bound after the store is opened (a healthy one here) and
    before anything is written: the refusal closes the store and leaves the folder."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "drone.toml"
        _config(tmp_path)
        path.write_text(path.read_text().replace('listen = "off"', f'listen = "127.0.0.1:{port}"'))
        config = load_config(path)
        if used:
            _used_folder(tmp_path / "data")
        before = _tree(tmp_path / "data")
        assert f"[metrics] listen 127.0.0.1:{port}" in _refused(config)
    assert _tree(tmp_path / "data") == before
    # ... and the store opens again: nothing holds it.
    if used:
        SQLiteStorage(tmp_path / "data" / "raft.db").close()


def test_another_state_machines_folder_is_refused_unchanged(tmp_path):
    config = _config(tmp_path, node='state_machine = "register"')
    _used_folder(tmp_path / "data")
    before = _tree(tmp_path / "data")
    assert "'map' state machine" in _refused(config)
    assert _tree(tmp_path / "data") == before


def test_a_corrupt_epoch_file_is_refused_unchanged(tmp_path):
    config = _config(tmp_path)
    _used_folder(tmp_path / "data")
    (tmp_path / "data" / EPOCH_FILE).write_text("garbage\n")
    before = _tree(tmp_path / "data")
    assert EPOCH_FILE in _refused(config)
    assert _tree(tmp_path / "data") == before


def test_a_data_dir_that_is_a_file_is_not_a_folder(tmp_path):
    config = _config(tmp_path)
    (tmp_path / "data").write_text("not a folder\n")
    message = _refused(config)
    assert f"data folder {tmp_path / 'data'} is not a folder" in message
    assert (tmp_path / "data").read_text() == "not a folder\n"


def test_a_missing_parent_folder_made_for_a_refused_start_is_removed(tmp_path):
    path = tmp_path / "drone.toml"
    _config(tmp_path)
    path.write_text(path.read_text().replace('data_dir = "data"', 'data_dir = "a/b/data"'))
    config = load_config(path)
    (tmp_path / "swarm.key").write_text("not a key\n")
    (tmp_path / "swarm.key").chmod(0o600)
    assert "holds no key" in _refused(config)
    assert not (tmp_path / "a").exists()


# -- secret files ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_password_file_others_may_read_is_refused_with_the_fix(tmp_path, mode):
    secret = tmp_path / "mqtt.password"
    secret.write_text("pw\n")
    secret.chmod(mode)
    config = _config(tmp_path, bus='username = "drone-1"\npassword_file = "mqtt.password"')
    message = _refused(config)
    assert "password_file" in message and f"chmod 600 {secret}" in message
    assert _tree(tmp_path / "data") is None


def test_a_tls_client_key_others_may_read_is_refused_with_the_fix(tmp_path):
    for name in ("ca.crt", "drone.crt", "drone.key"):
        (tmp_path / name).write_text("-----BEGIN-----\n")
    (tmp_path / "drone.key").chmod(0o644)
    config = _config(tmp_path, broker="mqtts://127.0.0.1:1",
                     bus='[bus.tls]\nca_file = "ca.crt"\ncert_file = "drone.crt"\n'
                         'key_file = "drone.key"')
    message = _refused(config)
    assert "[bus.tls] key_file" in message and f"chmod 600 {tmp_path / 'drone.key'}" in message
    assert _tree(tmp_path / "data") is None


# -- voters --------------------------------------------------------------------------------

def test_config_voters_that_differ_from_the_store_are_named_in_a_warning(tmp_path, mosquitto,
                                                                        caplog):
    """The store is the truth (a membership change through Raft updates it, not the
    config): the start goes on with the store's voters, and says so."""
    _used_folder(tmp_path / "data")  # voters 1, 2, 3
    path = tmp_path / "drone.toml"
    _config(tmp_path, broker=f"{mosquitto.host}:{mosquitto.port}")
    path.write_text(path.read_text().replace("voters = [1, 2, 3]", "voters = [1, 2, 3, 4, 5]"))
    agent = Agent(load_config(path))
    with caplog.at_level(logging.WARNING, logger="swarm.agent"):
        agent.start()
    try:
        warned = [r.getMessage() for r in caplog.records if "voters" in r.getMessage()]
        assert len(warned) == 1, warned
        assert "[1, 2, 3, 4, 5]" in warned[0] and "[1, 2, 3]" in warned[0]
        assert agent.status()["voters"] == [1, 2, 3]
    finally:
        stop = threading.Event()
        stop.set()
        agent.run(stop)


def test_equal_voters_say_nothing(tmp_path, mosquitto, caplog):
    _used_folder(tmp_path / "data")
    agent = Agent(_config(tmp_path, broker=f"{mosquitto.host}:{mosquitto.port}"))
    with caplog.at_level(logging.WARNING, logger="swarm.agent"):
        agent.start()
    try:
        assert not [r for r in caplog.records if "voters" in r.getMessage()]
    finally:
        stop = threading.Event()
        stop.set()
        agent.run(stop)


# -- stale epochs ---------------------------------------------------------------------------

def test_a_peer_refused_as_stale_epoch_again_and_again_is_named_in_a_warning(tmp_path, caplog):
    """Node 2's data folder was wiped while its clock was unset: it seals with epoch 1
    and this node holds its floor at epoch 7. Every envelope is refused (counted per
    reason); once that is a run, a warning names node 2 and the fix."""
    config = _config(tmp_path)
    agent = Agent(config)
    ring = Keyring(load_key(config.swarm.key_file))
    agent.opener = EnvelopeOpener("test", 1, ring, floors={2: (7, 40)}, clock=lambda: 0.0)
    wiped = EnvelopeSealer("test", 2, ring, 1)

    def deliver(n: int) -> None:
        for _ in range(n):
            env = wiped.seal(1, [Message(MessageType.HEARTBEAT_RESP, to=1, frm=2, term=3)])[0]
            agent._step_envelope(Received(topics.raft("test", 1), env, 0, False), 0.0)

    with caplog.at_level(logging.WARNING, logger="swarm.agent"):
        deliver(STALE_EPOCH_WARN_AFTER - 1)
        assert not caplog.records  # a few are normal right after a peer restarts
        deliver(1)
    assert agent.opener.rejected()[RejectReason.STALE_EPOCH] == STALE_EPOCH_WARN_AFTER
    [record] = caplog.records
    text = record.getMessage()
    assert text.startswith("node 2:") and "stale_epoch" in text and EPOCH_FILE in text
    assert "epoch 1 is older than the sender's epoch 7" in text


def test_stale_epoch_warnings_are_rate_limited_per_sender_and_reset_by_an_accepted_one():
    seen = _StaleSenders(after=3, period_s=60.0)
    assert [seen.refused(2, 0.0) for _ in range(3)] == [None, None, 3]
    assert seen.refused(2, 59.0) is None           # within the period: counted, not said
    assert seen.refused(5, 59.0) is None           # another sender has its own run
    assert seen.refused(2, 60.0) == 5
    seen.accepted(2)                                # heard again: the run is over
    assert [seen.refused(2, 200.0) for _ in range(3)] == [None, None, 3]


# -- a wiped data folder rejoins -------------------------------------------------------------

def test_a_follower_whose_data_folder_was_wiped_rejoins_under_its_id_and_catches_up(
        tmp_path: Path, mosquitto: LocalBroker) -> None:
    """A drone reflashed (its data folder gone) restarts with its old id: its first
    epoch is above every epoch its peers hold for it, so they hear it, and the leader
    sends it the whole log (here a snapshot: compaction has dropped the start of the
    log). It was restarted once before the wipe, so its peers' floor for it is above the
    epoch 1 a counter-only claim would start at again."""
    cluster = AgentCluster(tmp_path, mosquitto, 3,
                           extra="[raft]\nsnapshot_every = 4\ncompact_keep = 1\n")
    try:
        cluster.start_all()
        client = cluster.client()
        leader = cluster.wait_leader(client)
        for k in range(3):
            assert client.propose(zone(f"a-{k}"), timeout_s=60).committed
        wiped = next(i for i in cluster.ids if i != leader)
        assert cluster.stop(wiped) == 0
        cluster.start(wiped)
        cluster.wait_converged(client)
        old_epoch = read_epoch(cluster.data_dir(wiped))
        assert cluster.stop(wiped) == 0
        shutil.rmtree(cluster.data_dir(wiped))  # reflashed: no store, no bus-epoch, no floors
        for k in range(6):
            assert client.propose(zone(f"b-{k}"), timeout_s=60).committed
        cluster.start(wiped)
        statuses = cluster.wait_converged(client, timeout=90)
        assert read_epoch(cluster.data_dir(wiped)) > old_epoch
        assert statuses[wiped]["applied"] == statuses[leader]["applied"]
        _, doc = client.read_map()
        ids = {f["properties"]["id"] for f in doc["features"]
               if f["properties"]["kind"] == "zone"}
        assert {f"a-{k}" for k in range(3)} | {f"b-{k}" for k in range(6)} <= ids
        metrics = cluster.metrics_with_status(client, wiped)[0]
        assert metrics["swarm_snapshots_installed_total"] >= 1
        for i in cluster.ids:
            if i != wiped:
                assert "stale_epoch" not in cluster.log_path(i).read_text(errors="replace")
        # The leader hears it (a snapshot may reach a follower the leader never hears
        # from; a commit cannot): with the other follower stopped, a write commits only
        # with the rejoined node's acknowledgement.
        other = next(i for i in cluster.ids if i not in (leader, wiped))
        assert cluster.stop(other) == 0
        assert client.propose(zone("c-0"), timeout_s=60).committed
        cluster.wait_converged(client, among=[leader, wiped], timeout=90)
    finally:
        cluster.close()
