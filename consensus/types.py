"""The Raft core's value types: log entries, persistent state, configurations,
snapshots and the one wire message type.

Every type here is an immutable (frozen) dataclass that validates its fields on
construction, in the manner of h11's events: an instance that exists is well formed.
Node ids are small positive integers; ``0`` means "no node" (no vote, no leader).

The shapes follow etcd-io/raft's ``raftpb`` (Entry, HardState, ConfState,
SnapshotMetadata, Message) so the behaviour of the core can be compared with etcd's
line by line.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "NONE",
    "MAX_NODE_ID",
    "MAX_U64",
    "MAX_TERM",
    "MAX_INDEX",
    "MAX_LINK_SCORE",
    "EntryKind",
    "Entry",
    "HardState",
    "ConfState",
    "ConfChangeType",
    "ConfChange",
    "SnapshotMeta",
    "Snapshot",
    "MessageType",
    "Message",
    "ReadState",
    "StateRole",
    "SoftState",
]

#: "No node": the vote of a node that has not voted, the leader when none is known.
NONE = 0
#: Node ids are small positive integers, at most this.
MAX_NODE_ID = 2**31 - 1
#: Terms, indexes and byte offsets are unsigned 64-bit on the wire (as in etcd).
MAX_U64 = 2**64 - 1
#: The largest term and the largest log index a node holds. A node must be able to
#: persist every term it adopts and every entry it accepts, and SQLite (the real
#: storage) stores signed 64-bit integers, so both are bounded at 2**63 - 1; both
#: storages refuse more, ``RawNode.step`` rejects any message naming more as
#: ``InvalidMessage``, and the core never advances past them (a node at MAX_TERM does not
#: campaign, a leader whose log ends at MAX_INDEX takes no proposals). At one election
#: per millisecond the term space lasts 292 million years: only a forged or corrupt
#: message gets near it.
MAX_TERM = 2**63 - 1
MAX_INDEX = 2**63 - 1
#: Link-quality scores travel as integers in [0, MAX_LINK_SCORE] (thousandths of the
#: driver's [0, 1] score): exact on every node, so the leadership policy decides the same
#: way on every replay.
MAX_LINK_SCORE = 1000


def _check_u64(name: str, value: object) -> None:
    # bool is an int subclass; a True term is a bug, not a term.
    if type(value) is not int or not 0 <= value <= MAX_U64:
        raise ValueError(f"{name} must be an integer in [0, 2**64), got {value!r}")


def _check_node(name: str, value: object, *, allow_none: bool) -> None:
    if type(value) is not int:
        raise ValueError(f"{name} must be an integer node id, got {value!r}")
    lo = 0 if allow_none else 1
    if not lo <= value <= MAX_NODE_ID:
        raise ValueError(f"{name} must be a node id in [{lo}, {MAX_NODE_ID}], got {value!r}")


def _check_bytes(name: str, value: object) -> None:
    if type(value) is not bytes:
        raise ValueError(f"{name} must be bytes, got {type(value).__name__}")


class EntryKind(enum.IntEnum):
    """What a log entry carries."""

    #: Application data (an empty NORMAL entry is the leader's no-op, §5.4.2 / §8).
    NORMAL = 0
    #: A membership change: ``data`` is an encoded :class:`ConfChange` (thesis §4.1).
    CONF_CHANGE = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry (Raft §5.3): the term it was created in, its position, its payload."""

    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""

    def __post_init__(self) -> None:
        _check_u64("Entry.term", self.term)
        _check_u64("Entry.index", self.index)
        if not isinstance(self.kind, EntryKind):
            raise ValueError(f"Entry.kind must be an EntryKind, got {self.kind!r}")
        _check_bytes("Entry.data", self.data)

    def size(self) -> int:
        """Bytes this entry counts for in message-size and in-flight budgets."""
        return len(self.data) + 16


