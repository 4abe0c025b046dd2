"""The one Ready driver over :class:`~consensus.rawnode.RawNode` (etcd-io/raft
``node.go`` over ``rawnode.go``; the loop of etcd's ``raftexample``).

Every user of the core goes through it: the seeded simulator
(:mod:`consensus.sim.cluster`), the virtual-time demo (``swarm/demo.py``) and the
drone agent. It owns the RawNode and turns each :class:`~consensus.rawnode.Ready`
into the steps of the durability contract (docs/consensus.md), in this order:

1. **persist** the Ready's snapshot, entries and hard state in ONE
   ``Storage.apply_ready`` call (one SQLite transaction) — before any of its
   messages leaves, because they promise that state (a vote, an AppendEntries
   acknowledgement; Raft Figure 2, §5.2, §5.4). The one exception is the leader's
   replication (thesis §10.2.1, etcd's ``node.go`` does the same): a leader's
   AppendEntries, heartbeats and snapshot chunks promise nothing about its own disk,
   so they leave *before* the write, and the followers' round trip (their fsync)
   overlaps the leader's fsync instead of following it — one fsync on a commit's
   critical path instead of two (see :meth:`Driver._early`);
2. **send** the (other) messages through the transport;
3. **install** the snapshot into the state machine;
4. **apply** the committed entries, in index order (§5.3, State Machine Safety §5.4.3);
5. **serve** ReadIndex reads whose index the state machine has applied (thesis §6.4);
6. **advance** the RawNode;
7. **compact**: every ``snapshot_every`` applied entries, snapshot the state machine at
   the applied (hence committed and durable) index and drop the log before it, keeping
   ``compact_keep`` entries for briefly lagging followers (§7).

Like the core it has no sockets, clocks, threads or files: the storage, the state
machine, the transport and the timer (whoever calls :meth:`Driver.tick`) are passed
in, so it runs the same in virtual time (tests, simulator, demo) and in the agent.
It is not thread-safe: one thread owns it (the agent feeds it from a queue).

Users observe it through a :class:`DriverObserver` (no-op methods to override):
applied entries with their results, reads that became servable, leadership changes,
snapshots installed and taken. The simulator also uses the observer's hooks to hold a
Ready on a slow disk (:meth:`DriverObserver.defer_persist`, finished later by
:meth:`Driver.finish_held`) and to crash a node between persist and send
(:meth:`DriverObserver.before_send` + :meth:`Driver.stop`), so those faults stay in
the simulator while the loop itself lives only here.

Memory is bounded: the uncommitted log tail (``Config.max_uncommitted_bytes``; the
driver never runs a node without one), the messages queued while a Ready is held, and
the reads the driver waits on. Over a bound the driver raises :class:`Busy` (a
:class:`ProposalDropped`), which the agent answers as ``busy``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from .config import Config
from .fsm import StateMachine
from .raft import ProposalDropped, RaftStatus
from .rawnode import InvalidMessage, RawNode, Ready
from .storage import Storage
from .types import ConfChange, Entry, EntryKind, Message, MessageType, Snapshot, StateRole

__all__ = [
    "AppliedEntry",
    "Busy",
    "DEFAULT_MAX_UNCOMMITTED_BYTES",
    "Driver",
    "DriverConfig",
    "DriverObserver",
    "DriverStatus",
    "LeaderChange",
    "Transport",
]

#: The uncommitted-tail bound the driver applies when ``Config.max_uncommitted_bytes``
#: is 0 (unbounded). A leader holds its uncommitted tail in memory and sends it to
#: every follower (up to ``max_inflight_msgs`` messages of ``max_size_per_msg`` each);
#: 4 MiB covers the 10 000 outstanding map commands of the agent benchmark at ~400 bytes
#: each, and, with the encoded copies in flight to 4 followers, stays well inside the
#: agent's 60 MB RSS budget on a Raspberry Pi. Past it, proposals are refused (``busy``)
#: until commits drain the tail, instead of memory growing while a quorum is missing.
DEFAULT_MAX_UNCOMMITTED_BYTES = 4 * 1024 * 1024


class Busy(ProposalDropped):
    """A bound was reached (uncommitted bytes, waiting reads, queued messages): the
    request was refused and changed nothing. Retry later; the client protocol answers
    ``busy``."""


#: What a leader may send before its Ready is durable (thesis §10.2.1): replication
#: only. Everything else (vote and append responses, a step-down's messages, read
#: answers) waits for the write.
_LEADER_EARLY = frozenset({MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT})


class Transport(Protocol):
    """Where a Ready's messages go (after they are durable). The agent's encodes,
    authenticates and publishes them; the simulator's is its virtual network."""

    def send(self, messages: Sequence[Message]) -> None: ...


