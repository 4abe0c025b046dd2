"""swarm.bus.envelope: what is sealed opens to exactly the same messages; anything
forged, replayed, oversized or mangled is rejected with a reason, counted, and changes
no replay state."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.codec import encode_message
from consensus.types import Entry, EntryKind, Message, MessageType
from swarm.bus.envelope import (
    BROADCAST,
    ENVELOPE_OVERHEAD,
    EnvelopeOpener,
    EnvelopeSealer,
    EnvelopeTooLarge,
    FLAG_NO_HURRY,
    Keyring,
    Opened,
    RejectReason,
    Rejected,
    claimed_sender,
    no_hurry,
)
from swarm.bus.keys import SwarmKey

KEY = SwarmKey(bytes(range(32)))
OTHER = SwarmKey(bytes(range(1, 33)))
SWARM = "fire"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def vote(frm: int = 1, to: int = 2, term: int = 5) -> Message:
    return Message(MessageType.VOTE, to=to, frm=frm, term=term, log_term=4, index=9)


def append(frm: int = 1, to: int = 2, n: int = 3, size: int = 10) -> Message:
    ents = tuple(Entry(term=5, index=10 + i, kind=EntryKind.NORMAL, data=bytes([i % 256]) * size)
                 for i in range(n))
    return Message(MessageType.APPEND, to=to, frm=frm, term=5, log_term=5, index=9,
                   entries=ents, commit=9)


def make(sender=1, receiver=2, epoch=1, keyring=None, opener_keyring=None, floors=None,
         clock=None, persisted=None, window=1024, **kw):
    sealer = EnvelopeSealer(SWARM, sender, keyring or Keyring(KEY), epoch, **kw)
    opener = EnvelopeOpener(
        SWARM, receiver, opener_keyring or Keyring(KEY), floors=floors, clock=clock or Clock(),
        on_epoch_advance=None if persisted is None else persisted.append, window=window, **kw)
    return sealer, opener


def opened(result) -> Opened:
    assert isinstance(result, Opened), result
    return result


def reason(result) -> RejectReason:
    assert isinstance(result, Rejected), result
    return result.reason


def test_sealed_messages_open_to_exactly_what_was_sealed():
    sealer, opener = make()
    msgs = [vote(), append(), Message(MessageType.HEARTBEAT, to=2, frm=1, term=5, context=b"r1")]
    [env] = sealer.seal(2, msgs)
    got = opened(opener.open(env))
    assert got.messages == tuple(msgs)
    assert (got.sender, got.epoch, got.counter) == (1, 1, 1)
    assert opener.accepted == 1 and opener.rejected() == {}


def test_large_batches_split_into_envelopes_under_the_limit_in_order():
    sealer, opener = make(max_bytes=4096)
    msgs = [append(n=4, size=200) for _ in range(10)]
    envs = sealer.seal(2, msgs)
    assert len(envs) > 1 and all(len(e) <= 4096 for e in envs)
    out = [m for e in envs for m in opened(opener.open(e)).messages]
    assert out == msgs


def test_a_message_too_large_for_any_envelope_is_a_local_error():
    sealer, _ = make(max_bytes=1024)
    with pytest.raises(EnvelopeTooLarge, match="max_size_per_msg"):
        sealer.seal(2, [append(n=1, size=2000)])


def test_sealer_refuses_messages_of_another_sender_or_receiver():
    sealer, _ = make()
    with pytest.raises(ValueError, match="does not belong"):
        sealer.seal(2, [vote(frm=3)])
    with pytest.raises(ValueError, match="does not belong"):
        sealer.seal(3, [vote(to=2)])


def test_replays_are_rejected_and_reordering_within_the_window_is_accepted():
    sealer, opener = make(window=8)
    envs = [sealer.seal(2, [vote(term=t)])[0] for t in range(1, 12)]
    opened(opener.open(envs[5]))
    opened(opener.open(envs[3]))            # late, inside the window
    assert reason(opener.open(envs[3])) is RejectReason.REPLAYED
    assert reason(opener.open(envs[5])) is RejectReason.REPLAYED
    opened(opener.open(envs[10]))
    assert reason(opener.open(envs[1])) is RejectReason.REPLAYED   # fell below the window
    opened(opener.open(envs[4]))            # 10 - 4 < 8: still inside
    assert opener.rejected() == {RejectReason.REPLAYED: 3}


def test_a_restarted_sender_claims_a_new_epoch_and_old_epochs_are_refused():
    persisted: list = []
    old, opener = make(epoch=1, persisted=persisted)
    old_envs = [old.seal(2, [vote(term=t)])[0] for t in (1, 2)]
    opened(opener.open(old_envs[0]))
    new = EnvelopeSealer(SWARM, 1, Keyring(KEY), 2)
    opened(opener.open(new.seal(2, [vote(term=3)])[0]))   # counter restarts at 1: fresh
    assert reason(opener.open(old_envs[1])) is RejectReason.STALE_EPOCH
    # Each epoch advance was handed over for durable storage before being accepted.
    assert persisted == [{1: (1, 1)}, {1: (2, 1)}]


def test_persisted_floors_survive_a_receiver_restart():
    sealer, opener = make()
    envs = [sealer.seal(2, [vote(term=t)])[0] for t in range(1, 5)]
    for e in envs[:3]:
        opened(opener.open(e))
    floors = opener.floors()
    assert floors == {1: (1, 3)}
    _, restarted = make(floors=floors)
    for e in envs[:3]:
        assert reason(restarted.open(e)) is RejectReason.REPLAYED
    opened(restarted.open(envs[3]))


def test_a_persistence_failure_propagates_and_accepts_nothing():
    def fail(_floors):
        raise OSError("disk full")
    sealer = EnvelopeSealer(SWARM, 1, Keyring(KEY), 1)
    opener = EnvelopeOpener(SWARM, 2, Keyring(KEY), clock=Clock(), on_epoch_advance=fail)
    env = sealer.seal(2, [vote()])[0]
    with pytest.raises(OSError):
        opener.open(env)
    assert opener.floors() == {}


def test_forged_and_foreign_envelopes_are_rejected_by_reason():
    sealer, opener = make()
    env = bytearray(sealer.seal(2, [vote()])[0])
    stranger = EnvelopeSealer(SWARM, 1, Keyring(OTHER), 1).seal(2, [vote()])[0]
    assert reason(opener.open(stranger)) is RejectReason.UNKNOWN_KEY
    # A stranger who copies our key id still cannot make the tag.
    forged = bytearray(stranger)
    forged[2:6] = KEY.key_id
    assert reason(opener.open(bytes(forged))) is RejectReason.BAD_MAC
    # Same key, another swarm: the swarm id is inside the tag.
    other_swarm = EnvelopeSealer("other", 1, Keyring(KEY), 1).seal(2, [vote()])[0]
    assert reason(opener.open(other_swarm)) is RejectReason.BAD_MAC
    # Changing the claimed sender breaks the tag.
    moved = bytearray(env)
    struct.pack_into(">I", moved, 6, 3)
    assert reason(opener.open(bytes(moved))) is RejectReason.BAD_MAC
    to_other = EnvelopeSealer(SWARM, 1, Keyring(KEY), 1).seal(3, [vote(to=3)])[0]
    assert reason(opener.open(to_other)) is RejectReason.WRONG_RECEIVER
    assert reason(opener.open(b"\x00" * 10)) is RejectReason.GARBLED
    assert reason(opener.open("text")) is RejectReason.GARBLED
    assert reason(opener.open(b"\x02" + bytes(env[1:]))) is RejectReason.BAD_VERSION
    assert reason(opener.open(b"x" * (opener.max_bytes + 1))) is RejectReason.OVERSIZED
    assert opener.floors() == {}            # nothing rejected touched the replay state
    opened(opener.open(bytes(env)))         # and the genuine one still goes through


def _seal_raw(payload: bytes, sender: int = 1, receiver: int = 2, counter: int = 1) -> bytes:
    """An authentic envelope around an arbitrary payload (a key holder with a bug)."""
    from swarm.bus.envelope import _HEADER, VERSION, _mac_prefix, _tag
    signed = _HEADER.pack(VERSION, 0, KEY.key_id, sender, receiver, 1, counter) + payload
    return signed + _tag(KEY, _mac_prefix(SWARM), signed)


def test_authentic_but_malformed_payloads_are_rejected_without_state_change():
    _, opener = make()
    cases = {
        RejectReason.BAD_PAYLOAD: [
            b"\xc1", msgpack.packb([]), msgpack.packb({"a": 1}), msgpack.packb(["str"]),
            msgpack.packb([b"not a message"]), msgpack.packb([encode_message(vote())]) + b"x",
        ],
        RejectReason.MISADDRESSED: [
            msgpack.packb([encode_message(vote(frm=3))]),
            msgpack.packb([encode_message(vote(to=4))]),
        ],
    }
    for want, payloads in cases.items():
        for i, p in enumerate(payloads):
            assert reason(opener.open(_seal_raw(p, counter=i + 1))) is want
    assert opener.floors() == {}
    assert opener.accepted == 0
    assert sum(opener.rejected().values()) == 8


# Key rotation from OTHER (old) to KEY (new), by phase (docs/protocol.md, "Key
# rotation"): 0 before, 1 accepting the next key, 2 sealing with it in the overlap, 3 after.
_UNTIL = 1000.0


def _phase_ring(phase: int) -> Keyring:
    return [Keyring(OTHER), Keyring(OTHER, next=KEY),
            Keyring(KEY, previous=OTHER, previous_until=_UNTIL), Keyring(KEY)][phase]


def _talks(sender_phase: int, receiver_phase: int, now: float = 0.0) -> bool:
    sealer = EnvelopeSealer(SWARM, 1, _phase_ring(sender_phase), 1)
    clock = Clock()
    clock.now = now
    opener = EnvelopeOpener(SWARM, 2, _phase_ring(receiver_phase), clock=clock)
    verdict = opener.open(sealer.seal(2, [vote()])[0])
    if isinstance(verdict, Rejected):
        assert verdict.reason is RejectReason.UNKNOWN_KEY, verdict
        return False
    return True


@pytest.mark.parametrize("n", [3, 4, 5])
def test_a_rolling_rotation_keeps_every_pair_of_nodes_talking_at_every_step(n):
    """Drones restarted one at a time, phase by phase: at every step each node reads
    every other node's traffic (so a majority never splits off, whatever n)."""
    phases = [0] * n
    for target in (1, 2, 3):
        for node in range(n):
            phases[node] = target
            for a in range(n):
                for b in range(n):
                    assert _talks(phases[a], phases[b]), (phases, a, b)


