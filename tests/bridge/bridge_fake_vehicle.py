"""A scripted, sans-I/O vehicle for mission-protocol tests.

It answers the transfer's actions the way ArduPilot Copter does (legacy MISSION_REQUEST,
INVALID_SEQUENCE for a wrong item, re-request every 1 s, cancel after 8 s), and lets a
test lose, duplicate or refuse specific messages. Time is logical: the harness advances
``now`` to the next deadline of either side, so nothing sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from mavlink_bridge.mission_protocol import (
    AckReceived, CountReceived, ItemReceived, MissionEvent, MissionResult, MissionTransfer,
    RequestReceived, Send, SendAck, SendClearAll, SendCount, SendItem, SendRequest,
    SendRequestList,
)
from mavlink_bridge.plan import MissionItem, MissionType

RE_REQUEST_S = 1.0   # ArduPilot re-requests a missing item every second
UPLOAD_CANCEL_S = 8.0  # and cancels the upload after 8 s of silence


@dataclass
class FakeVehicle:
    lists: dict[MissionType, list[MissionItem]] = field(
        default_factory=lambda: {t: [] for t in MissionType})
    legacy_requests: bool = True
    # Scripting hooks: decide per outgoing vehicle message whether it is lost (True)
    # or per incoming action whether it is lost; refuse with an ACK result.
    drop_out: Callable[[MissionEvent], bool] = lambda e: False
    drop_in: Callable[[Send], bool] = lambda a: False
    duplicate_out: Callable[[MissionEvent], bool] = lambda e: False
    refuse_count_with: int | None = None
    refuse_item_with: tuple[int, int] | None = None  # (seq, result)
    silent_after_items: int | None = None  # stop answering after receiving this many items
    log: list[str] = field(default_factory=list)
    # upload state
    _rx_type: MissionType | None = None
    _rx_count: int = 0
    _rx_items: list[MissionItem] = field(default_factory=list)
    _rx_deadline: float | None = None
    _rx_started: float = 0.0
    _items_seen: int = 0

    def handle(self, action: Send, now: float) -> list[MissionEvent]:
        if self.drop_in(action):
            self.log.append(f"lost->vehicle {type(action).__name__}")
            return []
        if self.silent_after_items is not None and self._items_seen >= self.silent_after_items:
            return []
        self.log.append(f"vehicle<- {action}")
        if isinstance(action, SendCount):
            if self.refuse_count_with is not None:
                return self._out(AckReceived(self.refuse_count_with, action.mission_type))
            if action.count == 0:
                self.lists[action.mission_type] = []
                return self._out(AckReceived(MissionResult.ACCEPTED, action.mission_type))
            self._rx_type, self._rx_count, self._rx_items = action.mission_type, action.count, []
            self._rx_started = now
            return self._request(0, now)
        if isinstance(action, SendItem):
            self._items_seen += 1
            if self._rx_type is None:
                # not receiving: ArduPilot compares seq with its stale request index and
                # answers INVALID_SEQUENCE
                return self._out(AckReceived(MissionResult.INVALID_SEQUENCE, action.mission_type))
            if (self.refuse_item_with is not None and action.seq == self.refuse_item_with[0]):
                self._rx_type = None
                return self._out(AckReceived(self.refuse_item_with[1], action.mission_type))
            if action.seq != len(self._rx_items):
                return (self._out(AckReceived(MissionResult.INVALID_SEQUENCE, action.mission_type))
                        + self._request(len(self._rx_items), now))
            self._rx_items.append(action.item)
            if len(self._rx_items) == self._rx_count:
                self.lists[self._rx_type] = list(self._rx_items)
                t, self._rx_type, self._rx_deadline = self._rx_type, None, None
                return self._out(AckReceived(MissionResult.ACCEPTED, t))
            return self._request(len(self._rx_items), now)
        if isinstance(action, SendRequestList):
            return self._out(CountReceived(len(self.lists[action.mission_type]), action.mission_type))
        if isinstance(action, SendRequest):
            items = self.lists[action.mission_type]
            if action.seq >= len(items):
                return self._out(AckReceived(MissionResult.INVALID_SEQUENCE, action.mission_type))
            return self._out(ItemReceived(action.seq, items[action.seq], action.mission_type))
        if isinstance(action, SendAck):
            return []
        if isinstance(action, SendClearAll):
            self.lists[action.mission_type] = []
            return self._out(AckReceived(MissionResult.ACCEPTED, action.mission_type))
        raise AssertionError(f"unexpected action {action!r}")

    def deadline(self) -> float | None:
        return self._rx_deadline

    def poll(self, now: float) -> list[MissionEvent]:
        if self._rx_deadline is None or now < self._rx_deadline or self._rx_type is None:
            return []
        if self.silent_after_items is not None and self._items_seen >= self.silent_after_items:
            self._rx_deadline = None
            return []
        if now - self._rx_started >= UPLOAD_CANCEL_S:
            t, self._rx_type, self._rx_deadline = self._rx_type, None, None
            return self._out(AckReceived(MissionResult.OPERATION_CANCELLED, t))
        return self._request(len(self._rx_items), now)

    def _request(self, seq: int, now: float) -> list[MissionEvent]:
        assert self._rx_type is not None
        self._rx_deadline = now + RE_REQUEST_S
        return self._out(RequestReceived(seq, self._rx_type, legacy=self.legacy_requests))

    def _out(self, event: MissionEvent) -> list[MissionEvent]:
        if self.drop_out(event):
            self.log.append(f"lost->bridge {event}")
            return []
        if self.duplicate_out(event):
            return [event, event]
        return [event]


def run_transfer(transfer: MissionTransfer, vehicle: FakeVehicle, first: list[Send],
                 now: float = 0.0, max_steps: int = 100_000) -> float:
    """Drive both sides until the transfer finishes; returns the logical end time."""
    outbox: list[Send] = list(first)
    for _ in range(max_steps):
        while outbox:
            action = outbox.pop(0)
            for event in vehicle.handle(action, now):
                outbox.extend(transfer.receive(event, now))
        if not transfer.active:
            return now
        deadlines = [d for d in (transfer.deadline, vehicle.deadline()) if d is not None]
        assert deadlines, "both sides idle while the transfer is active"
        now = min(deadlines)
        for event in vehicle.poll(now):
            outbox.extend(transfer.receive(event, now))
        outbox.extend(transfer.poll(now))
    raise AssertionError("transfer did not finish within max_steps")
