"""The owner's market policy: when to sell automatically, at what price, and how to buy.

These frozen dataclasses are what `GET`/`PUT /api/v1/policy` exchange: `MarketPolicy.to_dict`
and `MarketPolicy.from_dict` (errors list field paths). Every threshold pair has an enable
value and a lower disable value (hysteresis) plus delays, so selling never flaps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from edge_controller.market.acceptance import AcceptanceCriteria
from edge_controller.market.bidding import BiddingStrategy
from edge_controller.market.checks import Checks, from_dict, to_dict
from edge_controller.market.pricing import FixedPrice, PricingStrategy
from edge_controller.market.spending import SpendingLimits
from edge_controller.market.units import Mode

PERCENT = 100


def _check_delays(checks: Checks, enable_delay_ms: int, disable_delay_ms: int) -> None:
    checks.require(enable_delay_ms >= 0, "enable_delay_ms", "must not be negative")
    checks.require(disable_delay_ms >= 0, "disable_delay_ms", "must not be negative")


@dataclass(frozen=True)
class BatterySellRule:
    """Sell battery energy when state of charge stays above `enable_soc_percent`.

    Selling stops once it stays below `disable_soc_percent`; offers never reach into
    the lowest `reserve_percent` of the battery. Automatic offers and the trades already
    held never take more than `max_power_percent` of the battery's rated power together,
    so an offer the owner makes by hand for the same hours still fits (headroom).
    """

    enable_soc_percent: int = 80
    disable_soc_percent: int = 70
    reserve_percent: int = 30
    enable_delay_ms: int = 60_000
    disable_delay_ms: int = 60_000
    min_offer_wh: int = 100
    max_power_percent: int = 80

    def __post_init__(self) -> None:
        checks = Checks()
        for name in ("enable_soc_percent", "disable_soc_percent", "reserve_percent"):
            checks.require(0 <= getattr(self, name) <= PERCENT, name, "must be 0..100")
        checks.require(
            self.disable_soc_percent <= self.enable_soc_percent,
            "disable_soc_percent",
            f"must not be above enable_soc_percent ({self.enable_soc_percent})",
        )
        checks.require(
            self.reserve_percent <= self.disable_soc_percent,
            "reserve_percent",
            f"must not be above disable_soc_percent ({self.disable_soc_percent})",
        )
        _check_delays(checks, self.enable_delay_ms, self.disable_delay_ms)
        checks.require(self.min_offer_wh > 0, "min_offer_wh", "must be positive")
        checks.require(
            1 <= self.max_power_percent <= PERCENT, "max_power_percent", "must be 1..100"
        )
        checks.done()

    @property
    def thresholds(self) -> tuple[float, float]:
        """The (enable, disable) values of the signal this rule watches."""
        return self.enable_soc_percent, self.disable_soc_percent

    def offer_mode(self, natural: Mode) -> Mode:
        """A battery sells the way its reading does: stored energy."""
        return natural

    @property
    def min_offer(self) -> int:
        """The smallest offer worth publishing, in Wh."""
        return self.min_offer_wh


@dataclass(frozen=True)
class PvSellRule:
    """Sell PV capacity when the surplus stays above `enable_surplus_w`.

    Selling stops once it stays below `disable_surplus_w`; `reserve_w` of the surplus is
    kept back because clouds and household load move faster than offers. `sell_as`
    `energy` offers the surplus as Wh over the window instead of W of capacity (a
    community on rules 3, and a PV inverter with a registered meter).
    """

    enable_surplus_w: int = 1_000
    disable_surplus_w: int = 500
    reserve_w: int = 200
    enable_delay_ms: int = 60_000
    disable_delay_ms: int = 60_000
    min_offer_w: int = 100
    sell_as: Mode = "capacity"

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.disable_surplus_w >= 0, "disable_surplus_w", "must not be negative")
        checks.require(
            self.disable_surplus_w <= self.enable_surplus_w,
            "disable_surplus_w",
            f"must not be above enable_surplus_w ({self.enable_surplus_w})",
        )
        checks.require(self.reserve_w >= 0, "reserve_w", "must not be negative")
        _check_delays(checks, self.enable_delay_ms, self.disable_delay_ms)
        checks.require(self.min_offer_w > 0, "min_offer_w", "must be positive")
        checks.done()

    @property
    def thresholds(self) -> tuple[float, float]:
        """The (enable, disable) values of the signal this rule watches."""
        return self.enable_surplus_w, self.disable_surplus_w

    @property
    def min_offer(self) -> int:
        """The smallest offer worth publishing: W of capacity, or Wh when sold as energy."""
        return self.min_offer_w

    def offer_mode(self, natural: Mode) -> Mode:
        """Capacity, or energy when the owner sells the surplus as Wh."""
        return self.sell_as


@dataclass(frozen=True)
class FuelCellSellRule:
    """Sell fuel-cell capacity when free capacity stays above `enable_free_w`.

    Free capacity is the power rating minus what trades already hold; selling stops once
    it stays below `disable_free_w`. `reserve_wh` of hydrogen energy is never sold.
    """

    enable_free_w: int = 1_000
    disable_free_w: int = 500
    reserve_wh: int = 1_000
    enable_delay_ms: int = 60_000
    disable_delay_ms: int = 60_000
    min_offer_w: int = 100

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.disable_free_w >= 0, "disable_free_w", "must not be negative")
        checks.require(
            self.disable_free_w <= self.enable_free_w,
            "disable_free_w",
            f"must not be above enable_free_w ({self.enable_free_w})",
        )
        checks.require(self.reserve_wh >= 0, "reserve_wh", "must not be negative")
        _check_delays(checks, self.enable_delay_ms, self.disable_delay_ms)
        checks.require(self.min_offer_w > 0, "min_offer_w", "must be positive")
        checks.done()

    @property
    def thresholds(self) -> tuple[float, float]:
        """The (enable, disable) values of the signal this rule watches."""
        return self.enable_free_w, self.disable_free_w

    @property
    def min_offer(self) -> int:
        """The smallest offer worth publishing, in W of capacity."""
        return self.min_offer_w

    def offer_mode(self, natural: Mode) -> Mode:
        """A fuel cell sells the way its reading does: capacity."""
        return natural


SellRule = BatterySellRule | PvSellRule | FuelCellSellRule
"""A rule for selling one kind of resource by itself."""


@dataclass(frozen=True)
class AuctionRule:
    """Sell threshold offers by auction: bids close after `duration_ms`, capped at `cap`."""

    duration_ms: int = 120_000
    cap: int = 1_000

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.duration_ms > 0, "duration_ms", "must be positive")
        checks.require(self.cap >= 0, "cap", "must not be negative")
        checks.done()


@dataclass(frozen=True)
class SellPolicy:
    """When and how this home sells by itself.

    A threshold offer delivers from `delivery_lead_ms` after it is published, for
    `delivery_window_ms`, and can be accepted for `offer_validity_ms`. A resource publishes
    at most one offer per `min_offer_interval_ms`. `to` makes threshold offers private to
    those homes; `answer_requests` answers neighbours' energy requests with private offers.
    """

    auto_sell: bool = True
    battery: BatterySellRule | None = field(default_factory=BatterySellRule)
    pv: PvSellRule | None = field(default_factory=PvSellRule)
    fuel_cell: FuelCellSellRule | None = field(default_factory=FuelCellSellRule)
    pricing: PricingStrategy = field(default_factory=FixedPrice)
    min_offer_interval_ms: int = 300_000
    delivery_lead_ms: int = 60_000
    delivery_window_ms: int = 3_600_000
    offer_validity_ms: int = 300_000
    to: tuple[str, ...] = ()
    answer_requests: bool = True
    auction: AuctionRule | None = None
    # A buyer's counter-offer at or above this share of our asking price (per mille) is
    # confirmed automatically; above 1000 no counter-offer is ever confirmed by itself.
    min_counter_permille: int = 900
    # Who answers counter-offers: `auto` (by `min_counter_permille`, at once) or `ask`
    # (the owner, through the API, until the offer expires; then they are declined).
    counter_offers: Literal["auto", "ask"] = "auto"

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(
            self.min_offer_interval_ms >= 0, "min_offer_interval_ms", "must not be negative"
        )
        checks.require(self.delivery_lead_ms >= 0, "delivery_lead_ms", "must not be negative")
        checks.require(self.delivery_window_ms > 0, "delivery_window_ms", "must be positive")
        checks.require(self.offer_validity_ms > 0, "offer_validity_ms", "must be positive")
        checks.require(
            self.offer_validity_ms <= self.delivery_lead_ms + self.delivery_window_ms,
            "offer_validity_ms",
            "must not outlast the delivery window (delivery_lead_ms + delivery_window_ms)",
        )
        checks.require(len(set(self.to)) == len(self.to), "to", "lists an account twice")
        checks.require(
            0 <= self.min_counter_permille <= 1001, "min_counter_permille", "must be 0..1001"
        )
        if self.auction is not None:
            checks.require(
                self.auction.duration_ms <= self.offer_validity_ms,
                "auction.duration_ms",
                f"must not be longer than offer_validity_ms ({self.offer_validity_ms})",
            )
        checks.done()


@dataclass(frozen=True)
class MarketPolicy:
    """The whole policy the owner edits: selling, automatic buying and auction bidding,
    and the spending limits every purchase keeps to."""

    sell: SellPolicy = field(default_factory=SellPolicy)
    buy: AcceptanceCriteria = field(default_factory=AcceptanceCriteria)
    bidding: BiddingStrategy | None = None
    limits: SpendingLimits = field(default_factory=SpendingLimits)

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(
            self.buy.max_price <= self.limits.price_ceiling,
            "buy.max_price",
            f"must not be above limits.price_ceiling ({self.limits.price_ceiling})",
        )
        checks.done()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data, as `GET /api/v1/policy` returns it."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> MarketPolicy:
        """Read a policy document (`PUT /api/v1/policy`); missing fields take defaults.

        Raises ValidationError listing every problem with its field path.
        """
        return from_dict(cls, data)
