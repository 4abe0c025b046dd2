"""``swarm agent --config drone.toml``: run one drone's Raft node on the MQTT bus
(swarm/agent/; every config key in docs/agent.md). Flags override the file.

Exit status: 0 after a clean shutdown (SIGTERM or SIGINT), 2 for a bad config or
flags, 1 when the agent cannot start (data folder in use, key file unsafe, storage
corrupt ...) or fails while running.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from swarm.agent.machine import STATE_MACHINES

    p = argparse.ArgumentParser(
        prog="swarm agent", allow_abbrev=False,
        description="Run one drone's Raft node: replicate the evacuation map with the swarm "
                    "through an MQTT broker and answer clients. Every key of the config file "
                    "is described in docs/agent.md; flags override the file.")
    p.add_argument("--config", required=True, metavar="FILE", help="the drone's TOML config")
    p.add_argument("--check-config", action="store_true",
                   help="validate the config (and flags), print it, and exit")
    o = p.add_argument_group("overrides of the config file")
    o.add_argument("--node-id", type=int, metavar="N", help="[node] id")
    o.add_argument("--name", help="[node] name")
    o.add_argument("--data-dir", metavar="DIR", help="[node] data_dir")
    o.add_argument("--voters", metavar="IDS", help="[node] voters, comma-separated (1,2,3)")
    o.add_argument("--state-machine", choices=STATE_MACHINES,
                   help="[node] state_machine (register: for benchmarking the consensus path)")
    o.add_argument("--swarm", metavar="ID", help="[swarm] id")
    o.add_argument("--key-file", metavar="FILE", help="[swarm] key_file")
    o.add_argument("--broker", action="append", metavar="HOST:PORT",
                   help="[bus] brokers (repeat for fail-over, in order of preference)")
    o.add_argument("--mqtt", choices=("5", "3.1.1"), help="[bus] protocol")
    o.add_argument("--profile", choices=("lan", "radio"), help="[timing] profile")
    o.add_argument("--tick-ms", type=int, metavar="MS", help="[timing] tick_ms")
    o.add_argument("--metrics", metavar="HOST:PORT", help="[metrics] listen, or 'off'")
    o.add_argument("--log-format", choices=("text", "json"), help="[log] format")
    o.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="[log] level")
    return p


def _overrides(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    out: dict[str, Any] = {}
    table = {"node_id": "node.id", "name": "node.name", "data_dir": "node.data_dir",
             "state_machine": "node.state_machine",
             "swarm": "swarm.id", "key_file": "swarm.key_file", "broker": "bus.brokers",
             "mqtt": "bus.protocol", "profile": "timing.profile", "tick_ms": "timing.tick_ms",
             "metrics": "metrics.listen", "log_format": "log.format", "log_level": "log.level"}
    for attr, key in table.items():
        value = getattr(args, attr)
        if value is not None:
            out[key] = value
    if args.voters is not None:
        try:
            out["node.voters"] = [int(v) for v in args.voters.split(",")]
        except ValueError:
            parser.error(f"--voters: {args.voters!r} is not a comma-separated list of node ids")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from swarm.agent.config import ConfigError, load_config

    try:
        config = load_config(args.config, _overrides(args, parser))
    except ConfigError as exc:
        print(f"swarm agent: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{args.config}: OK")
        print(config)
        return 0

    from swarm.agent.logs import setup_logging
    from swarm.agent.node import Agent, AgentError

    setup_logging(config.log.format, config.log.level, config.node.name)
    log = logging.getLogger("swarm.agent")
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    agent = Agent(config)
    try:
        agent.start()
    except AgentError as exc:
        log.error("cannot start: %s", exc)
        return 1
    if agent.metrics_port is not None and config.metrics.listen is not None:
        log.info("metrics on http://%s:%d/metrics", config.metrics.listen[0], agent.metrics_port)
    try:
        agent.run(stop)
    except Exception:
        log.exception("the node thread failed")
        return 1
    return 0
