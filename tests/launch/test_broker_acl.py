"""The ACL renderer's input checks and the `swarm broker-acl` command (no broker needed;
test_broker_templates.py runs the rendered ACL on a real mosquitto)."""

from __future__ import annotations

import pytest

from swarm.__main__ import main
from swarm.deploy import AclError, drone_username, render_acl


@pytest.mark.parametrize(("swarm", "nodes", "users", "message"), [
    ("Wild", [1], ("gcs",), "swarm id 'Wild' is invalid"),
    ("w", [], ("gcs",), "at least one drone"),
    ("w", [0], ("gcs",), "node id 0 is invalid"),
    ("w", [1, 1], ("gcs",), "listed twice"),
    ("w", [1], ("drone-7",), "not drone-N"),
    ("w", [1], ("a b",), "ground-station user 'a b'"),
    ("w", [1], ("gcs", "gcs"), "listed twice"),
])
def test_bad_input_is_refused_with_the_reason(swarm, nodes, users, message) -> None:
    with pytest.raises(AclError, match=message):
        render_acl(swarm, nodes, users)


def test_each_drone_block_grants_raft_to_the_others_only() -> None:
    blocks = render_acl("w", [1, 2, 3]).split("\n\n")
    drone2 = next(b for b in blocks if b.startswith(f"user {drone_username(2)}"))
    assert "topic write swarm/w/raft/1" in drone2 and "topic write swarm/w/raft/3" in drone2
    assert "topic write swarm/w/raft/2" not in drone2
    assert "topic read swarm/w/raft/2" in drone2


def test_the_command_prints_the_acl_and_refuses_bad_ranges(capsys) -> None:
    assert main(["broker-acl", "--swarm", "w", "--nodes", "1-2,5", "--ground-user", "ops"]) == 0
    out = capsys.readouterr().out
    assert out == render_acl("w", [1, 2, 5], ("ops",))
    with pytest.raises(SystemExit) as info:
        main(["broker-acl", "--swarm", "w", "--nodes", "5-1"])
    assert info.value.code == 2
    assert "'5-1' is not a range N-M with N <= M" in capsys.readouterr().err
    assert main(["broker-acl", "--swarm", "W", "--nodes", "1"]) == 2
    assert "swarm id 'W' is invalid" in capsys.readouterr().err
