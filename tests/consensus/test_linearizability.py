"""The key-value linearizability checker (consensus/sim/linearizability.py), on
hand-written histories whose verdict is known, and on seeded random histories built
from a sequential execution (so linearizable by construction) and then corrupted."""

from __future__ import annotations

import random

import pytest

from consensus.sim.linearizability import (
    Operation,
    OpKind,
    Verdict,
    check_kv_history,
    format_operations,
    kv_step,
)


def put(client: int, key: str, value: str, call: float, ret: float | None) -> Operation:
    return Operation(client, OpKind.PUT, key, call, ret, value=value)


def get(client: int, key: str, output: str | None, call: float, ret: float | None) -> Operation:
    return Operation(client, OpKind.GET, key, call, ret, output=output)


def append(client: int, key: str, value: str, call: float, ret: float | None) -> Operation:
    return Operation(client, OpKind.APPEND, key, call, ret, value=value)


def cas(client: int, key: str, expected: str | None, new: str, ok: bool | None, call: float, ret: float | None) -> Operation:
    return Operation(client, OpKind.CAS, key, call, ret, value=new, expected=expected, output=ok)


def verdict(ops: list[Operation], **kw: object) -> Verdict:
    return check_kv_history(ops, **kw).verdict  # type: ignore[arg-type]


# --- sequential and basic histories ---------------------------------------------------


def test_empty_history_is_linearizable() -> None:
    assert verdict([]) is Verdict.OK


def test_read_of_absent_key_returns_none() -> None:
    assert verdict([get(1, "x", None, 0, 1)]) is Verdict.OK
    assert verdict([get(1, "x", "1", 0, 1)]) is Verdict.ILLEGAL


def test_sequential_put_then_get_sees_the_put() -> None:
    assert verdict([put(1, "x", "a", 0, 1), get(2, "x", "a", 2, 3)]) is Verdict.OK


def test_stale_read_after_a_completed_write_is_illegal() -> None:
    # put(b) returned before the get was called, so the get must see b (or later).
    ops = [put(1, "x", "a", 0, 1), put(1, "x", "b", 2, 3), get(2, "x", "a", 4, 5)]
    result = check_kv_history(ops)
    assert result.verdict is Verdict.ILLEGAL
    assert [k.key for k in result.failing] == ["x"]
    assert "key 'x': illegal" in result.describe()


def test_read_of_a_value_never_written_is_illegal() -> None:
    ops = [put(1, "x", "a", 0, 10), get(2, "x", "z", 1, 2)]
    assert verdict(ops) is Verdict.ILLEGAL


# --- concurrency ----------------------------------------------------------------------


def test_concurrent_writes_may_linearize_in_either_order() -> None:
    for seen in ("a", "b"):
        ops = [put(1, "x", "a", 0, 10), put(2, "x", "b", 1, 9), get(3, "x", seen, 11, 12)]
        assert verdict(ops) is Verdict.OK, seen


def test_two_later_reads_cannot_disagree_about_the_order_of_concurrent_writes() -> None:
    ops = [
        put(1, "x", "a", 0, 10),
        put(2, "x", "b", 1, 9),
        get(3, "x", "a", 11, 12),
        get(3, "x", "b", 13, 14),
    ]
    assert verdict(ops) is Verdict.ILLEGAL


def test_read_concurrent_with_a_write_may_see_old_or_new_value() -> None:
    for seen in (None, "a"):
        ops = [put(1, "x", "a", 0, 10), get(2, "x", seen, 2, 3)]
        assert verdict(ops) is Verdict.OK, seen


def test_new_then_old_read_inversion_is_illegal() -> None:
    # Both reads overlap the write, but the second starts after the first returned:
    # once a reader has seen "a", no later reader may see the value before it.
    ops = [put(1, "x", "a", 0, 10), get(2, "x", "a", 2, 3), get(3, "x", None, 4, 5)]
    assert verdict(ops) is Verdict.ILLEGAL


