"""RawNode: the driver-facing, sans-I/O interface of one Raft node (etcd-io/raft
``rawnode.go``).

The driver (the swarm agent, the simulator, a test harness) owns time, the network,
the disk and the state machine. It feeds the node inputs and collects one
:class:`Ready` batch of outputs at a time::

    node = RawNode(Config(id=1, rng=random.Random(seed)), storage)
    while running:
        for msg in inbox: node.step(msg)          # or node.tick() every tick period
        if node.has_ready():
            rd = node.ready()
            storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)   # 1. persist
            for m in rd.messages: transport.send(m)                       # 2. send
            if rd.snapshot: fsm.restore(rd.snapshot.data)                 # 3. install
            for e in rd.committed_entries: fsm.apply(e.index, e.data)     # 4. apply
            for rs in rd.read_states: serve rs once applied >= rs.index   # 5. reads
            node.advance(rd)                                              # 6. ack

The order is the durability contract (§5, Figure 2 "Persistent state ... updated on
stable storage before responding to RPCs"): a Ready's messages may promise its hard
state (a vote) and entries (an AppendEntries acknowledgement), so they may leave only
after ``apply_ready`` returned; committed entries may be applied only once durable.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import encode_conf_change
from .config import Config
from .leadership import score_from_unit
from .raft import ProposalDropped, Raft, RaftStatus
from .storage import Storage
from .types import (
    MAX_INDEX,
    MAX_NODE_ID,
    MAX_TERM,
    ConfChange,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SoftState,
)

__all__ = ["RawNode", "Ready", "InvalidMessage", "ProposalDropped"]

_UNTERMED = (MessageType.PROPOSE, MessageType.READ_INDEX, MessageType.TRANSFER_LEADER)


class InvalidMessage(ValueError):
    """A message that no correct Raft peer sends; it was rejected and changed nothing."""


@dataclass(frozen=True)
class Ready:
    """Everything the driver must do, in this order (see the module docstring).

    * ``soft_state`` – new leader/role, or None if unchanged (informational).
    * ``hard_state`` – term/vote/commit to persist, or None if unchanged.
    * ``entries`` – log entries to persist (they may replace a stored suffix).
    * ``snapshot`` – a snapshot to persist and restore the state machine from, or None.
    * ``messages`` – to send only AFTER the above are durable.
    * ``committed_entries`` – to apply to the state machine, in order (CONF_CHANGE
      entries are already in force in the core; the driver may apply them to its
      transport's peer list).
    * ``read_states`` – linearizable reads: serve each once the state machine has
      applied ``index``.
    * ``refused_proposals`` – the data of proposals this node forwarded that the leader
      refused (never appended there): their clients may be told now.
    * ``refused_reads`` – the contexts of reads this node forwarded that the leader
      refused (too many reads wait there): never served, their clients may be told now.
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    messages: tuple[Message, ...]
    committed_entries: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]
    refused_proposals: tuple[bytes, ...] = ()
    refused_reads: tuple[bytes, ...] = ()
    #: Whether the writes need an fsync before the messages go (etcd MustSync): new
    #: entries, a snapshot, or a new term or vote. A commit index alone can be relearned
    #: from the leader, so a storage may batch it.
    must_sync: bool = False


