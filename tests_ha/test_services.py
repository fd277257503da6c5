"""The actions: trading through a REAL edge controller (the demo's homes), their refusals
with the ledger's reason codes, bad input, and an edge controller that fails or is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_p2p import policy
from custom_components.energy_p2p.const import DOMAIN

from .edge import EdgeHome, FakeEdge, LoopbackProxy, eventually, until

pytestmark = pytest.mark.usefixtures("socket_enabled")

SUNNY, FLAT = 0, 2  # the demo's homes: a battery + PV seller and a consumer
# Above the demo consumer's automatic buying limit (0.3 per kWh): nobody takes it unasked.
HIGH_PRICE = 0.9


async def set_up(hass: HomeAssistant, unique_id: str, data: dict[str, Any]) -> MockConfigEntry:
    entry = MockConfigEntry(domain=DOMAIN, unique_id=unique_id, title=unique_id, data=data)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def act(
    hass: HomeAssistant, action: str, entry: MockConfigEntry | str, **data: Any
) -> dict[str, Any]:
    entry_id = entry if isinstance(entry, str) else entry.entry_id
    response = await hass.services.async_call(
        DOMAIN,
        action,
        {"config_entry_id": entry_id, **data},
        blocking=True,
        return_response=True,
    )
    assert isinstance(response, dict)
    return response


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


def has_battery(entry: MockConfigEntry) -> bool:
    devices = entry.runtime_data.coordinator.data.devices
    return any((d.get("resource") or {}).get("kind") == "battery" for d in devices)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def quiet_start() -> datetime:
    """A start a day ahead. The demo's homes trade on their own (Sunny House's battery sells
    for the next 100 s and Flat 3 buys it), and may commit the battery's whole power near
    now; a test's own offer must not depend on what they left free."""
    return dt_util.utcnow().replace(microsecond=0) + timedelta(days=1)


async def test_trading_through_a_real_edge_controller(
    hass: HomeAssistant,
    edge_demo: list[EdgeHome],
    homes: tuple[MockConfigEntry, MockConfigEntry],
) -> None:
    sunny, flat = homes
    # A fresh demo registers its homes' resources in its first blocks.
    await until(hass, lambda: has_battery(sunny), within=30)
    start = quiet_start()
    # Sunny House offers 20 Wh from its battery (the default resource), only to Flat 3.
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
        assert offer["resource"] == "solar-1/battery"
        assert offer["seller"] == edge_demo[SUNNY].account
        assert (offer["mode"], offer["quantity"], offer["price"]) == ("energy", 20, HIGH_PRICE)
        assert offer["start"] == ms(start)
        assert offer["end"] == ms(start + timedelta(minutes=30))
        assert offer["expires"] == ms(start - timedelta(seconds=30))
        assert offer["private_to"] == [edge_demo[FLAT].account]
        # Shown at once, before the WebSocket event.
        coordinator = sunny.runtime_data.coordinator
        assert offer_id in [o["id"] for o in coordinator.data.offers]
        mine = await act(hass, "get_offers", sunny, mine=True)
        assert {"id": offer_id, "price": HIGH_PRICE}.items() <= next(
            o for o in mine["offers"] if o["id"] == offer_id
        ).items()

        # Flat 3 sees it, declines it once, then buys 5 Wh of it after all.
        async def flat_sees_it() -> bool:
            offers = (await act(hass, "get_offers", flat))["offers"]
            return any(o["id"] == offer_id for o in offers)

        await eventually(flat_sees_it)
        rejected = await act(hass, "reject_offer", flat, offer_id=offer_id, reason="too dear")
        assert len(rejected["rejection"]) == 64
        accepted = await act(hass, "accept_offer", flat, offer_id=offer_id, quantity=5)
        assert accepted["conditional"] is False
        trade_id = accepted["acceptance"]  # the acceptance id is the trade id

        async def the_trade() -> dict[str, Any] | None:
            trades = (await act(hass, "get_trades", flat))["trades"]
            return next((t for t in trades if t["id"] == trade_id), None)

        trade = await eventually(the_trade)
        assert (trade["quantity"], trade["price"], trade["role"]) == (5, HIGH_PRICE, "buyer")
        # 5 Wh at 0.9 per kWh, in currency units (the API says 4 or 5 milli-units).
        assert 0.004 <= trade["cost"] <= 0.005

        # A trade is rated only once it is settled: the ledger's reason code says so.
        with pytest.raises(ServiceValidationError) as refused:
            await act(hass, "rate_trade", flat, trade_id=trade_id, score=9)
        assert refused.value.translation_key == "refused"
        assert refused.value.translation_placeholders["code"] == "not_due"
        terminated = await act(hass, "terminate_trade", flat, trade_id=trade_id)
        assert len(terminated["termination"]) == 64
    finally:
        cancelled = await act(hass, "cancel_offer", sunny, offer_id=offer_id)
        assert len(cancelled["cancel"]) == 64

    async def cancelled_in_a_block() -> bool:
        offers = (await act(hass, "get_offers", sunny, mine=True, include_closed=True))["offers"]
        return any(o["id"] == offer_id and o["status"] == "cancelled" for o in offers)

    await eventually(cancelled_in_a_block)