def test_operations_whose_intervals_only_touch_count_as_concurrent() -> None:
    ops = [put(1, "x", "a", 0, 5), get(2, "x", None, 5, 6)]
    assert verdict(ops) is Verdict.OK


# --- pending operations (timeouts, crashed servers) ------------------------------------


def test_pending_write_may_have_taken_effect() -> None:
    ops = [put(1, "x", "a", 0, None), get(2, "x", "a", 5, 6)]
    assert verdict(ops) is Verdict.OK


def test_pending_write_may_never_take_effect() -> None:
    ops = [put(1, "x", "a", 0, None), get(2, "x", None, 5, 6), get(2, "x", None, 100, 101)]
    assert verdict(ops) is Verdict.OK


def test_pending_write_cannot_take_effect_before_it_was_called() -> None:
    ops = [get(2, "x", "a", 0, 1), put(1, "x", "a", 5, None)]
    assert verdict(ops) is Verdict.ILLEGAL


def test_pending_write_once_seen_stays_visible() -> None:
    ops = [put(1, "x", "a", 0, None), get(2, "x", "a", 5, 6), get(3, "x", None, 7, 8)]
    assert verdict(ops) is Verdict.ILLEGAL


def test_pending_read_is_ignored() -> None:
    ops = [put(1, "x", "a", 0, 1), get(2, "x", None, 2, None)]
    assert verdict(ops) is Verdict.OK


def test_several_pending_writes_take_effect_in_any_order() -> None:
    ops = [
        put(1, "x", "a", 0, None),
        put(2, "x", "b", 0, None),
        put(3, "x", "c", 0, None),
        get(4, "x", "b", 10, 11),
        get(4, "x", "a", 12, 13),
        get(4, "x", "c", 14, 15),
    ]
    assert verdict(ops) is Verdict.OK
    # ...but a value, once overwritten by a completed write, cannot come back.
    ops.append(put(5, "x", "d", 16, 17))
    ops.append(get(4, "x", "a", 18, 19))
    ops.append(get(4, "x", "d", 20, 21))
    assert verdict(ops) is Verdict.ILLEGAL


# --- append and compare-and-set -------------------------------------------------------


def test_appends_concatenate_in_linearization_order() -> None:
    ops = [append(1, "l", "1", 0, 5), append(2, "l", "2", 1, 4), get(3, "l", "21", 6, 7)]
    assert verdict(ops) is Verdict.OK
    ops = [append(1, "l", "1", 0, 1), append(2, "l", "2", 2, 3), get(3, "l", "21", 6, 7)]
    assert verdict(ops) is Verdict.ILLEGAL


def test_cas_succeeds_only_on_the_expected_value() -> None:
    ops = [put(1, "x", "a", 0, 1), cas(2, "x", "a", "b", True, 2, 3), get(3, "x", "b", 4, 5)]
    assert verdict(ops) is Verdict.OK
    ops = [put(1, "x", "a", 0, 1), cas(2, "x", "z", "b", True, 2, 3)]
    assert verdict(ops) is Verdict.ILLEGAL
    ops = [put(1, "x", "a", 0, 1), cas(2, "x", "z", "b", False, 2, 3), get(3, "x", "a", 4, 5)]
    assert verdict(ops) is Verdict.OK


def test_two_concurrent_cas_from_the_same_value_cannot_both_succeed() -> None:
    ops = [cas(1, "x", None, "a", True, 0, 10), cas(2, "x", None, "b", True, 1, 9)]
    assert verdict(ops) is Verdict.ILLEGAL
    ops = [cas(1, "x", None, "a", True, 0, 10), cas(2, "x", None, "b", False, 1, 9)]
    assert verdict(ops) is Verdict.OK


def test_pending_cas_applies_only_if_its_expectation_held() -> None:
    ops = [put(1, "x", "a", 0, 1), cas(2, "x", "z", "b", None, 2, None), get(3, "x", "b", 10, 11)]
    assert verdict(ops) is Verdict.ILLEGAL
    ops = [put(1, "x", "a", 0, 1), cas(2, "x", "a", "b", None, 2, None), get(3, "x", "b", 10, 11)]
    assert verdict(ops) is Verdict.OK


