"""The ground station's web server: the page, its assets, a JSON API and a live stream.

Routes (all served by this process; the page references nothing else):

=================================  ==================================================
``GET /``                          the page
``GET /static/...``                its script, style and icons (swarm/gcs/static/)
``GET /leaflet/...``               Leaflet, from the XStatic-Leaflet package
``GET /tiles/{z}/{x}/{y}``         offline tiles, when configured (else 404)
``GET /api/config``                swarm id, whether actions need a token, tiles
``GET /api/map``                   the committed map (GeoJSON + version)
``GET /api/status``                the health panel: leader, term, commit, nodes, alerts
``GET /api/drones``                each drone: role, telemetry, staleness, FC map version
``GET /api/plans``                 each drone's plan (path, fences, sector)
``GET /api/events?after=N``        the event log (newest last)
``GET /api/stream``                server-sent events: ``snapshot`` then ``map``,
                                   ``drones``, ``plans``, ``health``, ``events``
``POST /api/commands``             an operator action: one map command (docs/map.md)
``GET /api/export/map.geojson``    the committed map as a file
``GET /api/export/{node}.plan``    a drone's plan for QGroundControl
``GET /api/export/{node}.waypoints``  the same for Mission Planner (QGC WPL 110)
=================================  ==================================================

Live updates: each MQTT message changes some sections of the picture
(:meth:`SwarmState.ingest`); every open stream is woken and sends the changed
sections. Map changes, events and health go out at once; drone positions (10 drones at
10 Hz is 100 messages a second) are coalesced to at most one frame per 200 ms per
browser, so a commit reaches the page well within 500 ms.

Security: bound to loopback by default. Bound to any other address the configuration
must give an operator token, and every action must carry ``Authorization: Bearer
<token>`` (compared in constant time). Reads stay open: rescuers on the field network
may watch. Actions also require ``Content-Type: application/json`` and, when the
browser sends one, an ``Origin`` equal to this server's, so another web page open in
the operator's browser cannot post to the station (a cross-site JSON post needs a CORS
preflight this server never grants). A Content-Security-Policy of ``'self'`` stops the
page from loading anything from elsewhere even if a bug tried.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
import xstatic.pkg.leaflet as xstatic_leaflet

from mavlink_bridge.plan import (
    CMD_NAV_RALLY_POINT,
    FRAME_GLOBAL_RELATIVE_ALT_INT,
    MissionItem,
    MissionPlan,
    fence_polygon,
)
from swarm.client import SwarmClient
from swarm.evacmap import MAX_COMMAND_BYTES, CommandError
from swarm.evacmap.commands import load_json
from swarm.planner import GeoPoint, write_qgc_plan, write_wpl

from .config import GcsConfig, is_loopback
from .link import MqttLink
from .operator import OperatorClient, Outcome, build_command
from .state import SwarmState
from .tiles import TileSource, open_tiles

__all__ = ["GroundStation", "serve"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
DRONE_FRAME_INTERVAL_S = 0.2
HEALTH_INTERVAL_S = 1.0
_SECTIONS = ("map", "drones", "plans", "health", "events")
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'none'")


class _Stream:
    """One browser's server-sent-events connection and what it has not been sent yet."""

    __slots__ = ("dirty", "wake", "last_event")

    def __init__(self, last_event: int) -> None:
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()
        self.last_event = last_event


