"""The mosquitto ACL for a deployed swarm: each drone may publish only its own topics.

Rendered from swarm.bus.topics (the one place topic names are built), so the rules
cannot drift from what the agents publish. Per docs/protocol.md, drone ``N`` (MQTT user
``drone-N``) may

- publish its own ``status/N`` (and Last Will), ``plan/N`` and ``telemetry/N``;
- publish Raft envelopes to every *other* node (``raft/M``), and read only its own
  ``raft/N`` (envelopes are HMAC-authenticated anyway: the ACL is the outer wall), and
  publish and read the broadcast ``raft-all`` (a leader's heartbeats to every node);
- publish client requests to any node, and read the requests addressed to it;
- publish the ``map`` (whoever leads publishes it) and ``events``;
- publish replies under ``swarm-client/`` (where clients receive them, as
  ``swarm.client`` does at ``swarm-client/<client id>/reply``: a reply topic is never one
  of the swarm's own topics, so a client cannot make an agent write there);
- read every node's status, plan and telemetry, the map and the events.

A ground-station user may read everything of the swarm and publish requests. Every
client, drone or ground station, reads the replies under ``swarm-client/<its own MQTT
client id>/`` and no one else's (a ``pattern`` line, mosquitto's ``%c``). Nothing else
is granted: mosquitto denies by default once an ACL file is in use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from swarm.bus import topics

__all__ = ["AclError", "REPLY_ROOT", "drone_username", "render_acl"]

#: Replies to client requests go under ``swarm-client/<client id>/...`` (outside swarm/).
REPLY_ROOT = "swarm-client"

_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


class AclError(ValueError):
    """Bad input to the ACL renderer (the message names it)."""


def drone_username(node: int) -> str:
    """The MQTT user name of Raft node ``node``: ``drone-<node>``."""
    return f"drone-{topics.check_node_id(node)}"


def render_acl(swarm: str, nodes: Sequence[int], ground_users: Sequence[str] = ("gcs",)) -> str:
    """The ACL file text for swarm ``swarm`` with drones ``nodes``."""
    try:
        topics.check_swarm_id(swarm)
        for node in nodes:
            topics.check_node_id(node)
    except topics.TopicError as exc:
        raise AclError(str(exc)) from None
    if not nodes:
        raise AclError("a swarm needs at least one drone")
    if len(set(nodes)) != len(nodes):
        raise AclError("a node id is listed twice")
    for user in ground_users:
        if not _USER.match(user) or user.startswith("drone-"):
            raise AclError(f"ground-station user {user!r}: letters, digits, '_', '.', '-', "
                           "and not drone-N (those are the drones)")
    if len(set(ground_users)) != len(ground_users):
        raise AclError("a ground-station user is listed twice")
    K = topics.Kind
    lines = [
        f"# mosquitto ACL for swarm {swarm!r}, drones {', '.join(map(str, nodes))}.",
        "# Rendered by `swarm broker-acl` from swarm/bus/topics.py; see docs/deploy-pi.md.",
        "# Everything not granted here is denied.",
        "",
        "# Every client reads the replies addressed to its own client id (swarm.client).",
        f"pattern read {REPLY_ROOT}/%c/#",
        "",
    ]
    for node in nodes:
        lines += [
            f"user {drone_username(node)}",
            f"topic write {topics.status(swarm, node)}",
            f"topic write {topics.plan(swarm, node)}",
            f"topic write {topics.telemetry(swarm, node)}",
            *(f"topic write {topics.raft(swarm, peer)}" for peer in nodes if peer != node),
            f"topic read {topics.raft(swarm, node)}",
            f"topic readwrite {topics.raft_all(swarm)}",
            f"topic write {topics.wildcard(swarm, K.REQUEST)}",
            f"topic read {topics.request(swarm, node)}",
            f"topic readwrite {topics.map_topic(swarm)}",
            f"topic readwrite {topics.events(swarm)}",
            f"topic read {topics.wildcard(swarm, K.STATUS)}",
            f"topic read {topics.wildcard(swarm, K.PLAN)}",
            f"topic read {topics.wildcard(swarm, K.TELEMETRY)}",
            f"topic write {REPLY_ROOT}/#",
            "",
        ]
    for user in ground_users:
        lines += [
            f"user {user}",
            f"topic read {topics.swarm_filter(swarm)}",
            f"topic write {topics.wildcard(swarm, K.REQUEST)}",
            "",
        ]
    return "\n".join(lines)
