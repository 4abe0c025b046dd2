"""The Raft state machine (etcd-io/raft ``raft.go``): one object holding a node's
state, with one step function per role swapped on every role change.

Everything enters as a call (``tick``, ``step``, ``propose`` ...) and everything leaves
as appended log entries, a changed hard state, outgoing messages, read states — which
:class:`consensus.rawnode.RawNode` packs into a Ready. There is no I/O here.

References are to the Raft paper (Ongaro & Ousterhout, "In Search of an
Understandable Consensus Algorithm", extended version: §5.x) and Ongaro's thesis
("Consensus: Bridging Theory and Practice": thesis §x.y).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from . import quorum
from .codec import DecodeError, decode_conf_change
from .confchange import ConfChangeError, apply_conf_change
from .config import Config
from .leadership import LeadershipPolicy
from .log import RaftLog
from .progress import Progress, ProgressState, ProgressStatus
from .read_only import ReadIndexStatus, ReadOnly
from .storage import CompactedError, Storage, StorageError
from .types import (
    MAX_INDEX,
    MAX_LINK_SCORE,
    MAX_TERM,
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SoftState,
    StateRole,
)

__all__ = ["Raft", "ProposalDropped", "RaftStatus", "CAMPAIGN_TRANSFER"]

#: Context of vote requests sent because of a leadership transfer (TimeoutNow): they
#: must not be ignored by followers that still hear the old leader (thesis §3.10, §4.2.3).
CAMPAIGN_TRANSFER = b"transfer"
#: :meth:`Raft.ticks_until_due` of a node whose ticks can never act without an input
#: (a learner, a removed voter: it never campaigns).
IDLE_FOREVER_TICKS = 1 << 30

#: Reads queued at a leader waiting for a quorum round; more are refused.
_MAX_PENDING_READS = 4096

_UNTERMED = (MessageType.PROPOSE, MessageType.READ_INDEX, MessageType.TRANSFER_LEADER)

#: The responses that carry the sender's link score to the leader.
_SCORED = (MessageType.APPEND_RESP, MessageType.HEARTBEAT_RESP)

_RESPONSE_TYPES = {
    MessageType.VOTE: MessageType.VOTE_RESP,
    MessageType.PRE_VOTE: MessageType.PRE_VOTE_RESP,
}


class ProposalDropped(Exception):
    """The proposal was not appended (no leader known, a leadership transfer is in
    progress, too much uncommitted data, a conflicting membership change ...). The
    client may retry later; with client sessions a retry is safe (exactly-once)."""


@dataclass(frozen=True)
class RaftStatus:
    id: int
    term: int
    vote: int
    commit: int
    applied: int
    last_index: int
    lead: int
    role: StateRole
    conf_state: ConfState
    lead_transferee: int
    #: Per-follower progress (leader only; None elsewhere).
    progress: dict[int, ProgressStatus] | None
    #: This node's link score (None if the driver set none) and, at a leader with
    #: signal-aware leadership on, the fresh scores its followers reported.
    link_score: int | None = None
    link_scores: dict[int, int] | None = None
    #: Score-driven transfers this node has started as leader, and the last one's target.
    score_transfers: int = 0
    score_transfer_target: int = NONE


class _SnapshotReceive:
    """A snapshot arriving in chunks (thesis §5.3): held in memory only, so a crash
    mid-transfer leaves the node exactly as it was before the transfer began."""

    __slots__ = ("key", "data")

    def __init__(self, key: tuple[int, int, int, int]) -> None:
        self.key = key
        self.data = bytearray()


def _check_stored_log(ents: Sequence[Entry], first: int, snap_term: int,
                      hs: HardState) -> None:
    """Refuse to start over a log that no correct history produces (a corrupt or
    mis-written store): gaps, decreasing terms, or terms beyond the stored term. Starting
    anyway could make this node vote or acknowledge on a log it does not really have."""
    prev_term = snap_term
    for k, e in enumerate(ents):
        if e.index != first + k:
            raise StorageError(f"stored log has entry {e.index} where {first + k} belongs")
        if e.term < prev_term:
            raise StorageError(f"stored log term decreases at {e.index} "
                               f"({prev_term} -> {e.term})")
        prev_term = e.term
    if ents and prev_term > hs.term:
        raise StorageError(f"stored log has term {prev_term} beyond the stored term {hs.term}")


class Raft:
    """One Raft node's protocol state. Use through :class:`RawNode`."""

    def __init__(self, config: Config, storage: Storage) -> None:
        self.id = config.id
        self.cfg = config
        self.rng = config.make_rng()
        self.log = RaftLog(storage)
        hs, cs = storage.initial_state()

        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.role = StateRole.FOLLOWER
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        #: Data of forwarded proposals the leader refused (PROPOSE_RESP), and contexts of
        #: forwarded reads it refused (READ_INDEX_RESP with reject), for Ready.
        self.refused_proposals: list[bytes] = []
        self.refused_reads: list[bytes] = []
        self.votes: dict[int, bool] = {}
        self.prs: dict[int, Progress] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.lead_transferee = NONE
        #: Ticks since the current leadership transfer began (thesis §3.10 timeout).
        self.transfer_elapsed = 0
        self.read_only = ReadOnly()
        self.pending_read_requests: list[tuple[int, bytes]] = []
        self.uncommitted_size = 0
        self.pending_bcast = False
        self.pending_read_round = False
        self._snap_recv: _SnapshotReceive | None = None
        #: This node's link quality, set by the driver (RawNode.set_link_score); sent with
        #: our responses so the leader can hand over to the best-connected voter.
        self.link_score: int | None = None
        self.leadership: LeadershipPolicy | None = None
        if config.leadership_by_link_score:
            self.leadership = LeadershipPolicy(
                margin=round(config.link_score_margin * MAX_LINK_SCORE),
                dwell=config.link_score_dwell_ticks,
                interval=config.leader_transfer_interval_ticks,
                max_delay=config.poor_link_election_delay_ticks,
                freshness=config.election_tick,
            )
        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        # Membership (thesis §4.1): a server uses the latest configuration in its log,
        # committed or not. _conf_base is the configuration of the snapshot; _conf_log
        # lists (index, configuration) for every CONF_CHANGE entry after it.
        self._conf_base = cs
        self._conf_log: list[tuple[int, ConfState]] = []
        self.conf = cs
        first, last = storage.first_index(), storage.last_index()
        stored = storage.entries(first, last + 1) if last >= first else []
        _check_stored_log(stored, first, storage.term(first - 1), hs)
        self._track_conf_entries(stored)
        self._rebuild_progress()

        if not hs.is_empty():
            if not self.log.committed <= hs.commit <= self.log.last_index():
                raise StorageError(f"stored commit {hs.commit} outside the stored log "
                                 f"[{self.log.committed}, {self.log.last_index()}]")
            self.log.commit_to(hs.commit)
            self.term = hs.term
            self.vote = hs.vote
        if config.applied:
            self.log.applied_to(max(config.applied, self.log.applied))
        self.become_follower(self.term, NONE)

    # ----------------------------------------------------------------------------------
    # reporting

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def status(self) -> RaftStatus:
        progress = None
        if self.role is StateRole.LEADER:
            progress = {i: pr.status() for i, pr in sorted(self.prs.items())}
        return RaftStatus(
            id=self.id, term=self.term, vote=self.vote, commit=self.log.committed,
            applied=self.log.applied, last_index=self.log.last_index(), lead=self.lead,
            role=self.role, conf_state=self.conf, lead_transferee=self.lead_transferee,
            progress=progress, link_score=self.link_score,
            link_scores=(self.leadership.scores() if self.leadership is not None
                         and self.role is StateRole.LEADER else None),
            score_transfers=self.score_transfers,
            score_transfer_target=(self.leadership.last_target if self.leadership is not None
                                   else NONE),
        )

    @property
    def score_transfers(self) -> int:
        """Leadership transfers the link-score policy started (status() reports it)."""
        return self.leadership.transfers if self.leadership is not None else 0

    def promotable(self) -> bool:
        """Whether this node may campaign: it is a voter in its latest configuration, or
        in the configuration as of its commit index. The second case matters when this
        node holds the only copy of an uncommitted entry removing (or demoting) itself:
        the others cannot win against its longer log, so it must be able to win, commit
        the change, and then step down (thesis §4.2.2). Votes are always counted in the
        latest configuration, so election safety is unchanged."""
        return self.id in self.conf.voters or (
            self.id in self.conf_state_at(self.log.committed).voters)

    # ----------------------------------------------------------------------------------
    # membership

    def conf_state_at(self, index: int) -> ConfState:
        """The configuration in force after the entry at ``index`` (``index`` at or after
        the snapshot index)."""
        if index < self.log.first_index() - 1:
            raise CompactedError(f"configuration at {index} is before the snapshot")
        cs = self._conf_base
        for i, c in self._conf_log:
            if i > index:
                break
            cs = c
        return cs

    def _track_conf_entries(self, ents: Sequence[Entry]) -> None:
        """Entries were written to the log at ents[0].index onwards: forget configuration
        entries they replaced and adopt the ones they carry (thesis §4.1: a server uses
        the latest configuration in its log, and reverts if that entry is removed)."""
        if not ents:
            return
        first = ents[0].index
        while self._conf_log and self._conf_log[-1][0] >= first:
            self._conf_log.pop()
        cs = self._conf_log[-1][1] if self._conf_log else self._conf_base
        for e in ents:
            if e.kind is not EntryKind.CONF_CHANGE:
                continue
            try:
                cs = apply_conf_change(cs, decode_conf_change(e.data))
            except (DecodeError, ConfChangeError):
                # Every replica reaches the same verdict on the same entry: it is a no-op.
                pass
            self._conf_log.append((e.index, cs))
        self._set_conf(cs)

    def _set_conf(self, cs: ConfState) -> None:
        if cs == self.conf:
            return
        self.conf = cs
        self._rebuild_progress()
        if self.lead_transferee != NONE and self.lead_transferee not in cs.voters:
            self.abort_leader_transfer()

    def _rebuild_progress(self) -> None:
        """Align the progress table with the configuration, keeping existing trackers."""
        # This node keeps its own tracker even when removed: a leader removed by the
        # entry it is replicating still counts its match until that entry commits
        # (thesis §4.2.2), though not toward the new configuration's quorum.
        members = set(self.conf.voters) | set(self.conf.learners) | {self.id}
        for i in list(self.prs):
            if i not in members:
                del self.prs[i]
        learners = set(self.conf.learners)
        for i in members:
            pr = self.prs.get(i)
            if pr is None:
                pr = self.prs[i] = self._fresh_progress(i, False)
            pr.is_learner = i in learners

    def _fresh_progress(self, node: int, is_learner: bool) -> Progress:
        """A tracker knowing nothing of ``node`` yet: probe from after our last entry."""
        last = self.log.last_index()
        pr = Progress(last + 1, self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes,
                      is_learner)
        # A new tracker gets a full election timeout before CheckQuorum counts the node
        # as silent.
        pr.recent_active = True
        if node == self.id:
            pr.match = last
        return pr

    def _pending_conf_index(self) -> int:
        return self._conf_log[-1][0] if self._conf_log else 0

    # ----------------------------------------------------------------------------------
    # role changes

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.votes = {}
        for i, pr in self.prs.items():
            self.prs[i] = self._fresh_progress(i, pr.is_learner)
        self.pending_bcast = False
        self.pending_read_round = False
        self.uncommitted_size = 0
        self.read_only.clear()
        self.pending_read_requests = []

    def _reset_randomized_election_timeout(self) -> None:
        # §5.2: randomized in [election_tick, 2*election_tick) so split votes are rare.
        self.randomized_election_timeout = (
            self.cfg.election_tick + self.rng.randrange(self.cfg.election_tick))

    def _election_timeout(self) -> int:
        """The randomized timeout plus, with signal-aware leadership, the delay for this
        node's score *now*: a poorly connected node waits longer, so the better-placed
        ones tend to campaign and win first (bounded: liveness only, §5.2 still
        randomizes). Evaluated on every tick, not drawn with the timeout: a follower
        keeps one timeout for a whole term (the timer restarts on heartbeats, the draw
        only on a term change), so a score that fell after the draw, or was unknown at
        it (every node's at start), must still count when the leader crashes."""
        if self.leadership is None:
            return self.randomized_election_timeout
        return self.randomized_election_timeout + self.leadership.election_delay(self.link_score)

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._tick = self._tick_election
        self._reset(term)
        self.lead = lead
        self.role = StateRole.FOLLOWER

    def become_candidate(self) -> None:
        if self.role is StateRole.LEADER:
            raise RuntimeError("invalid transition leader -> candidate")
        self._step = self._step_candidate
        self._tick = self._tick_election
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = StateRole.CANDIDATE

    def become_pre_candidate(self) -> None:
        if self.role is StateRole.LEADER:
            raise RuntimeError("invalid transition leader -> pre-candidate")
        # PreVote (thesis §9.6) changes neither term nor vote; it only polls.
        self._step = self._step_candidate
        self._tick = self._tick_election
        self.votes = {}
        self.lead = NONE
        self.role = StateRole.PRE_CANDIDATE

    def become_leader(self) -> None:
        if self.role is StateRole.FOLLOWER:
            raise RuntimeError("invalid transition follower -> leader")
        self._step = self._step_leader
        self._tick = self._tick_heartbeat
        self._reset(self.term)
        self.lead = self.id
        self.role = StateRole.LEADER
        self.prs[self.id].become_replicate()
        if self.leadership is not None:
            self.leadership.became_leader()
        # §5.4.2 / §8: a new leader commits an empty entry of its own term, which also
        # commits everything before it and lets ReadIndex and membership changes start.
        self._append_entries([Entry(0, 0)])
        self.pending_bcast = True

    # ----------------------------------------------------------------------------------
    # time

    def tick(self) -> None:
        self._tick()

    def ticks_until_due(self) -> int:
        """How many ticks from now until the first that may do more than count (at
        least 1). The ticks before it only advance elapsed counters: no message, no
        change of role, term or log. A driver with nothing else to do may therefore
        sleep through them and fire them together, just before its next input (a
        message, a proposal, a link score) or when that tick is due: the node then
        holds exactly the state it would have held ticking one by one. Conservative:
        the tick it names may still find nothing to do."""
        if self.role is StateRole.LEADER:
            cfg = self.cfg
            due = min(cfg.heartbeat_tick - self.heartbeat_elapsed,
                      cfg.election_tick - self.election_elapsed)  # heartbeat; CheckQuorum
            if self.lead_transferee != NONE:
                due = min(due, cfg.election_tick - self.transfer_elapsed)  # transfer abort
            if self.leadership is not None and self.leadership.may_transfer(self.link_score):
                due = 1  # a follower's streak is running: any tick may hand over
        elif self.promotable():
            due = self.randomized_election_timeout - self.election_elapsed
        else:
            return IDLE_FOREVER_TICKS  # a non-voter never campaigns: its ticks only count
        return max(1, due)

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self._election_timeout():
            self.election_elapsed = 0
            self.hup(transfer=False)

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_active():
                # thesis §6.2: a leader that has not heard from a quorum for an election
                # timeout steps down, so a partitioned leader stops claiming leadership.
                self.become_follower(self.term, NONE)
                return
        if self.lead_transferee != NONE:
            # thesis §3.10: abort a transfer that has not completed in an election
            # timeout, and accept proposals again. Its own timer: etcd resets the
            # CheckQuorum timer instead, so retargeted transfers could postpone the
            # step-down of a partitioned leader forever.
            self.transfer_elapsed += 1
            if self.transfer_elapsed >= self.cfg.election_tick:
                self.abort_leader_transfer()
        if self.role is not StateRole.LEADER:
            return
        if self.leadership is not None:
            self._tick_leadership(self.leadership)
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat(self.read_only.last_pending_ctx() or b"")

    def _tick_leadership(self, policy: LeadershipPolicy) -> None:
        """Signal-aware leadership (consensus/leadership.py): maybe hand over to a
        caught-up voter with a clearly better link. Only ever a transfer request, so
        safety is exactly that of thesis §3.10."""
        eligible: Iterable[int] = ()
        if self.lead_transferee == NONE and self.id in self.conf.voters:
            # Caught up: holds everything committed (the transfer itself then brings it to
            # the last index before TimeoutNow). Unevaluated: the policy looks at it only
            # while a follower's score beats ours, and nothing changes before it does.
            committed = self.log.committed
            eligible = (v for v in self.conf.voters if v != self.id
                        and (pr := self.prs.get(v)) is not None and pr.match >= committed)
        target = policy.tick(self.link_score, eligible)
        if target != NONE:
            self._leader_transfer(target)

    def _quorum_active(self) -> bool:
        active = {i: True for i, pr in self.prs.items()
                  if (pr.recent_active or i == self.id) and not pr.is_learner}
        for i, pr in self.prs.items():
            pr.recent_active = i == self.id
        return quorum.majority_vote_result(self.conf.voters, active) is quorum.VoteResult.WON

    # ----------------------------------------------------------------------------------
    # elections (§5.2, §5.4.1, thesis §9.6)

    def hup(self, transfer: bool) -> None:
        if self.role is StateRole.LEADER or not self.promotable():
            return
        if self.term >= MAX_TERM or self.log.last_index() >= MAX_INDEX:
            # Campaigning needs term + 1 (and a winner appends its no-op at last + 1),
            # which no storage can hold. Only a forged or corrupt message brings a node
            # here (RawNode.step rejects anything beyond the bounds); the node stays a
            # follower rather than fail on every tick.
            return
        if self.cfg.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self.become_pre_candidate()
            vote_type, term = MessageType.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_type, term = MessageType.VOTE, self.term
        if self._poll(self.id, True) is quorum.VoteResult.WON:
            # A single-voter cluster wins at once.
            if pre:
                self._campaign(pre=False, transfer=transfer)
            else:
                self.become_leader()
            return
        last = self.log.last_index()
        last_term = self.log.last_term()
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        for v in self.conf.voters:
            if v != self.id:
                self._send(vote_type, v, term=term, index=last,
                           log_term=last_term, context=ctx)

    def _poll(self, frm: int, granted: bool) -> quorum.VoteResult:
        self.votes.setdefault(frm, granted)
        return quorum.majority_vote_result(self.conf.voters, self.votes)

    # ----------------------------------------------------------------------------------
    # the message entry point (etcd raft.Step)

    def step(self, m: Message) -> None:
        if m.term == 0:
            pass  # forwarded PROPOSE / READ_INDEX / TRANSFER_LEADER: not bound to a term
        elif m.term > self.term:
            if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (self.cfg.check_quorum and self.lead != NONE
                            and self.election_elapsed < self.cfg.election_tick)
                if not force and in_lease:
                    # thesis §4.2.3 / §6.2: while we hear from a leader, ignore vote
                    # requests, so a removed or partitioned server cannot disrupt it.
                    return
            if m.type is MessageType.PRE_VOTE:
                pass  # a pre-vote never changes our term (thesis §9.6)
            elif m.type is MessageType.PRE_VOTE_RESP and not m.reject:
                pass  # granted pre-votes are for term+1; the pre-candidate counts them
            elif m.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, NONE)  # §5.1: adopt the newer term
        elif m.term < self.term:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (
                    MessageType.HEARTBEAT, MessageType.APPEND):
                # A stale leader (e.g. rejoining after a partition) learns our term from
                # this reply and steps down; with PreVote/CheckQuorum our term may not
                # have reached it through vote requests.
                self._send(MessageType.APPEND_RESP, m.frm)
            elif m.type is MessageType.PRE_VOTE:
                self._send(MessageType.PRE_VOTE_RESP, m.frm,
                           term=self.term, reject=True)
            return  # §5.1: stale-term messages are otherwise ignored

        if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            self._handle_vote_request(m)
            return
        self._step(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm  # a repeated request (our reply may have been lost)
            or (self.vote == NONE and self.lead == NONE)  # §5.2: one vote per term
            or (m.type is MessageType.PRE_VOTE and m.term > self.term)
        )
        resp = _RESPONSE_TYPES[m.type]
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # Reply in the request's term: a pre-vote grant is for a term we are not in.
            self._send(resp, m.frm, term=m.term)
            if m.type is MessageType.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(resp, m.frm, term=self.term, reject=True)

    # ----------------------------------------------------------------------------------
    # local requests (from RawNode)

    def propose(self, ents: Sequence[Entry]) -> None:
        """Append client entries (leader) or forward them to the leader (follower)."""
        if self.role is StateRole.LEADER:
            self._leader_propose(ents)
        elif self.role is StateRole.FOLLOWER and self.lead != NONE:
            self._send(MessageType.PROPOSE, self.lead,
                       entries=tuple(Entry(0, 0, e.kind, e.data) for e in ents))
        else:
            raise ProposalDropped(f"node {self.id} knows no leader in term {self.term}")

    def propose_conf_change(self, cc: ConfChange, encoded: bytes) -> None:
        if self.role is not StateRole.LEADER:
            raise ProposalDropped(f"membership changes are proposed at the leader "
                                  f"(node {self.id} is {self.role.value}, leader {self.lead})")
        if not self._committed_in_term():
            # The fix to single-server changes (Ongaro, raft-dev 2015): a leader must
            # commit an entry of its own term before changing the configuration.
            raise ProposalDropped("the leader has not yet committed an entry in its term")
        if self._pending_conf_index() > self.log.committed:
            raise ProposalDropped("another membership change is not yet committed "
                                  "(thesis §4.1: one at a time)")
        try:
            apply_conf_change(self.conf, cc)  # validate only: every node derives it from the entry
        except ConfChangeError as exc:
            raise ProposalDropped(str(exc)) from None
        if cc.type is ConfChangeType.ADD_VOTER and cc.node_id not in self.conf.voters:
            pr = self.prs.get(cc.node_id)
            if pr is None:
                raise ProposalDropped(f"node {cc.node_id} must join as a learner and catch "
                                      "up before it votes (thesis §4.2.1)")
            if pr.match < self.log.committed:
                raise ProposalDropped(f"learner {cc.node_id} has not caught up (match "
                                      f"{pr.match} < commit {self.log.committed})")
        self._leader_propose([Entry(0, 0, EntryKind.CONF_CHANGE, encoded)])

    def read_index(self, ctx: bytes) -> None:
        if self.role is StateRole.LEADER:
            self._leader_read_index(self.id, ctx)
        elif self.role is StateRole.FOLLOWER and self.lead != NONE:
            self._send(MessageType.READ_INDEX, self.lead, context=ctx)
        else:
            raise ProposalDropped(f"node {self.id} knows no leader to serve a read")

    def transfer_leader(self, target: int) -> None:
        if self.role is StateRole.LEADER:
            self._leader_transfer(target)
        elif self.role is StateRole.FOLLOWER and self.lead != NONE:
            self._send(MessageType.TRANSFER_LEADER, self.lead,
                       index=target)
        else:
            raise ProposalDropped(f"node {self.id} knows no leader to transfer from")

    # ----------------------------------------------------------------------------------
    # leader

    def _leader_propose(self, ents: Sequence[Entry]) -> None:
        if self.id not in self.conf.voters:
            raise ProposalDropped("this leader is being removed from the configuration")
        if self.lead_transferee != NONE:
            raise ProposalDropped(f"leadership transfer to {self.lead_transferee} in "
                                  "progress (thesis §3.10)")
        self._append_entries(ents)
        self.pending_bcast = True

    def _append_entries(self, ents: Sequence[Entry]) -> None:
        size = sum(len(e.data) for e in ents)
        limit = self.cfg.max_uncommitted_bytes
        if limit and self.uncommitted_size > 0 and self.uncommitted_size + size > limit:
            raise ProposalDropped(f"uncommitted log tail would exceed {limit} bytes")
        li = self.log.last_index()
        if li + len(ents) > MAX_INDEX:
            raise ProposalDropped(f"the log is full: index {li + len(ents)} would exceed {MAX_INDEX}")
        self.uncommitted_size += size
        stamped = [Entry(self.term, li + 1 + i, e.kind, e.data) for i, e in enumerate(ents)]
        self.log.append(stamped)
        self._track_conf_entries(stamped)
        self.prs[self.id].maybe_update(self.log.last_index())
        # The leader's own copy counts at once (thesis §10.2.1: the leader may write its
        # log in parallel with replication); the Ready contract persists it before any
        # reply or application happens.
        self._maybe_commit()

    def reduce_uncommitted_size(self, ents: Sequence[Entry]) -> None:
        if self.role is StateRole.LEADER:
            self.uncommitted_size = max(0, self.uncommitted_size - sum(len(e.data) for e in ents))

    def _maybe_commit(self) -> bool:
        prs = self.prs
        mci = quorum.majority_committed_index(
            self.conf.voters, lambda i: prs[i].match if i in prs else 0)
        # §5.4.2 (Figure 8): only an entry of the current term commits by counting.
        if not self.log.maybe_commit(mci, self.term):
            return False
        self.pending_bcast = True
        if self.pending_read_requests and self._committed_in_term():
            pending, self.pending_read_requests = self.pending_read_requests, []
            for frm, ctx in pending:
                self._leader_read_index(frm, ctx)
        self._maybe_step_down_after_removal()
        return True

    def _committed_in_term(self) -> bool:
        return self.log.zero_term_on_error(self.log.committed) == self.term

    def _maybe_step_down_after_removal(self) -> None:
        if self.role is not StateRole.LEADER or self.id in self.conf.voters:
            return
        if self._pending_conf_index() > self.log.committed:
            return  # thesis §4.2.2: keep leading until the change removing us commits
        # Hand over at once to an up-to-date voter rather than wait for a timeout.
        last = self.log.last_index()
        for v in self.conf.voters:
            pr = self.prs.get(v)
            if pr is not None and pr.match == last:
                self._send(MessageType.TIMEOUT_NOW, v)
                break
        self.flush_bcast()
        self.become_follower(self.term, NONE)

    def flush_bcast(self) -> None:
        """Send what proposals, commit advances and read requests since the last Ready
        call for; doing it once per Ready batches many proposals into one AppendEntries
        per follower, and many reads into one heartbeat round."""
        if self.pending_read_round and self.role is StateRole.LEADER:
            ctx = self.read_only.last_pending_ctx()
            if ctx is not None:
                self._bcast_heartbeat(ctx)
        self.pending_read_round = False
        if self.pending_bcast and self.role is StateRole.LEADER:
            committed = self.log.committed
            for i, pr in self.prs.items():
                if i != self.id:
                    self._send_append(i, send_if_empty=pr.sent_commit < committed)
        self.pending_bcast = False

    def _send_append(self, to: int, send_if_empty: bool = True) -> bool:
        pr = self.prs[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        try:
            prev_term = self.log.term(prev)
        except CompactedError:
            return self._send_snapshot(to, pr)
        ents: list[Entry] = []
        if pr.next <= self.log.last_index():
            try:
                ents = self.log.entries(pr.next, self.cfg.max_size_per_msg)
            except CompactedError:
                return self._send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        self._send(MessageType.APPEND, to, index=prev,
                   log_term=prev_term, entries=tuple(ents), commit=self.log.committed)
        pr.sent_entries(len(ents), sum(e.size() for e in ents))
        pr.sent_commit = max(pr.sent_commit, self.log.committed)
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # etcd: don't stream a snapshot to a follower we cannot hear
        snap = self.log.snapshot()
        if snap.is_empty():
            raise RuntimeError("log compacted but storage has no snapshot")
        pr.become_snapshot(snap)
        self._send_snapshot_chunk(to, pr)
        return True

    def _send_snapshot_chunk(self, to: int, pr: Progress) -> None:
        snap = pr.pending_snapshot
        assert snap is not None
        off = pr.snapshot_offset
        chunk = snap.data[off: off + self.cfg.snapshot_chunk_bytes]
        done = off + len(chunk) >= len(snap.data)
        self._send(MessageType.SNAPSHOT, to,
                   snapshot=Snapshot(snap.meta, chunk), snapshot_offset=off,
                   snapshot_done=done)

    def _bcast_heartbeat(self, ctx: bytes) -> None:
        for i, pr in self.prs.items():
            if i == self.id:
                continue
            # The commit sent is capped at what the follower holds (it may not have the
            # entries beyond match yet); AppendEntries carry the rest.
            commit = min(pr.match, self.log.committed)
            self._send(MessageType.HEARTBEAT, i, commit=commit, context=ctx)
            pr.sent_commit = max(pr.sent_commit, commit)

    def _leader_read_index(self, frm: int, ctx: bytes) -> None:
        if len(self.read_only.queue) + len(self.pending_read_requests) >= _MAX_PENDING_READS:
            # A leader that cannot reach a quorum (CheckQuorum off) would otherwise
            # queue reads without bound; the clients time out and retry elsewhere.
            if frm == self.id:
                raise ProposalDropped("too many reads waiting for a quorum")
            # Refused, not dropped: the follower answers its client now (busy).
            self._send(MessageType.READ_INDEX_RESP, frm, context=ctx, reject=True)
            return
        if self.conf.voters == (self.id,):
            self._release_read(ReadIndexStatus(frm, ctx, self.log.committed))
            return
        if not self._committed_in_term():
            # thesis §6.4 step 1: until the leader commits an entry of its term it does
            # not know the commit index; it defers the read.
            self.pending_read_requests.append((frm, ctx))
            return
        self.read_only.add_request(self.log.committed, frm, ctx)
        self.read_only.recv_ack(self.id, ctx)
        # One heartbeat round per Ready, carrying the newest request: its quorum
        # confirms every request queued before it too (ReadOnly.advance).
        self.pending_read_round = True

    def _release_read(self, rs: ReadIndexStatus) -> None:
        if rs.frm == self.id:
            self.read_states.append(ReadState(rs.index, rs.ctx))
        else:
            self._send(MessageType.READ_INDEX_RESP, rs.frm,
                       index=rs.index, context=rs.ctx)

    def _leader_transfer(self, target: int) -> None:
        pr = self.prs.get(target)
        if pr is None or pr.is_learner:
            raise ProposalDropped(f"cannot transfer leadership to {target}: not a voter")
        if self.lead_transferee != NONE:
            if self.lead_transferee == target:
                return
            self.abort_leader_transfer()
        if target == self.id:
            # etcd: a transfer to the leader itself cancels one in progress (the
            # application's way to take proposals again at once).
            return
        # thesis §3.10: stop accepting proposals, bring the target up to date, then
        # tell it to campaign at once; give up after an election timeout.
        self.transfer_elapsed = 0
        self.lead_transferee = target
        if pr.match == self.log.last_index():
            self._send(MessageType.TIMEOUT_NOW, target)
        else:
            self._send_append(target)

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE
        self.transfer_elapsed = 0

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t is MessageType.PROPOSE:
            if any(e.kind is not EntryKind.NORMAL for e in m.entries):
                return  # membership changes are never forwarded
            try:
                self._leader_propose(m.entries)
            except ProposalDropped:
                # Nothing of it was appended (_append_entries is all or nothing): say
                # so, and the follower answers its clients now instead of at their
                # timeout.
                self._send(MessageType.PROPOSE_RESP, m.frm, entries=m.entries)
            return
        if t is MessageType.READ_INDEX:
            self._leader_read_index(m.frm, m.context)
            return
        if t is MessageType.TRANSFER_LEADER:
            try:
                self._leader_transfer(m.index)
            except ProposalDropped:
                pass
            return

        pr = self.prs.get(m.frm)
        if pr is None:
            return  # not a member (any more)
        if self.leadership is not None and m.link_score is not None and t in _SCORED:
            self.leadership.observe(m.frm, m.link_score)
        if t is MessageType.APPEND_RESP:
            pr.recent_active = True
            self._handle_append_resp(m, pr)
        elif t is MessageType.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()
            if pr.state is ProgressState.SNAPSHOT:
                self._maybe_resend_snapshot_chunk(m.frm, pr)
            elif pr.match < self.log.last_index():
                self._send_append(m.frm)
            if m.context:
                acks = self.read_only.recv_ack(m.frm, m.context)
                if acks is not None and quorum.majority_vote_result(
                        self.conf.voters, {a: True for a in acks}) is quorum.VoteResult.WON:
                    for rs in self.read_only.advance(m.context):
                        self._release_read(rs)
        elif t is MessageType.SNAPSHOT_RESP:
            pr.recent_active = True
            self._handle_snapshot_resp(m, pr)

    def _handle_append_resp(self, m: Message, pr: Progress) -> None:
        if m.reject:
            # §5.3 with etcd's fast backtracking: jump past the whole conflicting term.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.frm)
            return
        if m.index > self.log.last_index():
            return  # acknowledges entries we never sent: no correct peer does this
        old_paused = pr.is_paused()
        if not (pr.maybe_update(m.index)
                or (pr.match == m.index and pr.state is ProgressState.PROBE)):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT:
            snap = pr.pending_snapshot
            if (snap is not None and pr.match >= snap.meta.index) or \
                    pr.match + 1 >= self.log.first_index():
                pr.become_probe()
                pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            pass  # flush_bcast at Ready time tells everyone the new commit index
        elif old_paused:
            # It was paused, so it may have missed entries and commit advances.
            self._send_append(m.frm, send_if_empty=pr.sent_commit < self.log.committed)
        # Fill the window now that acknowledgements freed space.
        while pr.state is ProgressState.REPLICATE and self._send_append(m.frm, send_if_empty=False):
            pass
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self._send(MessageType.TIMEOUT_NOW, m.frm)

    def _handle_snapshot_resp(self, m: Message, pr: Progress) -> None:
        snap = pr.pending_snapshot
        if pr.state is not ProgressState.SNAPSHOT or snap is None or snap.meta.index != m.index:
            return
        if m.snapshot_offset > pr.snapshot_offset:
            pr.snapshot_offset = min(m.snapshot_offset, len(snap.data))
        elif m.reject and m.snapshot_offset < pr.snapshot_offset:
            pr.snapshot_offset = m.snapshot_offset  # the follower lost its partial copy
        else:
            return  # a duplicate acknowledgement: sending again would multiply chunks
        if pr.snapshot_offset < len(snap.data):
            self._send_snapshot_chunk(m.frm, pr)
        pr.snapshot_stalled = 0

    def _maybe_resend_snapshot_chunk(self, to: int, pr: Progress) -> None:
        # A lost chunk or acknowledgement stalls the transfer (one chunk is in flight at
        # a time). The follower still answers heartbeats; after about an election
        # timeout of them without progress, send the current chunk again. Waiting that
        # long keeps a slow link, whose chunks take several heartbeats, from being
        # flooded with copies.
        pr.snapshot_stalled += 1
        if pr.snapshot_stalled >= max(2, self.cfg.election_tick // self.cfg.heartbeat_tick):
            pr.snapshot_stalled = 0
            self._send_snapshot_chunk(to, pr)

    # ----------------------------------------------------------------------------------
    # candidate and follower

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t is MessageType.APPEND:
            self.become_follower(m.term, m.frm)  # §5.2: a leader of our term exists
            self._handle_append(m)
        elif t is MessageType.HEARTBEAT:
            self.become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif t is MessageType.SNAPSHOT:
            self.become_follower(m.term, m.frm)
            self._handle_snapshot(m)
        elif (t is MessageType.PRE_VOTE_RESP and self.role is StateRole.PRE_CANDIDATE) or (
                t is MessageType.VOTE_RESP and self.role is StateRole.CANDIDATE):
            res = self._poll(m.frm, not m.reject)
            if res is quorum.VoteResult.WON:
                if self.role is StateRole.PRE_CANDIDATE:
                    self._campaign(pre=False, transfer=False)
                else:
                    self.become_leader()
            elif res is quorum.VoteResult.LOST:
                self.become_follower(self.term, NONE)
        # PROPOSE / READ_INDEX / TIMEOUT_NOW: no leader to serve them; dropped.

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t is MessageType.APPEND:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif t is MessageType.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_heartbeat(m)
        elif t is MessageType.SNAPSHOT:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif t is MessageType.TIMEOUT_NOW:
            # thesis §3.10: campaign now, bypassing PreVote and the leader lease.
            self.hup(transfer=True)
        elif t is MessageType.READ_INDEX_RESP:
            if m.reject:
                self.refused_reads.append(m.context)
            else:
                self.read_states.append(ReadState(m.index, m.context))
        elif t is MessageType.PROPOSE_RESP:
            self.refused_proposals.extend(e.data for e in m.entries)
        # Forwarded PROPOSE / READ_INDEX / TRANSFER_LEADER reaching a follower are
        # dropped rather than forwarded again (no forwarding loops); clients retry.

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(MessageType.APPEND_RESP, m.frm,
                       index=self.log.committed)
            return
        res = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if res is not None:
            last_new, appended = res
            self._track_conf_entries(appended)
            self._send(MessageType.APPEND_RESP, m.frm, index=last_new)
            return
        # Consistency check failed (§5.3): hint the leader where our logs may match.
        hint = min(m.index, self.log.last_index())
        hint, hint_term = self.log.find_conflict_by_term(hint, m.log_term)
        self._send(MessageType.APPEND_RESP, m.frm, index=m.index,
                   reject=True, reject_hint=hint, log_term=hint_term)

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self._send(MessageType.HEARTBEAT_RESP, m.frm, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        assert snap is not None
        meta = snap.meta
        if meta.index <= self.log.committed:
            # Already covered (e.g. the install finished but its reply was lost): say
            # where we are instead of receiving the rest.
            self._snap_recv = None
            self._send(MessageType.APPEND_RESP, m.frm,
                       index=self.log.committed)
            return
        key = (m.term, m.frm, meta.index, meta.term)
        recv = self._snap_recv
        if m.snapshot_offset == 0:
            recv = self._snap_recv = _SnapshotReceive(key)
        elif recv is None or recv.key != key or m.snapshot_offset != len(recv.data):
            held = len(recv.data) if recv is not None and recv.key == key else 0
            self._send(MessageType.SNAPSHOT_RESP, m.frm,
                       index=meta.index, snapshot_offset=held,
                       reject=m.snapshot_offset > held)
            return
        recv.data += snap.data
        if not m.snapshot_done:
            self._send(MessageType.SNAPSHOT_RESP, m.frm,
                       index=meta.index, snapshot_offset=len(recv.data))
            return
        # The last chunk: only now does anything change (a crash before this point
        # leaves the node as it was, thesis §5.3).
        self._snap_recv = None
        if self._restore(Snapshot(meta, bytes(recv.data))):
            self._send(MessageType.APPEND_RESP, m.frm,
                       index=self.log.last_index())
        else:
            self._send(MessageType.APPEND_RESP, m.frm,
                       index=self.log.committed)

    def _restore(self, snap: Snapshot) -> bool:
        """InstallSnapshot receiver (§7): adopt the snapshot unless our log already
        covers it."""
        meta = snap.meta
        if meta.index <= self.log.committed:
            return False
        if self.log.match_term(meta.index, meta.term):
            # We hold the entry the snapshot ends with: keep our log, just commit (§7:
            # "retain log entries following it").
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snap)
        self._conf_base = meta.conf_state
        self._conf_log = []
        self._set_conf(meta.conf_state)
        return True

    # ----------------------------------------------------------------------------------

    def _send(self, type: MessageType, to: int, **fields: object) -> None:
        """Queue a message from this node. It carries our current term unless given one;
        forwarded requests carry none (they are not bound to a term)."""
        if "term" not in fields and type not in _UNTERMED:
            fields["term"] = self.term
        if type in _SCORED and self.link_score is not None:
            fields["link_score"] = self.link_score
        self.msgs.append(Message(type, to, self.id, **fields))  # type: ignore[arg-type]
