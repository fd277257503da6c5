"""A household's load and a whole site behind one grid meter (PV, battery, load), on a `Clock`."""

from __future__ import annotations

import random
from collections.abc import Mapping

from edge_controller.devices.profiles import Command, Quantity
from edge_controller.simulation.models import (
    INTEGRATION_STEP_MS,
    MS_PER_HOUR,
    BatteryModel,
    PvInverter,
    TelemetryValue,
    integration_steps,
    local_hour,
)

# Share of a typical day's household consumption in each local hour: low at night,
# a morning peak and a larger evening peak (cooking, lights, washing).
_LOAD_SHAPE = (
    0.025, 0.022, 0.020, 0.020, 0.020, 0.024, 0.035, 0.055, 0.055, 0.042, 0.038, 0.038,
    0.043, 0.040, 0.036, 0.036, 0.042, 0.058, 0.075, 0.080, 0.070, 0.058, 0.045, 0.023,
)  # fmt: skip


class HouseholdLoad:
    """A household's consumption by time of day, with minute-to-minute variation."""

    def __init__(
        self,
        daily_energy_wh: int = 10_000,
        *,
        start_ms: int,
        utc_offset_hours: float = 0.0,
        variation: float = 0.15,
        seed: int = 7,
    ) -> None:
        self.daily_energy_wh = daily_energy_wh
        self.consumed_wh = 0.0
        self._offset = utc_offset_hours
        self._variation = variation
        self._seed = seed
        self._now_ms = start_ms

    def power_at(self, now_ms: int) -> float:
        """Consumption at `now_ms`, W."""
        hour = local_hour(now_ms, self._offset)
        shape = _LOAD_SHAPE[int(hour)] / sum(_LOAD_SHAPE)
        minute = now_ms // 60_000
        noise = random.Random(self._seed * 1_000_003 + minute).uniform(-1.0, 1.0)
        return self.daily_energy_wh * shape * (1.0 + self._variation * noise)

    def advance_to(self, now_ms: int) -> None:
        """Integrate consumption up to `now_ms`."""
        for start, end in integration_steps(self._now_ms, now_ms, INTEGRATION_STEP_MS):
            self.consumed_wh += self.power_at((start + end) // 2) * (end - start) / MS_PER_HOUR
        self._now_ms = max(self._now_ms, now_ms)

    def telemetry(self) -> Mapping[Quantity, TelemetryValue]:
        """Consumption now and in total."""
        return {
            Quantity.POWER_W: round(self.power_at(self._now_ms)),
            Quantity.IMPORT_ENERGY_WH: round(self.consumed_wh),
        }

    def obey(self, command: Command, value: int) -> bool:
        """A household load takes no commands."""
        return False


class SimulatedSite:
    """A home behind one grid meter: PV, a battery and the household load (a Victron ESS).

    Grid power = load - PV + battery charging. An export limit curtails the PV so the home
    never feeds in more than allowed; -1 means no limit, as on Venus OS.
    """

    def __init__(
        self, pv: PvInverter, battery: BatteryModel, load: HouseholdLoad, *, start_ms: int
    ) -> None:
        self.pv = pv
        self.battery = battery
        self.load = load
        self.export_limit_w = -1
        self.imported_wh = 0.0
        self.exported_wh = 0.0
        self._now_ms = start_ms
        self._curtail(self._now_ms)

    def grid_power_w(self) -> float:
        """Grid exchange now, positive when importing."""
        return (
            self.load.power_at(self._now_ms)
            - self.pv.power_at(self._now_ms)
            + self.battery.power_w()
        )

    def advance_to(self, now_ms: int) -> None:
        """Advance every part in lockstep and count grid import and export."""
        for start, end in integration_steps(self._now_ms, now_ms, INTEGRATION_STEP_MS):
            self._now_ms = (start + end) // 2
            self._curtail(self._now_ms)
            grid_wh = self.grid_power_w() * (end - start) / MS_PER_HOUR
            if grid_wh >= 0:
                self.imported_wh += grid_wh
            else:
                self.exported_wh -= grid_wh
            for part in (self.pv, self.battery, self.load):
                part.advance_to(end)
            self._now_ms = end
        self._curtail(self._now_ms)

    def _curtail(self, at_ms: int) -> None:
        if self.battery.released:
            # Self-consumption: store the PV surplus, cover the load when PV falls short
            # (from what the panels could give: an export limit curtails only the rest).
            pv_w = min(self.pv.available_w(at_ms), self.pv.peak_w) if self.pv.producing else 0
            self.battery.own_power_w = round(pv_w - self.load.power_at(at_ms))
        if self.export_limit_w < 0:
            self.pv.limit_w = self.pv.peak_w
            return
        own_use = self.load.power_at(at_ms) + self.battery.power_w()
        self.pv.limit_w = max(0, min(self.pv.peak_w, round(own_use + self.export_limit_w)))

    def telemetry(self) -> Mapping[Quantity, TelemetryValue]:
        """Grid, battery and PV values as a GX device reports them."""
        battery = self.battery.telemetry()
        return {
            Quantity.GRID_POWER_W: round(self.grid_power_w()),
            Quantity.IMPORT_ENERGY_WH: round(self.imported_wh),
            Quantity.EXPORT_ENERGY_WH: round(self.exported_wh),
            Quantity.SOC_PERCENT: battery[Quantity.SOC_PERCENT],
            Quantity.CAPACITY_WH: battery[Quantity.CAPACITY_WH],
            Quantity.BATTERY_POWER_W: battery[Quantity.BATTERY_POWER_W],
            Quantity.POWER_W: round(self.pv.power_at(self._now_ms)),
            Quantity.EXPORT_LIMIT_W: self.export_limit_w,
        }

    def obey(self, command: Command, value: int) -> bool:
        """Battery setpoint or release, and grid export limit."""
        if command in (Command.BATTERY_SETPOINT_W, Command.BATTERY_RELEASE):
            ok = self.battery.obey(command, value)
            self._curtail(self._now_ms)
            return ok
        if command == Command.EXPORT_LIMIT_W:
            self.export_limit_w = max(-1, value)
            self._curtail(self._now_ms)
            return True
        return False
