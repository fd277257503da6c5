"""Auctions: refused bids say why, the highest bid wins at close, ties go to the earliest."""

from __future__ import annotations

from edge_controller.market import (
    AuctionTerms,
    Bid,
    BiddingStrategy,
    Offer,
    OfferIntent,
    Reason,
    auction_outcome,
    next_bid,
)

CLOSES = 120_000
OFFER = Offer(
    "offer-1",
    "home-a",
    OfferIntent(
        resource="battery-1",
        mode="energy",
        quantity=2_000,
        price=200,
        start=300_000,
        end=3_900_000,
        expires=CLOSES,
        auction=AuctionTerms(closes=CLOSES, cap=400),
    ),
)


def bid(bid_id: str, bidder: str, price: int, placed_ms: int = 1_000) -> Bid:
    return Bid(bid_id, "offer-1", bidder, price, placed_ms)


def test_bid_above_the_cap_is_refused_with_a_reason():
    outcome = auction_outcome(OFFER, [bid("b1", "home-b", 401)], now_ms=2_000)

    assert outcome.leader is None
    assert [r.reason for r in outcome.refusals] == [Reason.BID_ABOVE_CAP]


def test_bids_below_the_offer_price_late_or_by_the_seller_are_refused():
    outcome = auction_outcome(
        OFFER,
        [
            bid("b1", "home-b", 150),
            bid("b2", "home-c", 300, placed_ms=CLOSES),
            bid("b3", "home-a", 300),
        ],
        now_ms=CLOSES,
    )

    assert [r.reason for r in outcome.refusals] == [
        Reason.BID_BELOW_OFFER_PRICE,
        Reason.AUCTION_CLOSED,
        Reason.SELLER_CANNOT_BID,
    ]
    assert outcome.winner is None


def test_highest_bid_wins_at_close():
    bids = [bid("b1", "home-b", 250), bid("b2", "home-c", 320), bid("b3", "home-d", 400)]

    before = auction_outcome(OFFER, bids, now_ms=CLOSES - 1)
    after = auction_outcome(OFFER, bids, now_ms=CLOSES)

    assert before.winner is None and before.leader is not None
    assert after.winner is not None and after.winner.bidder == "home-d"


def test_equal_bids_go_to_the_earliest():
    bids = [bid("b2", "home-c", 300, placed_ms=5_000), bid("b1", "home-b", 300, placed_ms=4_000)]

    outcome = auction_outcome(OFFER, bids, now_ms=CLOSES)

    assert outcome.winner is not None and outcome.winner.bidder == "home-b"


def test_bidder_opens_at_the_offer_price_and_then_outbids_in_increments():
    strategy = BiddingStrategy(max_price=350, increment=25)

    opening = next_bid(strategy, OFFER, [], me="home-b", now_ms=1_000)
    outbid = next_bid(strategy, OFFER, [bid("b1", "home-c", 260)], me="home-b", now_ms=2_000)

    assert (opening, outbid) == (200, 285)


def test_bidder_does_not_bid_against_itself_or_after_close():
    strategy = BiddingStrategy(max_price=350, increment=25)
    mine = [bid("b1", "home-b", 260)]

    assert next_bid(strategy, OFFER, mine, me="home-b", now_ms=2_000) is None
    assert next_bid(strategy, OFFER, [], me="home-b", now_ms=CLOSES) is None


def test_bidder_stops_at_its_maximum_and_never_ties_a_leader():
    strategy = BiddingStrategy(max_price=350, increment=25)

    last_step = next_bid(strategy, OFFER, [bid("b1", "home-c", 340)], me="home-b", now_ms=2_000)
    hopeless = next_bid(strategy, OFFER, [bid("b1", "home-c", 350)], me="home-b", now_ms=2_000)

    assert last_step == 350
    assert hopeless is None


def test_bidder_never_bids_above_the_cap():
    strategy = BiddingStrategy(max_price=1_000, increment=50)

    price = next_bid(strategy, OFFER, [bid("b1", "home-c", 380)], me="home-b", now_ms=2_000)

    assert price == 400


def test_bidding_war_is_won_by_the_bidder_willing_to_pay_more():
    strategies = {
        "home-b": BiddingStrategy(max_price=330, increment=20),
        "home-c": BiddingStrategy(max_price=360, increment=15),
    }
    bids: list[Bid] = []
    now = 1_000
    while now < CLOSES:
        for bidder, strategy in strategies.items():
            price = next_bid(strategy, OFFER, bids, me=bidder, now_ms=now)
            if price is not None:
                bids.append(Bid(f"b{len(bids)}", "offer-1", bidder, price, now))
            now += 1_000

    outcome = auction_outcome(OFFER, bids, now_ms=CLOSES)

    assert outcome.winner is not None
    assert outcome.winner.bidder == "home-c"
    assert outcome.winner.price <= 360
    assert outcome.refusals == ()
