"""Event entities fire from the edge controller's WebSocket events: an offer of another
home, a new trade, a settled trade, a USB session started or ended on that port."""

from __future__ import annotations

import pytest
from homeassistant.const import STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import snapshot_platform
from syrupy.assertion import SnapshotAssertion

from .edge import RECORDED, FakeEdge, until
from .entity_support import USB, attributes_of, fake_entry, now_ms, state_of, with_site_and_usb

pytestmark = pytest.mark.usefixtures("socket_enabled")

OFFERS = "event.flat_3_offers"
TRADES = "event.flat_3_trades"
PORT_1 = "event.flat_3_usb_port_1_charging_session"
PORT_2 = "event.flat_3_usb_port_2_charging_session"


async def test_events_snapshot(
    hass: HomeAssistant,
    fake_edge: FakeEdge,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.EVENT]) as entry:
        await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


async def test_an_offer_of_another_home_fires_once(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    async with fake_entry(hass, fake_edge, [Platform.EVENT]) as entry:
        coordinator = entry.runtime_data.coordinator
        recorded = RECORDED["offers"]["offers"][0]
        # Already known (read at start), our own, and a closed one: no event.
        await fake_edge.push("offer", recorded)
        await fake_edge.push("offer", {**recorded, "id": "mine", "seller": fake_edge.node_id})
        await fake_edge.push("offer", {**recorded, "id": "gone", "status": "expired"})
        offer = {**recorded, "id": "new-offer", "status": "pending", "price": 280}
        await fake_edge.push("offer", offer)
        await until(hass, lambda: state_of(hass, OFFERS) != STATE_UNKNOWN)
        fired = state_of(hass, OFFERS)
        attributes = attributes_of(hass, OFFERS)
        assert attributes.pop("friendly_name") == "Flat 3 Offers"
        assert attributes == {
            "event_type": "offer_received",
            "event_types": ["offer_received"],
            "offer_id": "new-offer",
            "seller": recorded["seller"],
            # The seller as the community registered it, not only its account's hash.
            "seller_name": "Hydrogen House",
            "resource": "hydrogen-2/fuel-cell",
            "mode": "capacity",
            "quantity": 5000,
            "remaining": 3000,
            "unit": "W",
            "price": 0.28,
            "currency": "DEMO",
            "start": "2026-11-22T03:02:46.675000+00:00",
            "end": "2026-11-22T03:04:16.675000+00:00",
            "expires": "2026-11-22T03:03:21.675000+00:00",
            "private": False,
            "private_to_names": [],
        }
        # The same offer once in a block: known by now, no second event.
        await fake_edge.push("offer", {**offer, "status": "open"})
        await until(hass, lambda: coordinator.data.offers[0]["status"] == "open")
        assert state_of(hass, OFFERS) == fired


async def test_a_new_trade_and_its_settlement_fire(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    async with fake_entry(hass, fake_edge, [Platform.EVENT]) as entry:
        coordinator = entry.runtime_data.coordinator
        recorded = RECORDED["trades"]["trades"][0]
        seen: list[tuple[str, str]] = []

        @callback  # in the event loop, in order (a plain function runs in a worker thread)
        def record(event: object) -> None:
            new = getattr(event, "data", {}).get("new_state")
            if new is not None and new.entity_id == TRADES:
                seen.append((new.attributes["event_type"], new.attributes["trade_id"]))

        unsubscribe = hass.bus.async_listen("state_changed", record)
        await fake_edge.push("trade", {**recorded, "status": "terminated"})  # known: nothing
        trade = {**recorded, "id": "new-trade", "time": now_ms()}
        await fake_edge.push("trade", trade)
        await until(hass, lambda: len(seen) == 1)
        assert attributes_of(hass, TRADES)["cost"] == 0.015
        assert attributes_of(hass, TRADES)["role"] == "buyer"
        made = attributes_of(hass, TRADES)
        assert (made["seller_name"], made["buyer_name"]) == ("Hydrogen House", "Flat 3")
        settled = {**trade, "status": "settled", "delivered_wh": 50, "paid": 15}
        await fake_edge.push("trade", settled)
        await until(hass, lambda: len(seen) == 2)
        assert attributes_of(hass, TRADES)["paid"] == 0.015
        await fake_edge.push("trade", settled)  # again: already settled
        # Made and settled before we heard of it: both.
        await fake_edge.push("trade", {**settled, "id": "quick"})
        await until(hass, lambda: len(seen) == 4)
        await until(hass, lambda: coordinator.data.trades[0]["id"] == "quick")
        unsubscribe()
        assert seen == [
            ("trade_made", "new-trade"),
            ("delivery_settled", "new-trade"),
            ("trade_made", "quick"),
            ("delivery_settled", "quick"),
        ]


async def test_usb_sessions_fire_on_their_ports_event(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.EVENT]) as entry:
        session = {**USB["sessions"][0], "port": 2, "id": "s3", "delivered_mwh": 0}
        await fake_edge.push("usb_session", {"phase": "started", "session": session})
        await until(hass, lambda: state_of(hass, PORT_2) != STATE_UNKNOWN)
        started = attributes_of(hass, PORT_2)
        assert started["event_type"] == "usb_session_started"
        assert (started["session_id"], started["port"], started["bought_wh"]) == ("s3", 2, 5.0)
        assert (started["price"], started["currency"], started["error"]) == (0.4, "DEMO", None)
        failed = {
            **session,
            "state": "failed",
            "reason": "meter_failed",
            "ended": now_ms(),
            "error": {"code": "meter_failed", "message": "the meter stopped answering"},
        }
        await fake_edge.push("usb_session", {"phase": "ended", "session": failed})
        await until(hass, lambda: attributes_of(hass, PORT_2)["event_type"] == "usb_session_ended")
        ended = attributes_of(hass, PORT_2)
        assert (ended["reason"], ended["error"]) == ("meter_failed", "meter_failed")
        # Odd phases and events without a session fire nothing; port 1 heard nothing.
        await fake_edge.push("usb_session", {"phase": "paused", "session": session})
        await fake_edge.push("usb_session", {"phase": "started", "session": None})
        await fake_edge.push("wallet", {**RECORDED["wallet"], "balance": 7})
        wallet = entry.runtime_data.coordinator.data
        await until(hass, lambda: entry.runtime_data.coordinator.data is not wallet)
        assert attributes_of(hass, PORT_2)["event_type"] == "usb_session_ended"
        assert state_of(hass, PORT_1) == STATE_UNKNOWN
