"""Simulated devices and the production adapters talking through a real Mosquitto broker.

Each simulator publishes in one profile's layout and obeys its command topics; the adapter
reads it and commands it through the same code path it uses for real hardware.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import aiomqtt

from edge_controller.devices import (
    Command,
    FuelCellState,
    MqttDevice,
    MqttParticipant,
    Quantity,
    SimulatedClock,
    capabilities_of,
    opendtu_profile,
    run_participants,
    serve_on_broker,
    simple_generic_profile,
    victron_profile,
)
from edge_controller.simulation import (
    BatteryModel,
    FuelCellModel,
    HouseholdLoad,
    PvInverter,
    SimulatedMqttDevice,
    SimulatedSite,
)

# 2024-06-01T13:00:00Z: solar noon for the default 06:00-20:00 day.
NOON = 1_717_200_000_000 + 13 * 3_600_000
TICK_S = 0.05


class Broker(Protocol):
    """The part of the `mosquitto` fixture these tests use."""

    @property
    def host(self) -> str: ...

    port: int

    def restart(self) -> None: ...


@contextlib.asynccontextmanager
async def on_broker(broker: Broker, *participants: MqttParticipant) -> AsyncIterator[None]:
    """Run participants on their own client until the block ends."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        task = asyncio.create_task(run_participants(client, participants, TICK_S))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (in real time, for the broker) until `check` holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition never came true"
        await asyncio.sleep(0.02)


def value_of(device: MqttDevice, quantity: Quantity) -> int | None:
    reading = device.number(quantity)
    return None if reading is None else reading.value


async def test_generic_fuel_cell_is_read_started_and_set_over_mqtt(mosquitto: Broker) -> None:
    clock = SimulatedClock(NOON)
    profile = simple_generic_profile(
        "home/fuelcell",
        [
            Quantity.POWER_W,
            Quantity.POWER_RATING_W,
            Quantity.STATE,
            Quantity.HYDROGEN_G,
            Quantity.FAULT_CODES,
        ],
        [Command.START_STOP, Command.SETPOINT_W],
    )
    cell = FuelCellModel(5000, hydrogen_g=3000, start_ms=NOON, warmup_ms=10_000)
    simulator = SimulatedMqttDevice("fc-sim", cell, profile, clock)
    adapter = MqttDevice("fuel cell", profile, clock, stale_after_ms=30_000)
    capabilities = capabilities_of(adapter)
    generator, fuel_cell = capabilities.generator, capabilities.fuel_cell
    assert generator is not None
    assert fuel_cell is not None

    async with on_broker(mosquitto, simulator), on_broker(mosquitto, adapter):
        await eventually(lambda: simulator.connected and adapter.connected)
        await eventually(lambda: value_of(adapter, Quantity.HYDROGEN_G) == 3000)
        state = fuel_cell.state()
        assert state is not None
        assert state.value is FuelCellState.OFF
        energy = fuel_cell.available_energy_wh()
        assert energy is not None
        assert energy.value == 50_000
        rating = generator.power_rating_w()
        assert rating is not None
        assert rating.value == 5000

        await generator.set_setpoint_w(2000)
        await generator.start()
        await eventually(lambda: cell.state is FuelCellState.STARTING)
        clock.advance(10_000 + 20_000)  # warm-up, then 20 s of ramp at 100 W/s
        await eventually(lambda: value_of(adapter, Quantity.POWER_W) == 2000)
        running = fuel_cell.state()
        assert running is not None
        assert running.value is FuelCellState.RUNNING
        hydrogen = value_of(adapter, Quantity.HYDROGEN_G)
        assert hydrogen is not None
        assert hydrogen < 3000

    # The simulator is gone: once the timeout passes its last values must not drive offers.
    clock.advance(30_001)
    power = generator.power_w()
    assert power is not None
    assert not power.fresh(clock.now_ms())


async def test_malformed_messages_on_the_broker_are_counted_and_do_not_stop_the_adapter(
    mosquitto: Broker,
) -> None:
    clock = SimulatedClock(NOON)
    profile = simple_generic_profile(
        "home/battery", [Quantity.SOC_PERCENT], [Command.BATTERY_SETPOINT_W]
    )
    battery = BatteryModel(10_000, start_ms=NOON, soc_percent=40)
    simulator = SimulatedMqttDevice("battery-sim", battery, profile, clock)
    adapter = MqttDevice("battery", profile, clock)

    async with (
        on_broker(mosquitto, adapter),
        aiomqtt.Client(mosquitto.host, mosquitto.port) as rogue,
    ):
        await eventually(lambda: adapter.connected)
        await rogue.publish("home/battery/telemetry", b"\x00garbage")
        await rogue.publish("home/battery/telemetry", b'{"soc_percent": -5}')
        await rogue.publish("home/battery/cmd/battery_setpoint_w", b'{"value": "lots"}')
        await eventually(lambda: sum(adapter.stats.rejected.values()) == 2)
        assert adapter.stats.rejected == {"invalid_json": 1, "out_of_range": 1}

        async with on_broker(mosquitto, simulator):
            await eventually(lambda: value_of(adapter, Quantity.SOC_PERCENT) == 40)
            await rogue.publish("home/battery/cmd/battery_setpoint_w", b'{"value": "lots"}')
            await eventually(lambda: simulator.rejected_commands["battery_setpoint_w"] == 1)
            assert battery.setpoint_w == 0


