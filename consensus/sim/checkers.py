"""Raft's safety properties (paper Figure 3), checked incrementally while a simulation
runs, from what the nodes hand out in their Ready batches.

The checker never looks inside a node: it is fed the same observable events a real
deployment produces (a node's role and term, entries it made durable, its commit index,
entries it applied), so it checks the core as used, not as implemented, and a test can
feed it a deliberately broken event to prove that it bites.

Properties (Raft §5.2, §5.3, §5.4):

* Election Safety: at most one leader per term.
* Log Matching: two logs holding an entry with the same index and term hold the same
  entry there, and are identical in all entries before it. Checked in O(new entries):
  the first node to make (index, term) durable fixes its payload and the term of the
  entry before it; any other node disagreeing on either breaks the property (by
  induction on the index this is the whole-prefix statement).
* Leader Completeness: an entry committed in term t is in the log of every leader of
  a term after t. Checked at the highest such committed index, which by Log Matching
  stands for the whole prefix.
* State Machine Safety: no two nodes apply different entries at the same index; and
  each node applies indexes in order, each exactly once (a restore from a snapshot jumps
  forward, never back past what the node itself applied durably).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from consensus.types import Entry

__all__ = ["Violation", "SafetyViolation", "SafetyChecker"]


@dataclass(frozen=True)
class Violation:
    """A broken property: which one, when (virtual tick), and what was seen."""

    property: str
    tick: int
    detail: str

    def __str__(self) -> str:
        return f"[tick {self.tick}] {self.property}: {self.detail}"


class SafetyViolation(AssertionError):
    def __init__(self, violation: Violation) -> None:
        super().__init__(str(violation))
        self.violation = violation


@dataclass
class _Commit:
    """Committed entries as the first node to commit each index saw them."""

    terms: list[int] = field(default_factory=lambda: [0])  # terms[i] = term of entry i
    # (commit term, highest index first known committed by then), in commit order.
    by_commit_term: list[tuple[int, int]] = field(default_factory=list)


class SafetyChecker:
    """Collects violations of Raft's safety properties from observed node events.

    With ``raise_on_violation`` the first violation raises :class:`SafetyViolation`
    (the simulator stops there, at the step that broke it); otherwise violations are
    collected in :attr:`violations`.
    """

    def __init__(self, *, raise_on_violation: bool = True) -> None:
        self.raise_on_violation = raise_on_violation
        self.violations: list[Violation] = []
        self.tick = 0
        self.leaders: dict[int, int] = {}  # term -> leader id
        self._durable: dict[tuple[int, int], tuple[int, bytes, int]] = {}  # (index, term) -> (kind, data, prev term)
        self._applied: dict[int, Entry] = {}  # index -> the entry applied there
        self._last_applied: dict[int, int] = {}  # node -> last applied index
        self._commit = _Commit()
        self._max_commit = 0

    # --- reporting ----------------------------------------------------------------

    def report(self, prop: str, detail: str) -> None:
        """Record a violation of ``prop`` (also used by checks outside this class, such
        as the simulator's snapshot check), raising if so configured."""
        v = Violation(prop, self.tick, detail)
        self.violations.append(v)
        if self.raise_on_violation:
            raise SafetyViolation(v)

    @property
    def ok(self) -> bool:
        return not self.violations

    # --- Election Safety (§5.2) -----------------------------------------------------

    def observe_leader(self, node: int, term: int) -> None:
        """``node`` is leader in ``term`` (called whenever a node is seen leading)."""
        other = self.leaders.setdefault(term, node)
        if other != node:
            self.report("election safety", f"nodes {other} and {node} both lead term {term}")

    # --- Log Matching (§5.3) ----------------------------------------------------------

    def observe_persist(self, node: int, entries: Iterable[Entry], prev_term: int) -> None:
        """``node`` made ``entries`` (contiguous) durable; ``prev_term`` is the term of
        the entry just before the first one in its log (0 at index 0)."""
        prev = prev_term
        durable = self._durable
        for e in entries:
            seen = durable.get((e.index, e.term))
            mine = (int(e.kind), e.data, prev)
            if seen is None:
                durable[(e.index, e.term)] = mine
            elif seen != mine:
                what = "payload" if seen[:2] != mine[:2] else f"preceding term ({seen[2]} vs {prev})"
                self.report(
                    "log matching",
                    f"node {node} holds entry (index {e.index}, term {e.term}) differing in {what} from another node's",
                )
            prev = e.term

    # --- commitment and Leader Completeness (§5.4) -----------------------------------------

    def observe_commit(self, node: int, term: int, commit: int, term_at: Callable[[int], int | None]) -> None:
        """``node``, in ``term``, has commit index ``commit``; ``term_at(i)`` gives the term
        of its log entry ``i`` (None if compacted away)."""
        c = self._commit
        known = len(c.terms) - 1
        if commit <= known:
            # Already committed elsewhere: this node must agree at its commit index.
            t = term_at(commit)
            if t is not None and t != c.terms[commit]:
                self.report(
                    "state machine safety",
                    f"node {node} commits index {commit} with term {t}, but term {c.terms[commit]} was committed there",
                )
            return
        terms = []
        for i in range(known + 1, commit + 1):
            t = term_at(i)
            if t is None:
                self.report("state machine safety", f"node {node} commits index {i} it has no entry for")
                return
            terms.append(t)
        # Before extending, the node's log must agree at the last index known committed.
        if known:
            t = term_at(known)
            if t is not None and t != c.terms[known]:
                self.report(
                    "state machine safety",
                    f"node {node} commits past index {known} holding term {t} there, "
                    f"but term {c.terms[known]} was committed there",
                )
        c.terms.extend(terms)
        if c.by_commit_term and c.by_commit_term[-1][0] == term:
            c.by_commit_term[-1] = (term, commit)
        else:
            c.by_commit_term.append((term, commit))

    def check_leader_completeness(self, node: int, term: int, term_at: Callable[[int], int | None], snapshot_index: int) -> None:
        """``node`` leads ``term``: it must hold every entry committed in an earlier term."""
        highest = 0
        for commit_term, index in self._commit.by_commit_term:
            if commit_term < term and index > highest:
                highest = index
        if highest == 0 or highest <= snapshot_index:
            return  # a snapshot covers only committed entries
        t = term_at(highest)
        if t != self._commit.terms[highest]:
            self.report(
                "leader completeness",
                f"node {node}, leader of term {term}, holds term {t} at index {highest} "
                f"where term {self._commit.terms[highest]} was committed",
            )

    # --- State Machine Safety (§5.4.3) ------------------------------------------------

    def observe_apply(self, node: int, entries: Iterable[Entry]) -> None:
        """``node`` applied ``entries`` to its state machine, in this order."""
        last = self._last_applied.get(node, 0)
        applied = self._applied
        for e in entries:
            if e.index != last + 1:
                self.report(
                    "state machine safety",
                    f"node {node} applies index {e.index} after index {last} (gap or repeat)",
                )
            other = applied.setdefault(e.index, e)
            if other != e:
                self.report(
                    "state machine safety",
                    f"node {node} applies {_short(e)} at index {e.index} where another node applied {_short(other)}",
                )
            last = e.index
        self._last_applied[node] = last

    def observe_restore(self, node: int, snapshot_index: int, durable_applied: int) -> None:
        """``node`` restored its state machine from a snapshot at ``snapshot_index``.

        ``durable_applied`` is what the node had applied and can never un-apply: a
        snapshot older than that would roll the state machine back.
        """
        if snapshot_index < durable_applied:
            self.report(
                "state machine safety",
                f"node {node} restores a snapshot at {snapshot_index} behind its applied index {durable_applied}",
            )
        self._last_applied[node] = snapshot_index

    def observe_restart(self, node: int, applied: int) -> None:
        """``node`` restarted; its state machine is rebuilt from its snapshot, so it will
        apply again from ``applied + 1``."""
        self._last_applied[node] = applied

    def applied_entry(self, index: int) -> Entry | None:
        return self._applied.get(index)


def _short(e: Entry) -> str:
    data = e.data if len(e.data) <= 24 else e.data[:24] + b"..."
    return f"(term {e.term}, {e.kind.name}, {data!r})"