@dataclass(frozen=True, slots=True)
class HardState:
    """The state Raft requires on stable storage before answering RPCs (Figure 2):
    ``currentTerm``, ``votedFor``, plus the commit index (etcd keeps it so a restarted
    node can re-apply without waiting for a leader)."""

    term: int = 0
    vote: int = NONE
    commit: int = 0

    def __post_init__(self) -> None:
        _check_u64("HardState.term", self.term)
        _check_node("HardState.vote", self.vote, allow_none=True)
        _check_u64("HardState.commit", self.commit)

    def is_empty(self) -> bool:
        return self.term == 0 and self.vote == NONE and self.commit == 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """A cluster configuration: who votes and who only replicates (learners, thesis
    §4.2.1). Voters and learners are disjoint sorted tuples of node ids.

    This project changes membership one server at a time (thesis §4.1), so there is no
    joint (outgoing) configuration; see docs/consensus.md for why.
    """

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("voters", "learners"):
            ids = getattr(self, name)
            if type(ids) is not tuple:
                raise ValueError(f"ConfState.{name} must be a tuple, got {type(ids).__name__}")
            for node in ids:
                _check_node(f"ConfState.{name}[]", node, allow_none=False)
            if list(ids) != sorted(set(ids)):
                raise ValueError(f"ConfState.{name} must be sorted and unique, got {ids!r}")
        both = set(self.voters) & set(self.learners)
        if both:
            raise ValueError(f"ConfState: nodes {sorted(both)} are both voter and learner")

    @classmethod
    def of(cls, voters: "tuple[int, ...] | list[int] | set[int]" = (),
           learners: "tuple[int, ...] | list[int] | set[int]" = ()) -> "ConfState":
        """Build from any iterables of ids (sorted and de-duplicated here)."""
        return cls(tuple(sorted(set(voters))), tuple(sorted(set(learners))))

    def members(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.voters) | set(self.learners)))

    def is_empty(self) -> bool:
        return not self.voters and not self.learners


