"""What a device is for at a site: the one list of device roles.

The configuration checks a device's role against this list, the app picks the device's
behaviour (what it can sell, how it is driven for a trade) by it, and `GET devices`
reports it with what the role means, so the Home Assistant integration needs no list of
its own. A new kind of device (a heat pump, an EV charger) starts here.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """The role a configured device plays for its home."""

    PV = "pv"
    BATTERY = "battery"
    FUEL_CELL = "fuel_cell"
    GRID_METER = "grid_meter"  # the home's connection to the grid
    METER = "meter"  # a meter in front of something else (a load, a sub-circuit)

    @property
    def standalone(self) -> bool:
        """Whether it is equipment of its own to the owner (a device in Home Assistant),
        rather than a meter that measures the home's connection."""
        return self in (Role.PV, Role.BATTERY, Role.FUEL_CELL)

    @property
    def sells(self) -> bool:
        """Whether a resource behind it can be offered to neighbours."""
        return self in (Role.PV, Role.BATTERY, Role.FUEL_CELL)