def test_sealing_with_the_new_key_before_every_node_accepts_it_is_one_way():
    """Why phase 2 waits for phase 1 everywhere: a node not yet told of the next key
    cannot read a node sealing with it (the one-way rotation this scheme replaces)."""
    assert not _talks(2, 0) and _talks(0, 2)
    assert not _talks(3, 0) and not _talks(0, 3)


def test_the_previous_key_opens_until_previous_until_and_never_after():
    assert _talks(1, 2, now=_UNTIL - 0.001)
    assert not _talks(1, 2, now=_UNTIL)
    assert not _talks(0, 2, now=_UNTIL + 1e6)
    assert _talks(3, 2, now=_UNTIL + 1e6)   # the new key keeps opening
    ring = _phase_ring(2)
    assert ring.opening_keys(_UNTIL - 1) == (KEY, OTHER)
    assert ring.opening_keys(_UNTIL) == (KEY,)
    assert ring.phase == "overlap"
    assert (_phase_ring(0).phase, _phase_ring(1).phase) == ("steady", "accept-next")
    assert _phase_ring(1).opening_keys(1e12) == (OTHER, KEY)   # phase 1 has no end


def test_a_keyring_refuses_ambiguous_rotations():
    with pytest.raises(ValueError, match="previous_until"):
        Keyring(KEY, previous=OTHER)
    with pytest.raises(ValueError, match="previous_until"):
        Keyring(KEY, previous_until=5.0)
    with pytest.raises(ValueError, match="one rotation at a time"):
        Keyring(KEY, next=OTHER, previous=SwarmKey(b"\x07" * 32), previous_until=5.0)
    for kw in ({"next": KEY}, {"previous": KEY, "previous_until": 5.0}):
        with pytest.raises(ValueError, match="the same key"):
            Keyring(KEY, **kw)
    assert "secret" not in repr(_phase_ring(2)) and KEY.secret.hex() not in repr(_phase_ring(2))


