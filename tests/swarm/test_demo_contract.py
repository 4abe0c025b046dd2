"""The demo driver keeps the Ready contract: nothing leaves a node before the state it
promises is durable in that node's storage (Raft Figure 2, "Persistent state ... updated
on stable storage before responding to RPCs"). Checked on every message of a full run,
at the moment the driver hands it to the exchange."""

from __future__ import annotations

from consensus import MessageType, decode_message
from swarm.demo import DemoConfig, _Demo

# PreVote messages carry the term a node *would* campaign in; nothing is persisted for
# them (thesis section 9.6), so the term rule does not apply.
_UNPERSISTED_TERM = {MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP}


def test_every_message_is_sent_only_after_what_it_promises_is_persisted() -> None:
    demo = _Demo(DemoConfig(seed=5, write_files=False), lambda _text: None)
    checked: dict[str, int] = {"messages": 0, "append_acks": 0, "votes": 0}
    send = demo.net.send

    def checked_send(to: int, payload: bytes, now: int) -> None:
        m = decode_message(payload)
        storage = demo.drones[m.frm].storage
        hard = storage.hard_state()
        if m.type not in _UNPERSISTED_TERM:
            assert m.term <= hard.term, (m, hard)
        if m.type is MessageType.APPEND_RESP and not m.reject:
            # acknowledging entries up to m.index: they must be on this node's disk
            assert storage.last_index() >= m.index, (m, storage.last_index())
            checked["append_acks"] += 1
        if m.type is MessageType.VOTE_RESP and not m.reject:
            assert hard.vote == m.to and hard.term == m.term, (m, hard)
            checked["votes"] += 1
        checked["messages"] += 1
        send(to, payload, now)

    demo.net.send = checked_send  # type: ignore[method-assign]
    demo.run_scenario()
    demo.settle()
    # the run exercised what the check is about
    assert checked["messages"] > 500
    assert checked["append_acks"] > 50
    assert checked["votes"] >= 4  # two elections in a five-node cluster


def test_state_machine_safety_check_catches_a_divergent_apply() -> None:
    import pytest

    from consensus import Entry
    from swarm.demo import DemoError

    demo = _Demo(DemoConfig(seed=1, write_files=False), lambda _text: None)
    one, two = demo.drones[1], demo.drones[2]
    demo._check_state_machine_safety(one, Entry(1, 5, data=b"a"))
    demo._check_state_machine_safety(two, Entry(1, 5, data=b"a"))  # same entry: fine
    with pytest.raises(DemoError, match="state machine safety violated at index 5"):
        demo._check_state_machine_safety(two, Entry(1, 5, data=b"b"))
