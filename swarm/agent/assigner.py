"""The leader commits who does what (issue 13): one place, in the agent.

Every agent runs one :class:`LeaderAssignment`, with or without a flight controller (a
ground-side node that wins an election proposes too). On every applied map version
the node thread calls :meth:`LeaderAssignment.map_applied`, which is cheap: it only
hands the view to a latest-wins worker when this node leads and the committed
assignment is missing or stale (:func:`swarm.planner.needs_assignment`). Computing the
assignment is as slow as planning (GEOS, pymap3d), so it runs on that worker, never on
the node thread that ticks Raft; the ``set_assignment`` it computes goes through the
agent's own session (:class:`swarm.flight.OwnCommits`), like any client's command.

Stale and superseded proposals need nothing here: the map refuses an assignment whose
epoch is not the map's current one (it moved on before the proposal committed), the
next applied version is stale again and a new one is proposed. One proposal per
(term, epoch): a node elected again, or a new leader, proposes afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from swarm.evacmap import MapView
from swarm.flight import LatestWins, OwnCommits
from swarm.planner import PlannerConfig, needs_assignment, propose_assignment

__all__ = ["LeaderAssignment", "wants_assignment"]

log = logging.getLogger("swarm.agent")


def wants_assignment(view: MapView) -> bool:
    """True when a leader should propose an assignment for ``view``: the committed one
    is missing or stale, and there is someone to assign (drones on the map), or a
    committed assignment to replace (the last drone left)."""
    return needs_assignment(view) and (bool(view.drones) or view.assignment is not None)


class LeaderAssignment:
    """``map_applied`` on the node thread; the proposal is computed on its worker.

    ``leader_term()`` returns this node's term while it leads, else None (read on both
    threads: a proposal computed by a node that lost leadership meanwhile is dropped;
    one that slips through is refused by nobody and harmless, the epoch check decides).
    """

    def __init__(self, commits: OwnCommits, leader_term: Callable[[], int | None], *,
                 name: str, planner: PlannerConfig | None = None) -> None:
        self.commits = commits
        self._leader_term = leader_term
        self._planner = planner or PlannerConfig()
        self._proposed: tuple[int, int] | None = None  # (term, epoch) of the last proposal
        self.proposed = 0
        self._worker: LatestWins[MapView] = LatestWins(self._propose, name=f"assignment-{name}")

    def map_applied(self, view: MapView) -> None:
        """A map version was applied, or this node became leader (node thread)."""
        term = self._leader_term()
        if term is None or not wants_assignment(view) or self._proposed == (term, view.assignment_epoch):
            return
        self._worker.submit(view)

    def close(self) -> None:
        self._worker.close()

    def _propose(self, view: MapView) -> None:
        term = self._leader_term()
        if term is None or self._proposed == (term, view.assignment_epoch):
            return
        command = propose_assignment(view, self._planner)
        if self.commits.submit(command):
            self._proposed = (term, view.assignment_epoch)
            self.proposed += 1
            log.info("leader (term %d): proposing the assignment for epoch %d (map version %d)",
                     term, view.assignment_epoch, view.version)
