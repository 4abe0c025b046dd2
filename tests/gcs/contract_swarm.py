"""A stand-in swarm that speaks docs/protocol.md, for ground-station tests until real
agents exist: NOT Raft, NOT the agent. One process-local "leader" applies commands to a
real EvacuationMap and publishes status, map, plan, telemetry and events on a real
broker, and answers client requests (register / propose) like an agent would.

It exists so the ground station is tested against the wire contract, not against
itself; the browser test uses real agents when ``swarm agent`` exists.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from swarm.evacmap import EvacuationMap, map_to_geojson, parse_command, encode_command, decode_result

BASE_LAT, BASE_LON = 39.7600, -121.6200


@dataclass
class FakeNode:
    node: int
    name: str
    alive: bool = True
    lat: float = BASE_LAT
    lon: float = BASE_LON
    heading: float = 0.0


class ContractSwarm:
    """``n`` fake nodes on one broker; node 1 leads until ``kill_leader``."""

    def __init__(self, swarm: str, host: str, port: int, n: int = 3, telemetry_hz: float = 10.0,
                 plans: bool = True) -> None:
        self.swarm = swarm
        self.root = f"swarm/{swarm}/"
        self.nodes = {i: FakeNode(i, f"drone-{i}", lat=BASE_LAT + 0.001 * i,
                                  lon=BASE_LON + 0.0015 * i) for i in range(1, n + 1)}
        self.term = 2
        self.leader = 1
        self.map = EvacuationMap()
        self.index = 0
        self.sessions: dict[int, dict[int, dict[str, Any]]] = {}
        self.telemetry_hz = telemetry_hz
        self.with_plans = plans
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"contract-{swarm}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # ---------------------------------------------------------------- publishing

    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        client.subscribe(self.root + "request/+", qos=1)
        self.publish_all()

    def publish_all(self) -> None:
        with self.lock:
            for n in self.nodes.values():
                self._status(n)
                if self.with_plans:
                    self._plan(n)
            self._map()

    def _status(self, n: FakeNode) -> None:
        if not n.alive:
            self.client.publish(self.root + f"status/{n.node}",
                                json.dumps({"v": 1, "node": n.node, "online": False}), 1, True)
            return
        leader = n.node == self.leader
        doc = {"v": 1, "node": n.node, "name": n.name, "online": True,
               "t": int(time.time() * 1000), "role": "leader" if leader else "follower",
               "term": self.term, "leader": self.leader, "commit": self.index,
               "applied": self.index, "last_index": self.index,
               "map_version": self.map.version, "elections_started": 1, "leader_changes": 1,
               "link_score": 0.9 - 0.1 * n.node,
               "fc": {"connected": True, "map_version_held": self.map.version, "mode": "AUTO",
                      "armed": True}}
        if leader:
            doc["peers"] = {str(o.node): {"match": self.index, "lag": 0, "last_contact_ms": 40}
                            for o in self.nodes.values() if o.node != n.node and o.alive}
        self.client.publish(self.root + f"status/{n.node}", json.dumps(doc), 1, True)

    def _plan(self, n: FakeNode) -> None:
        lat, lon = n.lat, n.lon
        mission = [[lat + 0.001 * k, lon + 0.0005 * k, 30.0, 16] for k in range(4)]
        # Exclusion fences around the hazards, as the planner makes them.
        fences = [[[lat_, lon_] for lon_, lat_ in z.ring[:-1]]
                  for z in self.map.zones.values() if z.is_hazard]
        items = {"mission": [[16, 6, 0, 0, 0, None, round(m[0] * 1e7), round(m[1] * 1e7), 30.0, 1]
                             for m in mission], "fence": [], "rally": []}
        doc = {"v": 1, "node": n.node, "name": n.name, "map_version": self.map.version,
               "status": "ok", "reasons": [], "mission": mission, "fences": fences, "rally": [],
               "fc_map_version": self.map.version, "home": [BASE_LAT, BASE_LON, 100.0],
               "items": items,
               "sector": [[lat, lon], [lat + 0.002, lon], [lat + 0.002, lon + 0.001],
                          [lat, lon + 0.001], [lat, lon]]}
        self.client.publish(self.root + f"plan/{n.node}", json.dumps(doc), 1, True)

    def _map(self) -> None:
        doc = map_to_geojson(self.map)
        doc.update(v=1, version=self.map.version, term=self.term, node=self.leader)
        self.client.publish(self.root + "map", json.dumps(doc), 1, True)

    def event(self, kind: str, text: str, node: int | None = None, **extra: Any) -> None:
        doc = {"v": 1, "t": int(time.time() * 1000), "node": node or self.leader, "kind": kind,
               "text": text, **extra}
        self.client.publish(self.root + "events", json.dumps(doc), 1)

    def _run(self) -> None:
        period = 1.0 / self.telemetry_hz
        last_status = 0.0
        k = 0
        while not self.stop_event.wait(period):
            k += 1
            with self.lock:
                for n in self.nodes.values():
                    if not n.alive:
                        continue
                    n.heading = (n.heading + 3) % 360
                    n.lat += 0.00001 * math.cos(math.radians(n.heading))
                    n.lon += 0.00001 * math.sin(math.radians(n.heading))
                    doc = {"v": 1, "node": n.node, "name": n.name, "t": int(time.time() * 1000),
                           "lat": n.lat, "lon": n.lon, "alt_rel_m": 30.0, "alt_msl_m": 130.0,
                           "heading_deg": n.heading, "groundspeed_ms": 5.0,
                           "battery_pct": 90.0 - n.node - k * 0.001, "mode": "AUTO",
                           "armed": True, "link_score": 0.9 - 0.1 * n.node, "mission_seq": 1,
                           "fc_connected": True}
                    self.client.publish(self.root + f"telemetry/{n.node}", json.dumps(doc), 0)
                if time.monotonic() - last_status > 1.0:
                    last_status = time.monotonic()
                    for n in self.nodes.values():
                        if n.alive:
                            self._status(n)

    # ---------------------------------------------------------------- requests

    def _on_message(self, client, userdata, message) -> None:
        try:
            req = json.loads(message.payload)
        except ValueError:
            return
        reply_to = None
        corr = None
        props = getattr(message, "properties", None)
        if props is not None and getattr(props, "ResponseTopic", None):
            reply_to = props.ResponseTopic
            corr = getattr(props, "CorrelationData", None)
        reply_to = reply_to or req.get("reply_to")
        if not reply_to:
            return
        reply = self.handle(req)
        out = Properties(PacketTypes.PUBLISH)
        if corr is not None:
            out.CorrelationData = corr
        client.publish(reply_to, json.dumps(reply), 1, properties=out)

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        rid = req.get("id")
        with self.lock:
            if not self.nodes[self.leader].alive:
                return {"v": 1, "id": rid, "status": "error", "code": "no_leader",
                        "message": "no leader"}
            if req.get("op") == "register":
                session = len(self.sessions) + 1
                self.sessions[session] = {}
                return {"v": 1, "id": rid, "status": "registered", "session": session}
            if req.get("op") != "propose":
                return {"v": 1, "id": rid, "status": "error", "code": "bad_request",
                        "message": f"op {req.get('op')!r}"}
            session_id = req.get("session")
            cache = self.sessions.get(session_id) if type(session_id) is int else None
            if cache is None:
                return {"v": 1, "id": rid, "status": "error", "code": "session_expired",
                        "message": "unknown session"}
            if req.get("seq") in cache:
                return {**cache[req["seq"]], "id": rid}
            command = req.get("command")
            try:
                if command is None:
                    raise ValueError("command: missing")
                cmd = parse_command(command)
            except ValueError as exc:
                return {"v": 1, "id": rid, "status": "error", "code": "invalid", "message": str(exc)}
            self.index += 1
            result = decode_result(self.map.apply(self.index, encode_command(cmd)))
            reply = {"v": 1, "id": rid, "status": "committed", "index": self.index,
                     "map_version": self.map.version,
                     "result": {"ok": result.ok, "version": result.version, "error": result.error}}
            cache[req["seq"]] = reply
            if result.ok:
                self._map()
                self.event("commit", f"committed {type(cmd).__name__} at {self.index}",
                           index=self.index, command=type(cmd).__name__)
            else:
                self.event("rejected", f"{result.error}", code="invalid", message=result.error)
            for n in self.nodes.values():
                if n.alive:
                    self._status(n)
            return reply

    def propose(self, command: dict[str, Any]) -> dict[str, Any]:
        """Another client's proposal (what a drone reporting a fire would do)."""
        sess = 10_000
        self.sessions.setdefault(sess, {})
        seq = len(self.sessions[sess]) + 1
        return self.handle({"op": "propose", "id": f"x{seq}", "session": sess, "seq": seq,
                            "command": command})

    def kill_leader(self) -> int:
        with self.lock:
            old = self.leader
            self.nodes[old].alive = False
            self._status(self.nodes[old])
            self.term += 1
            self.leader = next(n for n in sorted(self.nodes) if self.nodes[n].alive)
            for n in self.nodes.values():
                if n.alive:
                    self._status(n)
        self.event("leader", f"drone-{self.leader} became leader in term {self.term}",
                   node=self.leader, term=self.term)
        return self.leader

    def close(self, clear: bool = True) -> None:
        self.stop_event.set()
        self.thread.join(timeout=2)
        if clear and self.client.is_connected():
            for n in self.nodes:
                self.client.publish(self.root + f"status/{n}", b"", 1, True)
                self.client.publish(self.root + f"plan/{n}", b"", 1, True)
            self.client.publish(self.root + "map", b"", 1, True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()
