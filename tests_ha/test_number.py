"""Numbers: thresholds and prices written to the REAL edge controller's policy (keeping the
hysteresis gap); prices in currency units; pricing without a single minimum; refusals."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.components.number import ATTR_VALUE, SERVICE_SET_VALUE
from homeassistant.components.number import DOMAIN as NUMBER_DOMAIN
from homeassistant.const import ATTR_ENTITY_ID, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import snapshot_platform
from syrupy.assertion import SnapshotAssertion

from .edge import RECORDED, EdgeHome, FakeEdge
from .entity_support import (
    attributes_of,
    demo_entry,
    fake_entry,
    policy_of,
    state_of,
    with_site_and_usb,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def set_value(hass: HomeAssistant, entity_id: str, value: float) -> None:
    await hass.services.async_call(
        NUMBER_DOMAIN,
        SERVICE_SET_VALUE,
        {ATTR_ENTITY_ID: entity_id, ATTR_VALUE: value},
        blocking=True,
    )


async def test_numbers_snapshot(
    hass: HomeAssistant,
    fake_edge: FakeEdge,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.NUMBER]) as entry:
        await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


async def test_a_consumer_has_only_the_prices(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    # The recorded Flat 3 has no battery and no PV, and its policy no rule for them.
    async with fake_entry(hass, fake_edge, [Platform.NUMBER]):
        assert hass.states.async_entity_ids(NUMBER_DOMAIN) == [
            "number.flat_3_minimum_sell_price",
            "number.flat_3_maximum_buy_price",
            "number.flat_3_price_ceiling",
            "number.flat_3_spending_limit_per_trade",
            "number.flat_3_spending_limit_per_day",
        ]
        assert state_of(hass, "number.flat_3_minimum_sell_price") == "0.25"
        assert attributes_of(hass, "number.flat_3_maximum_buy_price")["unit_of_measurement"] == (
            "DEMO/kWh"
        )


async def test_thresholds_and_prices_change_a_real_edge_controllers_policy(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[0]  # Sunny House: sells battery energy above 80 %, stops below 75 %
    before = await policy_of(home)
    battery = before["sell"]["battery"]
    assert (battery["enable_soc_percent"], battery["disable_soc_percent"]) == (80, 75)
    async with demo_entry(hass, home, [Platform.NUMBER]):
        assert state_of(hass, "number.sunny_house_sell_above_state_of_charge") == "80"
        assert state_of(hass, "number.sunny_house_minimum_sell_price") == "0.26"
        try:
            await set_value(hass, "number.sunny_house_sell_above_state_of_charge", 90)
            await set_value(hass, "number.sunny_house_battery_reserve", 50)
            await set_value(hass, "number.sunny_house_minimum_sell_price", 0.275)
            await set_value(hass, "number.sunny_house_maximum_buy_price", 0.4)
            changed = await policy_of(home)
            # The same 5-point gap below the new threshold.
            assert changed["sell"]["battery"] == {
                **battery,
                "enable_soc_percent": 90,
                "disable_soc_percent": 85,
                "reserve_percent": 50,
            }
            assert changed["sell"]["pricing"] == {"kind": "fixed", "price": 275}
            assert changed["buy"]["max_price"] == 400
            assert state_of(hass, "number.sunny_house_sell_above_state_of_charge") == "90"
            assert state_of(hass, "number.sunny_house_minimum_sell_price") == "0.275"

            # A reserve above where selling stops: the edge controller says why it refuses.
            with pytest.raises(ServiceValidationError) as raised:
                await set_value(hass, "number.sunny_house_battery_reserve", 95)
            assert raised.value.translation_key == "invalid_policy"
            assert "reserve_percent" in raised.value.translation_placeholders["message"]
            assert state_of(hass, "number.sunny_house_battery_reserve") == "50"
        finally:
            await set_value(hass, "number.sunny_house_battery_reserve", 40)
            await set_value(hass, "number.sunny_house_sell_above_state_of_charge", 80)
            await set_value(hass, "number.sunny_house_minimum_sell_price", 0.26)
            await set_value(hass, "number.sunny_house_maximum_buy_price", 0.3)
        assert await policy_of(home) == before


def with_pricing(fake_edge: FakeEdge, pricing: dict[str, Any]) -> FakeEdge:
    fake_edge.responses["policy"] = {
        **RECORDED["policy"],
        "sell": {**RECORDED["policy"]["sell"], "pricing": pricing},
    }
    return fake_edge


async def test_the_minimum_price_of_a_demand_price_is_its_floor(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    demand = {"kind": "demand", "floor": 100, "ceiling": 500, "reference": 250}
    async with fake_entry(hass, with_pricing(fake_edge, demand), [Platform.NUMBER]) as entry:
        assert state_of(hass, "number.flat_3_minimum_sell_price") == "0.1"
        await set_value(hass, "number.flat_3_minimum_sell_price", 0.3)
        # Still valid: the reference (and the ceiling) never below the floor.
        pricing = entry.runtime_data.coordinator.data.policy["sell"]["pricing"]
        assert pricing == {"kind": "demand", "floor": 300, "ceiling": 500, "reference": 300}
        await set_value(hass, "number.flat_3_minimum_sell_price", 0.8)
        pricing = entry.runtime_data.coordinator.data.policy["sell"]["pricing"]
        assert pricing == {"kind": "demand", "floor": 800, "ceiling": 800, "reference": 800}


async def test_a_time_of_day_price_has_no_single_minimum(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    table = {"kind": "time_of_day", "ranges": [], "default_price": 250}
    async with fake_entry(hass, with_pricing(fake_edge, table), [Platform.NUMBER]):
        assert state_of(hass, "number.flat_3_minimum_sell_price") == "unknown"
        with pytest.raises(ServiceValidationError) as raised:
            await set_value(hass, "number.flat_3_minimum_sell_price", 0.3)
        assert raised.value.translation_key == "no_single_price"
        assert not [b for b in fake_edge.bodies if b[0] == "PUT policy"]


async def test_spending_limits_are_shown_and_change_a_real_edge_controllers_policy(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[1]
    before = await policy_of(home)
    limits = before["limits"]
    async with demo_entry(hass, home, [Platform.NUMBER]):
        slug = home.name.lower().replace(" ", "_")
        ceiling = f"number.{slug}_price_ceiling"
        per_trade = f"number.{slug}_spending_limit_per_trade"
        per_day = f"number.{slug}_spending_limit_per_day"
        assert state_of(hass, ceiling) == str(limits["price_ceiling"] / 1000)
        assert attributes_of(hass, ceiling)["unit_of_measurement"] == "DEMO/kWh"
        assert attributes_of(hass, per_trade)["unit_of_measurement"] == "DEMO"
        try:
            await set_value(hass, ceiling, 0.5)
            await set_value(hass, per_trade, 20)
            await set_value(hass, per_day, 60)
            changed = await policy_of(home)
            assert changed["limits"] == {
                "price_ceiling": 500,
                "max_trade_cost": 20_000,
                "max_daily_cost": 60_000,
            }
            assert state_of(hass, per_day) == "60.0"

            # More per trade than per day: the edge controller says why it refuses.
            with pytest.raises(ServiceValidationError) as raised:
                await set_value(hass, per_trade, 100)
            assert "max_trade_cost" in raised.value.translation_placeholders["message"]
            # Automatic buying may not pay more than the ceiling either.
            with pytest.raises(ServiceValidationError) as raised:
                await set_value(hass, f"number.{slug}_maximum_buy_price", 0.6)
            assert "price_ceiling" in raised.value.translation_placeholders["message"]
            assert (await policy_of(home))["limits"]["max_trade_cost"] == 20_000
        finally:
            await set_value(hass, per_day, limits["max_daily_cost"] / 1000)
            await set_value(hass, per_trade, limits["max_trade_cost"] / 1000)
            await set_value(hass, ceiling, limits["price_ceiling"] / 1000)
        assert (await policy_of(home))["limits"] == limits