def test_kv_step_is_the_sequential_specification() -> None:
    assert kv_step(None, put(1, "x", "a", 0, 1)) == (True, "a")
    assert kv_step("a", append(1, "x", "b", 0, 1)) == (True, "ab")
    assert kv_step("a", get(1, "x", "b", 0, 1)) == (False, "a")
    assert kv_step("a", cas(1, "x", "a", "c", True, 0, 1)) == (True, "c")
    assert kv_step("a", cas(1, "x", "q", "c", True, 0, 1)) == (False, "a")


# --- partitioning by key and the search budget -------------------------------------------


def test_keys_are_checked_independently_and_the_failing_key_is_named() -> None:
    ops = [
        put(1, "good", "a", 0, 1),
        get(2, "good", "a", 2, 3),
        put(1, "bad", "a", 0, 1),
        put(1, "bad", "b", 2, 3),
        get(2, "bad", "a", 4, 5),
    ]
    result = check_kv_history(ops)
    assert result.verdict is Verdict.ILLEGAL
    assert {k.key: k.verdict for k in result.keys} == {"bad": Verdict.ILLEGAL, "good": Verdict.OK}


def test_exhausted_budget_reports_unknown_not_a_verdict() -> None:
    # Many mutually concurrent pending writes and reads: a large search space.
    ops = [put(i, "x", str(i), 0, None) for i in range(12)]
    ops += [get(100 + i, "x", str(i), 1 + 2 * i, 2 + 2 * i) for i in range(12)]
    ops.append(get(200, "x", "never", 100, 101))
    result = check_kv_history(ops, max_steps_per_key=50)
    assert result.verdict is Verdict.UNKNOWN
    assert result.keys[0].steps > 50
    assert "unknown" in result.describe()


def test_wall_clock_budget_reports_unknown() -> None:
    ops = [put(i, "x", str(i), 0, None) for i in range(16)]
    ops += [get(100 + i, "x", str(i % 3), 1 + 2 * i, 2 + 2 * i) for i in range(30)]
    result = check_kv_history(ops, timeout_s=0.0)
    assert result.verdict is Verdict.UNKNOWN


