"""A small deterministic network of RawNodes for scripted Raft scenarios.

Each node has a MemoryStorage that survives a 'crash' (the RawNode object is dropped
and rebuilt over the same storage, as a process restart would), a recording state
machine, and follows the Ready contract exactly: persist, then send, then restore /
apply, then advance. Messages travel through one FIFO queue; the script decides what
is delivered, dropped, duplicated, reordered or partitioned. Everything is seeded.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import msgpack

from consensus.config import Config
from consensus.rawnode import RawNode, Ready
from consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    ReadState,
    StateRole,
)
from consensus.storage import MemoryStorage


class RecordingFSM:
    """State machine that remembers every applied command (index, data)."""

    def __init__(self) -> None:
        self.applied: list[tuple[int, bytes]] = []

    def apply(self, index: int, data: bytes) -> bytes:
        self.applied.append((index, data))
        return b"ok"

    def snapshot(self) -> bytes:
        return msgpack.packb([[i, d] for i, d in self.applied], use_bin_type=True)

    def restore(self, data: bytes) -> None:
        self.applied = [(i, d) for i, d in msgpack.unpackb(data, raw=False)]

    def datas(self) -> list[bytes]:
        return [d for _, d in self.applied]


@dataclass
class NodeView:
    storage: MemoryStorage
    fsm: RecordingFSM
    node: RawNode | None
    read_states: list[ReadState] = field(default_factory=list)
    applied_index: int = 0


class Cluster:
    def __init__(self, ids: Iterable[int] | int, *, seed: int = 0, learners: Iterable[int] = (),
                 extra: Iterable[int] = (), fsm_factory: Callable[[], object] = RecordingFSM,
                 **cfg: Any) -> None:
        ids = list(range(1, ids + 1)) if isinstance(ids, int) else list(ids)
        learners = list(learners)
        self.rng = random.Random(seed)
        self.seed = seed
        self.cfg = dict(cfg)
        self.fsm_factory = fsm_factory
        #: Election Safety (§5.2): at most one leader per term, over the whole run.
        self.leader_of_term: dict[int, int] = {}
        self.conf = ConfState.of(ids, learners)
        self.views: dict[int, NodeView] = {}
        for i in [*ids, *learners]:
            self.views[i] = NodeView(MemoryStorage(self.conf), RecordingFSM(), None)
            self.views[i].node = self._make_node(i)
        for i in extra:
            # Not yet members: a joining node starts from the bootstrap configuration
            # and learns every later change from the leader's log or snapshot.
            self.views[i] = NodeView(MemoryStorage(self.conf), RecordingFSM(), None)
            self.views[i].node = self._make_node(i)
        self.queue: deque[Message] = deque()
        self.blocked: set[tuple[int, int]] = set()
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        #: Probability of also delivering a random message from the (recent) past: an
        #: arbitrarily delayed duplicate. Forwarded proposals are not replayed: they
        #: are at-least-once by design (client sessions deduplicate them).
        self.replay_rate = 0.0
        self.history: deque[Message] = deque(maxlen=2000)
        self.reorder = False
        self.sent: Counter[MessageType] = Counter()
        self.sent_total = 0
        self.results: dict[tuple[int, int], bytes] = {}
        #: Optional rewrite of each sent message: return it (maybe changed) or None to drop.
        self.filter: Callable[[Message], Message | None] | None = None

    # -- nodes ------------------------------------------------------------------

    def _make_node(self, i: int) -> RawNode:
        cfg: dict[str, Any] = dict(election_tick=10, heartbeat_tick=1)
        cfg.update(self.cfg)
        view = self.views[i]
        snap = view.storage.snapshot()
        view.fsm = self.fsm_factory()  # type: ignore[assignment]
        if not snap.is_empty():
            view.fsm.restore(snap.data)
        view.applied_index = snap.meta.index
        rng = random.Random(self.rng.random())
        return RawNode(Config(id=i, rng=rng, applied=snap.meta.index, **cfg), view.storage)

    def node(self, i: int) -> RawNode:
        n = self.views[i].node
        assert n is not None, f"node {i} is down"
        return n

    def live(self) -> list[int]:
        return [i for i, v in self.views.items() if v.node is not None]

    def crash(self, i: int) -> None:
        """Lose volatile state; keep what the storage has (it was durably written)."""
        self.views[i].node = None
        self.queue = deque(m for m in self.queue if m.to != i and m.frm != i)

    def restart(self, i: int) -> None:
        self.views[i].node = self._make_node(i)

    def restart_crashed(self) -> None:
        """Restart every node that is down, in id order."""
        for i in self.views:
            if self.views[i].node is None:
                self.restart(i)

    # -- network ------------------------------------------------------------------

    def isolate(self, i: int) -> None:
        for j in self.views:
            if j != i:
                self.blocked.add((i, j))
                self.blocked.add((j, i))

    def partition(self, *groups: Iterable[int]) -> None:
        sets = [set(g) for g in groups]
        self.blocked.clear()
        for a in self.views:
            for b in self.views:
                if a != b and not any(a in s and b in s for s in sets):
                    self.blocked.add((a, b))

    def heal(self) -> None:
        self.blocked.clear()

    def _enqueue(self, m: Message) -> None:
        self.sent[m.type] += 1
        self.sent_total += 1
        if (m.frm, m.to) in self.blocked:
            return
        if self.filter is not None:
            m2 = self.filter(m)
            if m2 is None:
                return
            m = m2
        if self.drop_rate and self.rng.random() < self.drop_rate:
            return
        self.queue.append(m)
        if self.dup_rate and self.rng.random() < self.dup_rate:
            self.queue.append(m)
        if self.replay_rate:
            if m.type is not MessageType.PROPOSE:
                self.history.append(m)
            if self.history and self.rng.random() < self.replay_rate:
                self.queue.append(self.history[self.rng.randrange(len(self.history))])

    # -- the driver loop, per node ----------------------------------------------------

    def process(self, i: int) -> None:
        v = self.views[i]
        n = v.node
        if n is None:
            return
        for _ in range(1000):
            if not n.has_ready():
                return
            rd = n.ready()
            if rd.soft_state is not None and rd.soft_state.role is StateRole.LEADER:
                t = n.status().term
                prev = self.leader_of_term.setdefault(t, i)
                assert prev == i, f"two leaders in term {t}: {prev} and {i}"
            where = self._interleave_point()
            if where == 0:
                self._interleave(i)
            v.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)  # 1 persist
            self._check_persisted(i, rd)
            for m in rd.messages:                                           # 2 send
                self._enqueue(m)
            if where == 1:
                self._interleave(i)
            if rd.snapshot is not None:                                     # 3 install
                v.fsm.restore(rd.snapshot.data)
                v.applied_index = rd.snapshot.meta.index
            for e in rd.committed_entries:                                  # 4 apply
                if e.kind is EntryKind.NORMAL and e.data:
                    result = v.fsm.apply(e.index, e.data)
                    self.results[(i, e.index)] = result
                v.applied_index = e.index
            v.read_states.extend(rd.read_states)                           # 5 reads
            if where == 2:
                self._interleave(i)
            n.advance(rd)                                                   # 6 ack
        raise AssertionError("Ready never settles")

    # Hooks for drivers that test the Ready contract itself (test_raft_etcd_ready.py).

    def _interleave_point(self) -> int:
        """Where, in handling one Ready, to feed inputs: 0 before persisting, 1 after
        sending, 2 after applying, -1 nowhere (this driver)."""
        return -1

    def _interleave(self, i: int) -> None:
        """Feed node ``i`` inputs between its ready() and advance()."""

    def _check_persisted(self, i: int, rd: Ready) -> None:
        """Called once ``rd`` is durable, before its messages leave."""

    def process_all(self) -> None:
        for i in sorted(self.views):
            self.process(i)

    def deliver_one(self) -> bool:
        if not self.queue:
            return False
        if self.reorder and len(self.queue) > 1:
            k = self.rng.randrange(len(self.queue))
            self.queue.rotate(-k)
            m = self.queue.popleft()
            self.queue.rotate(k)
        else:
            m = self.queue.popleft()
        n = self.views[m.to].node if m.to in self.views else None
        if n is None or (m.frm, m.to) in self.blocked:
            return True
        n.step(m)
        self.process(m.to)
        return True

    def stabilize(self, max_msgs: int = 100_000) -> None:
        """Deliver until no message is in flight (bounded)."""
        self.process_all()
        for _ in range(max_msgs):
            if not self.deliver_one():
                return
        raise AssertionError("network did not quiesce")

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            for i in sorted(self.views):
                node = self.views[i].node
                if node is not None:
                    node.tick()
            self.stabilize()

    def run_until(self, pred: Callable[[], bool], max_ticks: int = 1000) -> int:
        for t in range(max_ticks):
            if pred():
                return t
            self.tick()
        raise AssertionError(f"condition not reached within {max_ticks} ticks")

    # -- observations --------------------------------------------------------------------

    def leaders(self) -> list[int]:
        return [i for i in self.live()
                if self.node(i).status().role is StateRole.LEADER]

    def leader(self) -> int | None:
        """The leader of the highest term among live nodes, if exactly one claims it."""
        best = None
        for i in self.leaders():
            t = self.node(i).status().term
            if best is None or t > self.node(best).status().term:
                best = i
        return best

    def elect(self, max_ticks: int = 500) -> int:
        self.run_until(lambda: self.leader() is not None and self._leader_settled(), max_ticks)
        lead = self.leader()
        assert lead is not None
        return lead

    def elect_among(self, ids: Iterable[int], max_ticks: int = 500) -> int:
        """Run until one of ``ids`` leads (others may still believe they lead)."""
        ids = list(ids)
        self.run_until(lambda: any(
            self.views[i].node is not None
            and self.node(i).status().role is StateRole.LEADER for i in ids), max_ticks)
        return next(i for i in ids if self.views[i].node is not None
                    and self.node(i).status().role is StateRole.LEADER)

    def _leader_settled(self) -> bool:
        lead = self.leader()
        assert lead is not None
        st = self.node(lead).status()
        # Settled: the leader's no-op committed.
        return st.commit >= st.last_index or st.commit > 0 and st.commit == st.last_index

    def term(self, i: int) -> int:
        return self.node(i).status().term

    def propose(self, i: int, data: bytes) -> None:
        self.node(i).propose(data)
        self.process(i)

    def applied(self, i: int) -> list[bytes]:
        return self.views[i].fsm.datas()

    def log(self, i: int) -> list[Entry]:
        s = self.views[i].storage
        return s.entries(s.first_index(), s.last_index() + 1)

    def compact(self, i: int) -> None:
        """Snapshot node i's state machine at its applied index and compact (§7)."""
        v = self.views[i]
        idx = v.applied_index
        if idx <= v.storage.snapshot().meta.index:
            return
        v.storage.create_snapshot(idx, self.node(i).conf_state_at(idx), v.fsm.snapshot())
        v.storage.compact(idx)

    def check_state_machine_safety(self) -> None:
        """§5.4.3: no two nodes applied different commands at the same index."""
        seen: dict[int, bytes] = {}
        for i, v in self.views.items():
            for idx, data in v.fsm.applied:
                if idx in seen:
                    assert seen[idx] == data, f"node {i} applied {data!r} at {idx}, other {seen[idx]!r}"
                seen[idx] = data

    def check_log_matching(self) -> None:
        """§5.3 Log Matching: same index and term => same entry and same prefix."""
        logs = {i: {e.index: e for e in self.log(i)} for i in self.views}
        ids = list(logs)
        for a in ids:
            for b in ids:
                if a >= b:
                    continue
                common = set(logs[a]) & set(logs[b])
                for idx in sorted(common, reverse=True):
                    if logs[a][idx].term == logs[b][idx].term:
                        for k in common:
                            if k <= idx:
                                assert logs[a][k] == logs[b][k], (a, b, k)
                        break
