"""The durable half of the envelope's replay protection: small files in a node's data
folder, written atomically (temp file, fsync, rename, fsync of the folder) so a crash at
any moment leaves the old or the new content, never a torn one.

- ``bus-epoch``: the sender side. :func:`claim_epoch` reads it, adds one, and makes the
  new value durable *before* the first envelope of this run is sealed, so a restarted
  sender never reuses an (epoch, counter) pair even though its counter lives in memory.
- ``bus-floors.json``: the receiver side. :class:`FloorStore` keeps, per sender, the
  highest (epoch, counter) accepted; EnvelopeOpener persists it synchronously when a
  sender's epoch advances and the agent checkpoints it now and then, so a restarted
  receiver refuses old epochs and the counters it had already checkpointed.

Residual exposure, by design: envelopes of a sender's *current* epoch accepted after the
receiver's last checkpoint can be replayed once into a receiver that has just restarted.
Raft tolerates duplicated messages (Raft paper §5: RPCs are idempotent, stale terms are
ignored), so this costs at most a redundant response; forged or older traffic stays out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .topics import TopicError, check_node_id

__all__ = ["EPOCH_FILE", "FLOORS_FILE", "FloorStore", "ReplayStateError", "atomic_write",
           "claim_epoch"]

EPOCH_FILE = "bus-epoch"
FLOORS_FILE = "bus-floors.json"
_U64 = 2**64 - 1


class ReplayStateError(ValueError):
    """A replay-state file that is not what this module writes (names path and fix)."""


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` durably: a crash leaves the old or the new file
    (file fsynced before the rename, the folder after it)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def claim_epoch(data_dir: str | os.PathLike[str]) -> int:
    """Durably claim the next sender epoch in ``data_dir`` and return it (1 on first use)."""
    path = Path(data_dir) / EPOCH_FILE
    previous = 0
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        text = None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayStateError(f"{path} cannot be read ({exc})") from None
    if text is not None:
        if not text.isdigit() or not 0 < int(text) < _U64:
            raise ReplayStateError(
                f"{path} holds {text[:40]!r}, not an epoch; if the data folder is otherwise "
                f"intact, write a number larger than any epoch used before (e.g. "
                f"the current unix time) into it")
        previous = int(text)
    epoch = previous + 1
    atomic_write(path, f"{epoch}\n".encode("ascii"))
    return epoch


class FloorStore:
    """The receiver's persisted replay floors: ``{sender: (epoch, counter)}``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir) / FLOORS_FILE

    def load(self) -> dict[int, tuple[int, int]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        fix = f"; delete {self.path} only if every sender has restarted since (it guards replays)"
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ReplayStateError(f"{self.path} is not JSON{fix}") from None
        if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("floors"), dict):
            raise ReplayStateError(f"{self.path} is not a v1 floors file{fix}")
        floors: dict[int, tuple[int, int]] = {}
        for key, value in doc["floors"].items():
            try:
                sender = check_node_id(int(key)) if key.isdigit() else check_node_id(key)
            except TopicError as exc:
                raise ReplayStateError(f"{self.path}: {exc}{fix}") from None
            if (not isinstance(value, list) or len(value) != 2
                    or not all(type(v) is int and 0 <= v <= _U64 for v in value)):
                raise ReplayStateError(f"{self.path}: floor of {sender} is {value!r}{fix}")
            floors[sender] = (value[0], value[1])
        return floors

    def save(self, floors: dict[int, tuple[int, int]]) -> None:
        doc = {"v": 1, "floors": {str(s): [e, c] for s, (e, c) in sorted(floors.items())}}
        atomic_write(self.path, json.dumps(doc, separators=(",", ":")).encode("ascii") + b"\n")