class ConfChangeType(enum.IntEnum):
    """A single-server membership change (thesis §4.1, §4.2.1)."""

    #: Make the node a voter (add it, or promote the learner it is).
    ADD_VOTER = 0
    #: Make the node a learner (add it, or demote the voter it is).
    ADD_LEARNER = 1
    #: Remove the node, voter or learner.
    REMOVE_NODE = 2


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership change, the payload of a CONF_CHANGE entry.

    ``context`` is opaque to the core (e.g. the new node's address for the bus).
    """

    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.type, ConfChangeType):
            raise ValueError(f"ConfChange.type must be a ConfChangeType, got {self.type!r}")
        _check_node("ConfChange.node_id", self.node_id, allow_none=False)
        _check_bytes("ConfChange.context", self.context)


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """What a snapshot covers (Raft §7): the last included index and term, and the
    configuration as of that index."""

    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)

    def __post_init__(self) -> None:
        _check_u64("SnapshotMeta.index", self.index)
        _check_u64("SnapshotMeta.term", self.term)
        if not isinstance(self.conf_state, ConfState):
            raise ValueError("SnapshotMeta.conf_state must be a ConfState")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine snapshot (``data`` from the application) with its metadata."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.meta, SnapshotMeta):
            raise ValueError("Snapshot.meta must be a SnapshotMeta")
        _check_bytes("Snapshot.data", self.data)

    def is_empty(self) -> bool:
        return self.meta.index == 0


class MessageType(enum.IntEnum):
    """Every message Raft nodes exchange. Values are wire-stable; never renumber."""

    #: AppendEntries (§5.3): ``index``/``log_term`` name the entry preceding ``entries``.
    APPEND = 1
    #: AppendEntries reply: accepted up to ``index``, or ``reject`` with a hint
    #: (``reject_hint``, ``log_term``) for fast backtracking (§5.3, etcd findConflictByTerm).
    APPEND_RESP = 2
    #: RequestVote (§5.2); ``index``/``log_term`` are the candidate's last entry (§5.4.1).
    VOTE = 3
    VOTE_RESP = 4
    #: PreVote (thesis §9.6): a vote poll for ``term`` that changes no one's term.
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    #: Leader heartbeat; ``commit`` is capped at the follower's match; ``context`` carries
    #: a ReadIndex round id (thesis §6.4).
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    #: One chunk of InstallSnapshot (thesis §5): ``snapshot`` holds the metadata and this
    #: chunk's bytes at ``snapshot_offset``; ``snapshot_done`` marks the last chunk.
    SNAPSHOT = 9
    #: Acknowledges snapshot chunks: the follower holds ``snapshot_offset`` bytes of the
    #: snapshot at ``index``; ``reject`` if it dropped its partial copy.
    SNAPSHOT_RESP = 10
    #: Leadership transfer (thesis §3.10): "campaign now, skipping PreVote and leases".
    TIMEOUT_NOW = 11
    #: A follower forwards a linearizable read request (``context``) to the leader (§6.4).
    READ_INDEX = 12
    #: The leader answers a forwarded read: serve ``context`` once applied >= ``index``;
    #: ``reject``: refused (too many reads wait for a quorum there), ask again later.
    READ_INDEX_RESP = 13
    #: A follower forwards client proposals (``entries``) to the leader.
    PROPOSE = 14
    #: A follower asks the leader to hand leadership to ``frm``'s choice in ``index``.
    TRANSFER_LEADER = 15
    #: The leader refuses forwarded proposals it cannot take now (its uncommitted log
    #: tail is full, a leadership transfer is under way): ``entries`` echo the
    #: PROPOSE's entries, none of which it appended, so the follower can tell its
    #: clients at once (etcd drops them silently: the clients wait for their timeout).
    PROPOSE_RESP = 16


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message, etcd's ``raftpb.Message`` shape: which fields mean something
    depends on ``type`` (see :class:`MessageType`). ``term`` is 0 only for forwarded
    PROPOSE / READ_INDEX / TRANSFER_LEADER, which are not bound to a term."""

    type: MessageType
    to: int
    frm: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    snapshot_offset: int = 0
    snapshot_done: bool = False
    context: bytes = b""
    #: The sender's link-quality score in [0, MAX_LINK_SCORE], or None if its driver has
    #: set none. Carried by APPEND_RESP and HEARTBEAT_RESP so the leader knows every
    #: follower's score (consensus/leadership.py); wire format version 2.
    link_score: int | None = None

    def __post_init__(self) -> None:
        # The shape of almost every message (heartbeats, their acknowledgements, votes,
        # append acknowledgements: no entries, no snapshot), checked all at once: a
        # message is built for every one sent and every one received, and an idle
        # 5-node leader does that ~200 times a second. Anything else, valid or not,
        # goes through the checks below, which name what is wrong.
        if (type(self.type) is MessageType and self.type is not MessageType.SNAPSHOT
                and type(self.to) is type(self.frm) is int
                and 1 <= self.to <= MAX_NODE_ID and 1 <= self.frm <= MAX_NODE_ID
                and type(self.term) is type(self.log_term) is type(self.index) is int
                and type(self.commit) is type(self.reject_hint) is int
                and type(self.snapshot_offset) is int
                and 0 <= min(self.term, self.log_term, self.index, self.commit,
                             self.reject_hint, self.snapshot_offset)
                and max(self.term, self.log_term, self.index, self.commit,
                        self.reject_hint, self.snapshot_offset) <= MAX_U64
                and type(self.entries) is tuple and not self.entries
                and type(self.reject) is type(self.snapshot_done) is bool
                and self.snapshot is None and type(self.context) is bytes
                and (self.link_score is None or (type(self.link_score) is int
                                                 and 0 <= self.link_score <= MAX_LINK_SCORE))):
            return
        if not isinstance(self.type, MessageType):
            raise ValueError(f"Message.type must be a MessageType, got {self.type!r}")
        _check_node("Message.to", self.to, allow_none=False)
        _check_node("Message.frm", self.frm, allow_none=False)
        for name in ("term", "log_term", "index", "commit", "reject_hint", "snapshot_offset"):
            _check_u64(f"Message.{name}", getattr(self, name))
        if type(self.entries) is not tuple:
            raise ValueError("Message.entries must be a tuple")
        for entry in self.entries:
            if not isinstance(entry, Entry):
                raise ValueError("Message.entries must hold Entry values")
        if type(self.reject) is not bool or type(self.snapshot_done) is not bool:
            raise ValueError("Message.reject and Message.snapshot_done must be booleans")
        if self.snapshot is not None and not isinstance(self.snapshot, Snapshot):
            raise ValueError("Message.snapshot must be a Snapshot or None")
        if self.type is MessageType.SNAPSHOT and self.snapshot is None:
            raise ValueError("a SNAPSHOT message must carry a snapshot")
        _check_bytes("Message.context", self.context)
        if self.link_score is not None and (
                type(self.link_score) is not int or not 0 <= self.link_score <= MAX_LINK_SCORE):
            raise ValueError(f"Message.link_score must be None or an integer in [0, {MAX_LINK_SCORE}], "
                             f"got {self.link_score!r}")


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read that may be served (thesis §6.4): once the state machine
    has applied ``index``, answer the read identified by ``request_ctx``."""

    index: int
    request_ctx: bytes


class StateRole(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    PRE_CANDIDATE = "pre-candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth reporting (not persisted): who leads, what this node is."""

    lead: int = NONE
    role: StateRole = StateRole.FOLLOWER
