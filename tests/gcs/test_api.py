"""The JSON API, the live stream, exports and operator actions, against a real mosquitto
and a stand-in swarm that speaks docs/protocol.md (contract_swarm.py)."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse
from pathlib import Path

import pytest

from contract_swarm import ContractSwarm
from gcs_helpers import http, wait_for
from swarm.gcs import ConfigError, GcsConfig, load_config
from swarm.gcs.link import BrokerAddress
from swarm.planner import read_qgc_plan, read_wpl

ZONE = {"type": "set_zone", "id": "op-1", "status": "burning",
        "polygon": [[-121.6219, 39.7596], [-121.619, 39.7596], [-121.619, 39.7618]]}


@pytest.fixture
def swarm(broker):
    s = ContractSwarm("t1", "127.0.0.1", broker.port, n=3, telemetry_hz=5)
    yield s
    s.close()


def _live(station) -> None:
    wait_for(lambda: http("GET", station.url + "/api/status")[1]["leader"], 20, "a leader")
    wait_for(lambda: http("GET", station.url + "/api/map")[1]["version"] is not None, 20, "the map")


def test_read_endpoints(broker, swarm, make_station) -> None:
    st = make_station(broker=broker)
    _live(st)
    code, status, headers = http("GET", st.url + "/api/status")
    assert code == 200 and status["leader"]["name"] == "drone-1" and status["term"] == 2
    assert status["broker_connected"] is True and len(status["nodes"]) == 3
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    drones = wait_for(lambda: all(d["telemetry"] for d in http("GET", st.url + "/api/drones")[1])
                      and http("GET", st.url + "/api/drones")[1], 20, "telemetry")
    assert [d["name"] for d in drones] == ["drone-1", "drone-2", "drone-3"]
    assert drones[0]["leader"] and drones[0]["telemetry"]["battery_pct"] > 0
    code, doc, _ = http("GET", st.url + "/api/map")
    assert doc["type"] == "FeatureCollection" and doc["version"] == 0
    plans = wait_for(lambda: len(http("GET", st.url + "/api/plans")[1]) == 3
                     and http("GET", st.url + "/api/plans")[1], 20, "plans")
    assert plans[0]["sector"] and "items" not in plans[0]
    code, events, _ = http("GET", st.url + "/api/events?after=0")
    assert code == 200 and events["events"][0]["kind"] == "gcs"
    for bad in ("after=x", "after=-1", "limit=0", "limit=100000"):
        code, body, _ = http("GET", st.url + "/api/events?" + bad)
        assert code == 400 and body["code"] == "bad_request", bad
    code, body, _ = http("GET", st.url + "/api/nothing")
    assert code == 404 and body["status"] == "error"
    code, cfg, _ = http("GET", st.url + "/api/config")
    assert cfg == {"swarm": "t1", "operator": "gcs", "token_required": False, "tiles": None,
                   "brokers": [f"127.0.0.1:{broker.port}"]}


def test_exports(broker, swarm, make_station) -> None:
    st = make_station(broker=broker)
    _live(st)
    wait_for(lambda: len(http("GET", st.url + "/api/plans")[1]) == 3, 20, "plans")
    code, text, headers = http("GET", st.url + "/api/export/2.plan")
    assert code == 200 and "attachment" in headers["Content-Disposition"]
    plan_file = read_qgc_plan(json.dumps(text))
    assert len(plan_file.plan.mission) == 4 and plan_file.home.alt == 100.0
    code, text, _ = http("GET", st.url + "/api/export/2.waypoints")
    assert code == 200 and [repr(i) for i in read_wpl(text).plan.mission] == [
        repr(i) for i in plan_file.plan.mission]  # repr: param4 is NaN, which != itself
    code, body, _ = http("GET", st.url + "/api/export/9.plan")
    assert code == 404 and "no plan" in body["message"]
    code, doc, _ = http("GET", st.url + "/api/export/map.geojson")
    assert code == 200 and doc["type"] == "FeatureCollection"


def test_operator_action_commits_and_reaches_the_stream(broker, swarm, make_station) -> None:
    st = make_station(broker=broker)
    _live(st)
    stream = socket.create_connection(("127.0.0.1", int(st.url.rsplit(":", 1)[1])), timeout=10)
    stream.sendall(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    _read_until(stream, b"event: snapshot")
    code, reply, _ = http("POST", st.url + "/api/commands", ZONE)
    assert code == 200 and reply["status"] == "committed" and reply["index"] >= 1, reply
    seen = _read_until(stream, b'"op-1"')
    assert b"event: map" in seen
    stream.close()
    doc = http("GET", st.url + "/api/map")[1]
    zone = next(f for f in doc["features"] if f["properties"]["id"] == "op-1")
    assert zone["properties"]["source"] == "gcs"  # stamped by the station
    assert any(e["kind"] == "operator" and "committed" in e["text"]
               for e in http("GET", st.url + "/api/events")[1]["events"])
    # Another client's proposal appears too.
    swarm.propose({"type": "report_survivor", "id": "s-1", "position": [-121.62, 39.76],
                   "count": 3, "confidence": 0.5, "reporter": "drone-2", "time_ms": 1})
    wait_for(lambda: any(f["properties"]["id"] == "s-1"
                         for f in http("GET", st.url + "/api/map")[1]["features"]), 20, "s-1")


def _read_until(sock: socket.socket, marker: bytes, timeout: float = 20.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        assert time.monotonic() < deadline, f"no {marker!r} in the stream"
        chunk = sock.recv(65536)
        assert chunk, "stream closed"
        data += chunk
    return data


def test_recall_all_and_resume_are_committed_and_shown(broker, swarm, make_station) -> None:
    st = make_station(broker=broker)
    _live(st)
    assert http("GET", st.url + "/api/map")[1]["recall"] == {"all": False, "drones": []}
    code, reply, _ = http("POST", st.url + "/api/commands", {"type": "recall"})
    assert code == 200 and reply["status"] == "committed", reply
    assert swarm.map.recall.all  # in the swarm's map, not only on the page
    wait_for(lambda: http("GET", st.url + "/api/map")[1]["recall"]["all"], 20, "recall in the map")
    wait_for(lambda: all(d["recalled"] for d in http("GET", st.url + "/api/drones")[1]), 20,
             "every drone shown recalled")
    # After a recall of all, a drone cannot be resumed alone: the map refuses, nothing changes.
    code, body, _ = http("POST", st.url + "/api/commands", {"type": "resume", "drones": ["drone-2"]})
    assert code == 422 and "all drones are recalled" in body["message"], body
    assert swarm.map.recall.all
    code, reply, _ = http("POST", st.url + "/api/commands", {"type": "resume"})
    assert code == 200 and reply["status"] == "committed", reply
    wait_for(lambda: not http("GET", st.url + "/api/map")[1]["recall"]["all"], 20, "resumed")
    code, body, _ = http("POST", st.url + "/api/commands", {"type": "recall", "drones": []})
    assert code == 400 and body["code"] == "invalid" and "recall.drones" in body["message"]


@pytest.mark.parametrize("raw, ctype, code, error, needle", [
    (b"{nope", "application/json", 400, "bad_request", "not valid JSON"),
    (b"[]", "application/json", 400, "invalid", "expected a JSON object"),
    (json.dumps({"type": "set_zone"}).encode(), "application/json", 400, "invalid",
     "set_zone.id: missing"),
    (json.dumps({**ZONE, "polygon": [[200, 0], [1, 1], [0, 1]]}).encode(), "application/json",
     400, "invalid", "longitude 200"),
    (json.dumps({"type": "remove_drone", "id": "drone-1"}).encode(), "application/json", 400,
     "invalid", "not an operator action"),
    (json.dumps(ZONE).encode(), "text/plain", 415, "bad_request", "application/json"),
])
def test_malformed_actions_get_a_clear_error_and_change_nothing(
        broker, swarm, make_station, raw, ctype, code, error, needle) -> None:
    st = make_station(broker=broker)
    _live(st)
    before = http("GET", st.url + "/api/map")[1]
    index_before = swarm.index
    status, body, _ = http("POST", st.url + "/api/commands", raw=raw,
                           headers={"Content-Type": ctype})
    assert status == code and body["status"] == "error" and body["code"] == error
    assert needle in body["message"]
    assert swarm.index == index_before  # nothing reached the swarm
    assert http("GET", st.url + "/api/map")[1] == before


def test_map_refusal_is_shown_as_an_error(broker, swarm, make_station) -> None:
    st = make_station(broker=broker)
    _live(st)
    before = http("GET", st.url + "/api/map")[1]
    code, body, _ = http("POST", st.url + "/api/commands", {"type": "remove_zone", "id": "nope"})
    assert code == 422 and body["code"] == "invalid" and "no zone 'nope'" in body["message"]
    assert http("GET", st.url + "/api/map")[1] == before


def test_cross_origin_action_is_refused(broker, swarm, make_station) -> None:
    st = make_station(broker=broker)
    _live(st)
    code, body, _ = http("POST", st.url + "/api/commands", ZONE,
                         headers={"Origin": "http://evil.example"})
    assert code == 403 and body["code"] == "unauthorized"
    assert swarm.index == 0


def test_token_required_off_loopback_and_checked(broker, swarm, make_station, tmp_path) -> None:
    with pytest.raises(ConfigError, match="need a token"):
        GcsConfig(swarm="t1", host="0.0.0.0")
    token = "correct-horse-battery-staple"
    st = make_station(broker=broker, token=token)
    _live(st)
    assert http("GET", st.url + "/api/config")[1]["token_required"] is True
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                    {"Authorization": token}):
        code, body, _ = http("POST", st.url + "/api/commands", ZONE, headers=headers)
        assert code == 401 and body["code"] == "unauthorized", headers
    assert swarm.index == 0 and http("GET", st.url + "/api/map")[1]["version"] == 0
    code, body, _ = http("POST", st.url + "/api/commands", ZONE,
                         headers={"Authorization": f"Bearer {token}"})
    assert code == 200 and body["status"] == "committed"


def test_no_leader_is_an_error_not_a_success(broker, swarm, make_station) -> None:
    st = make_station(broker=broker)
    _live(st)
    st.station.operator.timeout_s = 3.0
    for n in swarm.nodes.values():
        n.alive = False
    code, body, _ = http("POST", st.url + "/api/commands", ZONE)
    assert code == 503 and body["code"] == "no_leader"


def test_without_broker_actions_fail_cleanly(make_station) -> None:
    st = make_station(connect=False)
    code, body, _ = http("POST", st.url + "/api/commands", ZONE)
    assert code == 503 and body["code"] == "unavailable"
    assert http("GET", st.url + "/api/map")[1] == {"type": "FeatureCollection", "features": [],
                                                   "version": None}
    assert any(a["kind"] == "broker" for a in http("GET", st.url + "/api/status")[1]["alerts"])


@pytest.mark.parametrize("raw, needle", [
    (b"[" * 100_000, "nested deeper than"),         # json.loads raised RecursionError: a 500
    (b'{"type": ["set_zone"]}', "not an operator action"),   # unhashable: TypeError, a 500
    (b'{"type": {}}', "not an operator action"),
    (b'{"type": "remove_zone", "id": "a", "id": "b"}', "duplicate key"),
    (b'{"type": "remove_zone", "id": NaN}', "NaN"),
    (b'{"type": "remove_zone", "id": ' + b"1" * 5000 + b"}", "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_hostile_action_bodies_are_a_400_never_a_500(make_station, raw, needle) -> None:
    """No broker needed: each is refused before anything would be proposed."""
    st = make_station(connect=False)
    status, body, _ = http("POST", st.url + "/api/commands", raw=raw)
    assert status == 400 and body["status"] == "error", (status, body)
    assert needle in body["message"], body
    assert http("GET", st.url + "/api/status")[0] == 200   # still serving


def test_a_token_header_that_is_not_utf8_is_a_401_not_a_500(make_station) -> None:
    st = make_station(connect=False, token="0123456789abcdef0123")
    # urllib sends a header's characters as Latin-1 bytes: 0xff 0xfe, not UTF-8.
    status, body, _ = http("POST", st.url + "/api/commands", ZONE,
                           headers={"Authorization": "Bearer \xff\xfe"})
    assert status == 401 and body["code"] == "unauthorized", (status, body)


def test_an_export_of_a_node_id_of_thousands_of_digits_is_a_404(make_station) -> None:
    st = make_station(connect=False)
    for node in ("9" * 5000, "\u0661"):   # int() refuses 4300+ digits; an Arabic-Indic 1
        status, body, _ = http("GET", st.url + "/api/export/" + urllib.parse.quote(node)
                               + ".plan")
        assert status == 404 and body["status"] == "error", (node[:10], status, body)


def test_an_export_file_name_is_safe_whatever_the_drone_is_called(make_station) -> None:
    st = make_station(connect=False)
    status = {"v": 1, "node": 4, "name": 'a"b\\c é', "online": True, "role": "follower",
              "term": 1, "commit": 1, "applied": 1, "map_version": 3}
    plan = {"v": 1, "node": 4, "map_version": 3, "status": "ok",
            "mission": [[39.76, -121.62, 30.0, 16]], "home": [39.76, -121.62, 100.0]}
    st.ingest("swarm/t1/status/4", status)
    st.ingest("swarm/t1/plan/4", plan)
    for fmt in ("plan", "waypoints"):
        code, _, headers = http("GET", st.url + f"/api/export/4.{fmt}")
        assert code == 200
        assert headers["Content-Disposition"] == \
            f'attachment; filename="a_b_c__-map-v3.{fmt}"', headers


def test_config_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123\n")
    os.chmod(token, 0o600)
    cfg = tmp_path / "gcs.toml"
    cfg.write_text('[swarm]\nid = "fire-1"\nkey_file = "swarm.key"\n'
                   '[bus]\nbrokers = ["mqtt://127.0.0.1:1884", "mqtt://10.0.0.2"]\n'
                   '[node]\nid = 3\n'  # an agent's section: ignored
                   '[gcs]\nhost = "0.0.0.0"\nport = 9000\ntoken_file = "token"\n')
    loaded = load_config(cfg)
    assert loaded.brokers == (BrokerAddress("127.0.0.1", 1884), BrokerAddress("10.0.0.2", 1883))
    assert loaded.host == "0.0.0.0" and loaded.port == 9000 and loaded.token_required
    assert load_config(cfg, port=9001, swarm="other").port == 9001
    for text, needle in [('[swarm]\nid = "a"\n[gcs]\nprot = 1\n', "gcs.prot: unknown setting"),
                         ('[swarm]\nid = "Bad_Id"\n', "swarm:"),
                         ('[swarm]\nid = "a"\n[gcs]\nhost = "10.1.1.1"\n', "need a token"),
                         ('[swarm]\nid = "a"\n[bus]\nbrokers = ["h:99999"]\n', "not in"),
                         ('[swarm]\nid = "a"\n[bus]\nbrokers = ["mqtts://h"]\n', "TLS"),
                         ("[swarm\n", "not valid TOML"), ("", "swarm.id: missing")]:
        cfg.write_text(text)
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
            load_config(cfg)
    os.chmod(token, 0o644)
    cfg.write_text('[swarm]\nid = "a"\n[gcs]\ntoken_file = "token"\n')
    with pytest.raises(ConfigError, match="accessible by group or others"):
        load_config(cfg)
