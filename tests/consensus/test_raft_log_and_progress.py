"""The core's small companions, unit by unit: the log (§5.3 receiver rules, the §5.4.2
commit rule), quorum arithmetic, per-follower progress and the in-flight window, and
single-server configuration changes (thesis §4.1)."""

from __future__ import annotations

import pytest

from consensus.confchange import ConfChangeError, apply_conf_change
from consensus.inflights import Inflights
from consensus.log import LogError, RaftLog
from consensus.progress import Progress, ProgressState
from consensus.quorum import (
    VoteResult,
    joint_committed_index,
    joint_vote_result,
    majority_committed_index,
    majority_vote_result,
)
from consensus.storage import CompactedError, MemoryStorage
from consensus.types import ConfChange, ConfChangeType, ConfState, Entry, HardState, Snapshot, SnapshotMeta

CS = ConfState.of([1, 2, 3])


def _log(terms: list[int]) -> RaftLog:
    """A log whose stable entries 1..n have the given terms."""
    s = MemoryStorage(CS)
    s.apply_ready(HardState(terms[-1] if terms else 0, 0, 0),
                  [Entry(t, i + 1) for i, t in enumerate(terms)], None)
    return RaftLog(s)


# -- log ------------------------------------------------------------------------------


def test_log_5_3_consistency_check_rejects_a_missing_or_mismatched_previous_entry():
    log = _log([1, 1, 2])
    assert log.maybe_append(3, 1, 0, [Entry(2, 4)]) is None  # term mismatch at 3
    assert log.maybe_append(5, 2, 0, [Entry(2, 6)]) is None  # 5 missing
    assert log.maybe_append(3, 2, 0, [Entry(2, 4)]) == (4, [Entry(2, 4)])


def test_log_5_3_conflicting_suffix_is_replaced_and_duplicates_change_nothing():
    log = _log([1, 1, 2, 2])
    last, appended = log.maybe_append(1, 1, 0, [Entry(1, 2), Entry(3, 3)])
    assert last == 3 and appended == [Entry(3, 3)]
    assert [e.term for e in log.all_entries()] == [1, 1, 3]
    # A delayed, shorter copy of an older AppendEntries must not truncate (§5.3 "if an
    # existing entry conflicts ... delete"; no conflict, no deletion).
    assert log.maybe_append(1, 1, 0, [Entry(1, 2)]) == (2, [])
    assert log.last_index() == 3


def test_log_commit_index_is_capped_by_what_the_leader_vouched_for():
    log = _log([1, 1, 1, 1])
    log.maybe_append(1, 1, 10, [Entry(1, 2)])
    assert log.committed == 2  # not 4: entries 3-4 may still be replaced


def test_log_refuses_to_overwrite_a_committed_entry():
    log = _log([1, 1, 1])
    log.commit_to(3)
    with pytest.raises(LogError):
        log.maybe_append(1, 1, 3, [Entry(2, 2)])


def test_log_5_4_2_commits_only_entries_of_the_current_term_by_counting():
    log = _log([1, 1, 2])
    assert not log.maybe_commit(2, 2)  # entry 2 is from term 1
    assert log.committed == 0
    assert log.maybe_commit(3, 2)
    assert log.committed == 3


def test_log_5_4_1_up_to_date_comparison():
    log = _log([1, 2, 2])
    assert log.is_up_to_date(3, 2) and log.is_up_to_date(1, 3)
    assert not log.is_up_to_date(2, 2) and not log.is_up_to_date(9, 1)


@pytest.mark.parametrize("index, term, expected", [
    (6, 4, (6, 3)),   # our term at 6 is 3 <= 4
    (6, 2, (3, 2)),   # skip all of term 3
    (6, 1, (1, 1)),
    (6, 0, (0, 0)),
    (3, 2, (3, 2)),
])
def test_log_find_conflict_by_term_skips_whole_terms(index, term, expected):
    log = _log([1, 2, 2, 3, 3, 3])
    assert log.find_conflict_by_term(index, term) == expected


def test_log_unstable_entries_become_stable_only_if_their_term_still_matches():
    log = _log([1])
    log.append([Entry(1, 2), Entry(1, 3)])
    assert [e.index for e in log.unstable_entries()] == [2, 3]
    log.append([Entry(2, 3)])  # replaced before the Ready was acknowledged
    log.stable_to(3, 1)  # the acknowledgement is for the old entry 3: ignored
    assert [e.index for e in log.unstable_entries()] == [2, 3]
    log.stable_to(3, 2)
    assert log.unstable_entries() == []


def test_log_slice_spans_storage_and_unstable_and_respects_byte_limits():
    log = _log([1, 1, 1])
    log.append([Entry(1, 4, data=b"x" * 10), Entry(1, 5)])
    assert [e.index for e in log.slice(2, 6)] == [2, 3, 4, 5]
    assert [e.index for e in log.slice(2, 6, max_bytes=40)] == [2, 3]
    assert [e.index for e in log.slice(4, 6, max_bytes=1)] == [4]


def test_log_after_compaction_answers_the_dummy_term_and_refuses_older():
    s = MemoryStorage(CS)
    s.apply_ready(HardState(2, 0, 4), [Entry(1, 1), Entry(1, 2), Entry(2, 3), Entry(2, 4)], None)
    s.create_snapshot(3, CS, b"")
    s.compact(3)
    log = RaftLog(s)
    assert (log.first_index(), log.term(3)) == (4, 2)
    with pytest.raises(CompactedError):
        log.term(2)
    with pytest.raises(CompactedError):
        log.slice(3, 5)


