"""The MAVLink mission protocol as a sans-I/O state machine (h11 style).

One :class:`MissionTransfer` runs one operation at a time (upload, download or
clear) for one ``mission_type`` (mission, fence or rally) with one vehicle. It
never touches a socket or a clock: the caller feeds it the vehicle's messages as
typed events together with the current time (``now``, seconds, any monotonic
origin), calls :meth:`MissionTransfer.poll` when :attr:`MissionTransfer.deadline`
passes, and sends whatever :class:`Send` actions come back. The legal moves are
the table :data:`TRANSITIONS`; anything else is ignored and counted.

Behaviour follows the MAVLink mission protocol (https://mavlink.io/en/services/mission.html):

* Upload: send MISSION_COUNT; the vehicle pulls each item with MISSION_REQUEST_INT
  (ArduPilot uses the legacy MISSION_REQUEST: both are accepted and answered with
  MISSION_ITEM_INT); the vehicle ends with MISSION_ACK. Duplicate or out-of-order
  requests are answered again ("Mission items must be received in order ... the
  expected item should be re-requested" -- the vehicle is in charge of ordering).
* Download: send MISSION_REQUEST_LIST, receive MISSION_COUNT, request each item with
  MISSION_REQUEST_INT (legacy MISSION_ITEM answers accepted too), end by sending
  MISSION_ACK ACCEPTED.
* Clear: MISSION_CLEAR_ALL answered by MISSION_ACK.
* "Timeouts and Retries": resend after 1500 ms by default and after 250 ms when
  waiting for a mission item, at most 5 retries, then cancel -- a timeout is never
  reported as success. A vehicle that answers without progress (the same request
  again and again, or download items past the one requested) gets no more time than
  a silent one: with no new item requested or received for (retries + 1) timeouts,
  the operation is cancelled the same way, so it cannot be held open forever.
* "Errors/Completion": any MISSION_ACK other than ACCEPTED ends the operation and is
  surfaced as :class:`MissionResultError` naming the MAV_MISSION_RESULT. The one
  exception is MAV_MISSION_INVALID_SEQUENCE during an upload: ArduPilot answers an
  item with the wrong seq with that ACK and then re-requests the item it wants
  (observed on ArduPilot Copter SITL), and the spec calls out-of-sequence messages
  recoverable, so it is counted and the transfer continues.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Callable, Sequence, Union

from mavlink_bridge.plan import GLOBAL_FRAMES, MissionItem, MissionType

__all__ = [
    "MissionResult", "TransferTimeouts", "State", "Operation",
    "RequestReceived", "ItemReceived", "CountReceived", "AckReceived", "MissionEvent",
    "SendCount", "SendItem", "SendRequest", "SendRequestList", "SendAck", "SendClearAll",
    "Send", "MissionError", "MissionResultError", "MissionTimeoutError",
    "MissionProtocolError", "MissionTransfer", "TRANSITIONS", "legacy_item_to_item",
]


class MissionResult(enum.IntEnum):
    """MAV_MISSION_RESULT (common.xml), carried in MISSION_ACK.type."""

    ACCEPTED = 0
    ERROR = 1
    UNSUPPORTED_FRAME = 2
    UNSUPPORTED = 3
    NO_SPACE = 4
    INVALID = 5
    INVALID_PARAM1 = 6
    INVALID_PARAM2 = 7
    INVALID_PARAM3 = 8
    INVALID_PARAM4 = 9
    INVALID_PARAM5_X = 10
    INVALID_PARAM6_Y = 11
    INVALID_PARAM7 = 12
    INVALID_SEQUENCE = 13
    DENIED = 14
    OPERATION_CANCELLED = 15

    @property
    def mav_name(self) -> str:
        return f"MAV_MISSION_{self.name}"


_RESULT_TEXT = {
    MissionResult.ACCEPTED: "mission accepted OK",
    MissionResult.ERROR: "generic error / not accepting mission commands at all right now",
    MissionResult.UNSUPPORTED_FRAME: "coordinate frame is not supported",
    MissionResult.UNSUPPORTED: "command is not supported",
    MissionResult.NO_SPACE: "mission items exceed storage space",
    MissionResult.INVALID: "one of the parameters has an invalid value",
    MissionResult.INVALID_PARAM1: "param1 has an invalid value",
    MissionResult.INVALID_PARAM2: "param2 has an invalid value",
    MissionResult.INVALID_PARAM3: "param3 has an invalid value",
    MissionResult.INVALID_PARAM4: "param4 has an invalid value",
    MissionResult.INVALID_PARAM5_X: "x / param5 has an invalid value",
    MissionResult.INVALID_PARAM6_Y: "y / param6 has an invalid value",
    MissionResult.INVALID_PARAM7: "z / param7 has an invalid value",
    MissionResult.INVALID_SEQUENCE: "mission item received out of sequence",
    MissionResult.DENIED: "not accepting any mission commands from this communication partner",
    MissionResult.OPERATION_CANCELLED: "current mission operation cancelled",
}


@dataclass(frozen=True, slots=True)
class TransferTimeouts:
    """Resend timeouts and retry budget ("Timeouts and Retries", mission protocol).

    ``default_s`` covers waiting for MISSION_REQUEST*, MISSION_COUNT and MISSION_ACK;
    ``item_s`` covers waiting for a MISSION_ITEM* during download. ``max_retries`` is
    the number of resends after the first send before the operation is cancelled.
    """

    default_s: float = 1.5
    item_s: float = 0.25
    max_retries: int = 5

    def __post_init__(self) -> None:
        for name in ("default_s", "item_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative int, got {self.max_retries!r}")


class State(enum.Enum):
    IDLE = "idle"
    UPLOAD_AWAIT_REQUEST = "upload: sent MISSION_COUNT, awaiting first request"
    UPLOAD_SENDING = "upload: answering requests, awaiting next request or MISSION_ACK"
    DOWNLOAD_AWAIT_COUNT = "download: sent MISSION_REQUEST_LIST, awaiting MISSION_COUNT"
    DOWNLOAD_RECEIVING = "download: requested an item, awaiting MISSION_ITEM_INT"
    CLEAR_AWAIT_ACK = "clear: sent MISSION_CLEAR_ALL, awaiting MISSION_ACK"
    DONE = "done"
    FAILED = "failed"


class Operation(enum.Enum):
    UPLOAD = "upload"
    DOWNLOAD = "download"
    CLEAR = "clear"


# --- events: what the vehicle said, already decoded and validated -------------------


def _check_seq(seq: int) -> None:
    if not isinstance(seq, int) or not 0 <= seq <= 65535:
        raise ValueError(f"seq {seq!r} is not a uint16")


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """MISSION_REQUEST_INT (``legacy=False``) or MISSION_REQUEST (``legacy=True``)."""

    seq: int
    mission_type: MissionType
    legacy: bool = False

    def __post_init__(self) -> None:
        _check_seq(self.seq)


@dataclass(frozen=True, slots=True)
class ItemReceived:
    """MISSION_ITEM_INT, or a legacy MISSION_ITEM converted by :func:`legacy_item_to_item`."""

    seq: int
    item: MissionItem
    mission_type: MissionType
    legacy: bool = False

    def __post_init__(self) -> None:
        _check_seq(self.seq)


@dataclass(frozen=True, slots=True)
class CountReceived:
    count: int
    mission_type: MissionType

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or not 0 <= self.count <= 65535:
            raise ValueError(f"count {self.count!r} is not a uint16")


@dataclass(frozen=True, slots=True)
class AckReceived:
    """MISSION_ACK; ``result`` is the raw MAV_MISSION_RESULT (unknown values are kept)."""

    result: int
    mission_type: MissionType


MissionEvent = Union[RequestReceived, ItemReceived, CountReceived, AckReceived]


# --- actions: what the caller must send ----------------------------------------------


@dataclass(frozen=True, slots=True)
class SendCount:
    count: int
    mission_type: MissionType


@dataclass(frozen=True, slots=True)
class SendItem:
    """Send MISSION_ITEM_INT ``seq`` (``current`` is 0: this is a list, not a goto)."""

    seq: int
    item: MissionItem
    mission_type: MissionType


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send MISSION_REQUEST_INT ``seq`` (the non-deprecated request)."""

    seq: int
    mission_type: MissionType


