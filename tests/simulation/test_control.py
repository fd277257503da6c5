"""The simulation control topics, message by message: what a plug, unplug or set message
does to the simulated world, and how a message it cannot act on is answered. No broker:
the control participant gets its messages and publisher as `run_participants` would hand
them over."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edge_controller.devices import (
    Command,
    FuelCellState,
    Quantity,
    SimulatedClock,
    simple_generic_profile,
)
from edge_controller.simulation import (
    BatteryModel,
    FuelCellModel,
    HouseholdLoad,
    PvInverter,
    SimulatedMqttDevice,
    SimulatedSite,
    VirtualUsbWorld,
)
from edge_controller.simulation.control import (
    SimulationControl,
    SimulationInputError,
    apply_settings,
    phone_from_json,
    plug_topic,
    set_topic,
    unplug_topic,
)

NOON_MS = 12 * 3_600_000
SITE = (Quantity.SOC_PERCENT, Quantity.POWER_W, Quantity.GRID_POWER_W)


class Published:
    """A publisher that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Any]] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.messages.append((topic, json.loads(payload)))


def test_virtual_phones_take_a_usb_pd_contract_their_power_fits() -> None:
    phone = phone_from_json({"max_power_w": 60, "pd_voltage_mv": 20_000})
    assert (phone.max_power_w, phone.pd_voltage_mv) == (60, 20_000)

    with pytest.raises(SimulationInputError) as no_pd_voltage:
        phone_from_json({"pd_voltage_mv": 12_345})
    with pytest.raises(SimulationInputError) as too_much_current:
        phone_from_json({"max_power_w": 60})  # 12 A at the default 5 V
    assert [p.split(":")[0] for p in no_pd_voltage.value.problems] == ["pd_voltage_mv"]
    assert [p.split(":")[0] for p in too_much_current.value.problems] == ["max_power_w"]


def test_a_plug_message_lists_every_mistake_with_its_field() -> None:
    phone = phone_from_json({"vendor_id": "05ac", "product_id": 0x12A8, "serial": "X1"})
    assert (phone.vendor_id, phone.product_id, phone.serial) == (0x05AC, 0x12A8, "X1")
    assert (phone.manufacturer, phone.battery_wh, phone.soc) == ("Google", 15.0, 0.2)
    with pytest.raises(SimulationInputError) as mistakes:
        phone_from_json({"vendor_id": "phone", "serial": "", "soc_percent": 120, "colour": 1})
    fields = sorted(p.split(":")[0] for p in mistakes.value.problems)
    assert fields == ["colour", "serial", "soc_percent", "vendor_id"]
    with pytest.raises(SimulationInputError):
        phone_from_json([1, 2])


def site(start_ms: int = NOON_MS) -> SimulatedSite:
    return SimulatedSite(
        PvInverter(6_000, start_ms=start_ms),
        BatteryModel(5_000, start_ms=start_ms, soc_percent=50),
        HouseholdLoad(8_000, start_ms=start_ms),
        start_ms=start_ms,
    )


def test_settings_change_a_device_state_all_or_nothing() -> None:
    home = site()
    apply_settings(home, {"irradiance_percent": 0, "soc_percent": 90})
    assert home.pv.power_at(NOON_MS) == 0 and round(home.battery.soc_percent) == 90
    apply_settings(home, {"irradiance_percent": None})
    assert home.pv.power_at(NOON_MS) > 5_000  # the weather again: a clear sky at noon

    with pytest.raises(SimulationInputError) as mistakes:
        apply_settings(home, {"soc_percent": 20, "irradiance_percent": 150, "hydrogen_g": 1})
    assert sorted(p.split(":")[0] for p in mistakes.value.problems) == [
        "hydrogen_g",
        "irradiance_percent",
    ]
    assert round(home.battery.soc_percent) == 90  # nothing of a refused message is applied


