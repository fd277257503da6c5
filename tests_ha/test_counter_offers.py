"""The seller answers counter-offers by hand: the `answer_counter_offer` action, against a
real edge controller (the demo) whose selling policy asks its owner, and against a stand-in
for its refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import probatio
import pytest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .edge import EdgeHome, FakeEdge, eventually, until
from .test_services import FLAT, HIGH_PRICE, SUNNY, act, has_battery, quiet_start, set_up

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture
async def homes(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> AsyncIterator[tuple[MockConfigEntry, MockConfigEntry]]:
    """Entries of the demo's seller (Sunny House) and consumer (Flat 3)."""
    sunny = await set_up(hass, edge_demo[SUNNY].account, edge_demo[SUNNY].entry_data())
    flat = await set_up(hass, edge_demo[FLAT].account, edge_demo[FLAT].entry_data())
    yield sunny, flat
    for entry in (sunny, flat):
        assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.fixture
async def fake_entry(hass: HomeAssistant, fake_edge: FakeEdge) -> AsyncIterator[MockConfigEntry]:
    entry = await set_up(hass, fake_edge.node_id, fake_edge.entry_data())
    yield entry
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_seller_who_is_asked_confirms_a_counter_offer_from_home_assistant(
    hass: HomeAssistant,
    edge_demo: list[EdgeHome],
    homes: tuple[MockConfigEntry, MockConfigEntry],
) -> None:
    sunny, flat = homes
    await until(hass, lambda: has_battery(sunny), within=30)
    client = sunny.runtime_data.client
    policy = await client.get_policy()
    policy["sell"]["counter_offers"] = "ask"
    await client.set_policy(policy)
    start = quiet_start()
    offer = await act(
        hass,
        "create_offer",
        sunny,
        quantity=20,
        price=HIGH_PRICE,
        start=start,
        end=start + timedelta(minutes=30),
        expires=start - timedelta(seconds=30),
        to=[edge_demo[FLAT].account],
    )
    offer_id = offer["id"]
    try:

        async def flat_sees_it() -> bool:
            offers = (await act(hass, "get_offers", flat))["offers"]
            return any(o["id"] == offer_id and o["status"] == "open" for o in offers)

        await eventually(flat_sees_it)
        countered = await act(
            hass, "accept_offer", flat, offer_id=offer_id, quantity=10, price=0.85
        )
        assert countered["conditional"] is True
        counter_id = countered["acceptance"]

        def counters() -> list[dict[str, Any]]:
            offers = sunny.runtime_data.coordinator.data.offers
            ours = next((o for o in offers if o["id"] == offer_id), {})
            return list(ours.get("counter_offers") or [])

        # Pushed to Home Assistant with the offer when a block holds the counter-offer.
        await until(hass, lambda: bool(counters()), within=30)
        (waiting,) = counters()
        assert (waiting["id"], waiting["price"], waiting["asking_price"]) == (counter_id, 850, 900)
        confirmed = await act(
            hass, "answer_counter_offer", sunny, counter_offer_id=counter_id, answer="confirm"
        )
        assert confirmed["trade"] == counter_id and len(confirmed["confirmation"]) == 64

        async def the_trade() -> dict[str, Any] | None:
            trades = (await act(hass, "get_trades", flat))["trades"]
            return next((t for t in trades if t["id"] == counter_id), None)

        trade = await eventually(the_trade)
        assert (trade["quantity"], trade["price"]) == (10, 0.85)
        await until(hass, lambda: not counters(), within=30)
    finally:
        policy["sell"]["counter_offers"] = "auto"
        await client.set_policy(policy)
        await act(hass, "cancel_offer", sunny, offer_id=offer_id)


async def test_a_decline_carries_its_reason_and_refusals_come_back_translated(
    hass: HomeAssistant, fake_entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    fake_edge.failures["counter-offers/c1/decline"] = (201, {"rejection": "r1"})
    declined = await act(
        hass,
        "answer_counter_offer",
        fake_entry,
        counter_offer_id="c1",
        answer="decline",
        reason="too low",
    )
    assert declined == {"rejection": "r1"}
    await act(hass, "answer_counter_offer", fake_entry, counter_offer_id="c1", answer="decline")
    assert fake_edge.bodies[-2:] == [
        ("POST counter-offers/c1/decline", {"reason": "too low"}),
        ("POST counter-offers/c1/decline", {}),
    ]
    fake_edge.failures["counter-offers/c2/confirm"] = (
        409,
        {"error": {"code": "not_pending", "message": "answered already"}},
    )
    with pytest.raises(ServiceValidationError) as refused:
        await act(hass, "answer_counter_offer", fake_entry, counter_offer_id="c2", answer="confirm")
    assert refused.value.translation_key == "refused"
    assert refused.value.translation_placeholders["code"] == "not_pending"
    with pytest.raises(probatio.Invalid):
        await act(hass, "answer_counter_offer", fake_entry, counter_offer_id="c2", answer="maybe")