@dataclass(frozen=True, slots=True)
class SendRequestList:
    mission_type: MissionType


@dataclass(frozen=True, slots=True)
class SendAck:
    result: MissionResult
    mission_type: MissionType


@dataclass(frozen=True, slots=True)
class SendClearAll:
    mission_type: MissionType


Send = Union[SendCount, SendItem, SendRequest, SendRequestList, SendAck, SendClearAll]


# --- errors ------------------------------------------------------------------------


class MissionError(Exception):
    """Base of every mission-protocol failure; the operation did not succeed."""

    def __init__(self, message: str, operation: Operation, mission_type: MissionType) -> None:
        super().__init__(message)
        self.operation = operation
        self.mission_type = mission_type


class MissionResultError(MissionError):
    """The vehicle ended the operation with a MISSION_ACK error (``result``)."""

    def __init__(self, result: int, operation: Operation, mission_type: MissionType) -> None:
        try:
            known = MissionResult(result)
            what = f"{known.mav_name} ({int(known)}): {_RESULT_TEXT[known]}"
        except ValueError:
            known = None
            what = f"unknown MAV_MISSION_RESULT {result}"
        super().__init__(f"vehicle refused {mission_type.name.lower()} {operation.value}: {what}",
                         operation, mission_type)
        self.result = known if known is not None else result


