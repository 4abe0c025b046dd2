"""Write a nested mapping as TOML (the standard library reads TOML but cannot write it).

Enough for generated node configs: strings, integers, floats, booleans, arrays of
those, tables and arrays of tables. The output round-trips through ``tomllib``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def dumps(data: Mapping[str, Any]) -> str:
    lines: list[str] = []
    _table(data, (), lines)
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_table(v) for v in value)


def _table(data: Mapping[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    # Plain keys first: once a [sub.table] header is written, later keys belong to it.
    for key, value in data.items():
        if not _is_table(value) and not _is_table_array(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in data.items():
        sub = (*path, _key(key))
        if _is_table(value):
            if lines:
                lines.append("")
            lines.append(f"[{'.'.join(sub)}]")
            _table(value, sub, lines)
        elif _is_table_array(value):
            for item in value:
                if lines:
                    lines.append("")
                lines.append(f"[[{'.'.join(sub)}]]")
                _table(item, sub, lines)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # A JSON string with ASCII escapes is a valid TOML basic string.
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if value is None:
        raise ValueError("TOML has no null value")
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write {type(value).__name__} as TOML")
