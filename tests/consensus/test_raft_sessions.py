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
    encode_command,
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
