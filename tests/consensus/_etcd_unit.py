"""Single-node helpers for tests ported from etcd-io/raft (raft_paper_test.go,
raft_test.go): build one RawNode over a prepared MemoryStorage, feed it hand-made
messages, and read back what it sends, following the Ready contract (persist, then
send, then apply, then advance)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterable

from consensus import Config, ConfState, Entry, MemoryStorage, Message, MessageType, RawNode
from consensus.types import HardState, ReadState, StateRole


@dataclass
class Unit:
    node: RawNode
    storage: MemoryStorage
    applied: list[Entry] = field(default_factory=list)
    reads: list[ReadState] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.node.id

    def status(self):
        return self.node.status()

    @property
    def role(self) -> StateRole:
        return self.node.status().role

    @property
    def term(self) -> int:
        return self.node.status().term

    def drain(self) -> list[Message]:
        """Process every pending Ready; return the messages it would send."""
        out: list[Message] = []
        for _ in range(100):
            if not self.node.has_ready():
                return out
            rd = self.node.ready()
            self.storage.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
            out.extend(rd.messages)
            self.applied.extend(rd.committed_entries)
            self.reads.extend(rd.read_states)
            self.node.advance(rd)
        raise AssertionError("Ready never settles")

    def step(self, type: MessageType, frm: int, **kw) -> list[Message]:
        self.node.step(Message(type, to=self.id, frm=frm, **kw))
        return self.drain()

    def tick(self, n: int = 1) -> list[Message]:
        out: list[Message] = []
        for _ in range(n):
            self.node.tick()
            out.extend(self.drain())
        return out

    def log_terms(self) -> list[int]:
        s = self.storage
        return [e.term for e in s.entries(s.first_index(), s.last_index() + 1)]


def ents(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(t, start + k) for k, t in enumerate(terms)]


def unit(id: int = 1, peers: Iterable[int] = (1, 2, 3), *, log: Iterable[Entry] = (),
         term: int = 0, vote: int = 0, commit: int = 0, learners: Iterable[int] = (),
         seed: int = 0, **cfg: Any) -> Unit:
    s = MemoryStorage(ConfState.of(list(peers), list(learners)))
    log = list(log)
    if log or term:
        s.apply_ready(HardState(term, vote, commit), log, None)
    c: dict[str, Any] = dict(election_tick=10, heartbeat_tick=1, pre_vote=False,
                             check_quorum=False)
    c.update(cfg)
    n = RawNode(Config(id=id, rng=random.Random(seed), **c), s)
    u = Unit(n, s)
    u.drain()
    return u


def make_leader(u: Unit) -> list[Message]:
    """Elect ``u`` by granting it every vote it asks for; return what it sends as leader."""
    u.node.campaign()
    msgs = u.drain()
    for m in msgs:
        if m.type is MessageType.PRE_VOTE:
            u.node.step(Message(MessageType.PRE_VOTE_RESP, u.id, m.to, term=m.term))
    msgs = u.drain() or msgs
    out: list[Message] = []
    for m in msgs:
        if m.type is MessageType.VOTE and u.role is not StateRole.LEADER:
            out.extend(u.step(MessageType.VOTE_RESP, m.to, term=m.term))
    assert u.role is StateRole.LEADER, u.status()
    return out


def of(msgs: Iterable[Message], t: MessageType, to: int | None = None) -> list[Message]:
    return [m for m in msgs if m.type is t and (to is None or m.to == to)]
