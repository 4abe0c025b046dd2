"""What the position controller is doing: the one target the physics flies toward."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Nav"]


@dataclass
class Nav:
    """Hold, go to a target, take off, land, return (RTL) or fly a velocity."""

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
    liftoff_at: float | None = None  # takeoff from the ground: when the throttle lifts it off
