"""Switches: auto-sell and auto-buy write the REAL edge controller's policy; a USB port is
opened and closed; the edge controller's refusals become translated errors."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.components.switch import DOMAIN as SWITCH_DOMAIN
from homeassistant.const import (
    ATTR_ENTITY_ID,
    SERVICE_TURN_OFF,
    SERVICE_TURN_ON,
    STATE_OFF,
    STATE_ON,
    Platform,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import snapshot_platform
from syrupy.assertion import SnapshotAssertion

from .edge import EdgeHome, FakeEdge, until
from .entity_support import demo_entry, fake_entry, policy_of, state_of, with_site_and_usb

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def turn(hass: HomeAssistant, entity_id: str, on: bool) -> None:
    await hass.services.async_call(
        SWITCH_DOMAIN,
        SERVICE_TURN_ON if on else SERVICE_TURN_OFF,
        {ATTR_ENTITY_ID: entity_id},
        blocking=True,
    )


async def test_switches_snapshot(
    hass: HomeAssistant,
    fake_edge: FakeEdge,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.SWITCH]) as entry:
        await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


async def test_auto_buy_and_auto_sell_change_a_real_edge_controllers_policy(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[0]  # Sunny House sells automatically and buys only by hand
    before = await policy_of(home)
    assert (before["sell"]["auto_sell"], before["buy"]["auto_accept"]) == (True, False)
    async with demo_entry(hass, home, [Platform.SWITCH]):
        try:
            await turn(hass, "switch.sunny_house_buy_automatically", True)
            assert state_of(hass, "switch.sunny_house_buy_automatically") == STATE_ON
            await turn(hass, "switch.sunny_house_sell_automatically", False)
            assert state_of(hass, "switch.sunny_house_sell_automatically") == STATE_OFF
            changed = await policy_of(home)
            assert changed["buy"]["auto_accept"] is True
            assert changed["sell"]["auto_sell"] is False
            # Only those two fields changed: the rest of the document was written back.
            changed["buy"]["auto_accept"], changed["sell"]["auto_sell"] = False, True
            assert changed == before
        finally:
            await turn(hass, "switch.sunny_house_buy_automatically", False)
            await turn(hass, "switch.sunny_house_sell_automatically", True)
        assert await policy_of(home) == before


async def test_a_usb_port_is_opened_and_closed(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.SWITCH]):
        entity_id = "switch.flat_3_usb_port_2_open_for_charging"
        assert state_of(hass, entity_id) == STATE_OFF
        await turn(hass, entity_id, True)
        assert state_of(hass, entity_id) == STATE_ON
        await turn(hass, "switch.flat_3_usb_port_1_open_for_charging", False)
        assert state_of(hass, "switch.flat_3_usb_port_1_open_for_charging") == STATE_OFF
        assert [b for b in fake_edge.bodies if b[0].startswith("PUT usb")] == [
            ("PUT usb/2", {"enabled": True}),
            ("PUT usb/1", {"enabled": False}),
        ]


@pytest.mark.parametrize(
    ("status", "body", "error", "key"),
    [
        (
            422,
            {"error": {"code": "invalid_policy", "message": "sell.pv: wrong"}},
            ServiceValidationError,
            "invalid_policy",
        ),
        (409, {"error": {"code": "busy", "message": "later"}}, ServiceValidationError, "refused"),
        (
            401,
            {"error": {"code": "unauthorized", "message": "no"}},
            HomeAssistantError,
            "invalid_auth",
        ),
    ],
)
async def test_a_refused_policy_write_is_a_translated_error_and_changes_nothing(
    hass: HomeAssistant,
    fake_edge: FakeEdge,
    status: int,
    body: Any,
    error: type[HomeAssistantError],
    key: str,
) -> None:
    async with fake_entry(hass, fake_edge, [Platform.SWITCH]):
        fake_edge.failures["policy"] = (status, body)
        with pytest.raises(error) as raised:
            await turn(hass, "switch.flat_3_sell_automatically", True)
        assert raised.value.translation_key == key
        assert state_of(hass, "switch.flat_3_sell_automatically") == STATE_OFF


async def test_an_unreachable_edge_controller_is_a_translated_error(
    hass: HomeAssistant, fake_edge: FakeEdge, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.SWITCH]) as entry:
        # Gone between the state shown and the switch pressed (nothing listens on port 1).
        client = entry.runtime_data.coordinator.client
        monkeypatch.setattr(client, "base_url", "http://127.0.0.1:1/api/v1")
        with pytest.raises(HomeAssistantError) as raised:
            await turn(hass, "switch.flat_3_usb_port_2_open_for_charging", True)
        assert raised.value.translation_key == "cannot_connect"
        await until(hass, lambda: True)
        assert state_of(hass, "switch.flat_3_usb_port_2_open_for_charging") == STATE_OFF
