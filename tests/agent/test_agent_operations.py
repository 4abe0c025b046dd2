"""What an operator sees of a running swarm (issue 9, "Observability"): structured logs
(`[log] format = "json"`: one JSON object per line), the warning when elections happen
too often, and a clean stop on SIGINT (Ctrl-C at a console) as on SIGTERM, with a
restart from the same data folders recovering every acknowledged write. Real agent
processes, real mosquitto."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from agent_cluster import AgentCluster, StatusLog, zone
from swarm.bus.broker import LocalBroker
from swarm.client import SwarmClient

ALERT = "elections too often"


def _log_lines(cluster: AgentCluster, i: int) -> list[dict[str, Any]]:
    """Node ``i``'s log, every line parsed: each must be one JSON object."""
    out = []
    for n, line in enumerate(cluster.log_path(i).read_text().splitlines(), 1):
        try:
            body = json.loads(line)
        except ValueError:
            raise AssertionError(f"drone-{i} log line {n} is not JSON: {line[:200]!r}") from None
        assert isinstance(body, dict), (i, n, line)
        out.append(body)
    return out


def _zones(client: SwarmClient) -> set[str]:
    _, doc = client.read_map()
    return {f["properties"]["id"] for f in doc["features"] if f["properties"]["kind"] == "zone"}


def test_json_logs_the_elections_alert_and_a_clean_sigint(tmp_path: Path,
                                                          mosquitto: LocalBroker) -> None:
    cluster = AgentCluster(tmp_path, mosquitto, 3, log_format="json",
                           extra="[leadership]\nby_link_score = false\n")
    watch: StatusLog | None = None
    try:
        cluster.start_all()
        client = cluster.client()
        watch = StatusLog(cluster, "operations-watch")
        acked: set[str] = set()
        # Two leaders killed in turn: the node never killed has seen three leaders
        # (the first one included) within the alert's 60 s window.
        victims = []
        for k in range(2):
            leader = cluster.wait_leader(client, not_in=victims[-1:])
            assert client.propose(zone(f"before-kill-{k}")).committed
            acked.add(f"before-kill-{k}")
            cluster.kill(leader)
            victims.append(leader)
            cluster.wait_leader(client, among=[i for i in cluster.ids if i != leader],
                                not_in=[leader])
            cluster.start(leader)
        [survivor] = [i for i in cluster.ids if i not in victims]
        assert client.propose(zone("after-kills")).committed
        acked.add("after-kills")
        cluster.wait_converged(client)
        # The warning, in the survivor's structured log and as an alert event.
        deadline = time.monotonic() + 30
        warnings: list[dict[str, Any]] = []
        while not warnings and time.monotonic() < deadline:
            warnings = [b for b in _log_lines(cluster, survivor)
                        if b.get("level") == "warning" and ALERT in str(b.get("msg"))]
            time.sleep(0.2)
        assert warnings, cluster.logs()
        w = warnings[0]
        assert w["node"] == f"drone-{survivor}" and w["logger"].startswith("swarm.agent")
        assert w["t"].endswith("Z") and "term" in w, w
        with watch.lock:
            alerts = [e for _, e in watch.events if e.get("kind") == "alert"
                      and e.get("node") == survivor and ALERT in str(e.get("text"))]
        assert alerts, [e for _, e in watch.events]
        # Every line every node wrote is one JSON object, with the same keys.
        for i in cluster.ids:
            lines = _log_lines(cluster, i)
            assert lines and all({"t", "level", "logger", "node", "msg"} <= set(b)
                                 for b in lines), i
        # SIGINT stops every agent cleanly (exit 0, database closed, lock released).
        for i in cluster.ids:
            cluster.signal(i, signal.SIGINT)
        for i in cluster.ids:
            assert cluster.procs[i].wait(30) == 0, cluster.logs()
            assert any("stopped" in str(b.get("msg")) or "shut" in str(b.get("msg"))
                       for b in _log_lines(cluster, i)[-10:]), _log_lines(cluster, i)[-10:]
        # A restart from the same data folders recovers every acknowledged write.
        cluster.start_all()
        cluster.wait_leader(client)
        assert acked <= _zones(client)
        cluster.wait_converged(client)
    finally:
        if watch is not None:
            watch.close()
        cluster.close()
