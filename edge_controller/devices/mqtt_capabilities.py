"""The capabilities a device offers, each a small object behind one Protocol.

`capabilities_of` looks at the device's profile and builds only what the hardware has:
an OpenDTU inverter yields a power meter, an energy meter and an export limiter; a fuel
cell on the generic profile yields a controllable generator and fuel-cell telemetry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edge_controller.devices.capabilities import (
    Battery,
    ControllableGenerator,
    EnergyMeter,
    ExportLimiter,
    FuelCellState,
    FuelCellTelemetry,
    PowerMeter,
)
from edge_controller.devices.device import Device
from edge_controller.devices.profiles import Command, Quantity
from edge_controller.devices.samples import Sample

log = logging.getLogger(__name__)

# The integer a release command carries (its payload template places it, if at all).
RELEASE_VALUE = 1
# A PEM fuel cell turns about 0.06 kg of hydrogen into 1 kWh of electricity.
HYDROGEN_G_PER_KWH = 60


class MqttPowerMeter:
    """Power of one quantity (device output or grid exchange) as a `PowerMeter`."""

    def __init__(self, device: Device, quantity: Quantity = Quantity.POWER_W) -> None:
        self._device = device
        self._quantity = quantity

    def power_w(self) -> Sample[int] | None:
        """The latest power, W."""
        return self._device.number(self._quantity)


class MqttEnergyMeter:
    """Import and export counters as an `EnergyMeter`."""

    def __init__(self, device: Device) -> None:
        self._device = device

    def import_wh(self) -> Sample[int] | None:
        """Energy imported, Wh."""
        return self._device.number(Quantity.IMPORT_ENERGY_WH)

    def export_wh(self) -> Sample[int] | None:
        """Energy exported, Wh."""
        return self._device.number(Quantity.EXPORT_ENERGY_WH)


class MqttBattery:
    """A battery as a `Battery`."""

    def __init__(self, device: Device) -> None:
        self._device = device
        self._driving = False
        self._owner_w: int | None = None  # the setpoint it reported before we drove it

    def soc_percent(self) -> Sample[int] | None:
        """State of charge, %."""
        return self._device.number(Quantity.SOC_PERCENT)

    def capacity_wh(self) -> Sample[int] | None:
        """Usable capacity, Wh."""
        return self._device.number(Quantity.CAPACITY_WH)

    def power_w(self) -> Sample[int] | None:
        """Battery power, W, positive while charging."""
        return self._device.number(Quantity.BATTERY_POWER_W)

    async def set_power_setpoint_w(self, watts: int) -> None:
        """Charge (positive) or discharge (negative) at `watts`."""
        if not self._driving:
            reported = self._device.number(Quantity.BATTERY_SETPOINT_W)
            self._owner_w = reported.value if reported is not None else None
        await self._device.send(Command.BATTERY_SETPOINT_W, watts)
        self._driving = True

    async def release_setpoint(self) -> None:
        """Hand the battery back to its own management with the profile's release command;
        without one, write back the setpoint it reported before the trade; a profile with
        neither can only be told 0 W, which holds the battery idle."""
        owner = self._owner_w
        if self._device.supports(Command.BATTERY_RELEASE):
            await self._device.send(Command.BATTERY_RELEASE, RELEASE_VALUE)
        elif owner is not None:
            await self._device.send(Command.BATTERY_SETPOINT_W, owner)
            log.info("%s: setpoint back to the owner's %d W", self._device.device_id, owner)
        else:
            log.warning(
                "%s: the profile has no battery_release command: holding the battery at 0 W"
                " instead of handing it back to its own energy management",
                self._device.device_id,
            )
            await self._device.send(Command.BATTERY_SETPOINT_W, 0)
        # Only once it went through: a failed hand-back is tried again with the same value.
        self._driving, self._owner_w = False, None


class MqttGenerator:
    """A generator with start/stop and a setpoint as a `ControllableGenerator`."""

    def __init__(self, device: Device) -> None:
        self._device = device

    def power_w(self) -> Sample[int] | None:
        """Power produced, W."""
        return self._device.number(Quantity.POWER_W)

    def power_rating_w(self) -> Sample[int] | None:
        """The most the generator can deliver, W."""
        return self._device.number(Quantity.POWER_RATING_W)

    async def start(self) -> None:
        """Start producing."""
        await self._device.send(Command.START_STOP, 1)

    async def stop(self) -> None:
        """Stop producing."""
        await self._device.send(Command.START_STOP, 0)

    async def set_setpoint_w(self, watts: int) -> None:
        """Ask for `watts` of output."""
        await self._device.send(Command.SETPOINT_W, watts)


class MqttExportLimiter:
    """An export (feed-in) limit as an `ExportLimiter`."""

    def __init__(self, device: Device) -> None:
        self._device = device

    def export_limit_w(self) -> Sample[int] | None:
        """The limit in force, W, as the device reports it."""
        return self._device.number(Quantity.EXPORT_LIMIT_W)

    async def set_export_limit_w(self, watts: int) -> None:
        """Ask for an export limit of `watts`."""
        await self._device.send(Command.EXPORT_LIMIT_W, watts)


class MqttFuelCell:
    """Fuel-cell state, hydrogen and faults as `FuelCellTelemetry`."""

    def __init__(self, device: Device, hydrogen_g_per_kwh: int = HYDROGEN_G_PER_KWH) -> None:
        self._device = device
        self._hydrogen_g_per_kwh = hydrogen_g_per_kwh

    def state(self) -> Sample[FuelCellState] | None:
        """The operating state."""
        reading = self._device.text(Quantity.STATE)
        if reading is None:
            return None
        return Sample(FuelCellState(reading.value), reading.at_ms, reading.max_age_ms)

    def hydrogen_g(self) -> Sample[int] | None:
        """Hydrogen left, g."""
        return self._device.number(Quantity.HYDROGEN_G)

    def available_energy_wh(self) -> Sample[int] | None:
        """Electricity the hydrogen left can deliver, Wh (as fresh as the hydrogen level)."""
        hydrogen = self.hydrogen_g()
        if hydrogen is None:
            return None
        wh = hydrogen.value * 1000 // self._hydrogen_g_per_kwh
        return Sample(wh, hydrogen.at_ms, hydrogen.max_age_ms)

    def fault_codes(self) -> Sample[tuple[str, ...]] | None:
        """Active fault codes."""
        return self._device.codes(Quantity.FAULT_CODES)


@dataclass(frozen=True, slots=True)
class DeviceCapabilities:
    """The capabilities one device has; a field is None when the hardware lacks it."""

    device: Device
    power_meter: PowerMeter | None = None
    grid_meter: PowerMeter | None = None
    energy_meter: EnergyMeter | None = None
    battery: Battery | None = None
    generator: ControllableGenerator | None = None
    export_limiter: ExportLimiter | None = None
    fuel_cell: FuelCellTelemetry | None = None

    def names(self) -> tuple[str, ...]:
        """The names of the capabilities present, for `GET devices`."""
        fields = (
            "power_meter",
            "grid_meter",
            "energy_meter",
            "battery",
            "generator",
            "export_limiter",
            "fuel_cell",
        )
        return tuple(name for name in fields if getattr(self, name) is not None)


def capabilities_of(
    device: Device, *, hydrogen_g_per_kwh: int = HYDROGEN_G_PER_KWH
) -> DeviceCapabilities:
    """Build the capability objects that the device's profile supports."""
    have = device.quantities()
    return DeviceCapabilities(
        device=device,
        power_meter=MqttPowerMeter(device) if Quantity.POWER_W in have else None,
        grid_meter=(
            MqttPowerMeter(device, Quantity.GRID_POWER_W) if Quantity.GRID_POWER_W in have else None
        ),
        energy_meter=(
            MqttEnergyMeter(device)
            if have & {Quantity.IMPORT_ENERGY_WH, Quantity.EXPORT_ENERGY_WH}
            else None
        ),
        battery=MqttBattery(device) if Quantity.SOC_PERCENT in have else None,
        generator=(
            MqttGenerator(device)
            if device.supports(Command.START_STOP) and device.supports(Command.SETPOINT_W)
            else None
        ),
        export_limiter=(
            MqttExportLimiter(device) if device.supports(Command.EXPORT_LIMIT_W) else None
        ),
        fuel_cell=(
            MqttFuelCell(device, hydrogen_g_per_kwh)
            if have & {Quantity.STATE, Quantity.HYDROGEN_G}
            else None
        ),
    )
