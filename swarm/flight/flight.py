"""One drone's flight side: its applied map, turned into what its flight controller holds.

Runs inside the agent when the config has a ``[mavlink]`` section (docs/flight.md):

* the **monitor thread** (every ``loop_s``) reads the bridge's vehicle state, publishes
  ``telemetry/<node>`` at most ``telemetry_hz`` times a second, notices the flight
  controller link going and coming back (event ``fc_link``; a returning link re-applies
  the last agreed plan), and feeds :class:`~swarm.flight.health.HealthMonitor`, whose rare
  transitions (unavailable, battery critical, back in service) are committed to the
  map through the agent's own session (:class:`~swarm.flight.commits.OwnCommits`);
* the **plan worker** (:class:`~swarm.flight.worker.LatestWins`) takes the newest applied
  map view from the node thread, enforces ``recall``/``resume`` (RTL / back to AUTO),
  re-plans this drone from where the aircraft is now, refuses a plan that crosses a
  burning or burned zone, hands it to :class:`mavlink_bridge.PlanApplier` (uploads what
  changed, read back; continues in flight from the intended waypoint) and publishes
  ``plan/<node>`` (retained) with ``fc_map_version``. A flight controller that is not
  ready (just booted: MISSION_ACK NO_SPACE) is retried with backoff.

A drone is planned **once per map version**: once its FC holds that version's plan, a
re-run of the same version (a launch waiting, a leader change, the link back) re-applies it,
which the applier finds already on the vehicle (after a reconnect it reads each list
back first). Re-planning from where the aircraft is now would give a different
mission each time (its first leg starts here) and send the copter somewhere new
without anything agreed having changed. Only when the autopilot rebooted (it may
have lost what it held), or the FC no longer holds the version's mission (changed on
the vehicle while the link was down: read back after it returns), is the version
planned again: put back as planned, its first leg would start where the aircraft was.

Nothing here runs on the node thread except :meth:`Flight.map_applied` (a non-blocking
hand-off) and :meth:`Flight.status` (reads a few fields), so no plan, upload or MAVLink
wait ever delays a Raft heartbeat. Without a quorum no map version is applied, so no new
plan is made: the aircraft keeps flying the last agreed one and nothing is invented.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import shapely

from mavlink_bridge import CopterMode, LinkConfig, MavlinkLink, MissionType, PlanApplier, \
    Vehicle, VehicleNotReady
from mavlink_bridge.mission_protocol import MissionError
from mavlink_bridge.telemetry import DEFAULT_POSITION_HZ
from mavlink_bridge.telemetry import VehicleState as FcState
from mavlink_bridge.vehicle import CommandError, CommandTimeoutError, ParamError
from swarm.bus import topics
from swarm.evacmap import DroneTask, MapView, SetDroneTask
from swarm.geo import LocalFrame
from swarm.planner import GeoPoint, PlannerConfig, PlanResult, PlanStatus, VehicleState, \
    hold_instead, plan_for_drone

from .commits import OwnCommits
from .health import Availability, HealthMonitor, HealthPolicy
from .plan_doc import fence_polygons, plan_document
from .safety import hazards_crossed, hazards_near_line
from .worker import LatestWins

__all__ = ["Flight", "FlightConfig"]

log = logging.getLogger("swarm.flight")


@dataclass(frozen=True, slots=True)
class FlightConfig:
    """``connection``/``baud``/``sysid`` come from the agent's ``[mavlink]`` section."""

    connection: str
    baud: int | None = None
    sysid: int = 1
    telemetry_hz: float = 5.0
    loop_s: float = 0.1
    #: The flight controller counts as connected while its HEARTBEAT is this fresh.
    heartbeat_timeout_s: float = 3.0
    retry_min_s: float = 0.2
    retry_max_s: float = 5.0
    #: An own map change still not visible in the applied map after this long is
    #: submitted again (the session itself retries lost proposals; this covers a
    #: change overwritten by someone else's set_drone_task).
    resubmit_after_s: float = 10.0
    #: A ``launch`` is obeyed only within this many seconds of the operator's
    #: ``time_ms`` (by this drone's clock), so a drone that comes up, rejoins or
    #: restarts later never takes off by surprise (docs/flight.md, "Launch").
    launch_window_s: float = 60.0
    health: HealthPolicy = field(default_factory=HealthPolicy)
    planner: PlannerConfig = field(default_factory=PlannerConfig)

    def __post_init__(self) -> None:
        for name in ("telemetry_hz", "loop_s", "heartbeat_timeout_s", "retry_min_s",
                     "retry_max_s", "resubmit_after_s", "launch_window_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must be >= retry_min_s")


