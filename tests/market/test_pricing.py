"""Each pricing strategy asks what the owner configured, and demand prices stay in bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_controller.market import (
    DemandPrice,
    FixedPrice,
    HourRange,
    MarketConditions,
    TimeOfDayPrice,
    ValidationError,
    offer_price,
)

HOUR = 3_600_000
DAY = 24 * HOUR
NEUTRAL = MarketConditions()


def test_fixed_price_is_the_same_at_any_time_and_demand():
    strategy = FixedPrice(price=320)
    busy = MarketConditions(demand_wh=10_000, supply_wh=10, acceptance_permille=1000)

    assert offer_price(strategy, 0, NEUTRAL) == 320
    assert offer_price(strategy, 17 * HOUR, busy) == 320


def test_time_of_day_price_follows_the_local_hour_table():
    strategy = TimeOfDayPrice(
        ranges=(HourRange(17, 21, 450), HourRange(22, 6, 120)), default_price=250
    )

    assert offer_price(strategy, 18 * HOUR, NEUTRAL) == 450
    assert offer_price(strategy, 23 * HOUR, NEUTRAL) == 120
    assert offer_price(strategy, DAY + 3 * HOUR, NEUTRAL) == 120  # over midnight
    assert offer_price(strategy, 12 * HOUR, NEUTRAL) == 250
    assert offer_price(strategy, 21 * HOUR, NEUTRAL) == 250  # end hour is excluded


def test_time_of_day_price_uses_the_homes_utc_offset():
    strategy = TimeOfDayPrice(ranges=(HourRange(17, 21, 450),), default_price=250)
    tokyo = MarketConditions(utc_offset_minutes=9 * 60)

    assert offer_price(strategy, 9 * HOUR, tokyo) == 450  # 18:00 in Tokyo
    assert offer_price(strategy, 18 * HOUR, tokyo) == 250  # 03:00 in Tokyo


def test_overlapping_hour_ranges_are_refused_with_their_path():
    with pytest.raises(ValidationError) as error:
        TimeOfDayPrice(ranges=(HourRange(17, 21, 450), HourRange(20, 23, 300)))

    assert [p.path for p in error.value.problems] == ["ranges[1]"]


def test_demand_price_asks_the_reference_at_balance():
    strategy = DemandPrice(floor=100, ceiling=500, reference=250)
    balanced = MarketConditions(demand_wh=5_000, supply_wh=5_000, acceptance_permille=500)

    assert offer_price(strategy, 0, balanced) == 250


def test_demand_price_rises_with_demand_and_acceptance_and_falls_with_supply():
    strategy = DemandPrice(floor=100, ceiling=500, reference=250)

    def price(demand: int, supply: int, accepted: int = 500) -> int:
        conditions = MarketConditions(demand, supply, accepted)
        return offer_price(strategy, 0, conditions)

    assert price(6_000, 5_000) > price(5_000, 5_000)
    assert price(5_000, 5_000, accepted=800) > price(5_000, 5_000, accepted=500)
    assert price(5_000, 6_000) < price(5_000, 5_000)


def test_demand_price_is_clamped_to_floor_and_ceiling():
    strategy = DemandPrice(floor=100, ceiling=500, reference=250)

    assert offer_price(strategy, 0, MarketConditions(50_000, 1_000, 900)) == 500
    assert offer_price(strategy, 0, MarketConditions(1_000, 0)) == 500  # nobody sells
    assert offer_price(strategy, 0, MarketConditions(0, 10_000, 0)) == 100


def test_demand_price_bounds_must_make_sense():
    with pytest.raises(ValidationError) as error:
        DemandPrice(floor=400, ceiling=300, reference=350)

    assert {p.path for p in error.value.problems} == {"ceiling", "reference"}


@given(
    floor=st.integers(0, 1_000),
    spread=st.integers(0, 1_000),
    reference_share=st.integers(0, 100),
    demand=st.integers(0, 10**9),
    supply=st.integers(0, 10**9),
    accepted=st.integers(0, 1000),
)
def test_demand_price_always_stays_within_floor_and_ceiling(
    floor, spread, reference_share, demand, supply, accepted
):
    ceiling = floor + spread
    strategy = DemandPrice(floor, ceiling, floor + spread * reference_share // 100)

    price = offer_price(strategy, 0, MarketConditions(demand, supply, accepted))

    assert floor <= price <= ceiling
    assert isinstance(price, int)
