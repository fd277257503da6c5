"""Automatic buying: each criterion gives the decision and reason the owner expects."""

from __future__ import annotations

from dataclasses import replace

from edge_controller.market import (
    Accept,
    AcceptanceCriteria,
    AcceptanceDecision,
    AllowedHours,
    AuctionTerms,
    Counter,
    DecisionReason,
    Defer,
    MarketOffer,
    OfferIntent,
    QuantityRange,
    Reject,
    SellerStanding,
    energy_cost,
    evaluate_offer,
)

HOUR = 3_600_000
ME = "home-b"
NOW = 10 * HOUR
CRITERIA = AcceptanceCriteria(
    auto_accept=True,
    max_price=300,
    counter_margin=50,
    energy=QuantityRange(500, 3_000),
    capacity=QuantityRange(200, 2_000),
)
GOOD_SELLER = SellerStanding(ratings_sum=45, ratings_count=5)


def offer(seller: str = "home-a", offer_id: str = "offer-1", **terms: object) -> MarketOffer:
    fields: dict[str, object] = {
        "resource": "battery-1",
        "mode": "energy",
        "quantity": 2_000,
        "price": 250,
        "start": NOW + HOUR,
        "end": NOW + 2 * HOUR,
        "expires": NOW + HOUR,
    }
    fields.update(terms)
    return MarketOffer(offer_id, seller, OfferIntent(**fields))  # type: ignore[arg-type]


def decide(
    the_offer: MarketOffer,
    criteria: AcceptanceCriteria = CRITERIA,
    seller: SellerStanding = GOOD_SELLER,
    balance: int | None = None,
    utc_offset_minutes: int = 0,
) -> AcceptanceDecision:
    return evaluate_offer(
        criteria,
        the_offer,
        me=ME,
        now_ms=NOW,
        seller=seller,
        balance=balance,
        utc_offset_minutes=utc_offset_minutes,
    )


def test_offer_within_all_criteria_is_accepted_in_full():
    decision = decide(offer())

    assert isinstance(decision, Accept)
    assert (decision.quantity, decision.reason) == (2_000, DecisionReason.MEETS_CRITERIA)
    assert decision.message


def test_offer_larger_than_wanted_is_accepted_in_part():
    decision = decide(offer(quantity=5_000))

    assert decision == Accept(3_000, DecisionReason.PARTIAL_QUANTITY, decision.message)


def test_offer_smaller_than_the_minimum_is_rejected():
    decision = decide(offer(quantity=400))

    assert isinstance(decision, Reject)
    assert decision.reason is DecisionReason.QUANTITY_BELOW_MINIMUM


def test_price_just_above_maximum_gets_a_counter_offer_at_the_maximum():
    decision = decide(offer(price=340))

    assert isinstance(decision, Counter)
    assert (decision.price, decision.quantity) == (300, None)
    assert decision.reason is DecisionReason.PRICE_NEGOTIABLE


def test_counter_offer_also_trims_the_quantity_when_the_offer_is_too_large():
    decision = decide(offer(price=340, quantity=5_000))

    assert isinstance(decision, Counter)
    assert (decision.price, decision.quantity) == (300, 3_000)


def test_price_beyond_the_negotiable_margin_is_rejected():
    decision = decide(offer(price=351))

    assert isinstance(decision, Reject)
    assert decision.reason is DecisionReason.PRICE_ABOVE_MAXIMUM
    assert decision.silent  # a public offer: no need to tell the seller


def test_rejection_is_sent_for_private_offers_when_the_owner_wants_it():
    criteria = replace(CRITERIA, announce_rejections=True)

    private = decide(offer(price=400, to=(ME,)), criteria)
    public = decide(offer(price=400), criteria)

    assert isinstance(private, Reject) and not private.silent
    assert isinstance(public, Reject) and public.silent


def test_expired_offer_is_rejected_silently():
    decision = decide(offer(expires=NOW))

    assert decision == Reject(DecisionReason.OFFER_EXPIRED, decision.message, silent=True)