Publish = Callable[[str, bytes, int, bool], Any]
Event = Callable[[str, str], None]


class Flight:
    """See the module docstring. ``publish(topic, payload, qos, retain)`` is the agent's
    bus; ``event(kind, text)`` its events topic; ``commits`` its own session."""

    def __init__(self, config: FlightConfig, *, swarm: str, node_id: int, name: str,
                 publish: Publish, event: Event, commits: OwnCommits,
                 status_changed: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self.swarm = swarm
        self.node_id = node_id
        self.name = name
        self._publish = publish
        self._event = event
        self.commits = commits
        # Tells the agent that status()'s answer changed (FC holds a new version, link,
        # mode, armed, launch), so status/<node> goes out at once, not at the 2 s period.
        self._status_changed = status_changed
        self._status_seen: tuple[Any, ...] = ()
        self.link = MavlinkLink(LinkConfig(config.connection, config.baud,
                                           target_system=config.sysid))
        self.vehicle = Vehicle(self.link, config.sysid)
        self.applier = PlanApplier(self.vehicle)
        self.health = HealthMonitor(config.health)
        self._lock = threading.Lock()
        self._view: MapView | None = None
        self._held_version: int | None = None  # map version whose plan the FC holds
        self._last_doc: dict[str, Any] | None = None
        #: The plan made for (map version, autopilot reboots), reused while that key
        #: holds (see the module docstring).
        self._planned: tuple[tuple[int, int], PlanResult, VehicleState] | None = None
        self._recall_enforced = False
        self._handed_at = (-1, 0.0)  # (map version, when the node thread handed it over)
        # Recalled where RTL's straight line home crosses fire: the recall plan (the
        # planner's way home) is flown in AUTO once the FC holds it (_enforce_recall).
        self._return_by_plan = False
        self._launched_version = -1  # the map version of the last launch obeyed (or expired)
        self._launch_waits: str | None = None  # why the pending launch cannot go yet
        self._retry_s = config.retry_min_s
        self._fc_connected = False
        self._home: GeoPoint | None = None
        self._home_due = 0.0
        self._own_sent: tuple[Any, float] | None = None  # (desired entry, when)
        self.stats: dict[str, int] = {"plans": 0, "uploads": 0, "unsafe_refused": 0,
                                      "not_ready": 0, "upload_failures": 0, "recalls": 0,
                                      "resumes": 0, "launches": 0, "launches_expired": 0,
                                      "fc_fence_problems": 0, "replanned_not_held": 0}
        #: Why the latest plan would breach the FC's own circle or altitude fence (None: it would not).
        self._fence_problem: str | None = None
        self._fence_checked: tuple[MapView, PlanResult, tuple[MissionType, ...]] | None = None
        self._fence_recheck_due = 0.0
        self._fence_lock = threading.Lock()  # the plan worker and the monitor both check
        #: Fences the FC's plan left out because the drone was inside them, as shapely
        #: polygons in (lon, lat); once it is out, the same map version is planned again.
        self._left_out: list[Any] = []
        self._stop = threading.Event()
        self._worker: LatestWins[MapView] = LatestWins(self._plan_job, name=f"flight-plan-{node_id}")
        self._monitor = threading.Thread(target=self._monitor_loop, name=f"flight-monitor-{node_id}",
                                         daemon=True)

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.link.start()
        self._monitor.start()

    def close(self) -> None:
        self._stop.set()
        self._worker.close()
        if self._monitor.is_alive():
            self._monitor.join(10)
        self.vehicle.detach()
        self.link.close()

    # -- node thread -------------------------------------------------------------------

    def map_applied(self, view: MapView) -> None:
        """A new map version was applied (node thread): plan it on the worker."""
        with self._lock:
            self._view = view
            self._handed_at = (view.version, time.monotonic())
        self._worker.submit(view)

    @property
    def fc_connected(self) -> bool:
        """The flight controller is heard (its HEARTBEAT within the timeout)."""
        return self._fc_connected

    def status(self) -> dict[str, Any]:
        """The ``fc`` member of ``status/<node>`` (docs/protocol.md)."""
        state = self.vehicle.state()
        return {"connected": self._fc_connected, "map_version_held": self._held_version,
                "mode": state.mode, "armed": state.armed, "recalled": self._recall_enforced,
                "availability": self.health.state.value, "launch_waits": self._launch_waits,
                "fence_problem": self._fence_problem}

    # -- monitor thread ------------------------------------------------------------------

    def _is_connected(self, state: FcState, now: float) -> bool:
        age = state.age("heartbeat", now)
        return self.link.connected and age is not None and age <= self.config.heartbeat_timeout_s

    def _monitor_loop(self) -> None:
        streams_requested_for = -1
        next_telemetry = 0.0
        period = 1.0 / self.config.telemetry_hz
        while not self._stop.wait(self.config.loop_s):
            try:
                now = time.monotonic()
                state = self.vehicle.state()
                connected = self._is_connected(state, now)
                if connected and streams_requested_for != self.link.stats.connects:
                    # Ask for the telemetry streams once per connection (the Vehicle
                    # keeps them requested across autopilot reboots itself).
                    streams_requested_for = self.link.stats.connects
                    self.vehicle.request_streams(
                        timeout_s=1.0, keep=True,
                        position_hz=max(DEFAULT_POSITION_HZ, self.config.telemetry_hz))
                if connected != self._fc_connected:
                    self._fc_link_changed(connected)
                if connected and self._home is None and now >= self._home_due:
                    self._learn_home(state, now)
                if now >= next_telemetry:
                    next_telemetry = now + period
                    self._publish_telemetry(state, connected, now)
                battery = state.battery.remaining_pct if state.battery is not None else None
                self.health.update(now, connected, None if battery is None else float(battery))
                self._keep_own_entry(now)
                if connected:
                    self._recheck_fc_fences(now)
                    self._replan_when_out_of_fences(state)
                seen = (connected, state.mode, state.armed, self.health.state, self._launch_waits)
                if seen != self._status_seen:
                    self._status_seen = seen
                    self._status_changed()
            except Exception:  # the monitor must outlive any one bad sample
                log.exception("flight monitor iteration failed")

    def _learn_home(self, state: FcState, now: float) -> None:
        """This drone's home (AMSL), needed to join the map. On the ground it is where
        the aircraft stands; already airborne (the agent started in flight) it is
        ArduPilot's mission item 0, which always holds home (AP_Mission)."""
        pos = state.position
        if pos is None:
            return
        if not state.armed:
            self._home = GeoPoint(pos.lat, pos.lon, pos.alt_msl - pos.alt_rel)
            return
        self._home_due = now + 5.0
        try:
            mission = self.vehicle.download(MissionType.MISSION)
        except (MissionError, TimeoutError) as exc:
            log.info("home not read yet (mission item 0): %s", exc)
            return
        if mission and (mission[0].x, mission[0].y) != (0, 0):
            try:
                self._home = GeoPoint(mission[0].lat, mission[0].lon, mission[0].z)
            except ValueError as exc:
                # The flight controller's word: a NaN altitude (MISSION_ITEM_INT allows
                # it) or a non-global frame's x/y off the globe. Raised here it ended the
                # monitor's iteration before its telemetry, health and map entry, every 5 s.
                log.warning("mission item 0 is no usable home (%s); not learned", exc)
                return
            log.info("home from mission item 0: %.7f, %.7f, %.1f m AMSL", self._home.lat,
                     self._home.lon, self._home.alt)

    def _fc_link_changed(self, connected: bool) -> None:
        self._fc_connected = connected
        if connected:
            log.info("flight controller link up (sysid %d)", self.config.sysid)
            self._event("fc_link", f"node {self.node_id}: flight controller link restored")
            with self._lock:
                view = self._view
            if view is not None:
                self._worker.submit(view)  # re-apply the last agreed plan (it may have rebooted)
        else:
            log.warning("flight controller link lost (sysid %d)", self.config.sysid)
            self._event("fc_link", f"node {self.node_id}: flight controller link lost")

    def _publish_telemetry(self, state: FcState, connected: bool, now: float) -> None:
        doc: dict[str, Any] = {"v": 1, "node": self.node_id, "name": self.name,
                               "t": int(time.time() * 1000), "mode": state.mode,
                               "armed": state.armed, "fc_connected": connected}
        pos = state.position
        if pos is None:
            return  # the telemetry document needs a position (docs/protocol.md)
        doc.update(lat=pos.lat, lon=pos.lon, alt_rel_m=pos.alt_rel, alt_msl_m=pos.alt_msl,
                   heading_deg=pos.heading_deg, groundspeed_ms=math.hypot(pos.vn, pos.ve))
        if state.battery is not None and state.battery.remaining_pct is not None:
            doc["battery_pct"] = float(state.battery.remaining_pct)
        quality = self.vehicle.link_quality()
        if quality is not None:
            doc["link_score"] = quality.score_at(now)
        if state.mission is not None:
            doc["mission_seq"] = state.mission.seq
        self._publish(topics.telemetry(self.swarm, self.node_id),
                      json.dumps(doc, allow_nan=False).encode(), 0, False)

    def _desired_entry(self, view: MapView) -> SetDroneTask | None:
        """The map entry this drone should have now, or None when the map already
        says it (or there is nothing to say yet)."""
        if not self.health.decided:
            return None  # no verdict yet: nothing to say about this drone
        availability = self.health.state
        current = view.drones.get(self.name)
        if current is None:
            if availability is Availability.UNAVAILABLE or self._home is None:
                return None  # join the map only once up, with a home
            home = self._home
            return SetDroneTask(self.name, DroneTask.SEARCH, True, False, (home.lon, home.lat, home.alt))
        task, alive = current.task, current.alive
        if availability is Availability.UNAVAILABLE:
            alive = False
        elif availability is Availability.BATTERY_CRITICAL:
            alive, task = True, DroneTask.RETURN
        else:
            alive = True
            if task is DroneTask.RETURN and not self._recall_enforced:
                task = DroneTask.SEARCH  # back in service after a battery return
        if (alive, task) == (current.alive, current.task):
            return None
        return SetDroneTask(self.name, task, alive, current.busy, current.home)

    def _keep_own_entry(self, now: float) -> None:
        with self._lock:
            view = self._view
        if view is None:
            return
        desired = self._desired_entry(view)
        if desired is None:
            self._own_sent = None
            return
        if self._own_sent is not None and self._own_sent[0] == desired \
                and now - self._own_sent[1] < self.config.resubmit_after_s:
            return  # on its way
        if self.commits.submit(desired):
            self._own_sent = (desired, now)
            log.info("proposing own map entry: alive=%s task=%s (%s)", desired.alive,
                     desired.task.value, self.health.state.value)

    # -- plan worker ---------------------------------------------------------------------

    def _backoff(self) -> float:
        delay = self._retry_s
        self._retry_s = min(self.config.retry_max_s, self._retry_s * 2)
        return delay

    def _plan_job(self, view: MapView) -> float | None:
        now = time.monotonic()
        with self._lock:
            handed_version, handed_at = self._handed_at
        waited_s = now - handed_at if handed_version == view.version else None
        state = self.vehicle.state()
        if not self._is_connected(state, now):
            return self._backoff()  # the link's return re-submits too
        try:
            self._enforce_recall(view, state)
        except (CommandError, CommandTimeoutError) as exc:
            log.warning("recall/resume not accepted by the flight controller: %s; retrying", exc)
            return self._backoff()
        if self.name not in view.drones or state.position is None:
            self._retry_s = self.config.retry_min_s
            return None if self.name not in view.drones else self._backoff()
        key = (view.version, self.vehicle.telemetry.reboots)
        t_plan = time.monotonic()
        # Reused only once the FC has taken it: a plan that never got there (its upload
        # failed) is made afresh from where the aircraft is by the time of the retry.
        reuse = (self._planned is not None and self._planned[0] == key
                 and self._held_version == view.version)
        if reuse and self._planned is not None and self._planned[1].status is not PlanStatus.BUSY:
            # ... and only while the FC still holds its mission (after the link came
            # back: read back). One changed on the vehicle meanwhile is not put back as
            # it was planned, from where the aircraft was then: planned again from here.
            try:
                reuse = self.applier.holds(self._planned[1].plan)
            except (MissionError, TimeoutError) as exc:
                self.stats["upload_failures"] += 1
                log.warning("could not read back map version %d's mission: %s; retrying",
                            view.version, exc)
                return self._backoff()
            if not reuse:
                self.stats["replanned_not_held"] += 1
                log.warning("the flight controller no longer holds map version %d's mission "
                            "(changed on the vehicle): planned again from where the aircraft is",
                            view.version)
        replanned = not reuse
        if self._planned is not None and reuse:
            _, result, vehicle = self._planned  # this version's plan, already checked
            t_check = t_apply = t_plan
        else:
            vehicle = self._vehicle_state(view, state)
            result = plan_for_drone(view, self.name, vehicle, self.config.planner)
            self.stats["plans"] += 1
            t_check = time.monotonic()
            start = (vehicle.position.lon, vehicle.position.lat)
            crossed = hazards_crossed(start, result.plan.mission, view.zones)
            t_apply = time.monotonic()
            if crossed:
                # Not flown, and the mission the FC holds (an older version's, planned
                # before this fire was known) is no safer: the drone holds where it is,
                # as it does when the planner itself finds no safe path, until a new
                # map version plans again (docs/flight.md "The fire check").
                self.stats["unsafe_refused"] += 1
                result = hold_instead(result, vehicle, self.config.planner,
                                      f"the planned path crosses hazard zone(s) "
                                      f"{', '.join(crossed)} (refused by the fire check): holding")
                text = (f"node {self.node_id}: plan for map version {view.version} crosses "
                        f"hazard zone(s) {', '.join(crossed)}: not flown; "
                        + ("holding where it is (LOITER_UNLIM)" if result.plan.mission
                           else "on the ground with no mission"))
                log.error(text)
                self._event("alert", text)
            self._planned = (key, result, vehicle)
        try:
            # A busy drone (task set by whoever took it over) keeps the mission it was
            # given; only the fences and rally points follow the map (docs/planner.md).
            keep = (MissionType.MISSION,) if result.status is PlanStatus.BUSY else ()
            try:
                self._check_fc_fences(view, result, keep)
            except (ParamError, TimeoutError) as exc:  # not checked is no reason to hold the map back
                log.warning("the FC's own fences not checked (parameters not read): %s", exc)
            report = self.applier.apply(result.plan, keep=keep)
        except VehicleNotReady as exc:
            self.stats["not_ready"] += 1
            log.info("flight controller not ready for map version %d: %s", view.version, exc)
            return self._backoff()
        except (MissionError, CommandError, CommandTimeoutError, ParamError, TimeoutError) as exc:
            self.stats["upload_failures"] += 1
            log.warning("upload of map version %d's plan failed: %s; retrying", view.version, exc)
            return self._backoff()
        self._retry_s = self.config.retry_min_s
        t_done = time.monotonic()
        # Where the time from "applied" to "the FC holds it" went (bench/flight_latency.py).
        timing = {"queued": None if waited_s is None else round(waited_s * 1000, 1),
                  "plan": round((t_check - t_plan) * 1000, 1),
                  "fire_check": round((t_apply - t_check) * 1000, 1),
                  "upload": round(report.upload_s * 1000, 1),
                  "verify": round(report.verify_s * 1000, 1),
                  "apply": round((t_done - t_apply) * 1000, 1)}
        if report.uploaded:
            self.stats["uploads"] += 1
            log.info("flight controller holds map version %d's plan (uploaded %s%s; %s ms)",
                     view.version, ", ".join(t.name.lower() for t in report.uploaded),
                     f", resumed at {report.resumed_at}" if report.resumed_at is not None else "",
                     " ".join(f"{k} {v}" for k, v in timing.items()))
        held_changed = self._held_version != view.version
        if held_changed:
            self._held_version = view.version
            self._status_changed()
        self._note_fences_left_out(result)
        if self._return_by_plan and view.recall.covers(self.name):
            try:   # airborne in another mode: AUTO at the way home's resume item
                self._take_off_into_auto(result, self.vehicle.state(), airborne_only=True)
            except (CommandError, CommandTimeoutError) as exc:
                log.warning("the way home in AUTO not accepted by the flight controller: %s; "
                            "retrying", exc)
                return self._backoff()
            self._return_by_plan = False
        if not (held_changed or replanned or report.changed):
            return self._obey_launch(view, result)  # plan/<node> already says all this
        doc = plan_document(self.node_id, self.name, result, vehicle, view.version)
        doc["timing_ms"] = timing
        self._last_doc = doc
        self._publish(topics.plan(self.swarm, self.node_id),
                      json.dumps(doc, allow_nan=False).encode(), 1, True)
        return self._obey_launch(view, result)

    # -- launch: the operator's explicit order to take off (docs/flight.md) ------------

    def _obey_launch(self, view: MapView, result: PlanResult) -> float | None:
        """Fly this version's committed mission in AUTO if a launch for this drone is
        pending: on the ground GUIDED, arm, MAV_CMD_MISSION_START; hovering in another
        mode, AUTO from the plan's resume item. Each launch once, within the launch
        window of its ``time_ms``; not ready yet (no mission, not in service): retried
        with backoff until the window ends, then an alert says why it did not go."""
        order = view.launches.get(self.name)
        if order is None or order.version == self._launched_version:
            return None
        window = self.config.launch_window_s
        age_s = time.time() - order.time_ms / 1000.0
        if not -window <= age_s <= window:
            self._launched_version = order.version
            self.stats["launches_expired"] += 1
            text = (f"node {self.node_id}: launch of map version {order.version} not obeyed: "
                    f"given {age_s:.0f} s ago by this drone's clock, outside the {window:g} s "
                    "launch window" + (f" ({self._launch_waits})" if self._launch_waits else
                                       " (a drone that comes up or rejoins later never takes "
                                       "off by surprise)") + "; launch again")
            self._launch_waits = None
            log.warning(text)
            self._event("alert", text)
            return None
        state = self.vehicle.state()
        if (self._in_auto_flight(state) and self._held_version == view.version
                and not view.recall.covers(self.name)):
            # Already flying this version's mission in AUTO: what the launch orders is
            # in effect (this agent restarted after obeying it, or a pilot launched).
            # Nothing to send, and nothing to wait for.
            self._launched_version = order.version
            self._launch_waits = None
            log.info("launch of map version %d: already flying map version %d's mission "
                     "in AUTO", order.version, view.version)
            return None
        why = self._launch_blocked(view, result, state)
        if why is None:
            try:
                self._take_off_into_auto(result, state)
            except (CommandError, CommandTimeoutError) as exc:
                why = f"the flight controller refused: {exc}"
        if why is not None:
            if why != self._launch_waits:
                log.info("launch of map version %d waits: %s", order.version, why)
            self._launch_waits = why
            return self._backoff()
        self._launched_version = order.version
        self._launch_waits = None
        self.stats["launches"] += 1
        text = (f"node {self.node_id}: launched (map version {order.version}): flying map "
                f"version {view.version}'s mission in AUTO")
        log.warning(text)
        self._event("launch", text)
        return None

    def _check_fc_fences(self, view: MapView, result: PlanResult, keep: tuple[MissionType, ...]) -> None:
        """Say (status ``fc.fence_problem``, an ``alert`` once per reason) when this plan
        would breach the FC's own circle fence (FENCE_RADIUS round home) or altitude
        fence (FENCE_ALT_MAX above home). The plan is
        uploaded all the same: it is the agreed map's, with the fences of the fire in
        it, and the stale plan it would replace is no safer; but the agent will not
        launch into it (:meth:`_launch_blocked`). While the problem stands the monitor
        looks again every ``retry_max_s``, the parameters read afresh, so an operator
        raising FENCE_RADIUS (or FENCE_ALT_MAX) clears it without a new map version."""
        home = None if self._home is None else (self._home.lat, self._home.lon)
        with self._fence_lock:
            self._fence_checked = (view, result, keep)
            self._fence_recheck_due = time.monotonic() + self.config.retry_max_s
            problem = self.applier.fence_problem(result.plan, keep, home)
            self._fence_problem_is(view, problem)

    def _recheck_fc_fences(self, now: float) -> None:
        """Monitor thread: while a problem with the FC's fences stands, look again every
        ``retry_max_s`` (the parameters read afresh; the plan is not re-made)."""
        if self._fence_problem is None or now < self._fence_recheck_due or self._fence_checked is None:
            return
        view, result, keep = self._fence_checked
        try:
            self._check_fc_fences(view, result, keep)
        except (ParamError, TimeoutError) as exc:
            log.info("the FC's fence parameters not read: %s", exc)

    def _fence_problem_is(self, view: MapView, problem: str | None) -> None:
        if problem != self._fence_problem:
            self._fence_problem = problem
            if problem is None:
                log.info("the plan fits the flight controller's own fences now")
            else:
                self.stats["fc_fence_problems"] += 1
                text = f"node {self.node_id}: map version {view.version}: {problem}"
                log.error(text)
                self._event("alert", text)
            self._status_changed()

    def _note_fences_left_out(self, result: PlanResult) -> None:
        """Plan worker, after an upload: remember the fences this plan left out."""
        rings = fence_polygons(result.fences_left_out) if result.fences_left_out else []
        self._left_out = [shapely.Polygon([(lon, lat) for lat, lon in ring]) for ring in rings]

    def _replan_when_out_of_fences(self, state: FcState) -> None:
        """Monitor thread: a fence left out of the plan because the drone was inside it
        comes back as soon as the drone is out of it by the planner's
        ``fence_clearance_m`` (the margin its paths keep from every fence, so the
        fence's upload does not put a drone on its edge in breach), without waiting
        for the next map version: the same version is planned again from here."""
        left_out, pos = self._left_out, state.position
        if not left_out or pos is None:
            return
        frame = LocalFrame(pos.lat, pos.lon)
        here = shapely.Point(0.0, 0.0)
        clearance = self.config.planner.fence_clearance_m
        for polygon in left_out:
            if shapely.distance(frame.geometry_to_enu(polygon), here) < clearance:  # inside: 0
                return
        self._left_out = []
        self._planned = None  # not this version's cached plan: plan it from here
        with self._lock:
            view = self._view
        if view is not None:
            log.info("out of the fence(s) left out of map version %d's plan: planning it again "
                     "with them", view.version)
            self._worker.submit(view)

    def _launch_blocked(self, view: MapView, result: PlanResult, state: FcState) -> str | None:
        """Why this drone must not take off now, or None."""
        if view.recall.covers(self.name):
            return "recalled"
        if self.health.state is not Availability.IN_SERVICE:
            return f"drone {self.health.state.value}"
        if result.status is not PlanStatus.OK or not result.plan.mission:
            return f"its plan is {result.status.value}: nothing to fly"
        if self._held_version != view.version:
            return "the flight controller does not hold this version's plan yet"
        if self._fence_problem is not None:
            return self._fence_problem
        return None

    def _take_off_into_auto(self, result: PlanResult, state: FcState,
                            airborne_only: bool = False) -> None:
        """ArduPilot practice for a mission flown from a ground station: arm in GUIDED
        (ArduCopter refuses to arm in AUTO), then MAV_CMD_MISSION_START (AUTO and
        auto_armed: the mission's NAV_TAKEOFF climbs without RC throttle). A copter
        already in the air switches to AUTO and continues at the plan's resume item."""
        if self._airborne(state):
            if state.mode != CopterMode.AUTO.name:
                self.vehicle.set_mode(CopterMode.AUTO).raise_for_result()
                if result.plan.resume_index is not None:
                    self.vehicle.set_mission_current(1 + result.plan.resume_index).raise_for_result()
            return
        if airborne_only:
            return
        if not state.armed:
            self.vehicle.set_mode(CopterMode.GUIDED).raise_for_result()
            self.vehicle.arm().raise_for_result()
        self.vehicle.start_mission().raise_for_result()

    def _airborne(self, state: FcState) -> bool:
        pos = state.position
        return (state.armed and pos is not None
                and pos.alt_rel > self.config.planner.airborne_alt_m)

    def _in_auto_flight(self, state: FcState) -> bool:
        return self._airborne(state) and state.mode == CopterMode.AUTO.name

    def _vehicle_state(self, view: MapView, state: FcState) -> VehicleState:
        """Where the aircraft is now (position, height above home) and its home:
        the map's home for this drone, else the one seen on the ground."""
        pos = state.position
        assert pos is not None
        entry = view.drones.get(self.name)
        if entry is not None:
            home = GeoPoint(lat=entry.home[1], lon=entry.home[0], alt=entry.home[2])
        else:
            home = self._home or GeoPoint(pos.lat, pos.lon, pos.alt_msl - pos.alt_rel)
        battery = state.battery.remaining_pct if state.battery is not None else None
        if battery is not None and not 0 <= battery <= 100:
            battery = None
        return VehicleState(GeoPoint(pos.lat, pos.lon, pos.alt_msl), pos.alt_rel, home,
                            None if battery is None else float(battery))

    def _enforce_recall(self, view: MapView, state: FcState) -> None:
        """Act on a change of this drone's recall: RTL when recalled (or, when RTL's
        straight line home crosses fire, the planned way home in AUTO), AUTO (its plan)
        when resumed. Only on the change: a pilot who takes over afterwards is not
        fought; a recall applied while the link was down is enforced when it returns."""
        recalled = view.recall.covers(self.name)
        if recalled == self._recall_enforced:
            return
        if recalled:
            pos, home = state.position, self._home
            crossed = [] if pos is None or home is None else hazards_near_line(
                (pos.lon, pos.lat), (home.lon, home.lat), view.zones,
                self.config.planner.safety_margin_m)
            if state.armed and state.mode != CopterMode.RTL.name and crossed:
                # ArduCopter's RTL flies straight home: here through fire. This version's
                # plan for a recalled drone is the planner's way home around the zones
                # (fire-checked like every plan); it is flown in AUTO once uploaded.
                self._return_by_plan = True
                log.warning("recalled (map version %d): the straight way home crosses %s: "
                            "flying the planned way home in AUTO", view.version,
                            ", ".join(crossed))
            else:
                if state.armed and state.mode != CopterMode.RTL.name:
                    self.vehicle.set_mode(CopterMode.RTL).raise_for_result()
                log.warning("recalled (map version %d): RTL", view.version)
            self.stats["recalls"] += 1
        else:
            self._return_by_plan = False
            if state.armed and state.mode == CopterMode.RTL.name:
                self.vehicle.set_mode(CopterMode.AUTO).raise_for_result()
            self.stats["resumes"] += 1
            log.info("resumed (map version %d): back to the plan", view.version)
        self._recall_enforced = recalled
