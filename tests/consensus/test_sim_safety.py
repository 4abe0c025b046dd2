"""Seeded fault schedules against the real core: at least 500 random 5-node schedules
(drop, duplicate, reorder, delay, partitions, crashes and restarts, slow disks,
membership changes including leader removal, leadership transfers, compaction and
InstallSnapshot), each checked after every step for Raft's safety properties and at
the end for linearizability and durability of acknowledged writes. Zero violations.
The 500 run in chunks that pytest-xdist can spread over cores (``pytest -n 2``).

The timing is printed (run with ``-s``), never asserted; bench/consensus_sim_soak.py
runs 10,000 seeds."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from consensus.sim.cluster import SimConfig, run_seed

CI_SEEDS = 500
#: The 500 seeds run as independent chunks so pytest-xdist (``-n 2``) spreads them over
#: cores; all 500 still run, each exactly as ``python -m consensus.sim --seed N`` does.
CHUNK = 50
CHUNKS = [range(lo, min(lo + CHUNK, CI_SEEDS)) for lo in range(0, CI_SEEDS, CHUNK)]

#: What the 5-node schedules claim to exercise.
EXERCISED = ("crashes", "partitions", "log truncations", "snapshots installed", "leaders elected",
             "reads served", "writes acknowledged", "slow disk writes", "leader transfers asked",
             "membership remove_node proposed", "membership add_voter proposed", "client crashes",
             "clock skews", "partial partitions")


@pytest.mark.parametrize("seeds", CHUNKS, ids=[f"seeds{c.start}-{c.stop - 1}" for c in CHUNKS])
def test_500_random_five_node_fault_schedules_have_no_violations(seeds: range) -> None:
    cfg = SimConfig(nodes=5)
    t0 = time.perf_counter()
    failures = []
    unknown = 0
    unconverged = []
    slowest = (0.0, -1)
    for seed in seeds:
        res = run_seed(seed, cfg)
        unknown += res.linearizability == "unknown"
        slowest = max(slowest, (res.seconds, seed))
        if not res.converged:
            unconverged.append(seed)
        if not res.ok:
            failures.append(f"seed {seed}: {res.violation}\n  replay: {res.replay_command}\n{res.details[:2000]}")
    elapsed = time.perf_counter() - t0
    print(f"\nseeds {seeds.start}-{seeds.stop - 1} in {elapsed:.1f} s, slowest seed {slowest[1]} ({slowest[0]:.3f} s)")
    assert not failures, f"{len(failures)} violating seeds; first:\n{failures[0]}"
    assert not unconverged, f"seeds that did not converge once faults stopped: {unconverged[:10]}"
    assert unknown == 0, f"{unknown} histories exhausted the linearizability search budget"


def test_the_ci_seeds_exercise_every_fault_they_claim() -> None:
    # The schedules must actually do what the safety test above claims to test. The rarest
    # (a learner promoted to voter) shows up about once in ten seeds; stop as soon as
    # everything has been seen, within the CI seeds.
    cfg = SimConfig(nodes=5)
    exercised: Counter[str] = Counter()
    for seed in range(CI_SEEDS):
        exercised.update(run_seed(seed, cfg).counts)
        if all(exercised[what] > 0 for what in EXERCISED):
            print(f"\nevery fault exercised within seeds 0-{seed}")
            return
    missing = [what for what in EXERCISED if exercised[what] == 0]
    raise AssertionError(f"no run among the {CI_SEEDS} CI seeds exercised {missing}")


def test_three_node_cluster_with_heavy_loss_stays_safe() -> None:
    cfg = SimConfig(nodes=3, drop_rate=0.25, dup_rate=0.1, reorder_rate=0.3, steps=300)
    for seed in range(40):
        res = run_seed(seed, cfg)
        assert res.ok, f"seed {seed}: {res.violation}\n  replay (with drop 0.25): {res.replay_command}"


def test_fault_free_runs_commit_and_converge() -> None:
    cfg = SimConfig(faults=frozenset(), steps=200)
    for seed in range(5):
        res = run_seed(seed, cfg)
        assert res.ok, res.violation
        assert res.converged
        assert res.counts.get("leaders elected") == 1  # a stable leader, no churn without faults
        assert res.committed > 20


def test_sqlite_storage_and_wire_codec_under_faults(tmp_path: Path) -> None:
    # The real storage in the loop: every crash closes the database file and every
    # restart recovers the node from it; every message crosses the wire codec.
    cfg = SimConfig(nodes=3, steps=250, storage="sqlite", wire_codec=True)
    crashed = 0
    for seed in range(4):
        res = run_seed(seed, cfg, storage_dir=tmp_path)
        assert res.ok, f"seed {seed}: {res.violation}\n  replay: {res.replay_command}"
        crashed += res.counts.get("crashes", 0) > 0
    # Crashes are drawn at random: most seeds (not necessarily each) recover from SQLite.
    assert crashed >= 3
