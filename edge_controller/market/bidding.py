"""Bidding: the buyer's strategy in an auction, given what the ledger requires of a bid.

Which bid the ledger takes (at least the reserve, above the best bid, at most the cap,
before the close) and which bid wins is a ledger rule (`edge_controller.ledger.minimum_bid`,
`bidding_open`). Here is only what the owner wants: outbid the leader in steps, never
above its own maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_controller.market.checks import Checks


@dataclass(frozen=True)
class BiddingStrategy:
    """How the owner bids: outbid the leader by `increment`, up to `max_price` per kWh."""

    max_price: int = 300
    increment: int = 10

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.max_price >= 0, "max_price", "must not be negative")
        checks.require(self.increment > 0, "increment", "must be positive")
        checks.done()


@dataclass(frozen=True)
class AuctionStanding:
    """An auction as a bidder finds it in the ledger.

    `minimum` is the lowest price the ledger takes as the next bid and `cap` the highest;
    `best_price` is the leading bid (None: no bid yet) and `ours` whether we lead;
    `open` whether the ledger takes a bid from us now (the auction runs and is not ours).
    """

    minimum: int
    cap: int
    best_price: int | None = None
    ours: bool = False
    open: bool = True


def next_bid(strategy: BiddingStrategy, auction: AuctionStanding) -> int | None:
    """The price to bid now, or None when bidding cannot help.

    None when the ledger takes no bid from us, we already lead, or the lowest bid the
    ledger takes is above `strategy.max_price` or the cap.
    """
    if not auction.open or auction.ours:
        return None
    limit = min(strategy.max_price, auction.cap)
    target = auction.minimum
    if auction.best_price is not None:
        target = max(target, auction.best_price + strategy.increment)
    if target > limit:
        # A smaller step than the increment still wins if the ledger takes it.
        return limit if limit >= auction.minimum else None
    return target
