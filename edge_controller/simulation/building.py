"""A simulated building: a landlord's house (its `SimulatedSite`: PV, battery, load) with
tenants' flats behind the same grid connection, each tap a meter of its own (seed 003).

The building's main meter counts what the whole building draws and feeds in (the site's
grid exchange plus the flats' loads), the roof meter the PV's yield, each flat's meter its
load. A flat's relay (`start_stop`: 0 off, 1 on) switches its load off and on, as a
prepaid cut-off does. Each tap is one MQTT device (`tap`), all advanced in lockstep.
"""

from __future__ import annotations

from collections.abc import Mapping

from edge_controller.devices.profiles import Command, Quantity
from edge_controller.simulation.models import (
    INTEGRATION_STEP_MS,
    MS_PER_HOUR,
    TelemetryValue,
    integration_steps,
)
from edge_controller.simulation.site import HouseholdLoad, SimulatedSite

MAIN = "main"
ROOF = "roof"


class SimulatedBuilding:
    """The landlord's site and the tenants' flats behind one main meter."""

    def __init__(
        self, site: SimulatedSite, flats: Mapping[str, HouseholdLoad], *, start_ms: int
    ) -> None:
        self.site = site
        self.flats = dict(flats)
        self.switched_on = dict.fromkeys(self.flats, True)
        self.flat_wh = dict.fromkeys(self.flats, 0.0)
        self.main_import_wh = 0.0
        self.main_export_wh = 0.0
        self._now_ms = start_ms

    def flat_power_w(self, flat: str, at_ms: int) -> float:
        """A flat's load now (0 while its relay is off), W."""
        return self.flats[flat].power_at(at_ms) if self.switched_on[flat] else 0.0

    def advance_to(self, now_ms: int) -> None:
        """Advance the site and the flats in lockstep and count every tap."""
        for start, end in integration_steps(self._now_ms, now_ms, INTEGRATION_STEP_MS):
            middle = (start + end) // 2
            self.site.advance_to(middle)
            hours = (end - start) / MS_PER_HOUR
            flats_w = 0.0
            for flat in self.flats:
                power = self.flat_power_w(flat, middle)
                self.flat_wh[flat] += power * hours
                flats_w += power
                self.flats[flat].advance_to(end)
            main_wh = (self.site.grid_power_w() + flats_w) * hours
            if main_wh >= 0:
                self.main_import_wh += main_wh
            else:
                self.main_export_wh -= main_wh
            self.site.advance_to(end)
            self._now_ms = end

    def counters(self, tap: str) -> Mapping[Quantity, TelemetryValue]:
        """A tap's energy counters, Wh."""
        if tap == MAIN:
            imported, exported = self.main_import_wh, self.main_export_wh
        elif tap == ROOF:
            imported, exported = 0.0, self.site.pv.yield_wh
        else:
            imported, exported = self.flat_wh[tap], 0.0
        return {
            Quantity.IMPORT_ENERGY_WH: round(imported),
            Quantity.EXPORT_ENERGY_WH: round(exported),
        }

    def tap(self, name: str) -> BuildingTap:
        """The hardware of the tap `name` (main, roof or a flat) for its MQTT simulator."""
        return BuildingTap(self, name)


class BuildingTap:
    """One tap of a `SimulatedBuilding`, as a `SimulatedHardware`."""

    def __init__(self, building: SimulatedBuilding, name: str) -> None:
        self.building = building
        self.name = name

    def advance_to(self, now_ms: int) -> None:
        """Advance the whole building (each tap reads the same instant)."""
        self.building.advance_to(now_ms)

    def telemetry(self) -> Mapping[Quantity, TelemetryValue]:
        """The tap's counters."""
        return self.building.counters(self.name)

    def obey(self, command: Command, value: int) -> bool:
        """A flat's relay: start_stop 0 switches its load off, 1 on."""
        if command is not Command.START_STOP or self.name not in self.building.flats:
            return False
        self.building.switched_on[self.name] = bool(value)
        return True
