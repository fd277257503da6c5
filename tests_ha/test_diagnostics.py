"""Diagnostics show what the edge controller showed, never the API token."""

from __future__ import annotations

import json

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.energy_p2p.const import DOMAIN

from .edge import EdgeHome, until

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def test_diagnostics_of_a_real_edge_controller_redact_the_token(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[1]
    assert await async_setup_component(hass, "diagnostics", {})
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id=home.account, title=home.name, data=home.entry_data()
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await until(hass, lambda: entry.runtime_data.coordinator.stream_connected)

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)

    assert home.token not in json.dumps(diagnostics)
    assert diagnostics["entry"]["data"] == {
        "host": home.host,
        "port": home.port,
        "token": "**REDACTED**",
    }
    assert diagnostics["event_stream_connected"] is True
    assert diagnostics["last_update_success"] is True
    data = diagnostics["data"]
    assert data["status"]["node_id"] == home.account
    assert data["wallet"]["currency"] == "DEMO"
    assert {"devices", "offers", "trades", "settlements", "market", "policy"} <= data.keys()
    assert await hass.config_entries.async_unload(entry.entry_id)
