"""Offer intents and energy requests map exactly onto the ledger's record bodies."""

from __future__ import annotations

import pytest

from edge_controller.market import (
    AuctionTerms,
    EnergyRequest,
    OfferIntent,
    ValidationError,
    capacity_energy_wh,
    energy_cost,
)


def test_offer_body_has_the_ledger_fields_and_leaves_out_unused_options():
    intent = OfferIntent("pv-1", "capacity", 2_000, 250, 1_000, 3_601_000, 61_000)

    assert intent.to_body() == {
        "kind": "offer",
        "resource": "pv-1",
        "mode": "capacity",
        "quantity": 2_000,
        "price": 250,
        "start": 1_000,
        "end": 3_601_000,
        "expires": 61_000,
    }


def test_private_auctioned_offer_body_round_trips():
    intent = OfferIntent(
        "battery-1",
        "energy",
        1_500,
        200,
        0,
        3_600_000,
        60_000,
        to=("home-b",),
        request="req-1",
        auction=AuctionTerms(closes=60_000, cap=400),
    )

    body = intent.to_body()

    assert body["to"] == ["home-b"]
    assert body["auction"] == {"closes": 60_000, "cap": 400}
    assert OfferIntent.from_body(body) == intent


def test_offer_bodies_with_floats_or_the_wrong_kind_are_refused():
    good = OfferIntent("pv-1", "energy", 2_000, 250, 0, 10, 5).to_body()

    with pytest.raises(ValidationError) as floats:
        OfferIntent.from_body({**good, "price": 0.25})
    with pytest.raises(ValidationError) as kind:
        OfferIntent.from_body({**good, "kind": "request"})

    assert [p.path for p in floats.value.problems] == ["price"]
    assert [p.path for p in kind.value.problems] == ["kind"]


def test_energy_request_is_read_from_its_ledger_body():
    body = {
        "kind": "request",
        "mode": "energy",
        "quantity": 2_000,
        "max_price": 300,
        "start": 0,
        "end": 3_600_000,
        "expires": 60_000,
    }

    request = EnergyRequest.from_body("req-1", "home-b", body)

    assert (request.requester, request.quantity, request.max_price) == ("home-b", 2_000, 300)
    assert request.to_body() == body


def test_costs_round_down_to_whole_milli_units():
    assert energy_cost(1_500, 250) == 375
    assert energy_cost(3, 250) == 0
    assert capacity_energy_wh(2_000, 1_800_000) == 1_000
    capacity_offer = OfferIntent("fc-1", "capacity", 3_000, 200, 0, 3_600_000, 1_000)
    assert capacity_offer.cost() == 600  # 3 kWh at 200 per kWh