_messages = st.lists(
    st.builds(append, n=st.integers(0, 3), size=st.integers(0, 40)) | st.builds(vote, term=st.integers(0, 2**64 - 1)),
    min_size=1, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgs=_messages, data=st.data())
def test_fuzz_mutated_envelopes_are_rejected_or_open_to_exactly_what_was_sealed(msgs, data):
    sealer, opener = make()
    [env] = sealer.seal(2, msgs)
    mutation = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice", "none"]))
    buf = bytearray(env)
    if mutation == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] ^= data.draw(st.integers(1, 255))
    elif mutation == "truncate":
        del buf[data.draw(st.integers(0, len(buf) - 1)):]
    elif mutation == "extend":
        buf += data.draw(st.binary(min_size=1, max_size=16))
    elif mutation == "splice":
        i = data.draw(st.integers(0, len(buf)))
        buf[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    result = opener.open(bytes(buf))
    if isinstance(result, Opened):
        assert bytes(buf) == env and result.messages == tuple(msgs)
    else:
        assert bytes(buf) != env
        assert opener.floors() == {}
        # The unmutated envelope is still fresh: nothing was consumed.
        assert opened(opener.open(env)).messages == tuple(msgs)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=ENVELOPE_OVERHEAD + 200))
def test_fuzz_random_bytes_never_raise_and_never_open(blob):
    _, opener = make()
    assert isinstance(opener.open(blob), Rejected)
    assert opener.floors() == {}