# --- input validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: Operation(1, OpKind.PUT, "x", 5, 4, value="a"),
        lambda: Operation(1, OpKind.PUT, "x", 0, 1),
        lambda: Operation(1, OpKind.GET, "x", 0, 1, value="a"),
        lambda: Operation(1, OpKind.CAS, "x", 0, 1, value="a", expected=None, output=None),
        lambda: Operation(1, "put", "x", 0, 1, value="a"),  # type: ignore[arg-type]
        lambda: Operation(1, OpKind.PUT, 3, 0, 1, value="a"),  # type: ignore[arg-type]
        lambda: Operation(1, OpKind.PUT, "x", float("nan"), 1, value="a"),
        lambda: Operation(1, OpKind.PUT, "x", 0, 1, value="a", output="b"),
    ],
)
def test_malformed_operations_are_rejected(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        make()


def test_history_of_wrong_type_is_rejected() -> None:
    with pytest.raises(TypeError):
        check_kv_history([("put", "x", "a")])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        check_kv_history([], max_steps_per_key=0)


# --- seeded random histories ----------------------------------------------------------


def _random_linearizable_history(rng: random.Random, n_ops: int, keys: str) -> list[Operation]:
    """Run operations sequentially at distinct linearization points, then widen each
    into an interval around its point: linearizable by construction."""
    state: dict[str, str | None] = {}
    ops: list[Operation] = []
    for point in range(n_ops):
        t = point * 10.0
        call = t - rng.uniform(0, 35)
        ret: float | None = t + rng.uniform(0, 35)
        key = rng.choice(keys)
        roll = rng.random()
        client = rng.randrange(6)
        if roll < 0.4:
            ops.append(get(client, key, state.get(key), call, ret))
            continue
        if rng.random() < 0.15:
            ret = None  # the client timed out: outcome unknown, but it did take effect
        value = f"v{point}"
        if roll < 0.75:
            state[key] = value
            ops.append(put(client, key, value, call, ret))
        elif roll < 0.9:
            state[key] = (state.get(key) or "") + value
            ops.append(append(client, key, value, call, ret))
        else:
            expected = state.get(key) if rng.random() < 0.5 else "nope"
            ok = state.get(key) == expected
            if ok:
                state[key] = value
            ops.append(cas(client, key, expected, value, ok if ret is not None else None, call, ret))
    return ops


def test_random_linearizable_histories_pass() -> None:
    rng = random.Random(20261127)
    for _ in range(200):
        ops = _random_linearizable_history(rng, rng.randrange(5, 40), "abc")
        result = check_kv_history(ops)
        assert result.verdict is Verdict.OK, result.describe()


def test_random_histories_with_a_corrupted_read_fail() -> None:
    rng = random.Random(7)
    caught = 0
    for _ in range(200):
        ops = _random_linearizable_history(rng, rng.randrange(5, 40), "ab")
        reads = [i for i, o in enumerate(ops) if o.kind is OpKind.GET]
        if not reads:
            continue
        i = rng.choice(reads)
        o = ops[i]
        # A value no operation ever wrote can never be read.
        ops[i] = get(o.client_id, o.key, "corrupt", o.call, o.ret)  # type: ignore[arg-type]
        assert check_kv_history(ops).verdict is Verdict.ILLEGAL
        caught += 1
    assert caught > 150


# --- against a brute-force oracle ---------------------------------------------------------


def _brute_force_linearizable(ops: list[Operation]) -> bool:
    """Definition-level check: some subset of the pending operations plus all completed
    ones has a total order that respects real time (a before b if a returned before b
    was called) and the sequential specification."""
    import itertools

    done = [o for o in ops if not o.pending]
    pending = [o for o in ops if o.pending and o.kind is not OpKind.GET]
    for r in range(len(pending) + 1):
        for chosen in itertools.combinations(pending, r):
            group = done + list(chosen)
            for order in itertools.permutations(group):
                ok = True
                for i, a in enumerate(order):
                    # Real time: nothing placed after a may have returned before a was called.
                    if any(b.ret is not None and b.ret < a.call for b in order[i + 1:]):
                        ok = False
                        break
                if not ok:
                    continue
                state: dict[str, str | None] = {}
                for o in order:
                    legal, new = kv_step(state.get(o.key), o)
                    if not legal:
                        ok = False
                        break
                    state[o.key] = new
                if ok:
                    return True
    return False


def test_verdicts_match_a_brute_force_oracle_on_small_random_histories() -> None:
    rng = random.Random(424242)
    values = ["a", "b", "c"]
    verdicts = {True: 0, False: 0}
    for _ in range(400):
        ops: list[Operation] = []
        for _ in range(rng.randint(1, 6)):
            call = rng.randint(0, 12)
            ret: int | None = call + rng.randint(0, 6)
            if rng.random() < 0.15:
                ret = None
            client = rng.randrange(4)
            key = rng.choice("xy")
            roll = rng.random()
            if roll < 0.4:
                out = rng.choice([None, *values])
                ops.append(get(client, key, out if ret is not None else None, call, ret))
            elif roll < 0.75:
                ops.append(put(client, key, rng.choice(values), call, ret))
            elif roll < 0.85:
                ops.append(append(client, key, rng.choice(values), call, ret))
            else:
                ok = rng.random() < 0.5 if ret is not None else None
                ops.append(cas(client, key, rng.choice([None, *values]), rng.choice(values), ok, call, ret))
        # The oracle sees the whole history, so this also checks that splitting by key
        # (locality, Herlihy & Wing) loses nothing.
        expected = _brute_force_linearizable(ops)
        got = check_kv_history(ops).verdict
        assert got is (Verdict.OK if expected else Verdict.ILLEGAL), format_operations(ops)
        verdicts[expected] += 1
    assert verdicts[True] > 50 and verdicts[False] > 50  # both kinds were exercised
