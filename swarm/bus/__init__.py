"""The MQTT bus: how agents, clients and ground stations reach each other through a
broker (docs/protocol.md).

- :mod:`.topics` builds and parses every topic name (the only place that does);
- :mod:`.envelope` seals and opens the authenticated Raft envelope (sans-I/O), with
  :mod:`.keys` (the swarm key and its files, ``swarm keygen``) and :mod:`.replay`
  (the durable epoch and replay floors);
"""

from . import topics
from .envelope import (
    DEFAULT_MAX_ENVELOPE_BYTES,
    DEFAULT_REPLAY_WINDOW,
    ENVELOPE_OVERHEAD,
    EnvelopeOpener,
    EnvelopeSealer,
    EnvelopeTooLarge,
    Keyring,
    Opened,
    RejectReason,
    Rejected,
)
from .keys import KEY_BYTES, KeyFileError, SwarmKey, generate_key_file, load_key
from .replay import FloorStore, ReplayStateError, claim_epoch
from .topics import Kind, Topic, TopicError

__all__ = [
    "DEFAULT_MAX_ENVELOPE_BYTES", "DEFAULT_REPLAY_WINDOW", "ENVELOPE_OVERHEAD",
    "EnvelopeOpener", "EnvelopeSealer", "EnvelopeTooLarge", "FloorStore", "KEY_BYTES",
    "KeyFileError", "Keyring", "Kind", "Opened", "RejectReason", "Rejected",
    "ReplayStateError", "SwarmKey", "Topic", "TopicError", "claim_epoch",
    "generate_key_file", "load_key", "topics",
]
