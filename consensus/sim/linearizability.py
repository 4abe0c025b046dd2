"""A linearizability checker for key-value histories, in the style of Porcupine.

The algorithm is Wing & Gong's search ("Testing and verifying concurrent objects",
1993) with Lowe's memoisation ("Testing for linearizability", 2017): walk the history
as a doubly linked list of call and return events; at each call try to linearize that
operation next (apply it to the model); at a return whose call was not yet linearized,
backtrack. A cache of (set of linearized operations, model state) prunes every search
branch that reaches a configuration already explored.

Histories are partitioned by key first (Herlihy & Wing's locality, which Porcupine
calls P-compositionality): a key-value history is linearizable iff each key's
sub-history is, and checking keys apart is exponentially cheaper than checking them
together.

An operation whose outcome the client never learned (a timeout, a crash of the
client's server) is *pending*: it has no return time and may have taken effect at any
point after its call, or never. It is modelled, as Porcupine and Jepsen do, by a return
time of +infinity and an output the model accepts whatever it is. A pending read can
have no visible effect, so it is dropped.

The search is exponential in the worst case, so it runs under a budget (search steps
and optionally wall-clock seconds) and answers ``UNKNOWN`` rather than hang when the
budget runs out; callers must treat UNKNOWN as "not proven", never as a pass.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "OpKind",
    "Operation",
    "Verdict",
    "KeyResult",
    "CheckResult",
    "check_kv_history",
    "kv_step",
    "format_operations",
]


class OpKind(enum.Enum):
    """The operations of the key-value model."""

    GET = "get"
    PUT = "put"
    APPEND = "append"
    CAS = "cas"


@dataclass(frozen=True)
class Operation:
    """One client operation as the client saw it.

    ``call`` and ``ret`` are the times the client invoked the operation and saw its
    result, on any clock that orders all clients' events (the simulator uses a global
    event counter). ``ret=None`` means pending: the outcome is unknown.

    ``value`` is the written value (put, append) or the new value (cas); ``expected`` is
    the value a cas compares against; ``output`` is what a get returned (``None`` for a
    missing key) or whether a cas succeeded (bool). Puts and appends have no output.
    """

    client_id: Hashable
    kind: OpKind
    key: str
    call: float
    ret: float | None = None
    value: str | None = None
    expected: str | None = None
    output: str | bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, OpKind):
            raise ValueError(f"operation kind must be an OpKind, got {self.kind!r}")
        if not isinstance(self.key, str):
            raise ValueError(f"operation key must be a str, got {self.key!r}")
        if not isinstance(self.call, (int, float)) or math.isnan(self.call):
            raise ValueError(f"operation call time must be a number, got {self.call!r}")
        if self.ret is not None:
            if not isinstance(self.ret, (int, float)) or math.isnan(self.ret):
                raise ValueError(f"operation return time must be a number, got {self.ret!r}")
            if self.ret < self.call:
                raise ValueError(f"operation returns ({self.ret}) before it is called ({self.call})")
        if self.kind in (OpKind.PUT, OpKind.APPEND, OpKind.CAS) and not isinstance(self.value, str):
            raise ValueError(f"{self.kind.value} needs a str value, got {self.value!r}")
        if self.kind is OpKind.GET:
            if self.value is not None or self.expected is not None:
                raise ValueError("get takes no value or expected value")
            if self.output is not None and not isinstance(self.output, str):
                raise ValueError(f"get output must be a str or None, got {self.output!r}")
        if self.kind is OpKind.CAS and self.ret is not None and not isinstance(self.output, bool):
            raise ValueError(f"a completed cas needs a bool output, got {self.output!r}")
        if self.kind in (OpKind.PUT, OpKind.APPEND) and self.output is not None:
            raise ValueError(f"{self.kind.value} has no output, got {self.output!r}")

    @property
    def pending(self) -> bool:
        return self.ret is None


class Verdict(enum.Enum):
    OK = "ok"
    ILLEGAL = "illegal"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class KeyResult:
    """The verdict for one key's sub-history.

    ``longest_prefix`` is the longest sequence of operations the search managed to
    linearize; for an ILLEGAL key the operation that could not be placed next is among
    those not in it, which is where to start reading.
    """

    key: str
    verdict: Verdict
    operations: tuple[Operation, ...]
    steps: int
    longest_prefix: tuple[Operation, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    verdict: Verdict
    keys: tuple[KeyResult, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    @property
    def failing(self) -> tuple[KeyResult, ...]:
        return tuple(k for k in self.keys if k.verdict is not Verdict.OK)

    @property
    def steps(self) -> int:
        return sum(k.steps for k in self.keys)

    def describe(self, context: int = 12) -> str:
        """A human-readable account of every key not proven linearizable: the end of
        the longest linearizable order the search found, then the earliest operations
        it could not place after it (the anomaly is among them). ``context`` bounds
        both lists."""
        if self.ok:
            return f"linearizable ({len(self.keys)} keys, {self.steps} search steps)"
        lines: list[str] = [f"history is {self.verdict.value}"]
        for kr in self.failing:
            lines.append(
                f"key {kr.key!r}: {kr.verdict.value} after {kr.steps} search steps; "
                f"{len(kr.operations)} operations, longest linearizable prefix {len(kr.longest_prefix)}"
            )
            if kr.longest_prefix:
                lines.append(f"  end of the longest linearizable order (last {min(context, len(kr.longest_prefix))}):")
                tail = kr.longest_prefix[-context:]
                lines.extend("    " + x for x in format_operations(tail, sort=False).splitlines())
            placed = {id(o) for o in kr.longest_prefix}
            rest = [o for o in kr.operations if id(o) not in placed]
            lines.append(f"  earliest operations that could not follow it ({min(context, len(rest))} of {len(rest)}):")
            rest.sort(key=lambda o: (o.call, _ret_time(o)))
            lines.extend("    " + x for x in format_operations(rest[:context], sort=False).splitlines())
        return "\n".join(lines)


def format_operations(ops: Iterable[Operation], sort: bool = True) -> str:
    seq = sorted(ops, key=lambda o: (o.call, _ret_time(o))) if sort else list(ops)
    out = []
    for o in seq:
        if o.kind is OpKind.GET:
            what = f"get({o.key!r}) -> {o.output!r}"
        elif o.kind is OpKind.CAS:
            what = f"cas({o.key!r}, {o.expected!r} -> {o.value!r}) -> {o.output!r}"
        else:
            what = f"{o.kind.value}({o.key!r}, {o.value!r})"
        ret = "pending" if o.ret is None else f"{o.ret:g}"
        out.append(f"[{o.call:g}, {ret}] client {o.client_id}: {what}")
    return "\n".join(out)


def kv_step(state: str | None, op: Operation) -> tuple[bool, str | None]:
    """The sequential specification of one key: is ``op`` legal from ``state``, and the
    state after it. A pending operation's output is unknown, so any output is legal."""
    kind = op.kind
    if kind is OpKind.PUT:
        return True, op.value
    if kind is OpKind.APPEND:
        return True, (state or "") + (op.value or "")
    if kind is OpKind.GET:
        return (op.pending or op.output == state), state
    # CAS: succeeds iff the current value equals expected.
    succeeds = state == op.expected
    if op.pending:
        return True, (op.value if succeeds else state)
    if op.output != succeeds:
        return False, state
    return True, (op.value if succeeds else state)