class GroundStation:
    """The server: state from MQTT, the web app, operator actions. Runs on one loop."""

    def __init__(self, config: GcsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.state = SwarmState(config.swarm)
        self.streams: set[_Stream] = set()
        self.link: MqttLink | None = None
        self.tiles: TileSource | None = open_tiles(config.tiles) if config.tiles else None
        self.operator: OperatorClient | None = None
        self.url: str | None = None
        self._runner: web.AppRunner | None = None

    # ---------------------------------------------------------------- MQTT side

    def ingest(self, topic: str, payload: bytes) -> None:
        changed = self.state.ingest(topic, payload, self.clock())
        if changed:
            self._notify(changed)

    def connection_changed(self, connected: bool) -> None:
        if connected == self.state.broker_connected:
            return
        self.state.broker_connected = connected
        text = "connected to the broker" if connected else "lost the broker; reconnecting"
        self.state.add_event({"t": int(time.time() * 1000), "node": None, "kind": "gcs",
                              "text": f"ground station {text}"})
        self._notify(frozenset({"health", "events"}))

    def _notify(self, changed: frozenset[str]) -> None:
        for stream in self.streams:
            # Telemetry arrives at up to 100 messages a second: a stream already owing a
            # drone frame is not woken again for more drone changes (it sends one frame
            # when the frame interval is up), only for map, plans, health or events.
            if changed - {"drones"} or "drones" not in stream.dirty:
                stream.wake.set()
            stream.dirty |= changed

    # ---------------------------------------------------------------- life cycle

    async def start(self, *, connect: bool = True) -> str:
        """Serve; connect to the broker unless ``connect`` is False (tests feed ingest)."""
        if connect:
            cfg = self.config
            self.link = MqttLink(cfg.swarm, cfg.bus_config, asyncio.get_running_loop(),
                                 self.ingest, self.connection_changed)
            self.link.start()
            operator_id = f"{self.link.client_id}-operator"
            self.operator = OperatorClient(SwarmClient(
                swarm=cfg.swarm, client_id=operator_id, bus_config=cfg.bus_config(operator_id)))
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port,
                           ssl_context=self.config.ssl_context())
        await site.start()
        host, port = self._runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if self.config.https else 'http'}://{shown}:{port}/"
        return self.url

    async def stop(self) -> None:
        """Shut down in order: end every live stream (each browser sees its stream end
        and starts reconnecting), stop serving, then leave the broker with a clean
        DISCONNECT. Blocking MQTT calls run off the event loop."""
        loop = asyncio.get_running_loop()
        for stream in list(self.streams):
            stream.dirty.add("close")
            stream.wake.set()
        if self._runner is not None:
            await self._runner.cleanup()  # waits (bounded) for the streams to end
        if self.operator is not None:
            await loop.run_in_executor(None, self.operator.close)
        if self.link is not None:
            await loop.run_in_executor(None, self.link.stop)
            log.info("disconnected from the broker")
        if self.tiles is not None:
            self.tiles.close()

    # ---------------------------------------------------------------- web app

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers],
                              client_max_size=2 * MAX_COMMAND_BYTES)
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
        app.router.add_static("/leaflet/", xstatic_leaflet.BASE_DIR, follow_symlinks=False)
        app.router.add_get("/tiles/{z}/{x}/{y}", self._tile)
        app.router.add_get("/api/config", self._config)
        app.router.add_get("/api/map", self._map)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/api/drones", self._drones)
        app.router.add_get("/api/plans", self._plans)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_post("/api/commands", self._command)
        app.router.add_get("/api/export/map.geojson", self._export_map)
        # ASCII digits, at most a node id's 10: \d also matches other scripts' digits,
        # and int() refuses more than 4300 digits with a ValueError (a 500).
        app.router.add_get(r"/api/export/{node:[0-9]{1,10}}.{fmt:plan|waypoints}",
                           self._export_plan)
        return app

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if request.path.startswith("/api/"):
                response = _error(exc.status, "not_found" if exc.status == 404 else "http",
                                  exc.reason)
            else:
                raise
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def _tile(self, request: web.Request) -> web.Response:
        if self.tiles is None:
            raise web.HTTPNotFound(reason="no offline tiles configured")
        try:
            z, x, y = (int(request.match_info[k].split(".")[0]) for k in ("z", "x", "y"))
        except ValueError:
            raise web.HTTPNotFound(reason="tile coordinates are integers") from None
        found = await asyncio.get_running_loop().run_in_executor(None, self.tiles.tile, z, x, y)
        if found is None:
            raise web.HTTPNotFound(reason="no such tile")
        data, kind = found
        return web.Response(body=data, content_type=kind,
                            headers={"Cache-Control": "max-age=86400"})

    async def _config(self, request: web.Request) -> web.Response:
        cfg = self.config
        return web.json_response({
            "swarm": cfg.swarm,
            "operator": cfg.operator,
            "token_required": cfg.token_required,
            "tiles": None if self.tiles is None else {
                "url": "/tiles/{z}/{x}/{y}", "max_zoom": cfg.tiles_max_zoom,
                "source": self.tiles.description},
            "brokers": [str(b) for b in cfg.brokers],
        })

    async def _map(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.map_doc())

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.health(self.clock()))

    async def _drones(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.drones(self.clock()))

    async def _plans(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.plans())

    async def _events(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
            limit = int(request.query.get("limit", "200"))
        except ValueError:
            return _error(400, "bad_request", "after and limit must be integers")
        if after < 0 or not 1 <= limit <= self.state.limits.max_events:
            return _error(400, "bad_request", f"after must be >= 0 and limit in "
                          f"1..{self.state.limits.max_events}")
        events = [e for e in self.state.events if e["seq"] > after][-limit:]
        return web.json_response({"events": events, "last": self.state.event_seq})

    def _section(self, name: str) -> Any:
        now = self.clock()
        if name == "map":
            return self.state.map_doc()
        if name == "drones":
            return self.state.drones(now)
        if name == "plans":
            return self.state.plans()
        if name == "health":
            return self.state.health(now)
        raise KeyError(name)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        stream = _Stream(self.state.event_seq)
        self.streams.add(stream)
        try:
            snapshot = {name: self._section(name) for name in ("map", "drones", "plans", "health")}
            snapshot["events"] = list(self.state.events)
            await _send(response, "snapshot", snapshot)
            last_drones = last_health = self.clock()
            while True:
                now = self.clock()
                # Sleep until something changes, or until the next drone frame may go
                # (drones are dirty but were sent less than a frame ago), or health is due.
                timeout = last_health + HEALTH_INTERVAL_S - now
                if "drones" in stream.dirty:
                    timeout = min(timeout, last_drones + DRONE_FRAME_INTERVAL_S - now)
                if timeout > 0 and not (stream.dirty - {"drones"}):
                    try:
                        await asyncio.wait_for(stream.wake.wait(), timeout)
                    except asyncio.TimeoutError:
                        pass
                stream.wake.clear()
                if "close" in stream.dirty:
                    break
                now = self.clock()
                due = stream.dirty - {"drones"}
                if "drones" in stream.dirty and now - last_drones >= DRONE_FRAME_INTERVAL_S:
                    due.add("drones")
                if now - last_health >= HEALTH_INTERVAL_S:
                    due |= {"health", "drones"}  # staleness moves on with time
                stream.dirty -= due
                # Map, plans and events first: a commit never waits behind a drone frame.
                for name in ("map", "plans", "health", "drones"):
                    if name in due:
                        await _send(response, name, self._section(name))
                if "drones" in due:
                    last_drones = now
                if "health" in due:
                    last_health = now
                if "events" in due:
                    fresh = [e for e in self.state.events if e["seq"] > stream.last_event]
                    if fresh:
                        await _send(response, "events", fresh)
                    stream.last_event = self.state.event_seq
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.streams.discard(stream)
        return response

    # ---------------------------------------------------------------- actions

    def _authorise(self, request: web.Request) -> web.Response | None:
        if request.content_type != "application/json":
            return _error(415, "bad_request", "actions must be sent as application/json")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return _error(403, "unauthorized",
                          f"origin {origin} may not act on this ground station")
        token = self.config.token
        if token is not None:
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            # surrogateescape: a header's bytes that are not UTF-8 arrive as lone
            # surrogates, which a plain encode() refused with a 500.
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    value.strip().encode("utf-8", "surrogateescape"), token.encode()):
                return _error(401, "unauthorized",
                              "missing or wrong operator token (Authorization: Bearer ...)")
        return None

    async def _command(self, request: web.Request) -> web.Response:
        refused = self._authorise(request)
        if refused is not None:
            self._log_rejected(refused)
            return refused
        try:
            # The map's own strict decoding (swarm.evacmap.load_json): UTF-8, no
            # duplicate keys, no NaN, bounded nesting and digits. json.loads let a
            # deeply nested body raise RecursionError here, a 500.
            body = load_json(await request.read(), 2 * MAX_COMMAND_BYTES, "body")
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "bad_request", f"a command is at most {MAX_COMMAND_BYTES} bytes")
        except CommandError as exc:
            return _error(400, "bad_request", str(exc))
        try:
            command = build_command(body, self.config.operator, int(time.time() * 1000))
        except CommandError as exc:
            response = _error(400, "invalid", str(exc))
            self._log_rejected(response)
            return response
        if self.operator is None or self.link is None or not self.link.connected:
            outcome = Outcome("error", "unavailable",
                              "the ground station is not connected to the broker")
        else:
            outcome = await self.operator.propose(command)
        event: dict[str, Any] = {"t": int(time.time() * 1000), "node": outcome.node,
                                 "kind": "operator", "command": type(command).__name__}
        if outcome.status == "committed":
            event["text"] = (f"operator {type(command).__name__} committed at index "
                             f"{outcome.index} (map v{outcome.map_version})")
        else:
            event["text"] = f"operator {type(command).__name__} refused: {outcome.code}: " \
                            f"{outcome.message}"
        self.state.add_event(event)
        self._notify(frozenset({"events"}))
        return web.json_response(outcome.to_json(), status=outcome.http_status)

    def _log_rejected(self, response: web.Response) -> None:
        text = response.text or ""
        try:
            message = json.loads(text).get("message", text)
        except ValueError:
            message = text
        self.state.add_event({"t": int(time.time() * 1000), "node": None, "kind": "operator",
                              "text": f"operator action refused by the ground station: {message}"})
        self._notify(frozenset({"events"}))

    # ---------------------------------------------------------------- exports

    async def _export_map(self, request: web.Request) -> web.Response:
        if self.state.map is None:
            return _error(404, "not_found", "no committed map received yet")
        doc = self.state.map_doc()
        return web.Response(
            text=json.dumps(doc, indent=1), content_type="application/geo+json",
            headers={"Content-Disposition":
                     f'attachment; filename="{self.config.swarm}-map-v{self.state.map["version"]}.geojson"'})

    async def _export_plan(self, request: web.Request) -> web.Response:
        node = int(request.match_info["node"])
        fmt = request.match_info["fmt"]
        record = self.state.nodes.get(node)
        if record is None or record.plan is None:
            return _error(404, "not_found", f"no plan received from node {node}")
        plan = record.plan
        if plan["home"] is None:
            return _error(409, "no_home", f"node {node}'s plan carries no home position, "
                          "which both file formats need")
        try:
            mission_plan = plan_from_payload(plan)
            home = GeoPoint(*plan["home"])
            text = write_qgc_plan(mission_plan, home) if fmt == "plan" else write_wpl(
                mission_plan, home)
        except (ValueError, TypeError) as exc:
            return _error(422, "invalid", f"node {node}'s plan cannot be exported: {exc}")
        # The drone's name is outside input (printable, but '"' would end the quoted
        # file name and non-ASCII has no agreed header encoding): a safe file name.
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", record.name)
        name = f"{safe}-map-v{plan['map_version']}.{fmt}"
        return web.Response(text=text, content_type="application/json" if fmt == "plan"
                            else "text/plain",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})