def test_only_heartbeat_acknowledgements_without_a_read_context_say_they_may_wait():
    sealer, opener = make()
    ack = Message(MessageType.HEARTBEAT_RESP, to=2, frm=1, term=5, link_score=7)
    read_ack = Message(MessageType.HEARTBEAT_RESP, to=2, frm=1, term=5, context=b"read-1")
    lazy = sealer.seal(2, [ack, ack])[0]
    assert lazy[1] == FLAG_NO_HURRY and no_hurry(lazy)
    assert opened(opener.open(lazy)).messages == (ack, ack)   # authentic like any other
    for batch in ([read_ack], [ack, vote()], [append()], [vote()]):
        env = sealer.seal(2, batch)[0]
        assert env[1] == 0 and not no_hurry(env)
        opened(opener.open(env))
    # The flag is under the tag: setting or clearing it is a forgery; unknown bits are refused.
    env = sealer.seal(2, [vote()])[0]
    assert reason(opener.open(env[:1] + bytes([FLAG_NO_HURRY]) + env[2:])) is RejectReason.BAD_MAC
    assert reason(opener.open(env[:1] + b"\x02" + env[2:])) is RejectReason.BAD_VERSION
    assert not no_hurry(b"") and not no_hurry(b"\x01")


def heartbeat(to: int, commit: int, frm: int = 1, context: bytes = b"") -> Message:
    return Message(MessageType.HEARTBEAT, to=to, frm=frm, term=5, commit=commit, context=context)


