"""Launch files: the schema, and loading one into a validated LaunchDescription.

A launch file is YAML (docs/launch.md has the reference)::

    description: broker and ground station
    args:
      port: {default: "$(find-free-port)", description: broker TCP port}
    include:
      - file: other.yaml
        args: {port: $(arg port)}
    nodes:
      - name: broker
        module: swarm                      # or cmd: [...] or entry_point: pkg.mod:func
        args: [broker, --port, $(arg port)]
        ready: {tcp: 127.0.0.1:$(arg port), timeout: 10}
      - name: gcs
        module: swarm
        args: [gcs]
        parameters: {broker: "127.0.0.1:$(arg port)"}     # passed as --broker ...
        after: [broker]
        respawn: {policy: on-failure, limit: 5, backoff: 1}

Everything from outside is checked here, before a process starts: an error names the
file, the line and the key (``ground.yaml:12: nodes[1].ready.timeout: ...``), and a file
that loads is one the launcher can run.
"""

from __future__ import annotations

import enum
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._substitution import SubstitutionContext, SubstitutionError, _FreePorts, substitute
from ._yaml import Document, Path, Template, YamlError, load_document, retype_plain_scalar

__all__ = [
    "DEFAULT_GRACE_S",
    "LaunchDescription",
    "LaunchError",
    "NodeSpec",
    "ParameterStyle",
    "Readiness",
    "Respawn",
    "RespawnPolicy",
    "load_launch",
    "parse_overrides",
]

DEFAULT_GRACE_S = 5.0
DEFAULT_READY_TIMEOUT_S = 30.0
MAX_INCLUDE_DEPTH = 16
MAX_FILE_BYTES = 1 << 20