def test_delivery_outside_allowed_hours_is_rejected():
    night_only = replace(CRITERIA, allowed_hours=AllowedHours(22, 6))

    late = decide(offer(start=23 * HOUR, end=25 * HOUR, expires=NOW + HOUR), night_only)
    midday = decide(offer(start=11 * HOUR, end=12 * HOUR, expires=NOW + HOUR), night_only)
    across = decide(offer(start=27 * HOUR, end=31 * HOUR, expires=NOW + HOUR), night_only)

    assert isinstance(late, Accept)
    assert isinstance(midday, Reject) and midday.reason is DecisionReason.OUTSIDE_ALLOWED_HOURS
    assert isinstance(across, Reject)  # 03:00-07:00 runs past 06:00


def test_allowed_hours_are_local_to_the_home():
    evenings = replace(CRITERIA, allowed_hours=AllowedHours(18, 22))
    # 09:00-10:00 UTC is 18:00-19:00 in Tokyo, but not in London.
    the_offer = offer(start=33 * HOUR, end=34 * HOUR, expires=NOW + HOUR)

    tokyo = decide(the_offer, evenings, utc_offset_minutes=9 * 60)
    london = decide(the_offer, evenings, utc_offset_minutes=0)

    assert isinstance(tokyo, Accept)
    assert isinstance(london, Reject)


def test_seller_below_minimum_rating_is_rejected_unless_preferred():
    picky = replace(CRITERIA, min_rating=8)
    poor = SellerStanding(ratings_sum=21, ratings_count=3)  # average 7

    rejected = decide(offer(), picky, seller=poor)
    preferred = decide(offer(), replace(picky, preferred_sellers=("home-a",)), seller=poor)
    good = decide(offer(), picky, seller=SellerStanding(ratings_sum=24, ratings_count=3))

    assert isinstance(rejected, Reject) and rejected.reason is DecisionReason.SELLER_RATING_TOO_LOW
    assert isinstance(preferred, Accept)
    assert isinstance(good, Accept)


def test_unrated_seller_is_rejected_when_the_owner_asks_for_ratings():
    picky = replace(CRITERIA, min_rating=5, allow_unrated_sellers=False)

    decision = decide(offer(), picky, seller=SellerStanding())

    assert isinstance(decision, Reject) and decision.reason is DecisionReason.SELLER_UNRATED


def test_blocked_seller_is_rejected_silently():
    decision = decide(offer(), replace(CRITERIA, blocked_sellers=("home-a",)))

    assert decision == Reject(DecisionReason.SELLER_BLOCKED, decision.message, silent=True)


def test_offer_private_to_other_homes_is_ignored():
    decision = decide(offer(to=("home-c",)))

    assert isinstance(decision, Reject)
    assert (decision.reason, decision.silent) == (DecisionReason.NOT_ADDRESSED_TO_US, True)


def test_our_own_offer_is_never_bought():
    decision = decide(offer(seller=ME))

    assert isinstance(decision, Reject) and decision.reason is DecisionReason.OWN_OFFER


def test_capacity_offers_are_rejected_when_the_owner_buys_only_energy():
    decision = decide(offer(mode="capacity", quantity=1_000), replace(CRITERIA, capacity=None))

    assert isinstance(decision, Reject) and decision.reason is DecisionReason.MODE_NOT_WANTED


def test_wallet_limits_the_accepted_quantity():
    # 2 kWh at 250 per kWh costs 500 milli-units; 300 buys the most Wh that cost 300.
    partly = decide(offer(), balance=300)
    broke = decide(offer(), balance=100)

    assert isinstance(partly, Accept) and partly.reason is DecisionReason.PARTIAL_QUANTITY
    assert energy_cost(partly.quantity, 250) <= 300 < energy_cost(partly.quantity + 1, 250)
    assert isinstance(broke, Reject) and broke.reason is DecisionReason.INSUFFICIENT_FUNDS


def test_offers_are_left_to_the_owner_when_auto_buy_is_off():
    decision = decide(offer(), replace(CRITERIA, auto_accept=False))

    assert isinstance(decision, Defer) and decision.reason is DecisionReason.AUTO_BUY_OFF


def test_auction_offers_are_left_to_bidding():
    decision = decide(offer(auction=AuctionTerms(closes=NOW + HOUR, cap=500)))

    assert isinstance(decision, Defer) and decision.reason is DecisionReason.AUCTION_OFFER
