"""Simulated hardware with believable physics, driven by a `Clock`.

Each model integrates its state from the last time it was advanced to `now_ms`, so a test
can jump hours ahead with a `SimulatedClock` and the demo can run on the wall clock. Floats
live inside the physics; everything a model reports is an integer (W, Wh, %, g).
`SimulatedMqttDevice` (in `mqtt_device`) publishes these models over MQTT; a household's
load and a whole site behind one grid meter are in `site`.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from typing import Protocol

from edge_controller.devices.capabilities import FuelCellState
from edge_controller.devices.profiles import Command, Quantity

TelemetryValue = int | str | tuple[str, ...]

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 24 * MS_PER_HOUR
# Loads and sunshine change over minutes; integrating in one-minute steps is plenty.
INTEGRATION_STEP_MS = 60_000


class SimulatedHardware(Protocol):
    """A simulated device: advanced in time, read as telemetry, told what to do."""

    def advance_to(self, now_ms: int) -> None:
        """Integrate the physics up to `now_ms`; earlier times are ignored."""
        ...

    def telemetry(self) -> Mapping[Quantity, TelemetryValue]:
        """What the device reports right now, in the edge controller's units."""
        ...

    def obey(self, command: Command, value: int) -> bool:
        """Carry out a command; False when this hardware has no such command."""
        ...


def local_hour(now_ms: int, utc_offset_hours: float) -> float:
    """Hour of the local solar day, 0 <= h < 24."""
    return ((now_ms / MS_PER_HOUR) + utc_offset_hours) % 24.0


def integration_steps(start_ms: int, end_ms: int, step_ms: int) -> list[tuple[int, int]]:
    """Consecutive (from, to) intervals covering start..end, each at most `step_ms` long."""
    bounds = [*range(start_ms, end_ms, step_ms), end_ms]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


class Weather:
    """Cloud cover as a factor on sunshine: 1 is a clear sky.

    Clouds change every `slot_ms` and are interpolated between slots so the PV output does
    not jump. The sequence is deterministic for a seed, so tests and demos repeat.
    """

    def __init__(self, cloudiness: float = 0.0, seed: int = 1, slot_ms: int = 900_000) -> None:
        if not 0.0 <= cloudiness <= 1.0:
            raise ValueError("cloudiness is between 0 (clear) and 1 (overcast)")
        self.cloudiness = cloudiness
        self._seed = seed
        self._slot_ms = slot_ms

    def factor(self, now_ms: int) -> float:
        """Share of clear-sky sunshine reaching the panels at `now_ms`, 0.2 to 1."""
        position = now_ms / self._slot_ms
        slot = math.floor(position)
        blend = position - slot
        return (1 - blend) * self._slot_factor(slot) + blend * self._slot_factor(slot + 1)

    def _slot_factor(self, slot: int) -> float:
        # Even a thick overcast lets through about a fifth of the light.
        cover = self.cloudiness * random.Random(self._seed * 1_000_003 + slot).random()
        return 1.0 - 0.8 * cover


