"""Diagnostics show what the edge controller showed, never the API token, where the home
is, or who it trades with."""

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


async def test_diagnostics_of_a_real_edge_controller_redact_token_place_and_parties(
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

    dumped = json.dumps(diagnostics)
    assert home.token not in dumped
    # The other homes trade with this one and are its peers: none of them is named.
    for other in edge_demo:
        if other is not home:
            assert other.account not in dumped, other.name
    assert diagnostics["entry"]["data"] == {
        "host": "**REDACTED**",
        "port": home.port,
        "token": "**REDACTED**",
    }
    assert diagnostics["event_stream_connected"] is True
    assert diagnostics["last_update_success"] is True
    data = diagnostics["data"]
    assert data["status"]["node_id"] == home.account
    assert data["wallet"]["currency"] == "DEMO"
    assert {"devices", "offers", "trades", "settlements", "market", "policy"} <= data.keys()
    resources = [d["resource"] for d in data["devices"] if d.get("resource")]
    assert resources
    assert all(r["location"] in (None, "**REDACTED**") for r in resources)
    assert all(r["owner"] == "**REDACTED**" for r in resources)
    assert await hass.config_entries.async_unload(entry.entry_id)