_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_ENTRY_POINT = re.compile(
    r"(?P<module>[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r":(?P<attr>[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)\Z")


class LaunchError(ValueError):
    """A launch file (or a command-line argument) that cannot be run, and why."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        where = file or ""
        if file is not None and line is not None:
            where += f":{line}"
        prefix = ": ".join(part for part in (where, key) if part)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class RespawnPolicy(enum.Enum):
    NEVER = "never"
    ON_FAILURE = "on-failure"   # restart after a non-zero exit or a death by signal
    ALWAYS = "always"           # restart after any exit


class ParameterStyle(enum.Enum):
    ARGS = "args"    # --key value on the command line
    TOML = "toml"    # a generated config file, passed as <config_flag> PATH
    JSON = "json"
    YAML = "yaml"


@dataclass(frozen=True)
class Respawn:
    """When a node that ended is started again (systemd's Restart= and StartLimit)."""

    policy: RespawnPolicy = RespawnPolicy.NEVER
    limit: int | None = 5          # restarts in a row; None: no limit
    backoff_s: float = 1.0         # first delay; doubles after each restart ...
    max_backoff_s: float = 30.0    # ... up to this
    reset_after_s: float = 60.0    # a run this long resets the count and the delay

    def wants_restart(self, returncode: int) -> bool:
        if self.policy is RespawnPolicy.ALWAYS:
            return True
        return self.policy is RespawnPolicy.ON_FAILURE and returncode != 0

    def delay_s(self, restarts_so_far: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * (2 ** min(restarts_so_far, 30))))


@dataclass(frozen=True)
class Readiness:
    """What makes a node ready, so the nodes that come ``after`` it may start.

    Exactly one of: a TCP port accepting on ``host:port``; a regular expression matched
    on a line of the node's output; a file existing; the node having exited with 0.
    """

    timeout_s: float
    tcp: tuple[str, int] | None = None
    log: re.Pattern[str] | None = None
    file: str | None = None
    exit_zero: bool = False

    def describe(self) -> str:
        if self.tcp is not None:
            return f"TCP {self.tcp[0]}:{self.tcp[1]} accepting"
        if self.log is not None:
            return f"output matching /{self.log.pattern}/"
        if self.file is not None:
            return f"file {self.file} existing"
        return "exit with status 0"


@dataclass(frozen=True)
class NodeSpec:
    """One process to run: everything resolved, validated and ready to spawn."""

    name: str
    command: tuple[str, ...]           # program and arguments, parameters included (ARGS)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    parameter_style: ParameterStyle = ParameterStyle.ARGS
    config_flag: str = "--config"
    env: tuple[tuple[str, str | None], ...] = ()   # None: remove the variable
    cwd: str | None = None
    after: tuple[str, ...] = ()
    ready: Readiness | None = None
    respawn: Respawn = Respawn()
    shutdown_on_exit: bool = False     # on_exit: shutdown
    grace_s: float = DEFAULT_GRACE_S
    source: str = ""                   # file:line, for messages

    def argv(self, config_path: str | None = None) -> list[str]:
        """The command line; ``config_path`` is the generated parameter file, if any."""
        if self.parameter_style is ParameterStyle.ARGS or not self.parameters:
            return list(self.command)
        if config_path is None:
            raise ValueError(f"node {self.name} needs its generated config file")
        return [*self.command, self.config_flag, config_path]

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        # Output goes through a pipe: without this a Python node's lines would arrive
        # in 8 KiB lumps, long after the event they report.
        env.setdefault("PYTHONUNBUFFERED", "1")
        for name, value in self.env:
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env


@dataclass(frozen=True)
class LaunchDescription:
    """A loaded launch file: its arguments and its nodes, in a valid start order."""

    file: str
    description: str
    args: Mapping[str, str]
    nodes: tuple[NodeSpec, ...]
    files: tuple[str, ...]             # the file and every file it included

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def parse_overrides(words: Sequence[str]) -> dict[str, str]:
    """``name:=value`` words from the command line (ROS 2's syntax) into a dict."""
    overrides: dict[str, str] = {}
    for word in words:
        name, sep, value = word.partition(":=")
        if not sep:
            raise LaunchError(f"argument {word!r} is not of the form name:=value")
        if not _ARG_NAME.match(name):
            raise LaunchError(f"argument {word!r}: {name!r} is not a valid argument name")
        if name in overrides:
            raise LaunchError(f"argument {name!r} is given twice")
        overrides[name] = value
    return overrides


def load_launch(path: str | os.PathLike[str], overrides: Mapping[str, str] | None = None,
                environ: Mapping[str, str] | None = None) -> LaunchDescription:
    """Load, substitute and validate a launch file and everything it includes.

    ``overrides`` are the command line's ``name:=value`` pairs; naming an argument the
    file does not declare is an error (a typo must not silently run the defaults).
    """
    loader = _Loader(environ if environ is not None else os.environ)
    top = os.path.abspath(os.fspath(path))
    loaded = loader.load_file(top, dict(overrides or {}), stack=(), origin=None)
    nodes = _order(loader.nodes, loader.disabled)
    return LaunchDescription(file=top, description=loaded.description, args=loaded.args,
                             nodes=nodes, files=tuple(loader.files))


# -- loading ------------------------------------------------------------------------------

@dataclass
class _Loaded:
    description: str
    args: dict[str, str]


@dataclass
class _PendingNode:
    spec: NodeSpec
    file: str
    line: int | None
    key: str
    after_lines: tuple[int | None, ...]


class _File:
    """One file being read: its document and how to report an error in it."""

    def __init__(self, path: str, document: Document) -> None:
        self.path = path
        self.document = document

    def error(self, path: Path, message: str) -> LaunchError:
        return LaunchError(message, self.path, self.document.line(path), _key(path) or None)


def _key(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class _Loader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.free_ports = _FreePorts()
        self.nodes: list[_PendingNode] = []
        self.disabled: set[str] = set()
        self.files: list[str] = []

    def load_file(self, path: str, given: dict[str, str], stack: tuple[str, ...],
                  origin: tuple[_File, Path] | None) -> _Loaded:
        """Load one file; ``origin`` is the include entry that names it, if any."""

        def fail(message: str) -> LaunchError:
            if origin is None:
                return LaunchError(message, path)
            return origin[0].error(origin[1], message)

        if path in stack:
            raise fail(f"include cycle: {' -> '.join([*stack, path])}")
        if len(stack) >= MAX_INCLUDE_DEPTH:
            raise fail(f"includes nested deeper than {MAX_INCLUDE_DEPTH}")
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            if origin is None:
                raise LaunchError(f"cannot read launch file: {exc.strerror}", path) from None
            raise fail(f"cannot read {path}: {exc.strerror}") from None
        if len(data) > MAX_FILE_BYTES:
            raise LaunchError(f"larger than {MAX_FILE_BYTES} bytes", path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LaunchError(f"not UTF-8 (byte {exc.start})", path) from None
        try:
            document = load_document(text)
        except YamlError as exc:
            raise LaunchError(exc.message, path, exc.line) from None
        self.files.append(path)
        f = _File(path, document)
        top = document.value
        if not isinstance(top, dict):
            raise f.error((), "a launch file is a mapping with nodes: (and optionally "
                              "description:, args:, include:)")
        _only_keys(f, (), top, {"description", "args", "include", "nodes"})
        description = top.get("description", "")
        if not isinstance(description, str):
            raise f.error(("description",), "must be a string")
        args = self._arguments(f, top.get("args"), given)
        context = SubstitutionContext(args=args, dirname=os.path.dirname(path),
                                      environ=self.environ, free_port=self.free_ports.take)
        includes = top.get("include", [])
        if not isinstance(includes, list):
            raise f.error(("include",), "must be a list of {file: PATH, args: {...}}")
        for i, entry in enumerate(includes):
            self._include(f, ("include", i), entry, context, (*stack, path))
        nodes = top.get("nodes", [])
        if not isinstance(nodes, list):
            raise f.error(("nodes",), "must be a list of nodes")
        if not nodes and not includes:
            raise f.error((), "declares no nodes and includes nothing: nothing to launch")
        for i, entry in enumerate(nodes):
            self._node(f, ("nodes", i), entry, context)
        return _Loaded(description, args)

    def _arguments(self, f: _File, declared: Any, given: dict[str, str]) -> dict[str, str]:
        if declared is None:
            declared = {}
        if not isinstance(declared, dict):
            raise f.error(("args",), "must be a mapping of argument name to default "
                                     "(or to {default:, description:, choices:})")
        unknown = sorted(set(given) - set(declared))
        if unknown:
            known = ", ".join(sorted(declared)) or "none"
            raise LaunchError(f"unknown argument(s) {', '.join(unknown)} "
                              f"(this file declares: {known})", f.path)
        resolved: dict[str, str] = {}
        context = SubstitutionContext(args=resolved, dirname=os.path.dirname(f.path),
                                      environ=self.environ, free_port=self.free_ports.take)
        for name, spec in declared.items():
            where: Path = ("args", name)
            if not _ARG_NAME.match(name):
                raise f.error(where, "not a valid argument name (letters, digits, _ and -)")
            description, choices, default = "", None, None
            has_default = True
            if isinstance(spec, dict):
                _only_keys(f, where, spec, {"default", "description", "choices"})
                has_default = "default" in spec
                default = spec.get("default")
                description = spec.get("description", "")
                if not isinstance(description, str):
                    raise f.error((*where, "description"), "must be a string")
                choices = spec.get("choices")
                if choices is not None:
                    if not isinstance(choices, list) or not choices or not all(
                            isinstance(c, (str, int, float)) for c in choices):
                        raise f.error((*where, "choices"), "must be a non-empty list of values")
                    choices = [_scalar_text(c) for c in choices]
            else:
                default = spec
            if name in given:
                value = given[name]
            elif has_default and default is not None:
                value = self._text(f, (*where, "default") if isinstance(spec, dict) else where,
                                   default, context)
            else:
                hint = f" ({description})" if description else ""
                raise LaunchError(f"argument {name!r} is required{hint}: give {name}:=VALUE",
                                  f.path, f.document.line(where), f"args.{name}")
            if choices is not None and value not in choices:
                raise LaunchError(f"{value!r} is not one of {', '.join(choices)}", f.path,
                                  f.document.line(where), f"args.{name}")
            resolved[name] = value
        return resolved

    def _text(self, f: _File, where: Path, value: Any, context: SubstitutionContext) -> str:
        resolved = self._resolve(f, where, value, context)
        if isinstance(resolved, (dict, list)) or resolved is None:
            raise f.error(where, "must be a single value")
        return _scalar_text(resolved)

    def _resolve(self, f: _File, where: Path, value: Any, context: SubstitutionContext) -> Any:
        """Substitute every Template inside ``value``."""
        if isinstance(value, Template):
            try:
                text = substitute(value.text, context)
            except SubstitutionError as exc:
                raise f.error(where, str(exc)) from None
            return retype_plain_scalar(text) if value.plain else text
        if isinstance(value, dict):
            return {k: self._resolve(f, (*where, k), v, context) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(f, (*where, i), v, context) for i, v in enumerate(value)]
        return value

    def _include(self, f: _File, where: Path, entry: Any, context: SubstitutionContext,
                 stack: tuple[str, ...]) -> None:
        if isinstance(entry, (str, Template)):
            entry = {"file": entry}
        if not isinstance(entry, dict):
            raise f.error(where, "an include is {file: PATH, args: {...}} or a path")
        _only_keys(f, where, entry, {"file", "args", "if", "unless"})
        entry = self._resolve(f, where, entry, context)
        if not _condition(f, where, entry):
            return
        if "file" not in entry:
            raise f.error(where, "missing file:")
        target = entry["file"]
        if not isinstance(target, str) or not target:
            raise f.error((*where, "file"), "must be a path")
        target = os.path.normpath(os.path.join(os.path.dirname(f.path), target))
        args = entry.get("args", {})
        if not isinstance(args, dict):
            raise f.error((*where, "args"), "must be a mapping of argument name to value")
        given: dict[str, str] = {}
        for name, value in args.items():
            if isinstance(value, dict):
                raise f.error((*where, "args", name), "must be a single value or a list")
            # Arguments are text: null (an empty unquoted substitution) is the empty
            # text, a list its YAML flow form (what $(arg NAME) then reads back).
            given[name] = ("" if value is None else _flow(value) if isinstance(value, list)
                           else _scalar_text(value))
        try:
            self.load_file(target, given, stack, (f, (*where, "file")))
        except LaunchError as exc:
            if exc.file == target and exc.line is None and exc.message.startswith("unknown"):
                raise f.error((*where, "args"), f"{target}: {exc.message}") from None
            raise

    def _node(self, f: _File, where: Path, entry: Any, context: SubstitutionContext) -> None:
        if not isinstance(entry, dict):
            raise f.error(where, "a node is a mapping (name:, cmd: or module: or entry_point:, ...)")
        _only_keys(f, where, entry, _NODE_KEYS)
        entry = self._resolve(f, where, entry, context)
        name = entry.get("name")
        if not isinstance(name, str) or not _NODE_NAME.match(name):
            raise f.error((*where, "name") if "name" in entry else where,
                          "every node needs a name: letters, digits, '_', '.', '-' "
                          "(at most 64, starting with a letter or digit)")
        if not _condition(f, where, entry):
            self.disabled.add(name)
            return
        for other in self.nodes:
            if other.spec.name == name:
                raise f.error((*where, "name"), f"node name {name!r} is already used at "
                                                f"{other.spec.source}")
        spec = _node_spec(f, where, entry, self.free_ports)
        after_lines = tuple(f.document.line((*where, "after", i)) for i in range(len(spec.after)))
        self.nodes.append(_PendingNode(spec, f.path, f.document.line(where), _key(where),
                                       after_lines))


_NODE_KEYS = {"name", "cmd", "module", "entry_point", "args", "parameters", "parameters_as",
              "config_flag", "env", "cwd", "after", "ready", "respawn", "on_exit", "grace",
              "if", "unless"}


def _only_keys(f: _File, where: Path, mapping: dict[str, Any], allowed: set[str]) -> None:
    for key in mapping:
        if key not in allowed:
            raise f.error((*where, key), f"unknown key {key!r} (allowed: "
                                         f"{', '.join(sorted(allowed))})")


def _flow(values: list[Any]) -> str:
    return "[" + ", ".join(_flow(v) if isinstance(v, list) else _scalar_text(v)
                           for v in values) + "]"


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def _condition(f: _File, where: Path, entry: dict[str, Any]) -> bool:
    """``if:`` / ``unless:`` (ROS 2's IfCondition / UnlessCondition)."""
    keep = True
    for key, wanted in (("if", True), ("unless", False)):
        if key not in entry:
            continue
        text = _scalar_text(entry[key]).strip().lower()
        if text in _TRUE:
            value = True
        elif text in _FALSE:
            value = False
        else:
            raise f.error((*where, key), f"{entry[key]!r} is not true or false")
        keep = keep and value == wanted
    return keep


def _number(f: _File, where: Path, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise f.error(where, f"must be a number of seconds, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise f.error(where, "must be finite")
    if positive and value <= 0 or value < 0:
        raise f.error(where, f"must be {'positive' if positive else 'zero or more'}, got {value}")
    return float(value)


def _words(f: _File, where: Path, value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise f.error(where, f"cannot split into words: {exc}") from None
    if isinstance(value, list):
        words = []
        for i, item in enumerate(value):
            if isinstance(item, (dict, list)) or item is None:
                raise f.error((*where, i), "must be a single word (string or number)")
            words.append(_scalar_text(item))
        return words
    raise f.error(where, "must be a string or a list of words")


def _node_spec(f: _File, where: Path, entry: dict[str, Any], free_ports: _FreePorts) -> NodeSpec:
    name = entry["name"]
    source = f"{f.path}:{f.document.line(where)}"
    programs = [key for key in ("cmd", "module", "entry_point") if key in entry]
    if len(programs) != 1:
        raise f.error(where, f"node {name!r} needs exactly one of cmd:, module:, entry_point:"
                             + (f" (has {', '.join(programs)})" if programs else ""))
    kind = programs[0]
    value = entry[kind]
    if kind == "cmd":
        command = _words(f, (*where, "cmd"), value)
        if not command or not command[0]:
            raise f.error((*where, "cmd"), "is empty")
    elif kind == "module":
        if not isinstance(value, str) or not _MODULE.match(value):
            raise f.error((*where, "module"), f"{value!r} is not a dotted module name")
        command = [sys.executable, "-m", value]
    else:
        match = _ENTRY_POINT.match(value) if isinstance(value, str) else None
        if match is None:
            raise f.error((*where, "entry_point"), f"{value!r} is not of the form package.module:function")
        # What a console_scripts wrapper does: import, call with no arguments (the
        # function reads sys.argv), exit with its result.
        code = ("import sys, importlib; sys.argv[0] = %r; obj = importlib.import_module(%r)\n"
                "for part in %r.split('.'): obj = getattr(obj, part)\n"
                "sys.exit(obj())") % (name, match["module"], match["attr"])
        command = [sys.executable, "-c", code]
    if "args" in entry:
        command += _words(f, (*where, "args"), entry["args"])

    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict):
        raise f.error((*where, "parameters"), "must be a mapping of name to value")
    style_text = entry.get("parameters_as", "args")
    try:
        style = ParameterStyle(style_text)
    except ValueError:
        raise f.error((*where, "parameters_as"), f"{style_text!r} is not one of "
                      + ", ".join(s.value for s in ParameterStyle)) from None
    if style is ParameterStyle.ARGS:
        command += _parameter_args(f, (*where, "parameters"), parameters)
    else:
        _check_config_values(f, (*where, "parameters"), parameters, style)
    config_flag = entry.get("config_flag", "--config")
    if not isinstance(config_flag, str) or not config_flag:
        raise f.error((*where, "config_flag"), "must be a non-empty string")
    if "config_flag" in entry and style is ParameterStyle.ARGS:
        raise f.error((*where, "config_flag"), "only means something with parameters_as: "
                                               "toml, json or yaml")

    env_value = entry.get("env", {})
    if not isinstance(env_value, dict):
        raise f.error((*where, "env"), "must be a mapping of NAME to value")
    env: list[tuple[str, str | None]] = []
    for key, item in env_value.items():
        if not _ENV_NAME.match(key):
            raise f.error((*where, "env", key), "not a valid environment variable name")
        if isinstance(item, (dict, list)):
            raise f.error((*where, "env", key), "must be a single value (or null to unset)")
        env.append((key, None if item is None else _scalar_text(item)))

    cwd = entry.get("cwd")
    if cwd is not None:
        if not isinstance(cwd, str) or not cwd:
            raise f.error((*where, "cwd"), "must be a folder path")
        cwd = os.path.join(os.path.dirname(f.path), cwd)

    after_value = entry.get("after", [])
    if isinstance(after_value, str):
        after_value = [after_value]
    if not isinstance(after_value, list) or not all(isinstance(a, str) for a in after_value):
        raise f.error((*where, "after"), "must be a node name or a list of node names")
    if name in after_value:
        raise f.error((*where, "after"), f"node {name!r} cannot wait for itself")
    if len(set(after_value)) != len(after_value):
        raise f.error((*where, "after"), "names a node twice")

    ready = _readiness(f, (*where, "ready"), entry["ready"]) if "ready" in entry else None
    respawn = _respawn(f, (*where, "respawn"), entry.get("respawn", "never"))
    if ready is not None and ready.exit_zero and respawn.policy is RespawnPolicy.ALWAYS:
        raise f.error((*where, "respawn"), "a node that is ready when it exits cannot be "
                                           "respawned always")
    on_exit = entry.get("on_exit", "continue")
    if on_exit not in ("continue", "shutdown"):
        raise f.error((*where, "on_exit"), f"{on_exit!r} is not continue or shutdown")
    grace = _number(f, (*where, "grace"), entry["grace"]) if "grace" in entry else DEFAULT_GRACE_S
    return NodeSpec(name=name, command=tuple(command), parameters=parameters,
                    parameter_style=style, config_flag=config_flag, env=tuple(env), cwd=cwd,
                    after=tuple(after_value), ready=ready, respawn=respawn,
                    shutdown_on_exit=on_exit == "shutdown", grace_s=grace, source=source)


def _parameter_args(f: _File, where: Path, parameters: dict[str, Any]) -> list[str]:
    """``{seed: 7, headless: true, peer: [a, b]}`` -> ``--seed 7 --headless --peer a --peer b``."""
    words: list[str] = []
    for key, value in parameters.items():
        if not _ARG_NAME.match(key):
            raise f.error((*where, key), "not a valid parameter name")
        flag = f"--{key}"
        if value is None or value is False:
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, (dict, list, bool)) or item is None:
                    raise f.error((*where, key, i), "a list parameter holds plain values")
                words += [flag, _scalar_text(item)]
        elif isinstance(value, dict):
            raise f.error((*where, key), "a nested parameter needs parameters_as: toml, json "
                                         "or yaml (a generated config file)")
        else:
            words += [flag, _scalar_text(value)]
    return words


def _check_config_values(f: _File, where: Path, value: Any, style: ParameterStyle) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _check_config_values(f, (*where, key), item, style)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_config_values(f, (*where, i), item, style)
    elif value is None and style is ParameterStyle.TOML:
        raise f.error(where, "TOML has no null: leave the key out")
    elif not isinstance(value, (str, int, float, bool)) and value is not None:
        raise f.error(where, f"{type(value).__name__} cannot go in a config file")


def _readiness(f: _File, where: Path, value: Any) -> Readiness:
    if not isinstance(value, dict):
        raise f.error(where, "must be a mapping: {tcp: HOST:PORT | log: REGEX | file: PATH | "
                             "exit: 0, timeout: SECONDS}")
    _only_keys(f, where, value, {"tcp", "log", "file", "exit", "timeout"})
    kinds = [k for k in ("tcp", "log", "file", "exit") if k in value]
    if len(kinds) != 1:
        raise f.error(where, "needs exactly one of tcp:, log:, file:, exit:"
                             + (f" (has {', '.join(kinds)})" if kinds else ""))
    timeout = (_number(f, (*where, "timeout"), value["timeout"]) if "timeout" in value
               else DEFAULT_READY_TIMEOUT_S)
    kind = kinds[0]
    item = value[kind]
    key = (*where, kind)
    if kind == "tcp":
        return Readiness(timeout, tcp=_host_port(f, key, item))
    if kind == "log":
        if not isinstance(item, str) or not item:
            raise f.error(key, "must be a regular expression")
        try:
            return Readiness(timeout, log=re.compile(item))
        except re.error as exc:
            raise f.error(key, f"invalid regular expression: {exc}") from None
    if kind == "file":
        if not isinstance(item, str) or not item:
            raise f.error(key, "must be a path")
        return Readiness(timeout, file=item)
    if item != 0 or isinstance(item, bool):
        raise f.error(key, "the only exit readiness is exit: 0")
    return Readiness(timeout, exit_zero=True)


def _host_port(f: _File, where: Path, value: Any) -> tuple[str, int]:
    host = "127.0.0.1"
    if isinstance(value, int) and not isinstance(value, bool):
        port = value
    elif isinstance(value, str):
        host_text, sep, port_text = value.rpartition(":")
        if not sep or not host_text:
            raise f.error(where, f"{value!r} is not HOST:PORT")
        host = host_text.strip("[]")
        try:
            port = int(port_text)
        except ValueError:
            raise f.error(where, f"{port_text!r} is not a port number") from None
    else:
        raise f.error(where, "must be HOST:PORT or a port number")
    if not 1 <= port <= 65535:
        raise f.error(where, f"port {port} is not in 1..65535")
    return host, port


def _respawn(f: _File, where: Path, value: Any) -> Respawn:
    if value is True:
        value = "always"
    elif value is False:
        value = "never"
    if isinstance(value, str):
        value = {"policy": value}
    if not isinstance(value, dict):
        raise f.error(where, "must be never, on-failure, always, or a mapping "
                             "{policy:, limit:, backoff:, max_backoff:, reset_after:}")
    _only_keys(f, where, value, {"policy", "limit", "backoff", "max_backoff", "reset_after"})
    try:
        policy = RespawnPolicy(value.get("policy", "on-failure"))
    except ValueError:
        raise f.error((*where, "policy"), f"{value.get('policy')!r} is not one of never, "
                                          "on-failure, always") from None
    defaults = Respawn()
    limit: int | None = defaults.limit
    if "limit" in value:
        raw = value["limit"]
        if raw is None or raw == "unlimited":
            limit = None
        elif isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
            limit = raw
        else:
            raise f.error((*where, "limit"), "must be a count of restarts (0 or more) or unlimited")
    backoff = (_number(f, (*where, "backoff"), value["backoff"], positive=False)
               if "backoff" in value else defaults.backoff_s)
    max_backoff = (_number(f, (*where, "max_backoff"), value["max_backoff"], positive=False)
                   if "max_backoff" in value else max(defaults.max_backoff_s, backoff))
    if max_backoff < backoff:
        raise f.error((*where, "max_backoff"), "must not be below backoff")
    reset_after = (_number(f, (*where, "reset_after"), value["reset_after"])
                   if "reset_after" in value else defaults.reset_after_s)
    return Respawn(policy, limit, backoff, max_backoff, reset_after)


def _order(pending: list[_PendingNode], disabled: set[str]) -> tuple[NodeSpec, ...]:
    """A start order in which every node comes after the nodes it waits for.

    Stable: among nodes free to start, file order wins. A wait on a node switched off
    by its ``if:``/``unless:`` is dropped; a wait on a name nobody declared is an error.
    """
    names = {p.spec.name for p in pending}
    resolved: list[_PendingNode] = []
    for p in pending:
        after = []
        for dep, line in zip(p.spec.after, p.after_lines):
            if dep in names:
                after.append(dep)
            elif dep not in disabled:
                raise LaunchError(f"node {p.spec.name!r} waits for {dep!r}, which no file "
                                  f"declares (nodes: {', '.join(sorted(names))})",
                                  p.file, line, f"{p.key}.after")
        resolved.append(p if tuple(after) == p.spec.after else _PendingNode(
            _replace_after(p.spec, tuple(after)), p.file, p.line, p.key, p.after_lines))
    ordered: list[NodeSpec] = []
    placed: set[str] = set()
    remaining = list(resolved)
    while remaining:
        for p in remaining:
            if all(dep in placed for dep in p.spec.after):
                ordered.append(p.spec)
                placed.add(p.spec.name)
                remaining.remove(p)
                break
        else:
            cycle = _find_cycle({p.spec.name: p.spec.after for p in remaining})
            first = next(p for p in remaining if p.spec.name == cycle[0])
            raise LaunchError(f"dependency cycle: {' -> '.join(cycle)}", first.file,
                              first.line, f"{first.key}.after")
    return tuple(ordered)


def _replace_after(spec: NodeSpec, after: tuple[str, ...]) -> NodeSpec:
    return replace(spec, after=after)


def _find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str]:
    # Every remaining node waits on a remaining node, so walking any path must repeat.
    path: list[str] = []
    node = next(iter(graph))
    while node not in path:
        path.append(node)
        node = next(dep for dep in graph[node] if dep in graph)
    return [*path[path.index(node):], node]

