"""Signal-aware leadership: the best-connected drone leads (docs/consensus.md).

Raft lets any up-to-date voter lead; which one does is a liveness and performance
choice, never a safety one. In a swarm the leader relays every write, so the drone with
the best radio link should lead. Each node's driver sets its link-quality score
(``RawNode.set_link_score``); followers send theirs with every APPEND_RESP and
HEARTBEAT_RESP, and the leader runs this policy once per leader tick:

* Hand over (``transfer_leader``: TimeoutNow, thesis §3.10) to a caught-up voter whose
  fresh score has beaten the leader's own by ``margin`` for ``dwell`` consecutive ticks
  (the best-scored one if several have: two good links trading places under noise do
  not reset each other's dwell).
* At most one transfer per ``interval`` ticks, counted from when this node became
  leader and from its last transfer; so whatever the noise, a leader hands over at most
  ``ticks / interval`` times (the bound on transfers per hour).
* A transfer that does not finish within an election timeout is abandoned by the core
  (``Raft.transfer_elapsed``), after which the leader takes proposals again.

And on every node: a poor score adds up to ``max_delay`` ticks to the randomized
election timeout (§5.2), so after a leader crash the better-placed drones tend to time
out, campaign and win first.

Pure and tick-based (no clock, no randomness): the same ticks and scores give the same
decisions, so the seeded simulator replays them exactly. Scores are integers in
[0, MAX_LINK_SCORE].
"""

from __future__ import annotations

from collections.abc import Iterable

from .types import MAX_LINK_SCORE, NONE

__all__ = ["LeadershipPolicy", "score_from_unit"]


def score_from_unit(score: float) -> int:
    """A driver's [0, 1] score as the integer the core and the wire carry."""
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
        raise ValueError(f"link score must be a number in [0, 1], got {score!r}")
    return round(score * MAX_LINK_SCORE)


class LeadershipPolicy:
    """The leader-side decision and the election delay. One per Raft node."""

    def __init__(self, *, margin: int, dwell: int, interval: int, max_delay: int, freshness: int) -> None:
        self.margin = margin
        self.dwell = dwell
        self.interval = interval
        self.max_delay = max_delay
        #: A follower's score counts only if heard within this many leader ticks.
        self.freshness = freshness
        self._scores: dict[int, tuple[int, int]] = {}  # node -> (score, tick heard)
        self._now = 0
        self._since_transfer = 0
        #: Per follower: consecutive leader ticks it has beaten our score by the margin.
        self._streak: dict[int, int] = {}
        #: Transfers this node started (for status and the benchmarks), and the node the
        #: last one went to (the transfer may be over, and its target unknown as leader
        #: for a moment, by the time anyone looks).
        self.transfers = 0
        self.last_target = NONE

    def became_leader(self) -> None:
        """A new term of leadership: forget the last leader's view, wait an interval."""
        self._scores.clear()
        self._since_transfer = 0
        self._streak.clear()

    def observe(self, node: int, score: int) -> None:
        """A follower reported its score (in an APPEND_RESP or HEARTBEAT_RESP)."""
        self._scores[node] = (score, self._now)

    def scores(self) -> dict[int, int]:
        """The fresh follower scores the leader knows."""
        return {n: s for n, (s, at) in sorted(self._scores.items()) if self._now - at <= self.freshness}

    def tick(self, own: int | None, eligible: Iterable[int]) -> int:
        """One leader tick. ``eligible``: the voters a transfer may go to now (caught up,
        not this node; empty while a transfer is in progress). Returns the node to hand
        leadership to, or NONE."""
        self._now += 1
        self._since_transfer += 1
        if own is None or not any(score >= own + self.margin for score, _ in self._scores.values()):
            # No follower's score, fresh or not, beats ours: no streak runs and there is
            # nothing to decide (a leader's every tick, mostly: ``eligible`` is not even
            # looked at, the core passes it unevaluated).
            if self._streak:
                self._streak = {}
            return NONE
        fresh = self.scores()
        allowed = set(eligible)
        streak: dict[int, int] = {}
        if own is not None:
            for node, score in fresh.items():
                if score >= own + self.margin:
                    streak[node] = self._streak.get(node, 0) + 1
        # A follower's streak survives ticks where it was not eligible (a transfer in
        # progress, a moment behind), but not one where it did not beat us.
        self._streak = streak
        ready = [n for n, k in streak.items() if k >= self.dwell and n in allowed]
        if not ready or self._since_transfer < self.interval:
            return NONE
        # The best of those that have beaten us for the whole dwell (ties: lowest id).
        target = max(sorted(ready), key=lambda n: (fresh[n], -n))
        self._since_transfer = 0
        self._streak = {}
        self.transfers += 1
        self.last_target = target
        return target

    def may_transfer(self, own: int | None) -> bool:
        """Whether a leader tick could start a transfer with no new input: only while a
        fresh follower score beats ``own`` by the margin (a streak under way). Without
        one, ticks only age the scores, so no tick transfers until a score arrives or
        ``own`` changes (Raft.ticks_until_due)."""
        if own is None:
            return False
        beat, now, freshness = own + self.margin, self._now, self.freshness
        return any(score >= beat and now - at <= freshness for score, at in self._scores.values())

    def election_delay(self, own: int | None) -> int:
        """Extra ticks before campaigning: ``max_delay`` for a score of 0, none for the
        best score, linear between (none for a node whose driver sets no score)."""
        if own is None:
            return 0
        return self.max_delay * (MAX_LINK_SCORE - own) // MAX_LINK_SCORE
