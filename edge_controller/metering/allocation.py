"""Allocating a resource's metered energy to the trades the ledger holds for it, and disputes.

Several trades can overlap in time on one resource (seed 000: a 10 kW fuel cell sells 7 kW
to B and 3 kW to C). The meter only says how much left the resource in each period, so the
export is shared out first-in-first-out: within each period, the earliest created trade that
is active takes what it can, then the next, and what no trade can take is *unallocated*
(spilled to the grid, or kept by the seller).

What a trade can take from one period:
- nothing beyond what remains of its agreed energy;
- nothing beyond its pro-rata share of the period it covers: a trade whose window ends
  halfway through a 60 s period can take at most half of that period's export, since the
  meter cannot say when inside the period the energy flowed. This is the same pro-rata rule
  the ledger uses to check a settlement against the meter (`ledger.rules.metered_export`),
  so a delivered figure from here never exceeds what the ledger accepts.

The same function allocates a buyer's measured *import* to the buyer's trades, which gives
the buyer's side of each trade for `find_disputes`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from edge_controller.metering.errors import MeteringError, Problem, require_count
from edge_controller.metering.period import SettlementPeriod
from edge_controller.metering.tree import Direction, Reading


@dataclass(frozen=True)
class Trade:
    """A trade as the ledger holds it: its window, agreed energy and creation order.

    `created` orders trades first-in-first-out (the ledger's creation time or a sequence
    number); trades created at the same instant are ordered by id.
    """

    id: str
    start_ms: int
    end_ms: int
    agreed_wh: int
    created: int

    def __post_init__(self) -> None:
        if not self.id:
            raise MeteringError(Problem.BAD_TRADE, "a trade needs an id")
        if self.end_ms <= self.start_ms:
            raise MeteringError(
                Problem.BAD_TRADE, f"trade {self.id}'s window must end after it starts"
            )
        try:
            require_count(self.agreed_wh, f"agreed_wh of trade {self.id}")
        except MeteringError as error:
            raise MeteringError(Problem.BAD_TRADE, error.message) from None


@dataclass(frozen=True)
class Share:
    """The Wh of one period given to one trade."""

    trade: str
    wh: int


@dataclass(frozen=True)
class PeriodAllocation:
    """How one period's metered energy was shared out."""

    period: SettlementPeriod
    metered_wh: int
    shares: tuple[Share, ...]
    unallocated_wh: int


@dataclass(frozen=True)
class TradeDelivery:
    """What a trade was allocated in total against what was agreed."""

    trade: str
    agreed_wh: int
    delivered_wh: int

    @property
    def shortfall_wh(self) -> int:
        """Agreed energy not delivered (what the buyer is refunded for)."""
        return self.agreed_wh - self.delivered_wh


@dataclass(frozen=True)
class Allocation:
    """The result of `allocate`: per period, per trade, and what was left over."""

    point: str | None
    direction: Direction
    periods: tuple[PeriodAllocation, ...]
    deliveries: tuple[TradeDelivery, ...]

    @property
    def unallocated_wh(self) -> int:
        """Metered energy that no trade took."""
        return sum(p.unallocated_wh for p in self.periods)

    @property
    def delivered(self) -> dict[str, int]:
        """Delivered Wh by trade id."""
        return {d.trade: d.delivered_wh for d in self.deliveries}

    def delivery(self, trade_id: str) -> TradeDelivery:
        """The delivery of `trade_id`."""
        for delivery in self.deliveries:
            if delivery.trade == trade_id:
                return delivery
        raise MeteringError(Problem.BAD_TRADE, f"trade {trade_id} was not part of this allocation")


def allocate(
    readings: Iterable[Reading],
    trades: Iterable[Trade],
    direction: Direction = Direction.EXPORT,
) -> Allocation:
    """Share each reading's energy in `direction` among `trades`, first-in-first-out.

    `readings` come from one metering point and must not overlap in time; they need not be
    contiguous (a period nobody reported for delivers nothing). Each trade gets at most its
    agreed energy overall and at most its pro-rata part of each period; each period gives
    away at most what was metered in it.
    """
    ordered_trades = _check_trades(trades)
    ordered_readings = _check_readings(readings)
    remaining = {trade.id: trade.agreed_wh for trade in ordered_trades}
    periods: list[PeriodAllocation] = []
    for reading in ordered_readings:
        period = reading.period
        metered = reading.amount(direction)
        available = metered
        shares: list[Share] = []
        for trade in ordered_trades:
            overlap = period.overlap_ms(trade.start_ms, trade.end_ms)
            if overlap == 0 or remaining[trade.id] == 0:
                continue
            cap = metered * overlap // period.length_ms
            wh = min(remaining[trade.id], cap, available)
            if wh > 0:
                shares.append(Share(trade.id, wh))
                remaining[trade.id] -= wh
                available -= wh
        periods.append(PeriodAllocation(period, metered, tuple(shares), available))
    deliveries = tuple(
        TradeDelivery(trade.id, trade.agreed_wh, trade.agreed_wh - remaining[trade.id])
        for trade in ordered_trades
    )
    point = ordered_readings[0].point if ordered_readings else None
    return Allocation(point, direction, tuple(periods), deliveries)


