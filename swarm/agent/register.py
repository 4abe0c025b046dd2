"""A minimal replicated register: string keys to string values, for benchmarking the
agent's consensus path without the evacuation map (``[node] state_machine =
"register"``, docs/agent.md).

The map's commands cost geometry to parse and apply (about half of a busy leader's
node thread); a ``put`` here costs a JSON decode and a dict store, so what the agent's
figures measure with it is the rest of the path: the client protocol, the session
layer (exactly-once, as with the map), Raft, SQLite and the bus.

Commands (JSON objects, as in a client's ``propose`` request)::

    {"type": "put", "key": "<1 to 64 characters>", "value": "<0 to 1024 characters>"}

validated before they are proposed and again when applied (a committed entry is
applied by every node, which must reach the same verdict), errors naming the field
(``put.key: ...``). At most MAX_KEYS keys: a put of a new key beyond it is refused.
Results are ``{"ok": true, "version": N}`` (N: the log index that applied it, the
register's version afterwards) or ``{"ok": false, "error": "..."}``, as the map's.
Reads return the whole register (``{key: value}``) or one key's value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from json.encoder import encode_basestring  # json.dumps's own escaping (ensure_ascii=False)
from typing import Any

from consensus.fsm import StateMachine

from .machine import CommandRefused, Outcome

__all__ = ["MAX_KEY_CHARS", "MAX_KEYS", "MAX_VALUE_CHARS", "Register"]

MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 1024
#: Bounds the register's memory (about 4.5 MB at the largest keys and values).
MAX_KEYS = 4096
#: A committed entry larger than this cannot be a valid put (two strings at their
#: bounds, JSON-escaped) and is refused before it is decoded.
_MAX_COMMAND_BYTES = 16 * 1024
_SNAPSHOT_FORMAT = "wildfire-register/1"
_FIELDS = {"type", "key", "value"}


def _check(obj: object) -> tuple[str, str]:
    """The (key, value) of a valid put; raises CommandRefused naming the field."""
    if type(obj) is not dict and not isinstance(obj, Mapping):  # (a dict: no ABC check)
        raise CommandRefused(f"command: expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind != "put":
        if not isinstance(kind, str):
            raise CommandRefused("command: missing 'type' (a string naming the command)")
        raise CommandRefused(f"command: unknown type {kind[:80]!r} (known: put)")
    for name in obj:
        if name not in _FIELDS:
            raise CommandRefused(f"put.{str(name)[:80]}: unknown field")
    key, value = obj.get("key"), obj.get("value")
    if type(key) is not str or not 0 < len(key) <= MAX_KEY_CHARS:
        raise CommandRefused(f"put.key: must be a string of 1 to {MAX_KEY_CHARS} characters, "
                             f"got {_short(key)}")
    if type(value) is not str or len(value) > MAX_VALUE_CHARS:
        raise CommandRefused(f"put.value: must be a string of at most {MAX_VALUE_CHARS} "
                             f"characters, got {_short(value)}")
    return key, value


def _short(value: object) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _result(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class Register:
    """The register (module docstring): a consensus StateMachine and an
    swarm.agent.machine.AgentMachine at once (it is its own ``fsm``)."""

    name = "register"
    #: Puts may share a log index (a batch proposed as one entry, consensus.session):
    #: each is applied in the entry's order and the version is the entry's index.
    batch_entries = True

    def __init__(self) -> None:
        self.fsm: StateMachine = self
        self.values: dict[str, str] = {}
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    # -- the agent's seams (swarm.agent.machine.AgentMachine)

    def parse_command(self, raw: Mapping[str, Any]) -> bytes:
        key, value = _check(raw)
        # json.dumps({"key": key, "type": "put", "value": value}, separators=(",", ":"),
        # ensure_ascii=False).encode(), written out: the same bytes (json's own string
        # escaping), without json.dumps's machinery per put, which was a tenth of a busy
        # leader's node thread (docs/benchmarks.md, "The whole bench on a new machine").
        return ('{"key":%s,"type":"put","value":%s}'
                % (encode_basestring(key), encode_basestring(value))).encode()

    def outcome(self, payload: bytes) -> Outcome:
        try:
            obj = json.loads(payload)
        except ValueError:
            raise ValueError("not a register result") from None
        if isinstance(obj, dict):
            if obj.get("ok") is True and set(obj) == {"ok", "version"} \
                    and type(obj["version"]) is int:
                return Outcome(True, obj["version"], None, obj)
            if obj.get("ok") is False and set(obj) == {"ok", "error"} \
                    and type(obj["error"]) is str:
                return Outcome(False, None, obj["error"], obj)
        raise ValueError("not a register result")

    def read(self, item: str | None) -> tuple[int, Any]:
        if item is None:
            return self._version, dict(sorted(self.values.items()))
        return self._version, self.values[item]

    def document(self) -> dict[str, Any] | None:
        return None  # the retained map topic is the map's; ground stations read it

    # -- consensus.fsm.StateMachine

    def apply(self, index: int, data: bytes) -> bytes:
        """Apply the committed entry at ``index``. Never raises for bad content: it is
        refused, identically on every node, and nothing changes."""
        if len(data) > _MAX_COMMAND_BYTES:
            return _result({"ok": False, "error": f"command: {len(data)} bytes, over the "
                                                  f"{_MAX_COMMAND_BYTES}-byte limit"})
        try:
            key, value = _check(json.loads(data))
        except CommandRefused as exc:
            return _result({"ok": False, "error": str(exc)})
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            return _result({"ok": False, "error": f"command: not JSON ({str(exc)[:120]})"})
        if key not in self.values and len(self.values) >= MAX_KEYS:
            return _result({"ok": False, "error": f"put.key: the register already holds "
                                                  f"{MAX_KEYS} keys, the most it may"})
        self.values[key] = value
        self._version = index
        return b'{"ok":true,"version":%d}' % index  # _result's bytes, without json.dumps

    def snapshot(self) -> bytes:
        """Canonical bytes: equal registers give equal snapshots on every node."""
        return json.dumps({"format": _SNAPSHOT_FORMAT, "version": self._version,
                           "values": self.values}, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()

    def restore(self, data: bytes) -> None:
        """Replace the register with a snapshot; ValueError (and no change) if it is not
        a valid one."""
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError, TypeError) as exc:
            raise ValueError(f"register snapshot: not JSON ({str(exc)[:120]})") from None
        if not (isinstance(obj, dict) and set(obj) == {"format", "version", "values"}
                and obj["format"] == _SNAPSHOT_FORMAT):
            raise ValueError(f"register snapshot: not a {_SNAPSHOT_FORMAT} snapshot")
        version, values = obj["version"], obj["values"]
        if type(version) is not int or version < 0:
            raise ValueError("register snapshot: version must be a non-negative integer")
        if not isinstance(values, dict) or len(values) > MAX_KEYS:
            raise ValueError(f"register snapshot: values must be an object of at most "
                             f"{MAX_KEYS} keys")
        for key, value in values.items():
            try:
                _check({"type": "put", "key": key, "value": value})
            except CommandRefused as exc:
                raise ValueError(f"register snapshot: {exc}") from None
        self.values = dict(values)
        self._version = version
