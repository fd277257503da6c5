"""Button: settle now asks the REAL edge controller to settle its due sales (`POST settle`);
a refusal is a translated error."""

from __future__ import annotations

import pytest
from homeassistant.components.button import DOMAIN as BUTTON_DOMAIN
from homeassistant.components.button import SERVICE_PRESS
from homeassistant.const import ATTR_ENTITY_ID, STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import snapshot_platform
from syrupy.assertion import SnapshotAssertion

from .edge import EdgeHome, FakeEdge
from .entity_support import demo_entry, fake_entry, state_of

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def press(hass: HomeAssistant, entity_id: str) -> None:
    await hass.services.async_call(
        BUTTON_DOMAIN, SERVICE_PRESS, {ATTR_ENTITY_ID: entity_id}, blocking=True
    )


async def test_button_snapshot(
    hass: HomeAssistant,
    fake_edge: FakeEdge,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    async with fake_entry(hass, fake_edge, [Platform.BUTTON]) as entry:
        await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


async def test_settle_now_on_a_real_edge_controller(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    async with demo_entry(hass, edge_demo[1], [Platform.BUTTON]):
        entity_id = "button.hydrogen_house_settle_now"
        assert state_of(hass, entity_id) == STATE_UNKNOWN
        await press(hass, entity_id)
        # A button's state is when it was last pressed: the edge controller took it.
        assert state_of(hass, entity_id) != STATE_UNKNOWN


async def test_a_refused_settlement_is_a_translated_error(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    async with fake_entry(hass, fake_edge, [Platform.BUTTON]):
        fake_edge.failures["settle"] = (500, {"error": {"code": "internal_error", "message": "x"}})
        with pytest.raises(HomeAssistantError) as raised:
            await press(hass, "button.flat_3_settle_now")
        assert raised.value.translation_key == "edge_error"
        assert raised.value.translation_placeholders == {"code": "internal_error", "message": "x"}
        del fake_edge.failures["settle"]
        await press(hass, "button.flat_3_settle_now")
        assert fake_edge.requests.count("POST settle") == 2
