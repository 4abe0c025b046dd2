"""YAML loading that remembers where every value came from.

PyYAML's composer already records a line for every node; we keep those marks next to
the plain Python values, keyed by the value's path inside the document, so that a
schema error can say ``demo.yaml:14: nodes[2].ready.timeout: ...`` instead of only
naming a key. Duplicate mapping keys (which PyYAML would silently let the last one win)
are an error here: in a launch file they are always a mistake.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["Document", "Path", "Template", "YamlError", "load_document"]

Path = tuple[str | int, ...]


class YamlError(ValueError):
    """The text is not valid YAML (or uses a YAML feature launch files refuse)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Template:
    """A string scalar that contains ``$(...)`` substitutions, resolved later.

    ``plain`` is true when the scalar was written unquoted: after substitution such a
    value is typed the way YAML would have typed the text (``port: $(arg port)`` gives
    the integer 1883, as ``port: 1883`` would); a quoted scalar stays a string.
    """

    text: str
    plain: bool


@dataclass(frozen=True)
class Document:
    """One YAML file: its value (dicts, lists, scalars and Templates) and line marks."""

    value: Any
    lines: dict[Path, int]

    def line(self, path: Path) -> int | None:
        """The line of the value at ``path``, or of its nearest enclosing value."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def load_document(text: str) -> Document:
    """Parse one YAML document (safe subset: no tags beyond the standard ones)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlError(line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlError(None, f"invalid YAML: {exc}") from None
    lines: dict[Path, int] = {}
    if node is None:
        return Document(None, lines)
    return Document(_convert(node, (), lines), lines)


_SCALAR_CONSTRUCTOR = yaml.SafeLoader("")


def _convert(node: yaml.Node, path: Path, lines: dict[Path, int]) -> Any:
    # A mapping value is marked with its key's line (set by the caller): that is the
    # line a reader looks at for "nodes[2].ready", not the line its block starts on.
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(key_node.start_mark.line + 1, "mapping keys must be plain strings")
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlError(key_node.start_mark.line + 1,
                                "YAML merge keys (<<) are not supported in launch files")
            key = str(key_node.value)
            if key in result:
                raise YamlError(key_node.start_mark.line + 1, f"duplicate key {key!r}")
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, (*path, key), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    if node.tag == "tag:yaml.org,2002:str" and "$(" in node.value:
        return Template(node.value, plain=node.style is None)
    try:
        return _SCALAR_CONSTRUCTOR.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise YamlError(node.start_mark.line + 1, f"invalid YAML value: {exc}") from None


def retype_plain_scalar(text: str) -> Any:
    """Type ``text`` the way YAML types an unquoted value: ``1883`` an int, ``true`` a
    bool, ``[1, 2, 3]`` a list, an empty text null; anything YAML would not read as one
    plain value (or would read as a date) stays the string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (datetime.date, datetime.datetime)):
        return text
    return value
