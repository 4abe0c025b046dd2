"""The agent's Prometheus metrics (prometheus-client), served on ``[metrics] listen``
(loopback by default).

Two kinds, so the node's thread never blocks on the HTTP thread and vice versa:

* histograms (commit latency, fsync latency) are prometheus-client ``Histogram`` objects
  observed directly (they lock internally, for nanoseconds);
* everything else (term, role, indexes, counters kept by the driver, the bus and the
  envelope opener) is read by one custom collector from an immutable
  :class:`MetricsSnapshot` that the node's thread replaces now and then (one reference
  assignment, atomic in CPython). A scrape sees one consistent picture.

Metric names are prefixed ``swarm_`` and carry no node label: each agent is its own
scrape target (Prometheus adds ``instance``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["AgentMetrics", "MetricsSnapshot"]

_ROLES = ("follower", "pre_candidate", "candidate", "leader")


@dataclass(frozen=True)
class MetricsSnapshot:
    term: int = 0
    role: str = "follower"
    leader: int = 0
    commit: int = 0
    applied: int = 0
    last_index: int = 0
    map_version: int = 0
    elections_started: int = 0
    elections_won: int = 0
    leader_changes: int = 0
    raft_messages_sent: int = 0
    raft_messages_received: int = 0
    #: reason -> count: messages or envelopes that did not leave or were not stepped.
    raft_dropped: Mapping[str, int] = field(default_factory=dict)
    #: reason -> count: envelopes refused by authentication / replay / decoding, and
    #: messages the core refused as invalid.
    raft_rejected: Mapping[str, int] = field(default_factory=dict)
    broker_connected: bool = False
    broker_reconnects: int = 0
    broker_failovers: int = 0
    client_requests: Mapping[str, int] = field(default_factory=dict)
    client_replies: Mapping[str, int] = field(default_factory=dict)
    client_pending: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0
    #: Best-signal leadership (swarm/agent/link.py): this node's score and its inputs
    #: (None: not known yet, left out of the exposition).
    link_score: float | None = None
    broker_rtt_s: float | None = None
    broker_probe_loss: float = 0.0
    score_transfers: int = 0


class _SnapshotCollector(Collector):
    def __init__(self, owner: "AgentMetrics") -> None:
        self.owner = owner

    def collect(self) -> Iterator[Any]:
        s = self.owner.snapshot
        for name, value, help_text in (
            ("raft_term", s.term, "current Raft term"),
            ("raft_leader", s.leader, "node id of the leader this node knows (0: none)"),
            ("raft_commit_index", s.commit, "highest log index known committed"),
            ("raft_applied_index", s.applied, "highest log index applied to the map"),
            ("raft_last_index", s.last_index, "last index in this node's log"),
            ("map_version", s.map_version, "version of the applied evacuation map"),
            ("broker_connected", int(s.broker_connected), "1 while connected to a broker"),
            ("client_pending_requests", s.client_pending,
             "client commands (each of a batch), registrations and reads waiting for an answer"),
        ):
            yield GaugeMetricFamily(f"swarm_{name}", help_text, value=value)
        for name, maybe, help_text in (
            ("link_score", s.link_score, "this node's link score in [0, 1] (best-signal leadership)"),
            ("broker_rtt_seconds", s.broker_rtt_s, "median round trip of the broker self-ping"),
            ("broker_probe_loss", s.broker_probe_loss, "fraction of recent broker probes lost"),
        ):
            if maybe is not None:
                yield GaugeMetricFamily(f"swarm_{name}", help_text, value=maybe)
        role = GaugeMetricFamily("swarm_raft_role", "1 for this node's current role",
                                 labels=["role"])
        for r in _ROLES:
            role.add_metric([r], 1 if s.role == r else 0)
        yield role
        for name, value, help_text in (
            ("raft_elections_started", s.elections_started, "elections this node started"),
            ("raft_elections_won", s.elections_won, "elections this node won"),
            ("raft_leader_changes", s.leader_changes, "changes of the leader this node knows"),
            ("raft_messages_sent", s.raft_messages_sent, "Raft messages handed to the broker"),
            ("raft_messages_received", s.raft_messages_received,
             "Raft messages received, authenticated and stepped"),
            ("broker_reconnects", s.broker_reconnects, "broker connections after the first"),
            ("broker_failovers", s.broker_failovers, "connections to another broker of the list"),
            ("snapshots_taken", s.snapshots_taken, "map snapshots taken (log compaction)"),
            ("snapshots_installed", s.snapshots_installed, "snapshots installed from a leader"),
            ("leader_transfers", s.score_transfers,
             "leadership hand-overs this node started as leader for a better link"),
        ):
            yield CounterMetricFamily(f"swarm_{name}", help_text, value=value)
        for name, table, label, help_text in (
            ("raft_messages_dropped", s.raft_dropped, "reason",
             "Raft messages or envelopes dropped (not sent, or not handled), by reason"),
            ("raft_messages_rejected", s.raft_rejected, "reason",
             "Raft envelopes or messages refused (authentication, replay, size, decoding)"),
            ("client_requests", s.client_requests, "op", "client requests received, by op"),
            ("client_replies", s.client_replies, "outcome",
             "client outcomes sent, by outcome (each command of a batch reply counts)"),
        ):
            family = CounterMetricFamily(f"swarm_{name}", help_text, labels=[label])
            for key in sorted(table):
                family.add_metric([key], table[key])
            yield family


class AgentMetrics:
    """The metrics of one agent, in their own registry (tests run several agents'
    metrics in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.snapshot = MetricsSnapshot()
        self.commit_latency = Histogram(
            "swarm_commit_latency_seconds",
            "client proposal received -> committed and applied on this node",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=self.registry)
        self.fsync_latency = Histogram(
            "swarm_storage_write_seconds",
            "one Ready persisted in one SQLite transaction (an fsync when it must sync)",
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1),
            registry=self.registry)
        self.registry.register(_SnapshotCollector(self))
        self._server: Any = None

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint (a daemon thread); returns the port bound."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