@dataclass(frozen=True, slots=True)
class DriverConfig:
    """The driver's own limits and its compaction policy (the core's are in Config)."""

    #: Take a state-machine snapshot and compact the log every this many applied
    #: entries (0: never). Small values make InstallSnapshot common (simulator); the
    #: agent uses thousands (a snapshot costs a full state-machine serialization).
    snapshot_every: int = 4096
    #: Entries kept behind the snapshot index when compacting (etcd keeps a tail so a
    #: briefly lagging follower is sent entries, not the whole snapshot).
    compact_keep: int = 512
    #: Messages queued while a Ready is held (a write in progress); more are dropped
    #: and counted (Raft retransmits: dropping a message is always safe).
    max_inbox: int = 4096
    #: Reads asked (``read_index``) and not yet served; more raise :class:`Busy`.
    max_pending_reads: int = 1024
    #: A read not servable after this many ticks is abandoned (its ReadIndex round or
    #: forward was lost, e.g. in a leader change) and reported through
    #: ``DriverObserver.read_expired``. 0: twice the election timeout.
    read_timeout_ticks: int = 0
    #: Readies handled per :meth:`Driver.process` call (each is persisted and
    #: advanced before the next is taken), so one call never runs unbounded.
    max_readies_per_process: int = 8

    def __post_init__(self) -> None:
        for name in ("snapshot_every", "compact_keep", "read_timeout_ticks"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        for name in ("max_inbox", "max_pending_reads", "max_readies_per_process"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")


class AppliedEntry(NamedTuple):
    """A committed entry the state machine applied (or, for membership changes and a
    new leader's empty no-op (§8), passed over: then ``result`` is None). A NamedTuple
    rather than a frozen dataclass: one is built per entry per node, on the hot path
    (a third of the driver's cost per entry at 64-entry batches)."""

    #: The log index (it shadows ``tuple.index``, which nobody calls on an entry).
    index: int  # type: ignore[assignment]
    term: int
    kind: EntryKind
    data: bytes
    result: bytes | None


@dataclass(frozen=True, slots=True)
class LeaderChange:
    """This node's role, the leader it knows (0: none) and its term, after a change."""

    role: StateRole
    leader: int
    term: int


@dataclass(frozen=True, slots=True)
class DriverStatus:
    raft: RaftStatus
    applied: int  # what the state machine holds (snapshot or last applied entry)
    snapshot_index: int
    first_index: int
    held: bool  # a Ready is held (deferred persist) and not finished
    inbox: int
    pending_reads: int  # asked, waiting for their ReadState
    waiting_reads: int  # have a ReadState, waiting for apply to reach its index
    counts: dict[str, int]


class DriverObserver:
    """Hooks called by the driver from its own thread, at the points named. Override
    what you need; every default does nothing. An exception raised by a hook
    propagates out of the driver call that ran it (the simulator's checkers do this)."""

    def booted(self, driver: Driver, snapshot: Snapshot) -> None:
        """The state machine was restored from storage's ``snapshot`` (possibly the
        empty bootstrap one) and the RawNode built over the storage."""

    def defer_persist(self, driver: Driver, rd: Ready) -> bool:
        """Return True to hold ``rd`` unpersisted (a slow disk): nothing of it happens
        until :meth:`Driver.finish_held`; messages stepped meanwhile are queued."""
        return False

    def persisted(self, driver: Driver, rd: Ready, truncated: bool) -> None:
        """``rd``'s snapshot, entries and hard state are durable (one ``apply_ready``;
        called only when it wrote something). ``truncated``: its entries replaced a
        stored suffix (a new leader overwrote this node's uncommitted tail, §5.3)."""

    def before_send(self, driver: Driver, rd: Ready) -> None:
        """Between persist and send, for every Ready. :meth:`Driver.stop` here is a
        crash after the write and before anything went out (but a leader's
        replication, sent before the write: thesis §10.2.1)."""

    def snapshot_installed(self, driver: Driver, snapshot: Snapshot, applied_before: int) -> None:
        """The state machine now holds ``snapshot`` (sent by the leader, §7); it had
        applied ``applied_before``."""

    def applying(self, driver: Driver, entries: Sequence[Entry]) -> None:
        """The Ready's committed entries, about to be applied in this order."""

    def applied(self, driver: Driver, entry: AppliedEntry) -> None:
        """One committed entry applied, with the state machine's result."""

    def leadership_changed(self, driver: Driver, change: LeaderChange) -> None:
        """The role, leader or term changed (reported after the Ready's entries were
        applied, before advance)."""

    def proposals_refused(self, driver: Driver, datas: Sequence[bytes]) -> None:
        """The leader refused proposals this node forwarded to it (``PROPOSE_RESP``: its
        uncommitted log is full, or a leadership transfer is under way); it appended
        none of them. Reported after the Ready's leadership change, so a proposal
        forwarded again to a new leader meanwhile may be pending there."""

    def read_refused(self, driver: Driver, ctx: bytes) -> None:
        """The leader refused the read ``ctx`` this node forwarded (too many reads wait
        there for a quorum): it will not be served; asking again later is safe."""

    def read_ready(self, driver: Driver, ctx: bytes, index: int) -> None:
        """The read ``ctx`` may be served now: the state machine has applied ``index``,
        which a quorum confirmed after the read was asked (thesis §6.4)."""

    def read_expired(self, driver: Driver, ctx: bytes) -> None:
        """The read ``ctx`` was abandoned after ``read_timeout_ticks`` (it never got a
        ReadState): answer ``timeout``; asking again with a new ctx is safe."""

    def message_rejected(self, driver: Driver, msg: Message, error: InvalidMessage) -> None:
        """``msg`` was refused by ``RawNode.step`` (no correct peer sends it) and
        changed nothing; it is also counted as ``rejected InvalidMessage``."""

    def snapshot_taken(self, driver: Driver, index: int, data: bytes) -> None:
        """Log compaction: the state machine's ``data`` at applied ``index`` is now
        storage's snapshot, and the log before ``index - compact_keep`` is gone."""


_NO_OBSERVER = DriverObserver()


class Driver:
    """Owns one RawNode, its storage and its state machine; see the module docstring.

    Building it is the restart procedure (docs/consensus.md): the state machine is
    restored from ``storage.snapshot()``, and the RawNode starts over the same storage
    with ``Config.applied`` at that snapshot, so every committed entry after it is
    applied again, in order.
    """

    def __init__(self, config: Config, storage: Storage, fsm: StateMachine, transport: Transport,
                 options: DriverConfig | None = None, observer: DriverObserver | None = None) -> None:
        self.options = opts = options or DriverConfig()
        self.storage = storage
        self.fsm = fsm
        self.transport = transport
        self.observer = observer or _NO_OBSERVER
        self.counts: Counter[str] = Counter()
        snap = storage.snapshot()
        if not snap.is_empty():
            fsm.restore(snap.data)
        self._applied = snap.meta.index
        self._raw = RawNode(dataclasses.replace(
            config, applied=snap.meta.index,
            max_uncommitted_bytes=config.max_uncommitted_bytes or DEFAULT_MAX_UNCOMMITTED_BYTES,
        ), storage)
        self._read_timeout = opts.read_timeout_ticks or 2 * config.election_tick
        self._now = 0  # ticks since boot (for read expiry only)
        self._held: Ready | None = None
        #: Messages of the Ready being handled that already left before its write.
        self._sent_early: tuple[Message, ...] = ()
        #: (term, vote) as persisted: a Ready that changes them sends nothing early.
        hs = storage.initial_state()[0]
        self._durable_vote = (hs.term, hs.vote)
        self._inbox: deque[Message] = deque()
        #: ctx -> tick by which its ReadState must have come (asked, not yet released).
        self._reads_asked: dict[bytes, int] = {}
        #: (index, ctx) released by Raft, waiting for apply to reach index.
        self._reads_waiting: list[tuple[int, bytes]] = []
        st = self._raw.status()
        self._last_leadership = LeaderChange(st.role, st.lead, st.term)
        self._stopped = False
        self.observer.booted(self, snap)

    # -- inspection -----------------------------------------------------------------

    @property
    def id(self) -> int:
        return self._raw.id

    @property
    def raw(self) -> RawNode:
        """The RawNode, for inputs the driver does not wrap (``campaign``) and
        inspection (``conf_state``). Its outputs must only be taken by the driver."""
        return self._raw

    @property
    def applied(self) -> int:
        """The index the state machine has applied (or restored a snapshot at)."""
        return self._applied

    @property
    def held(self) -> Ready | None:
        """The Ready held by ``defer_persist``, not yet finished."""
        return self._held

    @property
    def stopped(self) -> bool:
        return self._stopped

    def status(self) -> DriverStatus:
        return DriverStatus(
            raft=self._raw.status(), applied=self._applied,
            snapshot_index=self.storage.snapshot().meta.index,
            first_index=self.storage.first_index(), held=self._held is not None,
            inbox=len(self._inbox), pending_reads=len(self._reads_asked),
            waiting_reads=len(self._reads_waiting), counts=dict(self.counts))

    # -- inputs -----------------------------------------------------------------------

    def step(self, msg: Message) -> bool:
        """A message from a peer (already decoded and authenticated). Returns False
        when it was dropped: malformed (``InvalidMessage``; counted as
        ``rejected <reason>``, nothing changed) or the inbox is full while a Ready is
        held (``inbox full``). Raft recovers from dropped messages by itself."""
        self._check_running()
        if self._held is not None:
            if len(self._inbox) >= self.options.max_inbox:
                self.counts["inbox full"] += 1
                return False
            self._inbox.append(msg)
            return True
        return self._step_now(msg)

    def tick(self) -> None:
        """One logical tick (the timer's period is the caller's: Config's election and
        heartbeat ticks count these). Also expires reads past ``read_timeout_ticks``."""
        self._check_running()
        self._raw.tick()
        self._now += 1
        if self._reads_asked:
            expired = [ctx for ctx, due in self._reads_asked.items() if due <= self._now]
            for ctx in expired:
                del self._reads_asked[ctx]
                self.counts["reads expired"] += 1
                self.observer.read_expired(self, ctx)

    def ticks_until_due(self) -> int:
        """Ticks from now until the first that may act (>= 1): a Raft timer, or an
        outstanding read's expiry. The ticks before it only count, so a timer with
        nothing else to do may sleep through them and fire them together just before
        the next input or when this one is due (the agent's node thread does)."""
        due = self._raw.ticks_until_due()
        if self._reads_asked:
            due = min(due, min(self._reads_asked.values()) - self._now)
        return max(1, due)

    def propose(self, data: bytes) -> None:
        """Propose a command. Raises :class:`Busy` when the uncommitted tail is full,
        :class:`ProposalDropped` when no leader is known (or a transfer is in
        progress). Accepted is not committed: watch ``DriverObserver.applied``."""
        self.propose_many([data])

    def propose_many(self, datas: list[bytes]) -> None:
        """Propose several commands, appended together or not at all. (Proposals
        made between two :meth:`process` calls share one Ready and one AppendEntries
        per follower anyway; this also makes them one append.)"""
        self._check_running()
        try:
            self._raw.propose_many(datas)
        except ProposalDropped as exc:
            st = self._raw.status()
            if st.role is StateRole.LEADER and st.lead_transferee == 0 and st.id in st.conf_state.voters:
                # A leader that is neither transferring nor being removed refuses a
                # proposal only for max_uncommitted_bytes (raft.py _append_entries).
                self.counts["proposals busy"] += 1
                raise Busy(str(exc)) from None
            self.counts["proposals dropped"] += 1
            raise

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read named ``ctx`` (unique among outstanding reads,
        cluster-wide: e.g. node id + counter). ``DriverObserver.read_ready`` reports
        when it may be served, or ``read_expired`` that it was abandoned. Raises
        :class:`Busy` over ``max_pending_reads``, :class:`ProposalDropped` when no
        leader is known, ValueError for an empty or outstanding ctx."""
        self._check_running()
        if type(ctx) is not bytes or not ctx:
            raise ValueError("read context must be non-empty bytes")
        if ctx in self._reads_asked:
            raise ValueError(f"read {ctx!r} is already outstanding")
        if len(self._reads_asked) + len(self._reads_waiting) >= self.options.max_pending_reads:
            self.counts["reads busy"] += 1
            raise Busy(f"{self.options.max_pending_reads} reads already pending")
        self._raw.read_index(ctx)
        self._reads_asked[ctx] = self._now + self._read_timeout

    def propose_conf_change(self, cc: ConfChange) -> None:
        """A single-server membership change (leader only; thesis §4.1)."""
        self._check_running()
        self._raw.propose_conf_change(cc)

    def transfer_leader(self, to: int) -> None:
        """Hand leadership to voter ``to`` (thesis §3.10)."""
        self._check_running()
        self._raw.transfer_leader(to)

    def stop(self) -> None:
        """The node is gone (shutdown, or a simulated crash): nothing more happens,
        including the rest of a Ready being handled. Whatever storage holds is what a
        restart finds."""
        self._stopped = True
        self._held = None
        self._inbox.clear()

    # -- the Ready loop ---------------------------------------------------------------

    def process(self) -> int:
        """Handle the pending Readies (up to ``max_readies_per_process``), each in the
        contract's order. Returns how many were finished. Stops early when a Ready is
        held or the driver stopped. An exception while handling a Ready (a
        ``StorageError``, a state machine or observer raising) stops the driver and
        propagates: build a new one over the same storage to recover."""
        done = 0
        for _ in range(self.options.max_readies_per_process):
            if self._stopped or self._held is not None or not self._raw.has_ready():
                break
            rd = self._raw.ready()
            self._sent_early = early = self._early(rd)
            if early:
                self.transport.send(early)
                self.counts["messages sent before persist"] += len(early)
            if self.observer.defer_persist(self, rd):
                self._held = rd
                self.counts["readies held"] += 1
                break
            self._handle(rd)
            done += 1
        return done

    def finish_held(self) -> None:
        """Finish the held Ready (its write completed), then step the messages queued
        meanwhile. Call :meth:`process` for what follows."""
        self._check_running()
        rd = self._held
        if rd is None:
            raise RuntimeError("no Ready is held")
        self._held = None
        self._handle(rd)
        while self._inbox and not self._stopped:
            self._step_now(self._inbox.popleft())

    def _early(self, rd: Ready) -> tuple[Message, ...]:
        """The messages of ``rd`` that may leave before it is durable (thesis §10.2.1):
        a leader's replication, when the Ready neither changes the persisted term or
        vote nor installs a snapshot (then everything waits, as for a follower).

        Why it is safe with the leader counting its own entries at once
        (raft.py ``_append_entries``): the driver steps no message while a Ready is
        being handled or held (they wait in the inbox), so every acknowledgement the
        leader counts arrives after its own write returned. A commit index therefore
        never rests on the leader's unwritten copy: with any peer, a quorum needs a
        follower's acknowledgement of an entry the leader already holds on disk; alone,
        the leader applies only after the write. If the leader crashes before its write,
        followers may hold entries the leader lost: that is an uncommitted entry of a
        crashed leader's term, which Raft resolves like any other (§5.3). The messages
        themselves promise nothing about the leader's disk: an AppendEntries carries the
        leader's entries and a commit index a quorum already holds."""
        if not rd.messages or (rd.snapshot is not None and not rd.snapshot.is_empty()):
            return ()
        role = rd.soft_state.role if rd.soft_state is not None else self._last_leadership.role
        if role is not StateRole.LEADER:
            return ()
        hs = rd.hard_state
        if hs is not None and (hs.term, hs.vote) != self._durable_vote:
            return ()
        early = _LEADER_EARLY
        return tuple(m for m in rd.messages if m.type in early)

    def _step_now(self, msg: Message) -> bool:
        try:
            self._raw.step(msg)
        except InvalidMessage as exc:
            self.counts[f"rejected {type(exc).__name__}"] += 1
            self.observer.message_rejected(self, msg, exc)
            return False
        self.counts["messages stepped"] += 1
        return True

    def _handle(self, rd: Ready) -> None:
        try:
            self._handle_steps(rd)
        except BaseException:
            # A Ready half done (a storage error, a state machine or hook raising)
            # cannot be resumed or retaken: stop, and restart from storage (etcd
            # panics here). What apply_ready committed is exactly what a restart finds.
            self._stopped = True
            self.counts["failed readies"] += 1
            raise

    def _handle_steps(self, rd: Ready) -> None:
        obs = self.observer
        storage = self.storage
        snap = rd.snapshot if rd.snapshot is not None and not rd.snapshot.is_empty() else None
        # 1. Persist: snapshot, entries, hard state in one atomic write, before any
        #    message of this Ready leaves (Figure 2; docs/consensus.md rules 1-2).
        if snap is not None or rd.entries or rd.hard_state is not None:
            truncated = bool(rd.entries) and rd.entries[0].index <= storage.last_index()
            storage.apply_ready(rd.hard_state, rd.entries, snap)
            if rd.hard_state is not None:
                self._durable_vote = (rd.hard_state.term, rd.hard_state.vote)
            self.counts["persists"] += 1
            obs.persisted(self, rd, truncated)
        obs.before_send(self, rd)
        if self._stopped:
            return
        # 2. Send (what did not leave before the write).
        early, self._sent_early = self._sent_early, ()
        if early:
            rest = [m for m in rd.messages if m.type not in _LEADER_EARLY]
            if rest:
                self.transport.send(rest)
        elif rd.messages:
            self.transport.send(rd.messages)
        # 3. Install the snapshot, then 4. apply committed entries in order (rule 3).
        if snap is not None:
            before = self._applied
            self.fsm.restore(snap.data)
            self._applied = snap.meta.index
            self.counts["snapshots installed"] += 1
            obs.snapshot_installed(self, snap, before)
        if rd.committed_entries:
            obs.applying(self, rd.committed_entries)
            # The hot loop: one pass per committed entry on every node.
            fsm_apply, on_applied, normal = self.fsm.apply, obs.applied, EntryKind.NORMAL
            n = 0
            for e in rd.committed_entries:
                index = e.index
                if index <= self._applied:
                    continue  # covered by the snapshot just installed
                self._applied = index
                data = e.data
                result = fsm_apply(index, data) if e.kind is normal and data else None
                n += 1
                on_applied(self, AppliedEntry(index, e.term, e.kind, data, result))
            self.counts["entries applied"] += n
            if self._stopped:
                return
        self._report_leadership(rd)
        if rd.refused_proposals:
            self.counts["proposals refused by the leader"] += len(rd.refused_proposals)
            self.observer.proposals_refused(self, rd.refused_proposals)
        for ctx in rd.refused_reads:
            if self._reads_asked.pop(ctx, None) is not None:
                self.counts["reads refused by the leader"] += 1
                self.observer.read_refused(self, ctx)
        # 5. Reads whose index is applied (rule 6, thesis §6.4).
        for rs in rd.read_states:
            self._reads_asked.pop(rs.request_ctx, None)
            self._reads_waiting.append((rs.index, rs.request_ctx))
        if self._reads_waiting:
            self._serve_reads()
        # 6. Acknowledge, then 7. compact.
        self._raw.advance(rd)
        self._maybe_compact()

    def _report_leadership(self, rd: Ready) -> None:
        if rd.soft_state is None and rd.hard_state is None:
            return
        last = self._last_leadership
        soft = rd.soft_state
        change = LeaderChange(soft.role if soft else last.role, soft.lead if soft else last.leader,
                              rd.hard_state.term if rd.hard_state else last.term)
        if change != last:
            self._last_leadership = change
            self.observer.leadership_changed(self, change)

    def _serve_reads(self) -> None:
        still: list[tuple[int, bytes]] = []
        for index, ctx in self._reads_waiting:
            if self._applied < index:
                still.append((index, ctx))
                continue
            self.counts["reads served"] += 1
            self.observer.read_ready(self, ctx, index)
        self._reads_waiting = still

    def _maybe_compact(self) -> None:
        every = self.options.snapshot_every
        if not every:
            return
        st = self.storage
        applied = self._applied
        if applied - st.snapshot().meta.index < every or applied > st.initial_state()[0].commit:
            return  # not due, or applied is not yet durable as committed here
        data = self.fsm.snapshot()
        st.create_snapshot(applied, self._raw.conf_state_at(applied), data)
        keep_from = applied - self.options.compact_keep
        if keep_from > st.first_index() - 1:
            st.compact(keep_from)
        self.counts["snapshots taken"] += 1
        self.observer.snapshot_taken(self, applied, data)

    def _check_running(self) -> None:
        if self._stopped:
            raise RuntimeError(f"driver of node {self._raw.id} is stopped")
