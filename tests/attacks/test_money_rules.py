"""Issue 18's money attacks on a bare ledger: each succeeds under the first rules (what a
community founded before keeps) and is refused with its reason under the latest rules.

The same attacks against real homes on Mosquitto: tests/attacks/test_money.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edge_controller.app.trading import market_offer
from edge_controller.ledger import FIRST_RULES, LATEST_RULES, KeyPair, Ledger, Reason, Record
from edge_controller.market import (
    Accept,
    AcceptanceCriteria,
    Reject,
    SellerStanding,
    evaluate_offer,
)
from tests.ledger.support import Community, rejected

MINUTE = 60_000
PRICE = 300  # per kWh


@dataclass
class Street:
    c: Community
    ledger: Ledger
    seller: KeyPair  # a 5 kW fuel cell "fc", metered by `meter`
    buyer: KeyPair
    meter: KeyPair
    shill: KeyPair  # a second key of the seller's


def street(rules: int, power_w: int = 5_000) -> Street:
    c = Community(rules=rules)
    ledger = c.node()
    seller, buyer, meter, shill = (c.key(n) for n in ("seller", "buyer", "meter", "shill"))
    c.seal(
        ledger,
        c.register("fc", seller, power_w=power_w, capacity_wh=100_000, meter=meter.public_hex),
        c.topup(seller, 1_000_000),
        c.topup(buyer, 1_000_000),
    )
    return Street(c, ledger, seller, buyer, meter, shill)


def trade(s: Street, buyer: KeyPair, wh: int, start: int, length: int) -> Record:
    """An energy trade of `wh` over [start, start + length) between the seller and `buyer`."""
    offer = s.c.sign(
        s.seller,
        "offer",
        resource="fc",
        mode="energy",
        quantity=wh,
        price=PRICE,
        start=start,
        end=start + length,
        expires=start,
    )
    acceptance = s.c.accept(buyer, offer, wh)
    s.c.seal(s.ledger, offer, acceptance)
    return acceptance


def reading(s: Street, start: int, end: int, export_wh: int, import_wh: int = 0) -> Record:
    return s.c.sign(
        s.meter,
        "meter_reading",
        resource="fc",
        start=start,
        end=end,
        export_wh=export_wh,
        import_wh=import_wh,
    )


def settle(s: Street, who: KeyPair, deal: Record, wh: int) -> Record:
    return s.c.sign(who, "settlement", trade=deal.id, delivered_wh=wh)


def delivered_in_full(rules: int) -> tuple[Street, Record]:
    """A 4 kWh trade over the next hour's second hour, whose meter shows full delivery."""
    s = street(rules)
    start = s.c.now + MINUTE
    deal = trade(s, s.buyer, 4_000, start, 60 * MINUTE)
    s.c.now = start + 60 * MINUTE
    s.c.seal(s.ledger, reading(s, start, start + 60 * MINUTE, 4_000))
    return s, deal


# --- settle a delivered trade for nothing ----------------------------------------------------


def test_before_the_buyer_settled_a_delivered_trade_for_nothing() -> None:
    s, deal = delivered_in_full(FIRST_RULES)
    s.c.seal(s.ledger, settle(s, s.buyer, deal, 0))
    settled = s.ledger.state.trades.rows[deal.id]
    assert (settled.paid, settled.refunded) == (0, 1_200)
    rejected(s.ledger, settle(s, s.seller, deal, 4_000), Reason.ALREADY_SETTLED)


def test_the_buyer_never_settles_below_what_the_meter_shows() -> None:
    s, deal = delivered_in_full(LATEST_RULES)
    message = rejected(s.ledger, settle(s, s.buyer, deal, 0), Reason.BELOW_METERED).message
    assert "4000 Wh" in message
    rejected(s.ledger, settle(s, s.buyer, deal, 3_999), Reason.BELOW_METERED)
    # The seller settles from the meter's allocation and is paid in full.
    s.c.seal(s.ledger, settle(s, s.seller, deal, 4_000))
    settled = s.ledger.state.trades.rows[deal.id]
    assert (settled.paid, settled.refunded) == (1_200, 0)


def test_the_buyer_may_settle_at_the_meter_once_it_has_read_the_whole_window() -> None:
    s = street(LATEST_RULES)
    start = s.c.now + MINUTE
    deal = trade(s, s.buyer, 4_000, start, 60 * MINUTE)
    s.c.now = start + 60 * MINUTE
    # Half the window read: the last reading may still come, so the buyer waits.
    s.c.seal(s.ledger, reading(s, start, start + 30 * MINUTE, 2_000))
    rejected(s.ledger, settle(s, s.buyer, deal, 2_000), Reason.NOT_DUE)
    s.c.seal(s.ledger, reading(s, start + 30 * MINUTE, start + 60 * MINUTE, 2_000))
    s.c.seal(s.ledger, settle(s, s.buyer, deal, 4_000))
    assert s.ledger.state.trades.rows[deal.id].paid == 1_200


