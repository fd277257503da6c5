"""The options flow: a menu of steps (one today, so it opens at once). The market step edits
what no entity controls (offer validity, time between offers, answering requests,
confirming counter-offers), read from the REAL edge controller and written back field by
field into the policy as it is when the form is submitted: nothing an entity or anyone
else changed meanwhile is overwritten, and nothing is kept in Home Assistant."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_p2p.const import DOMAIN

from .edge import RECORDED, EdgeHome, FakeEdge
from .entity_support import demo_entry, fake_entry, policy_of, restore_policy

pytestmark = pytest.mark.usefixtures("socket_enabled")

# What the entities under Controls already set: never a field of the options flow.
ENTITY_FIELDS = {
    "auto_sell",
    "auto_buy",
    "sell_threshold_soc",
    "battery_reserve",
    "surplus_threshold",
    "min_sell_price",
    "max_buy_price",
}


def suggested(result: Any) -> dict[str, Any]:
    """The values the form shows: each field's suggested value."""
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


async def test_the_market_options_of_a_real_edge_controller_are_shown_and_written(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[0]  # Sunny House
    before = await policy_of(home)
    async with demo_entry(hass, home) as entry:
        result = await hass.config_entries.options.async_init(entry.entry_id)
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "market"
        shown = suggested(result)
        assert shown == {
            "offer_validity": before["sell"]["offer_validity_ms"] / 60_000,
            "offer_interval": before["sell"]["min_offer_interval_ms"] / 60_000,
            "answer_requests": before["sell"]["answer_requests"],
            "min_counter": before["sell"]["min_counter_permille"] / 10,
        }
        assert not ENTITY_FIELDS & {str(k) for k in result["data_schema"].schema}
        try:
            # Meanwhile an entity (or anyone) changes the policy: that change is kept.
            await entry.runtime_data.client.set_policy(
                {**before, "buy": {**before["buy"], "max_price": 333}}
            )
            result = await hass.config_entries.options.async_configure(
                result["flow_id"], {**shown, "min_counter": 95.0, "answer_requests": False}
            )
            assert result["type"] is FlowResultType.CREATE_ENTRY
            changed = await policy_of(home)
            assert changed["sell"]["min_counter_permille"] == 950
            assert changed["sell"]["answer_requests"] is False
            assert changed["buy"]["max_price"] == 333
            # Fields left as shown are written as the policy has them, unconverted.
            assert changed["sell"]["offer_validity_ms"] == before["sell"]["offer_validity_ms"]
            assert entry.runtime_data.coordinator.data.policy == changed
            # Nothing is kept in Home Assistant: the edge controller is the source of truth.
            assert entry.options == {}
        finally:
            await restore_policy(home, before)
        assert await policy_of(home) == before


async def test_the_edge_controller_refusing_shows_its_reason(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[0]
    before = await policy_of(home)
    async with demo_entry(hass, home) as entry:
        result = await hass.config_entries.options.async_init(entry.entry_id)
        # An offer valid for longer than its delivery window.
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {**suggested(result), "offer_validity": 24 * 60}
        )
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"base": "invalid_policy"}
        assert "offer_validity_ms" in result["description_placeholders"]["error"]
        # The form keeps what was typed.
        assert suggested(result)["offer_validity"] == 24 * 60
    assert await policy_of(home) == before


async def test_a_menu_lists_the_steps_once_there_are_several(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    # An edge controller with a device that reads Home Assistant entities: two steps.
    fake_edge.responses["homeassistant_entities"] = {
        "devices": [{"id": "battery", "role": "battery", "entities": {}}],
        "watched": [],
    }
    async with fake_entry(hass, fake_edge) as entry:
        result = await hass.config_entries.options.async_init(entry.entry_id)
        assert result["type"] is FlowResultType.MENU
        assert result["menu_options"] == ["market", "devices"]
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {"next_step_id": "market"}
        )
        assert result["step_id"] == "market"


async def test_cannot_connect_aborts_before_and_is_an_error_after_the_form(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    entry = MockConfigEntry(domain=DOMAIN, unique_id=fake_edge.node_id, data=fake_edge.entry_data())
    entry.add_to_hass(hass)  # not set up: the options flow reads the edge controller itself
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert entry.state is ConfigEntryState.NOT_LOADED
    answer = {**suggested(result), "offer_interval": 2.5}
    fake_edge.failures["PUT policy"] = (503, "down")  # the edge controller fails the write
    result = await hass.config_entries.options.async_configure(result["flow_id"], answer)
    assert result["errors"] == {"base": "refused"}
    fake_edge.failures.clear()
    result = await hass.config_entries.options.async_configure(result["flow_id"], answer)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert fake_edge.responses["policy"]["sell"]["min_offer_interval_ms"] == 150_000

    result = await hass.config_entries.options.async_init(entry.entry_id)
    await fake_edge.stop()
    result = await hass.config_entries.options.async_configure(result["flow_id"], answer)
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result == {**result, "type": FlowResultType.ABORT, "reason": "cannot_connect"}


async def test_a_refused_token_aborts(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    data = fake_edge.entry_data(token="wrong")
    entry = MockConfigEntry(domain=DOMAIN, unique_id=fake_edge.node_id, data=data)
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_auth"
    assert RECORDED["policy"] == fake_edge.responses["policy"]
