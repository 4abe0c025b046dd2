"""Commands: JSON forms, canonical encoding, and validation with clear messages."""

from __future__ import annotations

import json

import pytest

from swarm.evacmap import (
    COMMAND_TYPES,
    CommandError,
    DroneTask,
    Launch,
    Recall,
    RemoveDrone,
    RemoveRoute,
    RemoveSurvivor,
    RemoveZone,
    ReportSurvivor,
    SetAssignment,
    Resume,
    SetDroneTask,
    SetRoute,
    SetSearchArea,
    SetZone,
    SurvivorStatus,
    UpdateSurvivor,
    ZoneStatus,
    encode_command,
    parse_command,
)

T = 1_764_208_800_000
SQUARE = [[-120.0, 38.0], [-119.99, 38.0], [-119.99, 38.01], [-120.0, 38.01]]

EXAMPLES = [
    SetZone("z1", SQUARE, ZoneStatus.BURNING, "drone-1", T),
    SetRoute("r1", [[-120.0, 38.0, 30.0], [-119.98, 38.02, 40.0]], 1),
    ReportSurvivor("s1", [-119.995, 38.005], 3, 0.75, "drone-2", T),
    UpdateSurvivor("s1", "drone-3", T + 1000, status=SurvivorStatus.CONFIRMED, count=4),
    SetSearchArea(SQUARE),
    SetDroneTask("drone-1", DroneTask.SEARCH, True, False, [-120.0, 38.0, 312.5]),
    RemoveZone("z1"),
    RemoveRoute("r1"),
    RemoveSurvivor("s1"),
    RemoveDrone("drone-1"),
    SetAssignment(3, {"drone-1": [[SQUARE]]}, {"drone-2": ["s1"]},
                  {"survivor:s2": "no available drone can reach it without crossing a zone"}),
    Recall(["drone-2", "drone-1"]),
    Resume(),
    Launch(1764208800000, ["drone-3"]),
]


def _json(command_type: str, **fields: object) -> bytes:
    return json.dumps({"type": command_type, **fields}).encode()


def test_every_command_type_has_an_example() -> None:
    assert {type(c).TYPE for c in EXAMPLES} == set(COMMAND_TYPES)


@pytest.mark.parametrize("command", EXAMPLES, ids=lambda c: type(c).TYPE)
def test_encode_then_parse_round_trips(command) -> None:
    data = encode_command(command)
    assert parse_command(data) == command
    assert encode_command(parse_command(data)) == data


@pytest.mark.parametrize("command", EXAMPLES, ids=lambda c: type(c).TYPE)
def test_encoding_is_canonical_json(command) -> None:
    data = encode_command(command)
    obj = json.loads(data)
    assert data == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert obj["type"] == type(command).TYPE


def test_floats_are_rounded_so_nearly_equal_inputs_encode_identically() -> None:
    a = SetZone("z", [[-120.00000001, 38.0], [-119.99, 38.0], [-119.99, 38.01]], "burning", "d", T)
    b = SetZone("z", [[-120.0, 38.00000004], [-119.99, 38.0], [-119.99, 38.01]], "burning", "d", T)
    assert encode_command(a) == encode_command(b)
    survivor = ReportSurvivor("s", [0.123456789, -0.0000000001], 1, 0.33333, "d", T)
    assert survivor.position == (0.1234568, 0.0)
    assert survivor.confidence == 0.333
    assert b'-0.0' not in encode_command(survivor)


def test_integer_coordinates_encode_as_floats() -> None:
    command = SetDroneTask("d", "idle", True, False, [10, 45, 100])
    assert command.home == (10.0, 45.0, 100.0)
    assert b"[10.0,45.0,100.0]" in encode_command(command)


def test_ring_is_stored_closed_and_counter_clockwise_whatever_the_input_winding() -> None:
    clockwise = list(reversed(SQUARE))
    closed = SQUARE + [SQUARE[0]]
    a, b, c = (SetSearchArea(ring) for ring in (SQUARE, clockwise, closed))
    assert a.polygon[0] == a.polygon[-1]
    assert len(a.polygon) == 5
    assert a == c
    # The clockwise input keeps its first vertex and is re-wound.
    assert b.polygon[0] == tuple(clockwise[0])
    for command in (a, b):
        ring = command.polygon
        area = sum(ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1]
                   for i in range(len(ring) - 1))
        assert area > 0


