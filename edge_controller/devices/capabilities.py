"""Small capability interfaces; a device implements only the ones its hardware has.

Sign conventions, used everywhere in the device layer:
- grid power is positive when the home imports and negative when it exports;
- battery power is positive when the battery charges and negative when it discharges;
- generator power (PV inverter, fuel cell) is positive when it produces.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from edge_controller.devices.samples import Sample


class FuelCellState(StrEnum):
    """Operating state a fuel cell reports."""

    OFF = "off"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FAULT = "fault"


class PowerMeter(Protocol):
    """Measures the power flowing now."""

    def power_w(self) -> Sample[int] | None:
        """The latest power in W, or None before the first value arrived."""
        ...


class EnergyMeter(Protocol):
    """Counts energy in each direction since the meter was installed."""

    def import_wh(self) -> Sample[int] | None:
        """Energy taken in (from the grid, into the battery), Wh."""
        ...

    def export_wh(self) -> Sample[int] | None:
        """Energy given out (to the grid, from a generator or battery), Wh."""
        ...


class Battery(Protocol):
    """A home battery with a charge/discharge setpoint."""

    def soc_percent(self) -> Sample[int] | None:
        """State of charge, 0 to 100 %."""
        ...

    def capacity_wh(self) -> Sample[int] | None:
        """Usable capacity, Wh."""
        ...

    def power_w(self) -> Sample[int] | None:
        """Battery power in W, positive while charging."""
        ...

    async def set_power_setpoint_w(self, watts: int) -> None:
        """Ask the battery to charge (positive) or discharge (negative) at `watts`."""
        ...

    async def release_setpoint(self) -> None:
        """Drop our setpoint and hand the battery back to its own energy management
        (self-consumption), rather than pinning it at 0 W."""
        ...


class ControllableGenerator(Protocol):
    """A generator that can be started, stopped and given a power setpoint."""

    def power_w(self) -> Sample[int] | None:
        """Power produced now, W."""
        ...

    def power_rating_w(self) -> Sample[int] | None:
        """The most power the generator can deliver, W."""
        ...

    async def start(self) -> None:
        """Start producing."""
        ...

    async def stop(self) -> None:
        """Stop producing."""
        ...

    async def set_setpoint_w(self, watts: int) -> None:
        """Ask for `watts` of output (limited by the rating)."""
        ...


class ExportLimiter(Protocol):
    """Limits how much power is fed into the grid."""

    def export_limit_w(self) -> Sample[int] | None:
        """The export limit now in force, W."""
        ...

    async def set_export_limit_w(self, watts: int) -> None:
        """Ask for an export limit of `watts`."""
        ...


class FuelCellTelemetry(Protocol):
    """What a fuel cell reports beyond its power: state, fuel left and faults."""

    def state(self) -> Sample[FuelCellState] | None:
        """The operating state."""
        ...

    def hydrogen_g(self) -> Sample[int] | None:
        """Hydrogen left in the tank, grams."""
        ...

    def available_energy_wh(self) -> Sample[int] | None:
        """Electrical energy the hydrogen left can still deliver, Wh."""
        ...

    def fault_codes(self) -> Sample[tuple[str, ...]] | None:
        """Active fault codes; empty when healthy."""
        ...
