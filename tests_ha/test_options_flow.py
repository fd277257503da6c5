"""The options flow edits the edge controller's market policy: defaults read from the REAL
edge controller, written back on submit; the edge refusing shows its reason on the form;
an unreachable edge controller aborts or shows an error."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_p2p.const import DOMAIN

from .edge import RECORDED, EdgeHome, FakeEdge
from .entity_support import demo_entry, fake_entry, policy_of, restore_policy, with_site_and_usb

pytestmark = pytest.mark.usefixtures("socket_enabled")


def suggested(result: Any) -> dict[str, Any]:
    """The values the form shows: each field's suggested value."""
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


async def test_the_policy_of_a_real_edge_controller_is_shown_and_written(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[0]  # Sunny House: a battery, no PV rule... but a PV inverter
    before = await policy_of(home)
    async with demo_entry(hass, home) as entry:
        result = await hass.config_entries.options.async_init(entry.entry_id)
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "init"
        assert result["description_placeholders"]["currency"] == "DEMO"
        shown = suggested(result)
        assert shown == {
            "auto_sell": True,
            "auto_buy": False,
            "sell_threshold_soc": 80,
            "battery_reserve": 40,
            "min_sell_price": 0.26,
            "max_buy_price": 0.3,
        }
        # A PV inverter but no PV rule yet: the field is there, empty.
        assert "surplus_threshold" in {str(k) for k in result["data_schema"].schema}
        try:
            result = await hass.config_entries.options.async_configure(
                result["flow_id"],
                {**shown, "auto_buy": True, "max_buy_price": 0.35, "surplus_threshold": 1500},
            )
            assert result["type"] is FlowResultType.CREATE_ENTRY
            changed = await policy_of(home)
            assert changed["buy"]["auto_accept"] is True
            assert changed["buy"]["max_price"] == 350
            # A new PV rule: the threshold given, the default gap below it.
            assert changed["sell"]["pv"]["enable_surplus_w"] == 1500
            assert changed["sell"]["pv"]["disable_surplus_w"] == 1000
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
        # A reserve above where selling stops (75 %, 5 below the 80 % threshold).
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {**suggested(result), "battery_reserve": 90}
        )
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"base": "invalid_policy"}
        assert "reserve_percent" in result["description_placeholders"]["error"]
        # The form keeps what was typed.
        assert suggested(result)["battery_reserve"] == 90
    assert await policy_of(home) == before


async def test_a_consumer_sees_only_what_it_has(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    async with fake_entry(hass, fake_edge) as entry:
        result = await hass.config_entries.options.async_init(entry.entry_id)
        assert suggested(result) == {
            "auto_sell": False,
            "auto_buy": True,
            "min_sell_price": 0.25,
            "max_buy_price": 0.3,
        }
        result = await hass.config_entries.options.async_configure(
            result["flow_id"],
            {"auto_sell": False, "auto_buy": False, "min_sell_price": 0.3, "max_buy_price": 0.3},
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        written = fake_edge.responses["policy"]
        assert written["buy"]["auto_accept"] is False
        assert written["sell"]["pricing"] == {"kind": "fixed", "price": 300}
        assert written["sell"]["battery"] is None  # untouched


async def test_time_of_day_pricing_has_no_minimum_price_field(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    edge = with_site_and_usb(fake_edge)
    table = {"kind": "time_of_day", "ranges": [], "default_price": 250}
    edge.responses["policy"]["sell"]["pricing"] = table
    async with fake_entry(hass, edge) as entry:
        result = await hass.config_entries.options.async_init(entry.entry_id)
        fields = {str(k) for k in result["data_schema"].schema}
        assert "min_sell_price" not in fields
        assert {"sell_threshold_soc", "battery_reserve", "surplus_threshold"} <= fields
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {**suggested(result), "surplus_threshold": 2000}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert fake_edge.responses["policy"]["sell"]["pricing"] == table
        assert fake_edge.responses["policy"]["sell"]["pv"]["disable_surplus_w"] == 1500


async def test_cannot_connect_aborts_before_and_is_an_error_after_the_form(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    entry = MockConfigEntry(domain=DOMAIN, unique_id=fake_edge.node_id, data=fake_edge.entry_data())
    entry.add_to_hass(hass)  # not set up: the options flow reads the edge controller itself
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert entry.state is ConfigEntryState.NOT_LOADED
    fake_edge.failures["policy"] = (503, "down")  # the edge controller fails the write
    answer = {"auto_sell": True, "auto_buy": True, "min_sell_price": 0.25, "max_buy_price": 0.3}
    result = await hass.config_entries.options.async_configure(result["flow_id"], answer)
    assert result["errors"] == {"base": "refused"}
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