def test_unknown_command_type_is_rejected_with_the_known_types_listed() -> None:
    with pytest.raises(CommandError, match=r"unknown type 'launch_missiles'.*set_zone"):
        parse_command(_json("launch_missiles", id="x"))


def test_missing_type_is_rejected() -> None:
    with pytest.raises(CommandError, match="missing 'type'"):
        parse_command(b'{"id": "z1"}')


def test_unknown_field_is_rejected_naming_the_field() -> None:
    with pytest.raises(CommandError, match=r"remove_zone\.colour: unknown field"):
        parse_command(_json("remove_zone", id="z1", colour="red"))


def test_missing_field_is_rejected_naming_the_field() -> None:
    with pytest.raises(CommandError, match=r"set_zone\.status: missing required field"):
        parse_command(_json("set_zone", id="z1", polygon=SQUARE, source="d", time_ms=T))


def test_null_optional_field_is_rejected() -> None:
    with pytest.raises(CommandError, match=r"update_survivor\.count: null"):
        parse_command(_json("update_survivor", id="s", reporter="d", time_ms=T, count=None))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"type":"remove_zone","id":"a","id":"b"}', "duplicate key 'id'"),
        (b'{"type":"remove_zone","id":NaN}', "NaN is not a valid number"),
        (b" " * 70_000, "exceed the limit"),
    ],
)
def test_malformed_bytes_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_command(data)


@pytest.mark.parametrize(
    "ident",
    ["", "-leading-dash", "has space", "x" * 65, "slash/inside", "ünïcode", "+"],
)
def test_bad_ids_are_rejected(ident: str) -> None:
    with pytest.raises(CommandError, match=r"remove_zone\.id: .* is not a valid id"):
        RemoveZone(ident)


def test_id_must_be_a_string() -> None:
    with pytest.raises(CommandError, match=r"remove_route\.id: expected an id string, got int"):
        parse_command(_json("remove_route", id=7))


@pytest.mark.parametrize(
    "vertex, message",
    [
        ([181.0, 38.0], "longitude 181.0 is outside"),
        ([-120.0, 91.0], "latitude 91.0 is outside"),
        (["-120", 38.0], "expected a number, got str"),
        ([True, 38.0], "expected a number, got bool"),
        ([-120.0], r"expected a \[longitude, latitude\] pair"),
        ([float("inf"), 38.0], "not a finite number"),
    ],
)
def test_bad_coordinates_are_rejected_naming_the_vertex(vertex, message) -> None:
    ring = [vertex, [-119.99, 38.0], [-119.99, 38.01]]
    with pytest.raises(CommandError, match=message) as info:
        SetZone("z", ring, "burning", "d", T)
    assert "set_zone.polygon[0]" in str(info.value)


def test_self_intersecting_polygon_is_rejected_with_the_reason() -> None:
    bowtie = [[-120.0, 38.0], [-119.99, 38.01], [-119.99, 38.0], [-120.0, 38.01]]
    message = r"set_zone\.polygon: invalid polygon: Self-intersection"
    with pytest.raises(CommandError, match=message):
        SetZone("z", bowtie, "burning", "d", T)


def test_too_few_vertices_are_rejected() -> None:
    with pytest.raises(CommandError, match="at least 3 distinct vertices"):
        SetSearchArea([[-120.0, 38.0], [-119.99, 38.0], [-120.0, 38.0]])


def test_repeated_vertex_is_rejected() -> None:
    ring = [[-120.0, 38.0], [-119.99, 38.0], [-119.99, 38.0], [-119.99, 38.01]]
    with pytest.raises(CommandError, match="vertex 2 repeats the previous vertex"):
        SetSearchArea(ring)


def test_collinear_ring_is_rejected_as_invalid() -> None:
    with pytest.raises(CommandError, match="invalid polygon"):
        SetSearchArea([[-120.0, 38.0], [-119.99, 38.0], [-119.98, 38.0]])


def test_polygon_larger_than_the_extent_limit_is_rejected() -> None:
    huge = [[-120.0, 38.0], [-118.0, 38.0], [-118.0, 39.0], [-120.0, 39.0]]
    with pytest.raises(CommandError, match=r"extent \d+ m x \d+ m exceeds"):
        SetSearchArea(huge)


def test_antimeridian_crossing_polygon_is_rejected() -> None:
    ring = [[179.99, 10.0], [-179.99, 10.0], [-179.99, 10.01], [179.99, 10.01]]
    with pytest.raises(CommandError, match="antimeridian"):
        SetSearchArea(ring)


