"""What the options' device step and the relay do when things go wrong, on the stand-in
edge controller (whose answers a test sets): refused and failing service calls are
reported back, an edge controller refusing the entities shows its reason, a setting not in
W is named on its field, an unreachable one ends the flow with the policy written."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.setup import async_setup_component

from custom_components.energy_p2p.relay import RELAY_INTERVAL

from .edge import FakeEdge, until
from .entity_support import fake_entry

pytestmark = pytest.mark.usefixtures("socket_enabled")

SETTING = "input_number.discharge"
BATTERY = {
    "id": "battery",
    "role": "battery",
    "resource": "flat3/battery",
    "entities": {"soc_percent": "input_number.soc"},
    "commands": {
        "battery_setpoint_w": {
            "service": "input_number.set_value",
            "entity_id": SETTING,
            "value": 0,
        }
    },
    "watched": ["input_number.soc", SETTING],
}
PV = {
    "id": "roof",
    "role": "pv",
    "resource": "flat3/pv",
    "entities": {},
    "commands": {},
    "watched": [],
}


async def numbers(hass: HomeAssistant) -> None:
    assert await async_setup_component(
        hass,
        "input_number",
        {
            "input_number": {
                "soc": {"min": 0, "max": 100, "initial": 70, "unit_of_measurement": "%"},
                "discharge": {"min": 0, "max": 3000, "initial": 100, "unit_of_measurement": "W"},
                "kilowatts": {"min": 0, "max": 3, "initial": 1, "unit_of_measurement": "kW"},
            }
        },
    )


def relayed(fake_edge: FakeEdge) -> list[Any]:
    return [body for what, body in fake_edge.bodies if what == "POST homeassistant/states"]


async def test_the_relay_runs_only_the_owner_s_commands_and_reports_how_they_went(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    await numbers(hass)
    fake_edge.responses["homeassistant_entities"] = {
        "devices": [BATTERY],
        "watched": BATTERY["watched"],
    }
    commands = [
        {"device": "battery", "command": "battery_setpoint_w", "service": "input_number.set_value",
         "data": {"entity_id": SETTING, "value": 1200}},
        {"device": "battery", "command": "battery_release", "service": "lock.unlock",
         "data": {"entity_id": "lock.front_door"}},
        {"device": "battery", "command": "battery_setpoint_w", "service": "input_number.set_value",
         "data": {"entity_id": SETTING, "value": 99_999}},
    ]  # fmt: skip
    fake_edge.failures["homeassistant/states"] = (
        200,
        {"commands": commands, "watched": BATTERY["watched"]},
    )
    async with fake_entry(hass, fake_edge):
        await until(hass, lambda: hass.states.get(SETTING).state == "1200.0")
        await until(hass, lambda: any(b["results"] for b in relayed(fake_edge)))
        first = relayed(fake_edge)[0]
        assert {"entity_id": "input_number.soc", "state": "70.0", "unit": "%"} in first["states"]
        results = next(b["results"] for b in relayed(fake_edge) if b["results"])
        assert results[0] == {"device": "battery", "command": "battery_setpoint_w"}
        assert "lock.unlock is not a service" in results[1]["error"]
        assert results[2]["command"] == "battery_setpoint_w" and results[2]["error"]

        # The edge controller failing is retried on the next beat, not the end of the relay.
        fake_edge.failures["homeassistant/states"] = (
            500,
            {"error": {"code": "x", "message": "down"}},
        )
        count = len(relayed(fake_edge))
        await until(hass, lambda: len(relayed(fake_edge)) > count, within=3 * RELAY_INTERVAL)
        await fake_edge.stop()
        await fake_edge.start()
        fake_edge.failures["homeassistant/states"] = (200, {"commands": [], "watched": []})
        count = len(relayed(fake_edge))
        await until(hass, lambda: len(relayed(fake_edge)) > count, within=3 * RELAY_INTERVAL)


async def options_at_device_step(hass: HomeAssistant, entry_id: str) -> Any:
    result = await hass.config_entries.options.async_init(entry_id)
    if result["type"] is FlowResultType.MENU:
        # An edge controller with Home Assistant devices: the owner picks "devices".
        return await hass.config_entries.options.async_configure(
            result["flow_id"], {"next_step_id": "devices"}
        )
    values = {
        str(k): k.description["suggested_value"]
        for k in result["data_schema"].schema
        if k.description and "suggested_value" in k.description
    }
    return await hass.config_entries.options.async_configure(result["flow_id"], values)


async def test_the_device_steps_write_every_device_and_show_a_refusal(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    await numbers(hass)
    fake_edge.responses["homeassistant_entities"] = {"devices": [BATTERY, PV], "watched": []}
    async with fake_entry(hass, fake_edge) as entry:
        result = await options_at_device_step(hass, entry.entry_id)
        assert result["step_id"] == "ha_device"
        assert result["description_placeholders"]["device"] == "battery"
        shown = {
            str(k): k.description.get("suggested_value")
            for k in result["data_schema"].schema
            if k.description
        }
        assert shown["soc_percent"] == "input_number.soc" and shown["battery_setpoint"] == SETTING

        # A setting in kW cannot take the edge controller's watts.
        result = await hass.config_entries.options.async_configure(
            result["flow_id"],
            {"battery_setpoint": "input_number.kilowatts", "discharge_positive": False},
        )
        assert result["errors"] == {"battery_setpoint": "setpoint_unit"}
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {"battery_setpoint": SETTING, "discharge_positive": False}
        )
        assert result["step_id"] == "ha_device"
        assert result["description_placeholders"]["device"] == "roof"

        fake_edge.failures["homeassistant/entities"] = (
            422,
            {"error": {"code": "invalid_field", "message": "devices.roof: no such thing"}},
        )
        result = await hass.config_entries.options.async_configure(result["flow_id"], {})
        assert result["errors"] == {"base": "refused"}
        assert result["description_placeholders"]["error"] == "devices.roof: no such thing"

        await fake_edge.stop()
        result = await hass.config_entries.options.async_configure(result["flow_id"], {})
        assert result["errors"] == {"base": "cannot_connect"}
        await fake_edge.start()

        fake_edge.failures["homeassistant/entities"] = (200, {"devices": [], "watched": []})
        result = await hass.config_entries.options.async_configure(result["flow_id"], {})
        assert result["type"] is FlowResultType.CREATE_ENTRY
        written = [b for what, b in fake_edge.bodies if what == "PUT homeassistant/entities"][-1]
        assert written["devices"] == {
            "battery": {
                "entities": {},
                "commands": {
                    "battery_setpoint_w": {
                        "service": "input_number.set_value",
                        "entity_id": SETTING,
                        "scale": 1,
                    }
                },
            },
            "roof": {"entities": {}},
        }


async def test_an_edge_controller_without_home_assistant_devices_ends_at_the_policy(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    fake_edge.responses["homeassistant_entities"] = {"devices": [], "watched": []}
    async with fake_entry(hass, fake_edge) as entry:
        result = await options_at_device_step(hass, entry.entry_id)
        assert result["type"] is FlowResultType.CREATE_ENTRY
    fake_edge.failures["homeassistant/entities"] = (500, "broken")
    async with fake_entry(hass, fake_edge) as entry:
        result = await options_at_device_step(hass, entry.entry_id)
        assert result["type"] is FlowResultType.CREATE_ENTRY