async def test_the_ledgers_refusals_carry_its_reason_code(
    hass: HomeAssistant, homes: tuple[MockConfigEntry, MockConfigEntry]
) -> None:
    sunny, flat = homes
    with pytest.raises(ServiceValidationError) as refused:
        await act(
            hass, "create_offer", sunny, resource="solar-1/battery", quantity=10**8, price=0.25
        )
    assert refused.value.translation_domain == DOMAIN
    assert refused.value.translation_key == "refused"
    assert refused.value.translation_placeholders["code"] == "exceeds_energy"
    # The translated message names the code and the ledger's explanation.
    assert "(exceeds_energy)" in str(refused.value)
    assert "uncommitted" in str(refused.value)

    # Bidding on an offer that is not an auction.
    await until(hass, lambda: has_battery(sunny), within=30)
    start = quiet_start()
    offer = await act(
        hass,
        "create_offer",
        sunny,
        quantity=10,
        price=HIGH_PRICE,
        start=start,
        end=start + timedelta(minutes=30),
        to=[flat.unique_id],
    )
    try:

        async def open_for_flat() -> bool:
            offers = (await act(hass, "get_offers", flat))["offers"]
            return any(o["id"] == offer["id"] and o["status"] == "open" for o in offers)

        await eventually(open_for_flat)  # bids go to offers in a block
        with pytest.raises(ServiceValidationError) as refused:
            await act(hass, "bid", flat, offer_id=offer["id"], price=0.5)
        assert refused.value.translation_placeholders["code"] == "not_an_auction"
    finally:
        await act(hass, "cancel_offer", sunny, offer_id=offer["id"])

    # An offer nobody made (404) and an id that is no id at all (422).
    with pytest.raises(ServiceValidationError) as refused:
        await act(hass, "accept_offer", flat, offer_id="0" * 64)
    assert refused.value.translation_placeholders["code"] == "unknown_offer"
    with pytest.raises(ServiceValidationError) as refused:
        await act(hass, "terminate_trade", flat, trade_id="no/such trade")
    assert refused.value.translation_placeholders["code"] == "malformed"

    # A request the community may answer; it costs nothing until someone accepts.
    requested = await act(hass, "request_energy", flat, quantity=50, max_price=0.01)
    assert len(requested["request"]) == 64