class MissionTimeoutError(MissionError):
    """The vehicle stopped answering; retries were exhausted."""

    def __init__(self, operation: Operation, mission_type: MissionType, waiting_for: str,
                 retries: int, progress: str, awaiting_final_ack: bool = False) -> None:
        super().__init__(
            f"{mission_type.name.lower()} {operation.value} timed out waiting for {waiting_for} "
            f"after {retries} retries ({progress}); the operation did NOT complete",
            operation, mission_type)
        self.waiting_for = waiting_for
        self.retries = retries
        # Upload only: every item was requested and sent, only the final MISSION_ACK is
        # missing. The vehicle may well hold the new list; only a read-back can tell.
        self.awaiting_final_ack = awaiting_final_ack


class MissionProtocolError(MissionError):
    """The vehicle broke the protocol in a way that cannot be recovered from."""


# --- the machine ---------------------------------------------------------------------


class _EventKind(enum.Enum):
    REQUEST = "MISSION_REQUEST(_INT)"
    ITEM = "MISSION_ITEM(_INT)"
    COUNT = "MISSION_COUNT"
    ACK = "MISSION_ACK"
    TIMEOUT = "timeout"


_KIND_OF = {RequestReceived: _EventKind.REQUEST, ItemReceived: _EventKind.ITEM,
            CountReceived: _EventKind.COUNT, AckReceived: _EventKind.ACK}

