"""swarm/agent/trace.py: the instrumented run's switch (SWARM_LATENCY_TRACE) is
validated, and a trace is bounded and written whole. The stages themselves are
exercised end to end by bench/agent_latency.py (its smoke run fails when no command
was traced through every stage)."""

from __future__ import annotations

import pytest

from swarm.agent import trace
from swarm.agent.trace import ENV, LatencyTrace, from_env


def test_off_unless_asked(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert from_env(1) is None
    monkeypatch.setenv(ENV, "")
    assert from_env(1) is None


def test_a_folder_that_does_not_exist_is_refused_by_name(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=f"{ENV}=.*missing.* is not an existing folder"):
        from_env(1)
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(ENV, str(tmp_path / "file"))
    with pytest.raises(ValueError, match="not an existing folder"):
        from_env(1)


def test_marks_are_bounded_and_written_one_per_line(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path))
    monkeypatch.setattr(trace, "MAX_MARKS", 5)
    t = from_env(3)
    assert isinstance(t, LatencyTrace) and t.path == tmp_path / "trace-3.txt"
    for k in range(8):
        t.mark(f"stage{k}", at=float(k))
    t.write()
    lines = t.path.read_text().splitlines()
    assert lines == [f"{k:.7f} stage{k}" for k in range(3, 8)]   # the newest 5
    assert not list(tmp_path.glob("*.tmp"))


def test_only_acknowledgements_of_new_entries_are_marked(tmp_path):
    """The answer to an append that carries only the commit index repeats the index the
    follower already acknowledged; it is not a stage of the next command's path, so the
    bench must not see it (it took it for the next command's acknowledgement)."""
    from consensus.types import Entry, Message, MessageType
    from swarm.agent.node import _trace_sent, _trace_stepped

    leader, follower = LatencyTrace(tmp_path / "l.txt"), LatencyTrace(tmp_path / "f.txt")

    def ack(index: int, reject: bool = False) -> Message:
        return Message(MessageType.APPEND_RESP, to=1, frm=2, term=3, index=index,
                       reject=reject)

    for m in (ack(5), ack(5), ack(4, reject=True), ack(6), ack(6)):
        _trace_sent(follower, 1, [m])
        _trace_stepped(leader, m, received=1.0)
    append = Message(MessageType.APPEND, to=2, frm=1, term=3, index=6, log_term=3,
                     entries=(Entry(3, 7, data=b"x"),))
    _trace_sent(leader, 2, [append])
    leader.write()
    follower.write()
    assert [line.split()[1] for line in follower.path.read_text().splitlines()] == \
        ["ack_send:1", "ack_send:1"]
    assert [line.split()[1] for line in leader.path.read_text().splitlines()] == \
        ["ack_net:2", "ack_step:2", "ack_net:2", "ack_step:2", "app_send:2"]
