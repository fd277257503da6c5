"""Event entities automations trigger on: an offer received, a trade made, a delivery
settled, a USB charging session started or ended; fired from the edge controller's
WebSocket events (`offer`, `trade`, `usb_session`)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from . import EnergyP2PConfigEntry
from .api import JSON
from .coordinator import (
    LIVE_OFFER_STATUSES,
    EnergyP2PCoordinator,
    EnergyP2PState,
    EventListener,
)
from .entity import (
    USB_PORT,
    EnergyP2PEntity,
    EnergyP2PSubDeviceEntity,
    SubDevice,
    async_add_sub_device_entities,
)
from .policy import to_units

PARALLEL_UPDATES = 0

OFFER_RECEIVED = "offer_received"
TRADE_MADE = "trade_made"
DELIVERY_SETTLED = "delivery_settled"
USB_SESSION_STARTED = "usb_session_started"
USB_SESSION_ENDED = "usb_session_ended"

OFFERS = EventEntityDescription(
    key="offers", translation_key="offers", event_types=[OFFER_RECEIVED]
)
TRADES = EventEntityDescription(
    key="trades", translation_key="trades", event_types=[TRADE_MADE, DELIVERY_SETTLED]
)
USB_SESSIONS = EventEntityDescription(
    key="usb_session",
    translation_key="usb_session",
    event_types=[USB_SESSION_STARTED, USB_SESSION_ENDED],
)


def _time(ms: object) -> str | None:
    return dt_util.utc_from_timestamp(ms / 1000).isoformat() if isinstance(ms, int) else None


def offer_attributes(offer: JSON, currency: str) -> dict[str, Any]:
    """What an automation needs to decide on an offer (prices per kWh in currency units);
    the seller by account and by its registered display name (None if it has none)."""
    return {
        "offer_id": offer.get("id"),
        "seller": offer.get("seller"),
        "seller_name": offer.get("seller_name"),
        "resource": offer.get("resource"),
        "mode": offer.get("mode"),
        "quantity": offer.get("quantity"),
        "remaining": offer.get("remaining"),
        "unit": offer.get("unit"),
        "price": to_units(offer.get("price")),
        "currency": currency,
        "start": _time(offer.get("start")),
        "end": _time(offer.get("end")),
        "expires": _time(offer.get("expires")),
        "private": bool(offer.get("private_to")),
    }


def trade_attributes(trade: JSON, currency: str) -> dict[str, Any]:
    """A trade of ours: who, what, how much, and (once settled) what was delivered and paid."""
    return {
        "trade_id": trade.get("id"),
        "offer_id": trade.get("offer"),
        "role": trade.get("role"),
        "seller": trade.get("seller"),
        "seller_name": trade.get("seller_name"),
        "buyer": trade.get("buyer"),
        "buyer_name": trade.get("buyer_name"),
        "resource": trade.get("resource"),
        "mode": trade.get("mode"),
        "energy_wh": trade.get("energy_wh"),
        "price": to_units(trade.get("price")),
        "cost": to_units(trade.get("cost")),
        "currency": currency,
        "start": _time(trade.get("start")),
        "end": _time(trade.get("end")),
        "status": trade.get("status"),
        "delivered_wh": trade.get("delivered_wh"),
        "paid": to_units(trade.get("paid")),
        "refunded": to_units(trade.get("refunded")),
        "disputed": trade.get("disputed"),
    }


def session_attributes(session: JSON, currency: str) -> dict[str, Any]:
    """A USB charging session (energy in Wh, money in currency units)."""

    error = session.get("error")
    return {
        "session_id": session.get("id"),
        "port": session.get("port"),
        "phone": session.get("phone"),
        "wallet": session.get("wallet"),
        "trade_id": session.get("trade"),
        "state": session.get("state"),
        "bought_wh": to_units(session.get("bought_mwh")),
        "delivered_wh": to_units(session.get("delivered_mwh")),
        "price": to_units(session.get("price")),
        "cost": to_units(session.get("cost")),
        "paid": to_units(session.get("paid")),
        "refunded": to_units(session.get("refunded")),
        "currency": currency,
        "started": _time(session.get("started")),
        "ended": _time(session.get("ended")),
        "reason": session.get("reason"),
        "error": error.get("code") if isinstance(error, dict) else None,
    }


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyP2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the offer and trade events, and a session event per USB port."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(
        [EnergyP2POfferEvent(coordinator, OFFERS), EnergyP2PTradeEvent(coordinator, TRADES)]
    )

    def port_events(device: SubDevice) -> list[EnergyP2PUsbSessionEvent]:
        if device.kind != USB_PORT:
            return []
        return [EnergyP2PUsbSessionEvent(coordinator, USB_SESSIONS, device)]

    async_add_sub_device_entities(entry, async_add_entities, port_events)


class _FollowsEvents(EventEntity):
    """Listens to the coordinator's WebSocket events while in Home Assistant."""

    coordinator: EnergyP2PCoordinator
    # Each event entity's own: which WebSocket events fire it, with what.
    _on_edge_event: EventListener

    async def async_added_to_hass(self) -> None:
        """Follow the edge controller's events from now on."""
        await super().async_added_to_hass()
        self.async_on_remove(self.coordinator.async_add_event_listener(self._on_edge_event))

    @callback
    def _fire(self, event_type: str, attributes: dict[str, Any]) -> None:
        self._trigger_event(event_type, attributes)
        self.async_write_ha_state()


class EnergyP2POfferEvent(EnergyP2PEntity, _FollowsEvents):
    """Fires `offer_received` for each new live offer of another home."""

    @callback
    def _on_edge_event(self, event: str, data: JSON, before: EnergyP2PState) -> None:
        if (
            event != "offer"
            or data.get("seller") == before.node_id
            or data.get("status") not in LIVE_OFFER_STATUSES
            or any(o.get("id") == data.get("id") for o in before.offers)
        ):
            return
        self._fire(OFFER_RECEIVED, offer_attributes(data, before.currency))


class EnergyP2PTradeEvent(EnergyP2PEntity, _FollowsEvents):
    """Fires `trade_made` for each new trade of ours, `delivery_settled` when one settles."""

    @callback
    def _on_edge_event(self, event: str, data: JSON, before: EnergyP2PState) -> None:
        if event != "trade":
            return
        known = next((t for t in before.trades if t.get("id") == data.get("id")), None)
        attributes = trade_attributes(data, before.currency)
        if known is None:
            self._fire(TRADE_MADE, attributes)
        if data.get("status") == "settled" and (known is None or known.get("status") != "settled"):
            self._fire(DELIVERY_SETTLED, attributes)


class EnergyP2PUsbSessionEvent(EnergyP2PSubDeviceEntity, _FollowsEvents):
    """Fires `usb_session_started` / `usb_session_ended` for this port's sessions."""

    @callback
    def _on_edge_event(self, event: str, data: JSON, before: EnergyP2PState) -> None:
        session = data.get("session")
        if event != "usb_session" or not isinstance(session, dict):
            return
        if str(session.get("port")) != self.device.ref:
            return
        phase = data.get("phase")
        if phase in ("started", "ended"):
            self._fire(f"usb_session_{phase}", session_attributes(session, before.currency))