def _ret_time(op: Operation) -> float:
    return math.inf if op.ret is None else op.ret


class _Entry:
    """A node of the event list: a call or a return of operation ``op_id``."""

    __slots__ = ("op_id", "is_call", "match", "prev", "next")

    def __init__(self, op_id: int, is_call: bool) -> None:
        self.op_id = op_id
        self.is_call = is_call
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _build_list(ops: Sequence[Operation]) -> _Entry:
    """The events of ``ops`` in time order, as a linked list behind a sentinel head.

    At equal times calls sort before returns, so operations whose intervals only touch
    count as concurrent: the conservative choice, since the checker must never call a
    correct system wrong because two events shared a timestamp.
    """
    events: list[tuple[float, int, int, _Entry]] = []
    for i, op in enumerate(ops):
        call = _Entry(i, True)
        ret = _Entry(i, False)
        call.match = ret
        events.append((op.call, 0, i, call))
        events.append((_ret_time(op), 1, i, ret))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Entry(-1, False)
    prev = head
    for _, _, _, entry in events:
        prev.next = entry
        entry.prev = prev
        prev = entry
    return head


def _lift(entry: _Entry) -> None:
    """Unlink a call and its return from the list (the operation is linearized)."""
    assert entry.prev is not None and entry.match is not None
    entry.prev.next = entry.next
    if entry.next is not None:
        entry.next.prev = entry.prev
    match = entry.match
    assert match.prev is not None
    match.prev.next = match.next
    if match.next is not None:
        match.next.prev = match.prev