async def test_opendtu_inverter_reports_power_and_obeys_the_limit(mosquitto: Broker) -> None:
    clock = SimulatedClock(NOON)
    profile = opendtu_profile("solar", "116180000001", power_rating_w=800)
    inverter = PvInverter(800, start_ms=NOON)
    simulator = SimulatedMqttDevice("opendtu-sim", inverter, profile, clock)
    adapter = MqttDevice("balcony inverter", profile, clock)
    capabilities = capabilities_of(adapter)
    limiter = capabilities.export_limiter
    assert limiter is not None

    async with (
        aiomqtt.Client(mosquitto.host, mosquitto.port) as observer,
        on_broker(mosquitto, simulator),
        on_broker(mosquitto, adapter),
    ):
        await observer.subscribe("solar/116180000001/0/power")
        await eventually(lambda: simulator.connected and adapter.connected)
        await eventually(lambda: value_of(adapter, Quantity.POWER_W) == 800)
        async for message in observer.messages:
            assert message.payload == b"800"  # OpenDTU publishes bare numbers
            break

        clock.advance(3_600_000)
        await eventually(lambda: (value_of(adapter, Quantity.EXPORT_ENERGY_WH) or 0) > 700)

        await limiter.set_export_limit_w(300)
        await eventually(lambda: value_of(adapter, Quantity.EXPORT_LIMIT_W) == 300)
        await eventually(lambda: value_of(adapter, Quantity.POWER_W) == 300)
        assert inverter.limit_w == 300


async def test_victron_venus_publishes_only_while_kept_alive_and_obeys_writes(
    mosquitto: Broker,
) -> None:
    clock = SimulatedClock(NOON)
    profile = victron_profile("c0619ab1", battery_capacity_wh=10_000)
    site = SimulatedSite(
        PvInverter(6000, start_ms=NOON),
        BatteryModel(10_000, start_ms=NOON, soc_percent=50),
        HouseholdLoad(8000, start_ms=NOON),
        start_ms=NOON,
    )
    venus = SimulatedMqttDevice("venus-sim", site, profile, clock)
    adapter = MqttDevice("victron ess", profile, clock, stale_after_ms=20_000)
    capabilities = capabilities_of(adapter)
    battery, limiter = capabilities.battery, capabilities.export_limiter
    assert battery is not None
    assert limiter is not None

    async with on_broker(mosquitto, venus):
        await eventually(lambda: venus.connected)
        await asyncio.sleep(5 * TICK_S)
        assert venus.published == 0  # asleep: nobody sent a keepalive yet

        async with on_broker(mosquitto, adapter):
            await eventually(lambda: value_of(adapter, Quantity.SOC_PERCENT) == 50)
            capacity = battery.capacity_wh()
            assert capacity is not None
            assert capacity.value == 10_000
            grid = value_of(adapter, Quantity.GRID_POWER_W)
            assert grid is not None
            assert grid < 0  # noon: PV exceeds the load

            await battery.set_power_setpoint_w(2000)
            await eventually(lambda: value_of(adapter, Quantity.BATTERY_POWER_W) == 2000)

            await limiter.set_export_limit_w(0)
            await eventually(lambda: value_of(adapter, Quantity.EXPORT_LIMIT_W) == 0)
            await eventually(lambda: (value_of(adapter, Quantity.GRID_POWER_W) or -1) >= -1)

            # The adapter's keepalive every 30 s keeps Venus awake past its 60 s timeout.
            for _ in range(3):
                clock.advance(30_000)
                await asyncio.sleep(3 * TICK_S)
            assert venus.awake()

        # The adapter is gone: no keepalive, so Venus falls silent after 60 s.
        clock.advance(60_001)
        await asyncio.sleep(3 * TICK_S)
        assert not venus.awake()
        published = venus.published
        await asyncio.sleep(3 * TICK_S)
        assert venus.published == published
        soc = battery.soc_percent()
        assert soc is not None
        assert not soc.fresh(clock.now_ms())


async def test_devices_come_back_by_themselves_after_the_broker_restarts(
    mosquitto: Broker,
) -> None:
    clock = SimulatedClock(NOON)
    profile = simple_generic_profile("home/pv", [Quantity.POWER_W], [Command.EXPORT_LIMIT_W])
    inverter = PvInverter(4000, start_ms=NOON)
    simulator = SimulatedMqttDevice("pv-sim", inverter, profile, clock)
    adapter = MqttDevice("pv", profile, clock)
    limiter = capabilities_of(adapter).export_limiter
    assert limiter is not None

    tasks = [
        asyncio.create_task(
            serve_on_broker(
                mosquitto.host,
                mosquitto.port,
                [participant],
                tick_interval_s=TICK_S,
                first_retry_s=0.1,
            )
        )
        for participant in (simulator, adapter)
    ]
    try:
        await eventually(lambda: value_of(adapter, Quantity.POWER_W) == 4000)
        await asyncio.to_thread(mosquitto.restart)
        # Values flowing again prove both sides reconnected and resubscribed.
        accepted = adapter.stats.accepted
        await eventually(lambda: adapter.stats.accepted > accepted + 10, timeout_s=10)
        await eventually(lambda: adapter.connected and simulator.connected)
        await limiter.set_export_limit_w(1500)
        await eventually(lambda: value_of(adapter, Quantity.POWER_W) == 1500, timeout_s=10)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
