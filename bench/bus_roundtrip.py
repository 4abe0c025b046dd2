"""Round trip and throughput of the bus through each local broker `swarm broker` can
run: mosquitto (generated config) and the embedded iotcore (docs/benchmarks.md, "Bus").

Round trip: a swarm.bus.Bus publishes QoS 0 to an echo Bus, which publishes it back;
p50/p99 over --pings sequential pings. Throughput: one Bus publishes --messages QoS 0
payloads to another as fast as it can; messages received per second.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm.bus.broker import LocalBroker  # noqa: E402
from swarm.bus.client import BrokerAddress, Bus, BusConfig, Received  # noqa: E402


def _bus(broker: LocalBroker, name: str) -> Bus:
    b = Bus(BusConfig((BrokerAddress(broker.host, broker.port),), name, max_queued=100000))
    return b


def roundtrip(broker: LocalBroker, pings: int, size: int) -> list[float]:
    replies: queue.SimpleQueue[Received] = queue.SimpleQueue()
    echo = _bus(broker, "rt-echo")
    echo.subscribe("swarm/bench/raft/2", lambda m: echo.publish("swarm/bench/raft/1", m.payload))
    client = _bus(broker, "rt-client")
    client.subscribe("swarm/bench/raft/1", replies.put)
    echo.start()
    client.start()
    try:
        assert echo.wait_connected(20) and client.wait_connected(20)
        payload = b"p" * size
        for _ in range(50):                        # warm up, and the subscriptions are in
            client.publish("swarm/bench/raft/2", payload)
            try:
                replies.get(timeout=0.2)
            except queue.Empty:
                pass
        while not replies.empty():
            replies.get()
        out = []
        for _ in range(pings):
            t = time.perf_counter()
            client.publish("swarm/bench/raft/2", payload)
            try:
                replies.get(timeout=5)
            except queue.Empty:
                continue
            out.append((time.perf_counter() - t) * 1000)
        return out
    finally:
        client.close()
        echo.close()


def throughput(broker: LocalBroker, messages: int, size: int) -> tuple[int, float]:
    got: queue.SimpleQueue[Received] = queue.SimpleQueue()
    sub = _bus(broker, "tp-sub")
    sub.subscribe("swarm/bench/raft/3", got.put)
    pub = _bus(broker, "tp-pub")
    sub.start()
    pub.start()
    try:
        assert sub.wait_connected(20) and pub.wait_connected(20)
        time.sleep(0.3)
        payload = b"t" * size
        started = time.perf_counter()
        for _ in range(messages):
            pub.publish("swarm/bench/raft/3", payload)
        n = 0
        last = started
        while True:
            try:
                got.get(timeout=1.0)
            except queue.Empty:
                break
            n += 1
            last = time.perf_counter()
        return n, n / max(last - started, 1e-9)
    finally:
        pub.close()
        sub.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"bus round trip ({args.pings} pings) and throughput ({args.messages} msgs), "
          f"{args.size} B QoS 0, MQTT 5, swarm.bus.Bus on both ends")
    print(f"{'broker':<10} {'rtt p50 ms':>10} {'rtt p99 ms':>10} {'received':>9} {'msg/s':>8}")
    for kind in ("mosquitto", "embedded"):
        broker = LocalBroker(kind)
        broker.start()
        try:
            rtts = sorted(roundtrip(broker, args.pings, args.size))
            n, rate = throughput(broker, args.messages, args.size)
        finally:
            broker.close()
        p50 = statistics.median(rtts)
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
        print(f"{kind:<10} {p50:>10.2f} {p99:>10.2f} {n:>9} {rate:>8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