# (state, event) -> (handler method name, what it does). This table is the protocol;
# a pair not listed is ignored (and counted in ``ignored``): e.g. a stray
# MISSION_REQUEST while downloading, or a late ACK after completion.
TRANSITIONS: dict[tuple[State, _EventKind], tuple[str, str]] = {
    (State.UPLOAD_AWAIT_REQUEST, _EventKind.REQUEST):
        ("_upload_request", "send the requested MISSION_ITEM_INT -> UPLOAD_SENDING"),
    (State.UPLOAD_AWAIT_REQUEST, _EventKind.ACK):
        ("_upload_ack", "ACCEPTED for count 0 -> DONE; error -> FAILED"),
    (State.UPLOAD_AWAIT_REQUEST, _EventKind.TIMEOUT):
        ("_upload_timeout", "resend MISSION_COUNT, or FAILED after max retries"),
    (State.UPLOAD_SENDING, _EventKind.REQUEST):
        ("_upload_request", "send the requested item (again, if a duplicate)"),
    (State.UPLOAD_SENDING, _EventKind.ACK):
        ("_upload_ack", "ACCEPTED after every item was requested -> DONE; a NACK to our "
                        "resent last item -> FAILED (final ACK lost, outcome unknown); "
                        "INVALID_SEQUENCE -> keep going; other error -> FAILED"),
    (State.UPLOAD_SENDING, _EventKind.TIMEOUT):
        ("_upload_timeout", "resend the last item sent, or FAILED after max retries"),
    (State.DOWNLOAD_AWAIT_COUNT, _EventKind.COUNT):
        ("_download_count", "count 0: send ACK -> DONE; else request item 0 -> DOWNLOAD_RECEIVING"),
    (State.DOWNLOAD_AWAIT_COUNT, _EventKind.ACK):
        ("_download_ack", "error -> FAILED"),
    (State.DOWNLOAD_AWAIT_COUNT, _EventKind.TIMEOUT):
        ("_download_timeout", "resend MISSION_REQUEST_LIST, or FAILED after max retries"),
    (State.DOWNLOAD_RECEIVING, _EventKind.ITEM):
        ("_download_item", "expected seq: keep, request next or send ACK -> DONE; "
                           "earlier seq: drop; later seq: re-request expected"),
    (State.DOWNLOAD_RECEIVING, _EventKind.COUNT):
        ("_download_recount", "same count (our list request was repeated): ignore; "
                              "different count: FAILED (the list changed under us)"),
    (State.DOWNLOAD_RECEIVING, _EventKind.ACK):
        ("_download_ack", "error -> FAILED"),
    (State.DOWNLOAD_RECEIVING, _EventKind.TIMEOUT):
        ("_download_timeout", "re-request the expected item, or FAILED after max retries"),
    (State.CLEAR_AWAIT_ACK, _EventKind.ACK):
        ("_clear_ack", "ACCEPTED -> DONE; error -> FAILED"),
    (State.CLEAR_AWAIT_ACK, _EventKind.TIMEOUT):
        ("_clear_timeout", "resend MISSION_CLEAR_ALL, or FAILED after max retries"),
}

_ACTIVE = frozenset({State.UPLOAD_AWAIT_REQUEST, State.UPLOAD_SENDING,
                     State.DOWNLOAD_AWAIT_COUNT, State.DOWNLOAD_RECEIVING,
                     State.CLEAR_AWAIT_ACK})


@dataclass(slots=True)
class _Stats:
    sent: int = 0
    resends: int = 0
    duplicate_requests: int = 0
    out_of_order: int = 0
    invalid_sequence_acks: int = 0
    ignored: int = 0


