"""The authenticated Raft envelope, sans-I/O: bytes in, messages (or a reason) out.

One envelope carries one or more Raft messages from one sender to one receiver
(``swarm/<swarm>/raft/<receiver>``), or a leader's heartbeats to every follower at once
(a broadcast envelope, receiver BROADCAST = 0, on ``swarm/<swarm>/raft-all``). Layout,
all integers big-endian::

    offset size field
    0      1    version      1
    1      1    flags        0, or FLAG_NO_HURRY (any other bit is rejected)
    2      4    key_id       SwarmKey.key_id of the key that made the tag
    6      4    sender       Raft node id, 1..2^31-1
    10     4    receiver     Raft node id, 1..2^31-1, or 0 (BROADCAST)
    14     8    epoch        the sender's restart epoch (persisted, see replay.py)
    22     8    counter      per-sender counter within the epoch, from 1
    30     n    payload      msgpack array of 1..MAX_MESSAGES binaries, each one
                             consensus.codec.encode_message(m) with m.frm == sender
                             and m.to == receiver (broadcast: HEARTBEAT
                             messages, each m.to a node other than sender)
    30+n   32   tag          HMAC-SHA256(key, DOMAIN || swarm id || 0x00 || bytes 0..30+n)

The tag covers the whole header (so sender, receiver, epoch and counter cannot be
changed), the payload, and the swarm id (not sent: a key reused by two swarms still
cannot carry traffic from one into the other). It is checked, in constant time, before a
single payload byte is parsed. (epoch, counter) is a 128-bit sequence number that never
repeats for a sender: the epoch is claimed durably at every start of the sender, so a
restarted sender's counter starting again at 1 is still fresh, and a drone needs no
real-time clock (a Raspberry Pi has none).

The receiver keeps, per sender, the highest (epoch, counter) accepted and a window of
``window`` counters below it (the RFC 4303 §3.4.3 / RFC 6479 anti-replay bitmap), so the
reordering a broker failover can cause is tolerated while every duplicate is refused. An
older epoch is refused outright. The receiver persists its per-sender floor when an epoch
advances (before the messages are handed on) and at checkpoints, so its own restart does
not reopen old epochs (replay.py).

A broadcast envelope saves a leader one seal and one publish per follower and heartbeat
round (heartbeats are most of an idle leader's sends): the messages inside are the very
heartbeats it would have sent one by one (each its own ``to`` and its own ``commit``,
capped at that follower's match), and a receiver steps only those addressed to it. Only
HEARTBEAT messages may travel so (anything else, or one to the sender itself, is
``misaddressed``), and a receiver refuses a broadcast of its own (``wrong_receiver``).
Authentication and replay protection are those of every envelope: the receiver 0 is
under the tag, and the counter comes from the sender's one sequence (the receivers'
windows see gaps where the sender's other envelopes went, as they always do).

``FLAG_NO_HURRY`` says the envelope carries only what the receiver may handle at its
next turn rather than at once: heartbeat acknowledgements without a read context. Raft
uses them only to see that a follower is alive (CheckQuorum) and how far it is, and the
agent's node thread steps every queued message after the ticks due when it arrived
(docs/agent.md, "Ticks"), so handling one at the leader's next heartbeat tick leaves the
core's state exactly as handling it on arrival would. The receiver's network thread
reads the flag (:func:`no_hurry`) before the envelope is authenticated, only to decide
whether to wake the node thread; a forged flag therefore only spares a wake-up for a
forgery that is then dropped. The flag is covered by the tag like the rest of the header.

Every rejection is returned as a :class:`Rejected` with a :class:`RejectReason` and
counted; nothing here raises on input from the wire and a rejected envelope changes no
state. Not thread-safe: one thread (the one that owns the RawNode) opens envelopes.
"""

from __future__ import annotations

import enum
import hmac
import struct
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import msgpack

from consensus.codec import DecodeError, decode_message, encode_message
from consensus.types import MAX_NODE_ID, Message, MessageType

from .keys import Keyring, SwarmKey
from .topics import check_node_id, check_swarm_id

