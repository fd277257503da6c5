"""The seller's answer to a buyer's counter-offer: the `answer_counter_offer` action.

A home whose policy asks its owner (`sell.counter_offers: ask`) shows the counter-offers
waiting on its offers (the offer's `counter_offers`, in the card with Confirm and Decline);
this action confirms one (a trade at the buyer's price) or declines it (docs/api.md).
"""

from __future__ import annotations

from typing import Final

import probatio as vol
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.helpers import config_validation as cv

from .const import DOMAIN
from .entity import async_call_edge
from .services import ATTR_CONFIG_ENTRY_ID, loaded_entry

SERVICE_ANSWER_COUNTER_OFFER: Final = "answer_counter_offer"
ANSWERS: Final = ("confirm", "decline")

ANSWER_COUNTER_OFFER_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Required("counter_offer_id"): vol.All(cv.string, vol.Length(min=1, max=200)),
        vol.Required("answer"): vol.In(ANSWERS),
        vol.Optional("reason"): vol.All(cv.string, vol.Length(max=200)),
    }
)


def async_setup_counter_offer_services(hass: HomeAssistant) -> None:
    """Register the action (once, with the integration's other actions)."""

    async def answer_counter_offer(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        client = entry.runtime_data.client
        counter_id = call.data["counter_offer_id"]
        if call.data["answer"] == "confirm":
            return await async_call_edge(entry, client.confirm_counter_offer(counter_id))
        return await async_call_edge(
            entry, client.decline_counter_offer(counter_id, call.data.get("reason"))
        )

    hass.services.async_register(
        DOMAIN,
        SERVICE_ANSWER_COUNTER_OFFER,
        answer_counter_offer,
        schema=ANSWER_COUNTER_OFFER_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
