"""Applying a :class:`~mavlink_bridge.plan.MissionPlan` to a vehicle, and keeping it flying.

:class:`PlanApplier` uploads a list only when its content differs from what was last
*verified* on the vehicle, and verifies every upload by reading it back (the MAVLink
spec's advice: "check for plan changes before uploading"; we compare content because
ArduPilot Copter does not report opaque plan ids). Order: fence first, so exclusion
zones are in force before a new mission is flown; then rally; then the mission.

Read-back comparison follows what ArduPilot returns (observed on Copter SITL):

* item 0 of a mission is home, whatever was uploaded at 0: it is not compared;
* location frames come back without the ``_INT`` suffix (GLOBAL_RELATIVE_ALT_INT is
  read back as GLOBAL_RELATIVE_ALT), so frames are compared modulo that suffix;
* floats travel as float32, so parameters and altitude are compared after float32
  rounding; a parameter ArduPilot does not store for that command reads back as 0,
  which is accepted (command, frame, position and autocontinue must match exactly);
* fence vertices and circles keep only their horizontal position (frame and altitude
  are not stored), so only command, position and parameters are compared for them.

When the vehicle is armed and flying the mission (AUTO), a changed mission does not
restart it: after the upload the applier points the vehicle at the item of the new
mission it should fly next (:func:`resume_seq`) with MAV_CMD_DO_SET_MISSION_CURRENT.
A plan that names its ``resume_index`` (the planner's word, for a vehicle in the air)
is pointed at it whenever the vehicle is armed, whatever the mode the last HEARTBEAT
showed: that mode can be a second old (HEARTBEAT comes at 1 Hz) and a switch to AUTO
just made would otherwise fly on to the replaced mission's target; outside AUTO,
ArduPilot's set_current_cmd only moves the item AUTO starts from.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Collection, Sequence

from mavlink_bridge._mav import float32
from mavlink_bridge.mission_protocol import (
    MissionError, MissionResult, MissionResultError, MissionTimeoutError, Operation,
)
from mavlink_bridge.plan import (
    CMD_NAV_FENCE_CIRCLE_EXCLUSION, CMD_NAV_FENCE_CIRCLE_INCLUSION,
    CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION,
    CMD_NAV_LAND, CMD_NAV_LOITER_TIME, CMD_NAV_RALLY_POINT, CMD_NAV_LOITER_TURNS, CMD_NAV_LOITER_UNLIM,
    CMD_NAV_TAKEOFF, CMD_NAV_WAYPOINT, FRAME_GLOBAL, FRAME_GLOBAL_INT, FRAME_GLOBAL_RELATIVE_ALT,
    FRAME_GLOBAL_RELATIVE_ALT_INT, FRAME_GLOBAL_TERRAIN_ALT, FRAME_GLOBAL_TERRAIN_ALT_INT,
    GLOBAL_FRAMES, MissionItem, MissionPlan, MissionType, validate_fence,
)
from mavlink_bridge.telemetry import CopterMode, VehicleState
from mavlink_bridge.vehicle import ParamError, Vehicle

__all__ = ["ApplierConfig", "ApplyReport", "PlanApplier", "PlanVerificationError", "VehicleNotReady",
           "items_match", "resume_seq", "home_item"]

# MAV_FRAME *_INT -> the float frame ArduPilot stores and reports.
_FRAME_ALIAS = {FRAME_GLOBAL_INT: FRAME_GLOBAL, FRAME_GLOBAL_RELATIVE_ALT_INT: FRAME_GLOBAL_RELATIVE_ALT,
                FRAME_GLOBAL_TERRAIN_ALT_INT: FRAME_GLOBAL_TERRAIN_ALT}
# AP_Mission::is_nav_cmd: navigation commands are those up to MAV_CMD_NAV_LAST.
_MAV_CMD_NAV_LAST = 95

_CMD_NAV_SPLINE_WAYPOINT = 82

FENCE_TYPE_POLYGON = 4  # FENCE_TYPE bitmask: 1 max altitude, 2 circle, 4 polygon, 8 min altitude
FENCE_TYPE_CIRCLE = 2   # the circle of FENCE_RADIUS metres round home
FENCE_TYPE_ALT_MAX = 1  # FENCE_ALT_MAX metres above home
#: The autopilot parameters the check of its own fences reads (dropped from the cache when
#: it refuses a plan, so an operator's fix is seen on the next attempt).
_FC_FENCE_PARAMS = ("FENCE_ENABLE", "FENCE_TYPE", "FENCE_ACTION", "FENCE_RADIUS",
                    "FENCE_ALT_MAX", "FENCE_MARGIN")
#: Frames whose altitude is above home (the altitude fence's reference) ...
_RELATIVE_ALT_FRAMES = frozenset({FRAME_GLOBAL_RELATIVE_ALT, FRAME_GLOBAL_RELATIVE_ALT_INT})
#: ... and above mean sea level (home's altitude subtracted).
_AMSL_FRAMES = frozenset({FRAME_GLOBAL, FRAME_GLOBAL_INT})
_DEGE7_TO_M = 0.011131884502145034  # AP Location's LOCATION_SCALING_FACTOR: metres per 1e-7 degree


def _which(mtype: MissionType, seq: int) -> str:
    """An item as an operator's ground station numbers it (mission item 0 is home)."""
    return f"{mtype.name.lower()} item {seq + (1 if mtype is MissionType.MISSION else 0)}"


