"""The durable half of the envelope's replay protection: small files in a node's data
folder, written atomically (temp file, fsync, rename, fsync of the folder) so a crash at
any moment leaves the old or the new content, never a torn one.

- ``bus-epoch``: the sender side. :func:`claim_epoch` reads it, takes the larger of one
  more and the wall clock's unix seconds (when the clock is set: :func:`next_epoch`), and
  makes the new value durable *before* the first envelope of this run is sealed, so a
  restarted sender never reuses an (epoch, counter) pair even though its counter lives
  in memory, and a sender whose data folder was wiped still starts above its old epochs.
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
import time
from collections.abc import Callable
from pathlib import Path

from .topics import TopicError, check_node_id

__all__ = ["EARLIEST_PLAUSIBLE_UNIX", "EPOCH_FILE", "FLOORS_FILE", "FloorStore",
           "ReplayStateError", "atomic_write", "claim_epoch", "next_epoch", "read_epoch"]

EPOCH_FILE = "bus-epoch"
FLOORS_FILE = "bus-floors.json"
_U64 = 2**64 - 1
#: A wall clock before this (2025-01-01 00:00 UTC) is not set: no RTC and no NTP yet.
EARLIEST_PLAUSIBLE_UNIX = 1_735_689_600


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


def read_epoch(data_dir: str | os.PathLike[str]) -> int:
    """The last epoch claimed in ``data_dir`` (0 when there is no ``bus-epoch``), read and
    checked without writing anything: the agent validates its data folder before it
    changes any of it."""
    path = Path(data_dir) / EPOCH_FILE
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayStateError(f"{path} cannot be read ({exc})") from None
    if not text.isdigit() or not 0 < int(text) < _U64:
        raise ReplayStateError(
            f"{path} holds {text[:40]!r}, not an epoch; if the data folder is otherwise "
            f"intact, write a number larger than any epoch used before (e.g. "
            f"the current unix time) into it")
    return int(text)


def next_epoch(previous: int, now: float) -> int:
    """The epoch to claim after ``previous`` when the wall clock says ``now`` (unix
    seconds): ``max(previous + 1, int(now))`` when the clock is plausible, else
    ``previous + 1``.

    Why the clock: every peer keeps this sender's floor, so an epoch must also exceed
    the epochs of an earlier life of the node whose data folder was since wiped or
    reflashed (``previous`` is then 0). Those were unix seconds of their start, so the
    current time is above them; a counter alone restarts at 1 and would be refused as
    ``stale_epoch`` by every peer, forever. The file still guarantees monotonicity when
    the clock steps back (NTP) or two starts fall in one second. A clock before
    EARLIEST_PLAUSIBLE_UNIX is not set (a Raspberry Pi has no RTC and may boot at 1970
    before NTP): it is ignored, which is right for an intact folder; a wiped folder then
    starts at 1 and peers refuse it (a warning on each peer names it) until the node is
    restarted with its clock set (docs/agent.md, "A wiped data folder")."""
    clock = int(now) if now >= EARLIEST_PLAUSIBLE_UNIX else 0
    epoch = max(previous + 1, clock)
    if not 0 < epoch < _U64:  # the envelope's epoch field is 8 bytes
        raise ReplayStateError(f"epoch {epoch} does not fit the envelope's 64-bit field")
    return epoch


def claim_epoch(data_dir: str | os.PathLike[str],
                clock: Callable[[], float] = time.time) -> int:
    """Durably claim the next sender epoch in ``data_dir`` and return it (next_epoch of
    the last one claimed there, or of 0 on first use)."""
    epoch = next_epoch(read_epoch(data_dir), clock())
    atomic_write(Path(data_dir) / EPOCH_FILE, f"{epoch}\n".encode("ascii"))
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