def test_a_broadcast_heartbeat_round_opens_at_each_follower_to_its_own_heartbeat():
    sealer = EnvelopeSealer(SWARM, 1, Keyring(KEY), 1)
    beats = [heartbeat(2, 7), heartbeat(3, 9, context=b"read-4"), heartbeat(4, 9)]
    [env] = sealer.seal_broadcast(beats)
    assert struct.unpack_from(">I", env, 10)[0] == BROADCAST and claimed_sender(env) == 1
    assert not no_hurry(env)
    for follower, want in ((2, beats[0]), (3, beats[1]), (4, beats[2])):
        opener = EnvelopeOpener(SWARM, follower, Keyring(KEY), clock=Clock())
        got = opened(opener.open(env))
        # Each follower steps only its own heartbeat, with its own (capped) commit.
        assert got.messages == (want,) and got.sender == 1
        # Replay protection as for any envelope: the same broadcast again is refused.
        assert reason(opener.open(env)) is RejectReason.REPLAYED
    # A node the round does not address holds an authentic envelope with nothing for it.
    bystander = EnvelopeOpener(SWARM, 5, Keyring(KEY), clock=Clock())
    assert opened(bystander.open(env)).messages == ()
    # The sender refuses its own broadcast (a broker echoing it back over MQTT 3.1.1).
    own = EnvelopeOpener(SWARM, 1, Keyring(KEY), clock=Clock())
    assert reason(own.open(env)) is RejectReason.WRONG_RECEIVER
    assert own.floors() == {}


def test_broadcast_counters_share_the_senders_sequence_with_its_other_envelopes():
    sealer, opener = make()
    direct = sealer.seal(2, [vote()])[0]
    [bcast] = sealer.seal_broadcast([heartbeat(2, 1), heartbeat(3, 1)])
    later = sealer.seal(2, [vote()])[0]
    # Out of order within the window: all fresh once, none twice.
    for env in (later, direct, bcast):
        opened(opener.open(env))
    for env in (later, direct, bcast):
        assert reason(opener.open(env)) is RejectReason.REPLAYED


def test_only_heartbeats_of_the_sender_to_other_nodes_travel_in_a_broadcast():
    sealer = EnvelopeSealer(SWARM, 1, Keyring(KEY), 1)
    for bad in ([vote()], [append()], [heartbeat(2, 1, frm=3)], [heartbeat(1, 1)],
                [Message(MessageType.HEARTBEAT_RESP, to=2, frm=1, term=5)]):
        with pytest.raises(ValueError, match="broadcast"):
            sealer.seal_broadcast(bad)
    # A key holder with a bug (or a rogue that somehow signs) cannot smuggle anything
    # else through a broadcast either: the receiver refuses the whole envelope.
    _, opener = make()
    for i, payload in enumerate([
            msgpack.packb([encode_message(vote())]),                        # not a heartbeat
            msgpack.packb([encode_message(append())]),
            msgpack.packb([encode_message(heartbeat(2, 1, frm=3))]),       # another sender's
            msgpack.packb([encode_message(heartbeat(3, 1)), encode_message(vote(to=3))]),
            msgpack.packb([encode_message(heartbeat(1, 1))])]):            # to the sender
        assert reason(opener.open(_seal_raw(payload, receiver=BROADCAST, counter=i + 1))) \
            is RejectReason.MISADDRESSED
    assert opener.floors() == {} and opener.accepted == 0


def test_forged_broadcasts_are_rejected_by_reason():
    sealer, opener = make()
    [env] = sealer.seal_broadcast([heartbeat(2, 3), heartbeat(3, 3)])
    stranger = EnvelopeSealer(SWARM, 1, Keyring(OTHER), 1).seal_broadcast([heartbeat(2, 3)])[0]
    assert reason(opener.open(stranger)) is RejectReason.UNKNOWN_KEY
    forged = bytearray(stranger)
    forged[2:6] = KEY.key_id
    assert reason(opener.open(bytes(forged))) is RejectReason.BAD_MAC
    # Readdressing a direct envelope to everyone (or a broadcast to one node) breaks the tag.
    direct = bytearray(sealer.seal(3, [vote(to=3)])[0])
    struct.pack_into(">I", direct, 10, BROADCAST)
    assert reason(opener.open(bytes(direct))) is RejectReason.BAD_MAC
    narrowed = bytearray(env)
    struct.pack_into(">I", narrowed, 10, 2)
    assert reason(opener.open(bytes(narrowed))) is RejectReason.BAD_MAC
    assert opener.floors() == {}
    assert opened(opener.open(env)).messages == (heartbeat(2, 3),)
    assert claimed_sender(b"short") is None
