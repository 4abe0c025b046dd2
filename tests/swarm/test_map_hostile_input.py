"""Apply never raises, whatever bytes were committed (issue 8, "a committed entry can
crash-loop every replica").

A committed entry is applied by every drone, and again after every restart: if apply
raised on it, every replica would crash on it forever. So for *any* byte string,
``parse_command`` raises only ``CommandError``, and ``EvacuationMap.apply`` (also
wrapped in the exactly-once ``SessionStateMachine``) returns an error result and
leaves the map exactly as it was. Checked on the regressions found by independent
testing and by property tests over arbitrary bytes, arbitrary JSON, and JSON objects
shaped like each command with arbitrary field values.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.session import (
    SessionStateMachine,
    SessionStatus,
    decode_result as decode_session_result,
    encode_command as session_command,
    encode_register,
)
from swarm.evacmap import (
    COMMAND_TYPES,
    CommandError,
    EvacuationMap,
    SetSearchArea,
    SetZone,
    decode_result,
    encode_command,
    parse_command,
)

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

T = 1_764_208_800_000
# Known-bad entries found by independent testing, and their neighbours.
HUGE_INT_ID = b'{"type":"remove_zone","id":' + b"7" * 4301 + b"}"
HUGE_INT_COORD = (b'{"type":"set_zone","id":"z","polygon":[[' + b"1" * 400
                  + b',1],[1,2],[2,2]],"status":"burning","source":"a","time_ms":1}')
HUGE_INT_TIME = (b'{"type":"remove_zone","id":"z","time_ms":' + b"9" * 5000 + b"}")
REGRESSIONS = [HUGE_INT_ID, HUGE_INT_COORD, HUGE_INT_TIME, b"\xff\xfe", b"[" * 100_000,
               b'{"type":"set_search_area","polygon":[[1e999,0],[1,1],[0,1]]}']


def _seeded_map() -> EvacuationMap:
    m = EvacuationMap()
    m.apply_command(1, SetSearchArea([[-120.0, 38.0], [-119.99, 38.0], [-119.99, 38.01]]))
    m.apply_command(2, SetZone("z1", [[-120.0, 38.0], [-119.995, 38.0], [-119.995, 38.005]],
                               "burning", "d1", T))
    return m


def _rejected_and_unchanged(m: EvacuationMap, index: int, data: bytes) -> None:
    before = m.snapshot()
    result = decode_result(m.apply(index, data))
    if not result.ok:
        assert result.error
        assert m.snapshot() == before


@pytest.mark.parametrize("data", REGRESSIONS, ids=lambda d: repr(d[:40]))
def test_known_bad_entries_are_rejected_by_parse_and_apply(data):
    with pytest.raises(CommandError):
        parse_command(data)
    m = _seeded_map()
    before = m.snapshot()
    result = decode_result(m.apply(3, data))
    assert not result.ok and result.error
    assert m.snapshot() == before


def test_a_4301_digit_integer_is_named_in_the_rejection():
    with pytest.raises(CommandError, match="4300 digits"):
        parse_command(HUGE_INT_ID)


def test_an_integer_beyond_a_double_is_rejected_as_a_coordinate():
    with pytest.raises(CommandError, match=r"set_zone\.polygon\[0\]\[0\].*not a finite double"):
        parse_command(HUGE_INT_COORD)


def _parse_only_raises_command_error(data) -> None:
    try:
        parse_command(data)
    except CommandError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers() | st.integers(min_value=10**300, max_value=10**400)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=12,
)
LIST_SETTINGS = settings(SETTINGS, max_examples=100)
field_names = sorted({f for cls in COMMAND_TYPES.values() for f in cls.__dataclass_fields__})
# Objects that look like commands: a real type, real field names, arbitrary values.
command_like = st.builds(
    lambda kind, body: {"type": kind, **body},
    st.sampled_from(sorted(COMMAND_TYPES)),
    st.dictionaries(st.sampled_from(field_names), json_values, max_size=7),
)


entry_bytes = st.one_of(st.binary(max_size=120),
                        st.one_of(json_values, command_like).map(lambda v: json.dumps(v).encode()))


@SETTINGS
@given(st.binary(max_size=200))
def test_parse_command_raises_only_command_error_on_any_bytes(data):
    _parse_only_raises_command_error(data)


@SETTINGS
@given(st.one_of(json_values, command_like))
def test_parse_command_raises_only_command_error_on_any_json(value):
    _parse_only_raises_command_error(json.dumps(value).encode())
    if isinstance(value, dict):
        _parse_only_raises_command_error(value)  # the decoded-object path too


@LIST_SETTINGS
@given(st.lists(entry_bytes, max_size=4))
def test_apply_never_raises_and_a_rejection_changes_nothing(entries):
    m = _seeded_map()
    for index, data in enumerate(entries, start=3):
        _rejected_and_unchanged(m, index, data)


@LIST_SETTINGS
@given(st.lists(entry_bytes, max_size=4))
def test_session_state_machine_around_the_map_never_raises(payloads):
    machine = SessionStateMachine(_seeded_map())
    registered = decode_session_result(machine.apply(3, encode_register(b"n")))
    client = registered.client_id
    for seq, payload in enumerate(payloads, start=1):
        before = machine.inner.snapshot()
        out = decode_session_result(machine.apply(3 + seq, session_command(client, seq, payload)))
        assert out.status is SessionStatus.OK
        if not decode_result(out.payload).ok:
            assert machine.inner.snapshot() == before
        # The raw payload, not wrapped in a session, is rejected by the session layer.
        assert decode_session_result(machine.apply(1000 + seq, payload)).status in (
            SessionStatus.INVALID, SessionStatus.OK, SessionStatus.REGISTERED,
            SessionStatus.SESSION_EXPIRED, SessionStatus.STALE)


def test_valid_commands_still_pass_after_hardening():
    cmd = SetZone("z2", [[-120.0, 38.0], [-119.99, 38.0], [-119.99, 38.01]], "burned", "d1", T)
    assert parse_command(encode_command(cmd)) == cmd


@pytest.mark.parametrize("data", [HUGE_INT_ID, HUGE_INT_COORD])
def test_check_command_prints_the_rejection_without_a_traceback(tmp_path, data):
    path = tmp_path / "entry.json"
    path.write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "swarm", "check-command", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("rejected: ")


def _holes_entry(holes: int, nested: bool = False) -> bytes:
    """A set_assignment whose one sector polygon has ``holes`` small triangular holes
    in a row (about 48 bytes of JSON each), the last one nested in the one before it
    when ``nested``."""
    shell = [[-120.0, 38.0], [-119.6, 38.0], [-119.6, 38.01], [-120.0, 38.01]]
    rings = [[[round(-120.0 + 0.0007 * i, 7), 38.001], [round(-120.0 + 0.0007 * i + 0.0006, 7),
              38.001], [round(-120.0 + 0.0007 * i, 7), 38.0016]] for i in range(1, holes + 1)]
    if nested:
        x = rings[-1][0][0]
        rings[-1] = [[round(x + 0.0001, 7), 38.0011], [round(x + 0.0002, 7), 38.0011],
                     [round(x + 0.0001, 7), 38.0012]]
        rings[-2] = [[x, 38.001], [round(x + 0.0006, 7), 38.001], [x, 38.0016]]
    command = {"type": "set_assignment", "epoch": 0, "sectors": {"drone-1": [[shell, *rings]]},
               "survivors": {}}
    return json.dumps(command, separators=(",", ":")).encode()


def test_a_polygon_of_many_holes_is_judged_in_a_few_sweeps_not_one_per_ring_pair(monkeypatch):
    """A committed set_assignment whose sector polygon has 511 holes (24 kB of JSON)
    cost every drone's apply 10 s (and a 49 kB one 18 s: the node thread stalled past
    every election timeout), since each of the 130 000 ring pairs paid a numpy sweep.
    All the edges are now swept together, a chunk of edges at a time."""
    from swarm.evacmap import exact

    sweeps = []
    real = exact._box_candidates
    monkeypatch.setattr(exact, "_box_candidates", lambda *a: sweeps.append(1) or real(*a))
    entry = _holes_entry(511)
    assert len(entry) < 64 * 1024
    m = EvacuationMap()
    error = decode_result(m.apply(1, entry)).error
    assert error is not None and "not an available drone" in error  # the geometry passed
    assert 0 < len(sweeps) <= 25  # 4 + 511 * 3 edges, 64 at a time (was 130 816)


def test_a_polygon_of_many_holes_gets_the_verdict_of_the_pairwise_rule():
    """The first problem in ring-pair order, as before: the nested pair at the end is
    found, and a hole crossing the shell is named."""
    m = EvacuationMap()
    nested = decode_result(m.apply(1, _holes_entry(300, nested=True))).error
    assert nested is not None and "invalid polygon: Nested holes: rings 299 and 300" in nested
    crossing = json.loads(_holes_entry(300))
    crossing["sectors"]["drone-1"][0][150] = [[-119.9, 37.9995], [-119.899, 38.001],
                                             [-119.9, 38.001]]
    error = decode_result(m.apply(2, json.dumps(crossing).encode())).error
    assert error is not None and "Hole lies outside shell: ring 150" in error


@pytest.mark.parametrize("drone", [["d1"], {"a": 1}, [], 7, None])
def test_a_snapshot_launch_naming_a_drone_by_a_non_string_is_a_value_error(drone):
    """``"launch": [{"drone": [...]}]`` in a snapshot raised TypeError (unhashable, from
    the membership test) out of restore, not the ValueError its installer expects."""
    from swarm.evacmap import Launch, SetDroneTask, canonical_json

    source = EvacuationMap()
    source.apply_command(1, SetDroneTask("d1", "idle", True, False, [-120.0, 38.0, 100.0]))
    source.apply_command(2, Launch(T))
    snapshot = json.loads(source.snapshot())
    snapshot["launch"][0]["drone"] = drone
    m = _seeded_map()
    before = m.snapshot()
    with pytest.raises(CommandError, match=r"snapshot\.launch\[0\]\.drone: .* is not on the map"):
        m.restore(canonical_json(snapshot))
    assert m.snapshot() == before and m.version == 2


def test_a_deeply_nested_entry_gets_the_same_verdict_at_any_stack_depth():
    """How deep json.loads may recurse depends on the caller's stack: an entry nested
    985 levels deep was refused "recall.drones[0]: expected an id string" when applied
    at the top of a thread and "JSON nested too deeply" 100 frames down, so replicas
    (or one replica live and on replay) cached different result bytes for one entry.
    Depth is now decided on the text first."""
    entry = b'{"type":"recall","drones":' + b"[" * 985 + b"]" * 985 + b"}"

    def applied_at(frames: int) -> bytes:
        if frames:
            return applied_at(frames - 1)
        return EvacuationMap().apply(1, entry)

    results = {applied_at(frames) for frames in (0, 100, 400)}
    assert len(results) == 1
    assert b"JSON nested deeper than 32 levels" in results.pop()
    # The deepest real commands are untouched; brackets inside strings do not count.
    ok = {"type": "report_survivor", "id": "s1", "position": [-120.0, 38.0], "count": 1,
          "confidence": 0.5, "reporter": "d1", "time_ms": T}
    assert parse_command(json.dumps(ok).encode()).id == "s1"
    with pytest.raises(CommandError, match="unknown field"):
        parse_command(json.dumps({**ok, "[" * 40: 1}).encode())
