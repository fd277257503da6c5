"""The automation blueprints in blueprints/automation/energy_p2p/: each one loads in Home
Assistant's blueprint loader, and each runs end to end (a sensor changes, the action
reaches the edge controller: the REAL demo, or the fake one where the condition must be
made on demand; only notify and switch actions, which belong to other integrations, are
stand-ins registered by the test)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components.automation.config import (
    AUTOMATION_BLUEPRINT_SCHEMA,
    async_validate_config_item,
)
from homeassistant.components.blueprint import models
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from homeassistant.util.yaml import load_yaml_dict
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_mock_service

from custom_components.energy_p2p.const import DOMAIN

from .edge import CHECKOUT, EdgeHome, FakeEdge, until

pytestmark = pytest.mark.usefixtures("socket_enabled")

BLUEPRINTS = CHECKOUT / "blueprints" / "automation" / "energy_p2p"
NAMES = sorted(p.name for p in BLUEPRINTS.glob("*.yaml"))


@pytest.fixture(autouse=True)
async def blueprints_in_config(hass: HomeAssistant, tmp_path: Path) -> AsyncIterator[None]:
    """A configuration directory holding the blueprints as a user's would after importing.

    Afterwards the automations are turned off: their time triggers must not outlive the test."""
    hass.config.config_dir = str(tmp_path)
    shutil.copytree(BLUEPRINTS, tmp_path / "blueprints" / "automation" / "energy_p2p")
    yield
    if hass.services.has_service("automation", "turn_off"):
        await hass.services.async_call(
            "automation", "turn_off", {"entity_id": "all"}, blocking=True
        )


async def polled(condition: Callable[[], bool], within: float = 10) -> None:
    """Wait for `condition()` without waiting for Home Assistant to be idle."""
    for _ in range(int(within / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    assert condition()


def use(name: str, **inputs: Any) -> dict[str, Any]:
    return {"use_blueprint": {"path": f"energy_p2p/{name}", "input": inputs}}


async def automate(hass: HomeAssistant, *automations: dict[str, Any]) -> None:
    configs = [{"id": str(i), **a} for i, a in enumerate(automations)]
    assert await async_setup_component(hass, "automation", {"automation": configs})
    await hass.async_block_till_done()
    automation_states = hass.states.async_all("automation")
    assert len(automation_states) == len(configs)
    assert all(s.state == "on" for s in automation_states), automation_states


async def set_up(hass: HomeAssistant, unique_id: str, data: dict[str, Any]) -> MockConfigEntry:
    entry = MockConfigEntry(domain=DOMAIN, unique_id=unique_id, title="Flat 3", data=data)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def test_there_are_the_five_blueprints() -> None:
    assert NAMES == [
        "buy_below_price.yaml",
        "notify_trades.yaml",
        "prepaid_cut_off.yaml",
        "sell_surplus.yaml",
        "usb_phone_charge.yaml",
    ]


@pytest.mark.parametrize("name", NAMES)
async def test_each_blueprint_loads_and_validates(hass: HomeAssistant, name: str) -> None:
    data = load_yaml_dict(str(BLUEPRINTS / name))
    blueprint = models.Blueprint(
        data,
        path=f"energy_p2p/{name}",
        expected_domain="automation",
        schema=AUTOMATION_BLUEPRINT_SCHEMA,
    )
    assert blueprint.domain == "automation"
    assert blueprint.name.startswith("Energy P2P - ")
    assert blueprint.metadata["source_url"].endswith(f"/blueprints/automation/energy_p2p/{name}")
    assert all("selector" in spec for spec in blueprint.inputs.values())
    # Used with every input given, the automation it makes is valid.
    inputs = {
        key: spec.get("default", SAMPLE_INPUTS.get(key)) for key, spec in blueprint.inputs.items()
    }
    config = await async_validate_config_item(
        hass, "automation.test", {"id": "x", **use(name, **inputs)}
    )
    assert config is not None
    assert config.validation_status.value == "ok", config.validation_error


SAMPLE_INPUTS: dict[str, Any] = {
    "edge_controller": "01ABCDEF",
    "surplus_sensor": "sensor.battery_soc",
    "cut_off_sensor": "binary_sensor.flat_3_prepaid_cut_off",
    "loads": ["switch.heater"],
    "offer_event": "event.flat_3_offer_received",
    "trade_events": ["event.flat_3_trade_made"],
    "phone_attached": "binary_sensor.usb_port_1_phone_attached",
    "notify_action": "notify.mobile_app_phone",
}


async def test_sell_surplus_offers_on_a_real_edge_controller(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[0]  # Sunny House: battery and PV
    entry = await set_up(hass, home.account, home.entry_data())
    coordinator = entry.runtime_data.coordinator
    await until(  # a fresh demo registers its resources in its first blocks
        hass,
        lambda: any(
            (d.get("resource") or {}).get("kind") == "battery" for d in coordinator.data.devices
        ),
        within=30,
    )
    # Any battery sensor in Home Assistant, not the edge controller's own.
    hass.states.async_set(
        "sensor.garage_battery", "60", {"device_class": "battery", "unit_of_measurement": "%"}
    )
    await automate(
        hass,
        use(
            "sell_surplus.yaml",
            edge_controller=entry.entry_id,
            surplus_sensor="sensor.garage_battery",
            threshold=80,
            hold_for={"seconds": 0},
            cool_down={"seconds": 0},  # Home Assistant's test harness waits out delays
            quantity=15,
            price=0.95,  # above the demo consumer's buying limit: nobody takes it
            # Tomorrow, for an hour: the demo's battery sells itself for the next 100 s and
            # may have no power left to offer there.
            starts_in={"days": 1},
            lasts={"hours": 1},
        ),
    )

    def ours() -> list[dict[str, Any]]:
        return [
            o
            for o in coordinator.data.offers
            if o["seller"] == home.account and o["price"] == 950 and o["quantity"] == 15
        ]

    hass.states.async_set("sensor.garage_battery", "70", {"device_class": "battery"})
    await hass.async_block_till_done()
    assert ours() == []  # below the threshold: nothing offered
    hass.states.async_set("sensor.garage_battery", "85", {"device_class": "battery"})
    await until(hass, lambda: bool(ours()))
    [offer] = ours()
    assert offer["resource"] == "solar-1/battery"
    tomorrow = dt_util.utcnow() + timedelta(days=1)
    assert abs(offer["start"] / 1000 - tomorrow.timestamp()) < 60
    assert offer["end"] - offer["start"] == 3_600_000
    # Leave the shared demo as it was.
    await hass.services.async_call(
        DOMAIN,
        "cancel_offer",
        {"config_entry_id": entry.entry_id, "offer_id": offer["id"]},
        blocking=True,
    )
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_prepaid_cut_off_switches_the_load_off_and_back_on(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    entry = await set_up(hass, fake_edge.node_id, fake_edge.entry_data())
    await until(hass, lambda: entry.runtime_data.coordinator.stream_connected)
    turned_off = async_mock_service(hass, "switch", "turn_off")
    turned_on = async_mock_service(hass, "switch", "turn_on")
    sensor = "binary_sensor.flat_3_prepaid_cut_off"
    assert hass.states.get(sensor).state == "off"
    await automate(
        hass, use("prepaid_cut_off.yaml", cut_off_sensor=sensor, loads=["switch.heater"])
    )

    wallet = fake_edge.responses["wallet"]
    await fake_edge.push("prepaid_cutoff", {**wallet, "balance": 0})
    await until(hass, lambda: len(turned_off) == 1)
    assert turned_off[0].data["entity_id"] == ["switch.heater"]
    assert turned_on == []

    await fake_edge.push("prepaid_restored", {**wallet, "balance": 5000})
    await until(hass, lambda: len(turned_on) == 1)
    assert turned_on[0].data["entity_id"] == ["switch.heater"]
    assert len(turned_off) == 1
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_usb_charge_asks_on_the_phone_then_buys(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    entry = await set_up(hass, fake_edge.node_id, fake_edge.entry_data())
    fake_edge.failures["usb/2/purchase"] = (201, {"id": "s1", "port": 2, "price": 400})
    notified = async_mock_service(hass, "notify", "mobile_app_phone")
    phone = "binary_sensor.usb_port_2_phone_attached"
    hass.states.async_set(phone, "off")
    await automate(
        hass,
        use(
            "usb_phone_charge.yaml",
            edge_controller=entry.entry_id,
            phone_attached=phone,
            port=2,
            energy_wh=12,
            notify_action="notify.mobile_app_phone",
        ),
    )
    hass.states.async_set(phone, "on")
    # The automation waits for the answer, so Home Assistant is never idle: poll.
    await polled(lambda: len(notified) == 1)
    actions = notified[0].data["data"]["actions"]
    assert [a["title"] for a in actions] == ["Buy", "Not now"]
    assert "12 Wh" in notified[0].data["message"]

    # An answer to some other notification buys nothing; tapping Buy does.
    hass.bus.async_fire("mobile_app_notification_action", {"action": "SOMETHING_ELSE"})
    await asyncio.sleep(0.3)
    assert "POST usb/2/purchase" not in fake_edge.requests
    hass.bus.async_fire("mobile_app_notification_action", {"action": actions[0]["action"]})
    await until(hass, lambda: "POST usb/2/purchase" in fake_edge.requests)
    assert ("POST usb/2/purchase", {"energy_wh": 12}) in fake_edge.bodies
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_buy_below_price_accepts_the_cheapest_offer_within_the_limit(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    entry = await set_up(hass, fake_edge.node_id, fake_edge.entry_data())
    # Recorded: one open capacity offer from another home, 3000 W left at 0.32 per kWh.
    [offer] = fake_edge.responses["offers"]["offers"]
    fake_edge.failures[f"offers/{offer['id']}/accept"] = (
        201,
        {"acceptance": "a1", "conditional": False},
    )
    event = "event.flat_3_offer_received"
    hass.states.async_set(event, "2026-11-22T03:00:00+00:00", {"event_type": "offer_received"})
    await automate(
        hass,
        use(
            "buy_below_price.yaml",
            edge_controller=entry.entry_id,
            offer_event=event,
            max_price=0.3,
            quantity=1000,
            offer_mode="capacity",
        ),
        use(
            "buy_below_price.yaml",
            edge_controller=entry.entry_id,
            offer_event=event,
            max_price=0.35,
            quantity=1000,
            offer_mode="capacity",
        ),
    )
    hass.states.async_set(event, "2026-11-22T03:05:00+00:00", {"event_type": "offer_received"})
    await until(hass, lambda: f"POST offers/{offer['id']}/accept" in fake_edge.requests)
    await hass.async_block_till_done()
    # Only the automation whose limit the price is within bought, and only 1000 W.
    assert [b for b in fake_edge.bodies if b[0].endswith("/accept")] == [
        (f"POST offers/{offer['id']}/accept", {"quantity": 1000})
    ]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_notify_on_trades(hass: HomeAssistant) -> None:
    notified = async_mock_service(hass, "notify", "notify")
    event = "event.flat_3_trade_made"
    hass.states.async_set(
        event, "2026-11-22T03:00:00+00:00", {"friendly_name": "Flat 3 Trade made"}
    )
    await automate(hass, use("notify_trades.yaml", trade_events=[event]))
    hass.states.async_set(
        event,
        "2026-11-22T03:05:00+00:00",
        {
            "friendly_name": "Flat 3 Trade made",
            "event_type": "trade_made",
            "energy_wh": 50,
            "cost": 0.015,
            "role": "buyer",
        },
    )
    await until(hass, lambda: len(notified) == 1)
    assert notified[0].data["title"] == "Energy P2P"
    assert (
        notified[0].data["message"] == "Flat 3 Trade made: trade made, 50 Wh, cost 0.015 (as buyer)"
    )
