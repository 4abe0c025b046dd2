"""The wire/disk codec: round trips and strict rejection of malformed input."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import (
    DecodeError,
    decode_conf_change,
    decode_entry,
    decode_hard_state,
    decode_message,
    decode_snapshot,
    encode_conf_change,
    encode_entry,
    encode_hard_state,
    encode_message,
    encode_snapshot,
)
from consensus.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)

u64 = st.integers(0, 2**64 - 1)
node = st.integers(1, 2**31 - 1)
entries = st.builds(Entry, u64, u64, st.sampled_from(EntryKind), st.binary(max_size=64))
conf = st.builds(ConfState.of, st.sets(st.integers(1, 50), max_size=5)).map(
    lambda cs: ConfState(cs.voters, ()))
snapshots = st.builds(Snapshot, st.builds(SnapshotMeta, u64, u64, conf), st.binary(max_size=64))
messages = st.builds(
    Message, st.sampled_from([t for t in MessageType if t is not MessageType.SNAPSHOT]), node, node, u64, u64, u64,
    st.lists(entries, max_size=4).map(tuple), u64, st.booleans(), u64,
    st.none(), u64, st.booleans(), st.binary(max_size=16),
)
snapshot_messages = st.builds(
    Message, st.just(MessageType.SNAPSHOT), node, node, u64, snapshot=snapshots,
    snapshot_offset=u64, snapshot_done=st.booleans())


@settings(max_examples=200, deadline=None)
@given(messages)
def test_message_round_trip(m):
    assert decode_message(encode_message(m)) == m


@settings(max_examples=50, deadline=None)
@given(snapshot_messages)
def test_snapshot_message_round_trip(m):
    assert decode_message(encode_message(m)) == m


@settings(max_examples=100, deadline=None)
@given(snapshots)
def test_snapshot_round_trip(s):
    assert decode_snapshot(encode_snapshot(s)) == s


def test_small_types_round_trip():
    e = Entry(3, 9, EntryKind.CONF_CHANGE, b"x")
    assert decode_entry(encode_entry(e)) == e
    hs = HardState(4, 2, 7)
    assert decode_hard_state(encode_hard_state(hs)) == hs
    cc = ConfChange(ConfChangeType.REMOVE_NODE, 3, b"ctx")
    assert decode_conf_change(encode_conf_change(cc)) == cc


def _raw(*items):
    return msgpack.packb(list(items), use_bin_type=True)


@pytest.mark.parametrize("data, why", [
    (b"", "msgpack"),
    (b"\xc1", "msgpack"),
    (_raw(1, "message"), "array"),
    (_raw(2, "hard_state", 1, 0, 0), "version"),
    (_raw(1, "entry", 1, 0, 0), "hard_state"),
    (_raw(1, "hard_state", -1, 0, 0), "hard_state"),
    (_raw(1, "hard_state", 1, 2**31, 0), "node id"),
    (_raw(1, "hard_state", 1, "2", 0), "integer"),
    (_raw(1, "hard_state", True, 0, 0), "integer"),
    (encode_hard_state(HardState(1, 1, 1)) + b"\x00", "single"),
])
def test_bad_hard_state_bytes_raise_decode_error(data, why):
    with pytest.raises(DecodeError, match=why):
        decode_hard_state(data)


def test_unknown_message_type_and_bad_fields_are_rejected():
    good = msgpack.unpackb(encode_message(Message(MessageType.APPEND, 2, 1, 1)), raw=False)
    for pos, value, why in [(2, 99, "unknown message type"), (3, 0, "node id"),
                            (4, -5, "node id"), (10, 1, "boolean"), (8, {"a": 1}, "array"),
                            (15, "text", "bytes"), (12, [1], "array")]:
        bad = list(good)
        bad[pos] = value
        with pytest.raises(DecodeError, match=why):
            decode_message(msgpack.packb(bad, use_bin_type=True))


def test_conf_state_must_be_sorted_disjoint():
    with pytest.raises(DecodeError):
        decode_snapshot(_raw(1, "snapshot", [1, 1, [[2, 1], []]], b""))
    with pytest.raises(DecodeError):
        decode_snapshot(_raw(1, "snapshot", [1, 1, [[1, 2], [2]]], b""))


def test_decode_never_accepts_non_bytes():
    with pytest.raises(DecodeError):
        decode_message("not bytes")  # type: ignore[arg-type]
