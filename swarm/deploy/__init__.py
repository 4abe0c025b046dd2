"""Putting the swarm on real machines: the ground station's broker access rules
(``broker_acl``); the drone's config and systemd unit (``swarm init-drone``) and its
pre-flight checks (``swarm doctor``) come here too. docs/deploy-pi.md is the guide."""

from .broker_acl import AclError, drone_username, render_acl

__all__ = ["AclError", "drone_username", "render_acl"]
