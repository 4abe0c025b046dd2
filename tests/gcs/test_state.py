"""SwarmState: payload validation (drop, count, change nothing), bounds and alerts."""

from __future__ import annotations

import json

import pytest

from swarm.evacmap import (
    EvacuationMap,
    ReportSurvivor,
    SetDroneTask,
    SetRoute,
    SetZone,
    encode_command,
    map_to_geojson,
)
from swarm.gcs.state import Limits, SwarmState, parse_topic

ROOT = "swarm/s1/"


def status(node: int, role: str = "follower", term: int = 3, map_version: int = 5,
           **extra: object) -> bytes:
    doc = {"v": 1, "node": node, "name": f"drone-{node}", "online": True, "t": 1,
           "role": role, "term": term, "leader": 1, "commit": 9, "applied": 9,
           "last_index": 9, "map_version": map_version,
           "fc": {"connected": True, "map_version_held": map_version, "mode": "AUTO",
                  "armed": True}}
    doc.update(extra)
    return json.dumps(doc).encode()


def telemetry(node: int, **extra: object) -> bytes:
    doc = {"v": 1, "node": node, "t": 1, "lat": 39.76, "lon": -121.62, "heading_deg": 370.0,
           "battery_pct": 80.0, "mode": "AUTO", "armed": True, "link_score": 0.8,
           "fc_connected": True}
    doc.update(extra)
    return json.dumps(doc).encode()


def map_payload(version: int) -> bytes:
    m = EvacuationMap()
    m.apply(version, encode_command(SetZone(id="z1", polygon=((-121.62, 39.76), (-121.61, 39.76),
                                                              (-121.61, 39.77)),
                                            status="burning", source="drone-1", time_ms=1)))
    doc = map_to_geojson(m)
    doc.update(v=1, version=version, term=3, node=1)
    return json.dumps(doc).encode()


def test_topics() -> None:
    assert parse_topic("s1", ROOT + "status/2") == ("status", 2)
    assert parse_topic("s1", ROOT + "map") == ("map", None)
    assert parse_topic("s1", ROOT + "events") == ("events", None)
    for bad in (ROOT + "status/0", ROOT + "status/02", ROOT + "status/x", ROOT + "raft/1",
                ROOT + "status/2/x", "swarm/other/map", ROOT + "status/2147483648"):
        assert parse_topic("s1", bad) is None, bad


@pytest.mark.parametrize("payload, reason", [
    (b"{not json", "not valid JSON"),
    (b"[1]", "expected a JSON object"),
    (json.dumps({"v": 2, "node": 1, "online": True}).encode(), "unknown schema version"),
    (json.dumps({"v": 1, "node": 2, "online": True}).encode(), "is not the topic's node 1"),
    (json.dumps({"v": 1, "node": 1, "online": True}).encode(), "role: missing"),
    (status(1, role="king"), "is not one of"),
    (status(1, term="7"), "term: '7' is not an integer"),
    (status(1, term=True), "term: True is not an integer"),
    (status(1, commit=-1), "commit: -1 is not an integer in [0, 2**64)"),
    (b"\xff\xfe", "not UTF-8"),
    (b"x" * (Limits().status_bytes + 1), "exceed the limit"),
])
def test_malformed_status_is_dropped_and_changes_nothing(payload: bytes, reason: str) -> None:
    state = SwarmState("s1")
    assert state.ingest(ROOT + "status/1", payload, 0.0) == frozenset()
    assert state.nodes == {}
    assert reason in state.last_drop
    assert sum(state.drops.values()) == 1


@pytest.mark.parametrize("payload", [
    telemetry(1, lat=91.0), telemetry(1, lon="x"), telemetry(1, battery_pct=float("nan")),
    b'{"v":1,"node":1,"lat":NaN,"lon":0}',
])
def test_malformed_telemetry_is_dropped(payload: bytes) -> None:
    state = SwarmState("s1")
    state.ingest(ROOT + "telemetry/1", telemetry(1), 0.0)
    before = dict(state.nodes[1].telemetry or {})
    assert state.ingest(ROOT + "telemetry/1", payload, 1.0) == frozenset()
    assert state.nodes[1].telemetry == before


#: A JSON number no float can hold: valid JSON (json.loads accepts it), but float() and
#: math.isfinite raise OverflowError on it.
HUGE = "1" + "0" * 400


