"""Client sessions: exactly-once application under retries (thesis §6.3)."""

from __future__ import annotations

import msgpack
import pytest

from consensus import ProposalDropped
from consensus.session import (
    ClientSession,
    SessionError,
    SessionStateMachine,
    SessionStatus,
    decode_result,
    decode_results,
    encode_command,
    encode_commands,
    encode_register,
)

from _harness import Cluster


class Counter:
    """Counts increments: applying a command twice is visible."""

    def __init__(self) -> None:
        self.value = 0

    def apply(self, index: int, data: bytes) -> bytes:
        self.value += int(data)
        return str(self.value).encode()

    def snapshot(self) -> bytes:
        return str(self.value).encode()

    def restore(self, data: bytes) -> None:
        self.value = int(data)


def _sessions() -> SessionStateMachine:
    return SessionStateMachine(Counter(), max_sessions=4)


def test_sessions_6_3_retry_returns_cached_result_and_applies_once():
    sm = _sessions()
    reg = decode_result(sm.apply(1, encode_register(b"nonce-1")))
    assert reg.status is SessionStatus.REGISTERED and reg.client_id == 1
    assert reg.payload == b"nonce-1"
    client = ClientSession(reg.client_id)
    seq, cmd = client.command(b"5")
    first = decode_result(sm.apply(2, cmd))
    again = decode_result(sm.apply(3, client.encoded(seq)))
    assert first.payload == again.payload == b"5"
    assert again.cached and sm.inner.value == 5


def test_sessions_unknown_session_is_refused_not_applied():
    sm = _sessions()
    r = decode_result(sm.apply(1, encode_command(77, 1, b"3")))
    assert r.status is SessionStatus.SESSION_EXPIRED and sm.inner.value == 0


def test_sessions_expire_least_recently_used_by_log_index_deterministically():
    a, b = _sessions(), _sessions()
    for sm in (a, b):
        ids = [decode_result(sm.apply(i, encode_register())).client_id for i in range(1, 5)]
        sm.apply(5, encode_command(ids[0], 1, b"1"))  # client 1 used recently
        sm.apply(6, encode_register())  # 5th session: evicts the LRU one (client 2)
        assert set(sm.sessions()) == {1, 3, 4, 6}
        r = decode_result(sm.apply(7, encode_command(2, 1, b"1")))
        assert r.status is SessionStatus.SESSION_EXPIRED
    assert a.snapshot() == b.snapshot()  # replicas agree byte for byte


def test_sessions_acknowledged_results_are_dropped_and_old_retries_are_stale():
    sm = _sessions()
    cid = decode_result(sm.apply(1, encode_register())).client_id
    sm.apply(2, encode_command(cid, 1, b"1"))
    sm.apply(3, encode_command(cid, 2, b"1", ack=2))  # client got result 1
    # A delayed duplicate of command 1 (as first sent, ack=1) commits late.
    r = decode_result(sm.apply(4, encode_command(cid, 1, b"1", ack=1)))
    assert r.status is SessionStatus.STALE and sm.inner.value == 2
    assert sm.has_applied(cid, 1) and sm.has_applied(cid, 2)


def test_sessions_6_3_pipelined_command_lost_in_a_crash_is_applied_when_retried():
    # Commands n and n+1 in flight; n is lost with the old leader, n+1 commits; the
    # retry of n must be applied (once), not answered STALE.
    sm = _sessions()
    cid = decode_result(sm.apply(1, encode_register())).client_id
    client = ClientSession(cid)
    n, _lost = client.command(b"1")
    n1, cmd1 = client.command(b"10")
    assert decode_result(sm.apply(2, cmd1)).status is SessionStatus.OK
    assert sm.has_applied(cid, n1) and not sm.has_applied(cid, n)
    retry = decode_result(sm.apply(3, client.encoded(n)))
    assert retry.status is SessionStatus.OK and not retry.cached
    assert sm.inner.value == 11
    again = decode_result(sm.apply(4, client.encoded(n)))
    assert again.cached and sm.inner.value == 11


