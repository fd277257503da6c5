"""Every rule of the ledger's state machine, each seen refusing with its reason code."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edge_controller.ledger import (
    FIRST_RULES,
    KeyPair,
    Ledger,
    Reason,
    Record,
    Rejected,
    metered_export,
)
from edge_controller.ledger.records import OFFER_MODES, one_of

from .support import HOUR, Community, rejected


@dataclass
class Town:
    c: Community
    ledger: Ledger
    alice: KeyPair  # owns a 10 kW fuel cell with 100 kWh of hydrogen
    bob: KeyPair
    carol: KeyPair
    meter: KeyPair  # alice's fuel-cell meter


@pytest.fixture
def town() -> Town:
    return make_town(Community())


@pytest.fixture
def first_rules_town() -> Town:
    return make_town(Community(rules=FIRST_RULES))


def make_town(c: Community) -> Town:
    ledger = c.node()
    alice, bob, carol, meter = (c.key(n) for n in ("alice", "bob", "carol", "meter-a"))
    c.seal(
        ledger,
        c.register("fc-a", alice, meter=meter.public_hex),
        c.topup(bob, 10_000_000),
        c.topup(carol, 10_000_000),
    )
    return Town(c, ledger, alice, bob, carol, meter)


def balance(t: Town, key: KeyPair) -> int:
    return t.ledger.state.account(key.account).balance


# --- signatures, identity, replay ------------------------------------------------------------


def test_a_tampered_record_is_refused_for_its_signature(town: Town) -> None:
    wire = town.c.topup(town.bob, 5).to_wire()
    wire["body"]["amount"] = 5_000_000
    rejected(town.ledger, wire, Reason.BAD_SIGNATURE)


def test_a_record_signed_for_another_community_is_refused(town: Town) -> None:
    other = Community(sealers=2)
    record = other.topup(town.bob)  # same registrar key, other genesis
    rejected(town.ledger, record.to_wire(), Reason.BAD_SIGNATURE)


def test_only_a_registrar_registers_resources_and_issues_currency(town: Town) -> None:
    c = town.c
    forged = c.sign(
        town.bob,
        "registration",
        resource="fc-x",
        owner=town.bob.account,
        resource_kind="fuel_cell",
        power_w=1,
        capacity_wh=1,
    )
    rejected(town.ledger, forged, Reason.NOT_REGISTRAR)
    rejected(
        town.ledger, c.sign(town.bob, "topup", to=town.bob.account, amount=10), Reason.NOT_REGISTRAR
    )


def test_a_recorded_record_cannot_be_recorded_twice(town: Town) -> None:
    record = town.c.topup(town.carol, 1)
    town.c.seal(town.ledger, record)
    rejected(town.ledger, record, Reason.DUPLICATE)
    # Replaying it inside a block is refused too.
    block = town.ledger.build_block(town.c.sealers[0], now=town.c.now + 1000)
    assert block is not None


def test_a_replayed_sequence_number_is_refused(town: Town) -> None:
    c = town.c
    first = c.sign(town.bob, "transfer", to=town.carol.account, amount=10)
    c.seal(town.ledger, first)
    c._seq[town.bob.public_hex] -= 1  # sign a different body with the same sequence
    replay = c.sign(town.bob, "transfer", to=town.carol.account, amount=20)
    rejected(town.ledger, replay, Reason.STALE_SEQUENCE)


def test_malformed_records_name_the_bad_field(town: Town) -> None:
    good = town.c.topup(town.bob, 5).to_wire()
    for mutate, path in [
        (lambda b: b.pop("amount"), "body.amount"),
        (lambda b: b.update(amount=1.5), "body.amount"),
        (lambda b: b.update(colour="red"), "colour"),
        (lambda b: b.update(kind="gift"), "body.kind"),
    ]:
        wire = {**good, "body": dict(good["body"])}
        mutate(wire["body"])
        error = rejected(town.ledger, wire, Reason.MALFORMED)
        assert path in error.message


def test_a_choice_given_as_a_list_or_mapping_is_malformed_not_a_crash() -> None:
    check = one_of(OFFER_MODES)
    for value in (["energy"], {"energy": 1}):
        with pytest.raises(Rejected) as error:
            check("body.mode", value)
        assert error.value.reason == Reason.MALFORMED and "body.mode" in str(error.value)
    assert check("body.mode", "energy") == "energy"


def test_a_record_from_the_future_is_refused(town: Town) -> None:
    c = town.c
    c.now += 60_000
    late = c.topup(town.bob, 1)
    c.now -= 60_000
    rejected(town.ledger, late, Reason.FROM_THE_FUTURE)


# --- offers and the seed's capacity example --------------------------------------------------


def test_the_seeds_fuel_cell_example_refuses_4kw_after_7kw_and_accepts_3kw(town: Town) -> None:
    c, ledger = town.c, town.ledger
    offer = c.offer(town.alice, "fc-a", 10_000)
    to_bob = c.accept(town.bob, offer, 7_000)
    c.seal(ledger, offer, to_bob)
    assert ledger.state.trades.rows[to_bob.id].quantity == 7_000

    # A second offer of the same window: capacity left is 3 kW, whatever the offer says.
    second = c.offer(town.alice, "fc-a", 4_000, start=ledger.state.offers.rows[offer.id].start)
    rejected(ledger, second, Reason.EXCEEDS_CAPACITY)
    four_kw = c.accept(town.carol, offer, 4_000)
    rejected(ledger, four_kw, Reason.EXCEEDS_OFFER)

    three_kw = c.accept(town.carol, offer, 3_000)
    c.seal(ledger, three_kw)
    assert ledger.state.offers.rows[offer.id].status == "sold"


def test_capacity_is_checked_at_every_instant_of_overlapping_windows(town: Town) -> None:
    c, ledger = town.c, town.ledger
    start = c.now + HOUR
    morning = c.offer(town.alice, "fc-a", 6_000, start=start, hours=2)
    c.seal(ledger, morning, c.accept(town.bob, morning, 6_000))
    # Starts when the first ends: no overlap, the full rating is free again.
    later = c.offer(town.alice, "fc-a", 10_000, start=start + 2 * HOUR)
    # Overlaps its second hour: 4 kW free there.
    overlapping = c.offer(town.alice, "fc-a", 5_000, start=start + HOUR, hours=2)
    c.seal(ledger, later)
    rejected(ledger, overlapping, Reason.EXCEEDS_CAPACITY)


def register_battery(t: Town, power_w: int = 5_000) -> KeyPair:
    """A battery of `power_w` holding 20 kWh, owned by dave."""
    dave = t.c.key("dave")
    battery = t.c.register(
        "bat-d", dave, kind="battery", power_w=power_w, capacity_wh=20_000, available_wh=20_000
    )
    t.c.seal(t.ledger, battery)
    return dave


def test_overlapping_energy_trades_are_refused_beyond_the_power_rating(town: Town) -> None:
    c, ledger = town.c, town.ledger
    dave = register_battery(town)
    start = c.now + HOUR
    # Two 4 kWh offers for the same hour: each alone is 4 kW of the 5 kW rating.
    first = c.offer(dave, "bat-d", 4_000, mode="energy", start=start)
    second = c.offer(dave, "bat-d", 4_000, mode="energy", start=start)
    c.seal(ledger, first, second, c.accept(town.bob, first, 4_000))
    # Delivered at their average power they would ask the battery for 8 kW.
    error = rejected(ledger, c.accept(town.carol, second, 4_000), Reason.EXCEEDS_CAPACITY)
    assert "has 1000 W free in that window, needs 4000 W" in error.message
    third = c.offer(dave, "bat-d", 4_000, mode="energy", start=start + HOUR // 2)
    rejected(ledger, third, Reason.EXCEEDS_CAPACITY)
    c.seal(ledger, c.accept(town.carol, second, 1_000))  # 1 kW more: exactly the rating
    assert ledger.state.offers.rows[second.id].remaining == 3_000


def test_energy_trades_in_adjacent_windows_both_run_at_full_power(town: Town) -> None:
    c, ledger = town.c, town.ledger
    dave = register_battery(town)
    start = c.now + HOUR
    # 5 kWh in an hour is the whole 5 kW; windows are half-open, so the next hour is free.
    this_hour = c.offer(dave, "bat-d", 5_000, mode="energy", start=start)
    next_hour = c.offer(dave, "bat-d", 5_000, mode="energy", start=start + HOUR)
    c.seal(ledger, this_hour, next_hour)
    c.seal(ledger, c.accept(town.bob, this_hour, 5_000), c.accept(town.carol, next_hour, 5_000))
    assert {t.buyer for t in ledger.state.trades.rows.values()} == {
        town.bob.account,
        town.carol.account,
    }


def test_energy_and_capacity_trades_share_one_power_rating(town: Town) -> None:
    c, ledger = town.c, town.ledger
    start = c.now + HOUR
    seven_kw = c.offer(town.alice, "fc-a", 7_000, start=start)
    # 8 kWh over two hours is 4 kW, 1 kW more than the 3 kW the capacity sale leaves.
    energy = c.offer(town.alice, "fc-a", 8_000, mode="energy", start=start, hours=2)
    c.seal(ledger, seven_kw, energy, c.accept(town.bob, seven_kw, 7_000))
    error = rejected(ledger, c.accept(town.carol, energy, 8_000), Reason.EXCEEDS_CAPACITY)
    assert "has 3000 W free in that window, needs 4000 W (8000 Wh over the window)" in str(error)
    # A counter-offer is checked when the seller confirms it, as any acceptance.
    counter = c.accept(town.carol, energy, 8_000, price=250)
    c.seal(ledger, counter)
    confirm = c.sign(town.alice, "confirmation", acceptance=counter.id)
    rejected(ledger, confirm, Reason.EXCEEDS_CAPACITY)
    c.seal(ledger, c.accept(town.carol, energy, 6_000))  # 3 kW: fits
    # The other way round: the energy trades hold 3 kW of the fuel cell's second hour.
    rejected(
        ledger, c.offer(town.alice, "fc-a", 8_000, start=start + HOUR), Reason.EXCEEDS_CAPACITY
    )
    c.seal(ledger, c.offer(town.alice, "fc-a", 7_000, start=start + HOUR))


def test_an_auction_the_power_rating_can_no_longer_serve_fails_and_refunds(town: Town) -> None:
    c, ledger = town.c, town.ledger
    dave = register_battery(town)
    start = c.now + HOUR
    closes = c.now + 30_000
    auction = c.offer(
        dave, "bat-d", 3_000, mode="energy", start=start, auction={"closes": closes, "cap": 900}
    )
    direct = c.offer(dave, "bat-d", 3_000, mode="energy", start=start)
    c.seal(ledger, auction, direct)
    c.seal(ledger, c.sign(town.bob, "bid", offer=auction.id, price=400))
    c.seal(ledger, c.accept(town.carol, direct, 3_000))  # 3 kW taken: 2 kW left, 3 kW bid
    c.now = closes
    c.seal(ledger)
    assert ledger.state.offers.rows[auction.id].status == "failed"
    assert balance(town, town.bob) == 10_000_000


def test_a_terminated_energy_trade_hands_its_power_back_from_that_moment(town: Town) -> None:
    c, ledger = town.c, town.ledger
    dave = register_battery(town)
    start = c.now + HOUR
    offer = c.offer(dave, "bat-d", 4_000, mode="energy", start=start)
    sale = c.accept(town.bob, offer, 4_000)
    c.seal(ledger, offer, sale)
    rejected(
        ledger,
        c.offer(dave, "bat-d", 5_000, mode="energy", start=start + HOUR // 2),
        Reason.EXCEEDS_CAPACITY,
    )
    c.seal(ledger, c.sign(town.bob, "termination", trade=sale.id, at=start + HOUR // 2))
    # Until then it holds the 4 kW it was booked at (not 4 kWh over half an hour, 8 kW).
    rejected(
        ledger, c.offer(dave, "bat-d", 2_000, mode="energy", start=start), Reason.EXCEEDS_CAPACITY
    )
    c.seal(
        ledger,
        c.offer(dave, "bat-d", 1_000, mode="energy", start=start),
        c.offer(dave, "bat-d", 5_000, mode="energy", start=start + HOUR // 2),
    )


def test_an_owner_offers_only_its_own_resources(town: Town) -> None:
    rejected(town.ledger, town.c.offer(town.bob, "fc-a", 1_000), Reason.NOT_OWNER)
    rejected(town.ledger, town.c.offer(town.alice, "fc-zz", 1_000), Reason.UNKNOWN_RESOURCE)


def test_offer_windows_and_expiry_are_checked(town: Town) -> None:
    c = town.c
    rejected(town.ledger, c.offer(town.alice, "fc-a", 1_000, expires=c.now - 1), Reason.EXPIRED)
    rejected(town.ledger, c.offer(town.alice, "fc-a", 1_000, hours=24 * 8), Reason.BAD_WINDOW)
    start = c.now + HOUR
    late_expiry = c.offer(town.alice, "fc-a", 1_000, start=start, expires=start + 2 * HOUR)
    rejected(town.ledger, late_expiry, Reason.BAD_WINDOW)


def test_an_expired_offer_can_no_longer_be_accepted(town: Town) -> None:
    c, ledger = town.c, town.ledger
    offer = c.offer(town.alice, "fc-a", 1_000, expires=c.now + 10_000)
    c.seal(ledger, offer)
    c.now += 20_000
    rejected(ledger, c.accept(town.bob, offer, 1_000), Reason.EXPIRED)


def test_energy_sold_never_exceeds_the_energy_available(town: Town) -> None:
    c, ledger = town.c, town.ledger
    battery_owner = c.key("dave")
    c.seal(
        ledger,
        c.register(
            "bat-d",
            battery_owner,
            kind="battery",
            power_w=5_000,
            capacity_wh=10_000,
            available_wh=5_000,
        ),
    )
    # Two-hour windows keep every sale here within the 5 kW rating: only energy is short.
    first = c.offer(battery_owner, "bat-d", 3_000, mode="energy", hours=2)
    second = c.offer(battery_owner, "bat-d", 3_000, mode="energy", hours=2)
    six_kwh = c.offer(battery_owner, "bat-d", 6_000, mode="energy", hours=2)
    rejected(ledger, six_kwh, Reason.EXCEEDS_ENERGY)
    c.seal(ledger, first, second, c.accept(town.bob, first, 3_000))
    # Each offer alone fits, but only 2 kWh remain uncommitted once the first is sold.
    rejected(ledger, c.accept(town.carol, second, 3_000), Reason.EXCEEDS_ENERGY)
    c.seal(ledger, c.accept(town.carol, second, 2_000))


def test_a_fuel_cell_capacity_sale_needs_the_hydrogen_behind_it(town: Town) -> None:
    c, ledger = town.c, town.ledger
    c.seal(ledger, c.sign(town.alice, "resource_update", resource="fc-a", available_wh=5_000))
    # 10 kW for an hour is 10 kWh: more than the 5 kWh of hydrogen left.
    rejected(ledger, c.offer(town.alice, "fc-a", 10_000), Reason.EXCEEDS_ENERGY)
    c.seal(ledger, c.offer(town.alice, "fc-a", 5_000))


def test_a_resource_update_comes_from_its_owner_or_meter(town: Town) -> None:
    c = town.c
    rejected(
        town.ledger,
        c.sign(town.bob, "resource_update", resource="fc-a", available_wh=1),
        Reason.NOT_OWNER,
    )
    c.seal(town.ledger, c.sign(town.meter, "resource_update", resource="fc-a", available_wh=7))
    assert town.ledger.state.resources.rows["fc-a"].available_wh == 7


# --- acceptance ----------------------------------------------------------------------------


def test_acceptance_moves_the_buyers_money_into_escrow(town: Town) -> None:
    c, ledger = town.c, town.ledger
    offer = c.offer(town.alice, "fc-a", 4_000, price=250)
    acceptance = c.accept(town.bob, offer, 4_000)
    c.seal(ledger, offer, acceptance)
    # 4 kW for one hour = 4 kWh at 250 milli-units per kWh = 1000 milli-units.
    bob = ledger.state.account(town.bob.account)
    assert (bob.balance, bob.escrow) == (10_000_000 - 1_000, 1_000)
    trade = ledger.state.trades.rows[acceptance.id]
    assert (trade.seller, trade.buyer, trade.energy_wh, trade.cost) == (
        town.alice.account,
        town.bob.account,
        4_000,
        1_000,
    )


def test_a_buyer_cannot_spend_money_it_does_not_have(town: Town) -> None:
    c, ledger = town.c, town.ledger
    poor = c.key("erin")
    c.seal(ledger, c.topup(poor, 100))
    offer = c.offer(town.alice, "fc-a", 4_000, price=250)
    c.seal(ledger, offer)
    rejected(ledger, c.accept(poor, offer, 4_000), Reason.INSUFFICIENT_FUNDS)
    rejected(
        ledger, c.sign(poor, "transfer", to=town.bob.account, amount=101), Reason.INSUFFICIENT_FUNDS
    )


def test_partial_acceptances_never_exceed_what_remains(town: Town) -> None:
    c, ledger = town.c, town.ledger
    offer = c.offer(town.alice, "fc-a", 5_000)
    c.seal(ledger, offer, c.accept(town.bob, offer, 2_000), c.accept(town.carol, offer, 2_000))
    assert ledger.state.offers.rows[offer.id].remaining == 1_000
    rejected(ledger, c.accept(town.bob, offer, 1_001), Reason.EXCEEDS_OFFER)


def test_minimum_quantity_and_own_offers(town: Town) -> None:
    c, ledger = town.c, town.ledger
    offer = c.offer(town.alice, "fc-a", 5_000, min_quantity=2_000)
    c.seal(ledger, offer)
    rejected(ledger, c.accept(town.bob, offer, 1_000), Reason.BELOW_MINIMUM)
    rejected(ledger, c.accept(town.alice, offer, 2_000), Reason.OWN_OFFER)


def test_a_private_offer_is_accepted_only_by_an_addressee(town: Town) -> None:
    c, ledger = town.c, town.ledger
    offer = c.offer(town.alice, "fc-a", 5_000, to=[town.bob.account])
    c.seal(ledger, offer)
    rejected(ledger, c.accept(town.carol, offer, 1_000), Reason.NOT_ADDRESSEE)
    c.seal(ledger, c.accept(town.bob, offer, 1_000))


def test_a_cancelled_offer_is_closed(town: Town) -> None:
    c, ledger = town.c, town.ledger
    offer = c.offer(town.alice, "fc-a", 5_000)
    c.seal(ledger, offer)
    rejected(ledger, c.sign(town.bob, "cancel", offer=offer.id), Reason.NOT_OWNER)
    c.seal(ledger, c.sign(town.alice, "cancel", offer=offer.id))
    rejected(ledger, c.accept(town.bob, offer, 1_000), Reason.OFFER_CLOSED)


def test_a_counter_offer_becomes_a_trade_when_the_seller_confirms(town: Town) -> None:
    c, ledger = town.c, town.ledger
    offer = c.offer(town.alice, "fc-a", 4_000, price=300)
    counter = c.accept(town.bob, offer, 4_000, price=200)
    c.seal(ledger, offer, counter)
    assert ledger.state.acceptances.rows[counter.id].status == "pending"
    assert ledger.state.account(town.bob.account).escrow == 0  # nothing moves yet

    rejected(ledger, c.sign(town.bob, "confirmation", acceptance=counter.id), Reason.NOT_OWNER)
    c.seal(ledger, c.sign(town.alice, "confirmation", acceptance=counter.id))
    trade = ledger.state.trades.rows[counter.id]
    assert (trade.price, trade.cost) == (200, 800)
    rejected(ledger, c.sign(town.alice, "confirmation", acceptance=counter.id), Reason.NOT_PENDING)


def test_a_seller_may_reject_a_counter_offer(town: Town) -> None:
    c, ledger = town.c, town.ledger
    offer = c.offer(town.alice, "fc-a", 4_000, price=300)
    counter = c.accept(town.bob, offer, 4_000, price=100)
    c.seal(ledger, offer, counter)
    rejected(ledger, c.sign(town.carol, "rejection", target=counter.id), Reason.NOT_A_PARTY)
    c.seal(ledger, c.sign(town.alice, "rejection", target=counter.id, reason="too low"))
    assert ledger.state.acceptances.rows[counter.id].status == "rejected"
    rejected(ledger, c.sign(town.alice, "confirmation", acceptance=counter.id), Reason.NOT_PENDING)
    # A buyer's rejection of an offer is recorded and leaves it open for others.
    c.seal(ledger, c.sign(town.carol, "rejection", target=offer.id))
    assert ledger.state.offers.rows[offer.id].status == "open"
    rejected(
        ledger, c.sign(town.c.key("nobody"), "rejection", target="ab" * 32), Reason.UNKNOWN_OFFER
    )


# --- auctions ------------------------------------------------------------------------------


def test_an_auction_goes_to_the_highest_bid_under_the_cap(town: Town) -> None:
    c, ledger = town.c, town.ledger
    closes = c.now + 30_000
    offer = c.offer(town.alice, "fc-a", 2_000, price=100, auction={"closes": closes, "cap": 500})
    c.seal(ledger, offer)
    rejected(ledger, c.accept(town.bob, offer, 2_000), Reason.AUCTION_ONLY)
    rejected(ledger, c.sign(town.bob, "bid", offer=offer.id, price=501), Reason.BID_ABOVE_CAP)
    rejected(ledger, c.sign(town.bob, "bid", offer=offer.id, price=99), Reason.BID_TOO_LOW)
    c.seal(ledger, c.sign(town.bob, "bid", offer=offer.id, price=200))
    # An equal later bid loses to the earlier one.
    rejected(ledger, c.sign(town.carol, "bid", offer=offer.id, price=200), Reason.BID_TOO_LOW)
    winning = c.sign(town.carol, "bid", offer=offer.id, price=400)
    c.seal(ledger, winning)
    assert balance(town, town.bob) == 10_000_000  # outbid: refunded at once
    c.now = closes
    c.seal(ledger)
    trade = ledger.state.trades.rows[winning.id]
    assert (trade.buyer, trade.price, trade.cost) == (town.carol.account, 400, 800)
    assert ledger.state.offers.rows[offer.id].status == "sold"
    rejected(ledger, c.sign(town.bob, "bid", offer=offer.id, price=450), Reason.AUCTION_CLOSED)
    plain = c.offer(town.alice, "fc-a", 1_000)
    c.seal(ledger, plain)
    rejected(ledger, c.sign(town.bob, "bid", offer=plain.id, price=450), Reason.NOT_AN_AUCTION)


# --- termination, metering, settlement, ratings -------------------------------------------


def deliver(t: Town, quantity_w: int = 4_000, price: int = 300) -> tuple[Record, int]:
    """A capacity trade of `quantity_w` for one hour starting an hour from now."""
    c = t.c
    start = c.now + HOUR
    offer = c.offer(t.alice, "fc-a", quantity_w, price=price, start=start)
    acceptance = c.accept(t.bob, offer, quantity_w)
    c.seal(t.ledger, offer, acceptance)
    return acceptance, start


def read_meter(t: Town, start: int, export_wh: int, minutes: int = 60) -> Record:
    return t.c.reading(t.meter, "fc-a", start, export_wh, minutes)


def test_a_trade_settles_for_what_was_delivered_and_refunds_the_rest(town: Town) -> None:
    c, ledger = town.c, town.ledger
    trade, start = deliver(town)  # 4 kWh agreed, costs 1200
    settle = c.sign(town.alice, "settlement", trade=trade.id, delivered_wh=3_000)
    rejected(ledger, settle, Reason.NOT_DUE)
    c.now = start + HOUR
    c.seal(ledger, read_meter(town, start, 3_000))
    c.seal(ledger, c.sign(town.alice, "settlement", trade=trade.id, delivered_wh=3_000))
    settled = ledger.state.trades.rows[trade.id]
    assert (settled.status, settled.paid, settled.refunded) == ("settled", 900, 300)
    assert balance(town, town.alice) == 900
    bob = ledger.state.account(town.bob.account)
    assert (bob.balance, bob.escrow, bob.energy_in_wh) == (10_000_000 - 900, 0, 3_000)
    assert ledger.state.account(town.alice.account).energy_out_wh == 3_000
    rejected(
        ledger,
        c.sign(town.bob, "settlement", trade=trade.id, delivered_wh=0),
        Reason.ALREADY_SETTLED,
    )


def test_over_delivery_is_paid_at_the_agreed_quantity(town: Town) -> None:
    c, ledger = town.c, town.ledger
    trade, start = deliver(town)
    c.now = start + HOUR
    c.seal(ledger, read_meter(town, start, 5_000))
    c.seal(ledger, c.sign(town.bob, "settlement", trade=trade.id, delivered_wh=5_000))
    assert ledger.state.trades.rows[trade.id].paid == 1_200


def test_a_settlement_cannot_claim_more_than_the_meter_recorded(town: Town) -> None:
    c, ledger = town.c, town.ledger
    trade, start = deliver(town)
    c.now = start + HOUR
    c.seal(ledger, read_meter(town, start, 2_000))
    assert metered_export(ledger.state, "fc-a", start, start + HOUR) == 2_000
    rejected(
        ledger,
        c.sign(town.alice, "settlement", trade=trade.id, delivered_wh=4_000),
        Reason.EXCEEDS_METERED,
    )


def test_meter_readings_come_from_the_registered_meter_and_never_overlap(town: Town) -> None:
    c, ledger = town.c, town.ledger
    start = c.now - HOUR
    forged = c.sign(
        town.alice,
        "meter_reading",
        resource="fc-a",
        start=start,
        end=start + 60_000,
        export_wh=1,
        import_wh=0,
    )
    rejected(ledger, forged, Reason.WRONG_SIGNER)
    c.seal(ledger, read_meter(town, start, 100, minutes=30))
    rejected(ledger, read_meter(town, start + 10 * 60_000, 100, minutes=20), Reason.METER_OVERLAP)
    rejected(ledger, read_meter(town, c.now + HOUR, 100), Reason.FROM_THE_FUTURE)


def test_termination_hands_capacity_back_from_that_moment(town: Town) -> None:
    c, ledger = town.c, town.ledger
    trade, start = deliver(town, quantity_w=8_000)
    rejected(
        ledger, c.offer(town.alice, "fc-a", 5_000, start=start + HOUR // 2), Reason.EXCEEDS_CAPACITY
    )
    rejected(ledger, c.sign(town.carol, "termination", trade=trade.id), Reason.NOT_A_PARTY)
    c.seal(ledger, c.sign(town.bob, "termination", trade=trade.id, at=start + HOUR // 2))
    terminated = ledger.state.trades.rows[trade.id]
    assert (terminated.status, terminated.energy_wh) == ("terminated", 4_000)
    c.seal(ledger, c.offer(town.alice, "fc-a", 10_000, start=start + HOUR // 2, hours=1))
    rejected(ledger, c.sign(town.bob, "termination", trade=trade.id), Reason.TRADE_CLOSED)
    # A terminated trade settles at once, against its shortened agreement: by its seller
    # (the buyer waits for the meter to read what is left of the window).
    rejected(ledger, c.sign(town.bob, "settlement", trade=trade.id, delivered_wh=0), Reason.NOT_DUE)
    c.seal(ledger, c.sign(town.alice, "settlement", trade=trade.id, delivered_wh=0))
    assert ledger.state.trades.rows[trade.id].refunded == 8_000 * 300 // 1000 // 1


def test_ratings_come_once_from_each_party_after_settlement(town: Town) -> None:
    c, ledger = town.c, town.ledger
    trade, start = deliver(town)
    rejected(ledger, c.sign(town.bob, "rating", trade=trade.id, score=9), Reason.NOT_DUE)
    c.now = start + HOUR
    c.seal(
        ledger,
        read_meter(town, start, 4_000),
        c.sign(town.alice, "settlement", trade=trade.id, delivered_wh=4_000),
    )
    rejected(ledger, c.sign(town.carol, "rating", trade=trade.id, score=9), Reason.NOT_A_PARTY)
    out_of_range = c.sign(town.bob, "rating", trade=trade.id, score=10).to_wire()
    out_of_range["body"]["score"] = 11
    rejected(ledger, out_of_range, Reason.MALFORMED)
    c.seal(
        ledger,
        c.sign(town.bob, "rating", trade=trade.id, score=9),
        c.sign(town.alice, "rating", trade=trade.id, score=7),
    )
    rejected(ledger, c.sign(town.bob, "rating", trade=trade.id, score=1), Reason.ALREADY_RATED)
    alice = ledger.state.account(town.alice.account)
    assert (alice.rating_sum, alice.rating_count) == (9, 1)
    assert ledger.state.account(town.bob.account).rating_sum == 7


def test_unknown_references_are_named(town: Town) -> None:
    c, ledger = town.c, town.ledger
    missing = "cd" * 32
    rejected(
        ledger, c.sign(town.bob, "acceptance", offer=missing, quantity=1), Reason.UNKNOWN_OFFER
    )
    rejected(
        ledger, c.sign(town.bob, "settlement", trade=missing, delivered_wh=1), Reason.UNKNOWN_TRADE
    )
    rejected(
        ledger, c.sign(town.alice, "confirmation", acceptance=missing), Reason.UNKNOWN_ACCEPTANCE
    )
    rejected(ledger, c.offer(town.alice, "fc-a", 1_000, request=missing), Reason.UNKNOWN_REQUEST)


def test_an_offer_may_answer_an_energy_request(town: Town) -> None:
    c, ledger = town.c, town.ledger
    start = c.now + HOUR
    request = c.sign(
        town.bob,
        "request",
        mode="energy",
        quantity=2_000,
        max_price=400,
        start=start,
        end=start + HOUR,
        expires=start,
    )
    c.seal(ledger, request)
    answer = c.offer(town.alice, "fc-a", 2_000, request=request.id, to=[town.bob.account])
    c.seal(ledger, answer, c.accept(town.bob, answer, 2_000))
    assert ledger.state.offers.rows[answer.id].request == request.id


# --- fees ------------------------------------------------------------------------------------


def test_fees_reach_the_sealer_only_after_the_confirmations() -> None:
    c = Community(confirmations=2, min_fee=5)
    ledger = c.node()
    bob = c.key("bob")
    sealer = c.sealers[0].account
    c.seal(ledger, c.sign(c.registrar, "topup", to=bob.account, amount=1_000))
    rejected(ledger, c.sign(bob, "transfer", to=sealer, amount=1, fee=4), Reason.FEE_TOO_LOW)
    c.seal(ledger, c.sign(bob, "transfer", to=c.key("carol").account, amount=10, fee=7))
    assert ledger.state.account(sealer).balance == 0
    c.seal(ledger)
    c.seal(ledger)
    assert ledger.state.account(sealer).balance == 7
    assert ledger.state.account(bob.account).balance == 1_000 - 10 - 7


def test_records_of_one_signer_may_arrive_out_of_order_within_the_window(town: Town) -> None:
    c = town.c
    first, second, third = (c.topup(town.carol, n) for n in (1, 2, 3))
    # Relayed by different homes, the third reaches the sealer before the first two.
    c.seal(town.ledger, third)
    c.seal(town.ledger, first, second)
    assert balance(town, town.carol) == 10_000_000 + 6
    rejected(town.ledger, second, Reason.DUPLICATE)


def test_a_sequence_far_below_the_newest_is_a_replay(town: Town) -> None:
    c = town.c
    old = c.topup(town.carol, 1)
    c._seq[c.registrar.public_hex] += 64  # 64 newer records were signed since
    c.seal(town.ledger, c.topup(town.carol, 2))
    rejected(town.ledger, old, Reason.STALE_SEQUENCE)


def test_a_buyers_dispute_caps_the_payment_at_what_it_measured(first_rules_town: Town) -> None:
    # The first rules take the buyer's word; the latest want its own meter behind it
    # (tests/attacks/test_money_rules.py).
    town = first_rules_town
    c, ledger = town.c, town.ledger
    trade, start = deliver(town)  # 4 kWh agreed at 300
    rejected(
        ledger, c.sign(town.alice, "dispute", trade=trade.id, measured_wh=1), Reason.NOT_A_PARTY
    )
    c.now = start + HOUR
    c.seal(
        ledger,
        read_meter(town, start, 4_000),
        c.sign(town.bob, "dispute", trade=trade.id, measured_wh=2_500, reason="short"),
    )
    rejected(
        ledger,
        c.sign(town.bob, "dispute", trade=trade.id, measured_wh=2_000),
        Reason.ALREADY_DISPUTED,
    )
    c.seal(ledger, c.sign(town.alice, "settlement", trade=trade.id, delivered_wh=4_000))
    settled = ledger.state.trades.rows[trade.id]
    assert (settled.delivered_wh, settled.disputed_wh, settled.paid) == (4_000, 2_500, 750)
    assert ledger.state.account(town.bob.account).energy_in_wh == 2_500


def test_overlapping_trades_share_the_metered_export_first_in_first_out(town: Town) -> None:
    c, ledger = town.c, town.ledger
    start = c.now + HOUR
    offer = c.offer(town.alice, "fc-a", 8_000, price=300, start=start)
    first, second = c.accept(town.bob, offer, 4_000), c.accept(town.carol, offer, 4_000)
    c.seal(ledger, offer, first, second)
    c.now = start + HOUR
    # The fuel cell delivered 6 kWh in the hour: the first trade takes its 4 kWh first.
    c.seal(ledger, read_meter(town, start, 6_000))
    rejected(
        ledger,
        c.sign(town.alice, "settlement", trade=second.id, delivered_wh=4_000),
        Reason.EXCEEDS_METERED,
    )
    c.seal(
        ledger,
        c.sign(town.alice, "settlement", trade=first.id, delivered_wh=4_000),
        c.sign(town.alice, "settlement", trade=second.id, delivered_wh=2_000),
    )
    assert ledger.state.trades.rows[first.id].paid == 1_200
    assert ledger.state.trades.rows[second.id].paid == 600
