"""One simulated ArduCopter: its state, its clock, and the loop that ties the parts of
:mod:`sitl.copter` together. Sans-I/O: the caller feeds it received bytes and the
simulated time, and drains the bytes it wants to send."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pymap3d
from pymavlink.dialects.v20 import ardupilotmega as M

from mavlink_bridge.plan import MissionItem
from sitl.copter import arming, fence, messages, mission, modes, physics, telemetry
from sitl.copter.battery import Battery
from sitl.copter.fence import Geofence
from sitl.copter.link import Link
from sitl.copter.mission_protocol import FenceList, MissionList, RallyList
from sitl.copter.modes import MODES, STABILIZE
from sitl.copter.nav import Nav
from sitl.copter.params import ParamTable, copter_param_specs
from sitl.copter.streams import STEP_S, TIMESYNC_INTERVAL_S, StreamSchedule
from sitl.radio import RadioModel, SikRadio

if TYPE_CHECKING:
    from sitl.builtin import VehicleConfig

__all__ = ["Copter", "VehicleState", "STEP_S", "BANNER"]

BANNER = b"\n\nInit " + telemetry.FIRMWARE.encode() + b"\n\nFree RAM: 262144\n"
_GPS_FIX_FRACTION = 0.25  # the GPS gets its 3D fix well before the EKF uses it
_MISSION_INIT_S = 0.5  # AP_Mission answers NO_SPACE until initialised, ~0.5 s after boot (Copter SITL)
_RADIO_STATUS_INTERVAL_S = 1.0  # a SiK radio reports RADIO_STATUS about once a second


@dataclass(frozen=True, slots=True)
class VehicleState:
    """A consistent snapshot of one simulated vehicle, for tests and tools."""

    instance: int
    sysid: int
    booted: bool
    ready: bool
    armed: bool
    mode: int
    mode_name: str
    landed: bool
    lat: float
    lon: float
    alt_amsl: float
    relative_alt: float
    groundspeed: float
    battery_remaining_pct: float
    battery_voltage: float
    mission: tuple[MissionItem, ...]
    fence: tuple[MissionItem, ...]
    rally: tuple[MissionItem, ...]
    mission_current: int
    mission_state: int
    fence_breached: bool
    fence_breach_count: int
    params: tuple[tuple[str, float], ...]
    connected: bool


class Copter:
    """The state of one copter and its MAVLink endpoint (serial0 over TCP).

    Position is local ENU metres around home (``u`` is the altitude above home); all
    times are simulated seconds since boot (``t``), advanced in fixed ``STEP_S`` steps.
    """

    def __init__(self, config: VehicleConfig) -> None:
        self.config = config
        # VehicleConfig.__post_init__ fills in instance+1 when no sysid was given
        self.sysid: int = config.sysid if config.sysid is not None else config.instance + 1
        self.link = Link(self.sysid)
        self.mav = self.link.mav  # the encoder every reply is built with
        self.params = ParamTable(copter_param_specs(
            self.sysid, config.wp_speed_ms * 100, config.wp_radius_m * 100, config.battery_capacity_mah))
        gcs = (config.gcs_lat if config.gcs_lat is not None else config.home_lat,
               config.gcs_lon if config.gcs_lon is not None else config.home_lon,
               config.gcs_alt if config.gcs_alt is not None else config.home_alt)
        # The SiK radio on serial0, reporting in simulated time (sitl.radio: the one model).
        self.radio = SikRadio(gcs, RadioModel(seed=config.seed)) if config.radio_status else None
        self._banner_sent = False
        self.boot_time: float | None = None  # sim clock reading at boot
        self.epoch = time.time()  # UTC at boot, for SYSTEM_TIME once the GPS has time
        self.t = 0.0  # simulated seconds since boot, advanced in STEP_S steps
        self._steps = 0  # t = _steps * STEP_S exactly (no drift from repeated addition)
        # flight state
        self.e = self.n = self.u = 0.0
        self.ve = self.vn = self.vu = 0.0
        self.ae = self.an = self.au = 0.0  # acceleration of the last step (m/s^2, ENU)
        self.yaw = math.radians(config.home_heading)
        self.armed = False
        self.landed = True
        self.on_ground_since: float | None = None  # touched down, the land detector still deciding
        self.mode = STABILIZE
        self.landed_armed_since: float | None = None
        self.auto_armed = False
        self.speed_override: float | None = None
        self.nav = Nav()
        self.paused: Nav | None = None  # the AUTO nav target set aside by DO_PAUSE_CONTINUE
        self.throttle = 0.0
        self.battery = Battery(config)
        # mission, fence, rally storage and their upload/download protocol
        self.missions = MissionList(self.mav, self.send, self.statustext, self.home_item,
                                    ready=lambda: self.boot_time is not None and self.t >= _MISSION_INIT_S)
        self.fences = FenceList(self.mav, self.send, self.statustext)
        self.rallies = RallyList(self.mav, self.send, self.statustext)
        self.fences.on_changed = self._rebuild_fence
        self.missions.on_changed = lambda: mission.mission_changed(self)
        self.protocols: dict[int, Any] = {M.MAV_MISSION_TYPE_MISSION: self.missions,
                                          M.MAV_MISSION_TYPE_FENCE: self.fences,
                                          M.MAV_MISSION_TYPE_RALLY: self.rallies}
        # the mission executor's place (AP_Mission::_nav_cmd.index) and state
        self.mission_index = 1
        self.mission_state = "stopped"  # stopped | running | complete
        self.mission_started = False
        self.nav_index_loaded = False  # AP_Mission has a current nav command (MISSION_CURRENT seq)
        self.jump_counts: dict[int, int] = {}
        self.fence = Geofence()
        self.streams = StreamSchedule()
        self._next_radio = 0.0
        self._next_timesync = TIMESYNC_INTERVAL_S
        self._reboot_pending = False
        self._gps_fix_announced = False
        self._ready_announced = False

    # ------------------------------------------------------------------ link side
    @property
    def connected(self) -> bool:
        return self.link.connected

    def boot(self, clock_now: float) -> None:
        if self.boot_time is None:
            self.boot_time = clock_now
            self.t = 0.0
            self._steps = 0

    def on_connect(self, clock_now: float) -> None:
        """A client connected to serial0. SITL waits for it, then boots and prints the banner."""
        self.link.connect()
        if not self._banner_sent:
            self._banner_sent = True
            self.link.write_raw(BANNER)
        if self.config.wait_for_connection:
            self.boot(clock_now)
        if self.boot_time is not None:
            # the first HEARTBEAT follows the banner at once, then 1 Hz from here
            if self.streams.interval(M.MAVLINK_MSG_ID_HEARTBEAT) is not None:
                self._emit(M.MAVLINK_MSG_ID_HEARTBEAT)
                self.streams.restart(M.MAVLINK_MSG_ID_HEARTBEAT, self.t)
            if self.t == 0.0:
                self.send_banner()
                self.link.flush()

    def send_banner(self) -> None:
        # GCS_MAVLINK_Copter::send_banner (at boot and on every PARAM_REQUEST_LIST):
        # GCS_MAVLINK::send_banner's firmware string, then the frame and type.
        self.statustext(M.MAV_SEVERITY_INFO, telemetry.FIRMWARE)
        self.statustext(M.MAV_SEVERITY_INFO, "Frame: QUAD/X")

    def on_disconnect(self) -> None:
        self.link.disconnect()

    @property
    def reboot_pending(self) -> bool:
        """True after an accepted MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN: the server sends
        what is queued (the COMMAND_ACK), closes the link as SITL's re-exec does, then
        calls :meth:`reboot`."""
        return self._reboot_pending

    def request_reboot(self) -> None:
        self._reboot_pending = True

    def reboot(self) -> None:
        """AP_Vehicle::reboot in SITL: the process restarts with the same storage
        (parameters, mission, fence, rally survive), boots again on the next
        connection (banner, BOOT heartbeat, EKF warm-up), disarmed in STABILIZE at home
        with only HEARTBEAT streamed."""
        values = {name: self.params[name] for name in self.params.names()}
        stored = (list(self.missions.items), list(self.fences.items), list(self.rallies.items))
        self.__init__(self.config)  # type: ignore[misc]
        for name, value in values.items():
            self.params.set(name, value)
        self.missions.items, self.fences.items, self.rallies.items = stored
        self._rebuild_fence()

    def on_bytes(self, data: bytes, clock_now: float) -> None:
        if self.boot_time is None:
            return
        for msg in self.link.parse(data):
            try:
                messages.dispatch(self, msg)
            except (ValueError, TypeError, OverflowError, KeyError, IndexError, AttributeError,
                    M.MAVError):
                # A well-framed message with nonsense fields changes nothing.
                continue
            finally:
                self.link.flush()

    def take_output(self) -> bytes:
        return self.link.take_output()

    def send(self, msg: Any) -> None:
        self.link.send(msg)

    def statustext(self, severity: int, text: str) -> None:
        """Queue a STATUSTEXT (sent after the direct replies, see :meth:`Link.statustext`)."""
        self.link.statustext(severity, text)

    def emit_deferred(self, msgid: int) -> None:
        """Queue a message the way GCS_MAVLINK::send_message(ap_message) does: it goes
        out after the direct reply to the message being handled."""
        builder = telemetry.BUILDERS.get(msgid)
        msg = builder(self) if builder is not None else None
        if msg is not None:
            self.link.defer(msg)

    def _emit(self, msgid: int) -> None:
        builder = telemetry.BUILDERS.get(msgid)
        if builder is not None and self.connected:
            msg = builder(self)
            if msg is not None:  # e.g. HOME_POSITION before home is set
                self.send(msg)

    def _send_radio_status(self, t: float) -> None:
        assert self.radio is not None
        lat, lon = self.latlon()
        self.radio.observe_position(lat, lon, self.config.home_alt + self.u)
        sample = self.radio.report(t)
        self.link.radio_up = sample.link_up
        if sample.link_up and self.connected:
            radio = self.link.radio_mav
            radio.send(radio.radio_status_encode(sample.rssi, sample.remrssi, 100, sample.noise, sample.remnoise,
                                                 0, 0))

    # ------------------------------------------------------------------ time
    def advance(self, clock_now: float, max_steps: int = 5000) -> None:
        """Run fixed physics steps (and what falls due in them) up to ``clock_now``."""
        if self.boot_time is None:
            if not self.config.wait_for_connection:
                self.boot(clock_now)
            return
        target = clock_now - self.boot_time
        steps = 0
        while self.t + STEP_S <= target and steps < max_steps:
            self._steps += 1
            self.t = self._steps * STEP_S
            steps += 1
            self._step(STEP_S)
            self._due()
            self.link.flush()
        if self.t + STEP_S <= target:  # hopelessly behind: skip ahead rather than spiral
            self._steps = int(target / STEP_S)
            self.t = self._steps * STEP_S

    def clock_ns(self) -> int:
        """AP_HAL::micros64() * 1000: the autopilot's clock as TIMESYNC carries it."""
        return round(self.t * 1e6) * 1000

    @property
    def ready(self) -> bool:
        """The EKF uses GPS: home is set and position-requiring modes and arming checks pass."""
        return self.boot_time is not None and self.t >= self.config.time_to_ready_s

    @property
    def gps_fix(self) -> bool:
        return self.boot_time is not None and self.t >= self.config.time_to_ready_s * _GPS_FIX_FRACTION

    def _step(self, dt: float) -> None:
        physics.navigate(self, dt)
        self.battery.drain(dt, self.armed, self.landed, self.throttle)
        if self.boot_time is not None and self.ready:  # the fence needs a position
            fence.check_fence(self)
        if self.armed:
            arming.check_auto_disarm(self)

    def _due(self) -> None:
        t = self.t
        if self.gps_fix and not self._gps_fix_announced:
            self._gps_fix_announced = True
            self.statustext(M.MAV_SEVERITY_INFO, "GPS 1: detected u-blox")
        if self.ready and not self._ready_announced:
            self._ready_announced = True
            self.statustext(M.MAV_SEVERITY_INFO, "EKF3 IMU0 origin set")
            self.statustext(M.MAV_SEVERITY_INFO, "EKF3 IMU0 is using GPS")
            # GCS::send_home_all when home is set: HOME_POSITION and GPS_GLOBAL_ORIGIN
            self.emit_deferred(M.MAVLINK_MSG_ID_HOME_POSITION)
            self.emit_deferred(M.MAVLINK_MSG_ID_GPS_GLOBAL_ORIGIN)
        if t >= self._next_timesync:
            # GCS_MAVLINK::send_timesync: a request of its own (tc1 0), ts1 its clock in ns
            # with the sysid in the last digits, as ArduPilot makes it unique
            self._next_timesync = t + TIMESYNC_INTERVAL_S
            self.send(self.mav.timesync_encode(0, self.clock_ns() + self.sysid))
        if self.radio is not None and t >= self._next_radio:
            self._next_radio = t + _RADIO_STATUS_INTERVAL_S
            self._send_radio_status(t)
        for msgid in self.streams.due(t):
            self._emit(msgid)
        for protocol in self.protocols.values():
            protocol.update(t)

    # ------------------------------------------------------------------ what the parts call
    def set_mode(self, mode: int) -> bool:
        return modes.set_mode(self, mode)

    def try_arm(self, force: bool) -> bool:
        return arming.try_arm(self, force)

    def disarm(self, reason: str) -> None:
        arming.disarm(self, reason)

    # ------------------------------------------------------------------ geometry
    def home_item(self) -> MissionItem:
        c = self.config
        return MissionItem(M.MAV_CMD_NAV_WAYPOINT, 0, x=round(c.home_lat * 1e7),
                    y=round(c.home_lon * 1e7), z=round(c.home_alt * 100) / 100.0)

    def to_local(self, lat: float, lon: float) -> tuple[float, float]:
        c = self.config
        e, n, _ = pymap3d.geodetic2enu(lat, lon, c.home_alt, c.home_lat, c.home_lon, c.home_alt)
        return float(e), float(n)

    def latlon(self) -> tuple[float, float]:
        c = self.config
        lat, lon, _ = pymap3d.enu2geodetic(self.e, self.n, 0.0, c.home_lat, c.home_lon, c.home_alt)
        return float(lat), float(lon)

    def _rebuild_fence(self) -> None:
        self.fence.rebuild(self.fences.items, self.to_local)

    # ------------------------------------------------------------------ for tests and tools
    @property
    def fence_breached(self) -> int:
        return self.fence.breached

    @property
    def fence_breach_count(self) -> int:
        return self.fence.breach_count

    @property
    def battery_remaining(self) -> float:
        return self.battery.remaining_pct

    @property
    def battery_voltage(self) -> float:
        return self.battery.voltage

    def heartbeat(self) -> Any:
        return telemetry.heartbeat(self)

    def mission_current(self) -> Any:
        return telemetry.mission_current_msg(self, self.mission_index)

    def state(self) -> VehicleState:
        lat, lon = self.latlon()
        mission_state = self.mission_current().mission_state
        return VehicleState(
            instance=self.config.instance, sysid=self.sysid, booted=self.boot_time is not None,
            ready=self.ready, armed=self.armed, mode=self.mode, mode_name=MODES[self.mode],
            landed=self.landed, lat=lat, lon=lon, alt_amsl=self.config.home_alt + self.u,
            relative_alt=self.u, groundspeed=math.hypot(self.ve, self.vn),
            battery_remaining_pct=self.battery_remaining, battery_voltage=self.battery_voltage,
            mission=tuple(self.missions.items[:1] and [self.home_item()] + self.missions.items[1:]),
            fence=tuple(self.fences.items), rally=tuple(self.rallies.items),
            mission_current=self.mission_index, mission_state=mission_state,
            fence_breached=bool(self.fence.breached), fence_breach_count=self.fence.breach_count,
            params=tuple((n, self.params[n]) for n in self.params.names()), connected=self.connected)