def test_a_buyer_settles_what_a_silent_meter_showed_an_hour_after_the_window() -> None:
    s = street(LATEST_RULES)
    start = s.c.now + MINUTE
    deal = trade(s, s.buyer, 4_000, start, 60 * MINUTE)
    s.c.now = start + 60 * MINUTE
    s.c.seal(s.ledger, reading(s, start, start + 30 * MINUTE, 2_000))
    s.c.now += 60 * MINUTE
    s.c.seal(s.ledger, settle(s, s.buyer, deal, 2_000))
    assert s.ledger.state.trades.rows[deal.id].refunded == 600


def test_a_dispute_stands_on_the_buyers_own_meter() -> None:
    s, deal = delivered_in_full(LATEST_RULES)
    rejected(s.ledger, s.c.sign(s.buyer, "dispute", trade=deal.id, measured_wh=0), Reason.NO_METER)
    home_meter = s.c.key("buyer-meter")
    s.c.seal(
        s.ledger,
        s.c.register(
            "buyer-meter",
            s.buyer,
            kind="meter",
            power_w=0,
            capacity_wh=0,
            meter=home_meter.public_hex,
        ),
    )
    dispute = s.c.sign(s.buyer, "dispute", trade=deal.id, measured_wh=0)
    rejected(s.ledger, dispute, Reason.NOT_DUE)
    start, end = deal_window(s, deal)
    s.c.seal(
        s.ledger,
        s.c.sign(
            home_meter,
            "meter_reading",
            resource="buyer-meter",
            start=start,
            end=end,
            export_wh=0,
            import_wh=3_000,
        ),
    )
    rejected(s.ledger, dispute, Reason.BELOW_METERED)
    s.c.seal(s.ledger, s.c.sign(s.buyer, "dispute", trade=deal.id, measured_wh=3_000))
    s.c.seal(s.ledger, settle(s, s.seller, deal, 4_000))
    assert s.ledger.state.trades.rows[deal.id].paid == 900


def deal_window(s: Street, deal: Record) -> tuple[int, int]:
    t = s.ledger.state.trades.rows[deal.id]
    return t.start, t.end


# --- invent delivered energy -----------------------------------------------------------------


def test_before_a_meter_invented_a_trillion_wh_and_the_seller_settled_the_whole_trade() -> None:
    s = street(FIRST_RULES)
    start = s.c.now + MINUTE
    deal = trade(s, s.buyer, 20, start, 15_000)
    s.c.now = start + 15_000
    s.c.seal(s.ledger, reading(s, start, start + 15_000, 10**12))
    s.c.seal(s.ledger, settle(s, s.seller, deal, 20))
    assert s.ledger.state.trades.rows[deal.id].paid == 20 * PRICE // 1000


def test_a_reading_is_bounded_by_the_rating_times_its_period() -> None:
    s = street(LATEST_RULES)
    start = s.c.now - 60_000
    # 5 kW for 15 s is 20.8 Wh: 21 whole Wh at most, export or import.
    message = rejected(
        s.ledger, reading(s, start, start + 15_000, 10**12), Reason.EXCEEDS_RATING
    ).message
    assert "at most 21 Wh" in message
    rejected(s.ledger, reading(s, start, start + 15_000, 22), Reason.EXCEEDS_RATING)
    rejected(s.ledger, reading(s, start, start + 15_000, 0, 22), Reason.EXCEEDS_RATING)
    s.c.seal(s.ledger, reading(s, start, start + 15_000, 21, 21))


def test_the_seller_cannot_settle_energy_a_meter_invented() -> None:
    s = street(LATEST_RULES)
    start = s.c.now + MINUTE
    deal = trade(s, s.buyer, 20, start, 15_000)
    s.c.now = start + 15_000
    rejected(s.ledger, reading(s, start, start + 15_000, 10**12), Reason.EXCEEDS_RATING)
    rejected(s.ledger, settle(s, s.seller, deal, 20), Reason.EXCEEDS_METERED)


# --- the allocation hands a reading out once -------------------------------------------------


