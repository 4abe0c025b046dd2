"""Deterministic simulation testing for the Raft core: a seeded virtual network with
faults, a cluster of RawNodes driven in virtual time, safety checkers run after every
step, and a linearizability checker for the client-visible key-value history.

Run it from the command line with ``python -m consensus.sim`` (see :mod:`.cli`)."""

from consensus.sim.checkers import SafetyChecker, SafetyViolation, Violation
from consensus.sim.cli import main
from consensus.sim.cluster import ALL_FAULTS, SimConfig, SimResult, Simulation, replay_command, run_seed
from consensus.sim.kv import KvCommand, KvStateMachine
from consensus.sim.linearizability import (
    CheckResult,
    KeyResult,
    Operation,
    OpKind,
    Verdict,
    check_kv_history,
)
from consensus.sim.network import NetworkFaults, VirtualNetwork

__all__ = [
    "ALL_FAULTS",
    "CheckResult",
    "KeyResult",
    "KvCommand",
    "KvStateMachine",
    "NetworkFaults",
    "Operation",
    "OpKind",
    "SafetyChecker",
    "SafetyViolation",
    "SimConfig",
    "SimResult",
    "Simulation",
    "Verdict",
    "Violation",
    "VirtualNetwork",
    "check_kv_history",
    "main",
    "replay_command",
    "run_seed",
]
