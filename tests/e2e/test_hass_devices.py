"""A home whose battery is Home Assistant entities, end to end: a real `hass` (input numbers
and template sensors standing in for the battery) with the integration from the checkout,
a real `energy-p2p-edge run` process on Mosquitto with a `homeassistant` battery. The
owner picks the entities in the options flow over Home Assistant's REST API; the home
offers above its threshold, a neighbour buys, the discharge entity is set for the trade
and the owner's value set back after it, and once Home Assistant stops the home's values
go stale."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

from edge_controller.demo.hass import hass_child, new_login, set_up, write_config
from edge_controller.demo.hass_client import HassClient, HomeAccess
from edge_controller.ledger import KeyPair, sign_record
from edge_controller.processes import EdgeProcess, free_port, wait_for_port
from tests.conftest import Mosquitto
from tests.edge.support import Community

from .hass_support import eventually

BATTERY = "ha-house/battery"
SOC, POWER, SETTING = "sensor.battery_soc", "sensor.battery_power", "input_number.discharge"
ENTITIES = """
input_number:
  soc: {min: 0, max: 100, initial: 90, unit_of_measurement: "%"}
  discharge: {min: 0, max: 5000, initial: 250, unit_of_measurement: W}
template:
  - sensor:
      - name: Battery SoC
        state: "{{ states('input_number.soc') }}"
        unit_of_measurement: "%"
        device_class: battery
      - name: Battery power
        state: "{{ states('input_number.discharge') }}"
        unit_of_measurement: W
        device_class: power
"""
POLICY = {
    "sell": {
        "battery": {
            "enable_soc_percent": 60,
            "disable_soc_percent": 50,
            "reserve_percent": 20,
            "enable_delay_ms": 0,
            "min_offer_wh": 1,
        },
        "pv": None,
        "fuel_cell": None,
        "delivery_lead_ms": 0,
        "delivery_window_ms": 20_000,
        "offer_validity_ms": 20_000,
        "min_offer_interval_ms": 600_000,
        "answer_requests": False,
    },
    "buy": {"auto_accept": False},
}


async def pick_entities(client: HassClient, entry_id: str) -> Any:
    """The options flow as the UI drives it: "devices" in its menu, then the battery's step."""
    flow = await client.request(
        "POST", "/api/config/config_entries/options/flow", {"handler": entry_id}, step="options"
    )
    assert flow["type"] == "menu" and flow["step_id"] == "init", flow
    assert "devices" in flow["menu_options"], flow
    path = f"/api/config/config_entries/options/flow/{flow['flow_id']}"
    step = await client.request("POST", path, {"next_step_id": "devices"}, step="menu")
    assert step["step_id"] == "ha_device", step
    picked = {
        "soc_percent": SOC,
        "battery_power_w": POWER,
        "battery_setpoint": SETTING,
        "discharge_positive": True,
        "capacity_wh": 10_000,
    }
    return await client.request("POST", path, picked, step="entities")


async def state_of(client: HassClient, entity_id: str) -> str:
    answer = await client.request("GET", f"/api/states/{entity_id}", step=entity_id)
    return str(answer["state"])


def test_a_home_driven_by_home_assistant_entities(tmp_path: Path, mosquitto: Mosquitto) -> None:
    community = Community(tmp_path, ["ha-house"])
    devices = [
        {
            "id": "battery",
            "role": "battery",
            "resource": BATTERY,
            "stale_after_s": 8,
            "profile": {"profile": "homeassistant"},
        }
    ]
    edge = EdgeProcess(
        community.config("ha-house", mosquitto.port, devices=devices, policy=POLICY),
        tmp_path / "edge.log",
    ).start()
    buyer = KeyPair.generate()
    config_dir, port = tmp_path / "home-assistant", free_port()
    write_config(config_dir, port, "127.0.0.1", "Relay Street")
    with (config_dir / "configuration.yaml").open("a") as configuration:
        configuration.write(ENTITIES)
    child = hass_child(config_dir, config_dir / "console.log").start()
    try:
        edge.post("records", community.registration("ha-house", BATTERY, "battery", 2_000, 10_000))
        edge.post("records", community.topup("ha-house", 100_000))
        edge.post(
            "records",
            community.registrar_record(kind="topup", to=buyer.account, amount=100_000),
        )
        wait_for_port(port, 240, child)
        home = HomeAccess("HA House", "ha-house", edge.account, edge.url, edge.token)
        asyncio.run(_owner_and_trade(edge, community, buyer, port, child, home))
        child.stop()

        def stale() -> Any:
            view = edge.get("devices")["devices"][0]
            return not view["soc_percent"]["fresh"] and "relay" in view["problems"]

        asyncio.run(eventually(_sync(stale), 30, "the battery's values to go stale"))
    finally:
        child.stop()
        edge.stop()


def _sync(check: Any) -> Any:
    async def read() -> Any:
        return check()

    return read


async def _owner_and_trade(
    edge: EdgeProcess,
    community: Community,
    buyer: KeyPair,
    port: int,
    child: Any,
    home: HomeAccess,
) -> None:
    url = f"http://127.0.0.1:{port}"
    token = await set_up(url, child, new_login(), [home])
    async with HassClient(url) as client:
        client.token = token
        [entry] = await client.entries()
        done = await pick_entities(client, entry["entry_id"])
        assert done["type"] == "create_entry", done
        mapping = edge.get("homeassistant/entities")
        assert set(mapping["watched"]) == {SOC, POWER, SETTING}

        def offered() -> Any:
            offers = edge.get("offers?mine=1")["offers"]
            return next((o for o in offers if o["resource"] == BATTERY), None)

        offer = await eventually(_sync(offered), 60, "an offer from the relayed battery")
        body = {
            "kind": "acceptance",
            "seq": 1,
            "time": int(time.time() * 1000),
            "offer": offer["id"],
            "quantity": offer["quantity"],
        }
        acceptance = sign_record(buyer, community.genesis.community_id, body).to_wire()
        edge.post("records", acceptance)
        power = math.ceil(offer["quantity"] * 3_600_000 / (offer["end"] - offer["start"]))

        async def set_for_trade() -> bool:
            return float(await state_of(client, SETTING)) == power

        await eventually(set_for_trade, 40, f"{SETTING} at the trade's {power} W")

        async def handed_back() -> bool:
            return float(await state_of(client, SETTING)) == 250

        await eventually(handed_back, 60, f"{SETTING} back at the owner's 250 W")
