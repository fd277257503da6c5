"""The seller's hand on counter-offers through the API: with `sell.counter_offers: ask`,
counter-offers wait for the owner, who lists, confirms and declines them (three real homes
on a real broker, `api_support.running_street`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Mosquitto

from .api_support import Street, eventually, running_street
from .test_api import seen_by, trade_of


@pytest.fixture
async def street(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Street]:
    async with running_street(tmp_path, mosquitto.port) as community:
        yield community


async def listed(street: Street, count: int) -> list[dict[str, Any]]:
    """Wait until Sunny's home lists `count` counter-offers waiting for its owner."""

    async def waiting() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = (await street.sunny.get("counter-offers"))["counter_offers"]
        return found if len(found) == count else None

    return await eventually(waiting, f"{count} counter-offers at Sunny's home")


async def test_an_owner_who_asks_confirms_and_declines_counter_offers_by_hand(
    street: Street,
) -> None:
    policy = await street.sunny.get("policy")
    assert policy["sell"]["counter_offers"] == "auto"  # the default: the policy answers
    policy["sell"]["counter_offers"] = "ask"
    assert (await street.sunny.call("PUT", "policy", policy)).body["sell"][
        "counter_offers"
    ] == "ask"

    offer = await street.sunny.offer(quantity=1_000, price=300, expires=None)
    await seen_by(street.flat, offer["id"])
    await seen_by(street.corner, offer["id"])
    # 285 is 95 %: the automatic policy would confirm it, 150 it would decline; both wait.
    generous = await street.flat.post(
        f"offers/{offer['id']}/accept", {"quantity": 400, "price": 285}
    )
    low = await street.corner.post(f"offers/{offer['id']}/accept", {"quantity": 300, "price": 150})
    counters = {c["id"]: c for c in await listed(street, 2)}
    assert set(counters) == {generous["acceptance"], low["acceptance"]}
    mine = counters[generous["acceptance"]]
    assert (mine["offer"], mine["buyer"], mine["quantity"], mine["unit"]) == (
        offer["id"],
        street.account("flat"),
        400,
        "Wh",
    )
    assert (mine["price"], mine["asking_price"], mine["cost"], mine["open"]) == (
        285,
        300,
        114,
        True,
    )
    shown = await street.sunny.get(f"offers/{offer['id']}")
    assert {c["id"] for c in shown["counter_offers"]} == set(counters)

    confirmed = await street.sunny.post(f"counter-offers/{generous['acceptance']}/confirm")
    assert confirmed["trade"] == generous["acceptance"]
    declined = await street.sunny.post(
        f"counter-offers/{low['acceptance']}/decline", {"reason": "too low for me"}
    )
    assert set(declined) == {"rejection"}
    # Answered, even before a block holds the answers: not listed, not answered twice.
    assert (await street.sunny.get("counter-offers"))["counter_offers"] == []
    await street.sunny.refused(
        "POST", f"counter-offers/{low['acceptance']}/confirm", status=409, code="not_pending"
    )

    trade = await trade_of(street.flat, generous["acceptance"])
    assert (trade["quantity"], trade["price"], trade["cost"]) == (400, 285, 114)
    assert await street.corner.trade(low["acceptance"]) is None


async def test_unknown_counter_offers_and_bad_bodies_are_refused(street: Street) -> None:
    await street.sunny.refused(
        "POST", f"counter-offers/{'ab' * 32}/confirm", status=404, code="unknown_acceptance"
    )
    await street.flat.refused(
        "POST",
        f"counter-offers/{'ab' * 32}/decline",
        {"reason": 5},
        status=422,
        code="invalid_field",
    )
    policy = await street.sunny.get("policy")
    policy["sell"]["counter_offers"] = "sometimes"
    message = await street.sunny.refused("PUT", "policy", policy, status=422, code="invalid_policy")
    assert "sell.counter_offers" in message
