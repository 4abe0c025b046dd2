"""Seeded link-quality scores for the simulator's nodes (signal-aware leadership,
consensus/leadership.py).

Each node has a base score in [0.1, 1] (how well placed its drone is); now and then one
jumps to a new value (a drone flies away or comes back); every tick each reported score
is the base plus uniform noise (fading, RTT jitter). Only numbers: the radio model
itself lives in mavlink_bridge/signal.py and knows nothing of Raft. A separate RNG
stream, seeded from the run's seed, so turning scores on changes no other draw.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["ScoreSchedule"]


class ScoreSchedule:
    def __init__(self, seed: int, ids: Sequence[int], *, noise: float, change_rate: float) -> None:
        if not 0.0 <= noise <= 1.0 or not 0.0 <= change_rate <= 1.0:
            raise ValueError("score noise and change rate must be in [0, 1]")
        self._rng = random.Random(f"link-scores/{seed}")  # str seeds hash with SHA-512: stable
        self.noise = noise
        self.change_rate = change_rate
        self.base = {i: round(self._rng.uniform(0.1, 1.0), 3) for i in ids}

    def best(self, among: Sequence[int]) -> int:
        """The node with the best base score (ties: the lowest id)."""
        return max(sorted(among), key=lambda i: (self.base[i], -i))

    def step(self) -> tuple[dict[int, float], int | None]:
        """This tick's scores, and the node whose base just changed (or None)."""
        moved = None
        if self.change_rate and self._rng.random() < self.change_rate:
            moved = self._rng.choice(sorted(self.base))
            self.base[moved] = round(self._rng.uniform(0.1, 1.0), 3)
        scores = {i: min(1.0, max(0.0, b + self._rng.uniform(-self.noise, self.noise)))
                  for i, b in sorted(self.base.items())}
        return scores, moved