def test_sessions_window_full_refuses_without_applying_until_acknowledged():
    sm = SessionStateMachine(Counter(), max_responses=2)
    cid = decode_result(sm.apply(1, encode_register())).client_id
    sm.apply(2, encode_command(cid, 1, b"1", ack=1))
    sm.apply(3, encode_command(cid, 2, b"1", ack=1))
    r = decode_result(sm.apply(4, encode_command(cid, 3, b"1", ack=1)))
    assert r.status is SessionStatus.WINDOW_FULL and sm.inner.value == 2
    r = decode_result(sm.apply(5, encode_command(cid, 3, b"1", ack=2)))  # got result 1
    assert r.status is SessionStatus.OK and sm.inner.value == 3


def test_sessions_snapshot_round_trip_and_bad_snapshot_changes_nothing():
    sm = _sessions()
    cid = decode_result(sm.apply(1, encode_register())).client_id
    sm.apply(2, encode_command(cid, 1, b"4"))
    copy = _sessions()
    copy.restore(sm.snapshot())
    assert copy.inner.value == 4
    r = decode_result(copy.apply(3, encode_command(cid, 1, b"4")))
    assert r.cached and copy.inner.value == 4
    with pytest.raises(SessionError):
        copy.restore(msgpack.packb([1, b"4", [["x"]]]))
    assert copy.inner.value == 4 and cid in copy.sessions()


def test_sessions_malformed_envelopes_are_invalid_and_change_nothing():
    sm = _sessions()
    for bad in (b"\xc1", msgpack.packb([1, "cmd", -1, 1, 1, b"x"]),
                msgpack.packb([1, "cmd", 1, 1, 1, "text"]), msgpack.packb({"a": 1})):
        assert decode_result(sm.apply(1, bad)).status is SessionStatus.INVALID
    assert sm.sessions() == {} and sm.inner.value == 0


def test_exactly_once_under_retries_across_a_leader_crash():
    c = Cluster(3, seed=80, fsm_factory=_sessions)
    lead = c.elect()
    c.propose(lead, encode_register(b"me"))
    c.stabilize()
    reg_index = max(idx for (i, idx) in c.results if i == lead)
    cid = decode_result(c.results[(lead, reg_index)]).client_id
    client = ClientSession(cid)
    seq, cmd = client.command(b"10")
    # The command commits, but the leader crashes before answering the client ...
    c.propose(lead, cmd)
    c.stabilize()
    c.crash(lead)
    new = c.elect()
    # ... so the client retries (twice, even) at the new leader.
    for _ in range(2):
        try:
            c.propose(new, client.encoded(seq))
        except ProposalDropped:
            pass
        c.stabilize()
    c.restart(lead)
    c.tick(5)
    for i in (1, 2, 3):
        assert c.views[i].fsm.inner.value == 10  # applied exactly once everywhere
    results = [decode_result(r) for (i, _), r in c.results.items() if i == new]
    assert [r.payload for r in results if r.seq == seq] == [b"10", b"10", b"10"]


# -- batch entries: several commands of one session in one log entry


def _batch_sessions() -> SessionStateMachine:
    return SessionStateMachine(Counter(), max_sessions=4, max_responses=4, batch_entries=True)


def test_a_batch_entry_applies_each_command_once_in_order_at_its_index():
    sm = _batch_sessions()
    cid = decode_result(sm.apply(1, encode_register())).client_id
    results = decode_results(sm.apply(2, encode_commands(cid, 0, [(2, b"10"), (1, b"1")])))
    assert [(r.status, r.client_id, r.seq, r.payload, r.cached) for r in results] == [
        (SessionStatus.OK, cid, 2, b"10", False), (SessionStatus.OK, cid, 1, b"11", False)]
    assert sm.inner.value == 11 and sm.has_applied(cid, 1) and sm.has_applied(cid, 2)
    # The same entry again (re-proposed after a leader change), and a retry of one of its
    # commands in an entry of its own: answered from the cache, nothing applied twice.
    again = decode_results(sm.apply(3, encode_commands(cid, 0, [(2, b"10"), (1, b"1")])))
    assert [(r.seq, r.payload, r.cached) for r in again] == [(2, b"10", True), (1, b"11", True)]
    [single] = decode_results(sm.apply(4, encode_command(cid, 1, b"1")))
    assert single.cached and single.payload == b"11" and sm.inner.value == 11
    # A batch mixing a cached command with new ones applies only the new ones.
    mixed = decode_results(sm.apply(5, encode_commands(cid, 1, [(2, b"10"), (3, b"100")])))
    assert [r.cached for r in mixed] == [True, False] and sm.inner.value == 111