__all__ = [
    "BROADCAST",
    "DEFAULT_MAX_ENVELOPE_BYTES",
    "DEFAULT_REPLAY_WINDOW",
    "ENVELOPE_OVERHEAD",
    "EnvelopeOpener",
    "EnvelopeSealer",
    "EnvelopeTooLarge",
    "FLAG_NO_HURRY",
    "Keyring",
    "MAX_MESSAGES",
    "Opened",
    "RejectReason",
    "Rejected",
    "VERSION",
    "claimed_sender",
    "no_hurry",
]

VERSION = 1
_HEADER = struct.Struct(">BB4sIIQQ")
_TAG_BYTES = 32
#: Bytes an envelope adds around its payload.
ENVELOPE_OVERHEAD = _HEADER.size + _TAG_BYTES
#: Default cap on one envelope, header and tag included. The core's messages are bounded
#: by Config.max_size_per_msg (1 MiB by default) and snapshot_chunk_bytes (256 KiB); one
#: message that does not fit alone cannot be sent (EnvelopeTooLarge), so keep
#: max_size_per_msg comfortably below this. The broker's max_packet_size is set above it.
DEFAULT_MAX_ENVELOPE_BYTES = 2 * 1024 * 1024
#: Counters below the highest accepted one that may still arrive late (reordering).
DEFAULT_REPLAY_WINDOW = 1024
#: Messages in one envelope at most (a Ready rarely holds more than a few per peer).
MAX_MESSAGES = 4096
_DOMAIN = b"wildfire-swarm raft envelope v1\x00"
#: Header flag: the receiver may handle this envelope at its next turn (module docstring).
FLAG_NO_HURRY = 0x01
_FLAGS = FLAG_NO_HURRY
_HEARTBEAT = MessageType.HEARTBEAT
_HEARTBEAT_RESP = MessageType.HEARTBEAT_RESP
#: The receiver of a broadcast envelope (module docstring): no node has id 0.
BROADCAST = 0
_U64 = 2**64 - 1


class RejectReason(enum.Enum):
    """Why an envelope was dropped. Values are metric label values; never rename."""

    OVERSIZED = "oversized"            # longer than the configured maximum
    GARBLED = "garbled"                # shorter than a header + tag, or not bytes
    BAD_VERSION = "bad_version"        # unknown version or an unknown flag
    BAD_HEADER = "bad_header"          # sender/receiver not node ids, counter 0
    WRONG_RECEIVER = "wrong_receiver"  # addressed to another node
    UNKNOWN_KEY = "unknown_key"        # key_id of no key we hold (or one past its overlap)
    BAD_MAC = "bad_mac"                # the tag does not verify: forged or corrupted
    STALE_EPOCH = "stale_epoch"        # from an epoch older than the sender's latest
    REPLAYED = "replayed"              # counter already seen, or below the window
    BAD_PAYLOAD = "bad_payload"        # authentic, but not a valid batch of messages
    MISADDRESSED = "misaddressed"      # authentic, but a message's frm/to differ from the header


@dataclass(frozen=True, slots=True)
class Opened:
    """An authentic, fresh envelope and the messages it carried."""

    sender: int
    epoch: int
    counter: int
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A dropped envelope: ``reason`` for counting, ``detail`` for a log line."""

    reason: RejectReason
    detail: str


class EnvelopeTooLarge(ValueError):
    """A single message that cannot fit in one envelope (raised by the sealer: a
    local configuration error, never input from the wire)."""


def no_hurry(data: bytes) -> bool:
    """Whether a received (not yet authenticated) envelope says it may wait for the
    receiver's next turn. A hint for scheduling only: opening checks it with the rest."""
    return len(data) > 1 and data[1] == FLAG_NO_HURRY


def claimed_sender(data: bytes) -> int | None:
    """The sender a received (not yet authenticated) envelope claims, or None if it is
    too short to claim one. A hint only (dropping a node's own broadcasts echoed by a
    broker without MQTT 5's No Local): opening checks it with the rest."""
    return int.from_bytes(data[6:10], "big") if len(data) >= _HEADER.size else None


def _may_wait(messages: Sequence[Message]) -> bool:
    """Heartbeat acknowledgements without a read context (a ReadIndex round waits on
    those that carry one): nothing the receiver does with them is due before its next
    tick (module docstring)."""
    return all(m.type is _HEARTBEAT_RESP and not m.context for m in messages)