@pytest.mark.parametrize("topic, payload", [
    ("status/1", status(1)[:-1] + f', "link_score": {HUGE}}}'.encode()),
    ("status/1", status(1)[:-1] + f', "peers": {{"2": {{"last_contact_ms": {HUGE}}}}}}}'.encode()),
    ("telemetry/1", telemetry(1)[:-1] + f', "groundspeed_ms": {HUGE}}}'.encode()),
    ("telemetry/1", telemetry(1)[:-1] + f', "alt_rel_m": -{HUGE}}}'.encode()),
    ("telemetry/1", f'{{"v": 1, "node": 1, "lat": {HUGE}, "lon": 0}}'.encode()),
    ("plan/1", f'{{"v": 1, "node": 1, "map_version": 1, "status": "ok", '
               f'"mission": [[39.7, -121.6, {HUGE}, 16]]}}'.encode()),
    ("plan/1", f'{{"v": 1, "node": 1, "map_version": 1, "status": "ok", "mission": [], '
               f'"home": [39.7, -121.6, {HUGE}]}}'.encode()),
    ("plan/1", f'{{"v": 1, "node": 1, "map_version": 1, "status": "ok", "mission": [], '
               f'"items": {{"mission": [[16, 6, 0, 0, 0, 0, 1, 1, {HUGE}, 1]]}}}}'.encode()),
])
def test_a_number_no_float_holds_is_dropped_not_raised(topic: str, payload: bytes) -> None:
    state = SwarmState("s1")
    state.ingest(ROOT + "status/1", status(1), 0.0)
    state.ingest(ROOT + "telemetry/1", telemetry(1), 0.0)
    before = {k: getattr(state.nodes[1], k) for k in ("status", "telemetry", "plan")}
    assert state.ingest(ROOT + topic, payload, 1.0) == frozenset()
    assert "finite number" in state.last_drop or "is not a number in" in state.last_drop
    assert len(state.last_drop) < 200   # the number is cut, not shown whole
    assert {k: getattr(state.nodes[1], k) for k in before} == before


@pytest.mark.parametrize("bad", ["drone\n1", "\ud800", "x" * 65, "", "\x00"],
                         ids=["newline", "surrogate", "65-chars", "empty", "nul"])
def test_telemetry_and_plan_names_follow_the_status_rule(bad: str) -> None:
    """1 to 64 printable characters, as in a status: the name ends up in an export's
    Content-Disposition header and on the page."""
    state = SwarmState("s1")
    plan = {"v": 1, "node": 1, "map_version": 1, "status": "ok", "mission": []}
    assert state.ingest(ROOT + "telemetry/1", telemetry(1, name="drone-1"), 0.0)
    assert state.ingest(ROOT + "plan/1", json.dumps({**plan, "name": "drone-1"}).encode(), 0.0)
    for topic, payload in (("telemetry/1", telemetry(1, name=bad)),
                           ("telemetry/1", telemetry(1, mode=bad)),
                           ("plan/1", json.dumps({**plan, "name": bad}).encode())):
        assert state.ingest(ROOT + topic, payload, 1.0) == frozenset(), topic
        assert "printable characters" in state.last_drop
    assert state.nodes[1].name == "drone-1" and state.nodes[1].telemetry["mode"] == "AUTO"


def test_map_never_goes_back_and_bad_geojson_is_refused() -> None:
    state = SwarmState("s1")
    assert state.ingest(ROOT + "map", map_payload(7), 0.0) == {"map", "health"}
    assert state.ingest(ROOT + "map", map_payload(5), 1.0) == frozenset()  # deposed leader
    assert state.map_doc()["version"] == 7
    broken = json.loads(map_payload(9))
    broken["features"][0]["geometry"]["coordinates"][0][0] = [500, 0]
    assert state.ingest(ROOT + "map", json.dumps(broken).encode(), 2.0) == frozenset()
    assert "not valid GeoJSON" in state.last_drop
    assert state.map_doc()["version"] == 7


@pytest.mark.parametrize("spoil", [
    lambda doc: doc["features"][0]["geometry"].update(type=["Polygon"]),
    lambda doc: doc["features"][0]["geometry"].update(type={}),
    lambda doc: doc["features"][0]["geometry"]["coordinates"][0][0].__setitem__(0, 10**400),
    lambda doc: doc.update(bbox=[0, 0, 10**400, 1]),
], ids=["type-list", "type-object", "huge-longitude", "huge-bbox"])
def test_a_map_with_an_unhashable_type_or_a_huge_number_is_dropped_not_raised(spoil) -> None:
    """The RFC 7946 check only reports: a 'type' that is a list (unhashable in a set
    lookup) or a coordinate no float holds raised out of ingest instead."""
    state = SwarmState("s1")
    state.ingest(ROOT + "map", map_payload(7), 0.0)
    doc = json.loads(map_payload(8))
    spoil(doc)
    assert state.ingest(ROOT + "map", json.dumps(doc).encode(), 1.0) == frozenset()
    assert "map" in state.last_drop and state.map_doc()["version"] == 7