def _check_trades(trades: Iterable[Trade]) -> list[Trade]:
    seen: set[str] = set()
    ordered = sorted(trades, key=lambda trade: (trade.created, trade.id))
    for trade in ordered:
        if trade.id in seen:
            raise MeteringError(Problem.DUPLICATE_TRADE, f"trade {trade.id} is listed twice")
        seen.add(trade.id)
    return ordered


def _check_readings(readings: Iterable[Reading]) -> list[Reading]:
    ordered = sorted(readings, key=lambda reading: reading.period)
    for before, after in itertools.pairwise(ordered):
        if after.point != before.point:
            raise MeteringError(
                Problem.MIXED_POINTS,
                f"readings of {before.point} and {after.point} cannot be allocated together",
            )
        if after.period.start_ms < before.period.end_ms:
            raise MeteringError(
                Problem.OVERLAPPING_READINGS,
                f"readings of {after.point} overlap: "
                f"{before.period.start_ms}..{before.period.end_ms} and "
                f"{after.period.start_ms}..{after.period.end_ms}",
            )
    return ordered


class DisputeReason(StrEnum):
    """Why a seller's and a buyer's figures for a trade do not agree."""

    SELLER_ABOVE_BUYER = "seller_above_buyer"  # the buyer did not receive what was sent
    BUYER_ABOVE_SELLER = "buyer_above_seller"  # the buyer took more than the seller sent
    BUYER_MISSING = "buyer_missing"  # the buyer's meter gave nothing for this trade


@dataclass(frozen=True)
class Tolerance:
    """How far seller and buyer may differ before it is a dispute: the larger of `percent`
    of the larger figure (rounded down) and `min_wh` (meters disagree by a few Wh even when
    nothing is wrong, so small trades need a floor)."""

    percent: int = 2
    min_wh: int = 5

    def __post_init__(self) -> None:
        for name in ("percent", "min_wh"):
            try:
                require_count(getattr(self, name), name)
            except MeteringError as error:
                raise MeteringError(Problem.BAD_CONFIG, error.message) from None

    def allowed_wh(self, seller_wh: int, buyer_wh: int) -> int:
        """The largest difference that is still agreement."""
        return max(self.min_wh, max(seller_wh, buyer_wh) * self.percent // 100)


@dataclass(frozen=True)
class Dispute:
    """A trade whose seller-side and buyer-side figures differ beyond the tolerance."""

    trade: str
    seller_wh: int
    buyer_wh: int
    reason: DisputeReason


def find_disputes(
    seller: Allocation,
    buyer_wh: Mapping[str, int],
    tolerance: Tolerance | None = None,
    trades: Sequence[str] | None = None,
) -> tuple[Dispute, ...]:
    """Compare the seller's allocated export of each trade with the buyer's measured import.

    `buyer_wh` maps trade id to the buyer's figure for the same trade and window (usually
    `allocate(buyer_readings, buyer_trades, Direction.IMPORT).delivered`, merged over the
    buyers). `trades` limits the comparison; by default every trade in `seller` is compared.
    A trade with no buyer figure at all is a dispute (`BUYER_MISSING`): a silent payment
    for energy nobody measured arriving is what this check exists to prevent.
    """
    tolerance = tolerance or Tolerance()
    wanted = set(trades) if trades is not None else None
    disputes: list[Dispute] = []
    for delivery in seller.deliveries:
        if wanted is not None and delivery.trade not in wanted:
            continue
        seller_figure = delivery.delivered_wh
        if delivery.trade not in buyer_wh:
            disputes.append(Dispute(delivery.trade, seller_figure, 0, DisputeReason.BUYER_MISSING))
            continue
        buyer_figure = buyer_wh[delivery.trade]
        require_count(buyer_figure, f"buyer Wh of trade {delivery.trade}")
        if abs(seller_figure - buyer_figure) <= tolerance.allowed_wh(seller_figure, buyer_figure):
            continue
        reason = (
            DisputeReason.SELLER_ABOVE_BUYER
            if seller_figure > buyer_figure
            else DisputeReason.BUYER_ABOVE_SELLER
        )
        disputes.append(Dispute(delivery.trade, seller_figure, buyer_figure, reason))
    return tuple(disputes)