async def test_the_response_actions_return_money_in_currency_units(
    hass: HomeAssistant, fake_entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    # Recorded (milli-units): balance 199985, escrow 15; an offer at 320 per kWh; a trade
    # at 300 per kWh costing 15.
    wallet = await act(hass, "get_wallet", fake_entry)
    assert wallet["balance"] == 199.985
    assert wallet["escrow"] == 0.015
    assert wallet["currency"] == "DEMO"
    assert wallet["account"] == fake_edge.node_id
    assert wallet["rating"] == {"average_x10": None, "count": 0}

    offers = await act(hass, "get_offers", fake_entry)
    assert offers["currency"] == "DEMO"
    assert [(o["price"], o["remaining"], o["unit"]) for o in offers["offers"]] == [
        (0.32, 3000, "W")
    ]
    trades = await act(hass, "get_trades", fake_entry, include_all=True)
    [trade] = trades["trades"]
    assert (trade["price"], trade["cost"], trade["paid"], trade["refunded"]) == (0.3, 0.015, 0, 0)
    assert "GET offers" in fake_edge.requests
    assert "GET trades" in fake_edge.requests


async def test_the_response_actions_read_a_real_edge_controller(
    hass: HomeAssistant, edge_demo: list[EdgeHome], homes: tuple[MockConfigEntry, MockConfigEntry]
) -> None:
    _, flat = homes
    wallet = await act(hass, "get_wallet", flat)
    assert wallet["account"] == edge_demo[FLAT].account
    assert wallet["currency"] == "DEMO"
    assert isinstance(wallet["balance"], float)
    trades = await act(hass, "get_trades", flat, include_all=True)
    assert all(isinstance(t["price"], float) for t in trades["trades"])


async def test_actions_ask_the_edge_controller_in_its_units(
    hass: HomeAssistant, fake_entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    session = {"id": "s1", "port": 1, "state": "starting", "price": 400, "cost": 0, "paid": 0}
    fake_edge.failures["usb/1/purchase"] = (201, session)
    bought = await act(hass, "buy_usb_charge", fake_entry, port=1, energy_wh=10)
    assert bought == {**session, "price": 0.4, "cost": 0, "paid": 0}
    await act(hass, "buy_usb_charge", fake_entry, port=1, amount=0.5)
    fake_edge.failures["offers/abc/bids"] = (201, {"bid": "b1"})
    assert await act(hass, "bid", fake_entry, offer_id="abc", price=0.305) == {"bid": "b1"}
    fake_edge.failures["trades/t1/rate"] = (201, {"rating": "r1"})
    rated = await act(hass, "rate_trade", fake_entry, trade_id="t1", score=10, comment="fine")
    assert rated == {"rating": "r1"}
    fake_edge.failures["offers/abc/accept"] = (201, {"acceptance": "a1", "conditional": True})
    await act(hass, "accept_offer", fake_entry, offer_id="abc", price=0.28)
    fake_edge.failures["offers"] = (201, RECORDED_OFFER)
    # Flat 3 has only its meter as a resource: the default is its first resource.
    await act(hass, "create_offer", fake_entry, quantity=5, price=0.2, mode="capacity")
    assert fake_edge.bodies == [
        ("POST usb/1/purchase", {"energy_wh": 10}),
        ("POST usb/1/purchase", {"amount": 500}),
        ("POST offers/abc/bids", {"price": 305}),
        ("POST trades/t1/rate", {"score": 10, "comment": "fine"}),
        ("POST offers/abc/accept", {"price": 280}),
        (
            "POST offers",
            {"resource": "consumer-3/meter", "mode": "capacity", "quantity": 5, "price": 200},
        ),
    ]


RECORDED_OFFER = {"id": "o1", "seller": "me", "price": 200, "status": "pending"}


async def test_bad_input_is_refused_before_asking_the_edge_controller(
    hass: HomeAssistant, fake_entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    asked = len(fake_edge.requests)
    start = dt_util.utcnow() + timedelta(hours=1)
    with pytest.raises(ServiceValidationError) as bad:
        await act(hass, "create_offer", fake_entry, quantity=5, price=0.2, start=start, end=start)
    assert bad.value.translation_key == "end_before_start"
    with pytest.raises(ServiceValidationError) as bad:
        await act(hass, "buy_usb_charge", fake_entry, port=1)
    assert bad.value.translation_key == "energy_or_amount"
    # What the schemas refuse: a score out of range, both energy and money, no quantity.
    for action, data in (
        ("rate_trade", {"trade_id": "t1", "score": 11}),
        ("buy_usb_charge", {"port": 1, "energy_wh": 5, "amount": 1.0}),
        ("create_offer", {"price": 0.2}),
        ("create_offer", {"quantity": 5, "price": -1}),
        ("create_offer", {"quantity": 5, "price": 0.2, "mode": "gift"}),
    ):
        with pytest.raises(ServiceValidationError, match="Invalid input"):
            await act(hass, action, fake_entry, **data)
    assert len(fake_edge.requests) == asked

    fake_edge.responses["devices"]["devices"] = []
    await fake_entry.runtime_data.coordinator.async_refresh()
    with pytest.raises(ServiceValidationError) as bad:
        await act(hass, "create_offer", fake_entry, quantity=5, price=0.2)
    assert bad.value.translation_key == "no_resource"


async def test_an_unknown_or_unloaded_entry_is_refused(
    hass: HomeAssistant, unused_tcp_port: int
) -> None:
    # The actions exist as soon as the integration is, with no entry loaded.
    assert await async_setup_component(hass, DOMAIN, {})
    assert hass.services.has_service(DOMAIN, "create_offer")
    with pytest.raises(ServiceValidationError) as missing:
        await act(hass, "get_wallet", "no-such-entry")
    assert missing.value.translation_key == "entry_not_found"
    assert "no-such-entry" in str(missing.value)

    other = MockConfigEntry(domain="demo", title="Not ours")
    other.add_to_hass(hass)
    with pytest.raises(ServiceValidationError) as missing:
        await act(hass, "get_wallet", other)
    assert missing.value.translation_key == "entry_not_found"

    gone = MockConfigEntry(
        domain=DOMAIN,
        title="Gone",
        data={"host": "127.0.0.1", "port": unused_tcp_port, "token": "t"},
    )
    gone.add_to_hass(hass)
    await hass.config_entries.async_setup(gone.entry_id)
    with pytest.raises(ServiceValidationError) as unloaded:
        await act(hass, "get_wallet", gone)
    assert unloaded.value.translation_key == "entry_not_loaded"
    assert "Gone" in str(unloaded.value)


async def test_a_failing_edge_controller_is_an_error_not_bad_input(
    hass: HomeAssistant, fake_entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    fake_edge.failures["wallet"] = (
        500,
        {"error": {"code": "internal_error", "message": "the edge controller hit an error"}},
    )
    with pytest.raises(HomeAssistantError) as failed:
        await act(hass, "get_wallet", fake_entry)
    assert not isinstance(failed.value, ServiceValidationError)
    assert failed.value.translation_key == "edge_error"
    assert failed.value.translation_placeholders["code"] == "internal_error"


async def test_an_unreachable_edge_controller_is_an_error_not_bad_input(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[FLAT]
    # The real edge controller behind a proxy the test can cut, as a network would.
    proxy = LoopbackProxy(home.port)
    await proxy.start()
    try:
        entry = await set_up(hass, home.account, home.entry_data(port=proxy.port))
        await proxy.stop()
        with pytest.raises(HomeAssistantError) as failed:
            await act(hass, "cancel_offer", entry, offer_id="abc")
        assert not isinstance(failed.value, ServiceValidationError)
        assert failed.value.translation_key == "cannot_connect"
        assert "Cannot reach the edge controller" in str(failed.value)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await proxy.stop()


async def test_a_refused_token_fails_the_action_and_asks_for_a_new_one(
    hass: HomeAssistant, fake_entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    fake_edge.token = "rotated"
    with pytest.raises(HomeAssistantError) as failed:
        await act(hass, "get_trades", fake_entry)
    assert failed.value.translation_key == "invalid_auth"
    await until(hass, lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)))
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flows[0]["context"]["source"] == SOURCE_REAUTH


def test_money_and_times_in_the_apis_units() -> None:
    assert policy.to_milli(0.25) == 250
    assert policy.to_milli(0.0015) == 2  # rounded, not truncated
    assert policy.to_units(199985) == 199.985
    assert policy.to_units(None) is None
    zone = dt_util.get_default_time_zone()
    aware = datetime(2026, 11, 22, 12, 0, tzinfo=dt_util.UTC)
    assert policy.to_ms(aware) == 1795348800000
    naive = datetime(2026, 11, 22, 12, 0)
    assert policy.to_ms(naive) == ms(naive.replace(tzinfo=zone))


async def test_over_rest_a_refusal_answers_with_its_reason(
    hass: HomeAssistant, hass_client: Any, fake_edge: FakeEdge
) -> None:
    """Home Assistant's REST API answers a refused action with the edge controller's reason
    (not a bare "400: Bad Request"), and input its schema refuses with what is wrong."""
    assert await async_setup_component(hass, "api", {})
    entry = await set_up(hass, fake_edge.node_id, fake_edge.entry_data())
    fake_edge.failures["offers/o1/accept"] = (
        409,
        {"error": {"code": "offer_closed", "message": "offer o1 has expired"}},
    )
    client = await hass_client()
    response = await client.post(
        f"/api/services/{DOMAIN}/accept_offer",
        json={"config_entry_id": entry.entry_id, "offer_id": "o1"},
    )
    assert response.status == 400
    text = await response.text()
    assert "offer o1 has expired" in text
    assert "offer_closed" in text

    response = await client.post(
        f"/api/services/{DOMAIN}/accept_offer",
        json={"config_entry_id": entry.entry_id, "offer_id": "o1", "quantity": -5},
    )
    assert response.status == 400
    assert "quantity" in await response.text()
