"""The replicated state machine an agent runs, behind one small interface.

The agent replicates one application state machine behind the session layer
(consensus.session: exactly-once). Which one is ``[node] state_machine``: ``"map"``
(the evacuation map, the product) or ``"register"`` (a minimal key-value register,
swarm/agent/register.py, for benchmarking the consensus path without the map's
geometry). Everything the client protocol and the node need of it goes through
:class:`AgentMachine`, so neither knows which one runs:

* intake: :meth:`AgentMachine.parse_command` turns a request's JSON command into the
  canonical bytes that are proposed, or raises :class:`CommandRefused` naming the field
  (the reply ``invalid``);
* the reply: :meth:`AgentMachine.outcome` decodes what ``apply`` returned;
* reads: :meth:`AgentMachine.read` (the whole state or one item, after ReadIndex);
* the status: :attr:`AgentMachine.version` and the session layer's snapshot hash;
* the retained ``map`` topic: :meth:`AgentMachine.document` (None: nothing to publish).

The flight side, the leader's assignment and the ground station need the map itself;
with the register they are refused (``[mavlink]`` is a config error) or off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from consensus.fsm import StateMachine
from swarm.bus.replay import atomic_write

if TYPE_CHECKING:
    from swarm.evacmap import EvacuationMap

__all__ = ["STATE_MACHINES", "AgentMachine", "CommandRefused", "MapMachine", "Outcome",
           "check_data_dir", "claim_data_dir", "make_machine"]

#: The values of ``[node] state_machine`` (the first is the default).
STATE_MACHINES = ("map", "register")
#: In the data folder: which state machine its log holds (see check_data_dir).
MARKER_FILE = "state-machine"


class CommandRefused(ValueError):
    """A client's command the state machine refuses before proposing it; the message
    names the field (reply ``invalid``)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``apply`` returned for one command, decoded: ``ok`` and the log index that
    applied it (``version``), or why it was refused. ``result`` is the JSON result as
    the client gets it (the reply's ``result``)."""

    ok: bool
    version: int | None
    error: str | None
    result: Any


class AgentMachine(Protocol):
    """The seams between the agent and its replicated state machine (module docstring)."""

    #: ``[node] state_machine``: shown in status and logs.
    name: str
    #: Whether several commands may share one log index (consensus.session batch
    #: entries: a batch proposed as one entry). The map keys its versions on the index,
    #: so it proposes one entry per command.
    batch_entries: bool
    #: What the session layer wraps and the driver applies, snapshots and restores.
    fsm: StateMachine

    @property
    def version(self) -> int:
        """Log index of the last entry that changed the state (0 when empty)."""
        ...

    def parse_command(self, raw: Mapping[str, Any]) -> bytes:
        """The canonical bytes to propose for a client's command; raises CommandRefused."""
        ...

    def outcome(self, payload: bytes) -> Outcome:
        """Decode ``apply``'s result; raises ValueError when it is not one."""
        ...

    def read(self, item: str | None) -> tuple[int, Any]:
        """``(version, the whole state)`` or, ``item``, one item; KeyError if absent."""
        ...

    def document(self) -> dict[str, Any] | None:
        """What the leader publishes retained on ``swarm/<swarm>/map``, or None."""
        ...


class MapMachine:
    """The evacuation map (swarm.evacmap) as the agent's state machine."""

    name = "map"
    batch_entries = False

    def __init__(self, evacuation_map: EvacuationMap | None = None) -> None:
        # Imported here, not at the top: the agent's config imports this module, and
        # tools that only read a config need no geometry (shapely, numpy).
        from swarm import evacmap

        self._evacmap = evacmap
        self.map = evacuation_map if evacuation_map is not None else evacmap.EvacuationMap()
        self.fsm: StateMachine = self.map

    @property
    def version(self) -> int:
        return self.map.version

    def parse_command(self, raw: Mapping[str, Any]) -> bytes:
        m = self._evacmap
        try:
            return m.encode_command(m.parse_command(raw))
        except m.CommandError as exc:
            raise CommandRefused(str(exc)) from None
        except (ValueError, RecursionError) as exc:  # the parser must not, but never crash
            raise CommandRefused(f"command: {str(exc)[:200]}") from None

    def outcome(self, payload: bytes) -> Outcome:
        try:
            r = self._evacmap.decode_result(payload)
        except self._evacmap.CommandError as exc:
            raise ValueError(str(exc)) from None
        return Outcome(r.ok, r.version, r.error, json.loads(payload))

    def read(self, item: str | None) -> tuple[int, Any]:
        doc = self._evacmap.map_to_geojson(self.map)
        if item is None:
            return self.map.version, doc
        for feature in doc["features"]:
            if feature["id"] == item:
                return self.map.version, feature
        raise KeyError(item)

    def document(self) -> dict[str, Any] | None:
        return self._evacmap.map_to_geojson(self.map)


def make_machine(name: str) -> AgentMachine:
    """A fresh, empty state machine of kind ``name`` (one of STATE_MACHINES)."""
    if name == "map":
        return MapMachine()
    if name == "register":
        from .register import Register

        return Register()
    raise ValueError(f"unknown state machine {name!r}; one of {', '.join(STATE_MACHINES)}")


def check_data_dir(data_dir: Path, name: str) -> bool:
    """Check, without writing, that the data folder's log is one of ``name``'s (recorded
    in MARKER_FILE when the folder is first used; a store made before the marker existed
    is the map's). Replaying a map log into the register (or the reverse) would refuse
    every entry and serve an empty state as if it were committed; so a mismatch raises
    ValueError. True when the marker is still to be written (claim_data_dir)."""
    path = data_dir / MARKER_FILE
    try:
        held: str | None = path.read_text().strip()
    except FileNotFoundError:
        held = "map" if (data_dir / "raft.db").exists() else None
    if held is not None and held != name:
        raise ValueError(f"data folder {data_dir} holds the log of a {held!r} state machine, "
                         f"but [node] state_machine is {name!r}: set it back, or use a new "
                         "data_dir (every node of a swarm runs the same state machine)")
    return held is None


def claim_data_dir(data_dir: Path, name: str) -> None:
    """check_data_dir, then record ``name`` in a folder used for the first time."""
    if check_data_dir(data_dir, name):
        atomic_write(data_dir / MARKER_FILE, f"{name}\n".encode("ascii"))
