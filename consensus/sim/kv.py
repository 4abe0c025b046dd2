"""The simulator's replicated state machine: a string key-value store with put, append,
compare-and-set and get, implementing :class:`consensus.fsm.StateMachine`.

Commands and results are msgpack arrays. ``apply`` never raises on bad content: every
replica must reach the same verdict on a committed entry, so a malformed command is
answered with an error result (see the StateMachine contract).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

__all__ = ["KvCommand", "KvStateMachine", "encode_command", "decode_command", "decode_result"]

_OPS = ("put", "append", "cas", "get")


@dataclass(frozen=True)
class KvCommand:
    """One key-value operation. ``value`` is the written value (put, append) or the
    new value (cas); ``expected`` is what a cas compares against (None = absent)."""

    op: str
    key: str
    value: str | None = None
    expected: str | None = None

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"unknown kv op {self.op!r}")
        if not isinstance(self.key, str):
            raise ValueError("kv key must be a str")
        if self.op in ("put", "append", "cas") and not isinstance(self.value, str):
            raise ValueError(f"kv {self.op} needs a str value")
        if self.expected is not None and not isinstance(self.expected, str):
            raise ValueError("kv cas expected value must be a str or None")


def encode_command(cmd: KvCommand) -> bytes:
    return msgpack.packb([cmd.op, cmd.key, cmd.value, cmd.expected], use_bin_type=True)


def decode_command(data: bytes) -> KvCommand:
    """Parse a command; raises ValueError on anything malformed."""
    try:
        obj = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several types on garbage
        raise ValueError(f"kv command is not msgpack: {exc}") from None
    if not isinstance(obj, list) or len(obj) != 4:
        raise ValueError("kv command must be an array of 4")
    return KvCommand(*obj)


def decode_result(data: bytes) -> str | bool | None:
    """The client's view of an apply result: a value (get), a bool (cas) or None."""
    obj = msgpack.unpackb(data, raw=False)
    if not isinstance(obj, list) or len(obj) != 2:
        raise ValueError("kv result must be an array of 2")
    ok, value = obj
    if not ok:
        raise ValueError(f"kv command failed: {value}")
    return value  # type: ignore[no-any-return]


def _result(ok: bool, value: str | bool | None) -> bytes:
    return msgpack.packb([ok, value], use_bin_type=True)


class KvStateMachine:
    """A deterministic dict of str -> str."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.applied = 0

    def apply(self, index: int, data: bytes) -> bytes:
        self.applied = index
        try:
            cmd = decode_command(data)
        except ValueError as exc:
            return _result(False, str(exc))
        current = self.data.get(cmd.key)
        if cmd.op == "get":
            return _result(True, current)
        if cmd.op == "put":
            self.data[cmd.key] = cmd.value  # type: ignore[assignment]
            return _result(True, None)
        if cmd.op == "append":
            self.data[cmd.key] = (current or "") + cmd.value  # type: ignore[operator]
            return _result(True, None)
        # cas
        if current == cmd.expected:
            self.data[cmd.key] = cmd.value  # type: ignore[assignment]
            return _result(True, True)
        return _result(True, False)

    def read(self, key: str) -> str | None:
        """A local read, for serving a ReadIndex read once applied far enough."""
        return self.data.get(key)

    def snapshot(self) -> bytes:
        return msgpack.packb([self.applied, sorted(self.data.items())], use_bin_type=True)

    def restore(self, data: bytes) -> None:
        try:
            applied, items = msgpack.unpackb(data, raw=False)
            restored = {}
            for k, v in items:
                if not isinstance(k, str) or not isinstance(v, str):
                    raise ValueError("kv snapshot items must be str pairs")
                restored[k] = v
            if type(applied) is not int or applied < 0:
                raise ValueError("kv snapshot applied index must be a non-negative int")
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"malformed kv snapshot: {exc}") from None
        self.data = restored
        self.applied = applied
