"""The flight battery: current drawn by what the motors do, charge used, voltage."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sitl.builtin import VehicleConfig

HOVER_THROTTLE = 0.35  # MOT_THST_HOVER


class Battery:
    """One LiPo pack: idle current when disarmed, a little more on the ground armed, and
    in the air the hover current scaled by throttle (power ~ thrust^1.5)."""

    def __init__(self, config: VehicleConfig) -> None:
        self._config = config
        self.mah_used = config.battery_capacity_mah * (1.0 - config.battery_initial_pct / 100.0)
        self.current_a = config.battery_idle_current_a

    def drain(self, dt: float, armed: bool, landed: bool, throttle: float) -> None:
        c = self._config
        if not armed:
            current = c.battery_idle_current_a
        elif landed:
            current = c.battery_idle_current_a + 0.1 * c.battery_hover_current_a
        else:
            current = c.battery_idle_current_a + c.battery_hover_current_a * (throttle / HOVER_THROTTLE) ** 1.5
        self.current_a = current
        self.mah_used = min(c.battery_capacity_mah, self.mah_used + current * dt / 3.6)

    @property
    def remaining_pct(self) -> float:
        return max(0.0, 100.0 * (1.0 - self.mah_used / self._config.battery_capacity_mah))

    @property
    def voltage(self) -> float:
        c = self._config
        frac = self.remaining_pct / 100.0
        sag = 0.01 * self.current_a
        return c.battery_voltage_empty + (c.battery_voltage_full - c.battery_voltage_empty) * frac - sag