def _mac_prefix(swarm: str) -> bytes:
    """What every tag of ``swarm`` absorbs before the envelope (domain separation);
    sealers and openers build it once."""
    return _DOMAIN + swarm.encode("ascii") + b"\x00"


def _tag(key: SwarmKey, prefix: bytes, signed: bytes | memoryview) -> bytes:
    mac = key.mac_after(prefix)
    mac.update(signed)
    return mac.digest()


class EnvelopeSealer:
    """Seals messages from ``sender``. ``epoch`` must be freshly claimed for this run
    of the sender (replay.claim_epoch); counters then run from 1."""

    def __init__(self, swarm: str, sender: int, keyring: Keyring, epoch: int, *,
                 max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES) -> None:
        self.swarm = check_swarm_id(swarm)
        self.sender = check_node_id(sender)
        self._mac_prefix = _mac_prefix(self.swarm)
        if type(epoch) is not int or not 1 <= epoch <= _U64:
            raise ValueError(f"epoch must be an integer in [1, 2**64), got {epoch!r}")
        if max_bytes < ENVELOPE_OVERHEAD + 64:
            raise ValueError(f"max_bytes {max_bytes} is too small for an envelope")
        self.keyring = keyring
        self.epoch = epoch
        self.max_bytes = max_bytes
        self._counter = 0

    @property
    def counter(self) -> int:
        """The counter of the last envelope sealed (0 before the first)."""
        return self._counter

    def seal(self, receiver: int, messages: Sequence[Message]) -> list[bytes]:
        """Envelopes carrying ``messages`` (all to ``receiver``, from this sender) in
        order, as few as fit under ``max_bytes``. Raises ValueError for a message of
        another sender or receiver, and EnvelopeTooLarge for one that fits nowhere."""
        check_node_id(receiver)
        for m in messages:
            if m.frm != self.sender or m.to != receiver:
                raise ValueError(f"message {m.type.name} frm={m.frm} to={m.to} does not "
                                 f"belong in an envelope {self.sender} -> {receiver}")
        return self._seal(receiver, messages, FLAG_NO_HURRY if _may_wait(messages) else 0)

    def seal_broadcast(self, messages: Sequence[Message]) -> list[bytes]:
        """Broadcast envelopes (receiver BROADCAST, for every node of the swarm) carrying
        ``messages``: heartbeats of this sender, each to its own receiver, who keeps its
        own and ignores the others' (module docstring). Raises ValueError for any other
        message."""
        for m in messages:
            if m.frm != self.sender or m.type is not _HEARTBEAT or m.to == self.sender:
                raise ValueError(f"message {m.type.name} frm={m.frm} to={m.to} does not "
                                 f"belong in a broadcast envelope of {self.sender}")
        return self._seal(BROADCAST, messages, 0)

    def _seal(self, receiver: int, messages: Sequence[Message], flags: int) -> list[bytes]:
        out: list[bytes] = []
        batch: list[bytes] = []
        size = 0
        budget = self.max_bytes - ENVELOPE_OVERHEAD - 5   # 5: msgpack array header
        for m in messages:
            blob = encode_message(m)
            cost = len(blob) + 5                            # 5: msgpack bin header
            if cost > budget:
                raise EnvelopeTooLarge(
                    f"one message of {len(blob)} bytes exceeds the envelope limit of "
                    f"{self.max_bytes} bytes; lower the core's max_size_per_msg / "
                    "snapshot_chunk_bytes or raise the envelope maximum")
            if batch and (size + cost > budget or len(batch) == MAX_MESSAGES):
                out.append(self._seal_one(receiver, batch, flags))
                batch, size = [], 0
            batch.append(blob)
            size += cost
        if batch:
            out.append(self._seal_one(receiver, batch, flags))
        return out

    def _seal_one(self, receiver: int, blobs: list[bytes], flags: int) -> bytes:
        if self._counter == _U64:
            raise OverflowError("envelope counter exhausted; restart to claim a new epoch")
        self._counter += 1
        payload: bytes = msgpack.packb(blobs, use_bin_type=True)
        key = self.keyring.sealing
        signed = _HEADER.pack(VERSION, flags, key.key_id, self.sender, receiver,
                              self.epoch, self._counter) + payload
        return signed + _tag(key, self._mac_prefix, signed)