def test_a_fuel_cell_runs_dry_faults_and_is_refilled() -> None:
    cell = FuelCellModel(5_000, 1_500.0, start_ms=0, warmup_ms=0)
    cell.start()
    cell.advance_to(60_000)
    assert cell.state == FuelCellState.RUNNING
    apply_settings(cell, {"hydrogen_g": 0})
    assert cell.state == FuelCellState.FAULT and cell.output_w == 0
    apply_settings(cell, {"hydrogen_g": 500})
    assert cell.state == FuelCellState.OFF and cell.faults == () and cell.hydrogen_g == 500
    cell.start()
    apply_settings(cell, {"fault": "stack_overheat"})
    assert cell.state == FuelCellState.FAULT and cell.faults == ("stack_overheat",)
    apply_settings(cell, {"fault": None})
    assert cell.state == FuelCellState.OFF and cell.faults == ()


async def test_control_messages_plug_unplug_and_set() -> None:
    clock = SimulatedClock(NOON_MS)
    world = VirtualUsbWorld(clock, ports=2)
    home = site(clock.now_ms())
    device = SimulatedMqttDevice(
        "flat/site",
        home,
        simple_generic_profile("demo/flat/site", SITE, (Command.SETPOINT_W,)),
        clock,
    )
    control = SimulationControl("demo", "flat", {"site": device}, world, clock)
    published = Published()
    await device.on_connect(published)
    await control.on_connect(published)
    assert control.connected and set(control.subscriptions()) == {
        "demo/sim/flat/usb/+/plug",
        "demo/sim/flat/usb/+/unplug",
        "demo/sim/flat/device/+/set",
    }

    await control.on_message(plug_topic("demo", "flat", 2), b'{"serial": "P2", "soc_percent": 50}')
    plugged = world.phone(2)
    assert plugged is not None and plugged.serial == "P2" and plugged.soc == 0.5
    await control.on_message(plug_topic("demo", "flat", 1), b"")  # the default phone
    assert world.phone(1) is not None and world.phone(1).serial == "VIRTUAL0001"
    await control.on_message(unplug_topic("demo", "flat", 2), b"")
    assert world.phone(2) is None

    published.messages.clear()
    await control.on_message(set_topic("demo", "flat", "site"), b'{"irradiance_percent": 0}')
    telemetry = [payload for topic, payload in published.messages if topic.startswith("demo/flat")]
    assert telemetry and telemetry[-1][Quantity.POWER_W.value] == 0
    assert control.handled == 4


async def test_what_the_world_cannot_do_is_answered_on_the_error_topic() -> None:
    clock = SimulatedClock(NOON_MS)
    world = VirtualUsbWorld(clock, ports=2)
    control = SimulationControl("demo", "flat", {}, world, clock)
    published = Published()
    await control.on_connect(published)
    await control.on_message(plug_topic("demo", "flat", 1), b"{}")
    for topic, payload in (
        (plug_topic("demo", "flat", 1), b"{}"),  # the port has a phone
        (plug_topic("demo", "flat", 3), b"{}"),  # no such port
        (plug_topic("demo", "flat", 2), b'{"pd_voltage_mv": 12}'),
        (plug_topic("demo", "flat", 2), b"not json"),
        (set_topic("demo", "flat", "boiler"), b'{"soc_percent": 1}'),
    ):
        await control.on_message(topic, payload)
    errors = [(p["topic"], p["problems"][0].split(":")[0]) for _, p in published.messages]
    assert [topic for topic, _ in published.messages] == ["demo/sim/flat/error"] * 5
    assert errors == [
        (plug_topic("demo", "flat", 1), "(topic)"),
        (plug_topic("demo", "flat", 3), "(topic)"),
        (plug_topic("demo", "flat", 2), "pd_voltage_mv"),
        (plug_topic("demo", "flat", 2), "(payload)"),
        (set_topic("demo", "flat", "boiler"), "(topic)"),
    ]
    assert control.handled == 1 and world.phone(2) is None
