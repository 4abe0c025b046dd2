"""swarm.client.SwarmClient against a real mosquitto: it connects on first use (no
``connect()`` needed before ``propose``/``read``), and a missing broker or a swarm with
no node online is a prompt, named ClientError, never a hang or a crash. (Committing
through a lazily connected client against real agents: test_agent_processes.py.)"""

from __future__ import annotations

import json
import threading
import time

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
    be the one missing). Garbage in a status's ``voters`` is ignored."""
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
                                     status(node, [1, 2, 3, "4", True, -5]), qos=1, retain=True)
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