def home_distance_m(home_lat: float, home_lon: float, item: MissionItem) -> float:
    """Horizontal metres from home to ``item``, as ArduPilot measures it
    (Location::get_distance: flat earth, longitude scaled at the mean latitude)."""
    dlat = item.x - home_lat * 1e7
    scale = math.cos(math.radians((item.lat + home_lat) / 2.0))
    dlon = (item.y - home_lon * 1e7) * scale
    return math.hypot(dlat, dlon) * _DEGE7_TO_M


class PlanVerificationError(MissionError):
    """What the vehicle holds after an upload is not what was sent."""


class VehicleNotReady(Exception):
    """The vehicle cannot take a plan yet (just booted, no position, no heartbeat).
    Nothing was changed that matters: retry the same plan shortly."""


@dataclass(frozen=True, slots=True)
class ApplierConfig:
    """``not_ready_window_s``: seconds after the vehicle (re)appeared on the link (its
    first HEARTBEAT after a connect or a reboot) during which MISSION_ACK NO_SPACE means
    "mission store not initialised yet", retried every ``not_ready_retry_s``."""

    verify: bool = True
    fence_type: int = FENCE_TYPE_POLYGON
    resume_in_flight: bool = True
    not_ready_window_s: float = 5.0
    not_ready_retry_s: float = 0.2
    #: The circle-fence parameters (FENCE_ENABLE/TYPE/ACTION/RADIUS/MARGIN) are read again
    #: when the last reading is older than this, so an operator's change on another
    #: ground station counts within it without five parameter round trips per upload.
    fence_params_max_age_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.fence_type <= 15:
            raise ValueError(f"fence_type {self.fence_type} is not a FENCE_TYPE bitmask")
        for name in ("not_ready_window_s", "not_ready_retry_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, not {value!r}")
        age = self.fence_params_max_age_s
        if not (isinstance(age, (int, float)) and math.isfinite(age) and age >= 0):
            raise ValueError(f"fence_params_max_age_s must be a finite number >= 0, not {age!r}")


@dataclass(frozen=True, slots=True)
class ApplyReport:
    uploaded: tuple[MissionType, ...]
    unchanged: tuple[MissionType, ...]
    params_set: tuple[tuple[str, float], ...]
    resumed_at: int | None
    #: Wall seconds spent uploading (MISSION_COUNT .. MISSION_ACK) and reading back.
    upload_s: float = 0.0
    verify_s: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.uploaded or self.params_set)


def _same_float(sent: float, got: float) -> bool:
    if math.isnan(sent) or math.isnan(got):
        return math.isnan(sent) and math.isnan(got)
    return math.isclose(float32(sent), float32(got), rel_tol=1e-6, abs_tol=1e-4)


_Params = tuple[float, float, float, float]


def _u16(v: float) -> int:
    return int(v) & 0xFFFF if math.isfinite(v) else 0


def _centimetres(z: float) -> float:
    """AP_Mission stores a location's altitude as int32 centimetres (packet.z * 100.0f,
    truncated), so 30.123 m reads back as 30.12."""
    if not math.isfinite(z):
        return z
    return int(float32(float32(z) * 100.0)) / 100.0


def _z_location(sent: float, got: float) -> str | None:
    if _same_float(sent, got) or _same_float(_centimetres(sent), got):
        return None
    return f"z {sent} != {got}"


def _z_whole_metres(sent: float, got: float) -> str | None:
    # MissionItemProtocol_Rally stores RallyLocation.alt = cmd.z, an int16 of metres:
    # the fraction is truncated (C float -> int conversion).
    if not math.isfinite(sent):
        return None if math.isnan(got) else f"z {sent} != {got}"
    return None if float(int(sent)) == got else f"z {sent} (stored as {int(sent)}) != {got}"