class MissionTransfer:
    """One mission-protocol operation at a time with one vehicle.

    Start with :meth:`start_upload`, :meth:`start_download` or :meth:`start_clear`
    (each returns the first actions to send); feed every mission-protocol message
    from the target vehicle to :meth:`receive`; call :meth:`poll` at or after
    :attr:`deadline`. When :attr:`state` is ``DONE`` the outcome is in
    :attr:`items` (download) and :attr:`result`; when ``FAILED``, :attr:`error`
    holds a :class:`MissionError`. A finished transfer can be started again.
    """

    def __init__(self, timeouts: TransferTimeouts = TransferTimeouts()) -> None:
        self.timeouts = timeouts
        self.state = State.IDLE
        self.operation: Operation | None = None
        self.mission_type = MissionType.MISSION
        self.deadline: float | None = None
        self._reset()

    def _reset(self) -> None:
        """Forget the outcome and progress of the previous operation."""
        self.error: MissionError | None = None
        self.items: tuple[MissionItem, ...] | None = None
        self.stats = _Stats()
        self._upload: tuple[MissionItem, ...] = ()
        self._requested: set[int] = set()
        self._last_sent: Send | None = None
        self._retries = 0
        self._resent_final = False
        self._progress_at: float | None = None  # last new item requested / received
        self._count = 0
        self._received: list[MissionItem] = []

    # -- starting -------------------------------------------------------------------

    def start_upload(self, mission_type: MissionType, items: Sequence[MissionItem],
                     now: float) -> list[Send]:
        """Begin sending ``items`` (exactly the wire list: include ArduPilot's home at 0)."""
        items = tuple(items)
        if len(items) > 65535:
            raise ValueError(f"{len(items)} items do not fit MISSION_COUNT (uint16)")
        for i, item in enumerate(items):
            if not isinstance(item, MissionItem):
                raise TypeError(f"item {i} is {type(item).__name__}, not MissionItem")
        self._begin(Operation.UPLOAD, mission_type, State.UPLOAD_AWAIT_REQUEST, now)
        self._upload = items
        return [self._emit(SendCount(len(items), mission_type))]

    def start_download(self, mission_type: MissionType, now: float) -> list[Send]:
        self._begin(Operation.DOWNLOAD, mission_type, State.DOWNLOAD_AWAIT_COUNT, now)
        return [self._emit(SendRequestList(mission_type))]

    def start_clear(self, mission_type: MissionType, now: float) -> list[Send]:
        self._begin(Operation.CLEAR, mission_type, State.CLEAR_AWAIT_ACK, now)
        return [self._emit(SendClearAll(mission_type))]

    def _begin(self, operation: Operation, mission_type: MissionType, state: State,
               now: float) -> None:
        if self.state in _ACTIVE:
            raise RuntimeError(f"a {self.operation.value} is already in progress")  # type: ignore[union-attr]
        self.operation = operation
        self.mission_type = MissionType(mission_type)
        self.state = state
        self._reset()
        self._progress_at = now
        self._arm(now, self.timeouts.default_s)

    # -- inputs ---------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.state in _ACTIVE

    def receive(self, event: MissionEvent, now: float) -> list[Send]:
        """Feed one message from the target vehicle; returns what to send."""
        kind = _KIND_OF.get(type(event))
        if kind is None:
            raise TypeError(f"not a mission event: {event!r}")
        if event.mission_type != self.mission_type or not self.active:
            self.stats.ignored += 1
            return []
        return self._dispatch(kind, event, now)

    def poll(self, now: float) -> list[Send]:
        """Fire the timeout if ``now`` is at or past :attr:`deadline`."""
        if not self.active or self.deadline is None or now < self.deadline:
            return []
        return self._dispatch(_EventKind.TIMEOUT, None, now)

    def _dispatch(self, kind: _EventKind, event: MissionEvent | None, now: float) -> list[Send]:
        entry = TRANSITIONS.get((self.state, kind))
        if entry is None:
            self.stats.ignored += 1
            return []
        handler: Callable[[MissionEvent | None, float], list[Send]] = getattr(self, entry[0])
        return handler(event, now)

    # -- upload ---------------------------------------------------------------------

    def _upload_request(self, event: MissionEvent | None, now: float) -> list[Send]:
        assert isinstance(event, RequestReceived)
        if event.seq >= len(self._upload):
            return self._fail(MissionProtocolError(
                f"vehicle requested item {event.seq} of a {len(self._upload)}-item "
                f"{self.mission_type.name.lower()} upload", Operation.UPLOAD, self.mission_type))
        if event.seq in self._requested:
            self.stats.duplicate_requests += 1
            if self._stalled(now, self.timeouts.default_s):
                return self._fail(MissionTimeoutError(
                    Operation.UPLOAD, self.mission_type, "a new MISSION_REQUEST", self._retries,
                    f"{len(self._requested)}/{len(self._upload)} items requested; the vehicle "
                    f"repeated its request for item {event.seq} without progress",
                    awaiting_final_ack=len(self._requested) == len(self._upload)))
        else:
            # Fresh progress: the vehicle is alive and moving, so the retry budget resets.
            self._retries = 0
            self._resent_final = False
            self._progress_at = now
            if self._requested and event.seq != max(self._requested) + 1:
                self.stats.out_of_order += 1
            self._requested.add(event.seq)
        self.state = State.UPLOAD_SENDING
        self._arm(now, self.timeouts.default_s)
        return [self._emit(SendItem(event.seq, self._upload[event.seq], self.mission_type))]

    def _upload_ack(self, event: MissionEvent | None, now: float) -> list[Send]:
        assert isinstance(event, AckReceived)
        if event.result == MissionResult.ACCEPTED:
            missing = len(self._upload) - len(self._requested)
            if missing:
                return self._fail(MissionProtocolError(
                    f"vehicle acknowledged a {len(self._upload)}-item "
                    f"{self.mission_type.name.lower()} upload after requesting only "
                    f"{len(self._requested)} items", Operation.UPLOAD, self.mission_type))
            return self._finish()
        if (self._resent_final and self.state is State.UPLOAD_SENDING
                and len(self._requested) == len(self._upload)):
            # We timed out waiting for the final ACK and resent the last item; this NACK
            # answers the resend (ArduPilot, no longer receiving, answers a stray item with
            # ERROR or INVALID_SEQUENCE). The upload itself ended and its ACK was lost:
            # the outcome is unknown, and only a read-back can tell.
            try:
                answered = MissionResult(event.result).mav_name
            except ValueError:
                answered = f"result {event.result}"
            return self._fail(MissionTimeoutError(
                Operation.UPLOAD, self.mission_type, "the final MISSION_ACK", self._retries,
                f"all {len(self._upload)} items sent; the vehicle answered our resend with "
                f"{answered}", awaiting_final_ack=True))
        if event.result == MissionResult.INVALID_SEQUENCE and self.state is State.UPLOAD_SENDING:
            # ArduPilot: wrong-seq item -> this ACK, then it re-requests (see module doc).
            self.stats.invalid_sequence_acks += 1
            return []
        return self._fail(MissionResultError(event.result, Operation.UPLOAD, self.mission_type))

    def _upload_timeout(self, event: MissionEvent | None, now: float) -> list[Send]:
        waiting = ("the first MISSION_REQUEST" if self.state is State.UPLOAD_AWAIT_REQUEST
                   else "the next MISSION_REQUEST or MISSION_ACK")
        progress = f"{len(self._requested)}/{len(self._upload)} items requested"
        return self._retry(now, self.timeouts.default_s, waiting, progress,
                           awaiting_final_ack=len(self._requested) == len(self._upload))

    # -- download -------------------------------------------------------------------

    def _download_count(self, event: MissionEvent | None, now: float) -> list[Send]:
        assert isinstance(event, CountReceived)
        self._count = event.count
        self._retries = 0
        self._progress_at = now
        if event.count == 0:
            return self._download_complete()
        self.state = State.DOWNLOAD_RECEIVING
        self._arm(now, self.timeouts.item_s)
        return [self._emit(SendRequest(0, self.mission_type))]

    def _download_recount(self, event: MissionEvent | None, now: float) -> list[Send]:
        assert isinstance(event, CountReceived)
        if event.count == self._count:
            self.stats.duplicate_requests += 1
            return []
        return self._fail(MissionProtocolError(
            f"vehicle reported {event.count} items after first reporting {self._count}",
            Operation.DOWNLOAD, self.mission_type))

    def _download_item(self, event: MissionEvent | None, now: float) -> list[Send]:
        assert isinstance(event, ItemReceived)
        expected = len(self._received)
        if event.seq < expected:
            # A late answer to a request we already repeated: drop it, no new request,
            # so one lost item does not snowball into a storm of duplicates.
            self.stats.duplicate_requests += 1
            return []
        if event.seq > expected:
            # Spec: "If an item is received out-of-sequence the expected item should
            # be re-requested by the GCS (the out-of-sequence item is dropped)."
            self.stats.out_of_order += 1
            if event.seq >= self._count:
                return self._fail(MissionProtocolError(
                    f"vehicle sent item {event.seq} of a {self._count}-item list",
                    Operation.DOWNLOAD, self.mission_type))
            if self._stalled(now, self.timeouts.item_s):
                return self._fail(MissionTimeoutError(
                    Operation.DOWNLOAD, self.mission_type, f"item {expected}", self._retries,
                    f"{expected}/{self._count} items received; the vehicle kept sending "
                    f"items past it without progress"))
            self._arm(now, self.timeouts.item_s)
            return [self._emit(SendRequest(expected, self.mission_type))]
        self._received.append(event.item)
        self._retries = 0
        self._progress_at = now
        if len(self._received) == self._count:
            return self._download_complete()
        self._arm(now, self.timeouts.item_s)
        return [self._emit(SendRequest(len(self._received), self.mission_type))]

    def _download_complete(self) -> list[Send]:
        self.items = tuple(self._received)
        ack = self._emit(SendAck(MissionResult.ACCEPTED, self.mission_type))
        self._finish()
        return [ack]

    def _download_ack(self, event: MissionEvent | None, now: float) -> list[Send]:
        assert isinstance(event, AckReceived)
        if event.result == MissionResult.ACCEPTED:
            # An ACCEPTED ack is not an answer to anything we asked during download.
            self.stats.ignored += 1
            return []
        return self._fail(MissionResultError(event.result, Operation.DOWNLOAD, self.mission_type))

    def _download_timeout(self, event: MissionEvent | None, now: float) -> list[Send]:
        if self.state is State.DOWNLOAD_AWAIT_COUNT:
            return self._retry(now, self.timeouts.default_s, "MISSION_COUNT", "no count yet")
        return self._retry(now, self.timeouts.item_s, f"item {len(self._received)}",
                           f"{len(self._received)}/{self._count} items received")

    # -- clear ----------------------------------------------------------------------

    def _clear_ack(self, event: MissionEvent | None, now: float) -> list[Send]:
        assert isinstance(event, AckReceived)
        if event.result == MissionResult.ACCEPTED:
            return self._finish()
        return self._fail(MissionResultError(event.result, Operation.CLEAR, self.mission_type))

    def _clear_timeout(self, event: MissionEvent | None, now: float) -> list[Send]:
        return self._retry(now, self.timeouts.default_s, "MISSION_ACK", "clear not acknowledged")

    # -- shared ---------------------------------------------------------------------

    def _retry(self, now: float, timeout: float, waiting_for: str, progress: str,
               awaiting_final_ack: bool = False) -> list[Send]:
        if self._retries >= self.timeouts.max_retries or self._last_sent is None:
            assert self.operation is not None
            return self._fail(MissionTimeoutError(self.operation, self.mission_type, waiting_for,
                                                  self._retries, progress, awaiting_final_ack))
        self._retries += 1
        self.stats.resends += 1
        if self.state is State.UPLOAD_SENDING and len(self._requested) == len(self._upload):
            self._resent_final = True
        self._arm(now, timeout)
        return [self._emit(self._last_sent)]

    def _stalled(self, now: float, timeout: float) -> bool:
        """No new item requested or received for as long as a silent vehicle is given
        (the first send and every retry, each waiting ``timeout``): an answer that
        re-arms the deadline without progress must not keep the operation open."""
        assert self._progress_at is not None
        return now - self._progress_at >= (self.timeouts.max_retries + 1) * timeout

    def _emit(self, action: Send) -> Send:
        self._last_sent = action
        self.stats.sent += 1
        return action

    def _arm(self, now: float, timeout: float) -> None:
        self.deadline = now + timeout

    def _finish(self) -> list[Send]:
        self.state = State.DONE
        self.deadline = None
        return []

    def _fail(self, error: MissionError) -> list[Send]:
        self.state = State.FAILED
        self.error = error
        self.deadline = None
        return []


def legacy_item_to_item(command: int, frame: int, param1: float, param2: float, param3: float,
                        param4: float, x: float, y: float, z: float,
                        autocontinue: int) -> MissionItem:
    """Convert a deprecated MISSION_ITEM (float lat/lon in degrees) to a :class:`MissionItem`.

    Raises ``ValueError`` for a position that is not finite or off the globe.
    """
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"MISSION_ITEM x/y ({x}, {y}) is not finite")
    scale = 1e7 if frame in GLOBAL_FRAMES else 1  # degrees -> degE7
    return MissionItem(command=command, frame=frame, param1=param1, param2=param2,
                       param3=param3, param4=param4, x=round(x * scale), y=round(y * scale), z=z,
                       autocontinue=1 if autocontinue else 0)
