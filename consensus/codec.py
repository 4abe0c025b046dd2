"""msgpack encoding of the core's value types, with strict validation on decode.

Used by storage (entries, hard state, snapshots on disk) and by the bus (messages on
the wire). Every ``decode_*`` either returns a fully valid object or raises
:class:`DecodeError`: wrong container shapes, wrong types, out-of-range numbers, unknown
enum values, trailing bytes and unknown format versions are all rejected, and nothing
half-built escapes. Encodings are positional arrays led by a format version so that a
future change is detected rather than misread.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, TypeVar

import msgpack

from .types import (
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

__all__ = [
    "DecodeError",
    "FORMAT_VERSION",
    "MESSAGE_SCORE_VERSION",
    "encode_entry",
    "decode_entry",
    "encode_hard_state",
    "decode_hard_state",
    "encode_conf_state",
    "decode_conf_state",
    "encode_conf_change",
    "decode_conf_change",
    "encode_snapshot",
    "decode_snapshot",
    "encode_snapshot_meta",
    "decode_snapshot_meta",
    "encode_message",
    "decode_message",
]

#: Bumped on any incompatible change to an encoding below.
FORMAT_VERSION = 1
#: Messages carrying a link-quality score are version 2 (a 15th field). A message
#: without one is still written as version 1, so nodes that predate scores read it; both
#: versions are read.
MESSAGE_SCORE_VERSION = 2

_T = TypeVar("_T")
_E = TypeVar("_E", bound=enum.IntEnum)


class DecodeError(ValueError):
    """Bytes that are not a valid encoding of the expected type."""


# -- plain-Python forms ------------------------------------------------------------


def _entry_obj(e: Entry) -> list[Any]:
    return [e.term, e.index, int(e.kind), e.data]


def _conf_state_obj(cs: ConfState) -> list[Any]:
    return [list(cs.voters), list(cs.learners)]


def _meta_obj(m: SnapshotMeta) -> list[Any]:
    return [m.index, m.term, _conf_state_obj(m.conf_state)]


def _snapshot_obj(s: Snapshot) -> list[Any]:
    return [_meta_obj(s.meta), s.data]


def _pack(tag: str, body: list[Any]) -> bytes:
    out: bytes = msgpack.packb([FORMAT_VERSION, tag, *body], use_bin_type=True)
    return out


# -- strict readers -------------------------------------------------------------------


def _unpack(data: object, tag: str, nfields: int, versions: dict[int, int] | None = None) -> list[Any]:
    """The fields of one ``tag`` record; ``versions`` maps each accepted format version to
    its field count (default: FORMAT_VERSION with ``nfields``)."""
    versions = versions or {FORMAT_VERSION: nfields}
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{tag}: expected bytes, got {type(data).__name__}")
    try:
        obj = msgpack.unpackb(
            bytes(data), raw=False, strict_map_key=True, use_list=True,
        )
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        raise DecodeError(f"{tag}: not a single msgpack value ({exc})") from None
    except Exception as exc:  # msgpack raises assorted errors on truncated input
        raise DecodeError(f"{tag}: malformed msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, list) or not obj:
        raise DecodeError(f"{tag}: expected an array")
    if type(obj[0]) is not int or obj[0] not in versions:
        raise DecodeError(f"{tag}: unsupported format version {obj[0]!r}")
    expected = versions[obj[0]] + 2
    if len(obj) != expected:
        raise DecodeError(f"{tag}: expected an array of {expected} items")
    if obj[1] != tag:
        raise DecodeError(f"expected a {tag!r} record, got {obj[1]!r}")
    return obj[2:]


def _enum(name: str, cls: type[_E], v: Any, what: str) -> _E:
    # bool is an int subclass (True would read as 1); every other field's type is
    # checked by its dataclass.
    if type(v) is not int:
        raise DecodeError(f"{name}: expected an integer, got {type(v).__name__}")
    member = cls._value2member_map_.get(v)
    if member is None:
        raise DecodeError(f"{name}: unknown {what} {v}")
    return member  # type: ignore[return-value]  # the member itself, as cls(v) returns


def _list(name: str, v: Any, n: int | None = None) -> list[Any]:
    if not isinstance(v, list) or (n is not None and len(v) != n):
        shape = f"an array of {n}" if n is not None else "an array"
        raise DecodeError(f"{name}: expected {shape}")
    return v


def _build(name: str, ctor: Callable[[], _T]) -> _T:
    # The dataclasses validate field types, ranges and invariants (types.py owns that);
    # surface their complaints as DecodeError.
    try:
        return ctor()
    except ValueError as exc:
        raise DecodeError(f"{name}: {exc}") from None


def _entry_from(v: Any) -> Entry:
    term, index, kind, data = _list("entry", v, 4)
    k = _enum("entry.kind", EntryKind, kind, "entry kind")
    return _build("entry", lambda: Entry(term, index, k, data))


def _conf_state_from(v: Any) -> ConfState:
    voters, learners = _list("conf_state", v, 2)
    vs = tuple(_list("conf_state.voters", voters))
    ls = tuple(_list("conf_state.learners", learners))
    return _build("conf_state", lambda: ConfState(vs, ls))


def _meta_from(v: Any) -> SnapshotMeta:
    index, term, cs = _list("snapshot_meta", v, 3)
    return _build("snapshot_meta", lambda: SnapshotMeta(index, term, _conf_state_from(cs)))


def _snapshot_from(v: Any) -> Snapshot:
    meta, data = _list("snapshot", v, 2)
    return _build("snapshot", lambda: Snapshot(_meta_from(meta), data))


# -- public API -----------------------------------------------------------------------


def encode_entry(e: Entry) -> bytes:
    return _pack("entry", _entry_obj(e))


def decode_entry(data: bytes) -> Entry:
    return _entry_from(_unpack(data, "entry", 4))


def encode_hard_state(hs: HardState) -> bytes:
    return _pack("hard_state", [hs.term, hs.vote, hs.commit])


def decode_hard_state(data: bytes) -> HardState:
    term, vote, commit = _unpack(data, "hard_state", 3)
    return _build("hard_state", lambda: HardState(term, vote, commit))


def encode_conf_state(cs: ConfState) -> bytes:
    return _pack("conf_state", _conf_state_obj(cs))


def decode_conf_state(data: bytes) -> ConfState:
    return _conf_state_from(_unpack(data, "conf_state", 2))


def encode_conf_change(cc: ConfChange) -> bytes:
    return _pack("conf_change", [int(cc.type), cc.node_id, cc.context])


def decode_conf_change(data: bytes) -> ConfChange:
    typ, node_id, context = _unpack(data, "conf_change", 3)
    t = _enum("conf_change.type", ConfChangeType, typ, "change type")
    return _build("conf_change", lambda: ConfChange(t, node_id, context))


def encode_snapshot_meta(m: SnapshotMeta) -> bytes:
    return _pack("snapshot_meta", _meta_obj(m))


def decode_snapshot_meta(data: bytes) -> SnapshotMeta:
    return _meta_from(_unpack(data, "snapshot_meta", 3))


def encode_snapshot(s: Snapshot) -> bytes:
    return _pack("snapshot", _snapshot_obj(s))


def decode_snapshot(data: bytes) -> Snapshot:
    return _snapshot_from(_unpack(data, "snapshot", 2))


_MESSAGE_FIELDS = 14
_MESSAGE_VERSIONS = {FORMAT_VERSION: _MESSAGE_FIELDS, MESSAGE_SCORE_VERSION: _MESSAGE_FIELDS + 1}


def encode_message(m: Message) -> bytes:
    body = [
        int(m.type), m.to, m.frm, m.term, m.log_term, m.index,
        [_entry_obj(e) for e in m.entries], m.commit, m.reject, m.reject_hint,
        None if m.snapshot is None else _snapshot_obj(m.snapshot),
        m.snapshot_offset, m.snapshot_done, m.context,
    ]
    if m.link_score is None:
        return _pack("message", body)
    out: bytes = msgpack.packb([MESSAGE_SCORE_VERSION, "message", *body, m.link_score], use_bin_type=True)
    return out


def decode_message(data: bytes) -> Message:
    fields = _unpack(data, "message", _MESSAGE_FIELDS, _MESSAGE_VERSIONS)
    link_score = fields.pop() if len(fields) > _MESSAGE_FIELDS else None
    (typ, to, frm, term, log_term, index, entries, commit, reject, reject_hint,
     snapshot, snapshot_offset, snapshot_done, context) = fields
    t = _enum("message.type", MessageType, typ, "message type")
    ents = tuple(map(_entry_from, _list("message.entries", entries)))
    snap = None if snapshot is None else _snapshot_from(snapshot)
    return _build("message", lambda: Message(
        type=t, to=to, frm=frm, term=term, log_term=log_term, index=index, entries=ents,
        commit=commit, reject=reject, reject_hint=reject_hint, snapshot=snap,
        snapshot_offset=snapshot_offset, snapshot_done=snapshot_done, context=context,
        link_score=link_score,
    ))
