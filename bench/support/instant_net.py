"""Drivers (consensus.driver, the one Ready loop every user of the core runs) over
MemoryStorage, with messages delivered at once: no loss, no delay, no disk. What a
benchmark measures over it is the core and its driver, not the bus or an SD card."""

from __future__ import annotations

from collections.abc import Sequence

from consensus.codec import decode_message, encode_message
from consensus.config import Config
from consensus.driver import Driver, DriverConfig
from consensus.storage import MemoryStorage
from consensus.types import ConfState, Message


class NullStateMachine:
    """Applies nothing: the figure is consensus alone."""

    def apply(self, index: int, data: bytes) -> bytes:
        return b""

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass


class _Outbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def send(self, messages: Sequence[Message]) -> None:
        self.messages.extend(messages)


class InstantNet:
    def __init__(self, configs: Sequence[Config], *, codec: bool = False) -> None:
        ids = [c.id for c in configs]
        conf = ConfState.of(ids)
        self.codec = codec
        self.outbox = _Outbox()
        self.storages = {i: MemoryStorage(conf) for i in ids}
        self.drivers: dict[int, Driver | None] = {
            c.id: Driver(c, self.storages[c.id], NullStateMachine(), self.outbox, DriverConfig(snapshot_every=0))
            for c in configs
        }
        self.messages = 0

    def live(self) -> list[Driver]:
        return [d for d in self.drivers.values() if d is not None]

    def pump(self, limit: int = 10_000) -> None:
        """Handle every Ready and deliver every message until the cluster is idle."""
        for _ in range(limit):
            for d in self.live():
                while d.process():
                    pass
            msgs, self.outbox.messages = self.outbox.messages, []
            if not msgs:
                return
            self.messages += len(msgs)
            for m in msgs:
                if self.codec:
                    m = decode_message(encode_message(m))
                target = self.drivers.get(m.to)
                if target is not None:
                    target.step(m)
        raise RuntimeError("network did not quiesce")

    def tick(self) -> None:
        for d in self.live():
            d.tick()
        self.pump()
