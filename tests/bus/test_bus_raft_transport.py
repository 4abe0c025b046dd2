"""swarm.bus.RaftTransport over a real mosquitto: Raft messages sealed per receiver
arrive intact at exactly their receivers; the inbound queue is bounded; a rogue
publisher's envelopes are rejected by reason and deliver nothing."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from consensus.types import Entry, EntryKind, Message, MessageType
from swarm.bus import (
    Bus,
    BusConfig,
    Keyring,
    RaftTransport,
    RejectReason,
    SwarmKey,
    durable_opener,
    durable_sealer,
    topics,
)

KEY = SwarmKey(bytes(range(32)))
WAIT = 20.0


def make_node(broker, node, tmp_path, **kw):
    data = tmp_path / f"n{node}"
    data.mkdir(exist_ok=True)
    ring = Keyring(KEY)
    opener, _store = durable_opener("fire", node, ring, data, clock=time.monotonic)
    wake = threading.Event()
    bus = Bus(BusConfig((broker.address,), f"node-{node}"))
    t = RaftTransport(bus, "fire", node, durable_sealer("fire", node, ring, data), opener,
                      notify=wake.set, **kw)
    t.attach()
    bus.start()
    assert bus.wait_connected(WAIT)
    return t, wake


def collect(t: RaftTransport, want: int, wake: threading.Event) -> list[Message]:
    """The next ``want`` messages of term 2 (late probe heartbeats, term 1, skipped)."""
    got: list[Message] = []
    deadline = time.monotonic() + WAIT
    while len(got) < want and time.monotonic() < deadline:
        wake.wait(0.2)
        wake.clear()
        got += [m for m in t.drain() if m.term == 2]
    return got


def probe_until_subscribed(sender: RaftTransport, receiver: RaftTransport, wake) -> None:
    """The first heartbeat that arrives proves the subscription is active."""
    hb = Message(MessageType.HEARTBEAT, to=receiver.node, frm=sender.node, term=1)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        sender.send([hb])
        if collect_once(receiver, wake):
            return
    raise AssertionError("subscription never became active")


def collect_once(t, wake) -> list[Message]:
    wake.wait(0.3)
    wake.clear()
    return t.drain()


def test_messages_reach_exactly_their_receivers(mosquitto, tmp_path):
    nodes = {n: make_node(mosquitto, n, tmp_path) for n in (1, 2, 3)}
    try:
        for n in (2, 3):
            probe_until_subscribed(nodes[1][0], nodes[n][0], nodes[n][1])
        ents = tuple(Entry(2, i, EntryKind.NORMAL, b"cmd%d" % i) for i in range(1, 4))
        batch = [
            Message(MessageType.APPEND, to=2, frm=1, term=2, index=0, entries=ents, commit=0),
            Message(MessageType.VOTE, to=3, frm=1, term=2, log_term=1, index=5),
            Message(MessageType.HEARTBEAT, to=2, frm=1, term=2, commit=1, context=b"rd"),
        ]
        nodes[1][0].send(batch)
        assert collect(nodes[2][0], 2, nodes[2][1]) == [batch[0], batch[2]]
        assert collect(nodes[3][0], 1, nodes[3][1]) == [batch[1]]
        s1 = nodes[1][0].stats()
        assert s1.send_dropped == {} and s1.messages_sent >= 3
        assert nodes[2][0].stats().rejected == {}
    finally:
        for t, _ in nodes.values():
            t.bus.close()


def test_rogue_traffic_is_rejected_and_the_inbound_queue_is_bounded(mosquitto, tmp_path):
    t2, wake2 = make_node(mosquitto, 2, tmp_path, max_inbound=3)
    t1, _ = make_node(mosquitto, 1, tmp_path)
    rogue = paho.Client(CallbackAPIVersion.VERSION2, client_id="rogue")
    rogue.connect(mosquitto.host, mosquitto.port)
    rogue.loop_start()
    try:
        probe_until_subscribed(t1, t2, wake2)
        time.sleep(1.0)           # let any later probe land, then clear them out
        t2.drain()
        for payload in (b"garbage", b"\x01" + b"\x00" * 80):
            rogue.publish(topics.raft("fire", 2), payload, 1).wait_for_publish(WAIT)
        assert wait(lambda: t2.pending() == 2)
        assert t2.drain() == []
        assert t2.stats().rejected == {RejectReason.GARBLED: 1, RejectReason.BAD_HEADER: 1}
        # Nobody drains: beyond max_inbound envelopes are dropped and counted.
        for _ in range(6):
            rogue.publish(topics.raft("fire", 2), b"flood", 1).wait_for_publish(WAIT)
        assert wait(lambda: t2.stats().inbound_dropped == 3)
        assert t2.pending() == 3
    finally:
        rogue.disconnect()
        rogue.loop_stop()
        t1.bus.close()
        t2.bus.close()


def wait(pred, timeout=WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pred():
        time.sleep(0.02)
    return pred()
