"""Raft consensus, sans-I/O: a deterministic state machine driven by logical ticks,
messages and proposals, with storage behind a small interface. No sockets, threads,
clocks or files inside the core (see docs/consensus.md)."""

from .codec import DecodeError, decode_message, encode_message
from .config import Config, ConfigError
from .fsm import StateMachine
from .raft import ProposalDropped, RaftStatus
from .rawnode import InvalidMessage, RawNode, Ready
from .sqlite_storage import (
    SQLiteStorage,
    StorageAccessError,
    StorageCorruptError,
    StorageFileError,
    StorageFullError,
    StorageInUseError,
    StorageIOError,
    StorageMissingError,
    StorageVersionError,
)
from .session import ClientSession, SessionResult, SessionStateMachine, SessionStatus
from .storage import (
    CompactedError,
    MemoryStorage,
    SnapshotOutOfDateError,
    Storage,
    StorageError,
    UnavailableError,
)
from .types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotMeta,
    SoftState,
    StateRole,
)

__all__ = [
    "ClientSession", "CompactedError", "ConfChange", "ConfChangeType", "ConfState", "Config",
    "ConfigError", "DecodeError", "Entry", "EntryKind", "HardState", "InvalidMessage",
    "MemoryStorage", "Message", "MessageType", "NONE", "ProposalDropped", "RaftStatus",
    "RawNode", "ReadState", "Ready", "SessionResult", "SessionStateMachine", "SessionStatus",
    "Snapshot", "SnapshotMeta", "SnapshotOutOfDateError", "SoftState", "SQLiteStorage", "StateMachine", "StorageAccessError", "StorageCorruptError",
    "StorageFileError", "StorageFullError", "StorageInUseError", "StorageIOError",
    "StorageMissingError", "StorageVersionError",
    "StateRole", "Storage", "StorageError", "UnavailableError", "decode_message",
    "encode_message",
]
