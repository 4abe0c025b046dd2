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


def test_leader_ignores_an_acknowledgement_of_entries_it_never_sent():
    n, s = _node(pre_vote=False)
    n.campaign()
    n.step(Message(MessageType.VOTE_RESP, to=1, frm=2, term=1))
    assert n.status().role is StateRole.LEADER
    rd = n.ready()
    s.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
    n.advance(rd)
    last = n.status().last_index
    n.step(Message(MessageType.APPEND_RESP, to=1, frm=2, term=1, index=last + 5))
    assert n.status().progress[2].match == 0
    n.step(Message(MessageType.APPEND_RESP, to=1, frm=2, term=1, index=last))
    assert n.status().progress[2].match == last


def test_random_well_formed_messages_never_crash_a_node():
    # Robustness: whatever a peer sends that passes validation, the node either acts
    # on it or ignores it; it never raises.
    kinds = list(MessageType)
    for seed in range(150):
        rng = random.Random(seed)
        n, s = _node(seed=seed, pre_vote=rng.random() < 0.5, check_quorum=rng.random() < 0.5)
        for _ in range(50):
            t = rng.choice(kinds)
            untermed = t in (MessageType.PROPOSE, MessageType.READ_INDEX,
                             MessageType.TRANSFER_LEADER)
            term = 0 if untermed else rng.randint(1, 5)
            # TRANSFER_LEADER's index names the target node.
            idx = rng.randint(1 if t is MessageType.TRANSFER_LEADER else 0, 10)
            log_term = rng.randint(0, term)
            ents: tuple = ()
            if t is MessageType.APPEND:
                ents = tuple(Entry(log_term, idx + 1 + j) for j in range(rng.randint(0, 3)))
            elif t in (MessageType.PROPOSE, MessageType.PROPOSE_RESP):
                ents = (Entry(0, 0, data=b"p"),)
            snap = None
            if t is MessageType.SNAPSHOT:
                snap = Snapshot(SnapshotMeta(rng.randint(1, 12), rng.randint(0, term), CS), b"ab")
            ctx = b"r" if t in (MessageType.READ_INDEX, MessageType.READ_INDEX_RESP) else \
                rng.choice([b"", b"c", b"transfer"])
            m = Message(t, 1, rng.choice([2, 3, 4]), term=term, log_term=log_term, index=idx,
                        entries=ents, commit=rng.randint(0, 12), reject=rng.random() < 0.3,
                        reject_hint=rng.randint(0, 10), snapshot=snap,
                        snapshot_offset=rng.choice([0, 2, 99]),
                        snapshot_done=rng.random() < 0.5, context=ctx)
            if rng.random() < 0.1:
                n.tick()
            elif rng.random() < 0.05:
                n.campaign()
            n.step(m)
            while n.has_ready():
                rd = n.ready()
                s.apply_ready(rd.hard_state, rd.entries, rd.snapshot)
                n.advance(rd)
