"""The floor under the agent's commit latency at 1 outstanding request: the same path
with nothing of the agent on it (docs/benchmarks.md, "Commit path at 1 outstanding").

Four processes on mosquitto on loopback, each with swarm.bus.Bus connections (paho 2.x,
writes on the publishing thread), payloads of the agent's sizes:

  client --request (QoS 1, MQTT 5 response topic)--> A --"AppendEntries" (QoS 0)--> B
  B: append the payload to a file and fdatasync it, then --"ack" (QoS 0)--> A
  A: --reply (QoS 1)--> client

A also appends and fdatasyncs its own copy after sending to B, as the agent's leader
does its write alongside the follower's. No Raft, no SQLite, no sealing, no JSON: what
is left is paho, the broker's four hops, the process wake-ups and one fsync.

``--modes``: ``callback`` does A's and B's work on paho's network thread (no hand-off:
the cheapest a paho process can be); ``handoff`` queues each received payload for a
second thread woken through a Condition, as the agent hands received bytes to its node
thread (swarm/agent/inbox.py), so three hand-offs sit on the path. The client waits on
its calling thread like swarm.client.SwarmClient. ``--loads``: also run with K
processes spinning on the CPU alongside (the other sessions' load, made
reproducible). ``--no-fsync`` leaves the disk out.

Prints, per mode and load, the round trip's p50/p90/p99 and the CPU time each process
spent per round trip (the idle keepalive work included), and the fsync alone.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm.bus.broker import LocalBroker  # noqa: E402
from swarm.bus.client import BrokerAddress, Bus, BusConfig, Received  # noqa: E402

SWARM = "swarm/floor"
#: The agent's sizes at 1 outstanding map command: a request of ~400 bytes, an
#: AppendEntries envelope carrying it (~520), an acknowledgement (~90), a reply (~200).
REQUEST_BYTES, APPEND_BYTES, ACK_BYTES, REPLY_BYTES = 400, 520, 90, 200


def _bus(host: str, port: int, name: str) -> Bus:
    return Bus(BusConfig((BrokerAddress(host, port),), name, max_queued=10000))


class _Worker:
    """``handoff`` mode: paho's thread puts, this thread runs ``handle`` (a Condition
    wake per item, as swarm.agent.inbox.Inbox does)."""

    def __init__(self, handle: Callable[[Received], None]) -> None:
        self._items: deque[Received] = deque()
        self._cond = threading.Condition()
        self._handle = handle
        threading.Thread(target=self._run, daemon=True).start()

    def put(self, msg: Received) -> None:
        with self._cond:
            self._items.append(msg)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items:
                    self._cond.wait()
                msg = self._items.popleft()
            self._handle(msg)


def _deliver(mode: str, handle: Callable[[Received], None]) -> Callable[[Received], None]:
    return handle if mode == "callback" else _Worker(handle).put


def _durable(path: Path, fsync: bool) -> Callable[[bytes], None]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(payload: bytes) -> None:
        os.write(fd, payload)
        if fsync:
            os.fdatasync(fd)
    return write


def _follower(host: str, port: int, mode: str, folder: str, fsync: bool,
              ready: "mp.synchronize.Event") -> None:
    bus = _bus(host, port, "floor-b")
    write = _durable(Path(folder) / "b.log", fsync)
    ack = b"a" * ACK_BYTES

    def on_append(msg: Received) -> None:
        write(msg.payload)
        bus.publish(f"{SWARM}/raft/1", ack, qos=0)

    bus.subscribe(f"{SWARM}/raft/2", _deliver(mode, on_append), qos=0)
    bus.start()
    assert bus.wait_connected(20)
    ready.set()
    threading.Event().wait()


def _leader(host: str, port: int, mode: str, folder: str, fsync: bool,
            ready: "mp.synchronize.Event") -> None:
    raft = _bus(host, port, "floor-a")
    clients = _bus(host, port, "floor-a-clients")
    write = _durable(Path(folder) / "a.log", fsync)
    pending: deque[tuple[str, bytes]] = deque()
    append, reply = b"e" * APPEND_BYTES, b"r" * REPLY_BYTES

    def on_request(msg: Received) -> None:
        assert msg.response_topic is not None and msg.correlation_data is not None
        pending.append((msg.response_topic, msg.correlation_data))
        raft.publish(f"{SWARM}/raft/2", append, qos=0)
        write(append)              # the leader's own write, after sending (docs/agent.md)

    def on_ack(msg: Received) -> None:
        if pending:
            topic, corr = pending.popleft()
            clients.publish(topic, reply, qos=1, correlation_data=corr)

    # One thread handles both in handoff mode, as the agent's one node thread does.
    if mode == "callback":
        raft.subscribe(f"{SWARM}/raft/1", on_ack, qos=0)
        clients.subscribe(f"{SWARM}/request/1", on_request, qos=1)
    else:
        worker = _Worker(lambda m: on_ack(m) if m.topic.endswith("/raft/1") else on_request(m))
        raft.subscribe(f"{SWARM}/raft/1", worker.put, qos=0)
        clients.subscribe(f"{SWARM}/request/1", worker.put, qos=1)
    raft.start()
    clients.start()
    assert raft.wait_connected(20) and clients.wait_connected(20)
    ready.set()
    threading.Event().wait()


def _spin() -> None:
    while True:
        pass


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(broker: LocalBroker, mode: str, load: int, ops: int, warmup: int, fsync: bool,
        folder: str) -> tuple[list[float], dict[str, float]]:
    """Round trip times (ms) and CPU ms per round trip of B, A, the client and mosquitto."""
    ctx = mp.get_context("spawn")
    ready_a, ready_b = ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_follower, args=(broker.host, broker.port, mode, folder, fsync,
                                                 ready_b), daemon=True),
             ctx.Process(target=_leader, args=(broker.host, broker.port, mode, folder, fsync,
                                               ready_a), daemon=True)]
    procs += [ctx.Process(target=_spin, daemon=True) for _ in range(load)]
    for p in procs:
        p.start()
    client = _bus(broker.host, broker.port, "floor-client")
    replies: deque[Received] = deque()
    got = threading.Condition()

    def on_reply(msg: Received) -> None:
        with got:
            replies.append(msg)
            got.notify()

    client.subscribe(f"{SWARM}/reply/c", on_reply, qos=1)
    client.start()
    try:
        assert client.wait_connected(20) and ready_a.wait(30) and ready_b.wait(30)
        time.sleep(0.5)   # the subscriptions are in
        request = b"q" * REQUEST_BYTES
        out = []
        pids = {"B": procs[0].pid, "A": procs[1].pid}
        if broker._proc is not None:
            pids["mosquitto"] = broker._proc.pid
        cpu0: dict[str, float] = {}
        for k in range(warmup + ops):
            if k == warmup:
                cpu0 = {name: _cpu_s(pid) for name, pid in pids.items() if pid is not None}
                cpu0["client"] = time.process_time()
            corr = k.to_bytes(4, "big")
            t0 = time.perf_counter()
            client.publish(f"{SWARM}/request/1", request, qos=1,
                           response_topic=f"{SWARM}/reply/c", correlation_data=corr)
            with got:
                while not any(r.correlation_data == corr for r in replies):
                    if not got.wait(5):
                        raise RuntimeError(f"no reply to request {k}")
                replies.clear()
            if k >= warmup:
                out.append((time.perf_counter() - t0) * 1000)
        cpu = {name: 1000 * (_cpu_s(pid) - cpu0[name]) / ops
               for name, pid in pids.items() if pid is not None}
        cpu["client"] = 1000 * (time.process_time() - cpu0["client"]) / ops
        return out, cpu
    finally:
        client.close()
        for p in procs:
            p.kill()
            p.join()


def _fsync_alone(folder: str, n: int = 200) -> list[float]:
    write = _durable(Path(folder) / "probe.log", True)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        write(b"f" * APPEND_BYTES)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--modes", default="callback,handoff")
    p.add_argument("--loads", default="0", help="comma list of spinning processes alongside")
    p.add_argument("--no-fsync", action="store_true")
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in ("callback", "handoff") for m in modes):
        p.error("--modes: a comma list of callback, handoff")
    loads = [int(x) for x in args.loads.split(",") if x]
    broker = LocalBroker("mosquitto")
    broker.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-floor-") as folder:
            alone = _fsync_alone(folder)
            print(f"client -> mosquitto -> A -> mosquitto -> B{' (fdatasync)' * (not args.no_fsync)}"
                  f" -> mosquitto -> A -> mosquitto -> client, {args.ops} round trips "
                  f"(after {args.warmup}), 1 outstanding")
            print(f"  this disk alone: fdatasync of a {APPEND_BYTES}-byte append p50 "
                  f"{_pct(alone, 0.5):.2f} ms, p90 {_pct(alone, 0.9):.2f} ms")
            for load in loads:
                for mode in modes:
                    rt, cpu = run(broker, mode, load, args.ops, args.warmup,
                                  not args.no_fsync, folder)
                    print(f"  {mode:<8} load +{load}: p50 {_pct(rt, 0.5):.2f} ms, "
                          f"p90 {_pct(rt, 0.9):.2f} ms, p99 {_pct(rt, 0.99):.2f} ms; CPU ms "
                          "per round trip: " + ", ".join(f"{n} {c:.2f}" for n, c in cpu.items()),
                          flush=True)
    finally:
        broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
