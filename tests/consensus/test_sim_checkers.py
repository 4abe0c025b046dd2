"""The simulator's checkers bite: each safety property is broken on purpose, first by
feeding the checker a forged event, then by planting a real bug in a simulated
driver, and the violation is reported (a checker that never fails proves nothing)."""

from __future__ import annotations

import pytest

from consensus.sim.checkers import SafetyChecker, SafetyViolation
from consensus.sim.cluster import SimConfig, Simulation, _Client, _Node
from consensus.sim.linearizability import Verdict, check_kv_history
from consensus.fsm import StateMachine
from consensus.session import SessionResult, SessionStatus
from consensus.storage import MemoryStorage
from consensus.types import ConfState, Entry

# --- forged events, one per property ---------------------------------------------------


def test_two_leaders_in_one_term_break_election_safety() -> None:
    chk = SafetyChecker()
    chk.observe_leader(1, 3)
    chk.observe_leader(1, 3)  # the same leader seen again is fine
    chk.observe_leader(2, 4)
    with pytest.raises(SafetyViolation, match="election safety: nodes 1 and 3 both lead term 3"):
        chk.observe_leader(3, 3)


def test_same_index_and_term_with_different_payload_breaks_log_matching() -> None:
    chk = SafetyChecker()
    chk.observe_persist(1, [Entry(1, 1, data=b"a"), Entry(1, 2, data=b"b")], prev_term=0)
    chk.observe_persist(2, [Entry(1, 1, data=b"a")], prev_term=0)
    with pytest.raises(SafetyViolation, match="log matching.*payload"):
        chk.observe_persist(3, [Entry(1, 2, data=b"X")], prev_term=1)


def test_same_entry_after_a_different_prefix_breaks_log_matching() -> None:
    chk = SafetyChecker()
    chk.observe_persist(1, [Entry(2, 5, data=b"a")], prev_term=2)
    with pytest.raises(SafetyViolation, match=r"log matching.*preceding term \(2 vs 1\)"):
        chk.observe_persist(2, [Entry(2, 5, data=b"a")], prev_term=1)


def test_applying_different_entries_at_one_index_breaks_state_machine_safety() -> None:
    chk = SafetyChecker()
    chk.observe_apply(1, [Entry(1, 1, data=b"x")])
    with pytest.raises(SafetyViolation, match="state machine safety: node 2 applies"):
        chk.observe_apply(2, [Entry(1, 1, data=b"corrupted")])


def test_applying_with_a_gap_or_twice_breaks_state_machine_safety() -> None:
    chk = SafetyChecker()
    chk.observe_apply(1, [Entry(1, 1), Entry(1, 2)])
    with pytest.raises(SafetyViolation, match="applies index 2 after index 2"):
        chk.observe_apply(1, [Entry(1, 2)])
    chk2 = SafetyChecker()
    with pytest.raises(SafetyViolation, match="applies index 3 after index 0"):
        chk2.observe_apply(1, [Entry(1, 3)])


def test_restoring_an_older_snapshot_breaks_state_machine_safety() -> None:
    chk = SafetyChecker()
    with pytest.raises(SafetyViolation, match="restores a snapshot at 4 behind its applied index 9"):
        chk.observe_restore(1, 4, durable_applied=9)


def test_committing_a_different_term_at_a_committed_index_is_caught() -> None:
    chk = SafetyChecker()
    log1 = {1: 1, 2: 1, 3: 2}
    chk.observe_commit(1, 2, 3, log1.get)
    log2 = {1: 1, 2: 1, 3: 3}
    with pytest.raises(SafetyViolation, match="commits index 3 with term 3, but term 2 was committed"):
        chk.observe_commit(2, 3, 3, log2.get)


def test_leader_missing_a_committed_entry_breaks_leader_completeness() -> None:
    chk = SafetyChecker()
    chk.observe_commit(1, 2, 3, {1: 1, 2: 2, 3: 2}.get)
    # A leader of a later term without entry 3 (term 2) would overwrite committed data.
    chk.check_leader_completeness(4, 2, {1: 1}.get, snapshot_index=0)  # same term: not bound
    with pytest.raises(SafetyViolation, match="leader completeness: node 5, leader of term 3"):
        chk.check_leader_completeness(5, 3, {1: 1, 2: 2, 3: 1}.get, snapshot_index=0)


def test_collecting_mode_keeps_every_violation() -> None:
    chk = SafetyChecker(raise_on_violation=False)
    chk.observe_leader(1, 1)
    chk.observe_leader(2, 1)
    chk.observe_apply(1, [Entry(1, 2)])
    assert [v.property for v in chk.violations] == ["election safety", "state machine safety"]
    assert not chk.ok
    assert str(chk.violations[0]).startswith("[tick 0] election safety")


# --- real bugs planted in a simulated driver -------------------------------------------------

_SEEDS = range(40)
_FAST = SimConfig(steps=300, quiet_ticks=80)


def _first_caught(make: type[Simulation], what: str, cfg: SimConfig = _FAST) -> str:
    """Run seeds until one reports a violation; return its message."""
    for seed in _SEEDS:
        sim = make(seed, cfg)
        try:
            sim.run()
        except SafetyViolation as exc:
            return str(exc.violation)
        problem, _ = sim.final_checks()
        if problem:
            return problem
        result = check_kv_history(sim.history + sim.pending_operations())
        if result.verdict is Verdict.ILLEGAL:
            return "linearizability: " + result.describe().splitlines()[0]
    raise AssertionError(f"no seed in {_SEEDS} caught the planted bug: {what}")