# param1..4 as ArduPilot Copter reads them back: AP_Mission::mavlink_int_to_mission_cmd
# packs them into Mission_Command, mission_cmd_to_mavlink_int unpacks them.
def _p1_u16(p1: float, p2: float, p3: float, p4: float) -> _Params:
    return (float(_u16(p1)), 0.0, 0.0, 0.0)  # uint16 p1: hold seconds / min pitch


def _loiter_unlim(p1: float, p2: float, p3: float, p4: float) -> _Params:
    r = float(_u16(abs(p3)))  # p1 = |radius|, loiter_ccw = param3 < 0
    return (0.0, 0.0, -r if p3 < 0 else r, 0.0)


def _loiter_turns(p1: float, p2: float, p3: float, p4: float) -> _Params:
    r = float(_u16(abs(p3)) & 0xFF)  # p1 = radius << 8 | turns
    return (float(_u16(p1) & 0xFF), 0.0, -r if p3 < 0 else r, 1.0 if p4 > 0 else 0.0)


def _loiter_time(p1: float, p2: float, p3: float, p4: float) -> _Params:
    # whole seconds; direction +1/-1; xtrack flag
    return (float(_u16(p1)), 0.0, -1.0 if p3 < 0 else 1.0, 1.0 if p4 > 0 else 0.0)


def _land(p1: float, p2: float, p3: float, p4: float) -> _Params:
    # abort altitude; yaw direction as +1/-1
    return (float(_u16(p1)), 0.0, 0.0, -1.0 if p4 <= -1.1920929e-07 else 1.0)


@dataclass(frozen=True, slots=True)
class _Storage:
    """How ArduPilot stores one command, i.e. what a read-back returns for it.

    ``location``: the item's position is stored (AP_Mission::stored_in_location, or a
    fence/rally point) and read back; otherwise x, y and z read back as 0.
    ``keeps_frame``: the frame is kept (modulo the _INT suffix); else it reads back as
    ``frame``. ``z`` compares the sent altitude with the one read back (None: altitude
    not stored). ``params`` maps sent param1..4 to what is stored (None: only the exact
    value or 0 reads back). ``autocontinue``: the value every read-back carries, since
    ArduPilot stores no autocontinue flag at all.
    """

    location: bool = True
    keeps_frame: bool = True
    frame: int = FRAME_GLOBAL
    z: Callable[[float, float], str | None] | None = _z_location
    params: Callable[[float, float, float, float], _Params] | None = None
    autocontinue: int = 1


# AP_Mission::stored_in_location: the commands whose Mission_Command content is a
# Location. mission_cmd_to_mavlink_int starts every item at frame 0, x = y = z = 0 and
# autocontinue 1, then copies the location (frame GLOBAL_RELATIVE_ALT / GLOBAL /
# GLOBAL_TERRAIN_ALT from its flags, z from centimetres) only for these.
_STORED_IN_LOCATION = frozenset({
    CMD_NAV_WAYPOINT, CMD_NAV_LOITER_UNLIM, CMD_NAV_LOITER_TURNS, CMD_NAV_LOITER_TIME,
    CMD_NAV_LAND, CMD_NAV_TAKEOFF,
    30,   # NAV_CONTINUE_AND_CHANGE_ALT
    31,   # NAV_LOITER_TO_ALT
    82,   # NAV_SPLINE_WAYPOINT
    92,   # NAV_GUIDED_ENABLE
    179,  # DO_SET_HOME
    189,  # DO_LAND_START
    191,  # DO_GO_AROUND
    201,  # DO_SET_ROI
    84,   # NAV_VTOL_TAKEOFF
    85,   # NAV_VTOL_LAND
    94,   # NAV_PAYLOAD_PLACE
})
_LOCATION = _Storage()  # a stored_in_location command without a param rule: params exact or 0
# Any other mission command (NAV_RETURN_TO_LAUNCH, DO_CHANGE_SPEED, DO_JUMP, ...):
# parameters only; read back in frame 0 with no position.
_NO_LOCATION = _Storage(location=False, keeps_frame=False, z=None)
# MissionItemProtocol_Fence: vertices and circles keep only their horizontal position
# (AC_PolyFence_loader), read back in frame GLOBAL at altitude 0, autocontinue 0.
_FENCE_GEOMETRY = _Storage(keeps_frame=False, z=None, autocontinue=0)
_STORAGE: dict[int, _Storage] = {
    CMD_NAV_WAYPOINT: _Storage(params=_p1_u16),
    CMD_NAV_TAKEOFF: _Storage(params=_p1_u16),
    _CMD_NAV_SPLINE_WAYPOINT: _Storage(params=_p1_u16),
    CMD_NAV_LOITER_UNLIM: _Storage(params=_loiter_unlim),
    CMD_NAV_LOITER_TURNS: _Storage(params=_loiter_turns),
    CMD_NAV_LOITER_TIME: _Storage(params=_loiter_time),
    CMD_NAV_LAND: _Storage(params=_land),
    # MissionItemProtocol_Rally: RallyLocation keeps lat/lng, an int16 altitude in
    # metres and whether it is relative (GLOBAL_RELATIVE_ALT) or not (GLOBAL).
    CMD_NAV_RALLY_POINT: _Storage(z=_z_whole_metres, autocontinue=0),
    CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION: _FENCE_GEOMETRY,
    CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION: _FENCE_GEOMETRY,
    CMD_NAV_FENCE_CIRCLE_INCLUSION: _FENCE_GEOMETRY,
    CMD_NAV_FENCE_CIRCLE_EXCLUSION: _FENCE_GEOMETRY,
}


