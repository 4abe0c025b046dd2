"""The one Ready driver (consensus/driver.py) in virtual time: the contract's order
(persist, send, install, apply, reads, advance, compact), compaction, ReadIndex reads,
its bounds ("busy"), the hooks the simulator uses (held Readies, a crash between
persist and send), restart, and the sans-I/O session client on top of it."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from consensus import ConfState, Config, MemoryStorage, Message, MessageType, ProposalDropped, StateRole
from consensus.driver import (
    DEFAULT_MAX_UNCOMMITTED_BYTES,
    AppliedEntry,
    Busy,
    Driver,
    DriverConfig,
    DriverObserver,
    LeaderChange,
)
from consensus.rawnode import Ready
from consensus.session import (
    Completed,
    GaveUp,
    SessionClient,
    SessionClientBusy,
    SessionResult,
    SessionStateMachine,
    SessionStatus,
    decode_result,
    encode_register,
)
from consensus.sim.kv import KvCommand, KvStateMachine, encode_command
from consensus.sim.kv import decode_result as kv_result
from consensus.types import Entry, HardState, Snapshot

# --- a tiny virtual-time cluster --------------------------------------------------------------


class _Recorder(DriverObserver):
    def __init__(self, log: list[tuple[object, ...]]) -> None:
        self.log = log
        self.hold = False
        self.crash_before_send = False

    def defer_persist(self, driver: Driver, rd: Ready) -> bool:
        return self.hold and bool(rd.entries or rd.hard_state)

    def persisted(self, driver: Driver, rd: Ready, truncated: bool) -> None:
        self.log.append(("persist", driver.id, rd.hard_state, len(rd.entries), truncated))

    def before_send(self, driver: Driver, rd: Ready) -> None:
        if self.crash_before_send and rd.entries:
            driver.stop()

    def snapshot_installed(self, driver: Driver, snapshot: Snapshot, applied_before: int) -> None:
        self.log.append(("installed", driver.id, snapshot.meta.index, applied_before))

    def applied(self, driver: Driver, entry: AppliedEntry) -> None:
        # Applied only once durable and committed in this node's own storage (rule 3).
        st = driver.storage
        assert isinstance(st, MemoryStorage)
        assert st.hard_state().commit >= entry.index
        if entry.index >= st.first_index():
            assert st.term(entry.index) == entry.term
        self.log.append(("applied", driver.id, entry))

    def leadership_changed(self, driver: Driver, change: LeaderChange) -> None:
        self.log.append(("leadership", driver.id, change))

    def read_ready(self, driver: Driver, ctx: bytes, index: int) -> None:
        self.log.append(("read", driver.id, ctx, index, driver.applied))

    def read_expired(self, driver: Driver, ctx: bytes) -> None:
        self.log.append(("read expired", driver.id, ctx))

    def proposals_refused(self, driver: Driver, datas: Sequence[bytes]) -> None:
        self.log.append(("refused", driver.id, tuple(datas)))

    def read_refused(self, driver: Driver, ctx: bytes) -> None:
        self.log.append(("read refused", driver.id, ctx))

    def snapshot_taken(self, driver: Driver, index: int, data: bytes) -> None:
        self.log.append(("snapshot", driver.id, index, driver.storage.first_index()))


class _Cluster:
    """N drivers over MemoryStorage, a KV state machine behind client sessions, and a
    network that delivers the next tick (cut links drop)."""

    def __init__(self, n: int = 3, seed: int = 1, options: DriverConfig | None = None,
                 **config: int) -> None:
        self.rng = random.Random(seed)
        self.ids = list(range(1, n + 1))
        self.options = options or DriverConfig(snapshot_every=0)
        self.config = config
        self.storages = {i: MemoryStorage(ConfState.of(self.ids)) for i in self.ids}
        self.log: list[tuple[object, ...]] = []
        self.sent: list[tuple[int, Message]] = []  # (sender's persisted-state check, msg)
        self.in_flight: list[Message] = []
        self.cut: set[int] = set()
        self.observers: dict[int, _Recorder] = {}
        self.drivers: dict[int, Driver] = {}
        self.kvs: dict[int, KvStateMachine] = {}
        for i in self.ids:
            self.boot(i)

    def boot(self, i: int) -> Driver:
        kv = KvStateMachine()
        obs = self.observers.setdefault(i, _Recorder(self.log))
        cluster = self

        class Link:
            def send(self, messages: Sequence[Message]) -> None:
                for m in messages:
                    cluster._check_promise(m)
                    cluster.in_flight.append(m)

        self.kvs[i] = kv
        d = Driver(Config(id=i, election_tick=10, heartbeat_tick=1,
                          rng=random.Random(self.rng.getrandbits(64)), **self.config),
                   self.storages[i], SessionStateMachine(kv), Link(), self.options, obs)
        self.drivers[i] = d
        return d

    def _check_promise(self, m: Message) -> None:
        """Nothing leaves before what it promises is durable (Figure 2)."""
        st = self.storages[m.frm]
        hs = st.hard_state()
        if m.type not in (MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP):
            assert m.term <= hs.term, (m, hs)
        if m.type is MessageType.VOTE_RESP and not m.reject:
            assert hs.vote == m.to and hs.term == m.term
        if m.type is MessageType.APPEND_RESP and not m.reject:
            assert st.last_index() >= m.index
        self.log.append(("send", m.frm, m.type, m.to))

    def tick(self) -> None:
        msgs, self.in_flight = self.in_flight, []
        for m in msgs:
            if m.to in self.drivers and m.to not in self.cut and m.frm not in self.cut:
                self.drivers[m.to].step(m)
        for d in self.drivers.values():
            d.tick()
        for d in self.drivers.values():
            d.process()

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()

    def run_until(self, cond, limit: int = 500) -> None:  # type: ignore[no-untyped-def]
        for _ in range(limit):
            if cond():
                return
            self.tick()
        assert cond(), "condition not reached"

    def leader(self) -> Driver:
        self.run_until(lambda: any(d.raw.status().role is StateRole.LEADER and i not in self.cut
                                   for i, d in self.drivers.items()))
        return next(d for i, d in self.drivers.items()
                    if d.raw.status().role is StateRole.LEADER and i not in self.cut)

    def results(self, nid: int) -> list[SessionResult]:
        return [decode_result(e[2].result) for e in self.log
                if e[0] == "applied" and e[1] == nid and e[2].result is not None]  # type: ignore[union-attr]


def _register(c: _Cluster, via: Driver, nonce: bytes = b"n") -> int:
    via.propose(encode_register(nonce))
    c.run_until(lambda: any(r.status is SessionStatus.REGISTERED and r.payload == nonce
                            for r in c.results(via.id)))
    return next(r.client_id for r in c.results(via.id) if r.payload == nonce)


# --- the contract's order -------------------------------------------------------------------


def test_every_ready_is_persisted_before_its_messages_and_applied_only_once_durable() -> None:
    c = _Cluster(3)
    lead = c.leader()
    cid = _register(c, lead)
    from consensus.session import encode_command as session_command
    for seq in range(1, 11):
        lead.propose(session_command(cid, seq, encode_command(KvCommand("put", "k", f"v{seq}"))))
    c.run(30)
    # every node applied the same entries in index order, each durable and committed
    # in its own storage when applied (_check_promise checked every send)
    for i in c.ids:
        applied = [e[2] for e in c.log if e[0] == "applied" and e[1] == i]
        indexes = [a.index for a in applied]  # type: ignore[attr-defined]
        assert indexes == list(range(1, len(indexes) + 1)) and len(indexes) >= 12
        assert c.kvs[i].read("k") == "v10"
    assert sum(1 for e in c.log if e[0] == "send") > 50


def test_applied_events_carry_index_term_data_and_the_state_machine_result() -> None:
    c = _Cluster(3)
    lead = c.leader()
    cid = _register(c, lead, b"abc")
    reg = [e[2] for e in c.log if e[0] == "applied" and e[1] == lead.id and e[2].result is not None][0]  # type: ignore[union-attr]
    assert isinstance(reg, AppliedEntry) and reg.index == cid and reg.term == lead.raw.status().term
    assert reg.data == encode_register(b"abc")
    assert decode_result(reg.result or b"").payload == b"abc"
    noop = [e[2] for e in c.log if e[0] == "applied" and e[1] == lead.id][0]
    assert noop.result is None and noop.data == b""  # type: ignore[union-attr]  # the leader's no-op (§8)


def test_leadership_changes_are_reported_with_role_leader_and_term() -> None:
    c = _Cluster(3)
    lead = c.leader()
    term = lead.raw.status().term
    changes = [e[2] for e in c.log if e[0] == "leadership" and e[1] == lead.id]
    assert changes[-1] == LeaderChange(StateRole.LEADER, lead.id, term)
    other = next(i for i in c.ids if i != lead.id)
    c.run(5)
    assert [e[2] for e in c.log if e[0] == "leadership" and e[1] == other][-1] == \
        LeaderChange(StateRole.FOLLOWER, lead.id, term)


# --- compaction and snapshots --------------------------------------------------------------


def test_compaction_by_threshold_keeps_a_tail_and_a_lagging_follower_installs_the_snapshot() -> None:
    c = _Cluster(3, options=DriverConfig(snapshot_every=5, compact_keep=2))
    lead = c.leader()
    lagger = next(i for i in c.ids if i != lead.id)
    c.cut.add(lagger)
    cid = _register(c, lead)
    from consensus.session import encode_command as session_command
    for seq in range(1, 21):
        lead.propose(session_command(cid, seq, encode_command(KvCommand("append", "k", str(seq % 10)))))
        c.run(2)
    c.run(10)
    taken = [e for e in c.log if e[0] == "snapshot" and e[1] == lead.id]
    assert len(taken) >= 3
    for _, _, index, first in taken:
        assert first == index - 2 + 1  # compact_keep entries kept behind the snapshot
    st = c.storages[lead.id]
    assert st.snapshot().meta.index == taken[-1][2] and st.first_index() == taken[-1][3]
    c.cut.clear()
    c.run_until(lambda: c.drivers[lagger].applied == lead.applied)
    installed = [e for e in c.log if e[0] == "installed" and e[1] == lagger]
    assert installed, "the lagging follower caught up by InstallSnapshot (§7)"
    assert c.kvs[lagger].snapshot() == c.kvs[lead.id].snapshot()


def test_restart_restores_the_snapshot_and_reapplies_the_committed_tail() -> None:
    c = _Cluster(3, options=DriverConfig(snapshot_every=4, compact_keep=0))
    lead = c.leader()
    cid = _register(c, lead)
    from consensus.session import encode_command as session_command
    for seq in range(1, 8):
        lead.propose(session_command(cid, seq, encode_command(KvCommand("append", "k", "x"))))
    c.run(20)
    seq = 8
    while lead.applied == c.storages[lead.id].snapshot().meta.index:  # leave a tail to re-apply
        lead.propose(session_command(cid, seq, encode_command(KvCommand("append", "k", "x"))))
        seq += 1
        c.run(5)
    nid = lead.id
    before = c.kvs[nid].snapshot()
    applied = lead.applied
    lead.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        lead.tick()
    c.log.clear()
    d = c.boot(nid)
    snap_index = c.storages[nid].snapshot().meta.index
    assert 0 < snap_index <= applied and d.applied == snap_index
    c.run_until(lambda: d.applied >= applied)
    reapplied = [e[2].index for e in c.log if e[0] == "applied" and e[1] == nid]  # type: ignore[union-attr]
    assert reapplied == list(range(snap_index + 1, applied + 1))
    assert c.kvs[nid].snapshot() == before


# --- reads -----------------------------------------------------------------------------------


def test_reads_become_servable_only_once_applied_reaches_their_index() -> None:
    c = _Cluster(3)
    lead = c.leader()
    cid = _register(c, lead)
    follower = c.drivers[next(i for i in c.ids if i != lead.id)]
    from consensus.session import encode_command as session_command
    lead.propose(session_command(cid, 1, encode_command(KvCommand("put", "k", "v1"))))
    follower.read_index(b"r1")
    lead.read_index(b"r2")
    c.run(10)
    reads = {e[2]: e for e in c.log if e[0] == "read"}
    assert set(reads) == {b"r1", b"r2"}
    for _, nid, _, index, applied in reads.values():
        assert applied >= index  # type: ignore[operator]
    assert c.kvs[follower.id].read("k") == "v1"  # the read sees the write before it
    assert follower.status().pending_reads == 0 and follower.status().waiting_reads == 0
    with pytest.raises(ValueError):
        follower.read_index(b"")


def test_a_read_without_a_leader_expires_and_the_pending_reads_are_bounded() -> None:
    c = _Cluster(3, options=DriverConfig(snapshot_every=0, max_pending_reads=2, read_timeout_ticks=7))
    lead = c.leader()
    c.run(3)
    c.cut.add(lead.id)  # the leader is isolated: its read rounds never complete
    lead.read_index(b"a")
    lead.read_index(b"b")
    with pytest.raises(Busy):
        lead.read_index(b"c")
    with pytest.raises(ValueError, match="outstanding"):
        lead.read_index(b"a")
    assert isinstance(Busy("x"), ProposalDropped)  # callers that catch drops catch busy
    c.run(8)
    assert sorted(e[2] for e in c.log if e[0] == "read expired") == [b"a", b"b"]  # type: ignore[type-var]
    assert not [e for e in c.log if e[0] == "read"]  # never served: no stale read (§6.4)
    lead.read_index(b"c")  # room again
    assert lead.status().counts["reads busy"] == 1 and lead.status().counts["reads expired"] == 2


# --- bounds ------------------------------------------------------------------------------------


def test_the_uncommitted_tail_is_bounded_by_default_and_over_it_proposals_are_busy() -> None:
    c = _Cluster(3)
    lead = c.leader()
    c.run(3)
    assert lead.raw._raft.cfg.max_uncommitted_bytes == DEFAULT_MAX_UNCOMMITTED_BYTES  # noqa: SLF001
    for i in c.ids:
        if i != lead.id:
            c.cut.add(i)  # no quorum: nothing commits
    chunk = b"x" * (1024 * 1024)
    accepted = 0
    with pytest.raises(Busy, match="uncommitted"):
        for _ in range(10):
            lead.propose(chunk)
            accepted += 1
    assert accepted == 4  # 4 MiB of uncommitted tail, then busy
    last = lead.raw.status().last_index
    with pytest.raises(Busy):
        lead.propose(b"y")
    assert lead.raw.status().last_index == last  # a refused proposal changes nothing
    assert lead.status().counts["proposals busy"] == 2
    c.cut.clear()
    c.run(20)
    lead.propose(b"z")  # commits drained the tail


def test_a_forwarded_proposal_the_full_leader_refuses_is_reported_to_its_follower() -> None:
    """A follower's proposals reach the leader as PROPOSE; one that does not fit the
    leader's uncommitted tail is refused with PROPOSE_RESP (not dropped silently, as
    etcd does), so the follower can answer its client now rather than at a timeout."""
    c = _Cluster(5, max_uncommitted_bytes=1024)
    lead = c.leader()
    c.run(3)
    follower, *others = [i for i in c.ids if i != lead.id]
    c.cut.update(others)  # two of five: nothing commits, the follower still reaches it
    d = c.drivers[follower]
    d.propose(b"a" * 1000)  # fits: nothing is uncommitted
    c.run(2)
    last = lead.raw.status().last_index
    d.propose_many([b"b" * 1000, b"c"])  # over the tail: refused whole
    c.run(3)
    refusals = [e for e in c.log if e[0] == "refused"]
    assert refusals == [("refused", follower, (b"b" * 1000, b"c"))]
    assert lead.raw.status().last_index == last  # nothing of it was appended
    assert d.status().counts["proposals refused by the leader"] == 2
    assert not [e for e in c.log if e[0] == "send" and e[1] == lead.id
                and e[2] is MessageType.PROPOSE_RESP and e[3] != follower]
    c.cut.clear()
    c.run(20)
    assert [e[2].data for e in c.log if e[0] == "applied" and e[1] == follower  # type: ignore[union-attr]
            and e[2].data].count(b"a" * 1000) == 1  # type: ignore[union-attr]


def test_a_forwarded_read_the_full_leader_refuses_is_reported_to_its_follower() -> None:
    # The leader holds at most 4096 reads waiting for a quorum (raft.py
    # _MAX_PENDING_READS); one more forwarded is refused (READ_INDEX_RESP with reject),
    # not dropped, so the follower can answer its client now.
    c = _Cluster(5, options=DriverConfig(snapshot_every=0, max_pending_reads=5000))
    lead = c.leader()
    c.run(3)
    follower, *others = [i for i in c.ids if i != lead.id]
    c.cut.update(others)  # no quorum: no read round completes, the reads wait
    d = c.drivers[follower]
    for k in range(4097):
        d.read_index(b"r%d" % k)
    c.run(4)  # sent, stepped and refused by the leader, its refusal stepped
    assert [e for e in c.log if e[0] == "read refused"] == [("read refused", follower, b"r4096")]
    assert d.status().counts["reads refused by the leader"] == 1
    assert d.status().pending_reads == 4096
    assert not [e for e in c.log if e[0] == "read"]  # none served without a quorum


def test_a_proposal_without_a_leader_is_dropped_not_busy() -> None:
    c = _Cluster(3)
    d = c.drivers[1]
    with pytest.raises(ProposalDropped) as info:
        d.propose(b"x")
    assert not isinstance(info.value, Busy)


def test_a_held_ready_persists_and_sends_nothing_until_finished_and_the_inbox_is_bounded() -> None:
    c = _Cluster(3, options=DriverConfig(snapshot_every=0, max_inbox=3))
    lead = c.leader()
    c.run(3)
    follower = next(i for i in c.ids if i != lead.id)
    d = c.drivers[follower]
    c.observers[follower].hold = True
    lead.propose(b"cmd")
    c.run_until(lambda: d.held is not None)
    st = c.storages[follower]
    last, sent = st.last_index(), sum(1 for e in c.log if e[0] == "send" and e[1] == follower)
    c.run(10)  # heartbeats keep arriving: three are queued, the rest dropped
    assert st.last_index() == last and d.held is not None
    assert sum(1 for e in c.log if e[0] == "send" and e[1] == follower) == sent
    assert d.status().inbox == 3 and d.status().counts["inbox full"] > 0
    c.observers[follower].hold = False
    d.finish_held()
    assert st.last_index() > last and d.status().inbox == 0
    c.run(5)
    assert d.applied == lead.applied


def test_a_crash_between_persist_and_send_keeps_the_write_and_sends_nothing() -> None:
    c = _Cluster(3)
    lead = c.leader()
    c.run(3)
    follower = next(i for i in c.ids if i != lead.id)
    c.observers[follower].crash_before_send = True
    lead.propose(b"cmd")
    c.run_until(lambda: c.drivers[follower].stopped)
    persist = max(n for n, e in enumerate(c.log) if e[0] == "persist" and e[1] == follower)
    st = c.storages[follower]
    assert st.entries(st.last_index(), st.last_index() + 1)[0].data == b"cmd"  # durable
    acks = [n for n, e in enumerate(c.log) if e[0] == "send" and e[1] == follower]
    assert not [n for n in acks if n > persist]  # nothing went out after the write
    del c.drivers[follower]
    c.observers[follower].crash_before_send = False
    d = c.boot(follower)  # restart from the same storage: the entry is there
    c.run_until(lambda: d.applied == lead.applied)


def test_invalid_messages_are_rejected_counted_and_change_nothing() -> None:
    c = _Cluster(3)
    d = c.drivers[1]
    before = d.raw.status()
    bad = Message(MessageType.HEARTBEAT, to=2, frm=3, term=5)  # addressed to another node
    assert d.step(bad) is False
    assert d.status().counts["rejected InvalidMessage"] == 1
    assert d.raw.status() == before


def test_driver_config_validates() -> None:
    with pytest.raises(ValueError, match="max_inbox"):
        DriverConfig(max_inbox=0)
    with pytest.raises(ValueError, match="snapshot_every"):
        DriverConfig(snapshot_every=-1)
    with pytest.raises(ValueError, match="compact_keep"):
        DriverConfig(compact_keep=True)  # type: ignore[arg-type]


def test_finish_held_without_a_held_ready_is_an_error() -> None:
    c = _Cluster(3)
    with pytest.raises(RuntimeError, match="no Ready is held"):
        c.drivers[1].finish_held()


# --- the session client -------------------------------------------------------------------------


def _ok(cid: int, seq: int, payload: bytes = b"r", cached: bool = False) -> SessionResult:
    return SessionResult(SessionStatus.OK, cid, seq, payload, cached)


def _registered(client: SessionClient, cid: int = 7) -> None:
    [p] = client.poll()
    assert p.seq == 0 and p.data == encode_register(client.nonce)
    client.on_result(SessionResult(SessionStatus.REGISTERED, cid, 0, client.nonce))
    assert client.client_id == cid


def test_session_client_pipelines_up_to_its_window_and_matches_results_by_client_and_seq() -> None:
    client = SessionClient(b"me", retry_ticks=10, window=2)
    reqs = [client.submit(b"a"), client.submit(b"b"), client.submit(b"c")]
    _registered(client)
    first = client.poll()
    assert [p.seq for p in first] == [1, 2] and all(p.attempt == 1 for p in first)
    assert client.poll() == []  # window full
    client.on_result(_ok(8, 2))  # another client's seq 2: not ours
    client.on_result(_ok(7, 2, b"B"))  # out of order: 2 before 1
    [p3] = client.poll()
    assert p3.seq == 3
    client.on_result(_ok(7, 1, b"A"))
    client.on_result(_ok(7, 1, b"A", cached=True))  # a late duplicate: ignored
    client.on_result(_ok(7, 3, b"C"))
    events = client.events()
    assert [(e.request, e.seq, e.result.payload) for e in events if isinstance(e, Completed)] == \
        [(reqs[1], 2, b"B"), (reqs[0], 1, b"A"), (reqs[2], 3, b"C")]
    assert client.pending() == 0


def test_session_client_retries_through_the_same_session_and_gives_up_explicitly() -> None:
    client = SessionClient(b"me", retry_ticks=3, max_attempts=3, dropped_retry_ticks=1)
    req = client.submit(b"a")
    _registered(client)
    [first] = client.poll()
    for _ in range(3):
        client.tick()
    [retry] = client.poll()
    assert retry.seq == first.seq and retry.attempt == 2 and retry.is_retry
    client.dropped(retry.seq)  # no leader there: again soon
    client.tick()
    [third] = client.poll()
    assert third.attempt == 3
    for _ in range(3):
        client.tick()
    assert client.poll() == []
    assert client.events() == [GaveUp(req, 1, "attempts", None)]  # outcome unknown


def test_session_client_reregisters_on_session_expired() -> None:
    client = SessionClient(b"me", retry_ticks=5, window=2)
    a, b, c = client.submit(b"a"), client.submit(b"b"), client.submit(b"c")
    _registered(client, 7)
    client.poll()
    client.on_result(SessionResult(SessionStatus.SESSION_EXPIRED, 7, 2))
    assert client.events() == [GaveUp(a, 1, "session_expired", None), GaveUp(b, 2, "session_expired", False)]
    assert client.client_id is None and client.nonce == b"me.1"
    client.on_result(SessionResult(SessionStatus.REGISTERED, 9, 0, b"me"))  # the old round's: ignored
    assert client.client_id is None
    _registered(client, 12)
    [p] = client.poll()  # the queued request carries over, numbered in the new session
    assert p.seq == 1
    client.on_result(_ok(12, 1))
    assert [e.request for e in client.events()] == [c]


def test_session_client_registration_is_retried_and_its_queue_is_bounded() -> None:
    client = SessionClient(b"me", retry_ticks=4, max_queued=2)
    [reg] = client.poll()
    client.dropped(0)
    client.tick()
    assert client.poll() == []
    client.tick()
    [again] = client.poll()
    assert again.attempt == 2 and again.data == reg.data
    client.submit(b"a")
    client.submit(b"b")
    with pytest.raises(SessionClientBusy):
        client.submit(b"c")
    with pytest.raises(ValueError):
        SessionClient(b"", retry_ticks=1)


def test_session_client_over_drivers_applies_each_command_once_across_a_leader_crash() -> None:
    """Pipelined commands through a follower; the leader crashes mid-flight; the client
    retries through the same session and every command is applied exactly once."""
    c = _Cluster(5, seed=3)
    lead = c.leader()
    via = c.drivers[next(i for i in c.ids if i != lead.id)]
    client = SessionClient(b"drone", retry_ticks=25, window=4)
    payloads = [encode_command(KvCommand("append", "k", str(n))) for n in range(12)]
    reqs = [client.submit(p) for p in payloads]
    done: dict[int, Completed] = {}
    seen = 0
    crashed = False
    for t in range(800):
        client.tick()
        for p in client.poll():
            try:
                via.propose(p.data)
            except ProposalDropped:
                client.dropped(p.seq)
        c.tick()
        results = c.results(via.id)
        for r in results[seen:]:
            client.on_result(r)
        seen = len(results)
        for e in client.events():
            assert isinstance(e, Completed), e
            done[e.request] = e
        if not crashed and len(done) >= 3:
            lead.stop()  # the leader crashes with commands in flight
            del c.drivers[lead.id]
            crashed = True
        if len(done) == len(reqs):
            break
    assert crashed and sorted(done) == reqs
    # every value appended exactly once (in some order: the session does not order)
    value = c.kvs[via.id].read("k")
    assert value is not None and sorted(value) == sorted("".join(str(n) for n in range(12)))


def test_session_client_abandon_gives_everything_up_and_registers_a_new_round_later() -> None:
    client = SessionClient(b"me", retry_ticks=50)
    a = client.submit(b"a")
    b = client.submit(b"b")
    _registered(client, 7)
    client.poll()
    assert client.abandon(resume_after=3) == [GaveUp(a, 1, "abandoned", None), GaveUp(b, 0, "abandoned", None)]
    assert client.client_id is None and client.pending() == 0
    client.tick()
    client.tick()
    assert client.poll() == []
    client.tick()
    [reg] = client.poll()
    assert reg.data == encode_register(b"me.1") and reg.attempt == 1


def test_a_storage_failure_mid_ready_stops_the_driver_and_a_restart_recovers() -> None:
    from consensus.storage import StorageError

    c = _Cluster(3)
    lead = c.leader()
    c.run(3)
    follower = next(i for i in c.ids if i != lead.id)
    st = c.storages[follower]

    def broken(*_args: object) -> None:
        raise StorageError("disk gone")

    st.apply_ready = broken  # type: ignore[method-assign]
    lead.propose(b"cmd")
    with pytest.raises(StorageError, match="disk gone"):
        c.run(5)
    d = c.drivers[follower]
    assert d.stopped and d.status().counts["failed readies"] == 1
    with pytest.raises(RuntimeError, match="stopped"):
        d.step(Message(MessageType.HEARTBEAT, to=follower, frm=lead.id, term=1))
    del st.apply_ready  # the disk is back: restart from what it holds
    del c.drivers[follower]
    d = c.boot(follower)
    c.run_until(lambda: d.applied == lead.applied)
