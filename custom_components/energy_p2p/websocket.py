"""The dashboard card's data: the `energy_p2p/subscribe` WebSocket command.

The card subscribes once and receives every home's wallet, live offers, recent trades, USB
ports and market at once, then again whenever one of them changes. Values are as the edge
controller's API returns them (docs/api.md): money in milli-units of the community
currency, prices in milli-units per kWh, energy in Wh (USB: mWh), times in UTC ms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import probatio
from homeassistant.components.websocket_api import async_register_command
from homeassistant.components.websocket_api.connection import ActiveConnection
from homeassistant.components.websocket_api.const import ERR_NOT_FOUND
from homeassistant.components.websocket_api.decorators import websocket_command
from homeassistant.components.websocket_api.messages import event_message
from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigEntryState,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect

from .const import DOMAIN
from .coordinator import LIVE_OFFER_STATUSES

if TYPE_CHECKING:
    from . import EnergyP2PConfigEntry

COMMAND_SUBSCRIBE: Final = f"{DOMAIN}/subscribe"
# How many trades the card gets per home, newest first.
RECENT_TRADES: Final = 20
# Without `entry_id`: every Energy P2P home.
SUBSCRIBE_SCHEMA: Final[dict[str | probatio.Marker, Any]] = {
    probatio.Required("type"): COMMAND_SUBSCRIBE,
    probatio.Optional("entry_id"): str,
}


@callback
def async_register_websocket_commands(hass: HomeAssistant) -> None:
    """Register the card's commands (once per Home Assistant start)."""
    async_register_command(hass, websocket_subscribe)


@websocket_command(SUBSCRIBE_SCHEMA)
@callback
def websocket_subscribe(
    hass: HomeAssistant, connection: ActiveConnection, msg: dict[str, Any]
) -> None:
    """Send every home's card data now and again whenever it changes."""
    entry_id: str | None = msg.get("entry_id")
    if entry_id is not None:
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            connection.send_error(msg["id"], ERR_NOT_FOUND, f"No Energy P2P entry {entry_id}")
            return
    subscription = _CardSubscription(hass, connection, msg["id"], entry_id)
    connection.subscriptions[msg["id"]] = subscription.async_close
    connection.send_result(msg["id"])
    subscription.async_start()


class _CardSubscription:
    """One card's subscription: follows the coordinators of the entries it shows."""

    def __init__(
        self,
        hass: HomeAssistant,
        connection: ActiveConnection,
        msg_id: int,
        entry_id: str | None,
    ) -> None:
        self._hass = hass
        self._connection = connection
        self._msg_id = msg_id
        self._entry_id = entry_id
        self._unsubscribe_coordinators: list[Callable[[], None]] = []
        self._unsubscribe_entries: Callable[[], None] | None = None
        self._last_sent: dict[str, Any] | None = None

    @callback
    def async_start(self) -> None:
        """Follow the entries (they load, unload and reload) and send the first payload."""
        self._unsubscribe_entries = async_dispatcher_connect(
            self._hass, SIGNAL_CONFIG_ENTRY_CHANGED, self._async_entry_changed
        )
        self._async_follow_coordinators()
        self._async_send()

    @callback
    def async_close(self) -> None:
        """Stop following: the card unsubscribed or its connection closed."""
        for unsubscribe in self._unsubscribe_coordinators:
            unsubscribe()
        self._unsubscribe_coordinators.clear()
        if self._unsubscribe_entries is not None:
            self._unsubscribe_entries()
            self._unsubscribe_entries = None

    def _entries(self) -> list[ConfigEntry]:
        entries = self._hass.config_entries.async_entries(DOMAIN)
        if self._entry_id is None:
            return entries
        return [entry for entry in entries if entry.entry_id == self._entry_id]

    @callback
    def _async_follow_coordinators(self) -> None:
        for unsubscribe in self._unsubscribe_coordinators:
            unsubscribe()
        self._unsubscribe_coordinators = [
            entry.runtime_data.coordinator.async_add_listener(self._async_send)
            for entry in self._entries()
            if entry.state is ConfigEntryState.LOADED
        ]

    @callback
    def _async_entry_changed(self, change: ConfigEntryChange, entry: ConfigEntry) -> None:
        if entry.domain != DOMAIN:
            return
        if self._entry_id is not None and entry.entry_id != self._entry_id:
            return
        # A reload brings a new coordinator; a removed entry leaves the card.
        self._async_follow_coordinators()
        self._async_send()

    @callback
    def _async_send(self) -> None:
        payload = {"entries": [card_data(entry) for entry in self._entries()]}
        # Telemetry updates the coordinators every few seconds without changing anything
        # the card shows: send only what is new.
        if payload == self._last_sent:
            return
        self._last_sent = payload
        self._connection.send_message(event_message(self._msg_id, payload))


def card_data(entry: ConfigEntry) -> dict[str, Any]:
    """What the card shows of one home; `online` false and no data while it is not loaded."""
    data: dict[str, Any] = {
        "entry_id": entry.entry_id,
        "title": entry.title,
        "node_id": None,
        "currency": None,
        "online": False,
        "wallet": None,
        "offers": [],
        "trades": [],
        "usb": None,
        "market": None,
    }
    if entry.state is not ConfigEntryState.LOADED:
        return data
    loaded: EnergyP2PConfigEntry = entry
    coordinator = loaded.runtime_data.coordinator
    state = coordinator.data
    trades = sorted(state.trades, key=lambda trade: trade.get("time") or 0, reverse=True)
    data.update(
        node_id=state.node_id,
        currency=state.currency,
        # The last data stays on show while the edge controller is unreachable.
        online=coordinator.last_update_success,
        wallet=state.wallet,
        offers=[offer for offer in state.offers if offer.get("status") in LIVE_OFFER_STATUSES],
        trades=trades[:RECENT_TRADES],
        usb=getattr(state, "usb", None),
        market=state.market,
    )
    return data