def _every_kind_map(version: int) -> dict:
    """A map with a feature of each kind the page draws (a sector added as the agents'
    map_to_geojson writes one: it needs a committed assignment)."""
    m = EvacuationMap()
    ring = ((-121.62, 39.76), (-121.61, 39.76), (-121.61, 39.77))
    for i, command in enumerate([
            SetZone(id="z1", polygon=ring, status="burning", source="drone-1", time_ms=1),
            SetRoute("r1", [[-121.625, 39.755, 30.0], [-121.605, 39.775, 30.0]], 1),
            ReportSurvivor("s1", [-121.615, 39.765], 3, 0.8, "drone-1", 1),
            SetDroneTask("drone-1", "search", True, False, [-121.6, 39.75, 300.0])], 1):
        assert m.apply_command(i, command).ok
    doc = map_to_geojson(m)
    zone_geometry = doc["features"][0]["geometry"]
    doc["features"].append({"type": "Feature", "id": "sector:drone-1", "properties": {
        "kind": "sector", "id": "drone-1", "epoch": 1, "current": True, "survivors": ["s1"]},
        "geometry": {"type": "MultiPolygon", "coordinates": [zone_geometry["coordinates"]]}})
    doc.update(v=1, version=version, term=3, node=1)
    return doc


@pytest.mark.parametrize("kind, name, value", [
    ("route", "priority", "<img src=/api/status>"),   # the page writes it into HTML as is
    ("survivor", "count", "<b>9</b>"),
    ("sector", "epoch", "<i>1</i>"),
    ("route", "crosses", "z1"),            # the page calls .join on it: a string threw
    ("survivor", "inside", ["z1", 7]),
    ("sector", "survivors", {}),
    ("route", "unsafe", "yes"),
    ("survivor", "confidence", "high"),
    ("zone", "time_ms", 1.5),
    ("drone_home", "recalled", 1),
])
def test_map_properties_the_page_reads_are_typed(kind: str, name: str, value: object) -> None:
    state = SwarmState("s1")
    good = _every_kind_map(7)
    assert {f["properties"]["kind"] for f in good["features"]} == {
        "zone", "route", "survivor", "drone_home", "sector"}
    assert state.ingest(ROOT + "map", json.dumps(good).encode(), 0.0) == {"map", "health"}
    bad = _every_kind_map(8)
    props = next(f["properties"] for f in bad["features"] if f["properties"]["kind"] == kind)
    props[name] = value
    assert state.ingest(ROOT + "map", json.dumps(bad).encode(), 1.0) == frozenset()
    assert f"properties.{name}" in state.last_drop, state.last_drop
    assert state.map_doc()["version"] == 7
    props[name] = None   # absent or null: the page copes (a swarm of older agents)
    assert state.ingest(ROOT + "map", json.dumps(bad).encode(), 2.0) == {"map", "health"}


def test_bounded_nodes_events_and_track() -> None:
    limits = Limits(max_nodes=3, max_events=5, track_points=4, track_interval_s=0.0)
    state = SwarmState("s1", limits)
    for node in range(1, 6):
        state.ingest(ROOT + f"status/{node}", status(node), 0.0)
    assert sorted(state.nodes) == [1, 2, 3]
    assert "already tracking 3 nodes" in state.last_drop
    for k in range(20):
        state.ingest(ROOT + "events", json.dumps({"v": 1, "kind": "commit", "text": str(k)}).encode(), k)
        state.ingest(ROOT + "telemetry/1", telemetry(1, lat=39 + k * 0.001), k)
    assert [e["text"] for e in state.events] == [str(k) for k in range(15, 20)]
    assert len(state.nodes[1].track) == 4


def test_leader_and_health_rows() -> None:
    state = SwarmState("s1")
    state.broker_connected = True
    state.ingest(ROOT + "status/1", status(1, role="leader", peers={
        "2": {"match": 9, "lag": 0, "last_contact_ms": 30},
        "3": {"match": 4, "lag": 5, "last_contact_ms": 45}}), 0.0)
    state.ingest(ROOT + "status/2", status(2), 0.0)
    state.ingest(ROOT + "status/3", status(3), 0.0)
    health = state.health(0.5)
    assert health["leader"] == {"node": 1, "name": "drone-1"}
    assert health["term"] == 3 and health["commit"] == 9
    rows = {r["node"]: r for r in health["nodes"]}
    assert rows[3]["lag"] == 5 and rows[3]["last_contact_ms"] == 45
    assert rows[1]["fc_map_version"] == 5
    assert health["alerts"] == []
    drones = state.drones(0.5)
    assert [d["leader"] for d in drones] == [True, False, False]


