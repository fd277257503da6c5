"""The market figures follow the edge controller's `market` event, pushed after every
block: a trade shows in the market as soon as a block makes it, not at the next resync."""

from __future__ import annotations

import pytest
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant

from .edge import RECORDED, FakeEdge, until
from .entity_support import fake_entry, state_of

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def test_a_market_event_updates_price_and_volume_at_once(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    async with fake_entry(hass, fake_edge, [Platform.SENSOR]):
        assert state_of(hass, "sensor.flat_3_market_volume") == "50"
        market = {
            **RECORDED["market"],
            "trades": 2,
            "volume_wh": 1_050,
            "last_price": 250,
            "average_price": 252,
        }
        await fake_edge.push("market", market)
        await until(hass, lambda: state_of(hass, "sensor.flat_3_market_volume") == "1050")
        assert state_of(hass, "sensor.flat_3_market_last_price") == "0.25"
        assert state_of(hass, "sensor.flat_3_market_average_price") == "0.252"
