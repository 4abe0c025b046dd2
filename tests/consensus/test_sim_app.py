"""The simulator's application plug-in point (consensus/sim/app.py), with a toy
application: a counter proposed by one client session. The key-value workload and its
checks keep running beside it; the application's hooks are called; a violation it
reports fails the run; the composite snapshot restores all-or-nothing."""

from __future__ import annotations

import msgpack
import pytest

from consensus.driver import AppliedEntry
from consensus.session import SessionClient, SessionResult
from consensus.sim.app import APP_TAG, KV_TAG, CompositeStateMachine, app_payload
from consensus.sim.cluster import SimConfig, Simulation, run_seed
from consensus.sim.kv import KvCommand, KvStateMachine, encode_command


class Counter:
    def __init__(self) -> None:
        self.total = 0

    def apply(self, index: int, data: bytes) -> bytes:
        self.total += int(data)
        return b"%d" % self.total

    def snapshot(self) -> bytes:
        return b"%d" % self.total

    def restore(self, data: bytes) -> None:
        if not data.isdigit():
            raise ValueError("counter snapshot must be digits")
        self.total = int(data)


class CounterApp:
    def __init__(self, fail_at_total: int | None = None) -> None:
        self.client = SessionClient(b"counter", retry_ticks=20)
        self.fail_at_total = fail_at_total
        self.calls: dict[str, int] = {}
        self.seen: dict[int, int] = {}  # index -> total there (same on every node)

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def state_machine(self) -> Counter:
        self._count("state_machine")
        return Counter()

    def act(self, sim: Simulation) -> None:
        self._count("act")
        self.client.tick()
        if not sim.quiet and not self.client.pending() and sim.now % 7 == 0:
            self.client.submit(app_payload(b"1"))
        leader = sim.leader()
        for p in self.client.poll():
            if leader is None or not sim.propose(leader, p.data):
                self.client.dropped(p.seq)

    def applied(self, sim: Simulation, nid: int, entry: AppliedEntry,
                result: SessionResult | None) -> str | None:
        self._count("applied")
        if result is not None:
            self.client.on_result(result)
            self.client.events()
        total = sim.app_machine(nid).total
        if self.seen.setdefault(entry.index, total) != total:
            return f"n{nid} holds {total} at {entry.index}"
        if self.fail_at_total is not None and total >= self.fail_at_total:
            return f"total reached {total}"
        return None

    def node_down(self, sim: Simulation, nid: int) -> None:
        self._count("node_down")

    def restored(self, sim: Simulation, nid: int) -> None:
        self._count("restored")

    def settled(self, sim: Simulation) -> bool:
        return not self.client.pending()

    def final_check(self, sim: Simulation) -> str | None:
        self._count("final_check")
        return None


def test_an_application_runs_beside_the_key_value_checks() -> None:
    app = CounterApp()
    res = run_seed(4, SimConfig(steps=300), app=app)
    assert res.ok, res.violation
    assert res.linearizability == "ok" and res.acked > 20
    for hook in ("state_machine", "act", "applied", "node_down", "final_check"):
        assert app.calls.get(hook, 0) > 0, (hook, app.calls)
    assert max(app.seen.values()) >= 10


def test_an_application_violation_fails_the_run_with_its_replay() -> None:
    res = run_seed(4, SimConfig(steps=300), app=CounterApp(fail_at_total=5))
    assert not res.ok and "application: total reached 5" in (res.violation or "")
    assert "--seed 4 " in res.replay_command


def test_without_an_application_nothing_is_tagged() -> None:
    sim = Simulation(1, SimConfig())
    assert sim._kv_tag == b"" and sim.nodes[1].app is None


def test_composite_routes_by_tag_and_restores_all_or_nothing() -> None:
    kv, counter = KvStateMachine(), Counter()
    m = CompositeStateMachine(kv, counter)
    m.apply(1, KV_TAG + encode_command(KvCommand("put", "k", "v")))
    assert m.apply(2, APP_TAG + b"5") == b"5"
    assert msgpack.unpackb(m.apply(3, b"x??"))[0] is False  # unknown tag: an error result
    snap = m.snapshot()
    other = CompositeStateMachine(KvStateMachine(), Counter())
    other.restore(snap)
    assert other.kv.read("k") == "v" and other.app.total == 5
    bad = msgpack.packb([KvStateMachine().snapshot(), b"not digits"], use_bin_type=True)
    with pytest.raises(ValueError):
        other.restore(bad)
    assert other.kv.read("k") == "v" and other.app.total == 5  # unchanged
    with pytest.raises(ValueError):
        other.restore(b"\xc1")
