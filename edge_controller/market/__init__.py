"""The market: pure decisions about selling, buying and auctions, with no I/O.

The app feeds it telemetry and ledger facts and turns its decisions into signed records:
- `AutoSeller.decide(MarketSnapshot)` -> `PublishOffer` / `WithdrawOffer`
- `evaluate_offer(AcceptanceCriteria, MarketOffer, ...)` -> `Accept` / `Counter` / `Reject` /
  `Defer`
- `next_bid(BiddingStrategy, AuctionStanding)`: what to bid, given what the ledger requires
- `MarketPolicy.to_dict` / `MarketPolicy.from_dict` for `GET`/`PUT /api/v1/policy`
"""

from edge_controller.market.acceptance import (
    Accept,
    AcceptanceCriteria,
    AcceptanceDecision,
    AllowedHours,
    Counter,
    Defer,
    QuantityRange,
    Reject,
    SellerStanding,
    evaluate_offer,
)
from edge_controller.market.bidding import AuctionStanding, BiddingStrategy, next_bid
from edge_controller.market.checks import Problem, ValidationError
from edge_controller.market.offers import AuctionTerms, EnergyRequest, MarketOffer, OfferIntent
from edge_controller.market.policy import (
    AuctionRule,
    BatterySellRule,
    FuelCellSellRule,
    MarketPolicy,
    PvSellRule,
    SellPolicy,
    SellRule,
)
from edge_controller.market.pricing import (
    DemandPrice,
    FixedPrice,
    HourRange,
    MarketConditions,
    PricingStrategy,
    TimeOfDayPrice,
    offer_price,
)
from edge_controller.market.readings import (
    BatteryReading,
    FuelCellReading,
    PvReading,
    ResourceReading,
    Supply,
)
from edge_controller.market.reasons import DecisionReason
from edge_controller.market.selling import (
    AutoSeller,
    MarketSnapshot,
    PublishOffer,
    SellDecision,
    WithdrawOffer,
    available_quantity,
    confirms_counter,
)
from edge_controller.market.spending import DAY_MS, OverLimit, SpendingLimits, over_limit
from edge_controller.market.units import Mode, PowerHold, capacity_energy_wh, energy_cost

__all__ = [
    "DAY_MS",
    "Accept",
    "AcceptanceCriteria",
    "AcceptanceDecision",
    "AllowedHours",
    "AuctionRule",
    "AuctionStanding",
    "AuctionTerms",
    "AutoSeller",
    "BatteryReading",
    "BatterySellRule",
    "BiddingStrategy",
    "Counter",
    "DecisionReason",
    "Defer",
    "DemandPrice",
    "EnergyRequest",
    "FixedPrice",
    "FuelCellReading",
    "FuelCellSellRule",
    "HourRange",
    "MarketConditions",
    "MarketOffer",
    "MarketPolicy",
    "MarketSnapshot",
    "Mode",
    "OfferIntent",
    "OverLimit",
    "PowerHold",
    "PricingStrategy",
    "Problem",
    "PublishOffer",
    "PvReading",
    "PvSellRule",
    "QuantityRange",
    "Reject",
    "ResourceReading",
    "SellDecision",
    "SellPolicy",
    "SellRule",
    "SellerStanding",
    "SpendingLimits",
    "Supply",
    "TimeOfDayPrice",
    "ValidationError",
    "WithdrawOffer",
    "available_quantity",
    "capacity_energy_wh",
    "confirms_counter",
    "energy_cost",
    "evaluate_offer",
    "next_bid",
    "offer_price",
    "over_limit",
]
