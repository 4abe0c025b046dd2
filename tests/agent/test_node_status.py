"""swarm.node_status.parse_status: the one check of a retained node status (outside
input) for the client and ``swarm status``. A status as docs/protocol.md shows it is
accepted with every field typed; garbage of any type in any field it reads refuses the
status whole, naming the field, and never raises anything but StatusError."""

from __future__ import annotations

import json
from typing import Any

import pytest

from swarm.node_status import MAX_STATUS_BYTES, StatusError, leader_of, parse_status

#: docs/protocol.md, "Node status" (the leader's, with peers).
DOCUMENTED: dict[str, Any] = {
    "v": 1, "node": 2, "name": "drone-2", "online": True, "t": 1_700_000_000_000,
    "role": "leader", "term": 7, "leader": 2, "commit": 120, "applied": 120,
    "last_index": 120, "map_version": 118, "elections_started": 1, "leader_changes": 3,
    "voters": [1, 2, 3],
    "peers": {"1": {"match": 120, "lag": 0, "last_contact_ms": 40, "state": "replicate"},
              "3": {"match": 100, "lag": 20, "last_contact_ms": None}},
    "link_score": 0.82,
    "link": {"radio": 0.9, "radio_source": "radio_status", "broker_rtt_ms": 4.1,
             "broker_loss": 0.0},
    "score_transfers": 0, "link_scores": {"1": 0.95},
    "fc": {"connected": True, "map_version_held": 118, "mode": "AUTO", "armed": True},
}

#: Values of every JSON type (and the out-of-range ones) to put into each field.
GARBAGE: list[Any] = ["7", "", 7.5, -1, 2**64, True, False, [], [7], {}, {"a": 1},
                      float("nan"), float("inf"),
                      10**309]   # no float holds it: math.isfinite raises OverflowError


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(DOCUMENTED))
    *parents, last = path.split(".")
    target = doc
    for key in parents:
        target = target[key]
    target[last] = value
    return doc


def test_the_documented_status_is_accepted_with_every_field_typed() -> None:
    s = parse_status(json.dumps(DOCUMENTED).encode(), 2)
    assert (s.node, s.online, s.role, s.term, s.leader, s.commit, s.applied, s.map_version) == (
        2, True, "leader", 7, 2, 120, 120, 118)
    assert s.voters == frozenset({1, 2, 3}) and s.name == "drone-2"
    assert s.peers[1].lag == 0 and s.peers[1].last_contact_ms == 40
    assert s.peers[3].last_contact_ms is None
    assert (s.link_score, s.radio_source) == (0.82, "radio_status")
    assert s.fc is not None and (s.fc.connected, s.fc.map_version_held, s.fc.mode, s.fc.armed) == (
        True, 118, "AUTO", True)
    assert s.raw["score_transfers"] == 0   # the rest kept as published


def test_a_last_will_and_a_status_with_only_the_required_fields() -> None:
    gone = parse_status(b'{"v": 1, "node": 4, "online": false}', 4)
    assert not gone.online and gone.term is None and gone.leader is None
    bare = parse_status({"v": 1, "node": 4, "online": True, "role": "follower", "term": 0}, 4)
    assert bare.leader is None and bare.commit is None and bare.fc is None and not bare.peers
    no_leader = parse_status({"v": 1, "node": 4, "online": True, "role": "candidate",
                              "term": 3, "leader": 0}, 4)
    assert no_leader.leader is None   # 0 on the wire: no leader known


# Every field a reader uses, and what must be in the message.
FIELDS = ["v", "node", "online", "role", "term", "leader", "t", "name", "commit", "applied",
          "last_index", "map_version", "voters", "peers", "link_score", "link",
          "link.radio_source", "fc", "fc.connected", "fc.armed", "fc.map_version_held",
          "fc.mode", "peers.1", "peers.1.lag", "peers.1.match", "peers.1.last_contact_ms"]


@pytest.mark.parametrize("path", FIELDS)
@pytest.mark.parametrize("value", GARBAGE, ids=lambda v: repr(v)[:24])
def test_garbage_in_any_field_refuses_the_whole_status(path: str, value: Any) -> None:
    doc = _with(path, value)
    try:
        parse_status(doc, 2)
    except StatusError as exc:
        assert path.split(".")[-1] in str(exc) or path.startswith("peers."), (path, str(exc))
        return
    # Only values of the field's own type and range may pass.
    ok = {"online": [True, False], "name": ["7"], "voters": [[], [7]], "peers": [{}],
          "link": [{}, {"a": 1}], "fc": [{}, {"a": 1}], "fc.connected": [True, False],
          "fc.armed": [True, False], "fc.mode": ["7"], "peers.1": [{}, {"a": 1}],
          "peers.1.last_contact_ms": [7.5]}
    allowed = ok.get(path, [])
    assert any(value is a or (type(value) is type(a) and value == a) for a in allowed), (
        f"{path} = {value!r} was accepted")


@pytest.mark.parametrize("payload", [
    b"", b"not json", b"[]", b"7", b'"status"', b"null", b"{" * 100_000,
    b'{"v": 1, "node": 2, "online": true, "role": "leader", "term": 1}' + b" " * MAX_STATUS_BYTES,
    "\udcff".encode("utf-8", "surrogatepass"), bytes(range(256)),
])
def test_payloads_that_are_not_a_status_object_are_refused(payload: bytes) -> None:
    with pytest.raises(StatusError):
        parse_status(payload, 2)


def test_a_status_claiming_another_node_or_naming_bad_node_ids_is_refused() -> None:
    with pytest.raises(StatusError, match="node: 2 is not the topic's node 99"):
        parse_status(DOCUMENTED, 99)
    for path, value in (("leader", 2**31), ("voters", [1, 0]), ("voters", [1, True]),
                        ("voters", list(range(1, 300)))):
        with pytest.raises(StatusError):
            parse_status(_with(path, value), 2)
    for key in ("0", "07", "-1", "x", "1" * 5000, "١"):
        doc = _with("peers", {key: {"lag": 0}})
        with pytest.raises(StatusError, match="peers"):
            parse_status(doc, 2)


def test_leader_of_takes_the_freshest_status_of_the_highest_term() -> None:
    def s(node: int, term: int, leader: int, t: int, online: bool = True):
        return parse_status({"v": 1, "node": node, "online": online, "role": "follower",
                             "term": term, "leader": leader, "t": t}, node)

    assert leader_of([s(1, 3, 1, 10), s(2, 4, 2, 5), s(3, 4, 3, 9)]) == 3
    assert leader_of([s(1, 9, 1, 10, online=False), s(2, 4, 2, 5)]) == 2
    assert leader_of([]) is None