class _DiskWiper(Simulation):
    """Restarts crashed nodes on an empty disk: their votes and acknowledged entries are
    gone, so a quorum of them can elect a leader lacking committed entries."""

    def _start(self, node: _Node) -> None:
        if self.now > 0:
            node.storage = MemoryStorage(ConfState.of(self.ids))
        super()._start(node)


class _FaultyStateMachine:
    """Wraps a node's state machine (the driver applies through it) with a planted bug."""

    def __init__(self, inner: StateMachine, corrupt_index: int = 0, before_snapshot=None) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.corrupt_index = corrupt_index
        self.before_snapshot = before_snapshot

    def apply(self, index: int, data: bytes) -> bytes:
        if index == self.corrupt_index:
            data = data + b"!"
        return self.inner.apply(index, data)

    def snapshot(self) -> bytes:
        if self.before_snapshot is not None:
            self.before_snapshot()
        return self.inner.snapshot()

    def restore(self, data: bytes) -> None:
        self.inner.restore(data)


class _CorruptingApplier(Simulation):
    """Node 2 applies a corrupted copy of one committed entry."""

    def _start(self, node: _Node) -> None:
        super()._start(node)
        if node.id == 2:
            assert node.driver is not None
            node.driver.fsm = _FaultyStateMachine(node.driver.fsm, corrupt_index=7)


class _SnapshotCorrupter(Simulation):
    """Node 3's state machine picks up a stray key just before it snapshots, so the
    snapshot it takes (and later sends in InstallSnapshot) is not the log's state."""

    def _start(self, node: _Node) -> None:
        super()._start(node)
        if node.id == 3:
            assert node.driver is not None
            kv = node.kv

            def stray() -> None:
                if self.now > 100 and kv is not None:
                    kv.data["stray"] = "x"

            node.driver.fsm = _FaultyStateMachine(node.driver.fsm, before_snapshot=stray)


class _LocalReader(Simulation):
    """Serves reads from whatever node the client reached, without ReadIndex (§6.4)."""

    def _submit(self, c: _Client) -> None:
        call = c.call
        assert call is not None
        node = self.nodes[call.server]
        if call.cmd.op == "get" and node.up and node.kv is not None:
            self._complete(c, node.kv.read(call.cmd.key))
            return
        super()._submit(c)


def _ack_locally(sim: Simulation, c: _Client) -> None:
    """The planted bug: tell the client its write succeeded without any commit (as a
    server answering OK too early would)."""
    call, cid = c.call, c.session.client_id
    assert call is not None and cid is not None
    c.session.on_result(SessionResult(SessionStatus.OK, cid, call.seq))
    c.session.events()
    sim.acked_writes.add((cid, call.seq))
    sim._complete(c, None)


class _EagerAcker(Simulation):
    """Acknowledges a write as soon as the leader appended it, before it commits."""

    def _submit(self, c: _Client) -> bool:
        accepted = super()._submit(c)
        call = c.call
        if call is not None and call.cmd.op in ("put", "append") and self.rng.random() < 0.5:
            node = self.nodes[call.server]
            if node.driver is not None and node.driver.raw.status().role.value == "leader":
                _ack_locally(self, c)
        return accepted


def test_losing_durable_state_across_restarts_is_caught() -> None:
    cfg = SimConfig(nodes=3, steps=300, quiet_ticks=80, crash_rate=0.01)
    msg = _first_caught(_DiskWiper, "disk wiped on restart", cfg)
    assert any(p in msg for p in ("election safety", "log matching", "state machine safety",
                                   "leader completeness", "linearizability", "durability")), msg


def test_corrupted_apply_on_one_node_is_caught() -> None:
    msg = _first_caught(_CorruptingApplier, "corrupted apply")
    assert "state machine safety" in msg


def test_snapshot_that_differs_from_the_log_is_caught() -> None:
    msg = _first_caught(_SnapshotCorrupter, "corrupted snapshot")
    assert "state machine safety" in msg and "snapshot" in msg, msg


def test_stale_local_reads_are_caught_by_linearizability() -> None:
    msg = _first_caught(_LocalReader, "reads without ReadIndex")
    assert msg.startswith("linearizability"), msg


class _RefusalAcker(Simulation):
    """Reports success for writes its server refused (ProposalDropped): they never
    reach the log at all."""

    def _submit(self, c: _Client) -> bool:
        accepted = super()._submit(c)
        call = c.call
        if not accepted and call is not None and call.cmd.op in ("put", "append"):
            _ack_locally(self, c)
        return accepted


def test_acknowledging_refused_writes_is_caught_as_lost_durability() -> None:
    msg = _first_caught(_RefusalAcker, "acknowledging refused proposals")
    assert msg.startswith("durability: acknowledged writes"), msg


def test_acknowledging_uncommitted_writes_is_caught() -> None:
    msg = _first_caught(_EagerAcker, "acknowledging before commit")
    assert "durability" in msg or "linearizability" in msg, msg
