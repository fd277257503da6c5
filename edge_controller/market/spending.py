"""The owner's spending limits: what this home may spend on energy, whoever asks.

The same limits bind the owner's actions through the API (an acceptance, a bid, a
request) and automatic buying: a price ceiling per kWh, a most per trade and a most per
day (any 24 hours). Someone holding the owner's token may raise them, but no single call
can spend the wallet: raising a limit is a call of its own, seen by Home Assistant.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_controller.market.checks import Checks
from edge_controller.market.reasons import DecisionReason

DAY_MS = 24 * 3_600_000


@dataclass(frozen=True)
class SpendingLimits:
    """Milli-units: `price_ceiling` per kWh, `max_trade_cost` per trade (or bid),
    `max_daily_cost` over any 24 hours of trades made, counter-offers and bids held."""

    price_ceiling: int = 2_000
    max_trade_cost: int = 100_000
    max_daily_cost: int = 500_000

    def __post_init__(self) -> None:
        checks = Checks()
        for name in ("price_ceiling", "max_trade_cost", "max_daily_cost"):
            checks.require(getattr(self, name) >= 0, name, "must not be negative")
        checks.require(
            self.max_trade_cost <= self.max_daily_cost,
            "max_trade_cost",
            f"must not be above max_daily_cost ({self.max_daily_cost})",
        )
        checks.done()

    def budget(self, spent_today: int) -> int:
        """The most one more purchase may cost now, given what the last 24 hours spent."""
        return max(0, min(self.max_trade_cost, self.max_daily_cost - spent_today))


@dataclass(frozen=True)
class OverLimit:
    """A purchase the limits refuse: which limit, and a sentence for the owner."""

    reason: DecisionReason
    message: str


def over_limit(limits: SpendingLimits, price: int, cost: int, spent_today: int) -> OverLimit | None:
    """Whether buying at `price` per kWh for `cost` in all breaks a limit (None: it fits)."""
    if price > limits.price_ceiling:
        return OverLimit(
            DecisionReason.PRICE_ABOVE_CEILING,
            f"price {price} per kWh is above the ceiling of {limits.price_ceiling}",
        )
    if cost > limits.max_trade_cost:
        return OverLimit(
            DecisionReason.TRADE_LIMIT,
            f"it costs {cost}, more than the limit of {limits.max_trade_cost} per trade",
        )
    if spent_today + cost > limits.max_daily_cost:
        return OverLimit(
            DecisionReason.DAILY_LIMIT,
            f"it costs {cost}; with {spent_today} spent in the last 24 hours that is over "
            f"the daily limit of {limits.max_daily_cost}",
        )
    return None
