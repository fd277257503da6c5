"""Live state under the running demo: what Home Assistant holds of every home (its offers
and trades, and the entities over them) agrees with what the home's API answers (`GET
offers`, `GET trades`) at every moment the test looks, from the event stream alone: the
periodic full re-read is switched off. Offers come, sell (partly or wholly), expire and go;
trades are made (at the price, or by counter-offer) and settle while the test watches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util

from custom_components.energy_p2p.coordinator import LIVE_OFFER_STATUSES

from .edge import EdgeHome
from .entity_support import demo_entry, state_of

pytestmark = pytest.mark.usefixtures("socket_enabled")

# How long the test watches the demo, and how often it looks.
WATCH_S = 60.0
LOOK_EVERY_S = 2.0
# An event reaches Home Assistant this soon after the change it announces (a look that
# catches a change in flight reads the API again until both sides settle).
SETTLE_S = 5.0


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in rows}


async def test_offers_and_trades_follow_the_api_at_every_look(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    async with (
        demo_entry(hass, edge_demo[0]) as sunny,
        demo_entry(hass, edge_demo[1]) as hydrogen,
        demo_entry(hass, edge_demo[2]) as flat,
    ):
        entries = {"sunny_house": sunny, "hydrogen_house": hydrogen, "flat_3": flat}
        seen: dict[str, set[str]] = {"offer": set(), "trade": set()}
        for entry in entries.values():
            coordinator = entry.runtime_data.coordinator
            # Events only: no full re-read may paper over a missed one.
            coordinator.update_interval = None
            coordinator.async_add_event_listener(
                lambda event, data, before: seen.get(event, set()).add(
                    f"{data.get('id')}:{data.get('status')}"
                )
            )

        async def disagreement(slug: str) -> str:
            """What differs between the coordinator, its entities and the API now; ''."""
            entry = entries[slug]
            coordinator = entry.runtime_data.coordinator
            client = entry.runtime_data.client
            offers, trades = await asyncio.gather(client.get_offers(), client.get_trades())
            held = coordinator.data
            shown = [o for o in held.offers if o.get("status") in LIVE_OFFER_STATUSES]
            if by_id(shown) != by_id(offers):
                return f"{slug} offers: held {by_id(shown)}, API {by_id(offers)}"
            if by_id(held.trades) != by_id(trades):
                return f"{slug} trades: held {by_id(held.trades)}, API {by_id(trades)}"
            open_now = sum(1 for o in offers if o["status"] == "open")
            if state_of(hass, f"sensor.{slug}_open_offers") != str(open_now):
                return f"{slug}: Open offers shows {state_of(hass, f'sensor.{slug}_open_offers')}"
            midnight = dt_util.start_of_local_day().timestamp() * 1000
            today = sum(1 for t in trades if t["time"] >= midnight)
            if state_of(hass, f"sensor.{slug}_trades_today") != str(today):
                return f"{slug}: Trades today shows {state_of(hass, f'sensor.{slug}_trades_today')}"
            return ""

        looks = 0
        end = time.monotonic() + WATCH_S
        while time.monotonic() < end:
            for slug in entries:
                settle_by = time.monotonic() + SETTLE_S
                while (differs := await disagreement(slug)) and time.monotonic() < settle_by:
                    await asyncio.sleep(0.2)
                    await hass.async_block_till_done()
                assert not differs, differs
            looks += 1
            await asyncio.sleep(LOOK_EVERY_S)
            await hass.async_block_till_done()

        # The demo did trade while the test looked: offers came and went, trades were made.
        assert looks >= 10
        statuses = {key.split(":")[1] for key in seen["offer"]}
        assert {"pending", "open"} <= statuses
        assert statuses & {"sold", "expired", "cancelled", "withdrawn"}, statuses
        assert seen["trade"], "no trade event in the demo while the test watched"
