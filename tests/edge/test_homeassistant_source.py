"""Home Assistant as a device source, on the edge controller's side: a real `Home` with its
`ApiServer` on loopback and a real Mosquitto; the test speaks the API as the integration
does (PUT the owner's entities, POST relayed states, carry out the service calls that come
back). Units are converted by `unit_of_measurement`; `unavailable`, a wrong unit and a
relay that stops leave no fresh value, so nothing is offered from them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge_controller.api import ApiServer
from edge_controller.app.delivery import Delivery
from edge_controller.app.home import Home
from edge_controller.config import parse_config
from edge_controller.devices import Quantity, SystemClock
from edge_controller.devices.homeassistant import HomeAssistantDevice
from edge_controller.ledger import (
    Commitments,
    Consensus,
    Genesis,
    KeyPair,
    Resource,
    State,
    Trade,
    sign_record,
)
from edge_controller.market import (
    AcceptanceCriteria,
    BatterySellRule,
    MarketPolicy,
    SellPolicy,
)
from edge_controller.network import BrokerSettings
from tests.conftest import Mosquitto

from .api_support import Client, eventually

BATTERY = "ha/battery"
SOC, POWER, SETPOINT = "sensor.battery_soc", "sensor.battery_power", "number.battery_discharge"
MAPPING = {
    "devices": {
        "battery": {
            "entities": {"soc_percent": SOC, "battery_power_w": {"entity_id": POWER, "scale": -1}},
            "commands": {
                "battery_setpoint_w": {
                    "service": "number.set_value",
                    "entity_id": SETPOINT,
                    "scale": -1,
                }
            },
            "constants": {"capacity_wh": 10_000},
        }
    }
}


@dataclass
class HaHome:
    home: Home
    client: Client
    registrar: KeyPair


def policy() -> MarketPolicy:
    rule = BatterySellRule(
        enable_soc_percent=80, disable_soc_percent=70, reserve_percent=30, enable_delay_ms=0
    )
    return MarketPolicy(
        sell=SellPolicy(battery=rule, pv=None, fuel_cell=None, answer_requests=False),
        buy=AcceptanceCriteria(auto_accept=False),
    )


@pytest.fixture
async def ha_home(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[HaHome]:
    key, registrar = KeyPair.generate(), KeyPair.generate()
    genesis = Genesis(
        name="HA Street",
        currency="TST",
        time=int(time.time() * 1000) - 1_000,
        registrars=(registrar.public_hex,),
        consensus=Consensus(mode="poa", block_interval_ms=500, sealers=(key.public_hex,)),
    )
    genesis_file = tmp_path / "genesis.json"
    genesis.save(genesis_file)
    config = parse_config(
        {
            "name": "HA House",
            "genesis": str(genesis_file),
            "devices": [
                {
                    "id": "battery",
                    "role": "battery",
                    "resource": BATTERY,
                    "stale_after_s": 2,
                    "profile": {"profile": "homeassistant"},
                }
            ],
        },
        "edge.yaml",
        tmp_path,
    )
    home = Home(
        name="HA House",
        data_dir=tmp_path / "data",
        genesis=genesis,
        node_key=key,
        meter_key=KeyPair.generate(),
        community_broker=BrokerSettings(host="127.0.0.1", port=mosquitto.port),
        devices=config.devices,
        policy=policy(),
        clock=SystemClock(),
        control_interval_ms=250,
    )
    server = ApiServer(home, "ha-token")
    await home.start()
    await server.start()
    async with aiohttp.ClientSession() as session:
        try:
            yield HaHome(home, Client(session, server.url, "ha-token"), registrar)
        finally:
            await server.stop()
            await home.stop()


async def relay(client: Client, *states: tuple[str, str, str | None], **extra: Any) -> Any:
    body = {"states": [{"entity_id": e, "state": s, "unit": u} for e, s, u in states], **extra}
    answer = await client.call("POST", "homeassistant/states", body)
    assert answer.status == 200, answer.body
    return answer.body


def device_of(home: Home) -> HomeAssistantDevice:
    device = home.devices[0].device
    assert isinstance(device, HomeAssistantDevice)
    return device


async def test_the_owner_s_entities_are_written_checked_and_kept(
    ha_home: HaHome, tmp_path: Path
) -> None:
    client = ha_home.client
    before = await client.get("homeassistant/entities")
    assert before["devices"][0]["id"] == "battery" and before["devices"][0]["entities"] == {}

    unknown = await client.refused(
        "PUT", "homeassistant/entities", {"devices": {"pv": {}}}, status=404, code="unknown_device"
    )
    assert "no homeassistant device pv" in unknown
    wrong = await client.refused(
        "PUT",
        "homeassistant/entities",
        {"devices": {"battery": {"entities": {"soc_percent": "not an entity", "colour": "x"}}}},
        status=422,
        code="invalid_field",
    )
    assert "devices.battery.entities.soc_percent: expected an entity id" in wrong
    assert "devices.battery.entities.colour" in wrong

    answer = await client.call("PUT", "homeassistant/entities", MAPPING)
    assert answer.status == 200, answer.body
    mapped = answer.body["devices"][0]
    assert mapped["entities"] == {"soc_percent": SOC, "battery_power_w": POWER}
    assert set(answer.body["watched"]) == {SOC, POWER, SETPOINT}
    saved = (tmp_path / "data" / "homeassistant.json").stat()
    assert saved.st_mode & 0o077 == 0


async def test_relayed_states_drive_an_offer_and_unusable_ones_never_do(ha_home: HaHome) -> None:
    client, home = ha_home.client, ha_home.home
    assert (await client.call("PUT", "homeassistant/entities", MAPPING)).status == 200
    registration = sign_record(
        ha_home.registrar,
        home.genesis.community_id,
        {
            "kind": "registration",
            "seq": 1,
            "time": int(time.time() * 1000),
            "resource": BATTERY,
            "owner": home.account,
            "resource_kind": "battery",
            "power_w": 3_000,
            "capacity_wh": 10_000,
            "available_wh": 10_000,
        },
    ).to_wire()
    await client.post("records", registration)
    topup = sign_record(
        ha_home.registrar,
        home.genesis.community_id,
        {
            "kind": "topup",
            "seq": 2,
            "time": int(time.time() * 1000),
            "to": home.account,
            "amount": 10_000,
        },
    ).to_wire()
    await client.post("records", topup)

    # Unusable states: unavailable, and a power in volts. No value, a reason for each.
    await relay(client, (SOC, "unavailable", "%"), (POWER, "230", "V"))
    devices = (await client.get("devices"))["devices"]
    problems = devices[0]["problems"]
    assert problems[SOC] == f"{SOC} is unavailable"
    assert problems[POWER] == f"{POWER} is in V, expected W or kW or MW"
    assert device_of(home).number(Quantity.SOC_PERCENT) is None
    assert "soc_percent" not in devices[0]

    # Usable states: 92 % and 0.5 kW discharging (the entity counts discharge as positive).
    await relay(client, (SOC, "92.4", "%"), (POWER, "0.5", "kW"))
    devices = (await client.get("devices"))["devices"]
    assert devices[0]["soc_percent"]["value"] == 92
    assert devices[0]["battery_power_w"]["value"] == -500
    assert devices[0]["problems"] == {}

    async def offered() -> list[dict[str, Any]]:
        await relay(client, (SOC, "92.4", "%"), (POWER, "0.5", "kW"))
        return [
            o for o in (await client.get("offers?mine=1"))["offers"] if o["resource"] == BATTERY
        ]

    offers = await eventually(offered, "an offer from the relayed state of charge")
    assert offers[0]["mode"] == "energy"

    # Home Assistant goes away: no relay, the values go stale, commands are refused.
    async def stale() -> bool:
        view = (await client.get("devices"))["devices"][0]
        return not view["soc_percent"]["fresh"] and "relay" in view["problems"]

    await eventually(stale, "the relayed values to go stale", within=10)
    assert not device_of(home).connected


async def test_a_trade_sets_the_named_entity_and_hands_back_the_owner_s_value(
    ha_home: HaHome,
) -> None:
    client, home = ha_home.client, ha_home.home
    assert (await client.call("PUT", "homeassistant/entities", MAPPING)).status == 200
    now = int(time.time() * 1000)
    state = State()
    state.resources.put(BATTERY, Resource(BATTERY, "battery", home.account, 3_000, 10_000, 8_000))
    trade = Trade(
        id="t1",
        offer="o1",
        seller=home.account,
        buyer="ep" + "b0" * 20,
        resource=BATTERY,
        mode="energy",
        quantity=20,
        price=300,
        start=now - 1_000,
        end=now + 59_000,
        energy_wh=20,
        cost=6,
        time=now - 2_000,
    )
    state.trades.put(trade.id, trade)
    state.commitments.put(BATTERY, Commitments((trade.id,)))

    async def nothing(*_args: Any, **_fields: Any) -> None:
        return None

    seller = Delivery(home.account, "", 15_000, nothing, nothing)
    # The owner had the discharge limit at 250 W before the trade.
    await relay(client, (SOC, "90", "%"), (POWER, "0", "W"), (SETPOINT, "250", "W"))
    await seller.drive(state, home.devices, now)
    calls = (await relay(client, (SOC, "90", "%")))["commands"]
    assert calls == [
        {
            "device": "battery",
            "command": "battery_setpoint_w",
            "service": "number.set_value",
            "data": {"entity_id": SETPOINT, "value": 1_200},
        }
    ]
    # The service call failed in Home Assistant: GET devices says so.
    await relay(
        client,
        results=[{"device": "battery", "command": "battery_setpoint_w", "error": "out of range"}],
    )
    problems = (await client.get("devices"))["devices"][0]["problems"]
    assert "battery_setpoint_w failed in Home Assistant: out of range" in problems.values()

    await seller.drive(state, home.devices, now + 60_000)
    calls = (await relay(client, (SOC, "89", "%")))["commands"]
    assert calls[0]["data"] == {"entity_id": SETPOINT, "value": 250}  # the owner's, not 0
