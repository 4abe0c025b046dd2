"""Deterministic simulation testing for the Raft core: a seeded virtual network with
faults, a cluster of RawNodes driven in virtual time, safety checkers run after every
step, and a linearizability checker for the client-visible key-value history."""

from consensus.sim.linearizability import (
    CheckResult,
    KeyResult,
    Operation,
    OpKind,
    Verdict,
    check_kv_history,
)

__all__ = [
    "CheckResult",
    "KeyResult",
    "Operation",
    "OpKind",
    "Verdict",
    "check_kv_history",
]
