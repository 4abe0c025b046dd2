"""One simulated ArduPilot copter: MAVLink in, MAVLink out, simple kinematics.

Sans-I/O: the server feeds it received bytes and the simulated time, and drains the
bytes it wants to send. Behaviour follows ArduCopter (references are to its source):
modes and their checks (``ArduCopter/mode.cpp``), arming (``AP_Arming``), the GCS
command handlers (``GCS_Mavlink.cpp``, ``GCS_Common.cpp``), the mission executor
(``mode_auto.cpp``, ``AP_Mission``), RTL and LAND, and the fence (``AC_Fence``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import pymap3d
import shapely

os.environ.setdefault("MAVLINK20", "1")  # before pymavlink's mavutil picks its MAVLink version
from pymavlink import mavutil  # noqa: E402
from pymavlink.dialects.v20 import ardupilotmega as mavlink  # noqa: E402

from sitl import _mission
from sitl._params import ParamTable, copter_param_specs
from sitl.radio import RADIO_COMPID, RADIO_SYSID, RadioModel, SikRadio

if TYPE_CHECKING:
    from sitl.builtin import VehicleConfig

M = mavlink

STEP_S = 0.02  # fixed physics step (simulated seconds): 50 Hz, the finest stream rate
FIRMWARE = "ArduCopter V4.5.7 (sim)"
BANNER = b"\n\nInit " + FIRMWARE.encode() + b"\n\nFree RAM: 262144\n"
_BOOT_STATUS_S = 1.0  # HEARTBEAT.system_status stays MAV_STATE_BOOT until init finishes
_GPS_FIX_FRACTION = 0.25  # the GPS gets its 3D fix well before the EKF uses it
_HOVER_THROTTLE = 0.35  # MOT_THST_HOVER
_MISSION_INIT_S = 0.5  # AP_Mission answers NO_SPACE until initialised, ~0.5 s after boot (Copter SITL)
_LAND_ALT_LOW_M = 10.0  # LAND_ALT_LOW: below it descend at LAND_SPEED
_GUIDED_TIMEOUT_S = 3.0  # GUID_TIMEOUT: a velocity target lapses after this long
_FORCE_MAGIC = 21196  # MAV_CMD_COMPONENT_ARM_DISARM param2 that forces arm/disarm

# Copter flight modes (ArduCopter/mode.h, Mode::Number): pymavlink's mode_mapping_acm is
# the one table of numbers and names (the bridge names modes from it too), less the
# numbers a multicopter ArduCopter 4.6 has no mode for (8 POSITION and 10 OF_LOITER are
# retired, 26 AUTOROTATE is helicopter-only, 29 RATE_ACRO is not Copter's): setting one is
# refused "No such mode", as on the real one.
_NO_SUCH_COPTER_MODE = frozenset({8, 10, 26, 29})
MODES: dict[int, str] = {number: name for number, name in mavutil.mode_mapping_acm.items()
                         if number not in _NO_SUCH_COPTER_MODE}
STABILIZE, ALT_HOLD = M.COPTER_MODE_STABILIZE, M.COPTER_MODE_ALT_HOLD
AUTO, GUIDED = M.COPTER_MODE_AUTO, M.COPTER_MODE_GUIDED
LOITER, RTL, CIRCLE, LAND = M.COPTER_MODE_LOITER, M.COPTER_MODE_RTL, M.COPTER_MODE_CIRCLE, M.COPTER_MODE_LAND
POSHOLD, BRAKE, SMART_RTL, AUTO_RTL = (M.COPTER_MODE_POSHOLD, M.COPTER_MODE_BRAKE, M.COPTER_MODE_SMART_RTL,
                                       M.COPTER_MODE_AUTO_RTL)
_DRIFT, _SPORT, _FLIP, _AUTOTUNE = M.COPTER_MODE_DRIFT, M.COPTER_MODE_SPORT, M.COPTER_MODE_FLIP, M.COPTER_MODE_AUTOTUNE
_THROW, _AVOID_ADSB, _FLOWHOLD = M.COPTER_MODE_THROW, M.COPTER_MODE_AVOID_ADSB, M.COPTER_MODE_FLOWHOLD
_FOLLOW, _ZIGZAG = M.COPTER_MODE_FOLLOW, M.COPTER_MODE_ZIGZAG
# Mode::name() where it differs from the HEARTBEAT mode name (used in "Mode change to
# %s failed" texts).
_MODE_TEXT_NAMES = {SMART_RTL: "SMARTRTL", AUTO_RTL: "AUTO RTL"}
# Mode::requires_GPS() is true for these (ArduCopter/mode.h).
_REQUIRES_POSITION = {AUTO, GUIDED, LOITER, RTL, CIRCLE, _DRIFT, POSHOLD, BRAKE, _THROW, _AVOID_ADSB, SMART_RTL,
                      _FOLLOW, _ZIGZAG, AUTO_RTL}
# GCS_MAVLINK_Copter::base_mode sets MAV_MODE_FLAG_GUIDED_ENABLED in these.
_GUIDED_ENABLED_MODES = {AUTO, AUTO_RTL, RTL, LOITER, _AVOID_ADSB, _FOLLOW, GUIDED, CIRCLE, POSHOLD, BRAKE,
                         SMART_RTL}
# Mode::allows_arming() is false for these; AUTO only with AUTO_OPTIONS bit 0 (default 0).
_NOT_ARMABLE = {AUTO, RTL, CIRCLE, LAND, BRAKE, SMART_RTL, AUTO_RTL, _FLIP, _AUTOTUNE, _AVOID_ADSB, _FOLLOW}
# Mode::has_user_takeoff(): MAV_CMD_NAV_TAKEOFF is accepted in these.
_USER_TAKEOFF = {GUIDED, LOITER, ALT_HOLD, POSHOLD, _SPORT, _FLOWHOLD, _ZIGZAG}

# FENCE_ACTION -> the modes Copter::fence_check tries in turn (0 REPORT_ONLY does nothing;
# 1 RTL_AND_LAND and unknown values: RTL, else LAND).
_FENCE_ACTION_MODES: dict[int, tuple[int, ...]] = {
    2: (LAND,),  # ALWAYS_LAND
    3: (SMART_RTL, RTL, LAND),  # SMART_RTL, else RTL, else LAND
    4: (BRAKE, LAND),  # BRAKE, else LAND
    5: (SMART_RTL, LAND),  # SMART_RTL_OR_LAND
}

# REQUEST_DATA_STREAM groups -> messages, as ArduCopter's GCS_Mavlink.cpp STREAM_* lists
# map them (only the messages this simulator produces).
STREAM_GROUPS: dict[int, tuple[int, ...]] = {
    M.MAV_DATA_STREAM_EXTENDED_STATUS: (M.MAVLINK_MSG_ID_SYS_STATUS, M.MAVLINK_MSG_ID_MISSION_CURRENT,
                                        M.MAVLINK_MSG_ID_GPS_RAW_INT, M.MAVLINK_MSG_ID_FENCE_STATUS),
    M.MAV_DATA_STREAM_POSITION: (M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, M.MAVLINK_MSG_ID_LOCAL_POSITION_NED),
    M.MAV_DATA_STREAM_EXTRA1: (M.MAVLINK_MSG_ID_ATTITUDE,),
    M.MAV_DATA_STREAM_EXTRA2: (M.MAVLINK_MSG_ID_VFR_HUD,),
    M.MAV_DATA_STREAM_EXTRA3: (M.MAVLINK_MSG_ID_SYSTEM_TIME, M.MAVLINK_MSG_ID_EKF_STATUS_REPORT,
                               M.MAVLINK_MSG_ID_BATTERY_STATUS),
    M.MAV_DATA_STREAM_RAW_SENSORS: (), M.MAV_DATA_STREAM_RC_CHANNELS: (),
    M.MAV_DATA_STREAM_RAW_CONTROLLER: (),
}
STREAM_GROUPS[M.MAV_DATA_STREAM_ALL] = tuple(m for g in STREAM_GROUPS.values() for m in g)
# Messages that SET_MESSAGE_INTERVAL / REQUEST_MESSAGE can name.
_PRODUCIBLE = set(STREAM_GROUPS[M.MAV_DATA_STREAM_ALL]) | {
    M.MAVLINK_MSG_ID_HEARTBEAT, M.MAVLINK_MSG_ID_HOME_POSITION, M.MAVLINK_MSG_ID_AUTOPILOT_VERSION,
    M.MAVLINK_MSG_ID_LOCAL_POSITION_NED,
}

# POSITION_TARGET_TYPEMASK bits that, all set, mean "no position" / "no velocity" target
_POS_IGNORE = (M.POSITION_TARGET_TYPEMASK_X_IGNORE | M.POSITION_TARGET_TYPEMASK_Y_IGNORE
               | M.POSITION_TARGET_TYPEMASK_Z_IGNORE)
_VEL_IGNORE = (M.POSITION_TARGET_TYPEMASK_VX_IGNORE | M.POSITION_TARGET_TYPEMASK_VY_IGNORE
               | M.POSITION_TARGET_TYPEMASK_VZ_IGNORE)

# EKF_STATUS_REPORT.flags (EKF_STATUS_FLAGS, ardupilotmega.xml)
_EKF_PRE_GPS = (M.EKF_ATTITUDE | M.EKF_VELOCITY_VERT | M.EKF_POS_VERT_ABS | M.EKF_CONST_POS_MODE)
_EKF_READY = (M.EKF_ATTITUDE | M.EKF_VELOCITY_HORIZ | M.EKF_VELOCITY_VERT | M.EKF_POS_HORIZ_REL
              | M.EKF_POS_HORIZ_ABS | M.EKF_POS_VERT_ABS | M.EKF_PRED_POS_HORIZ_REL
              | M.EKF_PRED_POS_HORIZ_ABS)


# AP_Mission::Mission_Command::type(): the names in "Mission: N <type>" STATUSTEXTs.
_COMMAND_NAMES = {
    M.MAV_CMD_NAV_WAYPOINT: "WP", M.MAV_CMD_NAV_SPLINE_WAYPOINT: "SplineWP", M.MAV_CMD_NAV_RETURN_TO_LAUNCH: "RTL",
    M.MAV_CMD_NAV_LOITER_UNLIM: "LoitUnlim", M.MAV_CMD_NAV_LOITER_TIME: "LoitTime",
    M.MAV_CMD_NAV_GUIDED_ENABLE: "GuidedEnable", M.MAV_CMD_NAV_LOITER_TURNS: "LoitTurns",
    M.MAV_CMD_NAV_LOITER_TO_ALT: "LoitAltitude", M.MAV_CMD_CONDITION_DELAY: "CondDelay",
    M.MAV_CMD_CONDITION_DISTANCE: "CondDist", M.MAV_CMD_DO_CHANGE_SPEED: "ChangeSpeed",
    M.MAV_CMD_DO_SET_HOME: "SetHome", M.MAV_CMD_DO_SET_SERVO: "SetServo", M.MAV_CMD_DO_SET_RELAY: "SetRelay",
    M.MAV_CMD_DO_REPEAT_SERVO: "RepeatServo", M.MAV_CMD_DO_REPEAT_RELAY: "RepeatRelay",
    M.MAV_CMD_DO_DIGICAM_CONFIGURE: "DigiCamCfg", M.MAV_CMD_DO_DIGICAM_CONTROL: "DigiCamCtrl",
    M.MAV_CMD_DO_SET_CAM_TRIGG_DIST: "SetCamTrigDst", M.MAV_CMD_DO_SET_ROI: "SetROI",
    M.MAV_CMD_DO_SET_RESUME_REPEAT_DIST: "SetRepeatDist", M.MAV_CMD_DO_GUIDED_LIMITS: "GuidedLimits",
    M.MAV_CMD_NAV_TAKEOFF: "Takeoff", M.MAV_CMD_NAV_LAND: "Land",
    M.MAV_CMD_NAV_CONTINUE_AND_CHANGE_ALT: "ContinueAndChangeAlt", M.MAV_CMD_NAV_VTOL_TAKEOFF: "VTOLTakeoff",
    M.MAV_CMD_NAV_VTOL_LAND: "VTOLLand", M.MAV_CMD_DO_FENCE_ENABLE: "FenceEnable",
    M.MAV_CMD_DO_ENGINE_CONTROL: "EngineControl", M.MAV_CMD_CONDITION_YAW: "CondYaw",
    M.MAV_CMD_DO_LAND_START: "LandStart", M.MAV_CMD_NAV_DELAY: "Delay", M.MAV_CMD_DO_GRIPPER: "Gripper",
    M.MAV_CMD_NAV_PAYLOAD_PLACE: "PayloadPlace", M.MAV_CMD_DO_PARACHUTE: "Parachute",
    M.MAV_CMD_DO_SPRAYER: "Sprayer", M.MAV_CMD_DO_AUX_FUNCTION: "AuxFunction",
    M.MAV_CMD_DO_MOUNT_CONTROL: "MountControl", M.MAV_CMD_DO_WINCH: "Winch",
    M.MAV_CMD_NAV_SCRIPT_TIME: "NavScriptTime", M.MAV_CMD_NAV_ATTITUDE_TIME: "NavAttitudeTime",
    M.MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW: "GimbalPitchYaw",
}


# nav commands whose completion ModeAuto announces with "Reached command #N"
_REACHED_TEXT_COMMANDS = frozenset({M.MAV_CMD_NAV_WAYPOINT, M.MAV_CMD_NAV_SPLINE_WAYPOINT,
                                    M.MAV_CMD_NAV_LOITER_TIME})


class _Outbox:
    """File-like sink for pymavlink's MAVLink.send(): frames go into a byte buffer."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> None:
        self.buffer += data


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
    mission: tuple[_mission.Item, ...]
    fence: tuple[_mission.Item, ...]
    rally: tuple[_mission.Item, ...]
    mission_current: int
    mission_state: int
    fence_breached: bool
    fence_breach_count: int
    params: tuple[tuple[str, float], ...]
    connected: bool


