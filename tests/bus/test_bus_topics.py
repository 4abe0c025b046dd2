"""swarm.bus.topics: every topic of docs/protocol.md is built and parsed in one place,
and anything else is refused with a reason."""

import pytest

from swarm.bus import topics
from swarm.bus.topics import Kind, Topic, TopicError


def test_builders_match_the_protocol_table():
    assert topics.raft("fire-1", 3) == "swarm/fire-1/raft/3"
    assert topics.request("fire-1", 3) == "swarm/fire-1/request/3"
    assert topics.status("fire-1", 3) == "swarm/fire-1/status/3"
    assert topics.plan("fire-1", 3) == "swarm/fire-1/plan/3"
    assert topics.telemetry("fire-1", 3) == "swarm/fire-1/telemetry/3"
    assert topics.map_topic("fire-1") == "swarm/fire-1/map"
    assert topics.events("fire-1") == "swarm/fire-1/events"
    assert topics.wildcard("fire-1", Kind.STATUS) == "swarm/fire-1/status/+"
    assert topics.wildcard("fire-1", Kind.MAP) == "swarm/fire-1/map"
    assert topics.swarm_filter("fire-1") == "swarm/fire-1/#"


@pytest.mark.parametrize("kind", list(Kind))
def test_parse_inverts_every_builder(kind):
    node = 2**31 - 1 if kind.per_node else None
    t = Topic("a", kind, node)
    assert topics.parse(str(t)) == t


@pytest.mark.parametrize("bad", ["", "A", "-a", "a_b", "a" * 33, "a/b", "a+", "é", 3, None])
def test_bad_swarm_ids_are_refused(bad):
    with pytest.raises(TopicError, match="swarm id"):
        topics.raft(bad, 1)


@pytest.mark.parametrize("bad", [0, -1, 2**31, True, 1.0, "1", None])
def test_bad_node_ids_are_refused(bad):
    with pytest.raises(TopicError, match="node id"):
        topics.raft("a", bad)


@pytest.mark.parametrize("bad", [
    "swarm/a/raft", "swarm/a/map/1", "swarm/a/raft/07", "swarm/a/raft/+", "swarm/a/raft/0",
    "swarm/a/raft/2147483648", "swarm/a/vote/1", "other/a/raft/1", "swarm/A/raft/1",
    "swarm/a/raft/1/x", "swarm//raft/1", "swarm/a/raft/ 1", "", 7,
])
def test_parse_refuses_topics_not_of_the_protocol(bad):
    with pytest.raises(TopicError):
        topics.parse(bad)


def test_topic_dataclass_checks_node_presence():
    with pytest.raises(TopicError, match="needs a node id"):
        Topic("a", Kind.RAFT)
    with pytest.raises(TopicError, match="has no node id"):
        Topic("a", Kind.MAP, 1)
