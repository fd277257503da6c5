"""A home driven only by Home Assistant entities, with a REAL edge controller: the owner
picks a battery's entities in the options (filtered by device class, units checked), the
integration relays their states, the home offers above its threshold, delivers a trade by
setting the owner's discharge entity (and sets the owner's value back after it), and its
values go stale once Home Assistant stops relaying. Input numbers and template sensors
stand in for the battery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_p2p.const import DOMAIN
from custom_components.energy_p2p.relay import allowed

from .edge import until
from .ha_source import BATTERY, HaSourceHome, register, start_home, trade_power_w, wait_for

pytestmark = pytest.mark.usefixtures("socket_enabled")

SOC, POWER, SETTING = "sensor.battery_soc", "sensor.battery_power", "input_number.discharge"


@pytest.fixture
def ha_house(tmp_path: Path) -> Iterator[HaSourceHome]:
    home = start_home(tmp_path)
    try:
        yield home
    finally:
        home.stop()


async def battery_entities(hass: HomeAssistant) -> None:
    """A battery as input numbers (state of charge, discharge setting) and template sensors
    with the device classes and units real integrations give."""
    assert await async_setup_component(
        hass,
        "input_number",
        {
            "input_number": {
                "soc": {"min": 0, "max": 100, "initial": 90, "unit_of_measurement": "%"},
                "discharge": {"min": 0, "max": 5000, "initial": 250, "unit_of_measurement": "W"},
                "volts": {"min": 0, "max": 500, "initial": 230, "unit_of_measurement": "V"},
            }
        },
    )
    assert await async_setup_component(
        hass,
        "template",
        {
            "template": [
                {
                    "sensor": [
                        {
                            "name": "Battery SoC",
                            "state": "{{ states('input_number.soc') }}",
                            "unit_of_measurement": "%",
                            "device_class": "battery",
                        },
                        {
                            "name": "Battery power",
                            "state": "{{ states('input_number.discharge') }}",
                            "unit_of_measurement": "W",
                            "device_class": "power",
                        },
                        {
                            "name": "Battery volts",
                            "state": "{{ states('input_number.volts') }}",
                            "unit_of_measurement": "V",
                            "device_class": "power",
                        },
                    ]
                }
            ]
        },
    )
    await hass.async_block_till_done()
    assert hass.states.get(SOC) is not None and hass.states.get(POWER) is not None


def fields_of(result: Any) -> set[str]:
    return {str(key) for key in result["data_schema"].schema}


async def test_a_home_driven_by_home_assistant_entities_sells_delivers_and_stops(
    hass: HomeAssistant, ha_house: HaSourceHome
) -> None:
    await battery_entities(hass)
    await register(ha_house)
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=ha_house.home.account,
        title="HA House",
        data=ha_house.home.entry_data(),
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await until(hass, lambda: entry.runtime_data.coordinator.stream_connected)

    # The owner picks the battery's entities in the options: "devices" in its menu.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.MENU and result["step_id"] == "init"
    assert result["menu_options"] == ["market", "devices"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "devices"}
    )
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "ha_device"
    assert result["description_placeholders"]["device"] == "battery"
    assert {"soc_percent", "battery_power_w", "battery_setpoint", "capacity_wh"} <= fields_of(
        result
    )
    # A power entity in volts is named on its field.
    picked = {
        "soc_percent": SOC,
        "battery_power_w": "sensor.battery_volts",
        "battery_setpoint": SETTING,
    }
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**picked, "discharge_positive": True, "capacity_wh": 10_000}
    )
    assert result["errors"] == {"battery_power_w": "wrong_unit"}
    picked["battery_power_w"] = POWER
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**picked, "discharge_positive": True, "capacity_wh": 10_000}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {}
    mapping = await ha_house.call("GET", "homeassistant/entities")
    assert mapping["devices"][0]["entities"] == {"soc_percent": SOC, "battery_power_w": POWER}
    assert set(mapping["watched"]) == {SOC, POWER, SETTING}

    # The relayed state of charge (90 %) is above the 60 % threshold: an offer.
    async def offered() -> Any:
        offers = (await ha_house.call("GET", "offers?mine=1"))["offers"]
        return next((o for o in offers if o["resource"] == BATTERY), None)

    try:
        offer = await wait_for(offered, within=40)
    except TimeoutError:
        print((ha_house.folder / "edge.log").read_text()[-4000:])
        print(await ha_house.call("GET", "devices"))
        raise
    devices = (await ha_house.call("GET", "devices"))["devices"]
    assert devices[0]["soc_percent"]["value"] == 90 and devices[0]["soc_percent"]["fresh"]
    assert devices[0]["battery_power_w"]["value"] == -250  # 250 W discharging, as the entity says

    # A neighbour buys it all: during the window the discharge entity is set for the trade.
    acceptance = ha_house.signed(
        ha_house.buyer, kind="acceptance", offer=offer["id"], quantity=offer["quantity"]
    )
    await ha_house.call("POST", "records", acceptance)
    power = trade_power_w(offer)
    await until(hass, lambda: float(hass.states.get(SETTING).state) == power, within=30)
    # After the window the owner's 250 W is set back, not 0 W.
    await until(hass, lambda: float(hass.states.get(SETTING).state) == 250, within=40)

    # Home Assistant goes away: nothing is relayed, the values go stale, nothing is sold.
    assert await hass.config_entries.async_unload(entry.entry_id)

    async def stale() -> Any:
        view = (await ha_house.call("GET", "devices"))["devices"][0]
        return not view["soc_percent"]["fresh"] and "relay" in view["problems"]

    await wait_for(stale, within=30)


def test_only_the_owner_s_entities_and_value_setting_services_are_called() -> None:
    commanded = {SETTING, "script.battery_boost"}
    call = {"service": "input_number.set_value", "data": {"entity_id": SETTING, "value": 5}}
    assert allowed(call, commanded) is None
    assert "not a service" in str(
        allowed({"service": "lock.unlock", "data": {"entity_id": "lock.front"}}, commanded)
    )
    assert "not an entity picked" in str(
        allowed(
            {"service": "number.set_value", "data": {"entity_id": "number.x", "value": 1}},
            commanded,
        )
    )
    assert "does not act on" in str(
        allowed(
            {"service": "number.set_value", "data": {"entity_id": SETTING, "value": 1}}, commanded
        )
    )
    assert "fields" in str(
        allowed(
            {"service": "input_number.set_value", "data": {"entity_id": SETTING, "x": 1}}, commanded
        )
    )
    assert allowed({"service": "script.battery_boost", "data": {"value": 1}}, commanded) is None
    assert allowed({"service": 3, "data": []}, commanded) == "malformed service call"