def storage_of(command: int) -> _Storage:
    """The read-back rule for ``command`` (see :class:`_Storage`)."""
    if command in _STORAGE:
        return _STORAGE[command]
    return _LOCATION if command in _STORED_IN_LOCATION else _NO_LOCATION


def items_match(sent: MissionItem, got: MissionItem) -> str | None:
    """None when ``got`` is what the vehicle stores for ``sent``; else what differs."""
    if sent.command != got.command:
        return f"command {sent.command} != {got.command}"
    storage = storage_of(sent.command)
    sent_frame = _FRAME_ALIAS.get(sent.frame, sent.frame) if storage.keeps_frame else storage.frame
    if sent_frame != _FRAME_ALIAS.get(got.frame, got.frame):
        return f"frame {sent_frame} (as stored) != {got.frame}"
    if storage.location:
        if (sent.x, sent.y) != (got.x, got.y):
            return f"position ({sent.x}, {sent.y}) != ({got.x}, {got.y})"
        if storage.z is not None:
            problem = storage.z(sent.z, got.z)
            if problem:
                return problem
    elif (got.x, got.y, got.z) != (0, 0, 0.0):
        return f"position ({got.x}, {got.y}, {got.z}) read back for a command stored without one"
    if got.autocontinue != storage.autocontinue:
        return f"autocontinue {got.autocontinue} != {storage.autocontinue} (what ArduPilot reads back)"
    sent_params = (sent.param1, sent.param2, sent.param3, sent.param4)
    stored = (None if storage.params is None
              else storage.params(*(0.0 if math.isnan(v) else v for v in sent_params)))
    for i, name in enumerate(("param1", "param2", "param3", "param4")):
        a, b = sent_params[i], getattr(got, name)
        if _same_float(a, b) or b == 0.0:  # 0 = not stored for this command
            continue
        if stored is not None and _same_float(stored[i], b):
            continue  # what ArduPilot makes of it (whole seconds, +1/-1 direction, ...)
        return f"{name} {a} != {b}"
    return None


def home_item(lat: float, lon: float, alt_msl: float) -> MissionItem:
    """ArduPilot's mission item 0: home, a NAV_WAYPOINT in MAV_FRAME_GLOBAL (AMSL)."""
    return MissionItem.at(CMD_NAV_WAYPOINT, lat, lon, alt_msl, frame=FRAME_GLOBAL)


def resume_seq(new_mission: Sequence[MissionItem], old_mission: Sequence[MissionItem] | None = None,
               current_seq: int | None = None, first_seq: int = 1) -> int | None:
    """The conservative wire seq to continue from when ``new_mission`` replaces a mission
    being flown and the plan names no ``resume_index``. No geometry: a nearest-point guess
    skips the rest of a survey line or turns back along it.

    1. If the item the vehicle is flying to (``old_mission`` at wire ``current_seq``)
       is in the new mission unchanged, continue at it (the re-plan kept that leg).
    2. Otherwise fly the new mission from its first navigation item after the takeoff
       (an airborne copter does not climb in place; nothing of the new route is skipped).

    ``first_seq`` is the wire seq of ``mission[0]`` (1 for ArduPilot, whose item 0 is
    home). None if the new mission has no item to resume at.
    """
    if old_mission is not None and current_seq is not None:
        index = current_seq - first_seq
        if 0 <= index < len(old_mission):
            target = old_mission[index]
            if index < len(new_mission) and new_mission[index] == target:
                return current_seq
            for i, item in enumerate(new_mission):
                if item == target:
                    return first_seq + i
    for i, item in enumerate(new_mission):
        if item.command <= _MAV_CMD_NAV_LAST and item.command != CMD_NAV_TAKEOFF:
            return first_seq + i
    return None


