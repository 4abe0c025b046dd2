"""How many QoS 0 messages mosquitto drops from a burst, with its default per-client
queue and with the config `swarm broker` generates (docs/benchmarks.md, "Bus").

Publishers (separate processes, as Raft peers are) each send a burst of QoS 0
messages to one subscriber (a swarm.bus.Bus whose handler only queues the bytes, as the
agent's does); the subscriber counts what arrived once the burst is over. mosquitto
drops QoS 0 for a subscriber whose outgoing queue holds max_queued_messages packets
(default 1000), so the loss depends on how far the publishers outrun the subscriber.
"""

from __future__ import annotations

import argparse
import queue
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm.bus.broker import LocalBroker  # noqa: E402
from swarm.bus.client import BrokerAddress, Bus, BusConfig, Received  # noqa: E402

TOPIC = "swarm/bench/raft/1"

_PUBLISHER = """
import sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, count, size, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
c = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv5)
c.max_queued_messages_set(0)
c.connect("127.0.0.1", port)
c.loop_start()
while not c.is_connected():
    time.sleep(0.01)
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
payload = b"x" * size
for _ in range(count):
    c.publish(%r, payload, 0)
while c.want_write():
    time.sleep(0.01)
time.sleep(0.5)
c.disconnect(); c.loop_stop()
""" % TOPIC


def burst(broker: LocalBroker, publishers: int, count: int, size: int) -> tuple[int, int, float]:
    inbox: queue.SimpleQueue[Received] = queue.SimpleQueue()
    sub = Bus(BusConfig((BrokerAddress(broker.host, broker.port),), "bench-sub"))
    sub.subscribe(TOPIC, inbox.put, 0)
    sub.start()
    if not sub.wait_connected(20):
        raise SystemExit("subscriber did not connect")
    procs = [subprocess.Popen([sys.executable, "-c", _PUBLISHER, str(broker.port), str(count),
                               str(size), f"bench-pub-{i}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(publishers)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        time.sleep(0.3)                       # the subscription is surely active by now
        started = time.monotonic()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        got = 0
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.5:
            try:
                inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            got += 1
            idle_since = time.monotonic()
        elapsed = idle_since - started
        for p in procs:
            p.wait(60)
    finally:
        for p in procs:
            p.kill()
        sub.close()
    return publishers * count, got, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1x20000,4x20000,9x256",
                        help="bursts as PUBLISHERSxMESSAGES, comma-separated (9x256: nine "
                             "peers each sending a full Raft in-flight window at once)")
    parser.add_argument("--size", type=int, default=300, help="payload bytes (a Raft append)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    shapes = []
    for shape in args.shapes.split(","):
        pubs, _, count = shape.partition("x")
        shapes.append((int(pubs), int(count)))
    print(f"QoS 0 bursts of {args.size} B to one subscriber, {args.runs} runs each (mosquitto)")
    print(f"{'config':<26} {'pubs':>4} {'sent':>7} {'received':>9} {'dropped':>8} {'msg/s':>8}")
    for label, queued in (("mosquitto default (1000)", None), ("swarm broker (20000)", 20000)):
        broker = LocalBroker("mosquitto", queued_messages=queued)
        broker.start()
        try:
            for pubs, count in shapes:
                for _ in range(args.runs):
                    sent, got, elapsed = burst(broker, pubs, count, args.size)
                    print(f"{label:<26} {pubs:>4} {sent:>7} {got:>9} "
                          f"{100 * (sent - got) / sent:>7.1f}% {got / max(elapsed, 1e-9):>8.0f}",
                          flush=True)
        finally:
            broker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