class RawNode:
    """One Raft node, driven by its owner. Not thread-safe: one driver thread."""

    def __init__(self, config: Config, storage: Storage) -> None:
        self._raft = Raft(config, storage)
        self._prev_soft = self._raft.soft_state()
        self._prev_hard = storage.initial_state()[0]
        self._outstanding: Ready | None = None

    # -- inputs --------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick (election and heartbeat timers, §5.2)."""
        self._raft.tick()

    def ticks_until_due(self) -> int:
        """Ticks from now until the first that may act (>= 1); those before it only
        count, so they may be fired together later (Raft.ticks_until_due)."""
        return self._raft.ticks_until_due()

    def step(self, m: Message) -> None:
        """Feed a message received from a peer. Malformed messages raise
        :class:`InvalidMessage` and change nothing."""
        self._validate(m)
        self._raft.step(m)

    def propose(self, data: bytes) -> None:
        """Propose one application command. Raises :class:`ProposalDropped` when it
        cannot be accepted now. Acceptance is not commitment: watch committed entries."""
        self.propose_many([data])

    def propose_many(self, datas: list[bytes]) -> None:
        """Propose several commands at once; they are appended together (batching)."""
        if not datas:
            return
        ents = []
        for d in datas:
            if type(d) is not bytes:
                raise TypeError("proposal data must be bytes")
            ents.append(Entry(0, 0, EntryKind.NORMAL, d))
        self._raft.propose(ents)

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a single-server membership change (leader only; thesis §4.1). It takes
        effect on each node as soon as it is in that node's log. Add new servers as
        learners; promote them with ADD_VOTER once caught up (thesis §4.2.1)."""
        if not isinstance(cc, ConfChange):
            raise TypeError("expected a ConfChange")
        self._raft.propose_conf_change(cc, encode_conf_change(cc))

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read (thesis §6.4). ``ctx`` must be unique among
        outstanding reads cluster-wide (e.g. node id + counter); a ReadState with it
        appears in a later Ready."""
        if type(ctx) is not bytes or not ctx:
            raise ValueError("read context must be non-empty bytes")
        self._raft.read_index(ctx)

    def transfer_leader(self, to: int) -> None:
        """Ask the leader to hand leadership to voter ``to`` (thesis §3.10)."""
        if type(to) is not int or not 1 <= to <= MAX_NODE_ID:
            raise ValueError(f"invalid node id {to!r}")
        self._raft.transfer_leader(to)

    def set_link_score(self, score: float | None) -> None:
        """This node's link quality in [0, 1] (1 best; None: unknown), from the radio
        (RADIO_STATUS), the signal model and the broker's round-trip time and loss. It
        travels with this node's APPEND_RESP / HEARTBEAT_RESP; with
        ``Config.leadership_by_link_score`` the leader hands over to a clearly better
        connected voter and poorly connected nodes wait longer before campaigning
        (consensus/leadership.py). Call it whenever the score changes (every tick is
        fine); it goes out with the next message, and the election delay follows it
        at once (also within a term, whose randomized timeout was drawn before)."""
        self._raft.link_score = None if score is None else score_from_unit(score)

    def campaign(self) -> None:
        """Start an election now (with PreVote if configured)."""
        self._raft.hup(transfer=False)

    # -- outputs ---------------------------------------------------------------------------

    def has_ready(self) -> bool:
        r = self._raft
        if self._outstanding is not None:
            return False
        return bool(
            r.pending_bcast or r.pending_read_round or r.msgs or r.read_states
            or r.refused_proposals or r.refused_reads
            or r.log.unstable.entries or r.log.unstable.snapshot is not None
            or r.log.has_next_committed_entries()
            or r.lead != self._prev_soft.lead or r.role is not self._prev_soft.role
            or r.term != self._prev_hard.term or r.vote != self._prev_hard.vote
            or r.log.committed != self._prev_hard.commit
        )

    def ready(self) -> Ready:
        """Collect the pending outputs. Call :meth:`advance` with it before the next
        ``ready()``; inputs may still be fed in between."""
        if self._outstanding is not None:
            raise RuntimeError("ready() called again before advance() of the previous Ready")
        r = self._raft
        r.flush_bcast()
        soft = r.soft_state()
        hard = r.hard_state()
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=tuple(r.log.unstable_entries()),
            snapshot=r.log.unstable.snapshot,
            messages=tuple(r.msgs),
            committed_entries=tuple(r.log.next_committed_entries(
                r.cfg.max_committed_bytes_per_ready or None)),
            read_states=tuple(r.read_states),
            refused_proposals=tuple(r.refused_proposals),
            refused_reads=tuple(r.refused_reads),
            must_sync=bool(r.log.unstable.entries) or r.log.unstable.snapshot is not None
            or hard.term != self._prev_hard.term or hard.vote != self._prev_hard.vote,
        )
        r.msgs = []
        r.read_states = []
        r.refused_proposals = []
        r.refused_reads = []
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver has done everything ``rd`` asked for."""
        if rd is not self._outstanding:
            raise RuntimeError("advance() with a Ready that is not the outstanding one")
        self._outstanding = None
        r = self._raft
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.entries:
            last = rd.entries[-1]
            r.log.stable_to(last.index, last.term)
        if rd.snapshot is not None:
            r.log.stable_snap_to(rd.snapshot.meta.index)
            r.log.applied_to(rd.snapshot.meta.index)
        if rd.committed_entries:
            r.log.applied_to(rd.committed_entries[-1].index)
            r.reduce_uncommitted_size(rd.committed_entries)

    # -- inspection ------------------------------------------------------------------------

    def status(self) -> RaftStatus:
        return self._raft.status()

    @property
    def id(self) -> int:
        return self._raft.id

    @property
    def score_transfers(self) -> int:
        """``status().score_transfers`` without building the status: for a caller that
        polls for a new transfer (the agent, 10 times a second)."""
        return self._raft.score_transfers

    def conf_state(self) -> ConfState:
        """The configuration in force now (the latest in the log, thesis §4.1)."""
        return self._raft.conf

    def conf_state_at(self, index: int) -> ConfState:
        """The configuration as of log ``index``: pass it to ``Storage.create_snapshot``
        with the applied index the snapshot was taken at."""
        return self._raft.conf_state_at(index)

    # -- validation --------------------------------------------------------------------------

    def _validate(self, m: Message) -> None:
        if not isinstance(m, Message):
            raise InvalidMessage(f"expected a Message, got {type(m).__name__}")
        if m.to != self._raft.id:
            raise InvalidMessage(f"message for node {m.to} delivered to node {self._raft.id}")
        if m.frm == self._raft.id:
            raise InvalidMessage("message claims to come from this node")
        _check_bounds(m)
        if m.type in _UNTERMED:
            if m.term != 0:
                raise InvalidMessage(f"{m.type.name} must carry term 0")
        elif m.term == 0:
            raise InvalidMessage(f"{m.type.name} must carry a term")
        if m.type in (MessageType.APPEND, MessageType.VOTE, MessageType.PRE_VOTE) \
                and m.log_term > m.term:
            # The entry named by (index, log_term) was written in a term no later than
            # the sender's (§5.1, Figure 2); a vote request claiming a later one would
            # win every §5.4.1 up-to-date check it should not.
            raise InvalidMessage(f"{m.type.name} names a log term beyond its own term")
        if m.type is MessageType.APPEND:
            prev = m.index
            prev_term = m.log_term
            for e in m.entries:
                if e.index != prev + 1 or e.term < prev_term or e.term > m.term:
                    raise InvalidMessage("AppendEntries entries are not a valid log suffix")
                prev, prev_term = e.index, e.term
        elif m.entries and m.type not in (MessageType.PROPOSE, MessageType.PROPOSE_RESP):
            raise InvalidMessage(f"{m.type.name} carries no entries")
        if m.type in (MessageType.PROPOSE, MessageType.PROPOSE_RESP) and not m.entries:
            raise InvalidMessage(f"{m.type.name} without entries")
        if m.type is MessageType.SNAPSHOT:
            assert m.snapshot is not None  # Message validates this
            if m.snapshot.meta.index == 0 or m.snapshot.meta.term > m.term:
                raise InvalidMessage("SNAPSHOT with an impossible index or term")
            if not m.snapshot.meta.conf_state.voters:
                # Installing it would leave this node in a cluster nobody can lead.
                raise InvalidMessage("SNAPSHOT with a configuration without voters")
        elif m.snapshot is not None:
            raise InvalidMessage(f"{m.type.name} carries no snapshot")
        if m.link_score is not None and m.type not in (MessageType.APPEND_RESP, MessageType.HEARTBEAT_RESP):
            raise InvalidMessage(f"{m.type.name} carries no link score")
        if m.type in (MessageType.READ_INDEX, MessageType.READ_INDEX_RESP) and not m.context:
            raise InvalidMessage(f"{m.type.name} without a request context")


def _check_bounds(m: Message) -> None:
    """Every term and log index a message names must be one this node can adopt, advance
    and persist (types.MAX_TERM / MAX_INDEX, SQLite's signed 64-bit limit). The wire
    carries u64 (as etcd's does); a term near 2**64 accepted here used to overflow the
    next election inside tick() on every tick, and one at 2**63 made every later
    persist fail, wedging the node for good."""
    for name in ("term", "log_term"):
        value = getattr(m, name)
        if value > MAX_TERM:
            raise InvalidMessage(f"{m.type.name} {name} {value} exceeds the largest term {MAX_TERM}")
    if m.type is MessageType.TRANSFER_LEADER:
        # Its index names the transfer's target node, not a log position.
        if not 1 <= m.index <= MAX_NODE_ID:
            raise InvalidMessage(f"TRANSFER_LEADER names node {m.index}, not a node id")
    elif m.index > MAX_INDEX:
        raise InvalidMessage(f"{m.type.name} index {m.index} exceeds the largest log index {MAX_INDEX}")
    for name in ("commit", "reject_hint"):
        value = getattr(m, name)
        if value > MAX_INDEX:
            raise InvalidMessage(f"{m.type.name} {name} {value} exceeds the largest log index {MAX_INDEX}")
    for e in m.entries:
        if e.term > MAX_TERM or e.index > MAX_INDEX:
            raise InvalidMessage(f"{m.type.name} carries entry {e.index}@{e.term} beyond the largest "
                                 f"index {MAX_INDEX} / term {MAX_TERM}")
    if m.snapshot is not None:
        meta = m.snapshot.meta
        if meta.term > MAX_TERM or meta.index > MAX_INDEX:
            raise InvalidMessage(f"{m.type.name} carries a snapshot at {meta.index}@{meta.term} beyond "
                                 f"the largest index {MAX_INDEX} / term {MAX_TERM}")
