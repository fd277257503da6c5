"""Bidding: open at the reserve, outbid in increments, stop at the maximum or the cap.

The auction itself is the ledger's: the standing a bidder sees is computed here with the
ledger's own queries, so the strategy is tested against the rule that judges its bids.
"""

from __future__ import annotations

from dataclasses import replace

from edge_controller.ledger import Offer, bidding_open, minimum_bid
from edge_controller.market import AuctionStanding, BiddingStrategy, next_bid

CLOSES = 120_000
OFFER = Offer(
    id="offer-1",
    seller="home-a",
    resource="battery-1",
    mode="energy",
    quantity=2_000,
    remaining=2_000,
    price=200,
    start=300_000,
    end=3_900_000,
    expires=CLOSES,
    auction_closes=CLOSES,
    auction_cap=400,
)


def led_by(bidder: str, price: int, offer: Offer = OFFER) -> Offer:
    """`offer` once the ledger took `bidder`'s bid of `price`."""
    return replace(offer, best_bid=f"bid-{bidder}", best_bidder=bidder, best_bid_price=price)


def standing(offer: Offer, me: str, now_ms: int) -> AuctionStanding:
    """What bidder `me` reads from the ledger's offer at `now_ms`."""
    return AuctionStanding(
        minimum=minimum_bid(offer),
        cap=offer.auction_cap,
        best_price=offer.best_bid_price if offer.best_bidder else None,
        ours=offer.best_bidder == me,
        open=bidding_open(offer, now_ms) and offer.seller != me,
    )


def test_bidder_opens_at_the_offer_price_and_then_outbids_in_increments():
    strategy = BiddingStrategy(max_price=350, increment=25)

    opening = next_bid(strategy, standing(OFFER, "home-b", 1_000))
    outbid = next_bid(strategy, standing(led_by("home-c", 260), "home-b", 2_000))

    assert (opening, outbid) == (200, 285)


def test_bidder_does_not_bid_against_itself_or_after_close():
    strategy = BiddingStrategy(max_price=350, increment=25)
    mine = led_by("home-b", 260)

    assert next_bid(strategy, standing(mine, "home-b", 2_000)) is None
    assert next_bid(strategy, standing(OFFER, "home-b", CLOSES)) is None


def test_bidder_stops_at_its_maximum_and_never_ties_a_leader():
    strategy = BiddingStrategy(max_price=350, increment=25)

    last_step = next_bid(strategy, standing(led_by("home-c", 340), "home-b", 2_000))
    hopeless = next_bid(strategy, standing(led_by("home-c", 350), "home-b", 2_000))

    assert last_step == 350
    assert hopeless is None


def test_bidder_never_bids_above_the_cap():
    strategy = BiddingStrategy(max_price=1_000, increment=50)

    price = next_bid(strategy, standing(led_by("home-c", 380), "home-b", 2_000))

    assert price == 400


def test_bidding_war_is_won_by_the_bidder_willing_to_pay_more():
    strategies = {
        "home-b": BiddingStrategy(max_price=330, increment=20),
        "home-c": BiddingStrategy(max_price=360, increment=15),
    }
    offer = OFFER
    refusals = []
    now = 1_000
    while now < CLOSES:
        for bidder, strategy in strategies.items():
            price = next_bid(strategy, standing(offer, bidder, now))
            if price is not None:
                if minimum_bid(offer) <= price <= offer.auction_cap:
                    offer = led_by(bidder, price, offer)
                else:
                    refusals.append((bidder, price))
            now += 1_000

    assert offer.best_bidder == "home-c"
    assert offer.best_bid_price <= 360
    assert refusals == []