class PvInverter:
    """A PV array and its inverter: clear-sky bell curve between sunrise and sunset.

    Reports power, total yield, the production limit and its rating; obeys a production
    limit (OpenDTU's absolute limit) and on/off.
    """

    def __init__(
        self,
        peak_w: int,
        *,
        start_ms: int,
        sunrise_hour: float = 6.0,
        sunset_hour: float = 20.0,
        utc_offset_hours: float = 0.0,
        weather: Weather | None = None,
    ) -> None:
        if not 0 <= sunrise_hour < sunset_hour <= 24:
            raise ValueError("sunrise must come before sunset within one day")
        self.peak_w = peak_w
        self.weather = weather or Weather()
        self.limit_w = peak_w
        self.producing = True
        # Share of clear-sky sunshine set from outside (control topics); None: the weather's.
        self.irradiance: float | None = None
        self.yield_wh = 0.0
        self._sunrise = sunrise_hour
        self._sunset = sunset_hour
        self._offset = utc_offset_hours
        self._now_ms = start_ms

    def clear_sky_w(self, now_ms: int) -> float:
        """What the array would give under a clear sky: zero at night, peak at solar noon."""
        hour = local_hour(now_ms, self._offset)
        if not self._sunrise < hour < self._sunset:
            return 0.0
        daylight = (hour - self._sunrise) / (self._sunset - self._sunrise)
        return self.peak_w * math.sin(math.pi * daylight) ** 2

    def available_w(self, now_ms: int) -> float:
        """What the panels could give at `now_ms`, weather included, before any limit."""
        share = self.weather.factor(now_ms) if self.irradiance is None else self.irradiance
        return self.clear_sky_w(now_ms) * share

    def power_at(self, now_ms: int) -> float:
        """AC output at `now_ms`, after on/off and the production limit."""
        if not self.producing:
            return 0.0
        return min(self.available_w(now_ms), float(self.limit_w))

    def advance_to(self, now_ms: int) -> None:
        """Integrate the yield up to `now_ms`."""
        for start, end in integration_steps(self._now_ms, now_ms, INTEGRATION_STEP_MS):
            middle = (start + end) // 2
            self.yield_wh += self.power_at(middle) * (end - start) / MS_PER_HOUR
        self._now_ms = max(self._now_ms, now_ms)

    def telemetry(self) -> Mapping[Quantity, TelemetryValue]:
        """Power, yield, limit and rating."""
        return {
            Quantity.POWER_W: round(self.power_at(self._now_ms)),
            Quantity.EXPORT_ENERGY_WH: round(self.yield_wh),
            Quantity.EXPORT_LIMIT_W: self.limit_w,
            Quantity.POWER_RATING_W: self.peak_w,
        }

    def obey(self, command: Command, value: int) -> bool:
        """Production limit in W (clamped to 0..peak) and on (1) / off (0)."""
        if command == Command.EXPORT_LIMIT_W:
            self.limit_w = max(0, min(value, self.peak_w))
            return True
        if command == Command.START_STOP:
            self.producing = value != 0
            return True
        return False


class BatteryModel:
    """A home battery: integrates AC power into stored energy with charge/discharge losses.

    The setpoint is AC power, positive to charge. Power is limited by the inverter's
    ratings, and falls to zero when the battery is full (charging) or empty (discharging).
    Once released (`battery_release`), the battery follows its own energy management
    instead: `own_power_w`, which a `SimulatedSite` sets to the PV surplus (self-consumption).
    """

    def __init__(
        self,
        capacity_wh: int,
        *,
        start_ms: int,
        soc_percent: float = 50.0,
        max_charge_w: int = 3000,
        max_discharge_w: int = 3000,
        charge_efficiency: float = 0.95,
        discharge_efficiency: float = 0.95,
    ) -> None:
        self.capacity_wh = capacity_wh
        self.stored_wh = capacity_wh * soc_percent / 100.0
        self.max_charge_w = max_charge_w
        self.max_discharge_w = max_discharge_w
        self.charge_efficiency = charge_efficiency
        self.discharge_efficiency = discharge_efficiency
        self.setpoint_w = 0
        # Whether its own energy management runs it (no setpoint from outside) and what
        # that management asks for now.
        self.released = False
        self.own_power_w = 0
        self.charged_wh = 0.0
        self.discharged_wh = 0.0
        self._now_ms = start_ms

    @property
    def soc_percent(self) -> float:
        """State of charge, %."""
        return 100.0 * self.stored_wh / self.capacity_wh

    def set_soc(self, percent: float) -> None:
        """Set the state of charge (the energy stored), as if charged or drained elsewhere."""
        self.stored_wh = self.capacity_wh * max(0.0, min(percent, 100.0)) / 100.0

    def power_w(self) -> int:
        """AC power now, positive while charging, zero when full or empty."""
        asked = self.own_power_w if self.released else self.setpoint_w
        wanted = max(-self.max_discharge_w, min(asked, self.max_charge_w))
        if wanted > 0 and self.stored_wh >= self.capacity_wh:
            return 0
        if wanted < 0 and self.stored_wh <= 0.0:
            return 0
        return wanted

    def advance_to(self, now_ms: int) -> None:
        """Integrate stored energy up to `now_ms`, stopping exactly at full or empty."""
        if now_ms <= self._now_ms:
            return
        hours = (now_ms - self._now_ms) / MS_PER_HOUR
        self._now_ms = now_ms
        power = self.power_w()
        if power > 0:
            room_ac_wh = (self.capacity_wh - self.stored_wh) / self.charge_efficiency
            taken_wh = min(power * hours, room_ac_wh)
            self.stored_wh = min(
                float(self.capacity_wh), self.stored_wh + taken_wh * self.charge_efficiency
            )
            self.charged_wh += taken_wh
        elif power < 0:
            deliverable_wh = self.stored_wh * self.discharge_efficiency
            given_wh = min(-power * hours, deliverable_wh)
            self.stored_wh = max(0.0, self.stored_wh - given_wh / self.discharge_efficiency)
            self.discharged_wh += given_wh

    def telemetry(self) -> Mapping[Quantity, TelemetryValue]:
        """State of charge, capacity, power, energy counters and the setpoint it obeys."""
        return {
            Quantity.SOC_PERCENT: round(self.soc_percent),
            Quantity.CAPACITY_WH: self.capacity_wh,
            Quantity.BATTERY_POWER_W: self.power_w(),
            Quantity.IMPORT_ENERGY_WH: round(self.charged_wh),
            Quantity.EXPORT_ENERGY_WH: round(self.discharged_wh),
            Quantity.BATTERY_SETPOINT_W: self.setpoint_w,
        }

    def obey(self, command: Command, value: int) -> bool:
        """Charge/discharge setpoint in W, or release to its own management."""
        if command == Command.BATTERY_SETPOINT_W:
            self.setpoint_w = value
            self.released = False
            return True
        if command == Command.BATTERY_RELEASE:
            self.released = True
            return True
        return False


