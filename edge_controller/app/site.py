"""A home's devices as the app sees them: each configured device with its role's
behaviour.

A role's behaviour answers the three questions the app asks of a device, so no part of the
app compares role strings or walks capabilities: what the market may sell from it now
(`market_reading`), how much energy it holds for the ledger's energy rule (`stored_wh`),
and how to drive it for the trades that run now (`drive`). A new kind of device is a
`Role` member, one class here and one entry in `BEHAVIOURS`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar

from edge_controller.config import DeviceConfig
from edge_controller.devices import (
    Clock,
    DeviceCapabilities,
    DeviceCommandError,
    FuelCellState,
    capabilities_of,
)
from edge_controller.devices.device import Device
from edge_controller.devices.roles import Role
from edge_controller.devices.samples import Sample
from edge_controller.devices.sources import open_device
from edge_controller.ledger import Resource
from edge_controller.market import (
    BatteryReading,
    FuelCellReading,
    PowerHold,
    PvReading,
    ResourceReading,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteContext:
    """What every device's reading may depend on besides itself, in one control cycle."""

    now: int
    grid_power: Sample[int] | None  # the home's grid meter (import > 0), when it has one


@dataclass
class Setpoints:
    """The last command each device obeyed, so a command is sent only when it changes."""

    watts: dict[str, int] = field(default_factory=dict)

    async def send(
        self, device_id: str, watts: int, command: Callable[[int], Awaitable[None]]
    ) -> None:
        if self.watts.get(device_id) == watts:
            return
        if await guarded(command(watts)):
            self.watts[device_id] = watts
            log.info("setpoint %s: %d W", device_id, watts)

    def taken_over(self, device_id: str) -> bool:
        """Whether we command the device now (a setpoint other than 0 or released)."""
        return bool(self.watts.get(device_id))


async def guarded(command: Awaitable[None]) -> bool:
    """Run a device command; a refusal by the device is logged, not raised."""
    try:
        await command
    except DeviceCommandError as exc:
        log.warning("device command failed: %s", exc)
        return False
    return True


@dataclass
class SiteDevice:
    """A configured device, its capabilities, and what its role makes of them."""

    role: ClassVar[Role] = Role.METER

    config: DeviceConfig
    device: Device
    capabilities: DeviceCapabilities

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def resource_id(self) -> str:
        return self.config.resource

    def market_reading(
        self, resource: Resource, holds: tuple[PowerHold, ...], site: SiteContext
    ) -> ResourceReading | None:
        """What the market may sell from this device now; None: nothing (a meter)."""
        return None

    def stored_wh(self, resource: Resource, now: int) -> int | None:
        """The energy the device holds now for its resource; None: not storage, or stale."""
        return None

    async def drive(self, power_w: int, setpoints: Setpoints) -> None:
        """Deliver `power_w` for the trades that run now (0: none runs)."""


class BatterySite(SiteDevice):
    role = Role.BATTERY

    def market_reading(
        self, resource: Resource, holds: tuple[PowerHold, ...], site: SiteContext
    ) -> ResourceReading | None:
        battery = self.capabilities.battery
        if battery is None:
            return None
        soc, capacity = battery.soc_percent(), battery.capacity_wh()
        if soc is None or capacity is None:
            return None
        return BatteryReading(
            resource=resource.id,
            soc_percent=float(soc.value),
            capacity_wh=capacity.value,
            max_discharge_w=resource.power_w,
            fresh=soc.fresh(site.now) and capacity.fresh(site.now),
            committed_wh=resource.committed_wh,
            held=holds,
        )

    def stored_wh(self, resource: Resource, now: int) -> int | None:
        # The state of charge of the registered capacity: the registration, not the
        # device, says how large the battery is in the ledger.
        battery = self.capabilities.battery
        soc = battery.soc_percent() if battery is not None else None
        if soc is None or not soc.fresh(now):
            return None
        return resource.capacity_wh * soc.value // 100

    async def drive(self, power_w: int, setpoints: Setpoints) -> None:
        battery = self.capabilities.battery
        if battery is None:
            return
        if power_w:
            await setpoints.send(self.id, -power_w, battery.set_power_setpoint_w)
        elif await guarded(battery.release_setpoint()):
            # Its last trade is over: hand it back to its own energy management
            # (self-consumption) instead of holding it idle at 0 W.
            del setpoints.watts[self.id]
            log.info("setpoint %s: released to its own energy management", self.id)


class FuelCellSite(SiteDevice):
    role = Role.FUEL_CELL

    def market_reading(
        self, resource: Resource, holds: tuple[PowerHold, ...], site: SiteContext
    ) -> ResourceReading | None:
        cell = self.capabilities.fuel_cell
        if cell is None:
            return None
        energy = cell.available_energy_wh()
        if energy is None:
            return None
        state, faults = cell.state(), cell.fault_codes()
        return FuelCellReading(
            resource=resource.id,
            power_rating_w=resource.power_w,
            available_energy_wh=max(0, energy.value - resource.committed_wh),
            fresh=energy.fresh(site.now),
            held=holds,
            fault=bool(faults and faults.value)
            or bool(state and state.value is FuelCellState.FAULT),
        )

    def stored_wh(self, resource: Resource, now: int) -> int | None:
        cell = self.capabilities.fuel_cell
        energy = cell.available_energy_wh() if cell is not None else None
        return energy.value if energy is not None and energy.fresh(now) else None

    async def drive(self, power_w: int, setpoints: Setpoints) -> None:
        generator = self.capabilities.generator
        if generator is None:
            return
        was = setpoints.watts.get(self.id, 0)
        if power_w and was == 0:
            await guarded(generator.start())
        await setpoints.send(self.id, power_w, generator.set_setpoint_w)
        if power_w == 0 and was:
            # Its trades are over: stop burning hydrogen at no load.
            await guarded(generator.stop())


class PvSite(SiteDevice):
    role = Role.PV

    def market_reading(
        self, resource: Resource, holds: tuple[PowerHold, ...], site: SiteContext
    ) -> ResourceReading | None:
        meter = self.capabilities.power_meter
        pv = meter.power_w() if meter is not None else None
        if pv is None:
            return None
        grid = site.grid_power
        export, load, fresh = None, 0, pv.fresh(site.now)
        if grid is not None:
            # The grid meter already accounts for what the home uses and a charging battery.
            export = max(0, -grid.value)
            load = max(0, pv.value + grid.value)
            fresh = fresh and grid.fresh(site.now)
        return PvReading(
            resource=resource.id,
            pv_w=pv.value,
            load_w=load,
            fresh=fresh,
            grid_export_w=export,
            held=holds,
        )


class GridMeterSite(SiteDevice):
    role = Role.GRID_METER


BEHAVIOURS: dict[Role, type[SiteDevice]] = {
    Role.PV: PvSite,
    Role.BATTERY: BatterySite,
    Role.FUEL_CELL: FuelCellSite,
    Role.GRID_METER: GridMeterSite,
    Role.METER: SiteDevice,
}


def site_device(config: DeviceConfig, clock: Clock) -> SiteDevice:
    """The configured device on its source (MQTT, SunSpec, Home Assistant), with its role's
    behaviour."""
    device = open_device(config.id, config.profile, clock, config.stale_after_ms)
    return BEHAVIOURS[config.role](config, device, capabilities_of(device))


def grid_power(devices: list[SiteDevice]) -> Sample[int] | None:
    """The home's grid power from its first grid meter (import > 0), if it has one."""
    for d in devices:
        if d.capabilities.grid_meter is not None:
            return d.capabilities.grid_meter.power_w()
    return None