def plan_from_payload(plan: dict[str, Any]) -> MissionPlan:
    """A :class:`MissionPlan` from a validated plan payload (docs/protocol.md).

    Uses the full MISSION_ITEM_INT rows when the agent sent them (``items``), so the
    file is exactly what the drone flies; otherwise rebuilds the mission from the
    summary ``mission`` ([lat, lon, alt, command], relative altitude) and the fences as
    exclusion polygons.
    """
    items = plan.get("items")
    if items is not None:
        def rows(kind: str) -> tuple[MissionItem, ...]:
            return tuple(MissionItem(
                command=int(r[0]), frame=int(r[1]),
                param1=math.nan if r[2] is None else float(r[2]),
                param2=math.nan if r[3] is None else float(r[3]),
                param3=math.nan if r[4] is None else float(r[4]),
                param4=math.nan if r[5] is None else float(r[5]),
                x=int(r[6]), y=int(r[7]), z=float(r[8]), autocontinue=int(r[9]))
                for r in items[kind])
        return MissionPlan(mission=rows("mission"), fence=rows("fence"), rally=rows("rally"))
    raw = plan.get("mission") or []
    mission = tuple(MissionItem.at(int(cmd), lat, lon, float(alt),
                                   frame=FRAME_GLOBAL_RELATIVE_ALT_INT)
                    for lat, lon, alt, cmd in raw)
    fence: tuple[MissionItem, ...] = ()
    for ring in plan.get("fences") or []:
        fence += fence_polygon([(lat, lon) for lat, lon in ring])
    rally = tuple(MissionItem.at(CMD_NAV_RALLY_POINT, p[0], p[1], p[2])
                  for p in plan.get("rally") or [])
    return MissionPlan(mission=mission, fence=fence, rally=rally)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"status": "error", "code": code, "message": message},
                             status=status)


async def _send(response: web.StreamResponse, event: str, data: Any) -> None:
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    await response.write(f"event: {event}\ndata: {payload}\n\n".encode())


async def serve(config: GcsConfig, announce: Callable[[str], None] = print) -> None:
    """Run until SIGTERM or SIGINT (Ctrl-C), or until cancelled; then shut down
    gracefully (:meth:`GroundStation.stop`) and return."""
    station = GroundStation(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):  # before starting: a signal during start counts
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests run the station in a thread): cancel instead
    try:
        url = await station.start()
        announce(f"ground station for swarm {config.swarm!r}: open {url}"
                 + ("" if config.token is None else " (operator actions need the token)"))
        if not is_loopback(config.host) and not config.https:
            log.warning("serving plain HTTP on %s: the operator token and the map cross the "
                        "network in clear; give https_cert/https_key (docs/gcs.md)", config.host)
        await stop.wait()
        log.info("signal received: shutting down")
    finally:  # also after a failed start (port taken): nothing left running
        for sig in handled:
            loop.remove_signal_handler(sig)
        await station.stop()
    announce("ground station stopped")
