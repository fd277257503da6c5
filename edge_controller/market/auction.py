"""Auctions: several bids for one offer, highest wins at close, ties to the earliest bid.

`check_bid` and `auction_outcome` are the outcome rule as pure functions over data, so
the ledger can apply (or mirror) exactly the same rule on every node. `next_bid` is a
bidder's strategy: outbid the leader in steps, never above its own maximum or the cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge_controller.market.checks import Checks
from edge_controller.market.offers import Offer
from edge_controller.market.reasons import Reason


@dataclass(frozen=True)
class Bid:
    """A bidder's price per kWh for the whole of one auctioned offer, placed at `placed_ms`."""

    bid_id: str
    offer_id: str
    bidder: str
    price: int
    placed_ms: int


@dataclass(frozen=True)
class BidRefusal:
    """A bid that does not take part in the auction, and why."""

    bid: Bid
    reason: Reason
    message: str


@dataclass(frozen=True)
class AuctionOutcome:
    """The state of an auction at some time: `leader` wins if `closed`."""

    closed: bool
    leader: Bid | None
    valid_bids: tuple[Bid, ...]
    refusals: tuple[BidRefusal, ...]

    @property
    def winner(self) -> Bid | None:
        """The winning bid once the auction has closed, otherwise None."""
        return self.leader if self.closed else None


def check_bid(offer: Offer, bid: Bid) -> BidRefusal | None:
    """Why `bid` is refused for `offer`, or None when it is a valid bid."""
    auction = offer.terms.auction
    if auction is None:
        return BidRefusal(bid, Reason.NOT_AN_AUCTION, "The offer is not sold by auction.")
    if bid.offer_id != offer.offer_id:
        return BidRefusal(bid, Reason.NOT_AN_AUCTION, "The bid is for another offer.")
    if bid.bidder == offer.seller:
        return BidRefusal(bid, Reason.SELLER_CANNOT_BID, "A seller cannot bid on its own offer.")
    if bid.placed_ms >= auction.closes:
        return BidRefusal(bid, Reason.AUCTION_CLOSED, "The bid came after the auction closed.")
    if bid.price > auction.cap:
        return BidRefusal(
            bid, Reason.BID_ABOVE_CAP, f"Bid {bid.price} is above the cap of {auction.cap}."
        )
    if bid.price < offer.terms.price:
        return BidRefusal(
            bid,
            Reason.BID_BELOW_OFFER_PRICE,
            f"Bid {bid.price} is below the offer price of {offer.terms.price}.",
        )
    return None


def auction_outcome(offer: Offer, bids: Sequence[Bid], now_ms: int) -> AuctionOutcome:
    """Valid bids, refusals and the leader of `offer`'s auction at `now_ms`.

    The highest valid bid leads; on equal prices the earliest `placed_ms` leads, then the
    smaller `bid_id`, so every node that holds the same bids names the same winner.
    """
    valid: list[Bid] = []
    refusals: list[BidRefusal] = []
    for bid in bids:
        refusal = check_bid(offer, bid)
        if refusal is None:
            valid.append(bid)
        else:
            refusals.append(refusal)
    ranked = sorted(valid, key=lambda b: (-b.price, b.placed_ms, b.bid_id))
    auction = offer.terms.auction
    closed = auction is not None and now_ms >= auction.closes
    return AuctionOutcome(
        closed=closed,
        leader=ranked[0] if ranked else None,
        valid_bids=tuple(ranked),
        refusals=tuple(refusals),
    )


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


def next_bid(
    strategy: BiddingStrategy, offer: Offer, bids: Sequence[Bid], *, me: str, now_ms: int
) -> int | None:
    """The price `me` should bid now, or None when bidding cannot help.

    None when the auction is closed, `me` already leads, or beating the leader would
    cost more than `strategy.max_price` or the cap (a tie loses to the earlier bid).
    """
    auction = offer.terms.auction
    if auction is None or now_ms >= auction.closes or offer.seller == me:
        return None
    leader = auction_outcome(offer, bids, now_ms).leader
    if leader is not None and leader.bidder == me:
        return None
    limit = min(strategy.max_price, auction.cap)
    target = offer.terms.price if leader is None else leader.price + strategy.increment
    target = max(target, offer.terms.price)
    if target > limit:
        # A smaller step than the increment still wins if it beats the leader.
        if leader is not None and limit > leader.price:
            return limit
        return None
    return target