def test_log_restore_from_snapshot_resets_the_log():
    log = _log([1, 1])
    snap = Snapshot(SnapshotMeta(10, 3, CS), b"s")
    log.restore(snap)
    assert (log.first_index(), log.last_index(), log.committed) == (11, 10, 10)
    assert log.term(10) == 3 and log.has_pending_snapshot()
    assert log.next_committed_entries() == []  # apply the snapshot first


# -- quorum -----------------------------------------------------------------------------


def test_quorum_majority_committed_index():
    match = {1: 5, 2: 3, 3: 9, 4: 1, 5: 3}
    assert majority_committed_index([1, 2, 3], match.get) == 5
    assert majority_committed_index([1, 2, 3, 4, 5], match.get) == 3
    assert majority_committed_index([1, 2, 3, 4], match.get) == 3
    assert majority_committed_index([7], match.get) == 0


def test_quorum_vote_results():
    assert majority_vote_result([1, 2, 3], {1: True}) is VoteResult.PENDING
    assert majority_vote_result([1, 2, 3], {1: True, 2: True}) is VoteResult.WON
    assert majority_vote_result([1, 2, 3], {1: True, 2: False, 3: False}) is VoteResult.LOST
    assert majority_vote_result([1, 2, 3, 4], {1: True, 2: True, 3: False}) is VoteResult.PENDING


def test_quorum_joint_configuration_needs_both_halves():
    match = {1: 5, 2: 5, 3: 1, 4: 1, 5: 1}
    assert joint_committed_index([1, 2, 3], [3, 4, 5], match.get) == 1
    assert joint_committed_index([1, 2, 3], [], match.get) == 5
    votes = {1: True, 2: True, 4: False, 5: False}
    assert joint_vote_result([1, 2, 3], [3, 4, 5], votes) is VoteResult.LOST
    assert joint_vote_result([1, 2, 3], [1, 2, 4], votes) is VoteResult.WON


# -- progress and inflights ---------------------------------------------------------------


def test_inflights_bounded_by_count_and_bytes():
    inf = Inflights(3, max_bytes=100)
    inf.add(1, 10)
    inf.add(2, 10)
    assert not inf.full()
    inf.add(3, 10)
    assert inf.full()  # count
    inf.free_le(2)
    assert inf.count() == 1 and not inf.full()
    inf.add(4, 95)
    assert inf.full()  # bytes
    inf.free_first_one()
    assert inf.count() == 1 and inf.bytes() == 95


def test_progress_probe_sends_one_message_then_waits():
    pr = Progress(5, 4, 0)
    assert not pr.is_paused()
    pr.sent_entries(3, 30)
    assert pr.is_paused() and pr.next == 5  # probe does not advance next optimistically
    assert pr.maybe_update(7)
    assert not pr.is_paused()
    pr.become_replicate()
    assert pr.next == 8


def test_progress_replicate_streams_until_the_window_is_full():
    pr = Progress(1, 2, 0)
    pr.become_replicate()
    pr.sent_entries(2, 20)
    pr.sent_entries(3, 30)
    assert pr.next == 6 and pr.is_paused()
    pr.maybe_update(2)
    pr.inflights.free_le(2)
    assert not pr.is_paused()


def test_progress_rejections_backtrack_and_stale_rejections_are_ignored():
    pr = Progress(10, 4, 0)
    assert pr.maybe_decr_to(9, 4)
    assert pr.next == 5
    assert not pr.maybe_decr_to(9, 2)  # stale: not the probe we have outstanding
    pr.maybe_update(4)
    pr.become_replicate()
    pr.sent_entries(3, 0)
    assert not pr.maybe_decr_to(3, 3)  # below match: stale
    assert pr.maybe_decr_to(6, 3) and pr.next == pr.match + 1


def test_progress_snapshot_state_pauses_and_resumes_after_the_snapshot():
    pr = Progress(1, 4, 0)
    pr.become_snapshot(Snapshot(SnapshotMeta(20, 2, CS), b"x"))
    assert pr.is_paused() and pr.state is ProgressState.SNAPSHOT
    pr.become_probe()
    assert pr.next == 21 and pr.state is ProgressState.PROBE


# -- configuration changes --------------------------------------------------------------------


def test_confchange_4_1_single_server_changes_and_learners():
    cs = apply_conf_change(CS, ConfChange(ConfChangeType.ADD_LEARNER, 4))
    assert cs == ConfState((1, 2, 3), (4,))
    cs = apply_conf_change(cs, ConfChange(ConfChangeType.ADD_VOTER, 4))
    assert cs == ConfState((1, 2, 3, 4), ())
    cs = apply_conf_change(cs, ConfChange(ConfChangeType.ADD_LEARNER, 2))  # demote
    assert cs == ConfState((1, 3, 4), (2,))
    cs = apply_conf_change(cs, ConfChange(ConfChangeType.REMOVE_NODE, 2))
    assert cs == ConfState((1, 3, 4), ())
    assert CS == ConfState((1, 2, 3), ())  # the input was never mutated


def test_confchange_refuses_removing_a_stranger_or_the_last_voter():
    with pytest.raises(ConfChangeError):
        apply_conf_change(CS, ConfChange(ConfChangeType.REMOVE_NODE, 9))
    with pytest.raises(ConfChangeError):
        apply_conf_change(ConfState.of([1]), ConfChange(ConfChangeType.REMOVE_NODE, 1))