class PlanApplier:
    """Keeps one vehicle's mission, fence and rally lists equal to the latest plan."""

    def __init__(self, vehicle: Vehicle, config: ApplierConfig = ApplierConfig()) -> None:
        self.vehicle = vehicle
        self.config = config
        self._verified: dict[MissionType, tuple[MissionItem, ...]] = {}
        #: Lists verified before the link was re-established: read back before trusted.
        self._unconfirmed: set[MissionType] = set()
        self._params: dict[str, float] = {}
        self._fc_fence_read_at = -math.inf
        self._upload_s = 0.0
        self._verify_s = 0.0
        self._connects = vehicle.link.stats.connects
        self._reboots = vehicle.telemetry.reboots

    def forget(self) -> None:
        """Drop what we believe the vehicle holds (after a reboot)."""
        self._verified.clear()
        self._unconfirmed.clear()
        self._params.clear()

    def verified(self, mission_type: MissionType) -> tuple[MissionItem, ...] | None:
        return self._verified.get(mission_type)

    def apply(self, plan: MissionPlan, home: MissionItem | None = None,
              keep: Collection[MissionType] = ()) -> ApplyReport:
        """Make the vehicle hold ``plan``. Lists named in ``keep`` are left as the vehicle
        holds them, neither uploaded nor cleared (a busy drone's mission belongs to
        whoever tasked it; only its fences and rally points follow the map). Raises :class:`VehicleNotReady` when the
        vehicle cannot take a plan yet (no heartbeat or position, or its mission store
        still initialising after boot): nothing is wrong, call again shortly. Other
        failures raise MissionError (including PlanVerificationError),
        CommandError/CommandTimeoutError or ParamError; the failing list is then marked
        unknown and retried on the next call. :meth:`fence_problem` says whether the
        plan would breach the vehicle's own circle or altitude fence."""
        validate_fence(plan.fence)  # bad input changes nothing: checked before any upload
        self._note_link()
        if self.vehicle.state().heartbeat is None:
            raise VehicleNotReady("no HEARTBEAT from the vehicle yet")
        uploaded: list[MissionType] = []
        unchanged: list[MissionType] = []
        resumed: int | None = None
        self._upload_s = self._verify_s = 0.0
        for mtype in (MissionType.FENCE, MissionType.RALLY, MissionType.MISSION):
            if mtype in keep:
                continue
            desired = plan.items(mtype)
            if self._verified.get(mtype) == desired and self._still_holds(mtype, desired, home):
                unchanged.append(mtype)
                continue
            state = self.vehicle.state()
            # The planner's resume item whenever armed (the module docstring: the mode
            # seen may be stale); the bridge's own guess only when seen in AUTO.
            flying_mission = (mtype is MissionType.MISSION and self.config.resume_in_flight
                              and state.armed and (plan.resume_index is not None
                                                   or state.mode == CopterMode.AUTO.name))
            wire = self._wire(mtype, desired, home, state)
            previous = self._verified.pop(mtype, None)
            self._upload_when_ready(mtype, wire)
            self._verified[mtype] = desired
            self._unconfirmed.discard(mtype)
            uploaded.append(mtype)
            if flying_mission and desired:
                if plan.resume_index is not None:
                    resumed = 1 + plan.resume_index  # wire seq: item 0 is home
                else:
                    current = state.mission.seq if state.mission is not None else None
                    resumed = resume_seq(desired, previous, current)
                if resumed is not None:
                    self.vehicle.set_mission_current(resumed).raise_for_result()
        params = self._apply_fence_params(plan)
        return ApplyReport(tuple(uploaded), tuple(unchanged), params, resumed,
                           self._upload_s, self._verify_s)

    def holds(self, plan: MissionPlan, mission_type: MissionType = MissionType.MISSION) -> bool:
        """Whether the vehicle still holds ``plan``'s list of ``mission_type`` as this
        applier last verified it: trusted while the link stayed up, read back after it
        came back, False after a reboot. A list found changed on the vehicle (a second
        ground station uploaded its own) is forgotten, so the next :meth:`apply` uploads
        it. The caller re-uses a plan only while this holds: a mission planned earlier
        starts where the aircraft was then, and put back on a vehicle that lost it, it
        would send the copter back along legs it has flown. A download that fails raises
        MissionError or TimeoutError (call again)."""
        self._note_link()
        desired = plan.items(mission_type)
        if self._verified.get(mission_type) != desired:
            return False
        if self._still_holds(mission_type, desired, None):
            return True
        del self._verified[mission_type]
        return False

    def _note_link(self) -> None:
        """Take in a reboot or a new link since the last call (what that makes stale)."""
        connects = self.vehicle.link.stats.connects
        reboots = self.vehicle.telemetry.reboots
        if reboots != self._reboots:
            # The autopilot restarted (behind a link that stayed up, or while it was
            # down: its boot clock went back): it may have lost what we verified
            # (SITL started with -w wipes its mission), so what we verified is stale.
            self.forget()
        elif connects != self._connects:
            # Only the link was re-established (a telemetry radio fading out and back):
            # the vehicle most likely flies on with what it held, but someone may have
            # changed it meanwhile. Read each list back before trusting it, so a
            # returning link does not re-upload a mission and send a flying copter
            # back along it (MISSION_SET_CURRENT) for nothing.
            self._unconfirmed = set(self._verified)
            self._params.clear()
        self._connects = connects
        self._reboots = reboots

    def _wire(self, mtype: MissionType, desired: tuple[MissionItem, ...],
              home: MissionItem | None, state: VehicleState) -> tuple[MissionItem, ...]:
        """The list as sent: a mission gets home as item 0 (ArduPilot's convention)."""
        if mtype is MissionType.MISSION and desired:
            return (home if home is not None else self._home(state),) + desired
        return desired

    def _still_holds(self, mtype: MissionType, desired: tuple[MissionItem, ...],
                     home: MissionItem | None) -> bool:
        """What was verified is still on the vehicle: trusted, or (after a reconnect)
        read back and compared. A download that fails raises (the caller retries)."""
        if mtype not in self._unconfirmed:
            return True
        try:
            self._verify_timed(mtype, self._wire(mtype, desired, home, self.vehicle.state()))
        except PlanVerificationError:
            self._unconfirmed.discard(mtype)
            return False
        self._unconfirmed.discard(mtype)
        return True

    def _upload_when_ready(self, mtype: MissionType, wire: tuple[MissionItem, ...]) -> None:
        """Upload and verify one list, waiting out a mission store that is not ready.

        ArduPilot answers MISSION_COUNT with MISSION_ACK NO_SPACE until AP_Mission is
        initialised, about 0.5 s after boot (observed on Copter SITL). Within
        ``not_ready_window_s`` of the vehicle (re)appearing on the link that answer is
        retried every ``not_ready_retry_s`` until the window ends, then reported as
        :class:`VehicleNotReady`; later it is the real thing (the list does not fit).
        """
        while True:
            try:
                self._upload_and_verify(mtype, wire)
                return
            except MissionResultError as exc:
                if exc.result is not MissionResult.NO_SPACE or exc.operation is not Operation.UPLOAD:
                    raise
                uptime = self._uptime_s()
                if uptime is None or uptime >= self.config.not_ready_window_s:
                    raise
                if uptime + self.config.not_ready_retry_s >= self.config.not_ready_window_s:
                    raise VehicleNotReady(
                        f"{mtype.name.lower()} store not ready {uptime:.1f} s after boot "
                        f"(MISSION_ACK NO_SPACE)") from exc
                time.sleep(self.config.not_ready_retry_s)

    def _uptime_s(self) -> float | None:
        """Wall seconds since the vehicle (re)appeared: its first HEARTBEAT after the
        latest connect or detected reboot. None before any."""
        since = self.vehicle.heard_since()
        return None if since is None else max(0.0, time.monotonic() - since)

    def _upload_and_verify(self, mtype: MissionType, wire: tuple[MissionItem, ...]) -> None:
        t0, verify0 = time.monotonic(), self._verify_s
        try:
            self._upload(mtype, wire)
        finally:
            self._upload_s += time.monotonic() - t0 - (self._verify_s - verify0)

    def _verify_timed(self, mtype: MissionType, wire: tuple[MissionItem, ...]) -> None:
        t0 = time.monotonic()
        try:
            self._verify(mtype, wire)
        finally:
            self._verify_s += time.monotonic() - t0

    def _upload(self, mtype: MissionType, wire: tuple[MissionItem, ...]) -> None:
        try:
            self.vehicle.upload(mtype, wire)
        except MissionTimeoutError as exc:
            # Only the final ACK went missing: the read-back decides (the spec's
            # ground truth), instead of re-uploading a list the vehicle may hold.
            if not (exc.awaiting_final_ack and self.config.verify):
                raise
            try:
                self._verify_timed(mtype, wire)
            except (PlanVerificationError, MissionError):
                raise exc from None
        else:
            if self.config.verify:
                self._verify_timed(mtype, wire)

    def _home(self, state: VehicleState) -> MissionItem:
        pos = state.position
        if pos is None:
            raise VehicleNotReady("no position yet: cannot build the home item (mission item 0); "
                                  "request streams and wait for GLOBAL_POSITION_INT")
        # ArduPilot replaces item 0 with its own home anyway; send our best estimate:
        # here, at the altitude of home (AMSL altitude minus height above home).
        return home_item(pos.lat, pos.lon, pos.alt_msl - pos.alt_rel)

    def _verify(self, mtype: MissionType, wire: tuple[MissionItem, ...]) -> None:
        got = self.vehicle.download(mtype)
        if mtype is MissionType.MISSION and not wire and len(got) <= 1:
            return  # a cleared ArduPilot mission still lists home as item 0
        if len(got) != len(wire):
            raise PlanVerificationError(
                f"{mtype.name.lower()} read back {len(got)} items, uploaded {len(wire)}",
                operation=Operation.DOWNLOAD, mission_type=mtype)
        skip = 1 if mtype is MissionType.MISSION else 0
        for seq in range(skip, len(wire)):
            problem = items_match(wire[seq], got[seq])
            if problem:
                raise PlanVerificationError(
                    f"{mtype.name.lower()} item {seq} read back differently: {problem}",
                    operation=Operation.DOWNLOAD, mission_type=mtype)

    def _param(self, name: str) -> float:
        """A vehicle parameter, read once per connection (PARAM_REQUEST_READ) and cached."""
        value = self._params.get(name)
        if value is None:
            value = self.vehicle.get_param(name)
            if not math.isfinite(value):
                raise ParamError(f"{name}: vehicle reports {value}")
            self._params[name] = value
        return value

    def fence_problem(self, plan: MissionPlan, keep: Collection[MissionType] = (),
                      fence_home: tuple[float, float] | None = None) -> str | None:
        """Why flying ``plan`` would breach the autopilot's own fences, naming the
        parameters, or None when it would not. ArduCopter arms its own fences with the
        rest: FENCE_TYPE defaults to 7 (altitude, circle, polygon), so switching
        FENCE_ENABLE on for our polygons also arms a FENCE_RADIUS circle round home (300
        m by default, 150 m in SITL's copter.parm) and a FENCE_ALT_MAX ceiling (100 m)
        that nothing in the map knows about, and FENCE_ACTION takes a drone that reaches
        one home. A problem when the fence is on (or this plan switches it on),
        FENCE_ACTION is not 0 (report only), and a mission or rally point (lists in
        ``keep`` are not ours) lies, with the circle bit in FENCE_TYPE, further from
        ``fence_home`` (lat, lon; default: the home estimate of item 0) than FENCE_RADIUS
        less FENCE_MARGIN, or, with the altitude bit, at or above FENCE_ALT_MAX less
        FENCE_MARGIN over home (items above terrain are not checked: the terrain under
        them is not known here). The parameters are read with PARAM_REQUEST_READ and
        cached for ``fence_params_max_age_s``; after a problem they are read afresh next
        time (an operator may fix them)."""
        if plan.fence_enable is False:
            return None
        now = time.monotonic()
        if now - self._fc_fence_read_at > self.config.fence_params_max_age_s:
            for name in _FC_FENCE_PARAMS:
                self._params.pop(name, None)
            self._fc_fence_read_at = now
        points = [(mtype, seq, item) for mtype in (MissionType.MISSION, MissionType.RALLY)
                  if mtype not in keep for seq, item in enumerate(plan.items(mtype))
                  if item.frame in GLOBAL_FRAMES
                  and (item.command <= _MAV_CMD_NAV_LAST or item.command == CMD_NAV_RALLY_POINT)]
        if not points:
            return None
        if plan.fence_enable is not True and self._param("FENCE_ENABLE") < 1:
            return None  # no fence in force, and this plan switches none on
        fence_type = int(self._param("FENCE_TYPE"))
        action = self._param("FENCE_ACTION") if fence_type & (FENCE_TYPE_CIRCLE | FENCE_TYPE_ALT_MAX) else 0.0
        if action == 0:
            return None  # neither fence, or REPORT_ONLY: a breach changes nothing in flight
        margin = self._param("FENCE_MARGIN")
        enabled = f"FENCE_ENABLE {'switched on by this plan' if plan.fence_enable else 'on'}"
        problems = []
        if fence_type & FENCE_TYPE_CIRCLE:
            if fence_home is None:
                item0 = self._home(self.vehicle.state())
                fence_home = (item0.lat, item0.lon)
            home_lat, home_lon = fence_home
            placed = [p for p in points if (p[2].x, p[2].y) != (0, 0)]  # (0, 0): "here"
            if placed:
                mtype, seq, far = max(placed, key=lambda p: home_distance_m(home_lat, home_lon, p[2]))
                distance = home_distance_m(home_lat, home_lon, far)
                radius = self._param("FENCE_RADIUS")
                if distance > radius - margin:  # AC_Fence keeps FENCE_MARGIN inside the fence
                    problems.append(
                        f"plan leaves the flight controller's circle fence: {_which(mtype, seq)} is "
                        f"{distance:.0f} m from home, beyond FENCE_RADIUS {radius:g} m less "
                        f"FENCE_MARGIN {margin:g} m (FENCE_TYPE {fence_type} includes the circle, "
                        f"bit 2; {enabled}): the drone would breach it and FENCE_ACTION "
                        f"{action:g} would take it home; set FENCE_RADIUS to at least "
                        f"{math.ceil(distance + margin)} m or clear bit 2 of FENCE_TYPE")
        if fence_type & FENCE_TYPE_ALT_MAX:
            home_amsl = (self._home(self.vehicle.state()).z
                         if any(p[2].frame in _AMSL_FRAMES for p in points) else 0.0)
            heights = [(mtype, seq, item.z if item.frame in _RELATIVE_ALT_FRAMES else item.z - home_amsl)
                       for mtype, seq, item in points
                       if item.frame in _RELATIVE_ALT_FRAMES or item.frame in _AMSL_FRAMES]
            if heights:
                mtype, seq, height = max(heights, key=lambda h: h[2])
                ceiling = self._param("FENCE_ALT_MAX")
                if height >= ceiling - margin:
                    problems.append(
                        f"plan rises through the flight controller's altitude fence: "
                        f"{_which(mtype, seq)} is {height:.0f} m above home, at or above "
                        f"FENCE_ALT_MAX {ceiling:g} m less FENCE_MARGIN {margin:g} m (FENCE_TYPE "
                        f"{fence_type} includes the altitude, bit 1; {enabled}): the drone would "
                        f"breach it and FENCE_ACTION {action:g} would take it home; set "
                        f"FENCE_ALT_MAX to at least {math.ceil(height + margin) + 1} m or clear "
                        f"bit 1 of FENCE_TYPE")
        if not problems:
            return None
        self._fc_fence_read_at = -math.inf  # an operator may fix them: read afresh next time
        return "; ".join(problems)

    def _apply_fence_params(self, plan: MissionPlan) -> tuple[tuple[str, float], ...]:
        if plan.fence_enable is None:
            return ()
        wanted: list[tuple[str, float]] = []
        if plan.fence_enable:
            # FENCE_TYPE is a bitmask (AC_Fence: 1 max altitude, 2 circle, 4 polygon,
            # 8 min altitude; Copter's default is 7). Add our bits to what the vehicle
            # has instead of overwriting it, which would silently switch off an
            # altitude or circle fence the operator configured.
            current = self._params.get("FENCE_TYPE")
            if current is None:
                current = self.vehicle.get_param("FENCE_TYPE")
                if not (math.isfinite(current) and current == int(current) and 0 <= current <= 255):
                    raise ParamError(f"FENCE_TYPE: vehicle reports {current}, not a bitmask")
            merged = float(int(current) | self.config.fence_type)
            if merged == current:
                self._params["FENCE_TYPE"] = merged  # already includes our bits
            wanted.append(("FENCE_TYPE", merged))
        wanted.append(("FENCE_ENABLE", 1.0 if plan.fence_enable else 0.0))
        done = []
        for name, value in wanted:
            if self._params.get(name) == value:
                continue
            self._params.pop(name, None)
            self._params[name] = self.vehicle.set_param(name, value)
            done.append((name, value))
        return tuple(done)

