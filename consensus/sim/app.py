"""The simulator's plug-in point: an application state machine, its own workload and
its own checks, run on the simulated cluster beside the key-value clients.

The key-value clients and their checks (safety after every step, snapshots against a
reference replica, linearizability, durability) keep running unchanged. With an
application, every node's state machine becomes :class:`CompositeStateMachine`: the
key-value store and the application's machine side by side, behind the one
:class:`~consensus.session.SessionStateMachine`, each command routed by a one-byte tag
(:data:`KV_TAG` / :data:`APP_TAG`). So the application's state goes through the same
faults, compaction, InstallSnapshot, restarts and reference-replica comparison.

An application implements :class:`SimApp`; the simulator calls it:

* ``state_machine()`` for every node incarnation and for the reference replica;
* ``act(sim)`` once per tick, after the key-value clients (propose through
  :meth:`Simulation.propose`, payloads wrapped with :func:`app_payload`);
* ``applied(sim, nid, entry, result)`` for every entry node ``nid`` applied (``result``
  is the decoded session result, None for a membership change or a no-op): feed
  session clients, check invariants at this index (raise
  :class:`~consensus.sim.checkers.SafetyViolation` or return a violation text);
* ``node_down(sim, nid)`` when node ``nid`` crashes (its local processes die with it);
* ``restored(sim, nid)`` when node ``nid`` installed a snapshot from the leader (its
  state machine was replaced, not fed entries);
* ``settled(sim)``: nothing of the application's is in flight (the quiet period ends
  only when it is);
* ``final_check(sim)`` once at the end: a violation text or None.

``consensus`` knows nothing of any application: the swarm's evacuation-map simulation
(:mod:`swarm.sim`) plugs in here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgpack

from consensus.driver import AppliedEntry
from consensus.fsm import StateMachine
from consensus.session import SessionResult

if TYPE_CHECKING:
    from consensus.sim.cluster import Simulation

__all__ = ["APP_TAG", "KV_TAG", "CompositeStateMachine", "SimApp", "app_payload"]

KV_TAG = b"k"
APP_TAG = b"a"


def app_payload(data: bytes) -> bytes:
    """The session payload that routes ``data`` to the application's state machine."""
    return APP_TAG + data


class SimApp(Protocol):
    """An application run on the simulated cluster (see the module docstring)."""

    def state_machine(self) -> StateMachine: ...

    def act(self, sim: Simulation) -> None: ...

    def applied(self, sim: Simulation, nid: int, entry: AppliedEntry,
                result: SessionResult | None) -> str | None: ...

    def node_down(self, sim: Simulation, nid: int) -> None: ...

    def restored(self, sim: Simulation, nid: int) -> None: ...

    def settled(self, sim: Simulation) -> bool: ...

    def final_check(self, sim: Simulation) -> str | None: ...


def _error(text: str) -> bytes:
    return msgpack.packb([False, text], use_bin_type=True)


class CompositeStateMachine:
    """The key-value store and an application's state machine as one
    :class:`~consensus.fsm.StateMachine`: a command's first byte says whose it is.
    The snapshot is both snapshots (msgpack array), restored all-or-nothing."""

    def __init__(self, kv: StateMachine, app: StateMachine) -> None:
        self.kv, self.app = kv, app

    def apply(self, index: int, data: bytes) -> bytes:
        tag, rest = data[:1], data[1:]
        if tag == KV_TAG:
            return self.kv.apply(index, rest)
        if tag == APP_TAG:
            return self.app.apply(index, rest)
        return _error(f"composite command: unknown tag {tag!r}")

    def snapshot(self) -> bytes:
        return msgpack.packb([self.kv.snapshot(), self.app.snapshot()], use_bin_type=True)

    def restore(self, data: bytes) -> None:
        try:
            parts = msgpack.unpackb(data, raw=False)
        except Exception as exc:
            raise ValueError(f"composite snapshot is not msgpack: {exc}") from None
        if not (isinstance(parts, list) and len(parts) == 2
                and all(isinstance(p, bytes) for p in parts)):
            raise ValueError("composite snapshot must be an array of two byte strings")
        # Each part's restore validates and raises without changing anything; if the
        # second refuses, the first is put back, so a bad snapshot changes nothing.
        kv_before = self.kv.snapshot()
        self.kv.restore(parts[0])
        try:
            self.app.restore(parts[1])
        except Exception:
            self.kv.restore(kv_before)
            raise
