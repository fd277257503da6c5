"""The MQTT adapter without a broker: parsing, rejection, staleness, capabilities, commands."""

from __future__ import annotations

import json
import logging

import pytest

from edge_controller.devices import (
    Command,
    DeviceCommandError,
    FuelCellState,
    MqttDevice,
    Quantity,
    Sample,
    SimulatedClock,
    capabilities_of,
    opendtu_profile,
    simple_generic_profile,
    victron_profile,
)

START = 1_717_200_000_000


class RecordingPublisher:
    """Keeps what would have gone to the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int]] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.sent.append((topic, payload, qos))


def battery_device(clock: SimulatedClock, stale_after_ms: int = 10_000) -> MqttDevice:
    profile = simple_generic_profile(
        "home/battery",
        [Quantity.SOC_PERCENT, Quantity.BATTERY_POWER_W, Quantity.STATE],
        [Command.BATTERY_SETPOINT_W],
        constants={Quantity.CAPACITY_WH: 10_000},
    )
    return MqttDevice("battery", profile, clock, stale_after_ms=stale_after_ms)


def test_reading_is_fresh_until_its_timeout_and_constants_never_age() -> None:
    reading = Sample(57, at_ms=1_000, max_age_ms=5_000)
    assert reading.fresh(6_000)
    assert not reading.fresh(6_001)
    assert reading.value_if_fresh(6_001) is None
    assert Sample(800, at_ms=0, max_age_ms=None).fresh(10**13)


def test_telemetry_becomes_stale_when_the_device_falls_silent() -> None:
    clock = SimulatedClock(START)
    device = battery_device(clock)
    battery = capabilities_of(device).battery
    assert battery is not None
    assert battery.soc_percent() is None

    device.receive("home/battery/telemetry", b'{"soc_percent": 57.4, "battery_power_w": -800}')
    soc = battery.soc_percent()
    assert soc == Sample(57, START, 10_000)
    assert soc.fresh(clock.now_ms())

    clock.advance(10_001)
    stale = battery.soc_percent()
    assert stale is not None
    assert not stale.fresh(clock.now_ms())
    capacity = battery.capacity_wh()
    assert capacity is not None
    assert capacity.fresh(clock.now_ms())  # from configuration, not telemetry
    snapshot = device.snapshot()
    assert snapshot["soc_percent"] == {"value": 57, "at_ms": START, "fresh": False}
    assert snapshot["capacity_wh"]["fresh"] is True


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b'{"battery_power_w": 100}', "missing_field"),
        (b'{"soc_percent": "full"}', "not_a_number"),
        (b'{"soc_percent": true}', "not_a_number"),
        (b'{"soc_percent": NaN}', "not_a_number"),
        (b'{"soc_percent": 140}', "out_of_range"),
        (b'{"soc_percent": 50, "state": "exploding"}', "unknown_state"),
        (b'{"soc_percent": 50, "state": 3}', "not_text"),
        (b'{"soc_percent": 50, "pad": "' + b"x" * 5000 + b'"}', "too_large"),
    ],
)
def test_malformed_payloads_are_rejected_logged_and_counted(
    payload: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    device = battery_device(SimulatedClock(START))
    with caplog.at_level(logging.WARNING, logger="edge_controller.devices.adapter"):
        device.receive("home/battery/telemetry", payload)

    assert device.stats.rejected[reason] >= 1
    assert any(reason in record.getMessage() for record in caplog.records)


def test_one_bad_value_does_not_spoil_the_good_ones_in_the_same_payload() -> None:
    device = battery_device(SimulatedClock(START))
    taken = device.receive(
        "home/battery/telemetry", b'{"soc_percent": 140, "battery_power_w": 1200, "state": "off"}'
    )
    assert taken == 2
    assert device.number(Quantity.SOC_PERCENT) is None
    power = device.number(Quantity.BATTERY_POWER_W)
    assert power is not None
    assert power.value == 1200
    assert device.stats.rejected["out_of_range"] == 1


def test_repeated_rejections_are_counted_but_not_logged_every_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    device = battery_device(SimulatedClock(START))
    with caplog.at_level(logging.WARNING, logger="edge_controller.devices.adapter"):
        for _ in range(150):
            device.receive("home/battery/telemetry", b"garbage")
    assert device.stats.rejected["invalid_json"] == 150
    assert len(caplog.records) == 2  # the first and the hundredth


def test_victron_null_value_clears_the_reading_instead_of_keeping_an_old_one() -> None:
    device = MqttDevice(
        "venus", victron_profile("abc", battery_capacity_wh=5000), SimulatedClock(START)
    )
    device.receive("N/abc/grid/30/Ac/Power", b'{"value": -1234.6}')
    grid = device.number(Quantity.GRID_POWER_W)
    assert grid is not None
    assert grid.value == -1235
    device.receive("N/abc/grid/30/Ac/Energy/Forward", b'{"value": 1234.5678}')
    imported = device.number(Quantity.IMPORT_ENERGY_WH)
    assert imported is not None
    assert imported.value == 1_234_568  # kWh on Venus, Wh here

    device.receive("N/abc/grid/30/Ac/Power", b'{"value": null}')
    assert device.number(Quantity.GRID_POWER_W) is None
    assert device.stats.unavailable == 1
    assert not device.stats.rejected


def test_capabilities_follow_the_hardware() -> None:
    clock = SimulatedClock(START)
    inverter = capabilities_of(MqttDevice("pv", opendtu_profile("solar", "1161", 800), clock))
    assert inverter.names() == ("power_meter", "energy_meter", "export_limiter")
    rating = inverter.device.number(Quantity.POWER_RATING_W)
    assert rating is not None
    assert rating.value == 800

    fuel_cell_profile = simple_generic_profile(
        "fc",
        [Quantity.POWER_W, Quantity.STATE, Quantity.HYDROGEN_G, Quantity.FAULT_CODES],
        [Command.START_STOP, Command.SETPOINT_W],
        constants={Quantity.POWER_RATING_W: 5000},
    )
    fuel_cell = capabilities_of(MqttDevice("fc", fuel_cell_profile, clock))
    assert fuel_cell.names() == ("power_meter", "generator", "fuel_cell")

    venus = capabilities_of(MqttDevice("venus", victron_profile("p", battery_capacity_wh=1), clock))
    assert venus.names() == (
        "power_meter",
        "grid_meter",
        "energy_meter",
        "battery",
        "export_limiter",
    )


def test_fuel_cell_hydrogen_turns_into_available_energy() -> None:
    clock = SimulatedClock(START)
    profile = simple_generic_profile(
        "fc", [Quantity.STATE, Quantity.HYDROGEN_G, Quantity.FAULT_CODES]
    )
    device = MqttDevice("fc", profile, clock)
    telemetry = capabilities_of(device).fuel_cell
    assert telemetry is not None
    assert telemetry.available_energy_wh() is None

    device.receive(
        "fc/telemetry",
        json.dumps(
            {"state": "running", "hydrogen_g": 1200, "fault_codes": [17, "low_h2"]}
        ).encode(),
    )
    energy = telemetry.available_energy_wh()
    assert energy is not None
    assert energy.value == 20_000  # 1.2 kg at 60 g/kWh
    state = telemetry.state()
    assert state is not None
    assert state.value is FuelCellState.RUNNING
    codes = telemetry.fault_codes()
    assert codes is not None
    assert codes.value == ("17", "low_h2")


async def test_commands_go_out_on_the_profile_topic_with_its_template() -> None:
    device = battery_device(SimulatedClock(START))
    battery = capabilities_of(device).battery
    assert battery is not None
    with pytest.raises(DeviceCommandError, match="not connected"):
        await battery.set_power_setpoint_w(-1500)

    publisher = RecordingPublisher()
    await device.on_connect(publisher)
    await battery.set_power_setpoint_w(-1500)
    assert publisher.sent == [("home/battery/cmd/battery_setpoint_w", b'{"value": -1500}', 1)]

    with pytest.raises(DeviceCommandError, match="does not take"):
        await device.send(Command.EXPORT_LIMIT_W, 0)


async def test_victron_keepalive_wakes_venus_then_repeats_without_full_republish() -> None:
    clock = SimulatedClock(START)
    device = MqttDevice("venus", victron_profile("abc", battery_capacity_wh=5000), clock)
    publisher = RecordingPublisher()

    await device.on_connect(publisher)
    await device.on_tick()
    clock.advance(29_000)
    await device.on_tick()
    assert publisher.sent == [("R/abc/keepalive", b"", 0)]

    clock.advance(1_000)
    await device.on_tick()
    topic, payload, _ = publisher.sent[-1]
    assert topic == "R/abc/keepalive"
    assert json.loads(payload) == {"keepalive-options": ["suppress-republish"]}
