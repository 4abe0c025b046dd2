"""Single-server membership changes (thesis §4.1, §4.2.1): a pure function from a
configuration and one change to the next configuration; the old one is never mutated
(etcd-io/raft ``confchange/`` style)."""

from __future__ import annotations

from .types import ConfChange, ConfChangeType, ConfState

__all__ = ["ConfChangeError", "apply_conf_change"]


class ConfChangeError(ValueError):
    """The change cannot be applied to this configuration."""


def apply_conf_change(cs: ConfState, cc: ConfChange) -> ConfState:
    """The configuration after ``cc``. Each change alters the voter set by at most one
    server, so any majority of the old voters overlaps any majority of the new ones —
    the property that makes single-server changes safe without joint consensus (§4.1).

    Raises :class:`ConfChangeError` for a change that would leave no voter, or a
    removal of a node that is not a member.
    """
    voters = set(cs.voters)
    learners = set(cs.learners)
    n = cc.node_id
    if cc.type is ConfChangeType.ADD_VOTER:
        learners.discard(n)
        voters.add(n)
    elif cc.type is ConfChangeType.ADD_LEARNER:
        voters.discard(n)
        learners.add(n)
    elif cc.type is ConfChangeType.REMOVE_NODE:
        if n not in voters and n not in learners:
            raise ConfChangeError(f"node {n} is not a member of {cs}")
        voters.discard(n)
        learners.discard(n)
    else:  # pragma: no cover - the enum is closed
        raise ConfChangeError(f"unknown change {cc.type!r}")
    if not voters:
        raise ConfChangeError(f"{cc} would leave the cluster with no voter")
    return ConfState.of(voters, learners)
