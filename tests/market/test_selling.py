"""Threshold-triggered selling as a homeowner sees it: offers appear, stay and go at the
right moments, sized from what is really available."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_controller.market import (
    AuctionRule,
    AutoSeller,
    BatteryReading,
    BatterySellRule,
    DecisionReason,
    EnergyRequest,
    FixedPrice,
    FuelCellReading,
    FuelCellSellRule,
    MarketOffer,
    MarketSnapshot,
    PowerHold,
    PublishOffer,
    PvReading,
    PvSellRule,
    ResourceReading,
    SellDecision,
    SellPolicy,
    WithdrawOffer,
)
from edge_controller.market.checks import ValidationError
from edge_controller.market.units import held_w

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
ME = "home-a"

# The whole rating for automatic selling: these tests check the rating's arithmetic; the
# owner's headroom (the default 80 %) has its own tests below.
BATTERY_RULE = BatterySellRule(
    enable_soc_percent=80,
    disable_soc_percent=70,
    reserve_percent=30,
    enable_delay_ms=MINUTE,
    disable_delay_ms=MINUTE,
    max_power_percent=100,
)
POLICY = SellPolicy(
    battery=BATTERY_RULE,
    pv=PvSellRule(enable_surplus_w=1_000, disable_surplus_w=500, reserve_w=200),
    fuel_cell=FuelCellSellRule(enable_free_w=1_000, disable_free_w=500, reserve_wh=1_000),
    pricing=FixedPrice(250),
    min_offer_interval_ms=5 * MINUTE,
    delivery_lead_ms=MINUTE,
    delivery_window_ms=HOUR,
    offer_validity_ms=HOUR,
)


def battery(soc: float, *, fresh: bool = True, committed_wh: int = 0) -> BatteryReading:
    return BatteryReading(
        resource="battery-1",
        soc_percent=soc,
        capacity_wh=10_000,
        max_discharge_w=8_000,
        fresh=fresh,
        committed_wh=committed_wh,
    )


@dataclass
class FakeApp:
    """Plays the app: feeds readings, keeps our open offers as the ledger would."""

    seller: AutoSeller
    open_offers: dict[str, MarketOffer] = field(default_factory=dict)
    log: list[tuple[int, SellDecision]] = field(default_factory=list)
    requests: tuple[EnergyRequest, ...] = ()

    def tick(self, now_ms: int, *readings: ResourceReading) -> list[SellDecision]:
        self.open_offers = {k: o for k, o in self.open_offers.items() if o.terms.expires > now_ms}
        snapshot = MarketSnapshot(
            now_ms=now_ms,
            readings=readings,
            open_offers=tuple(self.open_offers.values()),
            requests=self.requests,
        )
        decisions = self.seller.decide(snapshot)
        for decision in decisions:
            self.log.append((now_ms, decision))
            if isinstance(decision, PublishOffer):
                offer_id = f"offer-{len(self.log)}"
                self.open_offers[offer_id] = MarketOffer(
                    offer_id, ME, decision.intent, automatic=True
                )
            else:
                del self.open_offers[decision.offer_id]
        return decisions

    def publishes(self) -> list[PublishOffer]:
        return [d for _, d in self.log if isinstance(d, PublishOffer)]

    def withdrawals(self) -> list[WithdrawOffer]:
        return [d for _, d in self.log if isinstance(d, WithdrawOffer)]


def app(policy: SellPolicy = POLICY) -> FakeApp:
    return FakeApp(AutoSeller(policy, account=ME))


def test_battery_crossing_threshold_offers_once_above_reserve_after_enable_delay():
    home = app()
    assert home.tick(0, battery(79)) == []
    assert home.tick(10 * SECOND, battery(90)) == []
    assert home.tick(40 * SECOND, battery(90)) == []

    decisions = home.tick(70 * SECOND, battery(90))

    assert len(decisions) == 1
    offer = decisions[0]
    assert isinstance(offer, PublishOffer)
    assert offer.reason is DecisionReason.BATTERY_ABOVE_THRESHOLD
    # (90 % - 30 % reserve) of 10 kWh
    assert offer.intent.mode == "energy"
    assert offer.intent.quantity == 6_000
    assert offer.intent.price == 250
    assert offer.intent.start == 70 * SECOND + MINUTE
    assert offer.intent.end == offer.intent.start + HOUR
    assert home.tick(80 * SECOND, battery(90)) == []


def test_battery_offer_is_limited_by_max_discharge_power_over_the_window():
    home = app()
    slow = replace(battery(100), max_discharge_w=2_000)
    home.tick(0, slow)
    (offer,) = home.tick(MINUTE, slow)

    assert isinstance(offer, PublishOffer)
    assert offer.intent.quantity == 2_000  # 2 kW for one hour, not the 7 kWh above reserve


def test_energy_already_sold_is_not_offered_again():
    home = app()
    home.tick(0, battery(90, committed_wh=4_000))
    (offer,) = home.tick(MINUTE, battery(90, committed_wh=4_000))

    assert isinstance(offer, PublishOffer)
    assert offer.intent.quantity == 2_000


def test_soc_hovering_around_thresholds_does_not_flap():
    home = app()
    home.tick(0, battery(85))
    home.tick(MINUTE, battery(85))
    assert len(home.publishes()) == 1

    # 78..84 % for half an hour with short dips below the disable threshold.
    for step in range(1, 180):
        soc = 65 if step % 9 == 0 else 78 + step % 7
        home.tick(MINUTE + step * 10 * SECOND, battery(soc))

    assert len(home.publishes()) == 1
    assert home.withdrawals() == []


def test_offer_withdrawn_when_soc_stays_below_disable_threshold_for_the_delay():
    home = app()
    home.tick(0, battery(90))
    home.tick(MINUTE, battery(90))
    (offer_id,) = home.open_offers

    assert home.tick(2 * MINUTE, battery(69)) == []
    assert home.tick(2 * MINUTE + 59 * SECOND, battery(69)) == []
    decisions = home.tick(3 * MINUTE, battery(69))

    assert decisions == [
        WithdrawOffer(offer_id, DecisionReason.CONDITION_ENDED, decisions[0].message)
    ]
    assert home.open_offers == {}


def test_stale_telemetry_never_produces_an_offer():
    home = app()
    for step in range(60):
        assert home.tick(step * 10 * SECOND, battery(99, fresh=False)) == []


def test_stale_telemetry_restarts_the_enable_delay():
    home = app()
    home.tick(0, battery(90))
    home.tick(50 * SECOND, battery(90, fresh=False))

    assert home.tick(70 * SECOND, battery(90)) == []
    assert len(home.tick(130 * SECOND, battery(90))) == 1


def test_offer_withdrawn_when_telemetry_stays_stale():
    home = app()
    home.tick(0, battery(90))
    home.tick(MINUTE, battery(90))
    home.tick(2 * MINUTE, battery(90, fresh=False))

    (decision,) = home.tick(3 * MINUTE, battery(90, fresh=False))

    assert isinstance(decision, WithdrawOffer)
    assert decision.reason is DecisionReason.TELEMETRY_STALE


def test_next_offer_waits_for_the_minimum_interval_after_a_sale():
    home = app()
    home.tick(0, battery(95))
    home.tick(MINUTE, battery(95))
    home.open_offers.clear()  # a neighbour bought it all

    assert home.tick(2 * MINUTE, battery(95, committed_wh=4_000)) == []
    (offer,) = home.tick(6 * MINUTE, battery(95, committed_wh=4_000))

    assert isinstance(offer, PublishOffer)
    assert offer.intent.quantity == 2_500  # 6.5 kWh above the reserve, 4 kWh already sold


def test_pv_surplus_offers_capacity_above_the_reserve():
    home = app()
    pv = PvReading("pv-1", pv_w=4_000, load_w=500, fresh=True, grid_export_w=2_500)
    home.tick(0, pv)
    (offer,) = home.tick(MINUTE, pv)

    assert isinstance(offer, PublishOffer)
    assert offer.reason is DecisionReason.PV_SURPLUS_ABOVE_THRESHOLD
    assert offer.intent.mode == "capacity"
    assert offer.intent.quantity == 2_300  # measured export minus the 200 W reserve


def test_pv_surplus_is_pv_minus_load_without_an_export_meter():
    home = app()
    pv = PvReading("pv-1", pv_w=3_000, load_w=1_200, fresh=True)
    home.tick(0, pv)
    (offer,) = home.tick(MINUTE, pv)

    assert isinstance(offer, PublishOffer)
    assert offer.intent.quantity == 1_600


def test_small_pv_surplus_offers_nothing():
    home = app()
    pv = PvReading("pv-1", pv_w=1_400, load_w=500, fresh=True)
    for step in range(10):
        assert home.tick(step * MINUTE, pv) == []


def test_fuel_cell_offers_free_capacity_that_its_hydrogen_can_sustain():
    home = app()
    # The patent's example: a 10 kW fuel cell with 7 kW sold has 3 kW free...
    cell = FuelCellReading(
        "fc-1",
        power_rating_w=10_000,
        available_energy_wh=50_000,
        fresh=True,
        held=(PowerHold(0, 10 * HOUR, 7_000),),
    )
    home.tick(0, cell)
    (offer,) = home.tick(MINUTE, cell)
    assert isinstance(offer, PublishOffer)
    assert offer.reason is DecisionReason.FUEL_CELL_CAPACITY_FREE
    assert (offer.intent.mode, offer.intent.quantity) == ("capacity", 3_000)

    # ...but with 2 kWh of hydrogen above a 1 kWh reserve it can only hold 1 kW for an hour.
    low = app()
    low_cell = replace(cell, available_energy_wh=2_000)
    low.tick(0, low_cell)
    (offer,) = low.tick(MINUTE, low_cell)
    assert isinstance(offer, PublishOffer)
    assert offer.intent.quantity == 1_000


def test_faulty_fuel_cell_offers_nothing():
    home = app()
    cell = FuelCellReading("fc-1", 10_000, 50_000, fresh=True, fault=True)
    home.tick(0, cell)
    assert home.tick(MINUTE, cell) == []


def test_turning_auto_sell_off_withdraws_automatic_offers_only():
    home = app()
    home.tick(0, battery(90))
    home.tick(MINUTE, battery(90))
    manual = MarketOffer("manual-1", ME, home.publishes()[0].intent, automatic=False)
    home.open_offers["manual-1"] = manual
    home.seller.update_policy(replace(POLICY, auto_sell=False))

    decisions = home.tick(2 * MINUTE, battery(90))

    assert [d.offer_id for d in decisions if isinstance(d, WithdrawOffer)] == ["offer-1"]
    assert all(d.reason is DecisionReason.AUTO_SELL_OFF for d in decisions)


def test_auction_policy_publishes_offers_with_auction_terms():
    home = app(replace(POLICY, auction=AuctionRule(duration_ms=2 * MINUTE, cap=900)))
    home.tick(0, battery(90))
    (offer,) = home.tick(MINUTE, battery(90))

    assert isinstance(offer, PublishOffer)
    assert offer.intent.auction is not None
    assert offer.intent.auction.closes == 3 * MINUTE
    assert offer.intent.auction.cap == 900


def test_private_offers_go_to_the_listed_homes():
    home = app(replace(POLICY, to=("home-b", "home-c")))
    home.tick(0, battery(90))
    (offer,) = home.tick(MINUTE, battery(90))

    assert isinstance(offer, PublishOffer)
    assert offer.intent.to_body()["to"] == ["home-b", "home-c"]


def request(**changes: object) -> EnergyRequest:
    fields: dict[str, object] = {
        "request_id": "req-1",
        "requester": "home-b",
        "mode": "energy",
        "quantity": 2_000,
        "max_price": 300,
        "start": 10 * MINUTE,
        "end": 70 * MINUTE,
        "expires": 5 * MINUTE,
    }
    fields.update(changes)
    return EnergyRequest(**fields)  # type: ignore[arg-type]


def test_energy_request_is_answered_once_with_a_private_offer():
    home = app()
    home.requests = (request(),)
    # 60 % SoC is below the selling threshold, but a neighbour asked and the reserve holds.
    (answer,) = home.tick(0, battery(60))

    assert isinstance(answer, PublishOffer)
    assert answer.reason is DecisionReason.ANSWER_REQUEST
    body = answer.intent.to_body()
    assert body["to"] == ["home-b"]
    assert body["request"] == "req-1"
    assert (body["quantity"], body["start"], body["end"]) == (2_000, 10 * MINUTE, 70 * MINUTE)
    assert home.tick(10 * SECOND, battery(60)) == []


def test_request_is_answered_with_what_is_available_above_the_reserve():
    home = app()
    home.requests = (request(quantity=5_000),)
    (answer,) = home.tick(0, battery(50))

    assert isinstance(answer, PublishOffer)
    assert answer.intent.quantity == 2_000  # (50 % - 30 %) of 10 kWh


def test_a_request_gets_only_the_power_trades_leave_free_in_its_window():
    home = app()
    # Trades hold 6 of the battery's 8 kW from 0:20 to 0:40, inside the request's window
    # (0:10 to 1:10): 2 kW for the hour is all it can still promise there.
    held = (PowerHold(20 * MINUTE, 40 * MINUTE, 6_000),)
    home.requests = (request(quantity=5_000),)
    (answer,) = home.tick(0, replace(battery(90), held=held))
    assert isinstance(answer, PublishOffer)
    assert answer.intent.quantity == 2_000

    # Holding all 8 kW there leaves nothing to answer with.
    full = app()
    full.requests = (request(),)
    busy = replace(battery(90), held=(PowerHold(20 * MINUTE, 40 * MINUTE, 8_000),))
    assert full.tick(0, busy) == []
    # A request for after those trades end is answered in full.
    full.requests = (request(request_id="req-2", start=40 * MINUTE, end=100 * MINUTE),)
    (answer,) = full.tick(SECOND, busy)
    assert isinstance(answer, PublishOffer)
    assert answer.intent.quantity == 2_000


def test_threshold_offers_leave_out_power_held_in_their_window_only():
    home = app()
    # Held until 0:30, the battery has 1 kW free in the offer's window (0:02 to 1:02)...
    early = (PowerHold(0, 30 * MINUTE, 7_000),)
    home.tick(0, replace(battery(100), held=early))
    (offer,) = home.tick(MINUTE, replace(battery(100), held=early))
    assert isinstance(offer, PublishOffer)
    assert offer.intent.quantity == 1_000
    # ...while power held after the window takes nothing from it.
    later = app()
    late = (PowerHold(2 * HOUR, 3 * HOUR, 8_000),)
    later.tick(0, replace(battery(100), held=late))
    (offer,) = later.tick(MINUTE, replace(battery(100), held=late))
    assert isinstance(offer, PublishOffer)
    assert offer.intent.quantity == 7_000  # the 7 kWh above the reserve, at most 8 kW


holds = st.lists(
    st.builds(
        lambda start, length, power: PowerHold(start, start + length, power),
        st.integers(0, 100),
        st.integers(1, 50),
        st.integers(0, 5_000),
    ),
    max_size=8,
)


@given(holds=holds, start=st.integers(0, 150), length=st.integers(1, 50))
def test_held_power_is_the_peak_over_every_instant_of_the_window(holds, start, length):
    end = start + length
    at = [sum(h.power_w for h in holds if h.start <= t < h.end) for t in range(start, end)]
    assert held_w(holds, start, end) == max(at)


def test_request_below_our_price_is_not_answered():
    home = app()
    home.requests = (request(max_price=200),)
    assert home.tick(0, battery(60)) == []


def test_our_own_request_is_not_answered():
    home = app()
    home.requests = (request(requester=ME),)
    assert home.tick(0, battery(60)) == []


@given(
    soc=st.floats(min_value=0, max_value=100, allow_nan=False),
    capacity_wh=st.integers(min_value=0, max_value=100_000),
    max_discharge_w=st.integers(min_value=0, max_value=20_000),
    reserve=st.integers(min_value=0, max_value=70),
    committed_wh=st.integers(min_value=0, max_value=50_000),
)
def test_policy_never_offers_more_than_is_available_above_the_reserve(
    soc, capacity_wh, max_discharge_w, reserve, committed_wh
):
    rule = replace(BATTERY_RULE, reserve_percent=reserve, enable_delay_ms=0)
    seller = AutoSeller(replace(POLICY, battery=rule), account=ME)
    reading = BatteryReading("battery-1", soc, capacity_wh, max_discharge_w, True, committed_wh)

    decisions = seller.decide(MarketSnapshot(now_ms=0, readings=(reading,)))

    for decision in decisions:
        assert isinstance(decision, PublishOffer)
        above_reserve_wh = (Fraction(soc) - reserve) * capacity_wh / 100 - committed_wh
        assert decision.intent.quantity <= above_reserve_wh
        assert decision.intent.quantity <= max_discharge_w  # over a one-hour window
        assert decision.intent.quantity >= rule.min_offer_wh


def test_a_counter_offer_close_enough_to_the_asking_price_is_confirmed() -> None:
    from edge_controller.market import SellPolicy, confirms_counter

    policy = SellPolicy(min_counter_permille=900)
    assert confirms_counter(policy, asking_price=300, counter_price=270)
    assert not confirms_counter(policy, asking_price=300, counter_price=269)
    assert not confirms_counter(SellPolicy(auto_sell=False), 300, 300)
    assert not confirms_counter(SellPolicy(min_counter_permille=1001), 300, 300)


# --- headroom and PV energy -------------------------------------------------------------------


def test_automatic_selling_leaves_the_owner_headroom_of_the_battery_s_rating():
    headroom = replace(POLICY, battery=replace(BATTERY_RULE, max_power_percent=75))
    home = app(headroom)
    slow = replace(battery(100), max_discharge_w=2_000)
    home.tick(0, slow)
    (offer,) = home.tick(MINUTE, slow)
    assert isinstance(offer, PublishOffer)
    assert offer.intent.quantity == 1_500  # 75 % of 2 kW for one hour: 500 W stay the owner's

    # Trades the owner made by hand count: 1.2 kW held leaves 300 W for automatic offers.
    busy = app(headroom)
    held = replace(slow, held=(PowerHold(0, 3 * HOUR, 1_200),))
    busy.tick(0, held)
    (offer,) = busy.tick(MINUTE, held)
    assert isinstance(offer, PublishOffer)
    assert offer.intent.quantity == 300


def test_the_default_battery_rule_keeps_a_fifth_of_the_rating_for_the_owner():
    assert BatterySellRule().max_power_percent == 80
    with pytest.raises(ValidationError) as error:
        BatterySellRule(max_power_percent=0)
    assert "max_power_percent: must be 1..100" in str(error.value)


def test_a_pv_surplus_sold_as_energy_offers_wh_over_the_window():
    as_energy = replace(POLICY, pv=replace(POLICY.pv, sell_as="energy"))
    home = app(as_energy)
    sunny = PvReading("pv-1", pv_w=3_200, load_w=200, fresh=True)
    home.tick(0, sunny)
    (offer,) = home.tick(MINUTE, sunny)
    assert isinstance(offer, PublishOffer)
    assert offer.intent.mode == "energy"
    assert offer.intent.quantity == 2_800  # (3 000 W surplus - 200 W reserve) for an hour
