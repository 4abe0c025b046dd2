"""A deterministic simulation of a Raft cluster under faults (FoundationDB-style
deterministic simulation testing, after hashicorp/raft's ``fuzzy`` and etcd's
``rafttest``).

N :class:`~consensus.rawnode.RawNode`\\ s run in virtual time (ticks). One seeded
``random.Random`` decides everything: message loss, duplication, delay and reordering,
partitions, crashes and restarts, slow disks, clock skew, membership changes (including
removing the leader), leadership transfers, client crashes, and what the clients do. Nothing reads a clock or iterates a hash-ordered collection of
strings, so the same seed gives a byte-identical run.

Every node runs under the project's one Ready driver (:class:`consensus.driver.Driver`,
the loop the demo and the agent run too), which honours the Ready contract
(docs/consensus.md): a Ready's snapshot, entries and hard state are made durable in one
``apply_ready`` *before* its messages are sent, then committed entries are applied,
then ``advance``, then compaction. The simulator's faults and checkers plug into the
driver's observer hooks (:class:`_NodeObserver`): a slow disk holds a Ready
(``defer_persist``) and finishes it later; a crash between persist and send stops the
driver in ``before_send``; persists, commits, applies, restores and every snapshot are
checked as they happen. A crash drops the driver with everything volatile (its state
machine, a Ready not yet persisted, messages not yet sent) and keeps only its
storage, as a power cut would.

Clients propose key-value commands wrapped in client sessions (client id + sequence
number, applied exactly once) through the project's one session client
(:class:`consensus.session.SessionClient`, as the demo's drones and the agent do),
retry on timeout or lost leader, and read through ReadIndex. Every call and return is recorded; at the end the history must be
linearizable and every acknowledged write must be in the committed log. The Raft safety
properties are checked after every step (see :mod:`consensus.sim.checkers`), and every
snapshot taken, installed or restarted from is compared with a reference replica fed
the committed log. Compaction runs every few entries, so InstallSnapshot is common.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus.codec import decode_message, encode_message
from consensus.config import Config
from consensus.driver import AppliedEntry, Driver, DriverConfig, DriverObserver
from consensus.rawnode import InvalidMessage, Ready
from consensus.raft import ProposalDropped
from consensus.session import (
    Completed,
    SessionClient,
    SessionError,
    SessionProposal,
    SessionResult,
    SessionStateMachine,
    SessionStatus,
    decode_result as decode_session_result,
)
from consensus.sim.app import KV_TAG, CompositeStateMachine, SimApp
from consensus.sim.checkers import SafetyChecker, SafetyViolation, Violation
from consensus.sim.kv import KvCommand, KvStateMachine, decode_result, encode_command
from consensus.sim.linearizability import Operation, OpKind, Verdict, check_kv_history
from consensus.sim.network import NetworkFaults, VirtualNetwork
from consensus.sim.scores import ScoreSchedule
from consensus.sqlite_storage import SQLiteStorage
from consensus.storage import CompactedError, MemoryStorage, Storage, UnavailableError
from consensus.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    Message,
    Snapshot,
    StateRole,
)

__all__ = ["ALL_FAULTS", "SimConfig", "SimResult", "Simulation", "replay_command", "run_seed"]

#: Faults a run may inject; ``--faults`` selects a subset.
ALL_FAULTS: frozenset[str] = frozenset(
    {"drop", "dup", "reorder", "delay", "partition", "crash", "slowdisk", "member", "transfer", "client", "skew"}
)


@dataclass(frozen=True)
class SimConfig:
    """One simulation's shape. Rates are per tick (events) or per message (network)."""

    nodes: int = 5
    steps: int = 400
    faults: frozenset[str] = ALL_FAULTS
    clients: int = 5
    keys: int = 2
    election_tick: int = 10
    heartbeat_tick: int = 2
    drop_rate: float = 0.05
    dup_rate: float = 0.03
    reorder_rate: float = 0.1
    max_delay: int = 3
    partition_rate: float = 0.015
    heal_rate: float = 0.05
    crash_rate: float = 0.003
    restart_rate: float = 0.05
    slowdisk_rate: float = 0.01
    member_rate: float = 0.006
    transfer_rate: float = 0.004
    #: A client gives up on its operation (it crashed): the operation stays pending in
    #: the history (it may or may not take effect) and the client starts a new session.
    client_crash_rate: float = 0.004
    #: A node's clock runs at 0x, 2x or 3x speed for a while (Raft's safety must not
    #: depend on timing, §5.6; only liveness may).
    skew_rate: float = 0.01
    #: A node snapshots its state machine and compacts its log every this many applied
    #: entries (small, so InstallSnapshot is exercised often).
    snapshot_every: int = 12
    #: Entries kept behind the snapshot index after compaction (etcd keeps a tail so a
    #: briefly lagging follower still gets entries, not a whole snapshot).
    compact_keep: int = 2
    snapshot_chunk_bytes: int = 64
    #: Ticks at the end with faults healed and crashed nodes restarted, so pending
    #: operations can finish and logs converge.
    quiet_ticks: int = 120
    client_timeout: int = 30
    client_think: int = 3
    #: Byte budget of one AppendEntries (Config.max_size_per_msg).
    max_msg_bytes: int = 64 * 1024
    #: Whether membership faults may remove the current leader (thesis §4.2.2).
    remove_leader: bool = True
    #: Pass every message through the msgpack wire codec (as the bus does).
    wire_codec: bool = False
    #: "memory" (MemoryStorage) or "sqlite" (SQLiteStorage files; needs a storage_dir):
    #: with SQLite a crash closes the database and a restart reopens it from the file.
    storage: str = "memory"
    #: Signal-aware leadership (consensus/leadership.py): every node reports a seeded link
    #: score (consensus/sim/scores.py: a base per node, ``score_noise`` each tick, a base
    #: jumping at ``score_change_rate`` per tick) and runs the policy with these
    #: parameters. Off by default, so the default schedules are unchanged.
    link_scores: bool = False
    score_noise: float = 0.05
    score_change_rate: float = 0.0
    score_margin: float = 0.1
    score_dwell_ticks: int = 20
    score_transfer_interval: int = 100
    score_election_delay: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= 9:
            raise ValueError(f"nodes must be between 1 and 9, got {self.nodes}")
        if self.steps < 1 or self.quiet_ticks < 0:
            raise ValueError("steps must be positive and quiet_ticks non-negative")
        unknown = set(self.faults) - ALL_FAULTS
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(ALL_FAULTS)}")
        if self.clients < 1 or self.keys < 1:
            raise ValueError("clients and keys must be positive")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must exceed heartbeat_tick")
        if self.storage not in ("memory", "sqlite"):
            raise ValueError(f"storage must be 'memory' or 'sqlite', got {self.storage!r}")
        for name in ("drop_rate", "dup_rate", "reorder_rate", "partition_rate", "heal_rate", "crash_rate",
                     "restart_rate", "slowdisk_rate", "member_rate", "transfer_rate", "client_crash_rate", "skew_rate"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        if self.snapshot_every < 1 or self.compact_keep < 0 or self.client_timeout < 1:
            raise ValueError("snapshot_every and client_timeout must be positive, compact_keep non-negative")


@dataclass
class SimResult:
    seed: int
    ok: bool
    violation: str | None
    details: str
    linearizability: str  # "ok", "illegal", "unknown", or "skipped" after a safety violation
    committed: int
    ops: int
    acked: int
    elections: int
    crashes: int
    seconds: float
    trace: list[str]
    trace_digest: str
    replay_command: str
    converged: bool
    counts: dict[str, int] = field(default_factory=dict)


_OP_KINDS = {"get": OpKind.GET, "put": OpKind.PUT, "append": OpKind.APPEND, "cas": OpKind.CAS}


# --- simulated clients --------------------------------------------------------------------


@dataclass
class _Call:
    """A client operation in progress (possibly over several attempts)."""

    seq: int
    cmd: KvCommand
    call_time: int
    server: int
    attempt: int
    deadline: int
    read_ctx: bytes | None = None
    op_id: int = 0
    #: What to propose for a write (its session envelope, as the session client gave it).
    data: bytes = b""


@dataclass
class _Client:
    """A client: registers a session (thesis §6.3), then runs one operation at a time.
    Writes go through its :class:`~consensus.session.SessionClient` (the project's one
    client-session logic: nonce per registration round, numbering, retry through the
    same session, matching by client id and seq); reads through ReadIndex, retried by
    the simulator itself (they carry no sequence number)."""

    id: int  # the simulator's name for it (history, trace)
    session: SessionClient
    call: _Call | None = None
    next_at: int = 0
    leader_hint: int = 0
    #: The server its current registration was sent to (it hears the result there).
    register_server: int = 0


# --- one simulated node -----------------------------------------------------------------


@dataclass
class _Node:
    id: int
    storage: Storage
    driver: Driver | None = None
    fsm: SessionStateMachine | None = None
    kv: KvStateMachine | None = None
    #: The application's state machine (with a :class:`SimApp`), beside ``kv``.
    app: Any = None
    #: What the node had applied when it last went down.
    applied_when_down: int = 0
    #: When the Ready held on a slow disk (``driver.held``) is written, and until when
    #: the disk is slow.
    disk_done_at: int = 0
    disk_slow_until: int = 0
    #: Ticks per virtual tick (clock skew) and until when.
    tick_rate: int = 1
    skew_until: int = 0
    #: Score-driven transfers its current driver had started when last looked at.
    score_transfers: int = 0

    @property
    def up(self) -> bool:
        return self.driver is not None

    @property
    def applied(self) -> int:
        return self.driver.applied if self.driver is not None else self.applied_when_down

    @property
    def holding(self) -> bool:
        """A Ready is held on the slow disk, not yet written."""
        return self.driver is not None and self.driver.held is not None


class _SimLink:
    """A node's transport: its messages into the virtual network (through the wire
    codec when the run asks for it)."""

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim

    def send(self, messages: Sequence[Message]) -> None:
        sim = self._sim
        codec = sim.cfg.wire_codec
        for m in messages:
            sim.net.send(decode_message(encode_message(m)) if codec else m, sim.now)


class _NodeObserver(DriverObserver):
    """The simulator's faults and checkers at the driver's hooks, for one node."""

    def __init__(self, sim: Simulation, node: _Node) -> None:
        self._sim, self._node = sim, node

    def booted(self, driver: Driver, snapshot: Snapshot) -> None:
        sim, nid = self._sim, self._node.id
        if not snapshot.is_empty():
            sim._check_snapshot(nid, snapshot.meta.index, snapshot.data, "restarted from")
        sim.checker.observe_restart(nid, snapshot.meta.index)

    def defer_persist(self, driver: Driver, rd: Ready) -> bool:
        sim, node = self._sim, self._node
        if sim.now < node.disk_slow_until and (rd.entries or rd.hard_state is not None or rd.snapshot is not None):
            sim.counts["slow disk writes"] += 1
            node.disk_done_at = sim.now + sim.rng.randint(2, 12)
            sim._log(f"n{node.id} slow disk: ready held until {node.disk_done_at}")
            return True
        return False

    def persisted(self, driver: Driver, rd: Ready, truncated: bool) -> None:
        sim, node = self._sim, self._node
        nid = node.id
        if truncated:
            sim.counts["log truncations"] += 1
        # Entries a snapshot in the same Ready covers are not kept (they are committed
        # and in the snapshot); Log Matching is checked on what the log holds.
        kept = [e for e in rd.entries if e.index >= node.storage.first_index()]
        if kept:
            prev = kept[0].index - 1
            sim.checker.observe_persist(nid, kept, sim._term_at(node, prev) or 0)
            sim._log(f"n{nid} persist {kept[0].index}..{kept[-1].index}")
        if rd.hard_state is not None:
            hs = rd.hard_state
            sim._log(f"n{nid} hardstate term={hs.term} vote={hs.vote} commit={hs.commit}")
            sim.checker.observe_commit(nid, hs.term, hs.commit, lambda i: sim._term_at(node, i))

    def before_send(self, driver: Driver, rd: Ready) -> None:
        # A crash between the write and the send: durable, but nothing went out.
        sim = self._sim
        if "crash" in sim.cfg.faults and not sim.quiet and sim.rng.random() < sim.cfg.crash_rate / 4:
            sim.crash(self._node.id)

    def snapshot_installed(self, driver: Driver, snapshot: Snapshot, applied_before: int) -> None:
        sim, nid = self._sim, self._node.id
        index = snapshot.meta.index
        sim._check_snapshot(nid, index, snapshot.data, "installed")
        sim.checker.observe_restore(nid, index, applied_before)
        if sim.app is not None:
            sim.app.restored(sim, nid)
        sim.counts["snapshots installed"] += 1
        sim._log(f"n{nid} restore snapshot @{index}")

    def applying(self, driver: Driver, entries: Sequence[Entry]) -> None:
        self._sim.checker.observe_apply(self._node.id, entries)

    def applied(self, driver: Driver, entry: AppliedEntry) -> None:
        self._sim._applied(self._node.id, entry)

    def read_ready(self, driver: Driver, ctx: bytes, index: int) -> None:
        self._sim._serve_read(self._node, ctx)

    def message_rejected(self, driver: Driver, msg: Message, error: InvalidMessage) -> None:
        # Every message here comes from a correct peer: a rejection is a core bug.
        raise AssertionError(f"n{self._node.id} rejected {msg}: {error}")

    def snapshot_taken(self, driver: Driver, index: int, data: bytes) -> None:
        sim, node = self._sim, self._node
        sim._check_snapshot(node.id, index, data, "took")
        sim.counts["snapshots taken"] += 1
        sim._log(f"n{node.id} snapshot @{index}, log from {node.storage.first_index()}")


class Simulation:
    """One seeded run. Use :func:`run_seed`, or drive :meth:`step` yourself."""

    def __init__(self, seed: int, config: SimConfig | None = None, *, trace: bool = False,
                 checker: SafetyChecker | None = None, storage_dir: str | os.PathLike[str] | None = None,
                 app: SimApp | None = None) -> None:
        self.seed = seed
        #: The application run beside the key-value clients (consensus/sim/app.py), if any.
        self.app = app
        #: Prefix of the key-value clients' payloads: with an application, the
        #: composite state machine routes by it.
        self._kv_tag = KV_TAG if app is not None else b""
        self.cfg = cfg = config or SimConfig()
        if cfg.storage == "sqlite" and storage_dir is None:
            raise ValueError("SQLite storage needs a storage_dir")
        self.storage_dir = Path(storage_dir) if storage_dir is not None else None
        self.rng = random.Random(seed)
        self.now = 0
        self.clock = 0  # history event counter: orders every call and return
        self.tracing = trace
        self.trace: list[str] = []
        self._digest = hashlib.sha256()
        f = cfg.faults
        self.net: VirtualNetwork[Message] = VirtualNetwork(
            self.rng,
            NetworkFaults(
                drop=cfg.drop_rate if "drop" in f else 0.0,
                duplicate=cfg.dup_rate if "dup" in f else 0.0,
                reorder=cfg.reorder_rate if "reorder" in f else 0.0,
                min_delay=1,
                max_delay=cfg.max_delay if "delay" in f else 1,
            ),
        )
        self.checker = checker or SafetyChecker()
        self._reference = SessionStateMachine(self._machine(KvStateMachine())[0])
        self._ref_snapshots: list[bytes] = [self._reference.snapshot()]  # index -> state
        self.ids = list(range(1, cfg.nodes + 1))
        self.scores = (ScoreSchedule(seed, self.ids, noise=cfg.score_noise, change_rate=cfg.score_change_rate)
                       if cfg.link_scores else None)
        conf = ConfState.of(self.ids)
        self.nodes: dict[int, _Node] = {}
        for i in self.ids:
            storage: Storage
            if cfg.storage == "sqlite":
                assert self.storage_dir is not None
                storage = SQLiteStorage(self._db_path(i), conf)
            else:
                storage = MemoryStorage(conf)
            node = _Node(i, storage)
            self.nodes[i] = node
            self._start(node)
        # One command at a time per client (window 1): the linearizability checker
        # models each client as sequential. Retries after client_timeout ticks, or 2
        # after a refusal; a REGISTERED result's nonce names the round (c<id>,
        # c<id>.1 ...), so one replayed by a restarting node for an old round is ignored.
        self.clients = [_Client(100 + c, SessionClient(f"c{100 + c}".encode(), retry_ticks=cfg.client_timeout,
                                                       window=1, dropped_retry_ticks=2))
                        for c in range(cfg.clients)]
        self.history: list[Operation] = []
        #: Operations whose client crashed before learning the outcome.
        self.abandoned: list[Operation] = []
        self.acked_writes: set[tuple[int, int]] = set()
        #: (session, seq) -> the log index at which that write took effect.
        self.applied_ops: dict[tuple[int, int], int] = {}
        self._op_counter = 0
        self._session_owner: dict[int, _Client] = {}
        self.removed: list[int] = []  # voters taken out by membership faults
        self.learners_to_promote: list[int] = []
        #: How often each interesting thing happened (shows what a run exercised).
        self.counts: Counter[str] = Counter()
        self._leader_terms: dict[int, int] = {}
        self.quiet = False

    # --- tracing --------------------------------------------------------------------

    def _log(self, text: str) -> None:
        line = f"{self.now:5d} {text}"
        self._digest.update(line.encode())
        self._digest.update(b"\n")
        if self.tracing:
            self.trace.append(line)

    # --- node lifecycle ---------------------------------------------------------------

    def _db_path(self, nid: int) -> Path:
        assert self.storage_dir is not None
        return self.storage_dir / f"seed{self.seed}-n{nid}.db"

    def close(self) -> None:
        """Release storage files (SQLite)."""
        for node in self.nodes.values():
            if isinstance(node.storage, SQLiteStorage):
                node.storage.close()

    def _start(self, node: _Node) -> None:
        if isinstance(node.storage, SQLiteStorage) and node.driver is None and self.now > 0:
            # The restart reads everything back from the file: recovery must be exact.
            node.storage = SQLiteStorage(self._db_path(node.id), create=False)
        kv = KvStateMachine()
        machine, node.app = self._machine(kv)
        fsm = SessionStateMachine(machine)
        node.kv, node.fsm = kv, fsm
        cfg = self.cfg
        # The driver restores the state machine from the stored snapshot and starts the
        # RawNode at its index (the restart procedure, docs/consensus.md).
        node.driver = Driver(
            Config(
                id=node.id,
                election_tick=cfg.election_tick,
                heartbeat_tick=cfg.heartbeat_tick,
                snapshot_chunk_bytes=cfg.snapshot_chunk_bytes,
                max_size_per_msg=cfg.max_msg_bytes,
                rng=random.Random(self.rng.getrandbits(64)),
                leadership_by_link_score=cfg.link_scores,
                link_score_margin=cfg.score_margin,
                link_score_dwell_ticks=cfg.score_dwell_ticks,
                leader_transfer_interval_ticks=cfg.score_transfer_interval,
                poor_link_election_delay_ticks=cfg.score_election_delay,
            ),
            node.storage, fsm, _SimLink(self),
            DriverConfig(snapshot_every=cfg.snapshot_every, compact_keep=cfg.compact_keep),
            _NodeObserver(self, node),
        )
        self.net.set_down(node.id, False)

    def _machine(self, kv: KvStateMachine) -> tuple[Any, Any]:
        """(the state machine behind the sessions, the application's part or None)."""
        if self.app is None:
            return kv, None
        app_machine = self.app.state_machine()
        return CompositeStateMachine(kv, app_machine), app_machine

    # --- what an application (consensus/sim/app.py) may use ---------------------------

    def leader(self) -> int | None:
        """The up node leading the highest term (None without one)."""
        return self._leader()

    def up_nodes(self) -> list[int]:
        return [nid for nid in self.ids if self.nodes[nid].up]

    def app_machine(self, nid: int) -> Any:
        """Node ``nid``'s application state machine (None while it is down)."""
        return self.nodes[nid].app

    def driver(self, nid: int) -> Driver | None:
        return self.nodes[nid].driver

    def propose(self, nid: int, data: bytes) -> bool:
        """Propose ``data`` at node ``nid``; False if it is down or refused it."""
        driver = self.nodes[nid].driver
        if driver is None:
            return False
        try:
            driver.propose(data)
        except ProposalDropped:
            return False
        return True

    def log(self, text: str) -> None:
        """A line in the trace (and its digest, so replays compare it too)."""
        self._log(text)

    def crash(self, nid: int) -> None:
        """Power cut: everything but the storage is lost."""
        node = self.nodes[nid]
        if not node.up:
            return
        self._log(f"crash n{nid}" + (" (unpersisted ready lost)" if node.holding else ""))
        assert node.driver is not None
        node.applied_when_down = node.driver.applied
        node.driver.stop()
        node.driver = None
        node.fsm = node.kv = node.app = None
        if self.app is not None:
            self.app.node_down(self, nid)
        if isinstance(node.storage, SQLiteStorage):
            node.storage.close()
        self.net.set_down(nid, True)
        self.counts["crashes"] += 1

    def restart(self, nid: int) -> None:
        node = self.nodes[nid]
        if node.up:
            return
        self._log(f"restart n{nid}")
        self._start(node)

    # --- the main loop -----------------------------------------------------------------

    def run(self) -> None:
        for _ in range(self.cfg.steps):
            self.step()
        self._enter_quiet()
        for _ in range(self.cfg.quiet_ticks):
            self.step()
            if self._settled():
                break

    def step(self) -> None:
        """One virtual tick: faults, deliveries, ticks, clients, Ready handling."""
        self.now += 1
        self.checker.tick = self.now
        for c in self.clients:
            c.session.tick()  # the session clients' clock is the simulation's
        if not self.quiet:
            self._inject_faults()
        if self.scores is not None:
            self._report_scores(self.scores)
        for m in self.net.deliver(self.now):
            driver = self.nodes[m.to].driver
            if driver is not None:
                driver.step(m)  # queued by the driver while a Ready is held
        for nid in self.ids:
            node = self.nodes[nid]
            driver = node.driver
            if driver is None:
                continue
            if driver.held is not None:
                if self.now < node.disk_done_at:
                    continue  # stalled on the disk: inbox waits, no ticks
                driver.finish_held()  # then the messages queued meanwhile are stepped
                if not node.up:
                    continue
            if node.tick_rate != 1 and self.now >= node.skew_until:
                node.tick_rate = 1
            for _ in range(node.tick_rate):
                driver.tick()
        self._clients_act()
        if self.app is not None:
            self.app.act(self)
        for nid in self.ids:
            driver = self.nodes[nid].driver
            if driver is not None:
                driver.process()  # stops at once while a Ready is held
        self._observe_roles()

    # --- what the driver reports (see _NodeObserver) --------------------------------------------

    def _term_at(self, node: _Node, index: int) -> int | None:
        try:
            return node.storage.term(index)
        except (CompactedError, UnavailableError):
            return None

    def _applied(self, nid: int, e: AppliedEntry) -> None:
        res = None
        if e.kind is not EntryKind.CONF_CHANGE and e.result is not None:
            try:
                res = decode_session_result(e.result)
            except SessionError as exc:
                raise AssertionError(f"n{nid}: session state machine gave a malformed result: {exc}") from None
        self._applied_kv(nid, e, res)
        if self.app is not None:
            problem = self.app.applied(self, nid, e, res)
            if problem is not None:
                self.checker.report("application", problem)

    def _applied_kv(self, nid: int, e: AppliedEntry, res: SessionResult | None) -> None:
        if e.kind is EntryKind.CONF_CHANGE:
            self._log(f"n{nid} apply {e.index} conf change")
            return
        if res is None:
            return  # a new leader's no-op
        self._log(f"n{nid} apply {e.index} {res.status.name} session {res.client_id} #{res.seq}")
        if res.status is SessionStatus.REGISTERED:
            self._deliver_registration(nid, res)
        else:
            if res.status is SessionStatus.OK and not res.cached:
                # The entry at which (session, seq) took effect: the same on every
                # replica (State Machine Safety is checked on the entries themselves).
                self.applied_ops.setdefault((res.client_id, res.seq), e.index)
            self._deliver_write_result(nid, res)

    def _reference_snapshot(self, index: int) -> bytes:
        """The state machine's snapshot after applying the committed log up to
        ``index``, computed by a reference replica fed the applied-entry ledger."""
        ref = self._reference
        while len(self._ref_snapshots) <= index:
            i = len(self._ref_snapshots)
            e = self.checker.applied_entry(i)
            if e is None:
                raise SafetyViolation(Violation(
                    "state machine safety", self.now, f"a snapshot covers index {i}, which no node applied"))
            if e.kind is EntryKind.NORMAL and e.data:
                ref.apply(e.index, e.data)
            self._ref_snapshots.append(ref.snapshot())
        return self._ref_snapshots[index]

    def _check_snapshot(self, nid: int, index: int, data: bytes, how: str) -> None:
        """A snapshot at ``index`` must be the state the committed log gives there
        (State Machine Safety through compaction and InstallSnapshot, §7)."""
        if data != self._reference_snapshot(index):
            self.checker.report("state machine safety",
                               f"node {nid} {how} a snapshot at {index} that differs from the state "
                               "of the committed log there")

    def _report_scores(self, schedule: ScoreSchedule) -> None:
        scores, moved = schedule.step()
        if moved is not None:
            self._log(f"n{moved} link score base now {schedule.base[moved]:.3f}")
            self.counts["link score changes"] += 1
        for nid, score in scores.items():
            driver = self.nodes[nid].driver
            if driver is not None:
                driver.raw.set_link_score(score)

    def _observe_roles(self) -> None:
        for nid in self.ids:
            node = self.nodes[nid]
            if not node.up:
                continue
            assert node.driver is not None
            st = node.driver.raw.status()
            if st.score_transfers != node.score_transfers:
                if st.score_transfers > node.score_transfers:  # else a restarted node's new count
                    self.counts["score transfers"] += st.score_transfers - node.score_transfers
                    self._log(f"n{nid} hands leadership to n{st.lead_transferee} (link score)")
                node.score_transfers = st.score_transfers
            if st.role is StateRole.LEADER:
                if self._leader_terms.get(nid) != st.term:
                    self._leader_terms[nid] = st.term
                    self.counts["leaders elected"] += 1
                    self._log(f"n{nid} leads term {st.term}")
                self.checker.observe_leader(nid, st.term)
                if not node.holding:
                    self.checker.check_leader_completeness(
                        nid, st.term, lambda i: self._term_at(node, i), node.storage.first_index() - 1
                    )

    # --- clients ---------------------------------------------------------------------

    def _record_call(self) -> int:
        self.clock += 1
        return self.clock

    def _clients_act(self) -> None:
        for c in self.clients:
            session = c.session
            if session.client_id is None:
                if not self.quiet:
                    for proposal in session.poll():  # the registration, when due
                        self._register(c, proposal)
                continue
            call = c.call
            if call is None:
                if self.quiet or self.now < c.next_at:
                    continue
                self._new_call(c)
            elif call.cmd.op == "get":
                if self.now >= call.deadline:
                    self._retry(c, "timeout")
            else:
                for proposal in session.poll():  # a retry through the same session
                    call.data = proposal.data
                    self._retry(c, "timeout")

    def _register(self, c: _Client, proposal: SessionProposal) -> None:
        c.register_server = self._pick_server(c)
        driver = self.nodes[c.register_server].driver
        self._log(f"c{c.id} register -> n{c.register_server}")
        if driver is None:
            return
        try:
            driver.propose(proposal.data)
        except ProposalDropped:
            c.session.dropped(0)

    def _deliver_registration(self, nid: int, res: SessionResult) -> None:
        """A REGISTERED result at ``nid``: the new session goes to the client whose
        nonce it echoes, if that client is still registering through ``nid`` (a retried
        registration may commit twice; the client keeps the first it hears of)."""
        for c in self.clients:
            session = c.session
            if session.client_id is None and c.register_server == nid and res.payload == session.nonce:
                session.on_result(res)
                self._session_owner[res.client_id] = c
                self._log(f"c{c.id} registered as session {res.client_id}")
                return

    def _new_call(self, c: _Client) -> None:
        rng = self.rng
        key = f"k{rng.randrange(self.cfg.keys)}"
        self._op_counter += 1
        roll = rng.random()
        value = f"v{self._op_counter}"
        if roll < 0.4:
            cmd = KvCommand("get", key)
        elif roll < 0.75:
            cmd = KvCommand("put", key, value)
        elif roll < 0.9:
            cmd = KvCommand("append", key, value)
        else:
            # Expect a recent value, so that some cas succeed.
            expected = None if rng.random() < 0.2 else f"v{max(1, self._op_counter - rng.randint(1, 4))}"
            cmd = KvCommand("cas", key, value, expected)
        server = self._pick_server(c)
        seq, data = 0, b""  # reads go through ReadIndex, not the log: no sequence number
        if cmd.op != "get":
            c.session.submit(self._kv_tag + encode_command(cmd))
            [proposal] = c.session.poll()
            seq, data = proposal.seq, proposal.data
        c.call = _Call(seq, cmd, self._record_call(), server, 0, self.now + self.cfg.client_timeout)
        c.call.op_id = self._op_counter
        c.call.data = data
        self._log(f"c{c.id} call {cmd.op} {key} #{seq} -> n{server}")
        self._submit(c)

    def _pick_server(self, c: _Client) -> int:
        hint = c.leader_hint
        if hint and self.nodes[hint].up and self.rng.random() < 0.8:
            return hint
        return self.rng.choice(self.ids)

    def _submit(self, c: _Client) -> bool:
        """Hand the current call to its server; False if the server refused it."""
        call = c.call
        assert call is not None
        driver = self.nodes[call.server].driver
        if driver is None:
            return True  # the client will time out and retry elsewhere
        lead = driver.raw.status().lead
        if lead:
            c.leader_hint = lead
        try:
            if call.cmd.op == "get":
                call.read_ctx = f"r{c.id}.{call.op_id}.{call.attempt}".encode()
                driver.read_index(call.read_ctx)
            else:
                driver.propose(call.data)
        except ProposalDropped as exc:
            self._log(f"c{c.id} {call.cmd.op} dropped at n{call.server}: {exc}")
            # No leader known there: back off briefly, then try another server.
            if call.cmd.op == "get":
                call.deadline = min(call.deadline, self.now + 2)
            else:
                c.session.dropped(call.seq)
            return False
        return True

    def _retry(self, c: _Client, why: str) -> None:
        call = c.call
        assert call is not None
        call.attempt += 1
        call.server = self._pick_server(c)
        call.deadline = self.now + self.cfg.client_timeout
        call.read_ctx = None
        self._log(f"c{c.id} retry {call.cmd.op} ({why}) -> n{call.server}")
        self._submit(c)

    def _deliver_write_result(self, nid: int, res: SessionResult) -> None:
        """A session result at ``nid``: the answer to a client waiting there for it."""
        session_id, seq = res.client_id, res.seq
        c = self._session_owner.get(session_id)
        if c is None or c.session.client_id != session_id:
            return
        call = c.call
        if call is None or call.seq != seq or call.server != nid or call.cmd.op == "get":
            return
        if res.status is not SessionStatus.OK:
            # Sequential clients never see STALE, and sessions never expire here (the
            # table is far larger than the client count): either means exactly-once
            # bookkeeping broke.
            raise AssertionError(f"client {c.id} session {session_id} #{seq}: unexpected {res.status.name}")
        try:
            output = decode_result(res.payload)
        except ValueError as exc:
            raise AssertionError(f"client {c.id} #{seq}: state machine refused its command: {exc}") from None
        c.session.on_result(res)
        events = c.session.events()
        if not (len(events) == 1 and isinstance(events[0], Completed) and events[0].seq == seq):
            raise AssertionError(f"client {c.id} #{seq}: session client answered {events}")
        self._complete(c, output)
        self.counts["writes acknowledged"] += 1
        self.acked_writes.add((session_id, seq))

    def _serve_read(self, node: _Node, ctx: bytes) -> None:
        """ReadIndex read ``ctx`` may be served at ``node`` (its index is applied, §6.4):
        answer the client waiting there for it."""
        for c in self.clients:
            call = c.call
            if call is not None and call.read_ctx == ctx and call.server == node.id:
                assert node.kv is not None
                self.counts["reads served"] += 1
                self._complete(c, node.kv.read(call.cmd.key))

    @staticmethod
    def _operation(client: int, call: _Call, ret: int | None, output: Any) -> Operation:
        cmd = call.cmd
        kind = _OP_KINDS[cmd.op]
        return Operation(client, kind, cmd.key, call.call_time, ret, value=cmd.value, expected=cmd.expected,
                         output=output if ret is not None and kind in (OpKind.GET, OpKind.CAS) else None)

    def _complete(self, c: _Client, output: Any) -> None:
        call = c.call
        assert call is not None
        self.history.append(self._operation(c.id, call, self._record_call(), output))
        self._log(f"c{c.id} return {call.cmd.op} {call.cmd.key} #{call.seq} = {output!r}")
        c.call = None
        c.next_at = self.now + self.rng.randint(0, self.cfg.client_think)

    def pending_operations(self) -> list[Operation]:
        """Operations whose outcome no client learned: abandoned by a crashed client, or
        still in flight when the run ended."""
        out = list(self.abandoned)
        for c in self.clients:
            if c.call is not None:
                out.append(self._operation(c.id, c.call, None, None))
        return out

    # --- faults ---------------------------------------------------------------------

    def _inject_faults(self) -> None:
        cfg, rng, f = self.cfg, self.rng, self.cfg.faults
        if "partition" in f:
            if self.net.partitioned:
                if rng.random() < cfg.heal_rate:
                    self.net.heal()
                    self._log("heal")
            elif rng.random() < cfg.partition_rate:
                if len(self.ids) > 2 and rng.random() < 0.25:
                    self._partial_partition()
                else:
                    self._split()
        if "crash" in f:
            for nid in self.ids:
                node = self.nodes[nid]
                if node.up:
                    if rng.random() < cfg.crash_rate:
                        self.crash(nid)
                elif rng.random() < cfg.restart_rate:
                    self.restart(nid)
        if "slowdisk" in f and rng.random() < cfg.slowdisk_rate:
            nid = rng.choice(self.ids)
            self.nodes[nid].disk_slow_until = self.now + rng.randint(5, 40)
            self._log(f"n{nid} disk slow until {self.nodes[nid].disk_slow_until}")
        if "transfer" in f and rng.random() < cfg.transfer_rate:
            leader = self._leader()
            if leader is not None:
                driver = self.nodes[leader].driver
                assert driver is not None
                voters = [v for v in driver.raw.status().conf_state.voters if v != leader]
                if voters:
                    target = rng.choice(voters)
                    self._log(f"transfer leadership n{leader} -> n{target}")
                    self.counts["leader transfers asked"] += 1
                    try:
                        driver.transfer_leader(target)
                    except ProposalDropped as exc:
                        self._log(f"transfer refused: {exc}")
        if "member" in f and rng.random() < cfg.member_rate:
            self._membership_change()
        if "skew" in f and rng.random() < cfg.skew_rate:
            node = self.nodes[rng.choice(self.ids)]
            node.tick_rate = rng.choice([0, 2, 3])
            node.skew_until = self.now + rng.randint(10, 60)
            self.counts["clock skews"] += 1
            self._log(f"n{node.id} clock runs at {node.tick_rate}x until {node.skew_until}")
        if "client" in f and rng.random() < cfg.client_crash_rate:
            busy = [c for c in self.clients if c.call is not None]
            if busy:
                self._abandon(rng.choice(busy))

    def _abandon(self, c: _Client) -> None:
        """The client crashes mid-operation: its outcome is never learned."""
        call = c.call
        assert call is not None and c.session.client_id is not None
        self._log(f"c{c.id} crashes during {call.cmd.op} {call.cmd.key} #{call.seq}")
        self.abandoned.append(self._operation(c.id, call, None, None))
        del self._session_owner[c.session.client_id]
        c.call = None
        c.session.abandon(resume_after=self.rng.randint(1, 10))
        self.counts["client crashes"] += 1

    def _split(self) -> None:
        """Split the nodes in two groups; half the time the leader is in the minority."""
        rng = self.rng
        shuffled = self.ids[:]
        rng.shuffle(shuffled)
        leader = self._leader()
        if leader is not None and len(shuffled) > 2 and rng.random() < 0.5:
            # Strand the leader in a minority: it keeps taking proposals it can never
            # commit, which the new majority's leader must overwrite (§5.3).
            shuffled.remove(leader)
            shuffled.insert(0, leader)
            cut = rng.randint(1, (len(shuffled) - 1) // 2)
        else:
            cut = rng.randint(1, len(shuffled) - 1) if len(shuffled) > 1 else 1
        a, b = sorted(shuffled[:cut]), sorted(shuffled[cut:])
        self.net.partition(a, b)
        self.counts["partitions"] += 1
        self._log(f"partition {a} | {b}")

    def _partial_partition(self) -> None:
        """Cut a few links, some one way only, so connectivity is not transitive (A
        hears B and C, B and C do not hear each other): the case PreVote and
        CheckQuorum exist for (thesis §9.6, §6.2)."""
        rng = self.rng
        cuts = []
        for _ in range(rng.randint(1, 3)):
            x, y = rng.sample(self.ids, 2)
            both = rng.random() < 0.5
            self.net.cut_link(x, y, both_ways=both)
            cuts.append(f"{x}{'<' if both else ''}-x->{y}")
        self.counts["partial partitions"] += 1
        self._log(f"cut links {' '.join(cuts)}")

    def _leader(self) -> int | None:
        best = None
        for nid in self.ids:
            node = self.nodes[nid]
            if node.driver is not None and node.driver.held is None:
                st = node.driver.raw.status()
                if st.role is StateRole.LEADER and (best is None or st.term > best[1]):
                    best = (nid, st.term)
        return best[0] if best else None

    def _membership_change(self) -> None:
        """Remove a voter (sometimes the leader itself), add it back as a learner, then
        promote it once caught up: one server at a time (thesis §4.1)."""
        leader = self._leader()
        if leader is None:
            return
        driver = self.nodes[leader].driver
        assert driver is not None
        conf = driver.raw.status().conf_state
        rng = self.rng
        if self.learners_to_promote:
            nid = self.learners_to_promote[0]
            cc = ConfChange(ConfChangeType.ADD_VOTER, nid)
        elif self.removed:
            nid = self.removed[0]
            cc = ConfChange(ConfChangeType.ADD_LEARNER, nid)
        elif len(conf.voters) > 3:
            candidates = [v for v in conf.voters if self.cfg.remove_leader or v != leader]
            nid = rng.choice(candidates)
            cc = ConfChange(ConfChangeType.REMOVE_NODE, nid)
        else:
            return
        try:
            driver.propose_conf_change(cc)
        except ProposalDropped as exc:
            self._log(f"conf change {cc.type.name} n{nid} refused: {exc}")
            return
        self.counts[f"membership {cc.type.name.lower()} proposed"] += 1
        self._log(f"propose {cc.type.name} n{nid} at leader n{leader}")
        if cc.type is ConfChangeType.REMOVE_NODE:
            self.removed.append(nid)
        elif cc.type is ConfChangeType.ADD_LEARNER:
            self.removed.remove(nid)
            self.learners_to_promote.append(nid)
        else:
            self.learners_to_promote.remove(nid)

    # --- the end of a run -----------------------------------------------------------

    def _enter_quiet(self) -> None:
        self.quiet = True
        self.net.heal()
        self.net.faults = NetworkFaults()  # a reliable network: now everything should converge
        for nid in self.ids:
            node = self.nodes[nid]
            node.disk_slow_until = 0
            node.tick_rate = 1
            if not node.up:
                self.restart(nid)
        self._log("quiet: faults stopped, network healed, all nodes up")

    def _settled(self) -> bool:
        """Quiet and converged: a leader, no client waiting, and every member of the
        leader's configuration (removed nodes no longer hear from it) has applied
        everything committed."""
        if any(c.call is not None for c in self.clients):
            return False
        if self.app is not None and not self.app.settled(self):
            return False
        leader = self._leader()
        if leader is None:
            return False
        lead_driver = self.nodes[leader].driver
        assert lead_driver is not None
        lst = lead_driver.raw.status()
        for i in lst.conf_state.members():
            driver = self.nodes[i].driver
            if driver is None or driver.applied != lst.commit or driver.raw.status().commit != lst.commit:
                return False
        return True

    def final_checks(self) -> tuple[str | None, str]:
        """After the run: convergence of replicas, durability of acknowledged writes.
        Returns (violation, details) or (None, "")."""
        # Replicas that applied the same prefix hold the same state (§5.4.3).
        by_applied: dict[int, tuple[int, bytes]] = {}
        for nid in self.ids:
            node = self.nodes[nid]
            if not node.up:
                continue
            assert node.fsm is not None
            state = node.fsm.snapshot()
            seen = by_applied.setdefault(node.applied, (nid, state))
            if seen[1] != state:
                return (f"state machine safety: nodes {seen[0]} and {nid} applied up to {node.applied} "
                        "but hold different states", "")
        # Every acknowledged write is in the committed log (hashicorp/raft fuzzy's check)...
        lost = sorted(self.acked_writes - self.applied_ops.keys())
        if lost:
            return f"durability: acknowledged writes (session, seq) never committed: {lost[:5]}", ""
        # ...and survived into every up-to-date replica's state (rebuilt from the log or
        # from a snapshot of it).
        top = max((self.nodes[i].applied for i in self.ids if self.nodes[i].up), default=0)
        for nid in self.ids:
            node = self.nodes[nid]
            if not node.up or node.applied != top:
                continue
            assert node.fsm is not None
            applied_seq = node.fsm.sessions()
            lost = sorted((sid, seq) for sid, seq in self.acked_writes if applied_seq.get(sid, 0) < seq)
            if lost:
                return (f"durability: node {nid} (applied {top}) lacks acknowledged writes "
                        f"(session, seq) {lost[:5]}", "")
        if self.app is not None:
            problem = self.app.final_check(self)
            if problem is not None:
                return f"application: {problem}", ""
        return None, ""


def run_seed(seed: int, config: SimConfig | None = None, *, trace: bool = False,
             check_linearizability: bool = True,
             storage_dir: str | os.PathLike[str] | None = None,
             app: SimApp | None = None, prog: str = "python -m consensus.sim") -> SimResult:
    """Run one seeded simulation to the end and check everything. ``storage_dir`` is
    where SQLite storage files go when ``config.storage == "sqlite"``; ``app`` is an
    application run beside the key-value clients (consensus/sim/app.py)."""
    cfg = config or SimConfig()
    t0 = time.perf_counter()
    sim = Simulation(seed, cfg, trace=trace, storage_dir=storage_dir, app=app)
    violation: str | None = None
    details = ""
    lin = "skipped"
    try:
        sim.run()
    except SafetyViolation as exc:
        violation = str(exc.violation)
    except Exception as exc:  # the core (or the simulator) broke: report, don't hide
        violation = f"[tick {sim.now}] exception: {type(exc).__name__}: {exc}"
        details = traceback.format_exc()
    if violation is None:
        violation, details = sim.final_checks()
    sim.close()
    if violation is None and check_linearizability:
        # Budgeted: an exhausted search reports "unknown", never a pass (see linearizability.py).
        result = check_kv_history(sim.history + sim.pending_operations(), max_steps_per_key=5_000_000, timeout_s=60.0)
        lin = result.verdict.value
        if result.verdict is Verdict.ILLEGAL:
            violation = "linearizability: client history is not linearizable"
            details = result.describe()
    seconds = time.perf_counter() - t0
    committed = max((n.applied for n in sim.nodes.values()), default=0)
    return SimResult(
        seed=seed,
        ok=violation is None,
        violation=violation,
        details=details,
        linearizability=lin,
        committed=committed,
        ops=len(sim.history) + len(sim.pending_operations()),
        acked=len(sim.history),
        elections=sim.counts["leaders elected"],
        crashes=sim.counts["crashes"],
        seconds=seconds,
        trace=sim.trace,
        trace_digest=sim._digest.hexdigest(),
        replay_command=replay_command(seed, cfg, prog),
        converged=sim._settled(),
        counts=dict(sim.counts),
    )


def replay_command(seed: int, cfg: SimConfig, prog: str = "python -m consensus.sim") -> str:
    faults = "all" if cfg.faults == ALL_FAULTS else (",".join(sorted(cfg.faults)) or "none")
    extra = (" --storage sqlite" if cfg.storage == "sqlite" else "") + (" --codec" if cfg.wire_codec else "")
    if cfg.link_scores:
        extra += (f" --link-scores --score-noise {cfg.score_noise} --score-change-rate {cfg.score_change_rate}")
    return (f"{prog} --nodes {cfg.nodes} --seed {seed} "
            f"--faults {faults} --steps {cfg.steps} --clients {cfg.clients}{extra} --verbose")