def _unlift(entry: _Entry) -> None:
    """Relink what _lift unlinked, in reverse order (the search backtracks)."""
    match = entry.match
    assert match is not None and match.prev is not None
    match.prev.next = match
    if match.next is not None:
        match.next.prev = match
    assert entry.prev is not None
    entry.prev.next = entry
    if entry.next is not None:
        entry.next.prev = entry


_NO_DEADLINE: Final = math.inf


def _check_single(
    key: str, ops: Sequence[Operation], max_steps: int, deadline: float
) -> KeyResult:
    head = _build_list(ops)
    state: Any = None  # every key starts absent
    linearized = 0  # bitset over operation indexes
    seen: set[tuple[int, Any]] = set()
    stack: list[tuple[_Entry, Any]] = []
    longest: list[int] = []
    steps = 0
    entry = head.next
    while head.next is not None:
        steps += 1
        if steps > max_steps or ((steps & 0x3FF) == 0 and time.monotonic() > deadline):
            return KeyResult(key, Verdict.UNKNOWN, tuple(ops), steps, tuple(ops[i] for i in longest))
        assert entry is not None  # a return entry is always reached before the end
        if entry.is_call:
            ok, new_state = kv_step(state, ops[entry.op_id])
            if ok:
                new_linearized = linearized | (1 << entry.op_id)
                config = (new_linearized, new_state)
                if config not in seen:
                    seen.add(config)
                    stack.append((entry, state))
                    state = new_state
                    linearized = new_linearized
                    _lift(entry)
                    if len(stack) > len(longest):
                        longest = [e.op_id for e, _ in stack]
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # A return whose call is still in the list: that operation had to take
            # effect before now, and no order tried so far lets it, so backtrack.
            if not stack:
                return KeyResult(key, Verdict.ILLEGAL, tuple(ops), steps, tuple(ops[i] for i in longest))
            top, state = stack.pop()
            linearized &= ~(1 << top.op_id)
            _unlift(top)
            entry = top.next
    return KeyResult(key, Verdict.OK, tuple(ops), steps, ())


def check_kv_history(
    history: Iterable[Operation],
    *,
    max_steps_per_key: int = 2_000_000,
    timeout_s: float | None = None,
) -> CheckResult:
    """Check a key-value history for linearizability, one key at a time.

    Every key starts absent (a get returns None). Pending gets are dropped; pending
    writes may take effect at any time after their call, or never. The verdict is
    ILLEGAL if any key is, else UNKNOWN if any key ran out of budget, else OK.
    ``timeout_s`` bounds the whole check on the wall clock.
    """
    if max_steps_per_key <= 0:
        raise ValueError("max_steps_per_key must be positive")
    deadline = _NO_DEADLINE if timeout_s is None else time.monotonic() + timeout_s
    by_key: dict[str, list[Operation]] = {}
    for op in history:
        if not isinstance(op, Operation):
            raise TypeError(f"history holds {type(op).__name__}, not Operation")
        if op.kind is OpKind.GET and op.pending:
            continue
        by_key.setdefault(op.key, []).append(op)
    results: list[KeyResult] = []
    verdict = Verdict.OK
    for key in sorted(by_key):
        res = _check_single(key, by_key[key], max_steps_per_key, deadline)
        results.append(res)
        if res.verdict is Verdict.ILLEGAL:
            verdict = Verdict.ILLEGAL
        elif res.verdict is Verdict.UNKNOWN and verdict is Verdict.OK:
            verdict = Verdict.UNKNOWN
    return CheckResult(verdict, tuple(results))