@dataclass(slots=True)
class _Window:
    """Replay state for one sender: highest (epoch, counter) accepted and a bitmap of
    the ``size`` counters at and below it (bit i set: counter top - i was seen)."""

    epoch: int
    top: int
    seen: int

    def verdict(self, epoch: int, counter: int, size: int) -> Rejected | None:
        if epoch < self.epoch:
            return Rejected(RejectReason.STALE_EPOCH,
                            f"epoch {epoch} is older than the sender's epoch {self.epoch}")
        if epoch > self.epoch or counter > self.top:
            return None
        back = self.top - counter
        if back >= size:
            return Rejected(RejectReason.REPLAYED,
                            f"counter {counter} is below the replay window (top {self.top})")
        if (self.seen >> back) & 1:
            return Rejected(RejectReason.REPLAYED, f"counter {counter} was already accepted")
        return None

    def accept(self, epoch: int, counter: int, size: int) -> None:
        mask = (1 << size) - 1
        if epoch > self.epoch:
            self.epoch, self.top, self.seen = epoch, counter, 1
        elif counter > self.top:
            self.seen = ((self.seen << (counter - self.top)) | 1) & mask
            self.top = counter
        else:
            self.seen |= 1 << (self.top - counter)


@dataclass
class _Counts:
    accepted: int = 0
    rejected: Counter[RejectReason] = field(default_factory=Counter)


