"""Raft consensus, sans-I/O: a deterministic state machine driven by logical ticks,
messages and proposals, with storage behind a small interface. No sockets, threads,
clocks or files inside the core (see docs/consensus.md)."""