HYDROGEN_EMPTY = "hydrogen_empty"


class FuelCellModel:
    """A hydrogen fuel cell: warm-up, ramped output, hydrogen burnt per kWh, stop at empty.

    Hydrogen use is proportional to the electricity delivered (about 60 g per kWh for a
    PEM cell). When the tank runs dry the cell stops in FAULT with `hydrogen_empty` until
    it is refilled.
    """

    def __init__(
        self,
        power_rating_w: int,
        hydrogen_g: float,
        *,
        start_ms: int,
        hydrogen_g_per_kwh: float = 60.0,
        ramp_w_per_s: float = 100.0,
        warmup_ms: int = 30_000,
    ) -> None:
        self.power_rating_w = power_rating_w
        self.hydrogen_g = hydrogen_g
        self.hydrogen_g_per_kwh = hydrogen_g_per_kwh
        self.ramp_w_per_s = ramp_w_per_s
        self.warmup_ms = warmup_ms
        self.state = FuelCellState.OFF
        self.setpoint_w = power_rating_w
        self.output_w = 0.0
        self.delivered_wh = 0.0
        self.faults: tuple[str, ...] = ()
        self._now_ms = start_ms
        self._warm_at_ms = start_ms

    def start(self) -> None:
        """Begin warm-up; refused (FAULT) when there is no hydrogen."""
        if self.hydrogen_g <= 0:
            self._run_dry()
        elif self.state in (FuelCellState.OFF, FuelCellState.STOPPING):
            self.state = FuelCellState.STARTING
            self._warm_at_ms = self._now_ms + self.warmup_ms

    def stop(self) -> None:
        """Ramp down to zero, then OFF."""
        if self.state == FuelCellState.STARTING:
            self.state = FuelCellState.OFF
        elif self.state == FuelCellState.RUNNING:
            self.state = FuelCellState.STOPPING

    def refill(self, hydrogen_g: float) -> None:
        """Add hydrogen; clears the empty-tank fault."""
        self.hydrogen_g += hydrogen_g
        if HYDROGEN_EMPTY in self.faults:
            self.faults = tuple(f for f in self.faults if f != HYDROGEN_EMPTY)
            self.state = FuelCellState.OFF

    def set_hydrogen(self, hydrogen_g: float) -> None:
        """Set the hydrogen left: more clears the empty-tank fault as a refill does; none
        stops a running cell at once."""
        if hydrogen_g > self.hydrogen_g:
            self.refill(hydrogen_g - self.hydrogen_g)
            return
        self.hydrogen_g = max(0.0, hydrogen_g)
        if self.hydrogen_g == 0.0 and self.state != FuelCellState.OFF:
            self._run_dry()

    def fault(self, code: str | None) -> None:
        """Raise fault `code` (the cell stops, in FAULT) or, with None, clear every fault;
        a cleared cell is OFF until it is started again, as real ones are."""
        if code is None:
            if self.faults:
                self.faults = ()
                self.state = FuelCellState.OFF
            return
        self.output_w = 0.0
        self.state = FuelCellState.FAULT
        if code not in self.faults:
            self.faults = (*self.faults, code)

    def advance_to(self, now_ms: int) -> None:
        """Integrate warm-up, ramping, delivered energy and hydrogen use up to `now_ms`."""
        while self._now_ms < now_ms:
            if self.state == FuelCellState.STARTING:
                self._now_ms = min(now_ms, self._warm_at_ms)
                if self._now_ms >= self._warm_at_ms:
                    self.state = FuelCellState.RUNNING
            elif self.state in (FuelCellState.RUNNING, FuelCellState.STOPPING):
                self._produce_until(now_ms)
            else:
                self._now_ms = now_ms

    def _produce_until(self, now_ms: int) -> None:
        target = float(self.setpoint_w) if self.state == FuelCellState.RUNNING else 0.0
        gap = target - self.output_w
        span_ms = now_ms - self._now_ms
        if gap != 0.0:
            # Linear ramp: go no further than reaching the target in this step.
            span_ms = min(span_ms, math.ceil(abs(gap) / self.ramp_w_per_s * 1000))
            change = math.copysign(min(abs(gap), self.ramp_w_per_s * span_ms / 1000), gap)
            end_output = self.output_w + change
        else:
            end_output = self.output_w
        energy_wh = (self.output_w + end_output) / 2 * span_ms / MS_PER_HOUR
        needed_g = energy_wh * self.hydrogen_g_per_kwh / 1000
        if needed_g >= self.hydrogen_g and needed_g > 0:
            share = self.hydrogen_g / needed_g
            self._now_ms += max(1, math.floor(span_ms * share))
            self.delivered_wh += energy_wh * share
            self.hydrogen_g = 0.0
            self._run_dry()
            return
        self._now_ms += span_ms
        self.delivered_wh += energy_wh
        self.hydrogen_g -= needed_g
        self.output_w = end_output
        if self.state == FuelCellState.STOPPING and self.output_w <= 0.0:
            self.output_w = 0.0
            self.state = FuelCellState.OFF

    def _run_dry(self) -> None:
        self.output_w = 0.0
        self.state = FuelCellState.FAULT
        if HYDROGEN_EMPTY not in self.faults:
            self.faults = (*self.faults, HYDROGEN_EMPTY)

    def telemetry(self) -> Mapping[Quantity, TelemetryValue]:
        """Power, rating, state, hydrogen left, faults and energy delivered."""
        return {
            Quantity.POWER_W: round(self.output_w),
            Quantity.POWER_RATING_W: self.power_rating_w,
            Quantity.STATE: self.state.value,
            Quantity.HYDROGEN_G: math.floor(self.hydrogen_g),
            Quantity.FAULT_CODES: self.faults,
            Quantity.EXPORT_ENERGY_WH: round(self.delivered_wh),
        }

    def obey(self, command: Command, value: int) -> bool:
        """Start (1) / stop (0) and an output setpoint in W, clamped to the rating."""
        if command == Command.START_STOP:
            if value:
                self.start()
            else:
                self.stop()
            return True
        if command == Command.SETPOINT_W:
            self.setpoint_w = max(0, min(value, self.power_rating_w))
            return True
        return False