@dataclass
class _Nav:
    """What the position controller is doing: hold, go to a target, take off, land."""

    kind: str = "hold"  # hold | goto | takeoff | land | rtl | velocity
    e: float = 0.0
    n: float = 0.0
    u: float = 0.0
    hold_s: float = 0.0
    arrived_at: float | None = None
    phase: str = ""  # rtl: climb | return | loiter | land; goto: land-approach or ""
    command: int = 0  # goto: the mission nav command (MAV_CMD) being flown, 0 if none
    item_seq: int = -1
    vel: tuple[float, float, float] = (0.0, 0.0, 0.0)  # velocity target (east, north, up) m/s


class SimVehicle:
    """The state of one copter and its MAVLink endpoint (serial0 over TCP)."""

    def __init__(self, config: "VehicleConfig") -> None:
        self.config = config
        # VehicleConfig.__post_init__ fills in instance+1 when no sysid was given
        self.sysid: int = config.sysid if config.sysid is not None else config.instance + 1
        self._mav = M.MAVLink(_Outbox(), srcSystem=self.sysid, srcComponent=M.MAV_COMP_ID_AUTOPILOT1)
        self._out: _Outbox = self._mav.file
        self._radio_mav = M.MAVLink(self._out, srcSystem=RADIO_SYSID, srcComponent=RADIO_COMPID)
        self._parser = self._new_parser()
        self.params = ParamTable(copter_param_specs(
            self.sysid, config.wp_speed_ms * 100, config.wp_radius_m * 100, config.battery_capacity_mah))
        self._gcs = (config.gcs_lat if config.gcs_lat is not None else config.home_lat,
                     config.gcs_lon if config.gcs_lon is not None else config.home_lon,
                     config.gcs_alt if config.gcs_alt is not None else config.home_alt)
        # The SiK radio on serial0, reporting in simulated time (sitl.radio: the one model).
        self._radio = SikRadio(self._gcs, RadioModel(seed=config.seed)) if config.radio_status else None
        self.connected = False
        self._banner_sent = False
        self.boot_time: float | None = None  # sim clock reading at boot
        self.epoch = time.time()  # UTC at boot, for SYSTEM_TIME once the GPS has time
        self.t = 0.0  # simulated seconds since boot, advanced in STEP_S steps
        self._steps = 0  # t = _steps * STEP_S exactly (no drift from repeated addition)
        # flight state, local ENU metres around home (u = altitude above home)
        self.e = self.n = self.u = 0.0
        self.ve = self.vn = self.vu = 0.0
        self.ae = self.an = 0.0  # horizontal acceleration of the last step (m/s^2)
        self.yaw = math.radians(config.home_heading)
        self.armed = False
        self.landed = True
        self.mode = STABILIZE
        self._landed_armed_since: float | None = None
        self._auto_armed = False
        self._speed_override: float | None = None
        self._nav = _Nav()
        self._paused: _Nav | None = None  # the AUTO nav target set aside by DO_PAUSE_CONTINUE
        self.throttle = 0.0
        # battery
        self._mah_used = config.battery_capacity_mah * (1.0 - config.battery_initial_pct / 100.0)
        self._current_a = config.battery_idle_current_a
        # mission, fence, rally
        self.missions = _mission.MissionList(self._mav, self._send, self.statustext, self._home_item,
                                             ready=lambda: self.boot_time is not None and self.t >= _MISSION_INIT_S)
        self.fences = _mission.FenceList(self._mav, self._send, self.statustext)
        self.rallies = _mission.RallyList(self._mav, self._send, self.statustext)
        self.fences.on_changed = self._rebuild_fence
        self.missions.on_changed = self._mission_changed
        self._protocols = {M.MAV_MISSION_TYPE_MISSION: self.missions, M.MAV_MISSION_TYPE_FENCE: self.fences,
                           M.MAV_MISSION_TYPE_RALLY: self.rallies}
        self.mission_index = 1  # current nav command (AP_Mission::_nav_cmd.index)
        self.mission_state = "stopped"  # stopped | running | complete
        self._mission_started = False
        self._jump_counts: dict[int, int] = {}
        self._exclusions: list[Any] = []
        self._inclusions: list[Any] = []
        self.fence_breached = 0  # FENCE_BREACH of the active breach, 0 when none
        self.fence_breach_count = 0
        self._fence_breach_name = ""
        self._fence_breach_time_ms = 0
        # telemetry schedule: msgid -> [interval_s, next_due]
        self._intervals: dict[int, list[float]] = {M.MAVLINK_MSG_ID_HEARTBEAT: [1.0, 0.0]}
        self._next_radio = 0.0
        self._radio_up = True
        self._texts: list[Any] = []
        self._text_id = 0  # STATUSTEXT.id of the last chunked text
        self._reboot_pending = False
        self._gps_fix_announced = False
        self._ready_announced = False

    # ------------------------------------------------------------------ link side
    @staticmethod
    def _new_parser() -> Any:
        parser = M.MAVLink(None)
        parser.robust_parsing = True  # garbage yields BAD_DATA records, never an exception
        return parser

    def boot(self, clock_now: float) -> None:
        if self.boot_time is None:
            self.boot_time = clock_now
            self.t = 0.0
            self._steps = 0

    def on_connect(self, clock_now: float) -> None:
        """A client connected to serial0. SITL waits for it, then boots and prints the banner."""
        self.connected = True
        self._parser = self._new_parser()
        self._out.buffer.clear()
        if not self._banner_sent:
            self._banner_sent = True
            self._out.buffer += BANNER
        if self.config.wait_for_connection:
            self.boot(clock_now)
        if self.boot_time is not None:
            # the first HEARTBEAT follows the banner at once, then 1 Hz from here
            slot = self._intervals.get(M.MAVLINK_MSG_ID_HEARTBEAT)
            if slot is not None:
                self._emit(M.MAVLINK_MSG_ID_HEARTBEAT)
                slot[1] = self.t + slot[0]
            if self.t == 0.0:
                self._send_banner()
                self._flush_texts()

    def _send_banner(self) -> None:
        # GCS_MAVLINK_Copter::send_banner (at boot and on every PARAM_REQUEST_LIST):
        # GCS_MAVLINK::send_banner's firmware string, then the frame and type.
        self.statustext(M.MAV_SEVERITY_INFO, FIRMWARE)
        self.statustext(M.MAV_SEVERITY_INFO, "Frame: QUAD/X")

    def on_disconnect(self) -> None:
        self.connected = False
        self._out.buffer.clear()

    @property
    def reboot_pending(self) -> bool:
        """True after an accepted MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN: the server sends
        what is queued (the COMMAND_ACK), closes the link as SITL's re-exec does, then
        calls :meth:`reboot`."""
        return self._reboot_pending

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
        try:
            messages = self._parser.parse_buffer(data) or []
        except Exception:  # noqa: BLE001 - pymavlink raises assorted errors on hostile input
            self._parser = self._new_parser()
            return
        for msg in messages:
            if msg.get_type() == "BAD_DATA":
                continue
            try:
                self._dispatch(msg)
            except (ValueError, TypeError, OverflowError, KeyError, IndexError, AttributeError,
                    M.MAVError):
                # A well-framed message with nonsense fields changes nothing.
                continue
            finally:
                self._flush_texts()

    def take_output(self) -> bytes:
        data = bytes(self._out.buffer)
        self._out.buffer.clear()
        return data

    def _send(self, msg: Any) -> None:
        if self.connected and self._radio_up:
            self._mav.send(msg)

    def statustext(self, severity: int, text: str) -> None:
        """Queue a STATUSTEXT; like ArduPilot's deferred send_text it goes out after the
        direct replies (COMMAND_ACK, MISSION_ACK) of the message being handled."""
        data = text.encode()
        if len(data) <= 50:
            self._defer(self._mav.statustext_encode(severity, data))
            return
        # GCS::send_textv: a longer text goes out in 50-byte chunks sharing a non-zero
        # id, chunk_seq from 0; the last chunk is shorter (NUL-terminated).
        self._text_id = self._text_id % 0xFFFF + 1
        chunks = [data[i:i + 50] for i in range(0, len(data), 50)]
        if len(chunks[-1]) == 50:
            chunks.append(b"")
        for seq, chunk in enumerate(chunks):
            self._defer(self._mav.statustext_encode(severity, chunk, self._text_id, seq))

    def _defer(self, msg: Any) -> None:
        self._texts.append(msg)

    def _emit_deferred(self, msgid: int) -> None:
        """Queue a message the way GCS_MAVLINK::send_message(ap_message) does: it goes
        out after the direct reply to the message being handled."""
        builder = _BUILDERS.get(msgid)
        msg = builder(self) if builder is not None else None
        if msg is not None:
            self._defer(msg)

    def _flush_texts(self) -> None:
        texts, self._texts = self._texts, []
        for msg in texts:
            self._send(msg)

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
            self._flush_texts()
        if self.t + STEP_S <= target:  # hopelessly behind: skip ahead rather than spiral
            self._steps = int(target / STEP_S)
            self.t = self._steps * STEP_S

    @property
    def ready(self) -> bool:
        return self.boot_time is not None and self.t >= self.config.time_to_ready_s

    @property
    def gps_fix(self) -> bool:
        return self.boot_time is not None and self.t >= self.config.time_to_ready_s * _GPS_FIX_FRACTION

    def _due(self) -> None:
        t = self.t
        if self.gps_fix and not self._gps_fix_announced:
            self._gps_fix_announced = True
            self.statustext(M.MAV_SEVERITY_INFO, "GPS 1: detected u-blox")
        if self.ready and not self._ready_announced:
            self._ready_announced = True
            self.statustext(M.MAV_SEVERITY_INFO, "EKF3 IMU0 origin set")
            self.statustext(M.MAV_SEVERITY_INFO, "EKF3 IMU0 is using GPS")
            self._emit_deferred(M.MAVLINK_MSG_ID_HOME_POSITION)  # GCS::send_home_all when home is set
        if self._radio is not None and t >= self._next_radio:
            self._next_radio = t + 1.0
            self._send_radio_status(t)
        for msgid, slot in list(self._intervals.items()):
            interval, due = slot
            if interval > 0 and t + 1e-9 >= due:
                # Keep the phase (due += interval) so the long-run rate is exact; if far
                # behind (stream just enabled), restart from now.
                slot[1] = due + interval if t - due < interval else t + interval
                self._emit(msgid)
        for protocol in self._protocols.values():
            protocol.update(t)

    # ------------------------------------------------------------------ geometry
    def _home_item(self) -> _mission.Item:
        c = self.config
        return _mission.Item(M.MAV_CMD_NAV_WAYPOINT, 0, x=round(c.home_lat * 1e7),
                             y=round(c.home_lon * 1e7), z=round(c.home_alt * 100) / 100.0)

    def _to_local(self, lat: float, lon: float) -> tuple[float, float]:
        c = self.config
        e, n, _ = pymap3d.geodetic2enu(lat, lon, c.home_alt, c.home_lat, c.home_lon, c.home_alt)
        return float(e), float(n)

    def latlon(self) -> tuple[float, float]:
        c = self.config
        lat, lon, _ = pymap3d.enu2geodetic(self.e, self.n, 0.0, c.home_lat, c.home_lon, c.home_alt)
        return float(lat), float(lon)

    def _item_target(self, item: _mission.Item) -> tuple[float, float, float]:
        """A mission item's location in the local frame; 0 lat/lon or 0 alt mean 'here'
        (ModeAuto::loc_from_cmd)."""
        if item.x == 0 and item.y == 0:
            e, n = self.e, self.n
        else:
            e, n = self._to_local(item.x / 1e7, item.y / 1e7)
        if item.z == 0:
            u = self.u
        elif item.frame in _mission.AMSL_FRAMES:
            u = item.z - self.config.home_alt
        else:  # relative, or terrain (flat ground at home altitude)
            u = item.z
        return e, n, u

    # ------------------------------------------------------------------ physics
    def _speed(self) -> float:
        if self._speed_override is not None:
            return self._speed_override
        return self.params["WPNAV_SPEED"] / 100.0

    def _step(self, dt: float) -> None:
        self._navigate(dt)
        self._drain_battery(dt)
        if self.boot_time is not None and self.ready:  # the fence needs a position
            self._check_fence()
        if self.armed:
            self._check_auto_disarm()

    def _navigate(self, dt: float) -> None:
        nav = self._nav
        waiting_for_auto_armed = self.mode == AUTO and self.landed and not self._auto_armed
        if not self.armed or waiting_for_auto_armed or (self.landed and nav.kind not in ("takeoff",)):
            self.ve = self.vn = self.vu = 0.0
            self.ae = self.an = 0.0
            self.throttle = 0.0 if not self.armed else 0.1
            if nav.kind == "takeoff" and not self.armed and self.mode != AUTO:
                self._nav = _Nav("hold")
            return
        if nav.kind == "rtl":
            self._rtl_phase()
            nav = self._nav
        if nav.kind == "velocity":
            if self.t - (nav.arrived_at or 0.0) < _GUIDED_TIMEOUT_S:
                self._fly_velocity(dt, *nav.vel)
                return
            # ModeGuided: no new velocity target within GUID_TIMEOUT -> stop and hold
            self._nav = nav = _Nav("hold", self.e, self.n, self.u)
        te, tn, tu = nav.e, nav.n, nav.u
        h_speed = self._speed()
        if nav.kind == "rtl" and self.params["RTL_SPEED"] > 0:
            h_speed = self.params["RTL_SPEED"] / 100.0
        if nav.kind in ("land",) or (nav.kind == "rtl" and nav.phase == "land"):
            high = self.params["LAND_SPEED_HIGH"] or self.params["WPNAV_SPEED_DN"]
            rate = (high if self.u > _LAND_ALT_LOW_M else self.params["LAND_SPEED"]) / 100.0
            tu = -1.0  # below ground: descend until touchdown
            v_limit_dn = rate
        else:
            v_limit_dn = self.params["WPNAV_SPEED_DN"] / 100.0
        accel = self.params["WPNAV_ACCEL"] / 100.0
        # horizontal: accelerate toward the target, braking so as to stop on it
        de, dn = te - self.e, tn - self.n
        dist = math.hypot(de, dn)
        if dist > 1e-6:
            v_des = min(h_speed, math.sqrt(2.0 * accel * dist))
            de_v, dn_v = de / dist * v_des, dn / dist * v_des
        else:
            de_v = dn_v = 0.0
        self._accelerate_horizontally(de_v, dn_v, accel, dt)
        step_e, step_n = self.ve * dt, self.vn * dt
        if dist > 1e-6 and math.hypot(step_e, step_n) >= dist and dist < 0.5:
            self.e, self.n, self.ve, self.vn = te, tn, 0.0, 0.0  # settle on the target
        else:
            self.e += step_e
            self.n += step_n
        self._face_the_track()
        # vertical
        du = tu - self.u
        up, dn_lim = self.params["WPNAV_SPEED_UP"] / 100.0, v_limit_dn
        v_target = max(-dn_lim, min(up, math.copysign(math.sqrt(2.0 * accel * abs(du)), du)))
        self.vu += max(-accel * dt, min(accel * dt, v_target - self.vu))
        new_u = self.u + self.vu * dt
        if (tu - self.u) * (tu - new_u) <= 0 and abs(du) < 0.5:
            new_u, self.vu = tu, 0.0
        self.u = new_u
        if self.u <= 0.0 and self.vu <= 0.0:
            self.u = 0.0
            self.vu = 0.0
            if nav.kind != "takeoff":  # a takeoff starting from the ground is not a landing
                self._touchdown()
                return
        else:
            self.landed = False
        self._set_throttle()
        self._nav_progress()

    def _fly_velocity(self, dt: float, ve: float, vn: float, vu: float) -> None:
        """GUIDED velocity control: accelerate toward the target velocity, within
        WPNAV_ACCEL and the WPNAV speed limits; the ground stops a descent."""
        accel = self.params["WPNAV_ACCEL"] / 100.0
        h_max = self._speed()
        h = math.hypot(ve, vn)
        if h > h_max > 0:
            ve, vn = ve / h * h_max, vn / h * h_max
        vu = max(-self.params["WPNAV_SPEED_DN"] / 100.0, min(self.params["WPNAV_SPEED_UP"] / 100.0, vu))
        self._accelerate_horizontally(ve, vn, accel, dt)
        self.vu += max(-accel * dt, min(accel * dt, vu - self.vu))
        self.e += self.ve * dt
        self.n += self.vn * dt
        self.u += self.vu * dt
        self._face_the_track()
        self._set_throttle()
        if self.u <= 0.0 and self.vu <= 0.0:
            self.u = 0.0
            self._nav = _Nav("hold", self.e, self.n, 0.0)
            self._touchdown()

    def _accelerate_horizontally(self, ve: float, vn: float, accel: float, dt: float) -> None:
        """Move the horizontal velocity toward (ve, vn) by at most ``accel * dt``."""
        dve, dvn = ve - self.ve, vn - self.vn
        dv = math.hypot(dve, dvn)
        if dv > accel * dt:
            dve, dvn = dve / dv * accel * dt, dvn / dv * accel * dt
        self.ve += dve
        self.vn += dvn
        self.ae, self.an = dve / dt, dvn / dt  # for the attitude a multicopter needs to accelerate

    def _face_the_track(self) -> None:
        if math.hypot(self.ve, self.vn) > 0.3:
            self.yaw = math.atan2(self.ve, self.vn)

    def _set_throttle(self) -> None:
        """Hover throttle, more while climbing and less while descending."""
        up = self.params["WPNAV_SPEED_UP"] / 100.0
        self.throttle = max(0.0, min(1.0, _HOVER_THROTTLE * (1.0 + 0.3 * self.vu / max(up, 0.1))))

    def _touchdown(self) -> None:
        self.landed = True
        self.ve = self.vn = self.vu = 0.0
        nav = self._nav
        if nav.kind == "land" or (nav.kind == "rtl" and nav.phase == "land"):
            # LAND and RTL disarm once the land detector sees touchdown.
            seq = nav.item_seq
            self._nav = _Nav("hold", self.e, self.n, 0.0)
            self.disarm("landed")
            if self.mode == AUTO and seq >= 0:
                self._command_complete(seq)

    def _rtl_phase(self) -> None:
        """ModeRTL's stages: climb to RTL_ALT, return, loiter RTL_LOIT_TIME, land."""
        nav = self._nav
        rtl_alt = self.params["RTL_ALT"] / 100.0
        if nav.phase == "climb":
            target_u = max(self.u, rtl_alt) if nav.u == 0 else nav.u
            nav.u = target_u
            nav.e, nav.n = self.e, self.n
            if abs(self.u - target_u) < 0.5:
                nav.phase = "return"
                nav.e, nav.n = 0.0, 0.0
        elif nav.phase == "return":
            nav.e, nav.n = 0.0, 0.0
            if math.hypot(self.e, self.n) <= self.params["WPNAV_RADIUS"] / 100.0 and abs(self.ve) + abs(self.vn) < 0.5:
                nav.phase = "loiter"
                nav.arrived_at = self.t
        elif nav.phase == "loiter":
            if self.t - (nav.arrived_at or self.t) >= self.params["RTL_LOIT_TIME"] / 1000.0:
                nav.phase = "land"

    def _drain_battery(self, dt: float) -> None:
        c = self.config
        if not self.armed:
            current = c.battery_idle_current_a
        elif self.landed:
            current = c.battery_idle_current_a + 0.1 * c.battery_hover_current_a
        else:
            current = c.battery_idle_current_a + c.battery_hover_current_a * (self.throttle / _HOVER_THROTTLE) ** 1.5
        self._current_a = current
        self._mah_used = min(c.battery_capacity_mah, self._mah_used + current * dt / 3.6)

    @property
    def battery_remaining(self) -> float:
        cap = self.config.battery_capacity_mah
        return max(0.0, 100.0 * (1.0 - self._mah_used / cap))

    @property
    def battery_voltage(self) -> float:
        c = self.config
        frac = self.battery_remaining / 100.0
        return c.battery_voltage_empty + (c.battery_voltage_full - c.battery_voltage_empty) * frac - 0.01 * self._current_a

    def _check_auto_disarm(self) -> None:
        """Copter::auto_disarm_check: landed with motors at idle for DISARM_DELAY s."""
        delay = self.params["DISARM_DELAY"]
        taking_off = self._nav.kind == "takeoff" and (self.mode != AUTO or self._auto_armed)
        if not self.landed or taking_off or delay <= 0:
            self._landed_armed_since = None
            return
        if self._landed_armed_since is None:
            self._landed_armed_since = self.t
        elif self.t - self._landed_armed_since >= delay:
            self.disarm("auto disarm")

    # ------------------------------------------------------------------ fence
    def _rebuild_fence(self) -> None:
        self._exclusions, self._inclusions = [], []
        items = self.fences.items
        i = 0
        while i < len(items):
            item = items[i]
            if item.command in (M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION,
                                M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION):
                count = int(item.param1)
                ring = [self._to_local(v.x / 1e7, v.y / 1e7) for v in items[i:i + count]]
                poly = shapely.Polygon(ring)
                shapely.prepare(poly)
                target = (self._exclusions if item.command == M.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION
                          else self._inclusions)
                target.append(poly)
                i += count
                continue
            if item.command in (M.MAV_CMD_NAV_FENCE_CIRCLE_EXCLUSION, M.MAV_CMD_NAV_FENCE_CIRCLE_INCLUSION):
                e, n = self._to_local(item.x / 1e7, item.y / 1e7)
                circle = shapely.Point(e, n).buffer(item.param1, quad_segs=16)
                shapely.prepare(circle)
                (self._exclusions if item.command == M.MAV_CMD_NAV_FENCE_CIRCLE_EXCLUSION
                 else self._inclusions).append(circle)
            i += 1

    def _fence_violation(self) -> tuple[int, str]:
        """(FENCE_BREACH, fence name as AC_Fence::get_fence_names spells it), (0, "") when inside."""
        ftype = int(self.params["FENCE_TYPE"])
        if ftype & 1 and self.u >= self.params["FENCE_ALT_MAX"]:
            return M.FENCE_BREACH_MAXALT, "Max Alt"
        if ftype & 2 and math.hypot(self.e, self.n) >= self.params["FENCE_RADIUS"]:
            return M.FENCE_BREACH_BOUNDARY, "Circle"
        if ftype & 4:
            if any(shapely.contains_xy(p, self.e, self.n) for p in self._exclusions):
                return M.FENCE_BREACH_BOUNDARY, "Polygon"
            if any(not shapely.contains_xy(p, self.e, self.n) for p in self._inclusions):
                return M.FENCE_BREACH_BOUNDARY, "Polygon"
        return 0, ""

    def _fence_breach_distance(self, breach_name: str) -> float:
        """AC_Fence::get_breach_distance: metres outside the altitude or circle fence
        (polygons report 0)."""
        if breach_name == "Max Alt":
            return self.u - self.params["FENCE_ALT_MAX"]
        if breach_name == "Circle":
            return math.hypot(self.e, self.n) - self.params["FENCE_RADIUS"]
        return 0.0

    def _check_fence(self) -> None:
        """AC_Fence::check + Copter::fence_check. Breaches are tracked whenever the fence
        is enabled, armed or not (so arming inside one is refused); only an armed copter
        acts on a new one: landed it disarms, in the air FENCE_ACTION picks the mode,
        and more than 100 m outside (AC_FENCE_GIVE_UP_DISTANCE) it lands."""
        if self.params["FENCE_ENABLE"] < 1:
            self.fence_breached = 0
            return
        breach, name = self._fence_violation()
        if breach and not self.fence_breached:
            self.fence_breached = breach
            self._fence_breach_name = name
            self.fence_breach_count += 1
            self._fence_breach_time_ms = int(self.t * 1000)
            if self.armed and not self.landed:
                self.statustext(M.MAV_SEVERITY_NOTICE, f"{name} fence breached")  # print_fence_message
            self._emit_deferred(M.MAVLINK_MSG_ID_FENCE_STATUS)  # AC_Fence::record_breach
            if not self.armed:
                return  # "we still don't do anything when disarmed"
            action = int(self.params["FENCE_ACTION"])
            if action == 0:
                return  # REPORT_ONLY
            if self.landed:
                self.disarm("fence")
                return
            far = self._fence_breach_distance(name) > 100.0
            for mode in (LAND,) if far else _FENCE_ACTION_MODES.get(action, (RTL, LAND)):
                if self.set_mode(mode):
                    break
        elif not breach and self.fence_breached:
            self.fence_breached = 0
            if self.armed and not self.landed:
                self.statustext(M.MAV_SEVERITY_NOTICE, "Fence breach cleared")  # Copter::fence_check
            self._emit_deferred(M.MAVLINK_MSG_ID_FENCE_STATUS)

    # ------------------------------------------------------------------ modes and arming
    def set_mode(self, mode: int) -> bool:
        """Copter::set_mode: unknown modes and position-less modes are refused with a STATUSTEXT."""
        name = _MODE_TEXT_NAMES.get(mode, MODES.get(mode))
        if name is None:
            self.statustext(M.MAV_SEVERITY_WARNING, f"No such mode {mode}")
            return False
        if mode == self.mode:
            return True
        # Copter::set_mode: ignore_checks = !armed -- a disarmed copter may enter any mode
        # ("we rely on the arming check"); the checks below apply only when armed.
        if self.armed and mode in _REQUIRES_POSITION and not self.ready:
            self.statustext(M.MAV_SEVERITY_WARNING, f"Mode change to {name} failed: requires position")
            return False
        if mode == AUTO and self.armed:
            # ModeAuto::init: a mission must be present, and from the ground it must
            # start with a takeoff
            if len(self.missions.items) <= 1:
                self.statustext(M.MAV_SEVERITY_WARNING, f"Mode change to {name} failed: init failed")
                return False
            if self.landed and not self._starts_with_takeoff():
                self.statustext(M.MAV_SEVERITY_CRITICAL, "Auto: Missing Takeoff Cmd")
                self.statustext(M.MAV_SEVERITY_WARNING, f"Mode change to {name} failed: init failed")
                return False
        previous = self.mode
        self.mode = mode
        self._paused = None
        self._speed_override = None if previous == AUTO or mode == AUTO else self._speed_override
        self._enter_mode(mode)
        return True

    def _enter_mode(self, mode: int) -> None:
        flying = self.armed and not self.landed
        if mode == AUTO:
            # ModeAuto::init starts or resumes the mission at once; on the ground the
            # copter then waits for auto_armed (MAV_CMD_MISSION_START in SITL: no RC throttle)
            if flying:
                self._auto_armed = True
            self._mission_start_or_resume()
            return
        if self.mission_state == "running":
            self.mission_state = "stopped"
        if mode in (RTL, SMART_RTL, AUTO_RTL):
            if flying:
                self._nav = _Nav("rtl", self.e, self.n, 0.0, phase="climb")
            return
        if mode == LAND:
            if flying:
                self._nav = _Nav("land", self.e, self.n, 0.0)
            elif self.armed:
                self.disarm("land")
            return
        # GUIDED, LOITER and the manual modes: hold where we are (no RC input in SITL).
        self._nav = _Nav("hold", self.e, self.n, self.u)

    def _starts_with_takeoff(self) -> bool:
        """AP_Mission::starts_with_takeoff_cmd: the first nav command, skipping do-commands
        and NAV_DELAY, is a takeoff."""
        for item in self.missions.items[1:]:
            if item.command in _mission.NAV_COMMANDS and item.command != M.MAV_CMD_NAV_DELAY:
                return item.command == M.MAV_CMD_NAV_TAKEOFF
        return False

    def try_arm(self, force: bool) -> bool:
        """AP_Arming::arm from MAVLink; failures go out as "Arm: ..." STATUSTEXTs."""
        if self.armed:
            return True
        if not force:
            reason = None
            if self.mode in _NOT_ARMABLE:
                reason = "Mode not armable"
            elif self.params["ARMING_CHECK"] != 0 and not self.ready:
                reason = "Need Position Estimate"
            elif self.mode in _REQUIRES_POSITION and not self.ready:
                reason = "Need Position Estimate"
            elif self.battery_remaining <= 0:
                reason = "Battery 1 below minimum arming capacity"
            elif self.params["FENCE_ENABLE"] >= 1 and self.fence_breached:
                # AP_Arming::fence_checks -> AC_Fence::pre_arm_check
                reason = f"Vehicle breaching {self._fence_breach_name} fence"
            if reason is not None:
                self.statustext(M.MAV_SEVERITY_CRITICAL, f"Arm: {reason}")
                return False
        self.armed = True
        self._auto_armed = False
        self._landed_armed_since = None
        self._nav = _Nav("hold", self.e, self.n, self.u)
        return True

    def disarm(self, reason: str) -> None:
        if not self.armed:
            return
        self.armed = False
        self._auto_armed = False
        self.throttle = 0.0
        self._landed_armed_since = None
        if reason in ("landed", "auto disarm", "land"):
            self.statustext(M.MAV_SEVERITY_INFO, "Disarming motors")

    # ------------------------------------------------------------------ mission execution
    def _mission_changed(self) -> None:
        count = len(self.missions.items)
        if self.mission_index >= count:
            self.mission_index = 1
            if self.mission_state == "running":
                self.mission_state = "complete" if count <= 1 else "stopped"

    def _mission_start_or_resume(self) -> None:
        if len(self.missions.items) <= 1:
            self.mission_state = "complete"
            self._nav = _Nav("hold", self.e, self.n, self.u)
            self._emit_deferred(M.MAVLINK_MSG_ID_MISSION_CURRENT)
            return
        if self.mission_state == "complete" or not self._mission_started:
            self.mission_index = 1
            self._jump_counts.clear()
        self.mission_state = "running"
        self._mission_started = True
        self._start_commands_from(self.mission_index)

    def _start_commands_from(self, index: int) -> None:
        """AP_Mission::advance_current_nav_cmd: run do-commands, follow jumps, start the next nav."""
        items = self.missions.items
        guard = 0
        while guard < 10 * len(items) + 10:
            guard += 1
            if index >= len(items):
                self._mission_complete()
                return
            item = items[index]
            if item.command == M.MAV_CMD_DO_JUMP:
                target, repeat = int(item.param1), int(item.param2)
                done = self._jump_counts.get(index, 0)
                if repeat < 0 or done < repeat:
                    self._jump_counts[index] = done + 1
                    index = target
                else:
                    index += 1
                continue
            # AP_Mission::start_command announces every command it starts
            self.statustext(M.MAV_SEVERITY_INFO, f"Mission: {index} {_COMMAND_NAMES.get(item.command, '?')}")
            if item.command in _mission.NAV_COMMANDS:
                self.mission_index = index
                self._emit_deferred(M.MAVLINK_MSG_ID_MISSION_CURRENT)
                self._start_nav(index, item)
                return
            # do-commands complete at once (ModeAuto::verify_command), except speed is applied
            if item.command == M.MAV_CMD_DO_CHANGE_SPEED and item.param2 > 0:
                self._speed_override = float(item.param2)
            self._command_complete(index, advance=False)
            index += 1
        self._mission_complete()

    def _start_nav(self, seq: int, item: _mission.Item) -> None:
        e, n, u = self._item_target(item)
        cmd = item.command
        if cmd == M.MAV_CMD_NAV_TAKEOFF:
            self._nav = _Nav("takeoff", self.e, self.n, max(u, 1.0) if item.z else max(self.u, 1.0), item_seq=seq)
            if not self.landed and self.u >= self._nav.u - 0.5:
                self._command_complete(seq)
        elif cmd == M.MAV_CMD_NAV_RETURN_TO_LAUNCH:
            self._nav = _Nav("rtl", self.e, self.n, 0.0, phase="climb", item_seq=seq)
        elif cmd == M.MAV_CMD_NAV_LAND:
            self._nav = _Nav("goto", e, n, self.u, phase="land-approach", item_seq=seq)
            if item.x == 0 and item.y == 0:
                self._nav = _Nav("land", self.e, self.n, 0.0, item_seq=seq)
        elif cmd == M.MAV_CMD_NAV_DELAY:
            self._nav = _Nav("goto", self.e, self.n, self.u, hold_s=max(0.0, item.param1), item_seq=seq)
            self._nav.arrived_at = self.t
        else:
            hold = 0.0
            if cmd in (M.MAV_CMD_NAV_WAYPOINT, M.MAV_CMD_NAV_SPLINE_WAYPOINT, M.MAV_CMD_NAV_LOITER_TIME):
                hold = max(0.0, item.param1)
            elif cmd == M.MAV_CMD_NAV_LOITER_TURNS:
                hold = max(0.0, item.param1) * 2 * math.pi * 10.0 / 5.0  # 10 m circles at 5 m/s
            elif cmd == M.MAV_CMD_NAV_LOITER_UNLIM:
                hold = math.inf
            self._nav = _Nav("goto", e, n, u, hold_s=hold, item_seq=seq, command=cmd)

    def _nav_progress(self) -> None:
        """ModeAuto::verify_command for the nav command in progress."""
        nav = self._nav
        if self.mode != AUTO or self.mission_state != "running" or nav.item_seq < 0:
            if nav.kind == "takeoff" and abs(self.u - nav.u) < 0.1:
                self._nav = _Nav("hold", self.e, self.n, nav.u)
            return
        if nav.kind == "takeoff":
            if abs(self.u - nav.u) < 0.1:
                self._command_complete(nav.item_seq)
            return
        if nav.kind != "goto":
            return
        radius = self.params["WPNAV_RADIUS"] / 100.0
        if nav.arrived_at is None:
            if math.hypot(nav.e - self.e, nav.n - self.n) <= radius and abs(nav.u - self.u) <= 1.0:
                nav.arrived_at = self.t
                if nav.phase == "land-approach":
                    self._nav = _Nav("land", self.e, self.n, 0.0, item_seq=nav.item_seq)
                    return
                if nav.hold_s > 0 and nav.command == M.MAV_CMD_NAV_WAYPOINT:
                    self._defer(self._mav.mission_item_reached_encode(nav.item_seq))
            else:
                return
        if self.t - nav.arrived_at >= nav.hold_s:
            if nav.command in _REACHED_TEXT_COMMANDS:
                # ModeAuto::verify_nav_wp / verify_loiter_time
                self.statustext(M.MAV_SEVERITY_INFO, f"Reached command #{nav.item_seq}")
            self._command_complete(nav.item_seq)

    def _command_complete(self, seq: int, advance: bool = True) -> None:
        self._defer(self._mav.mission_item_reached_encode(seq))
        if advance and self.mode == AUTO and self.mission_state == "running":
            self._start_commands_from(seq + 1)

    def _mission_complete(self) -> None:
        self.mission_state = "complete"
        if self.armed and not self.landed and self._nav.kind not in ("land", "rtl"):
            self._nav = _Nav("hold", self.e, self.n, self.u)
        self._emit_deferred(M.MAVLINK_MSG_ID_MISSION_CURRENT)

    def set_mission_current(self, seq: int) -> bool:
        """AP_Mission::set_current_cmd: jump now when running, else remember for resume."""
        count = len(self.missions.items)
        if count <= 1 or seq >= count or seq < 0:
            return False
        seq = max(seq, 1)
        self.mission_index = seq
        self._paused = None
        if self.mode == AUTO and self.armed and not self.landed:
            self.mission_state = "running"
            self._mission_started = True
            self._start_commands_from(seq)
        else:
            if self.mission_state == "complete":
                self.mission_state = "stopped"
            self._emit_deferred(M.MAVLINK_MSG_ID_MISSION_CURRENT)
        return True

    # ------------------------------------------------------------------ incoming messages
    def _dispatch(self, msg: Any) -> None:
        # MAVLink_routing::check_and_forward: the autopilot handles a message addressed to
        # it (system and component, 0 = broadcast); one for another component of this
        # system (a gimbal, a camera) is forwarded, not handled.
        target = getattr(msg, "target_system", None)
        if target is not None and target not in (0, self.sysid):
            return
        component = getattr(msg, "target_component", None)
        if target not in (None, 0) and component not in (None, 0, M.MAV_COMP_ID_AUTOPILOT1):
            return
        name = msg.get_type()
        handler = getattr(self, "_on_" + name, None)
        if handler is not None:
            handler(msg)

    def _protocol(self, msg: Any) -> Any:
        protocol = self._protocols.get(getattr(msg, "mission_type", 0))
        if protocol is None:
            self._send(self._mav.mission_ack_encode(msg.get_srcSystem(), msg.get_srcComponent(),
                                                    M.MAV_MISSION_UNSUPPORTED, msg.mission_type))
        return protocol

    def _on_MISSION_COUNT(self, msg: Any) -> None:
        if (p := self._protocol(msg)) is not None:
            p.handle_count(msg, self.t)

    def _on_MISSION_ITEM_INT(self, msg: Any) -> None:
        p = self._protocol(msg)
        if p is None:
            return
        if p.receiving:
            p.handle_item(msg, self.t)
        elif msg.current == 2 and msg.mission_type == M.MAV_MISSION_TYPE_MISSION:
            self._guided_goto_item(msg)
        else:
            self._send(self._mav.mission_ack_encode(msg.get_srcSystem(), msg.get_srcComponent(),
                                                    M.MAV_MISSION_ERROR, msg.mission_type))

    _on_MISSION_ITEM = _on_MISSION_ITEM_INT

    def _on_MISSION_REQUEST_LIST(self, msg: Any) -> None:
        if (p := self._protocol(msg)) is not None:
            p.handle_request_list(msg)

    def _on_MISSION_REQUEST_INT(self, msg: Any) -> None:
        if (p := self._protocol(msg)) is not None:
            current = self.mission_index if p is self.missions and self._mission_started else -1
            p.handle_request(msg, current)

    _on_MISSION_REQUEST = _on_MISSION_REQUEST_INT

    def _on_MISSION_CLEAR_ALL(self, msg: Any) -> None:
        if (p := self._protocol(msg)) is not None:
            p.handle_clear_all(msg)

    def _on_MISSION_SET_CURRENT(self, msg: Any) -> None:
        # GCS_MAVLINK::handle_mission_set_current: no ACK; on success a MISSION_CURRENT
        # echoing exactly the requested seq (GCSs use it as the ACK), on failure nothing.
        if self.set_mission_current(msg.seq):
            self._send(self._mission_current_msg(msg.seq))

    def _on_SET_MODE(self, msg: Any) -> None:
        # The SET_MODE message is obeyed without any COMMAND_ACK (GCS_MAVLINK::handle_set_mode).
        if msg.base_mode & M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED:
            self.set_mode(msg.custom_mode)

    def _on_PARAM_REQUEST_LIST(self, msg: Any) -> None:
        # GCS_MAVLINK::handle_param_request_list: send_banner() first ("a convenient
        # way to get extra information"), then every parameter with its index.
        self._send_banner()
        self._flush_texts()
        for name in self.params.names():
            self._send_param(name, self.params.index(name))

    def _on_PARAM_REQUEST_READ(self, msg: Any) -> None:
        # GCS_MAVLINK::param_io_timer: the reply carries the request's param_index, so
        # a read by name (index -1) is answered with param_index -1 (65535 on the wire).
        names = self.params.names()
        if msg.param_index != -1:
            if 0 <= msg.param_index < len(names):
                self._send_param(names[msg.param_index], msg.param_index)
            return
        name = _param_name(msg.param_id)
        if name in names:
            self._send_param(name, -1)

    def _on_PARAM_SET(self, msg: Any) -> None:
        name = _param_name(msg.param_id)
        if self.params.set(name, msg.param_value) is None:
            return  # unknown name or NaN: ArduPilot ignores it without a reply
        # AP_Param::save -> GCS::send_parameter_value: param_index -1 (65535)
        self._send_param(name, -1)

    def _send_param(self, name: str, index: int) -> None:
        self._send(self._mav.param_value_encode(name.encode(), self.params[name], self.params.ptype(name),
                                                len(self.params), index & 0xFFFF))

    def _on_REQUEST_DATA_STREAM(self, msg: Any) -> None:
        # GCS_MAVLINK::handle_request_data_stream: start_stop other than 0/1 is ignored
        group = STREAM_GROUPS.get(msg.req_stream_id)
        if group is None or msg.start_stop not in (0, 1):
            return
        rate = msg.req_message_rate if msg.start_stop else 0
        for msgid in group:
            self._set_interval(msgid, 1.0 / rate if rate > 0 else 0.0)

    def _guided_target_ok(self) -> bool:
        # GCS_MAVLINK_Copter::handle_message: targets are ignored unless the mode is a
        # guided one; the simulator moves only a flying copter.
        return self.mode == GUIDED and self.armed and not self.landed

    def _on_SET_POSITION_TARGET_GLOBAL_INT(self, msg: Any) -> None:
        """handle_set_position_target_global_int: GLOBAL(_INT), RELATIVE_ALT(_INT) and
        TERRAIN_ALT(_INT) frames; a position (velocity as feed-forward ignored here) or,
        with the position bits masked, a velocity target (NED, m/s)."""
        if not self._guided_target_ok() or msg.coordinate_frame not in _mission.GLOBAL_FRAMES:
            return
        pos_ignore, vel_ignore = _ignored(msg.type_mask)
        if not pos_ignore:
            self._guided_goto(msg.lat_int / 1e7, msg.lon_int / 1e7, msg.alt, msg.coordinate_frame)
        elif not vel_ignore:
            self._guided_velocity(msg.vy, msg.vx, -msg.vz)

    def _on_SET_POSITION_TARGET_LOCAL_NED(self, msg: Any) -> None:
        """handle_set_position_target_local_ned: LOCAL_NED (from the EKF origin, here
        home), LOCAL_OFFSET_NED (from the vehicle), BODY_NED (velocity in the heading
        frame) and BODY_OFFSET_NED (position offset in the heading frame)."""
        frame = msg.coordinate_frame
        if not self._guided_target_ok() or frame not in (M.MAV_FRAME_LOCAL_NED, M.MAV_FRAME_LOCAL_OFFSET_NED,
                                                         M.MAV_FRAME_BODY_NED, M.MAV_FRAME_BODY_OFFSET_NED):
            return
        values = (msg.x, msg.y, msg.z, msg.vx, msg.vy, msg.vz)
        if not all(math.isfinite(v) for v in values):
            return
        pos_ignore, vel_ignore = _ignored(msg.type_mask)

        def rotate(x: float, y: float) -> tuple[float, float]:
            if frame in (M.MAV_FRAME_BODY_NED, M.MAV_FRAME_BODY_OFFSET_NED):  # forward, right -> N, E
                c, s_ = math.cos(self.yaw), math.sin(self.yaw)
                return x * c - y * s_, x * s_ + y * c
            return x, y

        if not pos_ignore:
            n, e = rotate(msg.x, msg.y)
            if frame == M.MAV_FRAME_LOCAL_NED:
                self._nav = _Nav("hold", e, n, -msg.z)
            else:  # offsets from where the vehicle is now
                self._nav = _Nav("hold", self.e + e, self.n + n, self.u - msg.z)
        elif not vel_ignore:
            vn, ve = rotate(msg.vx, msg.vy)
            self._guided_velocity(ve, vn, -msg.vz)

    def _guided_velocity(self, ve: float, vn: float, vu: float) -> None:
        if all(math.isfinite(v) for v in (ve, vn, vu)):
            self._nav = _Nav("velocity", self.e, self.n, self.u, vel=(ve, vn, vu))
            self._nav.arrived_at = self.t  # when the target was set, for GUID_TIMEOUT

    def _guided_goto(self, lat: float, lon: float, alt: float, frame: int) -> bool:
        if not (abs(lat) <= 90 and abs(lon) <= 180 and math.isfinite(alt)):
            return False
        e, n = self._to_local(lat, lon)
        u = alt - self.config.home_alt if frame in _mission.AMSL_FRAMES else alt
        self._nav = _Nav("hold", e, n, u)
        return True

    def _guided_goto_item(self, msg: Any) -> None:
        item = _mission.item_from_message(msg)
        src = (msg.get_srcSystem(), msg.get_srcComponent())
        ok = (not isinstance(item, int) and self._guided_target_ok()
              and self._guided_goto(item.x / 1e7, item.y / 1e7, item.z, item.frame))
        self._send(self._mav.mission_ack_encode(*src, M.MAV_MISSION_ACCEPTED if ok else M.MAV_MISSION_ERROR,
                                                M.MAV_MISSION_TYPE_MISSION))

    def _on_COMMAND_LONG(self, msg: Any) -> None:
        params = (msg.param1, msg.param2, msg.param3, msg.param4, msg.param5, msg.param6, msg.param7)
        self._answer_command(msg, params, is_int=False, frame=M.MAV_FRAME_GLOBAL_RELATIVE_ALT)

    def _on_COMMAND_INT(self, msg: Any) -> None:
        params = (msg.param1, msg.param2, msg.param3, msg.param4, msg.x, msg.y, msg.z)
        self._answer_command(msg, params, is_int=True, frame=msg.frame)

    def _answer_command(self, msg: Any, p: tuple[float, ...], is_int: bool, frame: int) -> None:
        result = self._checked_command(msg.command, p, is_int, frame)
        self._send(self._mav.command_ack_encode(msg.command, result, 0, 0, msg.get_srcSystem(),
                                                msg.get_srcComponent()))

    def _checked_command(self, command: int, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        """Run a command through its _COMMANDS handler (UNSUPPORTED if none); parameters
        that cannot be what the command needs (NaN where an integer is expected, ...) get
        MAV_RESULT_DENIED and change nothing."""
        if any(isinstance(v, float) and math.isinf(v) for v in p):
            return M.MAV_RESULT_DENIED
        handler = _COMMANDS.get(command)
        if handler is None:
            return M.MAV_RESULT_UNSUPPORTED
        try:
            return handler(self, p, is_int, frame)
        except (ValueError, OverflowError):
            return M.MAV_RESULT_DENIED

    def _cmd_component_arm_disarm(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        force = abs(p[1] - _FORCE_MAGIC) < 0.5
        if p[0] == 1:
            return M.MAV_RESULT_ACCEPTED if self.try_arm(force) else M.MAV_RESULT_FAILED
        if p[0] == 0:
            if not self.armed:
                return M.MAV_RESULT_ACCEPTED
            if not self.landed and not force:
                return M.MAV_RESULT_FAILED  # in-flight disarm needs the force flag
            self.disarm("command")
            self.landed = self.u <= 0.0 or self.landed
            return M.MAV_RESULT_ACCEPTED
        return M.MAV_RESULT_FAILED

    def _cmd_do_set_mode(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        # GCS_MAVLINK::_set_mode_common: only custom modes; anything else DENIED;
        # custom_mode is (uint32_t)param2
        if not (int(p[0]) & M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED) or p[1] < 0:
            return M.MAV_RESULT_DENIED
        return M.MAV_RESULT_ACCEPTED if self.set_mode(int(p[1])) else M.MAV_RESULT_FAILED

    def _cmd_nav_takeoff(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        # handle_MAV_CMD_NAV_TAKEOFF: COMMAND_INT must use GLOBAL_RELATIVE_ALT
        if is_int and frame != M.MAV_FRAME_GLOBAL_RELATIVE_ALT:
            return M.MAV_RESULT_DENIED
        return self._user_takeoff(p[6])

    def _cmd_nav_return_to_launch(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        return M.MAV_RESULT_ACCEPTED if self.set_mode(RTL) else M.MAV_RESULT_FAILED

    def _cmd_nav_land(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        return M.MAV_RESULT_ACCEPTED if self.set_mode(LAND) else M.MAV_RESULT_FAILED

    def _cmd_mission_start(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        # GCS_MAVLINK_Copter::handle_MAV_CMD_MISSION_START: first/last item unsupported;
        # switch to AUTO, set auto_armed and start or resume the mission.
        if p[0] != 0 or p[1] != 0:
            return M.MAV_RESULT_DENIED
        if not self.set_mode(AUTO):
            return M.MAV_RESULT_FAILED
        self._auto_armed = True
        if self.mission_state != "running":
            self._mission_start_or_resume()
        return M.MAV_RESULT_ACCEPTED

    def _cmd_nav_loiter_unlim(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        return M.MAV_RESULT_ACCEPTED if self.set_mode(LOITER) else M.MAV_RESULT_FAILED

    def _cmd_do_pause_continue(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        return self._pause_continue(p[0])

    def _cmd_do_set_mission_current(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        if p[0] != int(p[0]):
            return M.MAV_RESULT_DENIED
        return M.MAV_RESULT_ACCEPTED if self.set_mission_current(int(p[0])) else M.MAV_RESULT_FAILED

    def _cmd_do_change_speed(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        # handle_MAV_CMD_DO_CHANGE_SPEED: speed must be > 0; horizontal speed types
        # (0 airspeed, 1 ground speed) in the modes that navigate
        if not p[1] > 0 or int(p[0]) not in (0, 1, 2, 3):
            return M.MAV_RESULT_DENIED
        if int(p[0]) > 1 or self.mode not in (AUTO, GUIDED, RTL, SMART_RTL):
            return M.MAV_RESULT_FAILED
        self._speed_override = float(p[1])
        return M.MAV_RESULT_ACCEPTED

    def _cmd_do_reposition(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        # handle_command_int_do_reposition: not GUIDED and no CHANGE_MODE flag -> DENIED;
        # a bad location -> DENIED; the target is set before the mode changes.
        lat, lon = (p[4] / 1e7, p[5] / 1e7) if is_int else (p[4], p[5])
        change_mode = bool(int(p[1]) & M.MAV_DO_REPOSITION_FLAGS_CHANGE_MODE)
        if self.mode != GUIDED and not change_mode:
            return M.MAV_RESULT_DENIED
        if not (abs(lat) <= 90 and abs(lon) <= 180 and math.isfinite(p[6])):
            return M.MAV_RESULT_DENIED
        if not self.armed or self.landed:
            return M.MAV_RESULT_FAILED  # the simulator only repositions a flying copter
        if self.mode != GUIDED and not self.set_mode(GUIDED):
            return M.MAV_RESULT_FAILED
        return M.MAV_RESULT_ACCEPTED if self._guided_goto(lat, lon, p[6], frame) else M.MAV_RESULT_DENIED

    def _cmd_do_fence_enable(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        if p[0] not in (0, 1):
            return M.MAV_RESULT_FAILED
        self.params.set("FENCE_ENABLE", p[0])
        return M.MAV_RESULT_ACCEPTED

    def _cmd_set_message_interval(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        return self._message_interval_command(p[0], p[1])

    def _cmd_preflight_reboot_shutdown(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        # GCS_MAVLINK::handle_preflight_reboot: param1 1 (reboot) or 3 (to the
        # bootloader, which SITL treats as a reboot); refused while armed.
        if p[0] not in (1.0, 3.0):
            return M.MAV_RESULT_UNSUPPORTED
        if self.armed:
            return M.MAV_RESULT_FAILED
        self._reboot_pending = True
        return M.MAV_RESULT_ACCEPTED

    def _cmd_get_message_interval(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        # GCS_MAVLINK::handle_command_get_message_interval: MESSAGE_INTERVAL goes out
        # before the ACK; 0 = not a message it can send, -1 = not streaming.
        msgid = int(p[0])
        slot = self._intervals.get(msgid)
        if msgid not in _PRODUCIBLE:
            self._send(self._mav.message_interval_encode(msgid & 0xFFFF, 0))  # not available
            return M.MAV_RESULT_FAILED
        if slot is None or slot[0] <= 0:
            interval_us = -1
        else:
            interval_us = round(slot[0] * 1000) * 1000  # ArduPilot keeps whole ms
        self._send(self._mav.message_interval_encode(msgid & 0xFFFF, interval_us))
        return M.MAV_RESULT_ACCEPTED

    def _cmd_condition_yaw(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        # GCS_MAVLINK_Copter::handle_MAV_CMD_CONDITION_YAW: angle 0..360, param4 0
        # (absolute) or 1 (relative, direction from param3), else FAILED.
        if not (0.0 <= p[0] <= 360.0 and p[3] in (0.0, 1.0)):
            return M.MAV_RESULT_FAILED
        if p[3] == 1.0:
            self.yaw += math.radians(p[0]) * (-1.0 if p[2] < 0 else 1.0)
        else:
            self.yaw = math.radians(p[0])
        self.yaw %= 2 * math.pi
        return M.MAV_RESULT_ACCEPTED

    def _cmd_request_message(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        # handle_command_request_message: an id with no ap_message is FAILED
        msgid = int(p[0])
        if msgid not in _PRODUCIBLE:
            return M.MAV_RESULT_FAILED
        self._emit_deferred(msgid)
        return M.MAV_RESULT_ACCEPTED

    def _cmd_request_autopilot_capabilities(self, p: tuple[float, ...], is_int: bool, frame: int) -> int:
        self._emit_deferred(M.MAVLINK_MSG_ID_AUTOPILOT_VERSION)
        return M.MAV_RESULT_ACCEPTED

    def _pause_continue(self, what: float) -> int:
        """MAV_CMD_DO_PAUSE_CONTINUE in AUTO: 0 holds position (MISSION_STATE_PAUSED), 1 resumes."""
        if what == 0:
            if self.mode == AUTO and self.mission_state == "running" and not self.landed and not self._paused:
                self._paused = self._nav
                self._nav = _Nav("hold", self.e, self.n, self.u)
                return M.MAV_RESULT_ACCEPTED
            self.statustext(M.MAV_SEVERITY_INFO, "Failed to pause")
            return M.MAV_RESULT_FAILED
        if what == 1:
            if self.mode == AUTO and self._paused:
                self._nav, self._paused = self._paused, None
                return M.MAV_RESULT_ACCEPTED
            self.statustext(M.MAV_SEVERITY_INFO, "Failed to resume")
            return M.MAV_RESULT_FAILED
        return M.MAV_RESULT_DENIED

    def _user_takeoff(self, alt: float) -> int:
        """Mode::do_user_takeoff: armed, landed, a takeoff-capable mode, a target above us."""
        if not (self.armed and self.landed and self.mode in _USER_TAKEOFF):
            return M.MAV_RESULT_FAILED
        if not math.isfinite(alt) or alt <= self.u or alt > 10_000:
            return M.MAV_RESULT_FAILED
        self._nav = _Nav("takeoff", self.e, self.n, float(alt))
        self.landed = False  # Mode::_TakeOff::start clears land_complete at once
        self._landed_armed_since = None
        return M.MAV_RESULT_ACCEPTED

    def _message_interval_command(self, msg_id: float, interval_us: float) -> int:
        """GCS_MAVLINK::set_message_interval: -1 stops, 0 restores the default, anything
        else below 1 ms is 1 ms (here the 50 Hz step), above 60 s is 60 s; an id with no
        ap_message is FAILED with "No ap_message for mavlink id (N)"."""
        msgid = int(msg_id)
        if msgid not in _PRODUCIBLE:
            self.statustext(M.MAV_SEVERITY_INFO, f"No ap_message for mavlink id ({msgid})")
            return M.MAV_RESULT_FAILED
        interval_us = int(interval_us)  # (int32_t)packet.param2
        if interval_us == -1:
            self._set_interval(msgid, 0.0)
        elif interval_us == 0:
            self._set_interval(msgid, 1.0 if msgid == M.MAVLINK_MSG_ID_HEARTBEAT else 0.0)
        else:
            self._set_interval(msgid, min(max(interval_us / 1e6, STEP_S), 60.0))
        return M.MAV_RESULT_ACCEPTED

    def _set_interval(self, msgid: int, interval_s: float) -> None:
        if interval_s <= 0:
            self._intervals.pop(msgid, None)
            return
        slot = self._intervals.get(msgid)
        if slot is None:
            self._intervals[msgid] = [interval_s, self.t]
        else:
            slot[0] = interval_s

    # ------------------------------------------------------------------ outgoing messages
    def _emit(self, msgid: int) -> None:
        builder = _BUILDERS.get(msgid)
        if builder is not None and self.connected:
            msg = builder(self)
            if msg is not None:  # e.g. HOME_POSITION before home is set
                self._send(msg)

    def _send_radio_status(self, t: float) -> None:
        assert self._radio is not None
        lat, lon = self.latlon()
        self._radio.observe_position(lat, lon, self.config.home_alt + self.u)
        sample = self._radio.report(t)
        self._radio_up = sample.link_up
        if sample.link_up and self.connected:
            self._radio_mav.send(self._radio_mav.radio_status_encode(
                sample.rssi, sample.remrssi, 100, sample.noise, sample.remnoise, 0, 0))

    def heartbeat(self) -> Any:
        """GCS_MAVLINK_Copter::base_mode / vehicle_system_status: STABILIZE_ENABLED and
        MANUAL_INPUT_ENABLED always (81 disarmed, 209 armed in STABILIZE), GUIDED_ENABLED
        in the position-controlled modes whether armed or not (the switch on the mode
        number); STANDBY while landed, ACTIVE in flight."""
        base = (M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | M.MAV_MODE_FLAG_STABILIZE_ENABLED
                | M.MAV_MODE_FLAG_MANUAL_INPUT_ENABLED)
        if self.mode in _GUIDED_ENABLED_MODES:
            base |= M.MAV_MODE_FLAG_GUIDED_ENABLED
        if self.armed:
            base |= M.MAV_MODE_FLAG_SAFETY_ARMED
        if self.t < _BOOT_STATUS_S:
            status = M.MAV_STATE_BOOT
        elif self.landed:
            status = M.MAV_STATE_STANDBY
        else:
            status = M.MAV_STATE_ACTIVE
        return self._mav.heartbeat_encode(M.MAV_TYPE_QUADROTOR, M.MAV_AUTOPILOT_ARDUPILOTMEGA,
                                          base, self.mode, status)

    def mission_current(self) -> Any:
        return self._mission_current_msg(self.mission_index)

    def _mission_current_msg(self, seq: int) -> Any:
        """GCS_MAVLINK::send_mission_current: total excludes home; mission_state maps
        AP_Mission's STOPPED/RUNNING/COMPLETE (so a mission left by a mode change reads
        NOT_STARTED); mission_mode is 1 in a mode that runs the mission (AUTO)."""
        total = max(0, len(self.missions.items) - 1)
        if total == 0:
            state = M.MISSION_STATE_NO_MISSION
        elif self._paused is not None:
            state = M.MISSION_STATE_PAUSED  # GCS_MAVLINK_Copter::mission_state
        elif self.mission_state == "running":
            state = M.MISSION_STATE_ACTIVE
        elif self.mission_state == "complete":
            state = M.MISSION_STATE_COMPLETE
        else:
            state = M.MISSION_STATE_NOT_STARTED
        return self._mav.mission_current_encode(seq if total else 0, total, state, 1 if self.mode == AUTO else 0)

    def state(self) -> VehicleState:
        lat, lon = self.latlon()
        mission_state = self.mission_current().mission_state
        return VehicleState(
            instance=self.config.instance, sysid=self.sysid, booted=self.boot_time is not None,
            ready=self.ready, armed=self.armed, mode=self.mode, mode_name=MODES[self.mode],
            landed=self.landed, lat=lat, lon=lon, alt_amsl=self.config.home_alt + self.u,
            relative_alt=self.u, groundspeed=math.hypot(self.ve, self.vn),
            battery_remaining_pct=self.battery_remaining, battery_voltage=self.battery_voltage,
            mission=tuple(self.missions.items[:1] and [self._home_item()] + self.missions.items[1:]),
            fence=tuple(self.fences.items), rally=tuple(self.rallies.items),
            mission_current=self.mission_index, mission_state=mission_state,
            fence_breached=bool(self.fence_breached), fence_breach_count=self.fence_breach_count,
            params=tuple((n, self.params[n]) for n in self.params.names()), connected=self.connected)


def _ignored(type_mask: int) -> tuple[bool, bool]:
    """POSITION_TARGET_TYPEMASK: (position ignored, velocity ignored), each when all three
    of its X/Y/Z bits are set."""
    return type_mask & _POS_IGNORE == _POS_IGNORE, type_mask & _VEL_IGNORE == _VEL_IGNORE


def _param_name(raw: Any) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", errors="replace")
    return str(raw).split("\x00", 1)[0]


def _boot_ms(v: SimVehicle) -> int:
    return int(v.t * 1000) & 0xFFFFFFFF


def _global_position_int(v: SimVehicle) -> Any:
    hdg = int(math.degrees(v.yaw) % 360 * 100)
    if not v.gps_fix:
        # GCS_MAVLINK::send_global_position_int sends global_position_current_loc, which
        # stays zero until the AHRS has a location (no GPS fix yet): 0,0 at 0 m.
        return v._mav.global_position_int_encode(_boot_ms(v), 0, 0, 0, 0, 0, 0, 0, hdg)
    lat, lon = v.latlon()
    return v._mav.global_position_int_encode(
        _boot_ms(v), round(lat * 1e7), round(lon * 1e7), round((v.config.home_alt + v.u) * 1000),
        round(v.u * 1000), round(v.vn * 100), round(v.ve * 100), round(-v.vu * 100), hdg)


def _sys_status(v: SimVehicle) -> Any:
    sensors = (M.MAV_SYS_STATUS_SENSOR_3D_GYRO | M.MAV_SYS_STATUS_SENSOR_3D_ACCEL
               | M.MAV_SYS_STATUS_SENSOR_3D_MAG | M.MAV_SYS_STATUS_SENSOR_ABSOLUTE_PRESSURE
               | M.MAV_SYS_STATUS_SENSOR_GPS | M.MAV_SYS_STATUS_AHRS | M.MAV_SYS_STATUS_SENSOR_BATTERY)
    healthy = sensors if v.ready else sensors & ~(M.MAV_SYS_STATUS_SENSOR_GPS | M.MAV_SYS_STATUS_AHRS)
    enabled = sensors
    # AC_Fence::sys_status_present/enabled/failed: present when any FENCE_TYPE is
    # configured, enabled with FENCE_ENABLE, unhealthy while breached.
    present = sensors | (M.MAV_SYS_STATUS_GEOFENCE if v.params["FENCE_TYPE"] else 0)
    if v.params["FENCE_ENABLE"] >= 1 and v.params["FENCE_ACTION"] != 0:  # REPORT_ONLY: not "enabled"
        enabled |= M.MAV_SYS_STATUS_GEOFENCE
    if not v.fence_breached:
        healthy |= M.MAV_SYS_STATUS_GEOFENCE
    return v._mav.sys_status_encode(present, enabled, healthy, 200, round(v.battery_voltage * 1000),
                                    round(v._current_a * 100), round(v.battery_remaining), 0, 0, 0, 0, 0, 0)


def _battery_status(v: SimVehicle) -> Any:
    volts = [round(v.battery_voltage * 1000)] + [65535] * 9
    return v._mav.battery_status_encode(
        0, M.MAV_BATTERY_FUNCTION_UNKNOWN, M.MAV_BATTERY_TYPE_LIPO, 32767, volts,
        round(v._current_a * 100), round(v._mah_used), round(v._mah_used * 3.6 * v.battery_voltage / 100),
        round(v.battery_remaining), 0, M.MAV_BATTERY_CHARGE_STATE_OK, [0, 0, 0, 0], 0, 0)


def _gps_raw_int(v: SimVehicle) -> Any:
    lat, lon = v.latlon()
    # SITL's simulated GPS reports RTK fixed (6) once it has a fix (observed on Copter 4.6)
    fix = M.GPS_FIX_TYPE_RTK_FIXED if v.gps_fix else M.GPS_FIX_TYPE_NO_FIX
    sats = 10 if v.gps_fix else 0
    cog = int(math.degrees(math.atan2(v.ve, v.vn)) % 360 * 100)
    return v._mav.gps_raw_int_encode(
        int(v.t * 1e6), fix, round(lat * 1e7) if v.gps_fix else 0, round(lon * 1e7) if v.gps_fix else 0,
        round((v.config.home_alt + v.u) * 1000) if v.gps_fix else 0, 121 if v.gps_fix else 9999,
        200 if v.gps_fix else 9999, round(math.hypot(v.ve, v.vn) * 100), cog, sats)


def _attitude(v: SimVehicle) -> Any:
    # A multicopter tilts into its horizontal acceleration: pitch nose-down to speed up
    # forward, roll right to accelerate right (tan(tilt) = a / g).
    yaw = (v.yaw + math.pi) % (2 * math.pi) - math.pi
    forward = v.ae * math.sin(v.yaw) + v.an * math.cos(v.yaw)
    right = v.ae * math.cos(v.yaw) - v.an * math.sin(v.yaw)
    pitch, roll = -math.atan2(forward, 9.80665), math.atan2(right, 9.80665)
    return v._mav.attitude_encode(_boot_ms(v), roll, pitch, yaw, 0.0, 0.0, 0.0)


def _vfr_hud(v: SimVehicle) -> Any:
    speed = math.hypot(v.ve, v.vn)
    return v._mav.vfr_hud_encode(speed, speed, int(math.degrees(v.yaw) % 360), round(v.throttle * 100),
                                 v.config.home_alt + v.u, v.vu)


def _ekf_status(v: SimVehicle) -> Any:
    flags = _EKF_READY if v.ready else _EKF_PRE_GPS
    return v._mav.ekf_status_report_encode(flags, 0.02, 0.01, 0.01, 0.01, 0.0, 0.0)


def _fence_status(v: SimVehicle) -> Any:
    return v._mav.fence_status_encode(1 if v.fence_breached else 0, v.fence_breach_count,
                                      v.fence_breached, v._fence_breach_time_ms, M.FENCE_MITIGATE_UNKNOWN)


def _system_time(v: SimVehicle) -> Any:
    # AP_RTC: UTC is known once the GPS has a fix (SITL's GPS reports the host's time);
    # before that time_unix_usec is 0.
    unix_us = int((v.epoch + v.t) * 1e6) if v.gps_fix else 0
    return v._mav.system_time_encode(unix_us, _boot_ms(v))


def _home_position(v: SimVehicle) -> Any:
    if not v.ready:
        return None  # GCS_MAVLINK::send_home_position: nothing until home is set
    c = v.config
    return v._mav.home_position_encode(round(c.home_lat * 1e7), round(c.home_lon * 1e7),
                                       round(c.home_alt * 1000), 0, 0, 0, [1, 0, 0, 0], 0, 0, 0, 0)


def _local_position_ned(v: SimVehicle) -> Any:
    return v._mav.local_position_ned_encode(_boot_ms(v), v.n, v.e, -v.u, v.vn, v.ve, -v.vu)


def _autopilot_version(v: SimVehicle) -> Any:
    caps = (M.MAV_PROTOCOL_CAPABILITY_MISSION_FLOAT | M.MAV_PROTOCOL_CAPABILITY_PARAM_FLOAT
            | M.MAV_PROTOCOL_CAPABILITY_MISSION_INT | M.MAV_PROTOCOL_CAPABILITY_COMMAND_INT
            | M.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_GLOBAL_INT | M.MAV_PROTOCOL_CAPABILITY_MAVLINK2
            | M.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_LOCAL_NED
            | M.MAV_PROTOCOL_CAPABILITY_MISSION_FENCE | M.MAV_PROTOCOL_CAPABILITY_MISSION_RALLY)
    version = (4 << 24) | (5 << 16) | (7 << 8) | 255  # 4.5.7 FIRMWARE_VERSION_TYPE_OFFICIAL
    return v._mav.autopilot_version_encode(caps, version, 0, 0, 0, [0] * 8, [0] * 8, [0] * 8,
                                           0, 0, v.sysid, [0] * 18)


_BUILDERS = {
    M.MAVLINK_MSG_ID_HEARTBEAT: SimVehicle.heartbeat,
    M.MAVLINK_MSG_ID_MISSION_CURRENT: SimVehicle.mission_current,
    M.MAVLINK_MSG_ID_GLOBAL_POSITION_INT: _global_position_int,
    M.MAVLINK_MSG_ID_SYS_STATUS: _sys_status,
    M.MAVLINK_MSG_ID_BATTERY_STATUS: _battery_status,
    M.MAVLINK_MSG_ID_GPS_RAW_INT: _gps_raw_int,
    M.MAVLINK_MSG_ID_ATTITUDE: _attitude,
    M.MAVLINK_MSG_ID_VFR_HUD: _vfr_hud,
    M.MAVLINK_MSG_ID_EKF_STATUS_REPORT: _ekf_status,
    M.MAVLINK_MSG_ID_FENCE_STATUS: _fence_status,
    M.MAVLINK_MSG_ID_SYSTEM_TIME: _system_time,
    M.MAVLINK_MSG_ID_HOME_POSITION: _home_position,
    M.MAVLINK_MSG_ID_LOCAL_POSITION_NED: _local_position_ned,
    M.MAVLINK_MSG_ID_AUTOPILOT_VERSION: _autopilot_version,
}


# COMMAND_LONG / COMMAND_INT handlers, p being param1..7 (x, y, z for COMMAND_INT);
# any other command is UNSUPPORTED.
_COMMANDS: dict[int, Callable[[SimVehicle, tuple[float, ...], bool, int], int]] = {
    M.MAV_CMD_COMPONENT_ARM_DISARM: SimVehicle._cmd_component_arm_disarm,
    M.MAV_CMD_DO_SET_MODE: SimVehicle._cmd_do_set_mode,
    M.MAV_CMD_NAV_TAKEOFF: SimVehicle._cmd_nav_takeoff,
    M.MAV_CMD_NAV_RETURN_TO_LAUNCH: SimVehicle._cmd_nav_return_to_launch,
    M.MAV_CMD_NAV_LAND: SimVehicle._cmd_nav_land,
    M.MAV_CMD_MISSION_START: SimVehicle._cmd_mission_start,
    M.MAV_CMD_NAV_LOITER_UNLIM: SimVehicle._cmd_nav_loiter_unlim,
    M.MAV_CMD_DO_PAUSE_CONTINUE: SimVehicle._cmd_do_pause_continue,
    M.MAV_CMD_DO_SET_MISSION_CURRENT: SimVehicle._cmd_do_set_mission_current,
    M.MAV_CMD_DO_CHANGE_SPEED: SimVehicle._cmd_do_change_speed,
    M.MAV_CMD_DO_REPOSITION: SimVehicle._cmd_do_reposition,
    M.MAV_CMD_DO_FENCE_ENABLE: SimVehicle._cmd_do_fence_enable,
    M.MAV_CMD_SET_MESSAGE_INTERVAL: SimVehicle._cmd_set_message_interval,
    M.MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN: SimVehicle._cmd_preflight_reboot_shutdown,
    M.MAV_CMD_GET_MESSAGE_INTERVAL: SimVehicle._cmd_get_message_interval,
    M.MAV_CMD_CONDITION_YAW: SimVehicle._cmd_condition_yaw,
    M.MAV_CMD_REQUEST_MESSAGE: SimVehicle._cmd_request_message,
    M.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES: SimVehicle._cmd_request_autopilot_capabilities,
}
