"""The RawNode contract: Ready/Advance, input validation, determinism."""

from __future__ import annotations

import random

import pytest

from consensus import (
    Config,
    ConfigError,
    ConfState,
    Entry,
    InvalidMessage,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    StateRole,
)
from consensus.types import Snapshot, SnapshotMeta

CS = ConfState.of([1, 2, 3])


def _node(i: int = 1, seed: int = 0, **kw) -> tuple[RawNode, MemoryStorage]:
    s = MemoryStorage(CS)
    return RawNode(Config(id=i, rng=random.Random(seed), **kw), s), s


def test_ready_must_be_advanced_before_the_next_ready():
    n, _ = _node()
    n.campaign()
    rd = n.ready()
    with pytest.raises(RuntimeError):
        n.ready()
    assert not n.has_ready()  # nothing new is offered while a Ready is outstanding
    with pytest.raises(RuntimeError):
        n.advance(type(rd)(None, None, (), None, (), (), ()))
    n.advance(rd)


def test_ready_carries_the_vote_to_persist_with_the_vote_requests_it_justifies():
    n, _ = _node(pre_vote=False)
    n.campaign()
    rd = n.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == 1 and rd.hard_state.term == 1
    assert rd.must_sync
    assert {m.type for m in rd.messages} == {MessageType.VOTE}
    assert rd.soft_state is not None and rd.soft_state.role is StateRole.CANDIDATE


def test_commit_only_change_does_not_require_fsync():
    n, s = _node(i=2)
    n.step(Message(MessageType.APPEND, to=2, frm=1, term=1, index=0, log_term=0,
                   entries=(Entry(1, 1),), commit=0))
    rd = n.ready()
    s.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
    n.advance(rd)
    n.step(Message(MessageType.HEARTBEAT, to=2, frm=1, term=1, commit=1))
    rd = n.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 1
    assert not rd.must_sync and rd.committed_entries == (Entry(1, 1),)


@pytest.mark.parametrize("msg, why", [
    (Message(MessageType.APPEND, to=2, frm=1, term=1), "delivered to node 1"),
    (Message(MessageType.APPEND, to=1, frm=1, term=1), "this node"),
    (Message(MessageType.APPEND, to=1, frm=2, term=0), "must carry a term"),
    (Message(MessageType.PROPOSE, to=1, frm=2, term=3, entries=(Entry(0, 0),)), "term 0"),
    (Message(MessageType.APPEND, to=1, frm=2, term=1, index=5,
             entries=(Entry(1, 7),)), "valid log suffix"),
    (Message(MessageType.APPEND, to=1, frm=2, term=1, entries=(Entry(2, 1),)),
     "valid log suffix"),
    (Message(MessageType.VOTE, to=1, frm=2, term=1, entries=(Entry(1, 1),)), "no entries"),
    (Message(MessageType.SNAPSHOT, to=1, frm=2, term=1, snapshot=Snapshot(SnapshotMeta(0, 0))),
     "impossible"),
    (Message(MessageType.HEARTBEAT, to=1, frm=2, term=1, snapshot=Snapshot()), "no snapshot"),
    (Message(MessageType.READ_INDEX, to=1, frm=2), "context"),
])
def test_invalid_messages_are_rejected_and_change_nothing(msg, why):
    n, _ = _node()
    before = n.status()
    with pytest.raises(InvalidMessage, match=why):
        n.step(msg)
    assert n.status() == before and not n.has_ready()


def test_config_is_validated():
    for kw in (dict(id=0), dict(id=1, election_tick=1, heartbeat_tick=1),
               dict(id=1, max_inflight_msgs=0), dict(id=1, max_size_per_msg=0),
               dict(id=1, snapshot_chunk_bytes=0)):
        with pytest.raises(ConfigError):
            Config(**kw)


def test_same_inputs_same_outputs():
    def transcript(seed: int) -> list:
        n, s = _node(seed=seed)
        out = []
        for _ in range(40):
            n.tick()
            while n.has_ready():
                rd = n.ready()
                s.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
                out.append((rd.hard_state, rd.messages))
                n.advance(rd)
        return out

    assert transcript(7) == transcript(7)
    assert transcript(7) != transcript(8)
