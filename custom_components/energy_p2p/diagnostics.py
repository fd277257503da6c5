"""Diagnostics of an Energy P2P config entry, with secrets and personal data redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_HOST, CONF_TOKEN
from homeassistant.core import HomeAssistant

from . import EnergyP2PConfigEntry

# The token; where the home is (its address on the network, a resource's location: a
# street address); who it trades with and who its phones and peers are (account ids,
# names, broker addresses). What is left shows how the integration and the edge controller
# behave: statuses, amounts, prices, times, heights.
TO_REDACT = {
    CONF_TOKEN,
    CONF_HOST,
    "location",
    "configuration_url",
    "peers",
    "broker",
    "seller",
    "seller_name",
    "buyer",
    "buyer_name",
    "best_bidder",
    "private_to",
    "to",
    "to_names",
    "private_to_names",
    "owner",
    "wallet_name",
    "phone",
    "identity",
}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: EnergyP2PConfigEntry
) -> dict[str, Any]:
    """The entry's settings (without the token) and what the edge controller last showed."""
    coordinator = entry.runtime_data.coordinator
    return {
        "entry": async_redact_data(entry.as_dict(), TO_REDACT),
        "event_stream_connected": coordinator.stream_connected,
        "last_update_success": coordinator.last_update_success,
        "data": async_redact_data(asdict(coordinator.data), TO_REDACT),
    }
