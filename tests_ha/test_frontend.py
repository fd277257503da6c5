"""The dashboard card ships with the integration: served, loaded on every page, once."""

from __future__ import annotations

import asyncio
import hashlib
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import yaml
from homeassistant.components.frontend import DATA_EXTRA_MODULE_URL
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    WebSocketGenerator,
)

from custom_components.energy_p2p.const import DOMAIN
from custom_components.energy_p2p.frontend import CARD_FILE, CARD_URL_PATH, DATA_CARD_URL

from .edge import EdgeHome

pytestmark = pytest.mark.usefixtures("socket_enabled")

DASHBOARD = Path(__file__).parent.parent / "dashboards" / "energy_p2p.yaml"


async def set_up_homes(hass: HomeAssistant, homes: list[EdgeHome]) -> list[MockConfigEntry]:
    entries = []
    for home in homes:
        entry = MockConfigEntry(
            domain=DOMAIN, unique_id=home.account, title=home.name, data=home.entry_data()
        )
        entry.add_to_hass(hass)
        entries.append(entry)
    # Setting the integration up sets up each of its entries, as at a start of Home Assistant.
    assert await async_setup_component(hass, DOMAIN, {})
    await hass.async_block_till_done()
    assert all(entry.state is ConfigEntryState.LOADED for entry in entries)
    return entries


def card_urls(hass: HomeAssistant) -> list[str]:
    """The card's URLs among the modules every frontend page loads."""
    return [url for url in hass.data[DATA_EXTRA_MODULE_URL].urls if CARD_URL_PATH in url]


async def test_the_card_module_is_served_with_long_caching(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, edge_demo: list[EdgeHome]
) -> None:
    await set_up_homes(hass, edge_demo[2:])
    client = await hass_client()

    response = await client.get(CARD_URL_PATH)

    assert response.status == HTTPStatus.OK
    assert "javascript" in response.headers["Content-Type"]
    # Cached for long: the URL the frontend loads changes with the content.
    assert "max-age" in response.headers["Cache-Control"]
    body = await response.read()
    assert body == CARD_FILE.read_bytes()
    assert b"customElements.define(CARD_TYPE, EnergyP2PCard)" in body


async def test_the_card_is_added_to_every_page_once_with_two_homes(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, edge_demo: list[EdgeHome]
) -> None:
    assert await async_setup_component(hass, "frontend", {})
    await set_up_homes(hass, edge_demo[:2])

    version = hashlib.sha256(CARD_FILE.read_bytes()).hexdigest()[:12]
    assert card_urls(hass) == [f"{CARD_URL_PATH}?v={version}"]
    assert hass.data[DATA_CARD_URL] == f"{CARD_URL_PATH}?v={version}"
    # The URL the frontend loads is served too (the query only defeats stale caches).
    client = await hass_client()
    response = await client.get(card_urls(hass)[0])
    assert response.status == HTTPStatus.OK


async def test_unloading_and_reloading_homes_keeps_the_card_served_once(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    hass_ws_client: WebSocketGenerator,
    edge_demo: list[EdgeHome],
) -> None:
    assert await async_setup_component(hass, "frontend", {})
    entries = await set_up_homes(hass, edge_demo[:2])

    for entry in entries:
        assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()

    client = await hass_client()
    assert (await client.get(CARD_URL_PATH)).status == HTTPStatus.OK
    assert len(card_urls(hass)) == 1
    # A card open meanwhile shows the homes as offline rather than failing.
    ws = await hass_ws_client(hass)
    await ws.send_json({"id": 1, "type": "energy_p2p/subscribe"})
    assert (await ws.receive_json())["success"]
    event = (await ws.receive_json())["event"]
    assert [(e["title"], e["online"], e["wallet"]) for e in event["entries"]] == [
        (edge_demo[0].name, False, None),
        (edge_demo[1].name, False, None),
    ]

    assert await hass.config_entries.async_setup(entries[0].entry_id)
    await hass.async_block_till_done()
    assert len(card_urls(hass)) == 1
    # ...and live again when the home is back.
    async with asyncio.timeout(20):
        while not (event := (await ws.receive_json())["event"])["entries"][0]["online"]:
            pass
    assert event["entries"][0]["node_id"] == edge_demo[0].account


def dashboard_entities(node: Any) -> set[str]:
    """Every entity id a dashboard configuration names."""
    if isinstance(node, dict):
        found = {node["entity"]} if isinstance(node.get("entity"), str) else set()
        return found.union(*(dashboard_entities(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(dashboard_entities(item) for item in node))
    return set()


async def test_the_ready_dashboard_names_entities_the_demo_homes_have(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    await set_up_homes(hass, edge_demo)
    dashboard = yaml.safe_load(DASHBOARD.read_text())

    entities = dashboard_entities(dashboard)
    assert len(entities) >= 20
    assert sorted(e for e in entities if hass.states.get(e) is None) == []
    homes = {
        card["home"]
        for view in dashboard["views"]
        for section in view["sections"]
        for card in section["cards"]
        if card["type"] == "custom:energy-p2p-card"
    }
    assert homes == {home.name for home in edge_demo}