def test_alerts() -> None:
    state = SwarmState("s1")
    state.broker_connected = True
    state.ingest(ROOT + "map", map_payload(8), 0.0)
    state.ingest(ROOT + "status/1", status(1, role="leader", term=3, map_version=8), 0.0)
    state.ingest(ROOT + "status/2", status(2, map_version=2), 0.0)
    state.ingest(ROOT + "status/3", status(3, map_version=8, fc={"connected": False}), 0.0)
    kinds = {(a.kind, a.node) for a in state.alerts(1.0)}
    assert ("fc_link", 3) in kinds
    assert ("not_converged", 2) not in kinds  # not yet: give it converge_s
    kinds = {(a.kind, a.node) for a in state.alerts(11.0)}
    assert ("unreachable", 1) in kinds and ("no_leader", None) in kinds  # statuses aged 11 s
    state.ingest(ROOT + "status/1", status(1, role="leader", term=3, map_version=8), 11.0)
    state.ingest(ROOT + "status/2", status(2, map_version=2), 11.0)
    kinds = {(a.kind, a.node) for a in state.alerts(11.0)}
    assert ("not_converged", 2) in kinds and ("unreachable", 1) not in kinds
    state.ingest(ROOT + "status/2", status(2, map_version=8), 12.0)
    assert ("not_converged", 2) not in {(a.kind, a.node) for a in state.alerts(12.0)}
    # A flight controller still holding an older map's plan.
    state.ingest(ROOT + "status/2", status(2, map_version=8, fc={"connected": True,
                                                                  "map_version_held": 6}), 13.0)
    state.ingest(ROOT + "status/2", status(2, map_version=8, fc={"connected": True,
                                                                  "map_version_held": 6}), 24.0)
    assert any(a.kind == "not_converged" and a.node == 2 and "flight controller" in a.text
               for a in state.alerts(24.0))
    # A node that reports no flight controller at all is not judged on one.
    state.ingest(ROOT + "status/2", status(2, map_version=8, fc=None), 25.0)
    state.ingest(ROOT + "status/2", status(2, map_version=8, fc=None), 40.0)
    assert ("not_converged", 2) not in {(a.kind, a.node) for a in state.alerts(40.0)}
    # Elections too often: three new terms within a minute.
    for k, term in enumerate((4, 5, 6)):
        state.ingest(ROOT + "status/1", status(1, role="leader", term=term, map_version=8), 20.0 + k)
    assert any(a.kind == "elections" for a in state.alerts(23.0))
    assert not any(a.kind == "elections" for a in state.alerts(100.0))
    # The Last Will: offline at once.
    state.ingest(ROOT + "status/2", json.dumps({"v": 1, "node": 2, "online": False}).encode(), 24.0)
    assert any(a.kind == "unreachable" and a.node == 2 and "last will" in a.text
               and a.text.startswith("drone-2 ") for a in state.alerts(24.0))


def test_plan_validation_keeps_items_and_rejects_garbage() -> None:
    state = SwarmState("s1")
    plan = {"v": 1, "node": 1, "map_version": 3, "status": "ok", "reasons": [],
            "mission": [[39.76, -121.62, 30.0, 16]], "fences": [], "rally": [],
            "fc_map_version": None, "home": [39.76, -121.62, 100.0],
            "items": {"mission": [[16, 6, 0, 0, 0, None, 397600000, -1216200000, 30.0, 1]]}}
    assert "plans" in state.ingest(ROOT + "plan/1", json.dumps(plan).encode(), 0.0)
    assert state.nodes[1].plan["items"]["mission"][0][0] == 16  # type: ignore[index]
    plan["items"] = {"mission": [[16, 6, 0, 0, 0, 0, "x", 0, 0, 1]]}
    assert state.ingest(ROOT + "plan/1", json.dumps(plan).encode(), 1.0) == frozenset()
    assert "items.mission[0][6]" in state.last_drop


def test_recall_state_comes_from_the_committed_map_and_is_validated() -> None:
    state = SwarmState("s1")
    state.ingest(ROOT + "status/2", status(2), 0.0)
    assert state.drones(0.1)[0]["recalled"] is None  # no map yet: unknown, not "no"
    doc = json.loads(map_payload(7))
    assert doc["recall"] == {"all": False, "drones": []}
    state.ingest(ROOT + "map", json.dumps(doc).encode(), 0.2)
    assert state.drones(0.3)[0]["recalled"] is False
    doc.update(version=8, recall={"all": False, "drones": ["drone-2"]})
    state.ingest(ROOT + "map", json.dumps(doc).encode(), 0.4)
    assert state.drones(0.5)[0]["recalled"] is True
    assert state.health(0.5)["recall"] == {"all": False, "drones": ["drone-2"]}
    for bad in ({"all": "yes", "drones": []}, {"all": True}, [1], {"all": True, "drones": [3]}):
        doc.update(version=9, recall=bad)
        assert state.ingest(ROOT + "map", json.dumps(doc).encode(), 0.6) == frozenset()
        assert state.last_drop.startswith("map: map.recall"), state.last_drop
    assert state.map_doc()["version"] == 8 and state.recalled("drone-2") is True
