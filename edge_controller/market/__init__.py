"""The market: pure decisions about selling, buying and auctions, with no I/O.

The app feeds it telemetry and ledger facts and turns its decisions into signed records:
- `AutoSeller.decide(MarketSnapshot)` -> `PublishOffer` / `WithdrawOffer`
- `evaluate_offer(AcceptanceCriteria, Offer, ...)` -> `Accept` / `Counter` / `Reject` / `Defer`
- `auction_outcome(Offer, bids, now_ms)` and `next_bid(BiddingStrategy, ...)`
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
    rank_offers,
)
from edge_controller.market.auction import (
    AuctionOutcome,
    Bid,
    BiddingStrategy,
    BidRefusal,
    auction_outcome,
    check_bid,
    next_bid,
)
from edge_controller.market.checks import Problem, ValidationError
from edge_controller.market.offers import AuctionTerms, EnergyRequest, Offer, OfferIntent
from edge_controller.market.policy import (
    AuctionRule,
    BatterySellRule,
    FuelCellSellRule,
    MarketPolicy,
    PvSellRule,
    SellPolicy,
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
from edge_controller.market.reasons import Reason
from edge_controller.market.selling import (
    AutoSeller,
    BatteryReading,
    FuelCellReading,
    MarketSnapshot,
    PublishOffer,
    PvReading,
    Reading,
    SellDecision,
    WithdrawOffer,
    available_quantity,
    confirms_counter,
)
from edge_controller.market.units import Mode, PowerHold, capacity_energy_wh, energy_cost

__all__ = [
    "Accept",
    "AcceptanceCriteria",
    "AcceptanceDecision",
    "AllowedHours",
    "AuctionOutcome",
    "AuctionRule",
    "AuctionTerms",
    "AutoSeller",
    "BatteryReading",
    "BatterySellRule",
    "Bid",
    "BidRefusal",
    "BiddingStrategy",
    "Counter",
    "Defer",
    "DemandPrice",
    "EnergyRequest",
    "FixedPrice",
    "FuelCellReading",
    "FuelCellSellRule",
    "HourRange",
    "MarketConditions",
    "MarketPolicy",
    "MarketSnapshot",
    "Mode",
    "Offer",
    "OfferIntent",
    "PowerHold",
    "PricingStrategy",
    "Problem",
    "PublishOffer",
    "PvReading",
    "PvSellRule",
    "QuantityRange",
    "Reading",
    "Reason",
    "Reject",
    "SellDecision",
    "SellPolicy",
    "SellerStanding",
    "TimeOfDayPrice",
    "ValidationError",
    "WithdrawOffer",
    "auction_outcome",
    "available_quantity",
    "capacity_energy_wh",
    "check_bid",
    "confirms_counter",
    "energy_cost",
    "evaluate_offer",
    "next_bid",
    "offer_price",
    "rank_offers",
]
