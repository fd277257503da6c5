"""What each kind of resource can sell now: the readings the seller decides on.

A reading answers for itself everything the seller asks of a kind of resource: which
rule of the policy applies to it, the signal that rule's thresholds watch, the mode it
sells in, what it can supply over a window, and why it offers. A new kind of resource
(a heat pump, an EV charger) is one new class here that satisfies `ResourceReading`,
and a rule for it in `SellPolicy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from edge_controller.market.policy import SellPolicy, SellRule
from edge_controller.market.reasons import DecisionReason
from edge_controller.market.units import (
    Mode,
    PowerHold,
    capacity_energy_wh,
    held_w,
    sustainable_power_w,
)

PERMILLE = 1000


@dataclass(frozen=True)
class Supply:
    """What a resource can deliver over a window, before open offers: the power it can
    hold at every instant (W) and the energy it can give (Wh)."""

    power_w: int
    energy_wh: int


class ResourceReading(Protocol):
    """A resource now, as the seller sees it."""

    @property
    def resource(self) -> str:
        """The ledger resource it is."""

    @property
    def fresh(self) -> bool:
        """Whether its telemetry is recent enough to sell on."""

    @property
    def mode(self) -> Mode:
        """How it sells by itself: stored energy in Wh, or capacity in W."""

    def rule(self, policy: SellPolicy) -> SellRule | None:
        """The rule of `policy` for this kind of resource (None: it is not sold)."""

    def signal(self, start: int, end: int) -> float:
        """What the rule's thresholds compare, for an offer delivering in [start, end)."""

    def supply(self, policy: SellPolicy, start: int, end: int) -> Supply:
        """What it can deliver over [start, end) above its rule's reserve, within the power
        that trades leave free at every instant of the window (the ledger refuses a sale
        beyond it)."""

    def publish_reason(self, size: str, signal: float) -> tuple[DecisionReason, str]:
        """Why it offers `size` (the quantity and price, in words) at `signal`."""


@dataclass(frozen=True)
class BatteryReading:
    """A home battery now. `committed_wh` is energy already sold and not yet delivered;
    `held` is what trades hold of its `max_discharge_w`, and when."""

    resource: str
    soc_percent: float
    capacity_wh: int
    max_discharge_w: int
    fresh: bool
    committed_wh: int = 0
    held: tuple[PowerHold, ...] = ()

    @property
    def mode(self) -> Mode:
        """A battery stores energy: it sells Wh."""
        return "energy"

    def free_w(self, start: int, end: int) -> int:
        """Discharge power no trade holds anywhere in [start, end)."""
        return max(0, self.max_discharge_w - held_w(self.held, start, end))

    def rule(self, policy: SellPolicy) -> SellRule | None:
        """The policy's battery rule."""
        return policy.battery

    def signal(self, start: int, end: int) -> float:
        """The state of charge."""
        return self.soc_percent

    def supply(self, policy: SellPolicy, start: int, end: int) -> Supply:
        """The energy above the reserve not yet sold, at the power it can sustain within
        the rule's share of the rating (the rest is the owner's headroom)."""
        if policy.battery is None:
            return Supply(0, 0)
        duration_ms = end - start
        soc_permille = int(self.soc_percent * 10)
        above_reserve = (soc_permille - policy.battery.reserve_percent * 10) * self.capacity_wh
        share_w = self.max_discharge_w * policy.battery.max_power_percent // 100
        free_w = max(0, min(self.free_w(start, end), share_w - held_w(self.held, start, end)))
        energy = above_reserve // PERMILLE - self.committed_wh
        energy = min(energy, capacity_energy_wh(free_w, duration_ms))
        return Supply(min(free_w, sustainable_power_w(max(0, energy), duration_ms)), energy)

    def publish_reason(self, size: str, signal: float) -> tuple[DecisionReason, str]:
        """Its state of charge is above the threshold."""
        return (
            DecisionReason.BATTERY_ABOVE_THRESHOLD,
            f"Battery {self.resource} at {self.soc_percent:g}%: offering {size}.",
        )


@dataclass(frozen=True)
class PvReading:
    """A PV inverter now. Surplus is the measured grid export when the meter gives it
    (it already accounts for a charging battery), otherwise PV power minus household load.
    `held` is what trades hold of its power, and when."""

    resource: str
    pv_w: int
    load_w: int
    fresh: bool
    grid_export_w: int | None = None
    held: tuple[PowerHold, ...] = ()

    @property
    def mode(self) -> Mode:
        """PV delivers power while the sun gives it: it sells capacity in W."""
        return "capacity"

    @property
    def surplus_w(self) -> int:
        """Power the home does not use itself."""
        if self.grid_export_w is not None:
            return max(0, self.grid_export_w)
        return max(0, self.pv_w - self.load_w)

    def rule(self, policy: SellPolicy) -> SellRule | None:
        """The policy's PV rule."""
        return policy.pv

    def signal(self, start: int, end: int) -> float:
        """The surplus."""
        return self.surplus_w

    def supply(self, policy: SellPolicy, start: int, end: int) -> Supply:
        """The surplus above the reserve that no trade holds yet, over the whole window."""
        if policy.pv is None:
            return Supply(0, 0)
        power = self.surplus_w - policy.pv.reserve_w - held_w(self.held, start, end)
        return Supply(power, capacity_energy_wh(max(0, power), end - start))

    def publish_reason(self, size: str, signal: float) -> tuple[DecisionReason, str]:
        """Its surplus is above the threshold."""
        return (
            DecisionReason.PV_SURPLUS_ABOVE_THRESHOLD,
            f"PV surplus of {self.surplus_w} W on {self.resource}: offering {size}.",
        )


@dataclass(frozen=True)
class FuelCellReading:
    """A fuel cell now: its rating, what trades hold of it and when, and the energy its
    hydrogen holds."""

    resource: str
    power_rating_w: int
    available_energy_wh: int
    fresh: bool
    held: tuple[PowerHold, ...] = ()
    fault: bool = False

    @property
    def mode(self) -> Mode:
        """A fuel cell delivers power while its hydrogen lasts: it sells capacity in W."""
        return "capacity"

    def free_w(self, start: int, end: int) -> int:
        """Capacity nobody holds anywhere in [start, end); none while it reports a fault."""
        if self.fault:
            return 0
        return max(0, self.power_rating_w - held_w(self.held, start, end))

    def rule(self, policy: SellPolicy) -> SellRule | None:
        """The policy's fuel-cell rule."""
        return policy.fuel_cell

    def signal(self, start: int, end: int) -> float:
        """The capacity free for the window an offer would deliver in."""
        return self.free_w(start, end)

    def supply(self, policy: SellPolicy, start: int, end: int) -> Supply:
        """The free capacity, as long as the hydrogen above the reserve can sustain it."""
        if policy.fuel_cell is None:
            return Supply(0, 0)
        duration_ms = end - start
        hydrogen_wh = self.available_energy_wh - policy.fuel_cell.reserve_wh
        free_w = self.free_w(start, end)
        power = min(free_w, sustainable_power_w(max(0, hydrogen_wh), duration_ms))
        return Supply(power, min(hydrogen_wh, capacity_energy_wh(free_w, duration_ms)))

    def publish_reason(self, size: str, signal: float) -> tuple[DecisionReason, str]:
        """It has capacity free above the threshold."""
        return (
            DecisionReason.FUEL_CELL_CAPACITY_FREE,
            f"Fuel cell {self.resource} has {signal:g} W free: offering {size}.",
        )
