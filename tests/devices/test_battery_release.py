"""After its last trade a battery is handed back to its own energy management, not pinned
at 0 W: delivery drives a simulated PV + battery site over a real Mosquitto through the
production adapter, and the battery charges from the PV surplus again once the window ends.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from edge_controller.app.delivery import Delivery
from edge_controller.app.site import BatterySite
from edge_controller.config import DeviceConfig
from edge_controller.devices import (
    Command,
    MqttDevice,
    Quantity,
    SimulatedClock,
    capabilities_of,
    simple_generic_profile,
)
from edge_controller.ledger import Commitments, Resource, State, Trade
from edge_controller.simulation import (
    BatteryModel,
    HouseholdLoad,
    PvInverter,
    SimulatedMqttDevice,
    SimulatedSite,
)

from .test_device_mqtt_broker import NOON, Broker, eventually, on_broker

SELLER = "ep" + "5e" * 20
RESOURCE = "solar/battery"
QUANTITIES = (Quantity.SOC_PERCENT, Quantity.CAPACITY_WH, Quantity.BATTERY_POWER_W)
WINDOW_MS = 60_000


def one_trade_state() -> State:
    """A ledger state holding one running sale of 20 Wh from the battery: 1 200 W for 60 s."""
    state = State()
    state.resources.put(RESOURCE, Resource(RESOURCE, "battery", SELLER, 3_000, 5_000, 3_000))
    trade = Trade(
        id="t1",
        offer="o1",
        seller=SELLER,
        buyer="ep" + "b0" * 20,
        resource=RESOURCE,
        mode="energy",
        quantity=20,
        price=300,
        start=NOON,
        end=NOON + WINDOW_MS,
        energy_wh=20,
        cost=6,
        time=NOON - 1_000,
    )
    state.trades.put(trade.id, trade)
    state.commitments.put(RESOURCE, Commitments((trade.id,)))
    return state


async def _nothing(*_args: Any, **_fields: Any) -> None:
    return None


def delivery() -> Delivery:
    return Delivery(SELLER, "", 15_000, _nothing, _nothing)


def sunny_site(clock: SimulatedClock) -> SimulatedSite:
    """Midday: 3 kW of PV over a small load (a surplus the battery can take), half full."""
    return SimulatedSite(
        PvInverter(3_000, start_ms=clock.now_ms()),
        BatteryModel(5_000, start_ms=clock.now_ms(), soc_percent=50.0),
        HouseholdLoad(6_000, start_ms=clock.now_ms(), variation=0.0),
        start_ms=clock.now_ms(),
    )


async def test_after_its_trade_the_battery_charges_from_the_pv_surplus_again(
    mosquitto: Broker,
) -> None:
    clock = SimulatedClock(NOON - 5_000)
    site = sunny_site(clock)
    site.battery.obey(Command.BATTERY_RELEASE, 1)  # self-consumption before any trade
    commands = (Command.BATTERY_SETPOINT_W, Command.BATTERY_RELEASE)
    profile = simple_generic_profile("sim/solar/site", QUANTITIES, commands)
    simulator = SimulatedMqttDevice("site", site, profile, clock)
    adapter = MqttDevice("battery", profile, clock, stale_after_ms=30_000)
    device = BatterySite(
        DeviceConfig("battery", "battery", profile, RESOURCE, 30_000),
        adapter,
        capabilities_of(adapter),
    )
    state, seller = one_trade_state(), delivery()

    async with on_broker(mosquitto, simulator), on_broker(mosquitto, adapter):
        await eventually(lambda: simulator.connected and adapter.connected)
        site.advance_to(clock.now_ms())
        assert site.battery.power_w() > 0  # storing the midday surplus on its own

        clock.set(NOON + 10_000)
        await seller.drive(state, [device], clock.now_ms())
        await eventually(lambda: site.battery.power_w() == -1_200)  # the trade discharges it

        clock.set(NOON + WINDOW_MS + 1_000)
        await seller.drive(state, [device], clock.now_ms())
        await eventually(lambda: site.battery.released)
        clock.advance(1_000)
        site.advance_to(clock.now_ms())
        surplus = site.pv.power_at(clock.now_ms()) - site.load.power_at(clock.now_ms())
        assert surplus > 0 and site.battery.power_w() == round(surplus)
        assert abs(site.grid_power_w()) < 1  # self-consumption: nothing to or from the grid

        # Released once: later cycles leave the battery to its own management.
        site.battery.obey(Command.BATTERY_SETPOINT_W, 777)
        await seller.drive(state, [device], clock.now_ms() + 5_000)
        assert not site.battery.released and site.battery.setpoint_w == 777


async def test_a_profile_without_a_release_command_holds_the_battery_at_zero_and_says_so(
    mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SimulatedClock(NOON + 10_000)
    battery = BatteryModel(5_000, start_ms=clock.now_ms(), soc_percent=50.0)
    profile = simple_generic_profile(
        "sim/solar/old-battery", QUANTITIES, (Command.BATTERY_SETPOINT_W,)
    )
    simulator = SimulatedMqttDevice("old", battery, profile, clock)
    adapter = MqttDevice("battery", profile, clock, stale_after_ms=30_000)
    device = BatterySite(
        DeviceConfig("battery", "battery", profile, RESOURCE, 30_000),
        adapter,
        capabilities_of(adapter),
    )
    state, seller = one_trade_state(), delivery()

    async with on_broker(mosquitto, simulator), on_broker(mosquitto, adapter):
        await eventually(lambda: simulator.connected and adapter.connected)
        await seller.drive(state, [device], clock.now_ms())
        await eventually(lambda: battery.setpoint_w == -1_200)
        with caplog.at_level(logging.WARNING):
            await seller.drive(state, [device], NOON + WINDOW_MS + 1_000)
        await eventually(lambda: battery.setpoint_w == 0)
    assert not battery.released
    assert any("no battery_release command" in r.getMessage() for r in caplog.records)


async def test_a_battery_that_reports_its_setpoint_gets_the_owner_s_back_after_a_trade(
    mosquitto: Broker,
) -> None:
    clock = SimulatedClock(NOON + 10_000)
    battery = BatteryModel(5_000, start_ms=clock.now_ms(), soc_percent=50.0)
    battery.obey(Command.BATTERY_SETPOINT_W, 777)  # the owner charges at 777 W
    profile = simple_generic_profile(
        "sim/solar/reporting-battery",
        (*QUANTITIES, Quantity.BATTERY_SETPOINT_W),
        (Command.BATTERY_SETPOINT_W,),
    )
    simulator = SimulatedMqttDevice("reporting", battery, profile, clock)
    adapter = MqttDevice("battery", profile, clock, stale_after_ms=30_000)
    device = BatterySite(
        DeviceConfig("battery", "battery", profile, RESOURCE, 30_000),
        adapter,
        capabilities_of(adapter),
    )
    state, seller = one_trade_state(), delivery()

    async with on_broker(mosquitto, simulator), on_broker(mosquitto, adapter):
        await eventually(lambda: adapter.number(Quantity.BATTERY_SETPOINT_W) is not None)
        await seller.drive(state, [device], clock.now_ms())
        await eventually(lambda: battery.setpoint_w == -1_200)
        await seller.drive(state, [device], NOON + WINDOW_MS + 1_000)
        await eventually(lambda: battery.setpoint_w == 777)  # the owner's, not 0 W
