"""The MQTT bus: how agents, clients and ground stations reach each other through a
broker (docs/protocol.md).

- :mod:`.topics` builds and parses every topic name (the only place that does);
- :mod:`.envelope` seals and opens the authenticated Raft envelope (sans-I/O), with
  :mod:`.keys` (the swarm key and its files, ``swarm keygen``) and :mod:`.replay`
  (the durable epoch and replay floors);
- :mod:`.client` is the paho-mqtt 2.x connection (:class:`Bus`, configured by a frozen
  :class:`BusConfig`): MQTT 5 or 3.1.1, TLS, passwords, Last Will, reconnect with backoff
  and jitter, failover down an ordered broker list and back; handlers run on paho's
  network thread and must only hand the bytes over;
- :mod:`.broker` runs one local broker (``swarm broker``; mosquitto with a generated
  config, else the embedded iotcore) for laptops, tests, the demo and the launcher.
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
from .broker import BridgeSpec, BrokerError, LocalBroker, MosquittoTls, mosquitto_config
from .client import (
    BrokerAddress,
    Bus,
    BusConfig,
    BusConfigError,
    BusStats,
    ConnectionEvent,
    DropReason,
    MqttVersion,
    Received,
    TlsConfig,
    Will,
)
from .keys import KEY_BYTES, KeyFileError, SwarmKey, generate_key_file, load_key
from .replay import FloorStore, ReplayStateError, claim_epoch
from .topics import Kind, Topic, TopicError

__all__ = [
    "BridgeSpec", "BrokerAddress", "BrokerError", "Bus", "BusConfig", "BusConfigError",
    "BusStats", "ConnectionEvent", "DropReason", "LocalBroker", "MosquittoTls", "MqttVersion",
    "Received", "TlsConfig", "Will", "mosquitto_config",
    "DEFAULT_MAX_ENVELOPE_BYTES", "DEFAULT_REPLAY_WINDOW", "ENVELOPE_OVERHEAD",
    "EnvelopeOpener", "EnvelopeSealer", "EnvelopeTooLarge", "FloorStore", "KEY_BYTES",
    "KeyFileError", "Keyring", "Kind", "Opened", "RejectReason", "Rejected",
    "ReplayStateError", "SwarmKey", "Topic", "TopicError", "claim_epoch",
    "generate_key_file", "load_key", "topics",
]
