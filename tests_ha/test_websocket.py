"""The card's data: `energy_p2p/subscribe` sends every home at once and on each change."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.energy_p2p.const import DOMAIN

from .edge import EdgeHome, FakeEdge

pytestmark = pytest.mark.usefixtures("socket_enabled")

# What the card's browser test feeds the card (tests/card/): the real command must send
# the same fields, or that test proves nothing about the card in Home Assistant.
CARD_PAYLOAD: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "tests" / "card" / "payload.json").read_text()
)


async def set_up(hass: HomeAssistant, title: str, data: dict[str, Any]) -> MockConfigEntry:
    entry = MockConfigEntry(domain=DOMAIN, unique_id=title, title=title, data=data)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    return entry


class CardClient:
    """A frontend's WebSocket subscribed as the card subscribes."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 1

    async def subscribe(self, **options: Any) -> dict[str, Any]:
        """Subscribe; the command's result (success or error)."""
        self.sub_id = self.next_id
        self.next_id += 1
        await self.ws.send_json({"id": self.sub_id, "type": f"{DOMAIN}/subscribe", **options})
        result: dict[str, Any] = await self.ws.receive_json()
        assert result["id"] == self.sub_id
        return result

    async def payload(self) -> dict[str, Any]:
        """The next payload pushed."""
        async with asyncio.timeout(10):
            message = await self.ws.receive_json()
        assert message["id"] == self.sub_id
        assert message["type"] == "event"
        data: dict[str, Any] = message["event"]
        return data

    async def unsubscribe(self) -> None:
        await self.ws.send_json(
            {"id": self.next_id, "type": "unsubscribe_events", "subscription": self.sub_id}
        )
        self.next_id += 1
        assert (await self.ws.receive_json())["success"]


async def test_subscribing_sends_every_home_of_a_real_edge_controller(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator, edge_demo: list[EdgeHome]
) -> None:
    sunny, _, flat = edge_demo
    await set_up(hass, sunny.name, sunny.entry_data())
    await set_up(hass, flat.name, flat.entry_data())
    card = CardClient(await hass_ws_client(hass))

    assert (await card.subscribe())["success"]
    payload = await card.payload()

    entries = payload["entries"]
    assert [(e["title"], e["node_id"], e["online"]) for e in entries] == [
        (sunny.name, sunny.account, True),
        (flat.name, flat.account, True),
    ]
    expected_fields = CARD_PAYLOAD["entries"][0].keys()
    for entry in entries:
        assert entry.keys() == expected_fields
        assert entry["currency"] == "DEMO"
        # As the API gives them: integer milli-units and Wh.
        assert isinstance(entry["wallet"]["balance"], int)
        assert entry["wallet"]["account"] == entry["node_id"]
        assert isinstance(entry["market"]["history"], list)
        assert all(o["status"] in {"pending", "open"} for o in entry["offers"])
        assert len(entry["trades"]) <= 20
        times = [t["time"] for t in entry["trades"]]
        assert times == sorted(times, reverse=True)
        for field in ("wallet", "market"):
            assert entry[field].keys() >= CARD_PAYLOAD["entries"][0][field].keys() - {"_about"}


async def test_a_change_is_pushed_after_a_refresh_and_an_event(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator, fake_edge: FakeEdge
) -> None:
    entry = await set_up(hass, "Flat 3", fake_edge.entry_data())
    coordinator = entry.runtime_data.coordinator
    card = CardClient(await hass_ws_client(hass))
    assert (await card.subscribe(entry_id=entry.entry_id))["success"]
    assert (await card.payload())["entries"][0]["wallet"]["balance"] == 199985

    fake_edge.responses["wallet"]["balance"] = 150000
    await coordinator.async_refresh()
    assert (await card.payload())["entries"][0]["wallet"]["balance"] == 150000

    await fake_edge.push("wallet", {**fake_edge.responses["wallet"], "balance": 120000})
    assert (await card.payload())["entries"][0]["wallet"]["balance"] == 120000

    # Gone: offline, with the last data still there for the card to show.
    fake_edge.failures["status"] = (500, "down")
    await coordinator.async_refresh()
    offline = (await card.payload())["entries"][0]
    assert offline["online"] is False
    assert offline["wallet"]["balance"] == 120000


async def test_a_refresh_that_changes_nothing_sends_nothing(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator, fake_edge: FakeEdge
) -> None:
    entry = await set_up(hass, "Flat 3", fake_edge.entry_data())
    card = CardClient(await hass_ws_client(hass))
    assert (await card.subscribe())["success"]
    await card.payload()

    # Telemetry changes what the entities show, not what the card shows.
    await fake_edge.push("telemetry", {"devices": []})
    await entry.runtime_data.coordinator.async_refresh()
    fake_edge.responses["wallet"]["escrow"] = 25
    await entry.runtime_data.coordinator.async_refresh()

    assert (await card.payload())["entries"][0]["wallet"]["escrow"] == 25


async def test_a_reloaded_home_keeps_feeding_the_card_and_unsubscribing_stops_it(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator, fake_edge: FakeEdge
) -> None:
    entry = await set_up(hass, "Flat 3", fake_edge.entry_data())
    listeners_before = len(entry.runtime_data.coordinator._listeners)
    card = CardClient(await hass_ws_client(hass))
    assert (await card.subscribe())["success"]
    await card.payload()
    assert len(entry.runtime_data.coordinator._listeners) == listeners_before + 1

    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    fake_edge.responses["wallet"]["balance"] = 100
    await entry.runtime_data.coordinator.async_refresh()
    async with asyncio.timeout(10):
        while (await card.payload())["entries"][0]["wallet"] != fake_edge.responses["wallet"]:
            pass

    coordinator = entry.runtime_data.coordinator
    listeners = len(coordinator._listeners)
    await card.unsubscribe()
    assert len(coordinator._listeners) == listeners - 1


async def test_an_unknown_entry_is_refused(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator, fake_edge: FakeEdge
) -> None:
    await set_up(hass, "Flat 3", fake_edge.entry_data())
    other = MockConfigEntry(domain="sun", title="Sun")
    other.add_to_hass(hass)
    card = CardClient(await hass_ws_client(hass))

    for entry_id in ("01NOSUCHENTRY", other.entry_id):
        result = await card.subscribe(entry_id=entry_id)
        assert not result["success"]
        assert result["error"]["code"] == "not_found"
        assert entry_id in result["error"]["message"]