class EnvelopeOpener:
    """Verifies envelopes addressed to ``receiver``.

    ``floors`` is the persisted replay state (``{sender: (epoch, counter)}``, from
    replay.FloorStore.load()): every (epoch, counter) at or below a sender's floor is
    refused. ``on_epoch_advance`` is called with the new floors whenever an accepted
    envelope starts a newer epoch of its sender, *before* :meth:`open` returns it, so the
    caller can persist them durably (FloorStore.save); if it raises, the envelope is
    rejected as not accepted and the exception propagates (a disk error is not input).
    ``clock`` gives the time the keyring's ``previous_until`` is compared with (the
    agent passes the wall clock: the end of a key overlap is a calendar time, so that it
    survives restarts)."""

    def __init__(self, swarm: str, receiver: int, keyring: Keyring, *,
                 floors: Mapping[int, tuple[int, int]] | None = None,
                 on_epoch_advance: Callable[[dict[int, tuple[int, int]]], None] | None = None,
                 clock: Callable[[], float],
                 max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES,
                 window: int = DEFAULT_REPLAY_WINDOW) -> None:
        self.swarm = check_swarm_id(swarm)
        self.receiver = check_node_id(receiver)
        self._mac_prefix = _mac_prefix(self.swarm)
        if not 1 <= window <= 65536:
            raise ValueError("window must be in [1, 65536]")
        self.keyring = keyring
        self.max_bytes = max_bytes
        self.window = window
        self._clock = clock
        self._on_epoch_advance = on_epoch_advance
        self._windows: dict[int, _Window] = {}
        for sender, (epoch, counter) in (floors or {}).items():
            check_node_id(sender)
            # Everything at or below the floor counts as seen.
            self._windows[sender] = _Window(epoch, counter, (1 << window) - 1)
        self._counts = _Counts()

    # -- counters -------------------------------------------------------------------

    @property
    def accepted(self) -> int:
        return self._counts.accepted

    def rejected(self) -> dict[RejectReason, int]:
        """Rejections so far, by reason (reasons never seen are absent)."""
        return dict(self._counts.rejected)

    def floors(self) -> dict[int, tuple[int, int]]:
        """Current replay floors, to persist at a checkpoint (FloorStore.save)."""
        return {s: (w.epoch, w.top) for s, w in self._windows.items()}

    # -- opening --------------------------------------------------------------------

    def open(self, data: object) -> Opened | Rejected:
        """Verify one received envelope. Never raises on its content."""
        verdict = self._check(data)
        if isinstance(verdict, Rejected):
            self._counts.rejected[verdict.reason] += 1
        else:
            self._counts.accepted += 1
        return verdict

    def _check(self, data: object) -> Opened | Rejected:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            return Rejected(RejectReason.GARBLED, f"payload is {type(data).__name__}")
        raw = bytes(data)
        if len(raw) > self.max_bytes:
            return Rejected(RejectReason.OVERSIZED,
                                f"{len(raw)} bytes > limit {self.max_bytes}")
        if len(raw) < ENVELOPE_OVERHEAD + 1:
            return Rejected(RejectReason.GARBLED, f"only {len(raw)} bytes")
        version, flags, key_id, sender, receiver, epoch, counter = _HEADER.unpack_from(raw)
        if version != VERSION or flags & ~_FLAGS:
            return Rejected(RejectReason.BAD_VERSION,
                                f"version {version} flags {flags:#x} (this node speaks {VERSION})")
        if not (1 <= sender <= MAX_NODE_ID and 0 <= receiver <= MAX_NODE_ID) or counter == 0 \
                or epoch == 0:
            return Rejected(RejectReason.BAD_HEADER,
                                f"sender {sender} receiver {receiver} epoch {epoch} counter {counter}")
        if receiver != self.receiver and (receiver != BROADCAST or sender == self.receiver):
            return Rejected(RejectReason.WRONG_RECEIVER,
                                f"addressed to node {receiver}, this is node {self.receiver}")
        key = self.keyring.opening_key(key_id, self._clock())
        if key is None:
            return Rejected(RejectReason.UNKNOWN_KEY,
                                f"key id {key_id.hex()} from node {sender} is not a key in force")
        body = len(raw) - _TAG_BYTES
        if not hmac.compare_digest(_tag(key, self._mac_prefix, memoryview(raw)[:body]), raw[body:]):
            return Rejected(RejectReason.BAD_MAC, f"tag does not verify (claimed sender {sender})")
        win = self._windows.get(sender)
        if win is not None:
            stale = win.verdict(epoch, counter, self.window)
            if stale is not None:
                return stale
        messages = self._decode_payload(raw[_HEADER.size:body], sender, receiver == BROADCAST)
        if isinstance(messages, Rejected):
            return messages
        # Authentic, fresh and well formed: only now does state change.
        if win is None or epoch > win.epoch:
            new = dict(self.floors())
            new[sender] = (epoch, counter)
            if self._on_epoch_advance is not None:
                self._on_epoch_advance(new)
            if win is None:
                self._windows[sender] = _Window(epoch, counter, 1)
                return Opened(sender, epoch, counter, messages)
        win.accept(epoch, counter, self.window)
        return Opened(sender, epoch, counter, messages)

    def _decode_payload(self, payload: bytes, sender: int,
                        broadcast: bool) -> tuple[Message, ...] | Rejected:
        """The messages for this receiver: all of them, or of a broadcast envelope the
        heartbeats addressed to it (each message is checked all the same)."""
        try:
            blobs = msgpack.unpackb(payload, raw=False, use_list=True, max_bin_len=len(payload),
                                    max_array_len=MAX_MESSAGES, max_str_len=0, max_map_len=0,
                                    max_ext_len=0)
        except Exception as exc:  # msgpack raises assorted errors on malformed input
            return Rejected(RejectReason.BAD_PAYLOAD, f"not a msgpack array ({type(exc).__name__})")
        if not isinstance(blobs, list) or not blobs or not all(type(b) is bytes for b in blobs):
            return Rejected(RejectReason.BAD_PAYLOAD, "expected a non-empty array of binaries")
        out: list[Message] = []
        for blob in blobs:
            try:
                m = decode_message(blob)
            except DecodeError as exc:
                return Rejected(RejectReason.BAD_PAYLOAD, str(exc))
            if broadcast:
                if m.frm != sender or m.type is not _HEARTBEAT or m.to == sender:
                    return Rejected(RejectReason.MISADDRESSED,
                                    f"{m.type.name} frm={m.frm} to={m.to} inside a broadcast "
                                    f"envelope of {sender}")
                if m.to != self.receiver:
                    continue
            elif m.frm != sender or m.to != self.receiver:
                return Rejected(RejectReason.MISADDRESSED,
                                    f"{m.type.name} frm={m.frm} to={m.to} inside an envelope "
                                    f"{sender} -> {self.receiver}")
            out.append(m)
        return tuple(out)
