"""Logging for the agent: human-readable text, or one JSON object per line
(``[log] format = "json"``) for journald and log shippers.

A JSON line carries ``t`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
``node`` (the drone's name), ``msg``, and every field passed with ``extra={"fields":
{...}}`` (e.g. ``term``, ``leader``), so a line can be filtered without parsing prose.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["JsonFormatter", "setup_logging"]


class JsonFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        body: dict[str, Any] = {
            "t": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "node": self.node,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                body.setdefault(str(key), value)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, ensure_ascii=False)


def setup_logging(format: str, level: str, node: str, stream: TextIO | None = None) -> None:
    """Configure the root logger for this process (the agent's ``main`` calls it once)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if format == "json":
        handler.setFormatter(JsonFormatter(node))
    else:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)-7s {node} %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # paho logs every packet at DEBUG; keep it at WARNING unless asked for.
    logging.getLogger("swarm.bus.paho").setLevel(max(logging.WARNING, root.level))