@pytest.mark.parametrize("lat", [89.99, -89.99])
def test_a_polar_cap_is_rejected_as_going_round_the_pole_not_as_an_antimeridian_crossing(
        lat) -> None:
    cap = [[0.0, lat], [90.0, lat], [180.0, lat], [-90.0, lat]]
    with pytest.raises(CommandError, match="goes round a pole") as info:
        SetSearchArea(cap)
    assert "antimeridian" not in str(info.value)


def test_a_ring_wider_than_180_degrees_without_wrapping_says_how_wide() -> None:
    with pytest.raises(CommandError, match=r"spans 200\.0 degrees of longitude"):
        SetSearchArea([[-100.0, 1.0], [0.0, 1.0], [100.0, 1.0], [100.0, 1.1], [0.0, 1.1],
                       [-100.0, 1.1]])


def test_a_route_crossing_the_antimeridian_says_so() -> None:
    with pytest.raises(CommandError, match="crosses the antimeridian"):
        SetRoute("r", [[179.999, 0.0, 10.0], [-179.999, 0.0, 10.0]], 1)


def test_too_many_vertices_are_rejected() -> None:
    import math

    angles = [2 * math.pi * i / 600 for i in range(600)]
    ring = [[-120 + 0.01 * math.cos(a), 38 + 0.01 * math.sin(a)] for a in angles]
    with pytest.raises(CommandError, match="600 vertices exceed the limit"):
        SetSearchArea(ring)


def test_route_rules() -> None:
    with pytest.raises(CommandError, match=r"set_route\.path: a route needs 2"):
        SetRoute("r", [[-120.0, 38.0, 30.0]], 1)
    with pytest.raises(CommandError, match=r"point 1 repeats the position"):
        SetRoute("r", [[-120.0, 38.0, 30.0], [-120.0, 38.0, 50.0]], 1)
    with pytest.raises(CommandError, match=r"set_route\.path\[1\]\[2\]: altitude"):
        SetRoute("r", [[-120.0, 38.0, 30.0], [-119.9, 38.0, 1e6]], 1)
    with pytest.raises(CommandError, match=r"set_route\.priority: 10 is outside \[0, 9\]"):
        SetRoute("r", [[-120.0, 38.0, 30.0], [-119.9, 38.0, 30.0]], 10)
    with pytest.raises(CommandError, match=r"set_route\.priority: expected an integer, got float"):
        parse_command(_json("set_route", id="r", path=[[-120, 38, 1], [-119.9, 38, 1]],
                            priority=1.5))


def test_enum_fields_list_the_allowed_values() -> None:
    message = r"set_zone\.status: 'smoking' is not one of: burning, burned, cleared"
    with pytest.raises(CommandError, match=message):
        SetZone("z", SQUARE, "smoking", "d", T)
    with pytest.raises(CommandError, match=r"set_drone_task\.task: 'dance' is not one of"):
        SetDroneTask("d", "dance", True, False, [-120.0, 38.0, 0.0])


def test_survivor_rules() -> None:
    with pytest.raises(CommandError, match=r"report_survivor\.confidence: confidence 1.5"):
        ReportSurvivor("s", [-120.0, 38.0], 1, 1.5, "d", T)
    with pytest.raises(CommandError, match=r"report_survivor\.count: 0 is outside"):
        ReportSurvivor("s", [-120.0, 38.0], 0, 0.5, "d", T)
    with pytest.raises(CommandError, match=r"report_survivor\.time_ms: -1 is outside"):
        ReportSurvivor("s", [-120.0, 38.0], 1, 0.5, "d", -1)
    with pytest.raises(CommandError, match=r"update_survivor: changes nothing"):
        UpdateSurvivor("s", "d", T)


def test_drone_flags_must_be_booleans() -> None:
    message = r"set_drone_task\.alive: expected true or false, got int"
    with pytest.raises(CommandError, match=message):
        parse_command(_json("set_drone_task", id="d", task="idle", alive=1, busy=False,
                            home=[-120, 38, 0]))


def test_encode_rejects_foreign_objects() -> None:
    with pytest.raises(CommandError, match="not a map command"):
        encode_command("set_zone")  # type: ignore[arg-type]


def test_commands_are_immutable() -> None:
    command = RemoveZone("z1")
    with pytest.raises(AttributeError):
        command.id = "z2"  # type: ignore[misc]