@pytest.mark.parametrize(("rules", "c_claims"), [(FIRST_RULES, 60), (LATEST_RULES, 0)])
def test_a_reading_shared_only_inside_it_is_paid_once(rules: int, c_claims: int) -> None:
    # One 120 Wh reading over a minute: `a` (the whole minute) and `b` (its second half) use
    # it all; `c` (the first half, made last) was credited 60 more under the first rules.
    s = street(rules, power_w=20_000)
    start = s.c.now + MINUTE
    a = trade(s, s.buyer, 60, start, MINUTE)
    b = trade(s, s.buyer, 60, start + MINUTE // 2, MINUTE // 2)
    c = trade(s, s.buyer, 60, start, MINUTE // 2)
    s.c.now = start + MINUTE
    s.c.seal(s.ledger, reading(s, start, start + MINUTE, 120))
    s.c.seal(s.ledger, settle(s, s.seller, a, 60), settle(s, s.seller, b, 60))
    if c_claims:
        s.c.seal(s.ledger, settle(s, s.seller, c, 60))
    else:
        rejected(s.ledger, settle(s, s.seller, c, 1), Reason.EXCEEDS_METERED)
        s.c.seal(s.ledger, settle(s, s.seller, c, 0))
    paid = sum(s.ledger.state.trades.rows[t.id].paid for t in (a, b, c))
    assert paid == (120 + c_claims) * PRICE // 1000


# --- rate oneself up -------------------------------------------------------------------------


def washed(rules: int) -> tuple[Street, Record, Record]:
    """The seller funds its second key, which buys its offer; the trade is settled. Returns
    the street, the shill's rating of 10 and an offer an automatic buyer then judges."""
    s = street(rules)
    s.c.seal(s.ledger, s.c.sign(s.seller, "transfer", to=s.shill.account, amount=10_000))
    start = s.c.now + MINUTE
    deal = trade(s, s.shill, 1_000, start, 60 * MINUTE)
    s.c.now = start + 60 * MINUTE
    s.c.seal(s.ledger, reading(s, start, start + 60 * MINUTE, 1_000))
    s.c.seal(s.ledger, settle(s, s.seller, deal, 1_000))
    rating = s.c.sign(s.shill, "rating", trade=deal.id, score=10)
    next_offer = s.c.offer(s.seller, "fc", 1_000, mode="energy", to=[s.buyer.account])
    return s, rating, next_offer


def automatic_buyer_decides(s: Street, offer: Record) -> object:
    """What a buyer with `min_rating` 8 (no unrated sellers) decides on `offer`."""
    s.c.seal(s.ledger, offer)
    seller = s.ledger.state.account(s.seller.account)
    return evaluate_offer(
        AcceptanceCriteria(auto_accept=True, min_rating=8, allow_unrated_sellers=False),
        market_offer(s.ledger.state.offers.rows[offer.id]),
        me=s.buyer.account,
        now_ms=s.c.now,
        seller=SellerStanding(seller.rating_sum, seller.rating_count),
        balance=s.ledger.state.account(s.buyer.account).balance,
    )


def test_before_a_key_funded_by_the_seller_rated_it_up_and_automatic_buying_trusted_it() -> None:
    s, rating, offer = washed(FIRST_RULES)
    s.c.seal(s.ledger, rating)
    assert s.ledger.state.account(s.seller.account).rating_sum == 10
    assert isinstance(automatic_buyer_decides(s, offer), Accept)


def test_a_rating_from_a_key_no_registrar_stands_behind_does_not_count() -> None:
    s, rating, offer = washed(LATEST_RULES)
    message = rejected(s.ledger, rating, Reason.NOT_INDEPENDENT).message
    assert "no registrar" in message
    assert s.ledger.state.account(s.seller.account).rating_count == 0
    assert isinstance(automatic_buyer_decides(s, offer), Reject)


def test_a_rating_from_a_key_the_rated_party_funded_does_not_count() -> None:
    s, rating, _ = washed(LATEST_RULES)
    # Even once a registrar tops the second key up, the seller's money is in it.
    s.c.seal(s.ledger, s.c.topup(s.shill, 1))
    message = rejected(s.ledger, rating, Reason.NOT_INDEPENDENT).message
    assert "funded by" in message


def test_an_independent_buyers_rating_counts_and_automatic_buying_follows_it() -> None:
    s = street(LATEST_RULES)
    start = s.c.now + MINUTE
    deal = trade(s, s.buyer, 1_000, start, 60 * MINUTE)
    s.c.now = start + 60 * MINUTE
    s.c.seal(s.ledger, reading(s, start, start + 60 * MINUTE, 1_000))
    s.c.seal(s.ledger, settle(s, s.seller, deal, 1_000))
    # Money the buyer sent the seller does not stop the buyer rating the seller.
    s.c.seal(s.ledger, s.c.sign(s.buyer, "transfer", to=s.seller.account, amount=5))
    s.c.seal(s.ledger, s.c.sign(s.buyer, "rating", trade=deal.id, score=9))
    # The other way round it does: the seller now holds money the buyer sent it.
    rejected(s.ledger, s.c.sign(s.seller, "rating", trade=deal.id, score=8), Reason.NOT_INDEPENDENT)
    assert s.ledger.state.account(s.seller.account).rating_sum == 9
    offer = s.c.offer(s.seller, "fc", 1_000, mode="energy", to=[s.buyer.account])
    assert isinstance(automatic_buyer_decides(s, offer), Accept)