def test_a_batch_entry_keeps_each_commands_session_checks():
    sm = _batch_sessions()   # 4 unacknowledged results per session
    cid = decode_result(sm.apply(1, encode_register())).client_id
    rs = decode_results(sm.apply(2, encode_commands(cid, 1, [(q, b"1") for q in range(1, 7)])))
    assert [r.status for r in rs] == [SessionStatus.OK] * 4 + [SessionStatus.WINDOW_FULL] * 2
    assert sm.inner.value == 4
    # ack 3: results 1 and 2 acknowledged; 1 is now stale, 5 and 6 fit.
    rs = decode_results(sm.apply(3, encode_commands(cid, 3, [(5, b"1"), (6, b"1")])))
    assert [r.status for r in rs] == [SessionStatus.OK, SessionStatus.OK]
    [stale] = decode_results(sm.apply(4, encode_command(cid, 1, b"1")))
    assert stale.status is SessionStatus.STALE and sm.inner.value == 6
    # An unknown session: every command refused, none applied.
    rs = decode_results(sm.apply(5, encode_commands(99, 0, [(1, b"1"), (2, b"1")])))
    assert [r.status for r in rs] == [SessionStatus.SESSION_EXPIRED] * 2
    assert [r.client_id for r in rs] == [99, 99] and sm.inner.value == 6
    # The snapshot holds the batch-applied results like any others.
    restored = _batch_sessions()
    restored.restore(sm.snapshot())
    assert restored.snapshot() == sm.snapshot() and restored.has_applied(cid, 6)


def test_a_malformed_batch_entry_is_invalid_and_changes_nothing():
    sm = _batch_sessions()
    cid = decode_result(sm.apply(1, encode_register())).client_id
    before = sm.snapshot()
    bad = [
        [1, "cmds", cid, 1, []],                           # no commands
        [1, "cmds", cid, 1, [[1, b"1"], [0, b"1"]]],       # a seq of 0 (after a good one)
        [1, "cmds", cid, 1, [[1, b"1"], [2, "text"]]],     # a payload not bytes
        [1, "cmds", cid, 3, [[3, b"1"], [2, b"1"]]],       # ack beyond a command's seq
        [1, "cmds", 0, 1, [[1, b"1"]]],                    # client id 0
        [1, "cmds", cid, 1, [[1, b"1", b"x"]]],            # a member of three
        [1, "cmds", cid, 1, "nope"],
    ]
    for obj in bad:
        [r] = decode_results(sm.apply(2, msgpack.packb(obj, use_bin_type=True)))
        assert r.status is SessionStatus.INVALID, obj
    assert sm.snapshot() == before and sm.inner.value == 0
    # Without batch_entries (the map: its versions are log indexes) a batch entry is
    # refused whole, identically on every replica.
    plain = _sessions()
    cid = decode_result(plain.apply(1, encode_register())).client_id
    [r] = decode_results(plain.apply(2, encode_commands(cid, 0, [(1, b"1"), (2, b"1")])))
    assert r.status is SessionStatus.INVALID and plain.inner.value == 0
    with pytest.raises(SessionError):
        encode_commands(cid, 0, [])
    with pytest.raises(SessionError):
        encode_commands(cid, 2, [(1, b"1")])
    with pytest.raises(SessionError):
        decode_result(encode_commands(cid, 0, [(1, b"1")]))   # not a result at all
    for obj in ([1, "results", cid, []], [1, "results", cid, [[0, 1, b""]]],
                [1, "results", 0, [[0, 1, b"", False]]], [1, "results", cid, [[9, 1, b"", False]]]):
        with pytest.raises(SessionError):
            decode_results(msgpack.packb(obj, use_bin_type=True))
