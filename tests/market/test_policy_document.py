"""The policy Home Assistant reads and writes: a faithful round trip, and mistakes reported
with the path of the field that is wrong."""

from __future__ import annotations

import json

import pytest

from edge_controller.market import (
    AcceptanceCriteria,
    AllowedHours,
    AuctionRule,
    BatterySellRule,
    BiddingStrategy,
    DemandPrice,
    HourRange,
    MarketPolicy,
    QuantityRange,
    SellPolicy,
    TimeOfDayPrice,
    ValidationError,
)


def paths(error: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {p.path for p in error.value.problems}


def test_policy_survives_a_json_round_trip():
    policy = MarketPolicy(
        sell=SellPolicy(
            battery=BatterySellRule(enable_soc_percent=90, disable_soc_percent=85),
            pv=None,
            pricing=TimeOfDayPrice(ranges=(HourRange(17, 21, 450),), default_price=200),
            to=("home-b",),
            auction=AuctionRule(duration_ms=60_000, cap=600),
        ),
        buy=AcceptanceCriteria(
            auto_accept=True,
            energy=QuantityRange(100, 2_000),
            allowed_hours=AllowedHours(22, 6),
            blocked_sellers=("home-z",),
        ),
        bidding=BiddingStrategy(max_price=400, increment=5),
    )

    document = json.loads(json.dumps(policy.to_dict()))

    assert MarketPolicy.from_dict(document) == policy
    assert document["sell"]["pricing"]["kind"] == "time_of_day"


def test_missing_fields_take_their_defaults():
    policy = MarketPolicy.from_dict({"sell": {"pricing": {"kind": "demand"}}})

    assert policy.sell.pricing == DemandPrice()
    assert policy.buy == AcceptanceCriteria()


def test_disable_threshold_above_enable_threshold_is_refused_with_its_path():
    with pytest.raises(ValidationError) as error:
        MarketPolicy.from_dict(
            {"sell": {"battery": {"enable_soc_percent": 60, "disable_soc_percent": 70}}}
        )

    assert paths(error) == {"sell.battery.disable_soc_percent"}
    assert "enable_soc_percent" in str(error.value)


def test_every_mistake_in_a_document_is_reported_at_once():
    with pytest.raises(ValidationError) as error:
        MarketPolicy.from_dict(
            {
                "sell": {
                    "pv": {"enable_surplus_w": "lots"},
                    "pricing": {"kind": "auction"},
                    "delivery_window_ms": 1.5,
                    "colour": "green",
                },
                "buy": {"max_price": True, "energy": {"min": 500, "max": 100}},
                "bidding": {"increment": 0},
            }
        )

    assert paths(error) == {
        "sell.pv.enable_surplus_w",
        "sell.pricing.kind",
        "sell.delivery_window_ms",
        "sell.colour",
        "buy.max_price",
        "buy.energy.max",
        "bidding.increment",
    }
    assert error.value.to_dict()["problems"]


def test_offers_that_outlast_their_delivery_window_are_refused():
    with pytest.raises(ValidationError) as error:
        SellPolicy(delivery_lead_ms=0, delivery_window_ms=60_000, offer_validity_ms=120_000)

    assert {p.path for p in error.value.problems} == {"offer_validity_ms"}


def test_a_seller_cannot_be_both_preferred_and_blocked():
    with pytest.raises(ValidationError) as error:
        AcceptanceCriteria(preferred_sellers=("home-b",), blocked_sellers=("home-b",))

    assert {p.path for p in error.value.problems} == {"blocked_sellers"}
