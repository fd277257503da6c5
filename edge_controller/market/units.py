"""Integer arithmetic for amounts: Wh, W, milli-units of currency, UTC milliseconds.

Signed records hold integers only, so every conversion here rounds down: a seller never
promises, and a buyer never pays, a fraction that rounding invented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Mode = Literal["energy", "capacity"]
"""How an offer counts its quantity: energy in Wh, or capacity in W over the delivery window."""

MS_PER_HOUR = 3_600_000
MS_PER_MINUTE = 60_000
HOURS_PER_DAY = 24


def energy_cost(wh: int, price_per_kwh: int) -> int:
    """Milli-units to pay for `wh` Wh at `price_per_kwh` milli-units per kWh."""
    return wh * price_per_kwh // 1000


def capacity_energy_wh(w: int, duration_ms: int) -> int:
    """Energy in Wh that a capacity of `w` W supplies over `duration_ms`."""
    return w * duration_ms // MS_PER_HOUR


def sustainable_power_w(wh: int, duration_ms: int) -> int:
    """The constant power in W that `wh` Wh can sustain for the whole of `duration_ms`."""
    if duration_ms <= 0:
        return 0
    return wh * MS_PER_HOUR // duration_ms


@dataclass(frozen=True)
class PowerHold:
    """Power that a trade holds of a resource's rating over [start, end) (UTC ms, W)."""

    start: int
    end: int
    power_w: int


def held_w(holds: Sequence[PowerHold], start: int, end: int) -> int:
    """The most power `holds` take at any instant of the window [start, end)."""
    # The sum only rises where a hold begins: the window's start and every start inside it
    # are the instants to look at.
    instants = [start, *(h.start for h in holds if start < h.start < end)]
    return max((sum(h.power_w for h in holds if h.start <= t < h.end) for t in instants), default=0)


def quantity_energy_wh(mode: Mode, quantity: int, duration_ms: int) -> int:
    """The energy a quantity stands for: itself in energy mode, W over the window otherwise."""
    if mode == "energy":
        return quantity
    return capacity_energy_wh(quantity, duration_ms)


def quantity_cost(mode: Mode, quantity: int, price_per_kwh: int, duration_ms: int) -> int:
    """Milli-units to pay for a quantity; capacity is paid as the energy it could supply."""
    return energy_cost(quantity_energy_wh(mode, quantity, duration_ms), price_per_kwh)


def local_hour(utc_ms: int, utc_offset_minutes: int) -> int:
    """Hour of the local day (0..23) at `utc_ms`, for a home `utc_offset_minutes` east of UTC.

    The app passes the offset in force now (it knows the home's zone and daylight saving),
    which keeps this function free of time-zone databases.
    """
    local_ms = utc_ms + utc_offset_minutes * MS_PER_MINUTE
    return (local_ms // MS_PER_HOUR) % HOURS_PER_DAY
