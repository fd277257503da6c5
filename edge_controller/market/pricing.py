"""Pricing strategies: what a seller asks per kWh, in milli-units of the community currency.

- `FixedPrice`: one price, always.
- `TimeOfDayPrice`: a table of local hour ranges, e.g. evenings dearer than noon.
- `DemandPrice`: between a floor and a ceiling, rising with recent demand and with how
  often recent offers were accepted, falling with supply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edge_controller.market.checks import Checks
from edge_controller.market.units import HOURS_PER_DAY, local_hour

PERMILLE = 1000


@dataclass(frozen=True)
class FixedPrice:
    """Always the same price per kWh."""

    KIND: ClassVar[str] = "fixed"
    price: int = 250

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.price >= 0, "price", "must not be negative")
        checks.done()


@dataclass(frozen=True)
class HourRange:
    """Local hours [start_hour, end_hour) priced at `price`; 22 -> 6 runs over midnight."""

    start_hour: int
    end_hour: int
    price: int

    def __post_init__(self) -> None:
        checks = Checks()
        for name in ("start_hour", "end_hour"):
            checks.require(0 <= getattr(self, name) < HOURS_PER_DAY, name, "must be 0..23")
        checks.require(self.start_hour != self.end_hour, "end_hour", "must differ from start")
        checks.require(self.price >= 0, "price", "must not be negative")
        checks.done()

    def hours(self) -> list[int]:
        """The local hours the range covers."""
        length = (self.end_hour - self.start_hour) % HOURS_PER_DAY
        return [(self.start_hour + i) % HOURS_PER_DAY for i in range(length)]


@dataclass(frozen=True)
class TimeOfDayPrice:
    """A price per local hour range; hours no range covers use `default_price`."""

    KIND: ClassVar[str] = "time_of_day"
    ranges: tuple[HourRange, ...] = ()
    default_price: int = 250

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.default_price >= 0, "default_price", "must not be negative")
        covered: dict[int, int] = {}
        for index, hour_range in enumerate(self.ranges):
            for hour in hour_range.hours():
                if hour in covered:
                    checks.require(
                        False,
                        f"ranges[{index}]",
                        f"hour {hour} is already priced by ranges[{covered[hour]}]",
                    )
                    break
                covered[hour] = index
        checks.done()

    def price_at_hour(self, hour: int) -> int:
        """The price for local `hour`."""
        for hour_range in self.ranges:
            if hour in hour_range.hours():
                return hour_range.price
        return self.default_price


@dataclass(frozen=True)
class DemandPrice:
    """A price that follows the market, always within [floor, ceiling].

    At balance (demand equal to supply, half of recent offers accepted) it asks
    `reference`; the price scales with demand / supply and with the acceptance rate
    (x0.5 when nothing was accepted, x1.5 when everything was), then is clamped.
    """

    KIND: ClassVar[str] = "demand"
    floor: int = 100
    ceiling: int = 500
    reference: int = 250

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.floor >= 0, "floor", "must not be negative")
        checks.require(
            self.ceiling >= self.floor, "ceiling", f"must not be below floor ({self.floor})"
        )
        checks.require(
            self.floor <= self.reference <= self.ceiling,
            "reference",
            f"must be within floor..ceiling ({self.floor}..{self.ceiling})",
        )
        checks.done()


PricingStrategy = FixedPrice | TimeOfDayPrice | DemandPrice


@dataclass(frozen=True)
class MarketConditions:
    """Recent market facts the app derives from the ledger, plus the home's UTC offset.

    `demand_wh`/`supply_wh`: energy requested / offered in the recent window;
    `acceptance_permille`: share of recent offers that were accepted (0..1000).
    """

    demand_wh: int = 0
    supply_wh: int = 0
    acceptance_permille: int = 500
    utc_offset_minutes: int = 0

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.demand_wh >= 0, "demand_wh", "must not be negative")
        checks.require(self.supply_wh >= 0, "supply_wh", "must not be negative")
        checks.require(
            0 <= self.acceptance_permille <= PERMILLE, "acceptance_permille", "must be 0..1000"
        )
        checks.done()


def offer_price(strategy: PricingStrategy, at_ms: int, conditions: MarketConditions) -> int:
    """The price per kWh for energy delivered from `at_ms` (the offer's start)."""
    if isinstance(strategy, FixedPrice):
        return strategy.price
    if isinstance(strategy, TimeOfDayPrice):
        return strategy.price_at_hour(local_hour(at_ms, conditions.utc_offset_minutes))
    return demand_price(strategy, conditions)


def demand_price(strategy: DemandPrice, conditions: MarketConditions) -> int:
    """The demand-driven price for the recent market, clamped to [floor, ceiling]."""
    if conditions.supply_wh == 0:
        # Nobody sells: any demand is scarcity; no demand either leaves the ratio neutral.
        if conditions.demand_wh > 0:
            return strategy.ceiling
        ratio_permille = PERMILLE
    else:
        ratio_permille = conditions.demand_wh * PERMILLE // conditions.supply_wh
    acceptance_factor = PERMILLE // 2 + conditions.acceptance_permille
    raw = strategy.reference * ratio_permille * acceptance_factor // (PERMILLE * PERMILLE)
    return max(strategy.floor, min(strategy.ceiling, raw))
