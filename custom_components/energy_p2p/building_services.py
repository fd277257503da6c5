"""`energy_p2p.get_statement`: an owner's monthly statement, returned as response data
(JSON figures, the CSV text, or the printable PDF in base64)."""

from __future__ import annotations

import base64
from typing import Final

import probatio as vol
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.helpers import config_validation as cv

from .const import DOMAIN
from .entity import async_call_edge

SERVICE_GET_STATEMENT: Final = "get_statement"
FORMATS: Final = ("json", "csv", "pdf")

GET_STATEMENT_SCHEMA = vol.Schema(
    {
        vol.Required("config_entry_id"): cv.string,
        vol.Required("owner"): vol.All(cv.string, vol.Length(min=1, max=200)),
        vol.Required("month"): vol.All(cv.string, vol.Match(r"^\d{4}-\d{2}$")),
        vol.Optional("format", default="json"): vol.In(FORMATS),
    }
)


def async_setup_building_services(hass: HomeAssistant) -> None:
    """Register the statement action."""
    # Imported here: services.py imports this module, and loaded_entry lives there.
    from .services import loaded_entry  # noqa: PLC0415

    async def get_statement(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        client = entry.runtime_data.client
        owner, month, kind = call.data["owner"], call.data["month"], call.data["format"]
        if kind == "json":
            return await async_call_edge(entry, client.get_statement(owner, month))
        content = await async_call_edge(entry, client.get_statement_file(owner, month, kind))
        if kind == "csv":
            return {"owner": owner, "month": month, "csv": content.decode("utf-8")}
        return {"owner": owner, "month": month, "pdf_base64": base64.b64encode(content).decode()}

    hass.services.async_register(
        DOMAIN,
        SERVICE_GET_STATEMENT,
        get_statement,
        schema=GET_STATEMENT_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
