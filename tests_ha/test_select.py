"""Select: the pricing strategy; choosing another kind writes a starting document for it
from the price asked now, to the REAL edge controller."""

from __future__ import annotations

import pytest
from homeassistant.components.select import ATTR_OPTION, SERVICE_SELECT_OPTION
from homeassistant.components.select import DOMAIN as SELECT_DOMAIN
from homeassistant.const import ATTR_ENTITY_ID, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import snapshot_platform
from syrupy.assertion import SnapshotAssertion

from .edge import EdgeHome, FakeEdge, until
from .entity_support import demo_entry, fake_entry, policy_of, state_of, with_site_and_usb

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def select(hass: HomeAssistant, entity_id: str, option: str) -> None:
    await hass.services.async_call(
        SELECT_DOMAIN,
        SERVICE_SELECT_OPTION,
        {ATTR_ENTITY_ID: entity_id, ATTR_OPTION: option},
        blocking=True,
    )


async def test_select_snapshot(
    hass: HomeAssistant,
    fake_edge: FakeEdge,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.SELECT]) as entry:
        await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


async def test_switching_pricing_on_a_real_edge_controller(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[2]  # Flat 3 does not sell automatically: its pricing changes nothing
    before = await policy_of(home)
    assert before["sell"]["pricing"] == {"kind": "fixed", "price": 250}
    entity_id = "select.flat_3_pricing_strategy"
    async with demo_entry(hass, home, [Platform.SELECT]):
        assert state_of(hass, entity_id) == "fixed"
        try:
            await select(hass, entity_id, "demand")
            assert state_of(hass, entity_id) == "demand"
            assert (await policy_of(home))["sell"]["pricing"] == {
                "kind": "demand",
                "floor": 125,
                "ceiling": 500,
                "reference": 250,
            }
            await select(hass, entity_id, "time_of_day")
            # The price asked in ordinary hours, 20 % more in the evening.
            assert (await policy_of(home))["sell"]["pricing"] == {
                "kind": "time_of_day",
                "ranges": [{"start_hour": 17, "end_hour": 21, "price": 300}],
                "default_price": 250,
            }
            await select(hass, entity_id, "time_of_day")  # already: nothing changes
            assert state_of(hass, entity_id) == "time_of_day"
        finally:
            await select(hass, entity_id, "fixed")
        assert await policy_of(home) == before


async def test_a_pricing_without_a_price_starts_from_the_default(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    edge = with_site_and_usb(fake_edge)
    edge.responses["policy"]["sell"]["pricing"] = {"kind": "fixed"}  # the price left to default
    async with fake_entry(hass, edge, [Platform.SELECT]) as entry:
        await select(hass, "select.flat_3_pricing_strategy", "demand")
        pricing = entry.runtime_data.coordinator.data.policy["sell"]["pricing"]
        assert pricing == {"kind": "demand", "floor": 125, "ceiling": 500, "reference": 250}
        # An edge controller newer than this integration may price in other ways.
        await fake_edge.push("policy", {"sell": {"pricing": {"kind": "auction"}}})
        await until(hass, lambda: state_of(hass, "select.flat_3_pricing_strategy") == "unknown")
