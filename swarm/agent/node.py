"""The agent process: one drone's Raft node on the MQTT bus.

Threads (docs/agent.md, "Why the loop is shaped as it is"):

* the **node thread** (the caller of :meth:`Agent.run`, the process's main thread)
  owns the :class:`consensus.driver.Driver` and everything it touches: storage, the
  state machine (the map, or the register: swarm/agent/machine.py), the client
  service, the envelope sealer and opener. It waits on the inbox
  (swarm/agent/inbox.py) with a timeout equal to the time left before the next tick
  (a monotonic timer); each turn it steps every queued Raft message, then admits client
  requests within a budget (REQUEST_TURN_S: everything taken lands in the same Ready,
  one transaction, one AppendEntries per follower), ticks, and lets the driver handle
  the Ready. A flood of requests therefore delays heartbeats and votes by at most one
  budget, and what does not fit is answered ``busy`` (docs/agent.md, "Overload");
* paho's **network thread** only puts received payloads on the inbox's two bounded
  queues (full: dropped and counted; Raft retransmits, clients retry);
* the Prometheus endpoint's HTTP thread reads an immutable metrics snapshot.

Raft messages of one Ready are batched per receiver into as few authenticated
envelopes as fit (swarm.bus.envelope), published QoS 0 on ``raft/<receiver>``; a
leader's heartbeat round goes out as one broadcast envelope on ``raft-all``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consensus.config import Config
from consensus.driver import AppliedEntry, Driver, DriverConfig, DriverObserver, LeaderChange
from consensus.session import SessionError, SessionStateMachine, SessionStatus, decode_results
from consensus.sqlite_storage import SQLiteStorage
from consensus.storage import StorageError
from consensus.types import MAX_LINK_SCORE, ConfState, Entry, HardState, Message, MessageType, \
    Snapshot, StateRole
from swarm.bus import topics
from swarm.bus.client import Bus, BusConfig, BusConfigError, ConnectionEvent, MqttVersion, \
    Received, TlsConfig, Will
from swarm.bus.envelope import DEFAULT_MAX_ENVELOPE_BYTES, EnvelopeOpener, EnvelopeSealer, \
    Rejected, RejectReason, claimed_sender
from swarm.bus.keys import KeyFileError, Keyring, read_password_file, read_private_file
from swarm.bus.replay import EARLIEST_PLAUSIBLE_UNIX, EPOCH_FILE, FloorStore, ReplayStateError, \
    claim_epoch, read_epoch
from swarm.flight import OwnCommits
from swarm.planner import assignment_hash

from .assigner import LeaderAssignment
from .config import AgentConfig, SwarmConfig, load_keyring
from .inbox import Inbox
from .link import BrokerProbe, LinkFigures, LinkScorePolicy, RadioFactor, link_score
from .machine import MARKER_FILE, MapMachine, check_data_dir, claim_data_dir, make_machine
from .memory import BurstTrim, glibc_malloc_trim
from .metrics import AgentMetrics, MetricsSnapshot
from .protocol import ErrorCode, RequestError, error_reply, parse_request
from .service import ClientService
from .trace import LatencyTrace
from .trace import from_env as trace_from_env

if TYPE_CHECKING:
    from swarm.evacmap import EvacuationMap
    from swarm.flight import Flight

__all__ = ["Agent", "AgentError", "DataDirLock"]

log = logging.getLogger("swarm.agent")

#: Status is published on every change of role, term, leader or commit, at most this
#: often, and at least every STATUS_PERIOD_S (docs/protocol.md).
STATUS_MIN_INTERVAL_S = 0.1
STATUS_PERIOD_S = 2.0
#: The leader publishes the retained map at most this often (a burst of commits is one
#: publish; a ground station sees a commit within this plus a broker hop).
MAP_MIN_INTERVAL_S = 0.1
#: Both are derived from the whole map (status carries the SHA-256 of the state
#: machine's snapshot; the map is GeoJSON): tens of ms on the node thread for a map of
#: a few thousand items, which would stall every commit behind them. So each is also
#: spaced by at least 1/DERIVED_DUTY times what building it last cost: together they
#: take at most 2 x DERIVED_DUTY of the node thread while commits flow. The cost is the
#: node thread's own CPU time (time.thread_time), not wall time: on a loaded machine
#: the wall time of a 2 ms publish includes every moment the thread waited for a core
#: or the GIL, and spacing by that held a status (the FC's new map version) back 1-2 s.
DERIVED_DUTY = 0.05
#: Commit events at most this many per second (a benchmark commits thousands).
MAX_COMMIT_EVENTS_PER_S = 20
#: "Elections too often": this many leader changes within the window raise an alert.
ELECTION_ALERT_COUNT = 3
ELECTION_ALERT_WINDOW_S = 60.0
#: Replay floors checkpoint period (swarm.bus.replay).
FLOORS_CHECKPOINT_S = 30.0
#: At shutdown, wait at most this long for the broker to acknowledge the last replies
#: and the offline status (Bus.flush).
SHUTDOWN_FLUSH_S = 2.0
#: Client work per node-thread turn (after every queued Raft message was stepped):
#: requests are admitted (parsed, validated, proposed) for at most this long, and at
#: most MAX_REQUESTS_PER_TURN of them, before the turn ticks and handles the Ready. So
#: a turn lasts about this plus one Ready, far inside a heartbeat interval, however
#: many requests are queued; the rest wait for the next turn, and once the service
#: holds ``[client] max_pending`` they are answered ``busy`` without being parsed.
REQUEST_TURN_S = 0.010
MAX_REQUESTS_PER_TURN = 512
#: Client requests queued for the node thread: at most ``[client] max_queued_requests``
#: of them, and max(REQUEST_QUEUE_BYTES, that count x REQUEST_BYTES_TYPICAL) bytes of
#: payload (a map command is typically 300-500 bytes; one may be up to 68 KiB, so the
#: byte bound is what caps memory). One over a bound is answered ``busy`` at once
#: (``Agent._refuse_unqueued``).
REQUEST_QUEUE_BYTES = 4 * 1024 * 1024
#: Request bytes per second the client connection's network thread may parse to answer
#: ``busy`` to requests the queue has no room for, and its burst: parsing costs about
#: 27 us per KiB there (14 us for a 300-byte request, 7 ms for the largest), all of it
#: holding the GIL the node thread needs, so a flood of large requests gets at most
#: ~60 ms of it per second; beyond the budget a request is only counted, and its client
#: times out and retries (the session makes that safe).
REFUSAL_PARSE_BYTES_PER_S = 2 * 1024 * 1024
REQUEST_BYTES_TYPICAL = 512
#: What an AppendEntries carries besides its entries' counted bytes (Entry.size():
#: data + 16): its own fields (type, ids, term, index, commit, ...: under 100 bytes as
#: msgpack), its share of an envelope's header and tag (ENVELOPE_OVERHEAD, 62), and its
#: binary's header inside the envelope (5). Rounded up.
APPEND_OVERHEAD_BYTES = 1024


def raft_queue_bytes(max_msg_bytes: int, max_inflight_msgs: int) -> int:
    """The inbox's bound on queued Raft payload bytes (docs/agent.md, "Bounded memory").

    The most a node legitimately has queued between two turns of its node thread is its
    leader's whole in-flight window: ``max_inflight_msgs`` AppendEntries of at most
    ``max_msg_bytes`` of entries each (``[raft]``; the core sends a larger entry alone,
    but an entry holds what one client request carried, and a request is at most
    swarm.agent.protocol.MAX_REQUEST_BYTES, 256 KiB, the default max_msg_bytes), sealed
    into envelopes of at most 2 MiB. On top, one largest envelope
    (DEFAULT_MAX_ENVELOPE_BYTES) for everything else a turn may bring: votes,
    heartbeats, a snapshot chunk (one in flight, 256 KiB), and the encoding's per-entry
    bytes beyond Entry.size() (at most 9 per entry; with entries of 100 data bytes or
    more, under 8 % of the window, 1.3 MiB of the default's 16). It also means one
    envelope of the largest size always fits. Defaults (64 x 256 KiB):
    18.06 MiB, where the count bound alone (``max_inbound`` 4096 of payloads the bus
    accepts up to 2 MiB) allowed 8 GiB of unauthenticated payloads. Over it a payload is
    dropped (``raft_queue_full``) and Raft retransmits."""
    return (max_inflight_msgs * (max_msg_bytes + APPEND_OVERHEAD_BYTES)
            + DEFAULT_MAX_ENVELOPE_BYTES)


#: Committed entries applied per Ready (consensus Config.max_committed_bytes_per_ready):
#: about 160 map commands, some 25 ms of applying, so a follower catching up on a long
#: committed tail, or a leader behind a burst, still ticks and answers heartbeats
#: between batches. Readies per driver.process() call, for the same reason.
COMMITTED_BYTES_PER_READY = 64 * 1024
READIES_PER_TURN = 2
#: The bus's queue of QoS 1 messages (replies, events) waiting for the broker beyond
#: its in-flight window, at least: every pending request's reply fits, plus the
#: ``busy`` answers of a turn. On the client connection, requests are admitted only
#: while the replies not yet acknowledged by the broker leave room for every pending
#: request's reply plus one turn's answers (``_reply_room``): a broker slow to
#: acknowledge (a loaded machine, a flood's own replies) holds requests in the inbox
#: instead of making the bus drop replies (seen: 37 of a 4000-request flood never
#: answered). Requests are then bounded by the inbox, as any backlog is.
MIN_PUBLISH_QUEUE = 1000
#: The link score (swarm/agent/link.py) is recomputed and handed to the core this often.
LINK_SCORE_PERIOD_S = 0.1
#: The node thread wakes at least this often, for its own timers (link score and probe,
#: status, client request expiry): between a tick that may act and the next input it
#: sleeps (Agent.run).
IDLE_WAKE_S = LINK_SCORE_PERIOD_S
#: Ticks a late wake-up still fires beyond those planned; the rest of a stall is skipped.
STALL_TICKS = 5
#: A sender whose envelopes were refused as stale_epoch this many times in a row (none
#: accepted in between) is reported by a warning, at most once per period per sender.
#: One or two are normal after a sender restarts (its last envelopes of the old epoch
#: still in flight); a run means every envelope is refused (_StaleSenders).
STALE_EPOCH_WARN_AFTER = 10
STALE_EPOCH_WARN_PERIOD_S = 60.0


class AgentError(RuntimeError):
    """The agent cannot start or run; the message says what and how to fix it."""


class DataDirLock:
    """An exclusive lock on a data folder (``agent.lock``, flock): one agent per
    folder. The lock dies with the process, so a SIGKILLed agent leaves nothing stale.

    Taking it changes no byte of an existing folder: :meth:`own` writes the pid once the
    start is past every check, and :meth:`abandon` removes the lock file and the folders
    this lock created, so a refused start leaves the data folder as it was."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "agent.lock"
        if data_dir.exists() and not data_dir.is_dir():
            raise AgentError(f"data folder {data_dir} is not a folder (a file of that name "
                             "exists): set [node] data_dir to a folder, or move the file")
        # The folders mkdir is about to create, deepest first (abandon removes them).
        self._made_dirs: list[Path] = []
        self._made_file = False
        parent = data_dir
        while not parent.exists() and parent != parent.parent:
            self._made_dirs.append(parent)
            parent = parent.parent
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._made_file = not os.path.lexists(self.path)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self._undo()
            if exc.errno == errno.EEXIST or exc.errno == errno.ENOTDIR:
                raise AgentError(f"data folder {data_dir}: a part of the path is not a "
                                 "folder") from None
            raise AgentError(f"data folder {data_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()
            os.close(self._fd)
            self._fd = -1
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AgentError(f"data folder {data_dir} is in use by another agent"
                                 f"{f' (pid {holder})' if holder else ''}; one agent per "
                                 "folder") from None
            self._undo()
            raise AgentError(f"cannot lock {self.path}: {exc.strerror}") from None

    def own(self) -> None:
        """Write this process's pid into the lock file (for the message of a second agent)."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        self._made_file, self._made_dirs = False, []

    def abandon(self) -> None:
        """Release after a refused start: remove what taking the lock created (unlinked
        while still held, so no other agent can have locked it meanwhile)."""
        if self._fd >= 0:
            self._undo()
            self.release()

    def _undo(self) -> None:
        if self._made_file:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        for folder in self._made_dirs:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (someone else's files): leave it and its parents

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _StaleSenders:
    """Senders every envelope of which is refused as ``stale_epoch``: an authentic peer
    whose epoch is below the floor this node holds for it, typically one whose data folder
    was wiped or reflashed while its wall clock was unset (swarm.bus.replay.next_epoch).
    It is cut off from this node for good, so that is a warning naming it and the fix,
    not a debug line; rate-limited per sender (the metrics count every refusal)."""

    def __init__(self, after: int = STALE_EPOCH_WARN_AFTER,
                 period_s: float = STALE_EPOCH_WARN_PERIOD_S) -> None:
        self.after = after
        self.period_s = period_s
        self.runs: dict[int, int] = {}          # sender -> refusals since its last accepted
        self._warned: dict[int, float] = {}     # sender -> when last warned (monotonic)

    def refused(self, sender: int, now: float) -> int | None:
        """Count one refusal; the run's length when it is time to warn, else None."""
        run = self.runs[sender] = self.runs.get(sender, 0) + 1
        if run < self.after or now - self._warned.get(sender, -1e18) < self.period_s:
            return None
        self._warned[sender] = now
        return run

    def accepted(self, sender: int) -> None:
        if sender in self.runs:
            del self.runs[sender]


class _TimedStorage(SQLiteStorage):
    """SQLiteStorage that reports how long each Ready's write took (the fsync)."""

    observe: Callable[[float], None] = staticmethod(lambda s: None)
    trace: LatencyTrace | None = None

    def apply_ready(self, hard_state: HardState | None, entries: Sequence[Entry],
                    snapshot: Snapshot | None = None) -> None:
        t0 = time.perf_counter()
        trace = self.trace
        if trace is not None:
            trace.mark("persist_begin" if entries else "hs_begin")
        super().apply_ready(hard_state, entries, snapshot)
        if trace is not None:
            trace.mark("persist_end" if entries else "hs_end")
        self.observe(time.perf_counter() - t0)


class _BusTransport:
    """The driver's transport: messages of one Ready, grouped per receiver, sealed into
    authenticated envelopes and published QoS 0 (Raft retransmits, docs/protocol.md)."""

    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self.sent = 0
        self.dropped: Counter[str] = Counter()
        #: Between hold() and release(): a leader's AppendEntries without entries.
        self._held: list[Message] | None = None
        #: raft/<receiver> per receiver, and raft-all: built (and validated) once.
        self._topics: dict[int, str] = {}
        self._broadcast_topic: str | None = None

    def hold(self) -> None:
        """From now until :meth:`release`, a leader's AppendEntries that carry no
        entries wait. They only move a follower's commit index forward (or probe), and
        in the Ready that commits an entry they are sealed and written before the entry
        is applied and its client answered: about 0.1 ms per follower on a commit's
        path (bench/agent_latency.py). Sending a message later than the driver allows
        is always safe (Raft tolerates any delay; what must not happen is sending
        *before* the write a message promises), and the order per receiver is kept:
        anything else sent meanwhile goes out after what waits."""
        self._held = []

    def release(self) -> None:
        held, self._held = self._held, None
        if held:
            self._send(held)

    def send(self, messages: Sequence[Message]) -> None:
        held = self._held
        if held is None:
            self._send(messages)
        elif all(m.type is MessageType.APPEND and not m.entries for m in messages):
            held.extend(messages)
        else:
            self._held = []
            self._send([*held, *messages])

    def _send(self, messages: Sequence[Message]) -> None:
        a = self.agent
        if a.config.raft.broadcast_heartbeats:
            beats = [m for m in messages if m.type is MessageType.HEARTBEAT]
            if len(beats) > 1:
                # A heartbeat round: one broadcast envelope on raft-all instead of one
                # per follower (docs/protocol.md, "Broadcast heartbeats").
                messages = [m for m in messages if m.type is not MessageType.HEARTBEAT]
                self._broadcast(beats)
        by_receiver: dict[int, list[Message]] = {}
        for m in messages:
            by_receiver.setdefault(m.to, []).append(m)
        trace = a.trace
        for to, batch in by_receiver.items():
            try:
                envelopes = a.sealer.seal(to, batch)
            except ValueError as exc:  # EnvelopeTooLarge: a configuration error
                self.dropped["too_large"] += len(batch)
                log.error("cannot send %d messages to node %d: %s", len(batch), to, exc)
                continue
            topic = self._topics.get(to)
            if topic is None:
                topic = self._topics[to] = topics.raft(a.swarm, to)
            for env in envelopes:
                if not a.bus.publish(topic, env, qos=0):
                    self.dropped["publish"] += 1
            self.sent += len(batch)
            if trace is not None:
                _trace_sent(trace, to, batch)

    def _broadcast(self, beats: list[Message]) -> None:
        a = self.agent
        if self._broadcast_topic is None:
            self._broadcast_topic = topics.raft_all(a.swarm)
        for env in a.sealer.seal_broadcast(beats):
            if not a.bus.publish(self._broadcast_topic, env, qos=0):
                self.dropped["publish"] += 1
        self.sent += len(beats)


class _Observer(DriverObserver):
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent

    def applied(self, driver: Driver, entry: AppliedEntry) -> None:
        self.agent._applied(entry)

    def leadership_changed(self, driver: Driver, change: LeaderChange) -> None:
        self.agent._leadership(change)

    def proposals_refused(self, driver: Driver, datas: Sequence[bytes]) -> None:
        self.agent.service.on_proposals_refused(datas)

    def read_ready(self, driver: Driver, ctx: bytes, index: int) -> None:
        self.agent.service.on_read_ready(ctx, index)

    def read_expired(self, driver: Driver, ctx: bytes) -> None:
        self.agent.service.on_read_expired(ctx)

    def read_refused(self, driver: Driver, ctx: bytes) -> None:
        self.agent.service.on_read_refused(ctx)

    def snapshot_installed(self, driver: Driver, snapshot: Snapshot, applied_before: int) -> None:
        self.agent._map_changed()
        log.info("installed a snapshot at index %d from the leader (had applied %d)",
                 snapshot.meta.index, applied_before)

    def snapshot_taken(self, driver: Driver, index: int, data: bytes) -> None:
        log.info("snapshot at index %d (%d bytes); log compacted", index, len(data))


def _trace_sent(trace: LatencyTrace, to: int, batch: Sequence[Message]) -> None:
    for m in batch:
        if m.type is MessageType.APPEND and m.entries:
            trace.mark(f"app_send:{to}")
        elif m.type is MessageType.APPEND_RESP and not m.reject and trace.new_ack(to, m.index):
            trace.mark(f"ack_send:{to}")


def _trace_stepped(trace: LatencyTrace, m: Message, received: float) -> None:
    if m.type is MessageType.APPEND and m.entries:
        trace.mark("app_net", received)
        trace.mark("app_step")
    elif m.type is MessageType.APPEND_RESP and not m.reject and trace.new_ack(m.frm, m.index):
        trace.mark(f"ack_net:{m.frm}", received)
        trace.mark(f"ack_step:{m.frm}")


def _derived_gap(minimum: float, started_cpu: float) -> float:
    """The pause before the next status or map publish, given the node thread's CPU
    time (time.thread_time) when building this one started: ``minimum``, or
    1/DERIVED_DUTY times the CPU time it cost (see DERIVED_DUTY)."""
    return max(minimum, (time.thread_time() - started_cpu) / DERIVED_DUTY)


#: A key overlap longer than this is warned about at start (_log_keys).
LONG_KEY_OVERLAP_DAYS = 30


def _log_keys(keyring: Keyring, swarm: SwarmConfig) -> None:
    """Say which rotation phase this node is in: the operator moves on to the next phase
    only once every node has reached this one (docs/protocol.md, "Key rotation")."""
    seal = keyring.sealing.key_id.hex()
    if keyring.next is not None:
        log.info("key rotation phase 1: sealing with key %s (key_file), also accepting the "
                 "next key %s (next_key_file)", seal, keyring.next.key_id.hex())
    elif keyring.previous is not None and swarm.previous_until is not None:
        until, prev = swarm.previous_until.isoformat(), keyring.previous.key_id.hex()
        if keyring.opening_keys(time.time()) == (keyring.sealing,):
            log.warning("the previous key %s (previous_key_file) expired at %s and is "
                        "refused; remove previous_key_file and previous_until", prev, until)
        else:
            log.info("key rotation phase 2: sealing with key %s (key_file), accepting the "
                     "previous key %s (previous_key_file) until %s", seal, prev, until)
            days = (swarm.previous_until.timestamp() - time.time()) / 86400
            if days > LONG_KEY_OVERLAP_DAYS:
                # Whoever holds the old key (the reason to rotate, often) is trusted
                # until then: probably a typo in the year.
                log.warning("previous_until %s is %.0f days away: the previous key %s stays "
                            "accepted that long; an overlap needs only as long as it takes "
                            "to restart every drone", until, days, prev)
    else:
        log.info("sealing with key %s (key_file)", seal)


def _role_name(role: StateRole) -> str:
    return role.value.replace("-", "_")


class Agent:
    """One drone's node. ``start()`` acquires everything (and raises
    :class:`AgentError` with a clear message when it cannot); ``run(stop)`` is the node
    thread's loop until ``stop`` is set, then shuts down cleanly."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.swarm = config.swarm.id
        self.node_id = config.node.id
        self.metrics = AgentMetrics()
        max_requests = config.client.max_queued_requests
        self.inbox = Inbox(config.raft.max_inbound,
                           raft_queue_bytes(config.raft.max_msg_bytes,
                                            config.raft.max_inflight_msgs),
                           max_requests,
                           max(REQUEST_QUEUE_BYTES, max_requests * REQUEST_BYTES_TYPICAL),
                           refuse_request=self._refuse_unqueued)
        #: Replies by outcome given on the client connection's network thread to
        #: requests the inbox had no room for (``_refuse_unqueued``; that thread only).
        self._unqueued_replies: Counter[str] = Counter()
        self._unqueued_lock = threading.Lock()
        #: The refusals' parse budget (REFUSAL_PARSE_BYTES_PER_S), network thread only.
        self._refusal_budget = float(REFUSAL_PARSE_BYTES_PER_S)
        self._refusal_budget_at = time.monotonic()
        self.last_contact: dict[int, float] = {}
        self._known_leader = 0          # the last leader this node knew of (0: none yet)
        self.metrics_port: int | None = None
        self._lock: DataDirLock | None = None
        self._started = False
        self._stats = Counter[str]()
        self._leader_changes: deque[float] = deque()
        self._last_alert = -1e9
        self._last = LeaderChange(StateRole.FOLLOWER, 0, 0)
        self._status_due = 0.0
        self._status_dirty = True
        self._status_last = -1e9
        self._status_gap = STATUS_MIN_INTERVAL_S
        self._map_dirty = False
        self._map_last = -1e9
        self._map_gap = MAP_MIN_INTERVAL_S
        self._map_hash: tuple[int, str] = (-1, "")
        self._assignment_doc: tuple[int, dict[str, Any]] = (-1, {})
        self._commit_events: deque[float] = deque()
        #: The leader's commit/rejected events of this turn, sent after its replies.
        self._narration: list[tuple[str, str, dict[str, Any]]] = []
        self._floors_due = 0.0
        self.stale_senders = _StaleSenders()
        #: Freed heap back to the OS once a burst is applied (swarm/agent/memory.py).
        self.heap_trim = BurstTrim(glibc_malloc_trim())
        # The session through which this node commits its own map changes (the
        # leader's assignment; with [mavlink], its drone's entry), the leader's
        # assignment proposer, and with a [mavlink] section this drone's flight side.
        self.own_commits: OwnCommits | None = None
        self.assigner: LeaderAssignment | None = None
        self.flight: Flight | None = None
        self._flight_version = -1  # the map version last handed to the flight side
        self._assigned_version = -1  # ... and to the leader's assignment proposer
        # Best-signal leadership: this node's link score, from its radio and its broker
        # probe (swarm/agent/link.py), handed to the core on this thread.
        ld = config.leadership
        self.probe = BrokerProbe(ld.probe_period_s, ld.probe_timeout_s)
        self._link_policy = LinkScorePolicy(ld.rtt_good_ms, ld.rtt_bad_ms)
        self.radio = RadioFactor(ld.radio, ld.radio_detect_s, self._link_policy.radio_max_age_s)
        self.link = LinkFigures(None, None, None, 0.0)
        self._link_due = 0.0
        self._score_transfers = 0
        self.trace: LatencyTrace | None = None

    # -- start -------------------------------------------------------------------------

    def start(self) -> None:
        """Check every input, then acquire and write. Nothing on disk changes until the
        config's files (swarm keys, ``[bus] password_file``, TLS files) and the data
        folder's contents (state machine marker, ``bus-epoch``, ``bus-floors.json``,
        ``raft.db``) have been read and found sound, and the metrics port is bound; a
        refused start (AgentError) leaves the data folder as it was: absent, or byte for
        byte what it held (docs/agent.md, "Running it")."""
        cfg = self.config
        data_dir = cfg.node.data_dir
        # Outside the data folder, read-only.
        try:
            keyring = load_keyring(cfg.swarm)
        except KeyFileError as exc:
            raise AgentError(str(exc)) from None
        self.keyring = keyring
        _log_keys(keyring, cfg.swarm)
        self._bus_configs = (self._bus_config(), self._bus_config(clients=True))
        try:
            self.trace = trace_from_env(self.node_id)
        except ValueError as exc:
            raise AgentError(str(exc)) from None
        self._lock = lock = DataDirLock(data_dir)
        created: list[Path] = []  # files this start made, removed if it is refused
        try:
            self._start(data_dir, keyring, created)
        except BaseException:
            self._undo_start(created)
            lock.abandon()
            raise
        lock.own()

    def _undo_start(self, created: list[Path]) -> None:
        """Close what a refused start opened and remove the files it made."""
        if self.flight is not None:
            self.flight.close()
        for name in ("client_bus", "bus"):
            bus = getattr(self, name, None)
            if bus is not None:
                bus.close()
        storage = getattr(self, "storage", None)
        if storage is not None:
            storage.close()
        self.metrics.close()
        for path in reversed(created):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _start(self, data_dir: Path, keyring: Keyring, created: list[Path]) -> None:
        cfg = self.config
        # The data folder's contents, read-only (under the lock: no other agent writes).
        try:
            write_marker = check_data_dir(data_dir, cfg.node.state_machine)
            last_epoch = read_epoch(data_dir)
            self.floor_store = FloorStore(data_dir)
            floors = self.floor_store.load()
        except (ValueError, OSError) as exc:  # ReplayStateError is a ValueError
            raise AgentError(str(exc)) from None
        db = data_dir / "raft.db"
        fresh = not db.exists()
        storage: _TimedStorage | None = None
        if not fresh:  # opened and fully checked now; a new one is made after every check
            storage = self._open_storage(db)
        if cfg.metrics.listen is not None:
            host, port = cfg.metrics.listen
            try:
                self.metrics_port = self.metrics.serve(host, port)
            except OSError as exc:
                raise AgentError(f"[metrics] listen {host}:{port}: {exc.strerror}") from None
        # Every input checked: from here on, write.
        try:
            if write_marker:
                created.append(data_dir / MARKER_FILE)
                claim_data_dir(data_dir, cfg.node.state_machine)
        except (ValueError, OSError) as exc:
            raise AgentError(str(exc)) from None
        if storage is None:
            created += [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
            storage = self._open_storage(db)
        storage.observe = self.metrics.fsync_latency.observe
        storage.trace = self.trace
        self.machine = machine = make_machine(cfg.node.state_machine)
        #: The evacuation map when the agent runs it (the flight side and the assignment
        #: need it); None with the register.
        self.map: EvacuationMap | None = machine.map if isinstance(machine, MapMachine) else None
        self.fsm = SessionStateMachine(machine.fsm, max_sessions=cfg.client.max_sessions,
                                       batch_entries=machine.batch_entries)
        self.transport = _BusTransport(self)
        t = cfg.timing
        seed = int.from_bytes(os.urandom(8), "big")
        raft_config = Config(
            id=self.node_id, election_tick=t.election_ticks, heartbeat_tick=t.heartbeat_ticks,
            pre_vote=True, check_quorum=True, max_size_per_msg=cfg.raft.max_msg_bytes,
            max_inflight_msgs=cfg.raft.max_inflight_msgs,
            max_uncommitted_bytes=cfg.raft.max_uncommitted_bytes,
            max_committed_bytes_per_ready=COMMITTED_BYTES_PER_READY, rng=random.Random(seed),
            **self._leadership_config())
        try:
            self.driver = Driver(raft_config, storage, self.fsm, self.transport,
                                 DriverConfig(snapshot_every=cfg.raft.snapshot_every,
                                              compact_keep=cfg.raft.compact_keep,
                                              max_inbox=cfg.raft.max_inbound,
                                              max_readies_per_process=READIES_PER_TURN),
                                 _Observer(self))
        except (ValueError, StorageError) as exc:
            raise AgentError(f"cannot start the node over {storage.path}: {exc}") from None
        st = self.driver.raw.status()
        self._last = LeaderChange(st.role, st.lead, st.term)
        if not fresh and st.conf_state.voters != cfg.node.voters:
            # The store is the truth: after a membership change through Raft the config's
            # voters are history (docs/agent.md, [node] voters).
            log.warning("[node] voters %s differ from the configuration in %s, %s: the "
                        "store's is used; voters are read only when the store is created "
                        "(change membership through Raft, or update the config to match)",
                        list(cfg.node.voters), db, list(st.conf_state.voters),
                        extra={"fields": {"config_voters": list(cfg.node.voters),
                                          "store_voters": list(st.conf_state.voters)}})
        # Claimed last, once nothing else can refuse the start, and before the first
        # envelope is sealed (swarm.bus.replay).
        try:
            if last_epoch == 0:
                created.append(data_dir / EPOCH_FILE)
            epoch = claim_epoch(data_dir)
        except (ReplayStateError, OSError) as exc:
            raise AgentError(str(exc)) from None
        if epoch < EARLIEST_PLAUSIBLE_UNIX and last_epoch == 0:
            log.warning("no %s in %s and the wall clock is not set (%s): envelope epoch %d. "
                        "If this node ran before with another data folder, every peer "
                        "refuses it as stale_epoch: restart it once the clock is set (NTP)",
                        EPOCH_FILE, data_dir, time.strftime("%Y-%m-%d", time.gmtime()), epoch)
        self.sealer = EnvelopeSealer(self.swarm, self.node_id, keyring, epoch)
        self.opener = EnvelopeOpener(self.swarm, self.node_id, keyring, floors=floors,
                                     on_epoch_advance=self.floor_store.save,
                                     # previous_until is a calendar time (it survives
                                     # restarts), so the overlap ends on the wall clock.
                                     clock=time.time)
        log.info("node %d (%s) of swarm %r: term %d, log %d..%d, %s version %d, applied %d; "
                 "epoch %d", self.node_id, cfg.node.name, self.swarm, st.term,
                 storage.first_index(), storage.last_index(), self.machine.name,
                 self.machine.version,
                 self.driver.applied, epoch,
                 extra={"fields": {"term": st.term, "epoch": epoch}})
        self.service = ClientService(
            self.driver, self.node_id, self.swarm, machine=self.machine, status=self.status,
            max_pending=cfg.client.max_pending, timeout_s=cfg.client.request_timeout_s,
            clock=time.monotonic, on_commit_latency=self.metrics.commit_latency.observe)
        self.bus = Bus(self._bus_configs[0])
        self.bus.subscribe(topics.raft(self.swarm, self.node_id), self.inbox.put_raft, qos=0)
        # Every node hears the leaders' broadcast heartbeats, whether or not its own
        # [raft] broadcast_heartbeats is on (docs/protocol.md, "Broadcast heartbeats").
        self.bus.subscribe(topics.raft_all(self.swarm), self._raft_broadcast, qos=0,
                           no_local=True)
        # Client requests and their replies travel on a connection of their own: on one
        # shared connection a flood of requests queues at the broker and in the TCP
        # stream in front of the Raft messages to this node (and its replies in front
        # of its heartbeats), and the leader loses its quorum behind its own clients.
        self.client_bus = Bus(self._bus_configs[1])
        self.client_bus.subscribe(topics.request(self.swarm, self.node_id),
                                  self.inbox.put_request, qos=1)
        self.client_bus.start()
        self.bus.subscribe(topics.ping(self.swarm, self.node_id),
                           self._probe_returned, qos=0)
        self.bus.add_state_callback(self._bus_state)
        self.bus.start()
        # Envelopes of this epoch may be on the wire from now on: a later failure must
        # not remove the epoch file (nor, then, the rest this start made).
        created.clear()
        if self.map is not None:
            # Own map changes are retried about every 2 s through the same session.
            self.own_commits = OwnCommits(cfg.node.name,
                                          retry_ticks=max(1, 2000 // cfg.timing.tick_ms),
                                          wake=self.inbox.wake)
            self.assigner = LeaderAssignment(self.own_commits, self._leader_term,
                                             name=str(self.node_id))
            if cfg.mavlink is not None:  # config: [mavlink] only with the map
                self._start_flight()
        self._started = True

    def _open_storage(self, db: Path) -> "_TimedStorage":
        """Open (fully checked) or create the store; kept as ``self.storage`` at once,
        so a refused start closes it."""
        try:
            self.storage = _TimedStorage(db, ConfState.of(self.config.node.voters))
        except StorageError as exc:
            raise AgentError(str(exc)) from None
        return self.storage

    def _leadership_config(self) -> dict[str, Any]:
        """The consensus.Config fields of ``[leadership]`` (docs/agent.md)."""
        ld = self.config.leadership
        dwell, interval, delay = ld.ticks(self.config.timing.tick_ms)
        return {"leadership_by_link_score": ld.by_link_score, "link_score_margin": ld.margin,
                "link_score_dwell_ticks": dwell, "leader_transfer_interval_ticks": interval,
                "poor_link_election_delay_ticks": delay}

    def _leader_term(self) -> int | None:
        last = self._last  # one read: the node thread replaces it whole
        return last.term if last.role is StateRole.LEADER else None

    def _start_flight(self) -> None:
        cfg = self.config
        assert cfg.mavlink is not None and self.own_commits is not None
        # Imported here: the flight side brings pymavlink (~12 MB of RSS), which an
        # agent without [mavlink] does not need.
        from swarm.flight import Flight, FlightConfig

        self.flight = Flight(
            FlightConfig(cfg.mavlink.connection, cfg.mavlink.baud, cfg.mavlink.sysid,
                         telemetry_hz=cfg.mavlink.telemetry_hz),
            swarm=self.swarm, node_id=self.node_id, name=cfg.node.name,
            publish=lambda topic, payload, qos, retain: self.bus.publish(
                topic, payload, qos=qos, retain=retain),
            event=lambda kind, text: self._event(kind, text), commits=self.own_commits,
            status_changed=self._flight_status_changed)
        self.flight.start()
        self._flight_map_changed()

    def _flight_status_changed(self) -> None:
        """The flight side's part of the status changed (any thread): publish it with
        the next loop iteration (rate-limited like every status change)."""
        self._status_dirty = True

    def _bus_config(self, clients: bool = False) -> BusConfig:
        """The node's connection (Raft, status, map, events; its Last Will says the
        node went offline) or, ``clients``, the one for client requests and replies."""
        b = self.config.bus
        password = None
        # Secrets are refused when group or others may read them, as the swarm key is
        # (the one check: swarm.bus.keys.read_private_file).
        try:
            if b.password_file is not None:
                password = read_password_file(b.password_file)
            if b.tls is not None and b.tls.key_file is not None:
                read_private_file(b.tls.key_file, "[bus.tls] key_file", 1, follow_symlinks=True)
        except KeyFileError as exc:
            raise AgentError(str(exc)) from None
        try:
            tls = (TlsConfig(b.tls.ca_file, b.tls.cert_file, b.tls.key_file)
                   if b.tls is not None else None)
        except BusConfigError as exc:
            raise AgentError(f"[bus.tls] {exc}") from None
        will = (None if clients else
                Will(topics.status(self.swarm, self.node_id), self._offline_payload()))
        return BusConfig(
            brokers=b.brokers,
            client_id=f"{self.swarm}-node-{self.node_id}{'-clients' if clients else ''}",
            protocol=MqttVersion(b.protocol), keepalive_s=b.keepalive_s,
            username=b.username, password=password, tls=tls, will=will,
            reconnect_min_s=b.reconnect_min_s, reconnect_max_s=b.reconnect_max_s,
            max_payload_bytes=DEFAULT_MAX_ENVELOPE_BYTES,
            max_queued=(max(MIN_PUBLISH_QUEUE, 2 * (self.config.client.max_pending
                                                    + MAX_REQUESTS_PER_TURN))
                        if clients else MIN_PUBLISH_QUEUE))

    def _offline_payload(self) -> bytes:
        return json.dumps({"v": 1, "node": self.node_id, "name": self.config.node.name,
                           "online": False}).encode()

    # -- network thread ----------------------------------------------------------------

    def _raft_broadcast(self, msg: Received) -> None:
        # paho's thread. Over MQTT 3.1.1 (no No Local) the broker sends this node's own
        # broadcasts back: dropped here, uncounted (the opener would refuse them as
        # wrong_receiver); by the claimed sender, so a forgery claiming this node's id
        # is dropped too, as opening would drop it.
        if claimed_sender(msg.payload) != self.node_id:
            self.inbox.put_raft(msg)

    def _probe_returned(self, msg: Received) -> None:
        # paho's thread: timestamped here, so the node thread's own work is not counted.
        self.probe.received(msg.payload)

    def _bus_state(self, event: ConnectionEvent) -> None:
        if event.connected:
            # Re-announce ourselves (the Last Will may have marked us offline).
            self._status_dirty = True
            self._map_dirty = True

    # -- node thread -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The node thread's loop (see the module docstring), until ``stop`` is set.

        Logical ticks stay those of a ``tick_ms`` timer, but the thread does not wake
        for ticks that can only count (Driver.ticks_until_due: an idle follower's
        ticks until its election timeout, a leader's between heartbeats). It sleeps
        until the first tick that may act, an input, or IDLE_WAKE_S for its own
        timers, and on waking fires, before each queued message, the ticks due when it
        arrived, so an input always meets the state that ticking one by one would have
        left (docs/agent.md, "Ticks")."""
        if not self._started:
            raise RuntimeError("Agent.start() first")
        tick_s = self.config.timing.tick_ms / 1000.0
        #: The wall time of the next logical tick not yet fired.
        next_tick = wake_at = time.monotonic() + tick_s
        driver = self.driver
        inbox = self.inbox
        transport = self.transport
        busy = False
        try:
            while not stop.is_set():
                inbox.wait(0.0 if busy else max(0.0, wake_at - time.monotonic()))
                now = time.monotonic()
                ticked = next_tick
                # Each message after the ticks due when it arrived, the rest up to now
                # after the messages: the order ticking one by one would have seen.
                for msg, received in inbox.take_raft():
                    if received >= next_tick:
                        next_tick = self._fire_ticks(received, next_tick, wake_at, tick_s)
                    self._step_envelope(msg, received)
                if now >= next_tick:
                    next_tick = self._fire_ticks(now, next_tick, wake_at, tick_s)
                if next_tick != ticked:
                    self.service.expire()
                self._admit_requests()
                if self.own_commits is not None:
                    self.own_commits.pump(driver)
                transport.hold()
                driver.process()
                # Queued requests keep the loop turning only while they can be admitted:
                # waiting on the broker's acknowledgements (_reply_room) it sleeps until
                # the next input or tick instead of spinning a core the broker needs.
                busy = driver.raw.has_ready() or (inbox.requests_waiting() > 0
                                                  and self._reply_room())
                self._flush_replies()
                transport.release()
                self._periodic(now)
                wake_at = min(next_tick + (driver.ticks_until_due() - 1) * tick_s,
                              now + IDLE_WAKE_S)
        finally:
            self._shutdown()

    def _fire_ticks(self, until: float, next_tick: float, wake_at: float, tick_s: float) -> float:
        """Fire the logical ticks due by ``until`` (the next one was due at
        ``next_tick``; the thread meant to wake at ``wake_at``); returns when the next
        one is due."""
        due = int((until - next_tick) / tick_s) + 1
        planned = max(0, int((wake_at - next_tick) / tick_s) + 1)
        fire = due
        if due > planned + STALL_TICKS:
            # Stalled well past the planned wake (a long fsync, SIGSTOP): fire the
            # ticks slept through on purpose, which only count, but neither the one
            # that acts nor the lost ones in a burst; time simply resumes (Raft only
            # needs ticks to be monotonic, not complete), and the input that waited
            # meets the node before its timer does, as it did before the stall.
            fire = max(0, min(planned, due) - 1)
        driver, own = self.driver, self.own_commits
        for _ in range(fire):
            driver.tick()
            if own is not None:
                own.tick()
        if fire < due:
            self._stats["ticks_skipped"] += due - fire
            return until + tick_s
        return next_tick + fire * tick_s

    def _step_envelope(self, msg: Received, received: float) -> None:
        verdict = self.opener.open(msg.payload)
        if isinstance(verdict, Rejected):
            log.debug("dropped a Raft envelope on %s: %s (%s)", msg.topic,
                      verdict.reason.value, verdict.detail)
            if verdict.reason is RejectReason.STALE_EPOCH:
                self._stale_epoch(msg.payload, verdict)
            return
        if verdict.sender in self.stale_senders.runs:
            self.stale_senders.accepted(verdict.sender)
        self.last_contact[verdict.sender] = time.monotonic()
        trace = self.trace
        for m in verdict.messages:
            if self.driver.step(m):
                self._stats["raft_received"] += 1
                if trace is not None:
                    _trace_stepped(trace, m, received)

    def _stale_epoch(self, payload: bytes, verdict: Rejected) -> None:
        # The sender is authentic: the epoch is judged only after the tag verified.
        sender = claimed_sender(payload)
        if sender is None:
            return
        run = self.stale_senders.refused(sender, time.monotonic())
        if run is not None:
            log.warning("node %d: its last %d envelopes were refused as stale_epoch (%s), so "
                        "this node does not hear it. Its data folder was probably wiped or "
                        "reflashed while its clock was unset: on node %d, set the clock "
                        "(NTP) and restart its agent, or stop it and write a number above "
                        "that epoch into its data_dir/%s (docs/agent.md, \"A wiped data "
                        "folder\")", sender, run, verdict.detail, sender, EPOCH_FILE,
                        extra={"fields": {"sender": sender, "refused": run}})

    def _admit_requests(self) -> None:
        """This turn's client requests: at most MAX_REQUESTS_PER_TURN, for at most
        REQUEST_TURN_S (see there); the rest stay queued for the next turn. The service
        answers ``busy`` without parsing the map command once it is full."""
        inbox, service, trace = self.inbox, self.service, self.trace
        if not inbox.requests_waiting():
            return   # the usual turn: nothing to admit
        if not self._reply_room():
            return   # the broker has not taken our replies yet: requests wait queued
        deadline = time.monotonic() + REQUEST_TURN_S
        for _ in range(MAX_REQUESTS_PER_TURN):
            item = inbox.take_request()
            if item is None:
                return
            msg, received = item
            if trace is not None:
                trace.mark("req_net", received)
                trace.mark("req_step")
            service.on_request(msg.payload, msg.response_topic, msg.correlation_data)
            if time.monotonic() >= deadline:
                return

    def _refuse_unqueued(self, msg: Received) -> None:
        """A request the inbox had no room for, on the client connection's network
        thread: answered ``busy`` now (or ``bad_request`` if it is malformed, as the node
        thread would), so a flood larger than the queue is answered, not left to time
        out. Nothing of the node is touched: the request is parsed (its id and reply
        address; the embedded commands are not) and the answer published at QoS 0,
        outside the client connection's acknowledged queue, which ``_reply_room`` keeps
        for the replies of admitted requests. A lost ``busy`` costs the client its
        timeout, as a dropped request did. A request with no reply address, one the bus
        cannot publish to, or one beyond the parse budget (REFUSAL_PARSE_BYTES_PER_S) is
        only counted (``request_queue_full``)."""
        now = time.monotonic()
        self._refusal_budget = min(float(REFUSAL_PARSE_BYTES_PER_S), self._refusal_budget + (
            now - self._refusal_budget_at) * REFUSAL_PARSE_BYTES_PER_S)
        self._refusal_budget_at = now
        if self._refusal_budget < len(msg.payload):
            return
        self._refusal_budget -= len(msg.payload)
        try:
            request = parse_request(msg.payload, self.swarm, msg.response_topic,
                                    msg.correlation_data)
        except RequestError as exc:
            if exc.reply is None:
                return
            reply, payload, outcome = exc.reply, error_reply(exc.request_id, exc.code,
                                                             exc.message), exc.code.value
        else:
            reply, outcome = request.reply, ErrorCode.BUSY.value
            payload = error_reply(request.id, ErrorCode.BUSY, (
                f"node {self.node_id}'s request queue is full (at most "
                f"{self.inbox.max_requests} requests, {self.inbox.max_request_bytes} bytes): "
                "retry later"))
        try:
            if reply.correlation is not None and self.config.bus.protocol == "5":
                sent = self.client_bus.publish(reply.topic, payload, qos=0,
                                               correlation_data=reply.correlation)
            else:
                sent = self.client_bus.publish(reply.topic, payload, qos=0)
        except (BusConfigError, ValueError) as exc:   # a topic the bus refuses: counted only
            log.debug("cannot answer a request the inbox had no room for: %s", exc)
            return
        if sent:
            with self._unqueued_lock:
                self._unqueued_replies[outcome] += 1

    def _reply_room(self) -> bool:
        """Room on the client connection for this turn's answers and, later, a reply to
        every pending request (MIN_PUBLISH_QUEUE says why)."""
        bus = self.client_bus
        room = bus.config.max_queued - bus.unacknowledged()
        return room >= MAX_REQUESTS_PER_TURN + self.config.client.max_pending

    def _flush_replies(self) -> None:
        """The turn's replies, then the commit events narrating them."""
        self._send_replies()
        if self._narration:
            narration, self._narration = self._narration, []
            for kind, text, fields in narration:
                self._event(kind, text, **fields)

    def _send_replies(self) -> None:
        out = self.service.outbox
        if not out:
            return
        self.service.outbox = []
        v5 = self.config.bus.protocol == "5"
        for r in out:
            try:
                if v5 and r.correlation is not None:
                    self.client_bus.publish(r.topic, r.payload, qos=1,
                                            correlation_data=r.correlation)
                else:
                    self.client_bus.publish(r.topic, r.payload, qos=1)
            except (BusConfigError, ValueError) as exc:
                # parse_request checked the address; should one still be refused, that
                # reply is lost (its client times out), never the node thread.
                self._stats["replies_unsendable"] += 1
                log.warning("cannot send a reply to %r: %s", r.topic[:80], exc)
        if self.trace is not None:
            self.trace.mark("reply_pub")

    # -- driver events (node thread) ---------------------------------------------------

    def _applied(self, entry: AppliedEntry) -> None:
        if self.trace is not None and entry.result is not None:
            self.trace.mark("applied")
        self.service.on_applied(entry)
        if self.own_commits is not None:
            self.own_commits.on_applied(entry)
        self._status_dirty = True
        if entry.result is None:
            return
        self._map_changed()
        if self._last.role is not StateRole.LEADER:
            return
        # The leader narrates committed changes and refusals for ground stations (a
        # batch entry once, by its first new result), at most MAX_COMMIT_EVENTS_PER_S:
        # past it nothing is decoded.
        now = time.monotonic()
        while self._commit_events and now - self._commit_events[0] > 1.0:
            self._commit_events.popleft()
        if len(self._commit_events) >= MAX_COMMIT_EVENTS_PER_S:
            self._stats["events_suppressed"] += 1
            return
        try:
            result = next((r for r in decode_results(entry.result)
                           if r.status is SessionStatus.OK and not r.cached), None)
        except SessionError:
            return
        if result is None:
            return
        self._commit_events.append(now)
        name = self.machine.name
        try:
            outcome = self.machine.outcome(result.payload)
        except ValueError:
            return
        # Published after the turn's replies (_flush_replies): an event is a QoS 1
        # publish (JSON, paho, a socket write) that would otherwise sit between this
        # entry being applied and its client's reply.
        if outcome.ok:
            self._narration.append(("commit", f"{name} version {entry.index} committed",
                                    {"index": entry.index}))
        else:
            self._narration.append((
                "rejected", f"command at index {entry.index} refused by the {name}: "
                            f"{outcome.error}",
                {"index": entry.index, "code": ErrorCode.INVALID.value,
                 "message": outcome.error}))

    def _map_changed(self) -> None:
        self._map_dirty = True
        self._status_dirty = True
        self._flight_map_changed()

    def _flight_map_changed(self) -> None:
        """Hand each new applied map version to the leader's assignment proposer and the
        flight side (non-blocking submits: computing, planning and uploading run on
        their own workers, never on this thread).

        The flight side gets a version only once this node is caught up: a leader is
        known and everything committed that it knows of is applied. An agent restarted
        under a flying drone replays its log from version 0; planning a version from
        the middle of that replay would upload a plan older than the one the flight
        controller holds (missing the zones committed since). Caught up, the versions
        in between are skipped; the latest is handed over (from ``_periodic`` when the
        node catches up between commits). Nothing without the map (the register)."""
        if self.map is None:
            return
        version = self.map.version
        view = None
        if self.assigner is not None and version != self._assigned_version:
            self._assigned_version = version
            view = self.map.view()
            self.assigner.map_applied(view)
        if self.flight is not None and version != self._flight_version and self._caught_up():
            self._flight_version = version
            self.flight.map_applied(view if view is not None else self.map.view())

    def _caught_up(self) -> bool:
        return (self._last.leader != 0
                and self.driver.applied >= self.driver.raw.status().commit)

    def _leadership(self, change: LeaderChange) -> None:
        before = self._last
        self._last = change
        self._status_dirty = True
        now = time.monotonic()
        fields = {"term": change.term, "role": _role_name(change.role), "leader": change.leader}
        if change.role is StateRole.CANDIDATE and before.role is not StateRole.CANDIDATE:
            self._stats["elections_started"] += 1
            # Why: how long since the last leader was heard (an election under CPU load
            # shows a gap just over the election timeout; a crashed leader a long one).
            known = self._known_leader
            heard = self.last_contact.get(known) if known and known != self.node_id else None
            why = ("no other leader known" if heard is None else
                   f"leader {known} last heard {1000 * (now - heard):.0f} ms ago")
            log.info("election started for term %d (%s)", change.term, why,
                     extra={"fields": fields})
            self._event("election", f"node {self.node_id} started an election for term "
                                    f"{change.term} ({why})", term=change.term)
        if change.role is StateRole.LEADER and before.role is not StateRole.LEADER:
            self._stats["elections_won"] += 1
            self._map_dirty = True
            # A new leader owes the swarm a current assignment (LeaderAssignment).
            self._assigned_version = -1
            self._flight_map_changed()
            log.info("became leader in term %d", change.term, extra={"fields": fields})
            self._event("leader", f"node {self.node_id} is leader in term {change.term}",
                        term=change.term)
        if change.leader != 0:
            self._known_leader = change.leader
        if change.leader != before.leader and change.leader != 0:
            self.service.on_leader_change()
            self._stats["leader_changes"] += 1
            log.info("leader is now node %d (term %d)", change.leader, change.term,
                     extra={"fields": fields})
            self._leader_changes.append(now)
            while self._leader_changes and now - self._leader_changes[0] > ELECTION_ALERT_WINDOW_S:
                self._leader_changes.popleft()
            if (len(self._leader_changes) >= ELECTION_ALERT_COUNT
                    and now - self._last_alert > ELECTION_ALERT_WINDOW_S):
                self._last_alert = now
                text = (f"{len(self._leader_changes)} leader changes in the last "
                        f"{ELECTION_ALERT_WINDOW_S:g} s: elections too often (links lossy, "
                        f"election timeout {self.config.timing.election_timeout_ms} ms too "
                        "short for them, or a node overloaded?)")
                log.warning(text, extra={"fields": fields})
                self._event("alert", text, term=change.term)

    def _event(self, kind: str, text: str, **fields: Any) -> None:
        body = {"v": 1, "t": int(time.time() * 1000), "node": self.node_id, "kind": kind,
                "text": text, **fields}
        self.bus.publish(topics.events(self.swarm), json.dumps(body).encode(), qos=1)

    # -- reads and status --------------------------------------------------------------

    def map_sha256(self) -> str:
        """SHA-256 of the state machine's snapshot (map or register, and the session
        table), cached per applied index: registrations, refused commands and cached
        retries change the session table without changing the map version."""
        applied = self.driver.applied
        if self._map_hash[0] != applied:
            self._map_hash = (applied, hashlib.sha256(self.fsm.snapshot()).hexdigest())
        return self._map_hash[1]

    def assignment_status(self) -> dict[str, Any]:
        """The committed assignment as this node holds it (cached per map version):
        its epoch, whether it is current, and its hash (equal on every node whatever
        its floating point: issue 13). Only with the map."""
        assert self.map is not None
        version = self.map.version
        if self._assignment_doc[0] != version:
            view = self.map.view()
            committed = view.assignment
            self._assignment_doc = (version, {
                "epoch": None if committed is None else committed.epoch,
                "map_epoch": view.assignment_epoch,
                "current": view.assignment_is_current,
                "sha256": assignment_hash(view)})
        return self._assignment_doc[1]

    def status(self) -> dict[str, Any]:
        """This node's status (docs/protocol.md, "Node status")."""
        st = self.driver.raw.status()
        now = time.monotonic()
        body: dict[str, Any] = {
            "v": 1, "node": self.node_id, "name": self.config.node.name, "online": True,
            "t": int(time.time() * 1000), "role": _role_name(st.role), "term": st.term,
            "leader": st.lead, "commit": st.commit, "applied": self.driver.applied,
            "last_index": st.last_index, "map_version": self.machine.version,
            "map_sha256": self.map_sha256(), "state_machine": self.machine.name,
            "voters": list(st.conf_state.voters),
            "elections_started": self._stats["elections_started"],
            "leader_changes": self._stats["leader_changes"],
            "profile": self.config.timing.profile,
            "link_score": self.link.score, "link": self.link.as_status(),
            "score_transfers": st.score_transfers,
            "contact_ms": {str(n): int((now - t) * 1000)
                           for n, t in sorted(self.last_contact.items())},
            # Lets an operator see that every node accepts the next key before any seals
            # with it (docs/protocol.md, "Key rotation").
            "keys": {"seal": self.keyring.sealing.key_id.hex(),
                     "accept": [k.key_id.hex()
                                for k in self.keyring.opening_keys(time.time())]},
        }
        if self.map is not None:
            body["assignment"] = self.assignment_status()
        if self.flight is not None:
            body["fc"] = self.flight.status()
        if st.progress is not None:
            body["peers"] = {
                str(n): {"match": p.match, "lag": max(0, st.last_index - p.match),
                         "state": p.state.value,
                         "last_contact_ms": (int((now - self.last_contact[n]) * 1000)
                                             if n in self.last_contact else None)}
                for n, p in sorted(st.progress.items()) if n != self.node_id}
        if st.link_scores is not None:
            # What the followers last reported (consensus/leadership.py decides on these).
            body["link_scores"] = {str(n): v / MAX_LINK_SCORE for n, v in st.link_scores.items()}
        return body

    def _update_link(self, now: float) -> None:
        """Probe the broker, recompute this node's link score and hand it to the core
        (node thread: it owns the RawNode); narrate a score-driven hand-over."""
        # No probes while disconnected: nobody hears this node's score then anyway, and a
        # start before the first connection is no evidence of a lossy link. Probes lost
        # in flight when the connection drops time out and count.
        payload = self.probe.due(now) if self.bus.connected else None
        if payload is not None and not self.bus.publish(topics.ping(self.swarm, self.node_id),
                                                        payload, qos=0):
            self.probe.send_failed()
        if now < self._link_due:
            return
        self._link_due = now + LINK_SCORE_PERIOD_S
        radio = source = None
        if self.flight is not None:
            before = self.radio.source
            radio = self.radio.update(now, self.flight.vehicle.link_quality(),
                                      self.flight.fc_connected)
            source = self.radio.source
            if source != before:
                self._radio_source_changed(before, source)
        rtt, loss = self.probe.figures(now)
        score = link_score(radio, rtt, loss, self._link_policy)
        if score != self.link.score or source != self.link.radio_source:
            self._status_dirty = True
        if score != self.link.score:
            self.driver.raw.set_link_score(score)
        self.link = LinkFigures(score, radio, rtt, loss, source)
        transfers = self.driver.raw.score_transfers
        if transfers != self._score_transfers:
            self._score_transfers = transfers
            st = self.driver.raw.status()
            # The core remembers the target: by now the transfer may be over and, while
            # the target's election runs, no leader known here (lead 0).
            to = st.score_transfer_target
            theirs = (st.link_scores or {}).get(to)
            text = (f"node {self.node_id} hands leadership to node {to}: a better link "
                    f"(score {score} here"
                    f"{'' if theirs is None else f', {theirs / MAX_LINK_SCORE:g} there'})")
            log.info(text)
            self._event("transfer", text, to=to, term=st.term)

    def _radio_source_changed(self, before: str, now: str) -> None:
        """Say when ``radio = "auto"`` decides (docs/agent.md, ``[leadership] radio``)."""
        if now == "absent":
            text = (f"node {self.node_id}: no RADIO_STATUS in {self.radio.detect_s:g} s of "
                    "flight-controller link: no telemetry radio in the path, the link score "
                    "comes from the broker link alone (set [leadership] radio = \"none\" to "
                    "say so, or \"radio_status\" to require a radio)")
            log.warning(text)
            self._event("radio", text, radio_source=now)
        elif now == "radio_status" and before == "absent":
            # A radio after all (powered up late): worth telling; the usual first report
            # while detecting is not.
            text = (f"node {self.node_id}: RADIO_STATUS heard after all: the link score "
                    "includes the radio again")
            log.warning(text)
            self._event("radio", text, radio_source=now)

    def _periodic(self, now: float) -> None:
        self._update_link(now)
        if self.flight is not None and self.machine.version != self._flight_version:
            self._flight_map_changed()  # held back until caught up (see there)
        if (self._status_dirty and now - self._status_last >= self._status_gap) \
                or now - self._status_last >= STATUS_PERIOD_S:
            self._status_dirty = False
            self._status_last = time.monotonic()
            started = time.thread_time()
            self.bus.publish(topics.status(self.swarm, self.node_id),
                             json.dumps(self.status()).encode(), qos=1, retain=True)
            self._update_metrics()
            self._status_gap = _derived_gap(STATUS_MIN_INTERVAL_S, started)
            if self.trace is not None:
                self.trace.mark("status_begin", started)
                self.trace.mark("status_end")
        if (self._map_dirty and self._last.role is StateRole.LEADER
                and now - self._map_last >= self._map_gap):
            self._map_dirty = False
            self._map_last = time.monotonic()
            started = time.thread_time()
            doc = self.machine.document()
            if doc is not None:  # None: the register publishes no retained map
                doc.update(version=self.machine.version, term=self._last.term,
                           node=self.node_id)
                self.bus.publish(topics.map_topic(self.swarm),
                                 json.dumps(doc, separators=(",", ":")).encode(), qos=1,
                                 retain=True)
            self._map_gap = _derived_gap(MAP_MIN_INTERVAL_S, started)
        if now >= self._floors_due:
            self._floors_due = now + FLOORS_CHECKPOINT_S
            try:
                self.floor_store.save(self.opener.floors())
            except OSError as exc:
                log.warning("cannot checkpoint replay floors: %s", exc)
        self.heap_trim.note(now, self.driver.applied, self.inbox.large_bytes())

    def _update_metrics(self) -> None:
        st = self.driver.raw.status()
        counts = self.driver.counts
        bus = self.bus.stats()
        dropped = {f"publish_{r.value}": n for r, n in bus.drops.items()}
        dropped.update({f"reply_{r.value}": n for r, n in self.client_bus.stats().drops.items()})
        dropped.update(self.inbox.dropped)
        if counts["inbox full"]:
            dropped["driver_inbox_full"] = counts["inbox full"]
        if self._stats["replies_unsendable"]:
            dropped["reply_unsendable"] = self._stats["replies_unsendable"]
        for reason, n in self.transport.dropped.items():
            dropped[f"send_{reason}"] = n
        rejected = {r.value: n for r, n in self.opener.rejected().items()}
        invalid = sum(n for k, n in counts.items() if k.startswith("rejected "))
        if invalid:
            rejected["invalid_message"] = invalid
        if bus.oversized_received:
            rejected["oversized_received"] = bus.oversized_received
        svc = self.service.stats
        replies = dict(svc.replies)
        with self._unqueued_lock:
            for outcome, n in self._unqueued_replies.items():
                replies[outcome] = replies.get(outcome, 0) + n
        self.metrics.snapshot = MetricsSnapshot(
            term=st.term, role=_role_name(st.role), leader=st.lead, commit=st.commit,
            applied=self.driver.applied, last_index=st.last_index,
            map_version=self.machine.version,
            elections_started=self._stats["elections_started"],
            elections_won=self._stats["elections_won"],
            leader_changes=self._stats["leader_changes"],
            raft_messages_sent=self.transport.sent,
            raft_messages_received=self._stats["raft_received"],
            raft_dropped=dropped, raft_rejected=rejected,
            broker_connected=self.bus.connected, broker_reconnects=bus.reconnects,
            broker_failovers=bus.failovers, client_requests=dict(svc.requests),
            client_replies=dict(replies), client_pending=self.service.pending(),
            snapshots_taken=counts["snapshots taken"],
            snapshots_installed=counts["snapshots installed"],
            link_score=self.link.score,
            broker_rtt_s=None if self.link.broker_rtt_ms is None else self.link.broker_rtt_ms / 1000,
            broker_probe_loss=self.link.broker_loss, score_transfers=st.score_transfers)

    # -- shutdown ----------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Answer what is pending, say we are offline, make state durable, close."""
        log.info("shutting down")
        try:
            self.service.fail_all(ErrorCode.TIMEOUT, f"node {self.node_id} is shutting down: "
                                  "outcome unknown; retry (another node will answer)")
            self._flush_replies()
            self.bus.publish(topics.status(self.swarm, self.node_id), self._offline_payload(),
                             qos=1, retain=True)
            try:
                self.floor_store.save(self.opener.floors())
            except OSError as exc:
                log.warning("cannot checkpoint replay floors: %s", exc)
            if self.assigner is not None:
                self.assigner.close()
            if self.flight is not None:
                self.flight.close()
            self.driver.stop()
            self.storage.close()
            if self.trace is not None:
                try:
                    self.trace.write()
                except OSError as exc:
                    log.warning("cannot write the latency trace: %s", exc)
            # The replies and the offline status must reach the broker before the
            # DISCONNECT (which makes the broker discard the Will): wait until it has
            # acknowledged the last of them, bounded (a dead broker cannot hold us).
            for bus in (self.client_bus, self.bus):
                if not bus.flush(SHUTDOWN_FLUSH_S):
                    log.warning("the broker did not acknowledge the last messages within %g s",
                                SHUTDOWN_FLUSH_S)
                bus.close()
        finally:
            self.metrics.close()
            if self._lock is not None:
                self._lock.release()
            log.info("stopped")
