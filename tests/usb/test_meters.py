"""USB power meters: the FNIRSI HID protocol, energy integration, faults, and the PD contract."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from edge_controller.devices.clock import SimulatedClock
from edge_controller.simulation import VirtualPhone, VirtualUsbWorld
from edge_controller.usb.hub import open_hub
from edge_controller.usb.meters import (
    FnirsiMeter,
    TypecMeter,
    decode_fnirsi_packet,
    fnirsi_command,
    fnirsi_crc,
    open_meter,
)
from edge_controller.usb.types import MeterError, UsbError

START = 1_717_200_000_000


def report(samples: list[tuple[int, int]], kind: int = 0x04) -> bytes:
    """A FNIRSI report as the meter sends it: raw 10 µV / 10 µA ints, then the CRC."""
    body = bytearray([0xAA, kind])
    for volts_raw, amps_raw in samples:
        body += struct.pack("<iiHHBH", volts_raw, amps_raw, 612, 598, 1, 287)
    body.append(0x3C)
    body.append(fnirsi_crc(bytes(body[1:63])))
    return bytes(body)


def test_commands_carry_the_crc_the_meters_expect() -> None:
    # The byte sequences the open-source logger sends to real meters.
    assert fnirsi_command(0x81) == b"\xaa\x81" + bytes(61) + b"\x8e"
    assert fnirsi_command(0x82) == b"\xaa\x82" + bytes(61) + b"\x96"
    assert fnirsi_command(0x83) == b"\xaa\x83" + bytes(61) + b"\x9e"


def test_decodes_the_four_samples_of_a_data_report() -> None:
    packet = report([(512345, 150000), (512000, 149000), (511000, 0), (2000000, 300000)])
    samples = decode_fnirsi_packet(packet, check_crc=True)
    assert samples is not None
    assert [(s.voltage_uv, s.current_ua) for s in samples] == [
        (5_123_450, 1_500_000),
        (5_120_000, 1_490_000),
        (5_110_000, 0),
        (20_000_000, 3_000_000),
    ]
    assert samples[0].dp_mv == 612 and samples[0].dn_mv == 598
    assert samples[0].temperature_dc == 287
    assert samples[3].power_uw == 60_000_000  # 20 V x 3 A


def test_rejects_bad_crc_and_malformed_reports_and_skips_status_reports() -> None:
    good = report([(500000, 100000)] * 4)
    corrupted = good[:10] + bytes([good[10] ^ 0x01]) + good[11:]
    with pytest.raises(MeterError) as caught:
        decode_fnirsi_packet(corrupted, check_crc=True)
    assert caught.value.code == "meter_failed"
    assert "CRC" in str(caught.value)
    assert decode_fnirsi_packet(corrupted, check_crc=False) is not None  # older firmware
    with pytest.raises(MeterError):
        decode_fnirsi_packet(good[:40], check_crc=True)
    assert decode_fnirsi_packet(report([(0, 0)] * 4, kind=0x03), check_crc=True) is None


def charging_world(
    soc: float = 0.5, battery_wh: float = 3.0
) -> tuple[SimulatedClock, VirtualUsbWorld, VirtualPhone]:
    clock = SimulatedClock(START)
    world = VirtualUsbWorld(clock, ports=4, meter_port=2)
    phone = VirtualPhone(0x18D1, 0x4EE7, "A1", "Google", "Pixel", battery_wh=battery_wh, soc=soc)
    world.plug(2, phone)
    return clock, world, phone


def test_meter_energy_matches_what_the_phone_drew_over_a_whole_charge() -> None:
    clock, world, phone = charging_world()
    meter = open_meter({"type": "fnirsi"}, world.backend)
    assert isinstance(meter, FnirsiMeter)
    assert meter.description == "FNIRSI FNB58 (2e3c:5558) on bus 1 port 2"

    first = meter.read()
    assert first.energy_mwh == 0
    assert 4900 <= first.voltage_mv <= 5100
    assert first.power_mw == pytest.approx(15_000, rel=0.01)
    drawn_before = phone.delivered_wh
    samples = [first]
    while phone.soc < 1.0:
        clock.advance(1000)
        samples.append(meter.read())
    clock.advance(60_000)
    samples.append(meter.read())

    energies = [s.energy_mwh for s in samples]
    assert energies == sorted(energies)  # monotonic
    truth_mwh = (phone.delivered_wh - drawn_before) * 1000
    assert truth_mwh > 1500
    assert energies[-1] == pytest.approx(truth_mwh, rel=0.01)
    # Constant current first, then the taper, then nothing once the phone is full.
    assert samples[10].power_mw > 14_000
    tail = [s.power_mw for s in samples if s.power_mw > 0][-1]
    assert 0 < tail < 1500
    assert samples[-1].power_mw == 0
    assert samples[-1].time_ms - samples[0].time_ms == (len(samples) - 2) * 1000 + 60_000


def test_meter_detaches_the_kernel_hid_driver_and_sends_the_start_commands() -> None:
    _, world, _ = charging_world()
    assert world.meter.kernel_driver == {0}
    meter = open_meter({"type": "fnirsi"}, world.backend)
    meter.read()
    meter.read()
    assert world.meter.kernel_driver == set()
    assert world.meter.commands == [0x81, 0x82, 0x82, 0x83, 0x83]


def test_meter_reads_nothing_on_an_unpowered_port() -> None:
    clock, world, phone = charging_world()
    open_hub(backend=world.backend).set_power(2, False)
    meter = open_meter({"type": "fnirsi"}, world.backend)
    meter.read()
    clock.advance(600_000)
    sample = meter.read()
    assert (sample.voltage_mv, sample.current_ma, sample.power_mw, sample.energy_mwh) == (
        0,
        0,
        0,
        0,
    )
    assert phone.delivered_wh == 0


def test_silent_meter_fails_and_recovers_after_healing() -> None:
    clock, world, _ = charging_world()
    meter = open_meter({"type": "fnirsi"}, world.backend)
    meter.read()
    world.meter.fail()
    clock.advance(1000)
    with pytest.raises(MeterError) as caught:
        meter.read()
    assert caught.value.code == "meter_failed"
    assert "no data within 1000 ms" in str(caught.value)
    world.meter.heal()
    clock.advance(1000)
    assert meter.read().power_mw > 0


def test_absurd_values_are_refused_and_not_counted() -> None:
    clock, world, _ = charging_world()
    meter = open_meter({"type": "fnirsi"}, world.backend)
    meter.read()
    clock.advance(1000)
    before = meter.read().energy_mwh
    world.meter.absurd()
    clock.advance(1000)
    with pytest.raises(MeterError) as caught:
        meter.read()
    assert caught.value.code == "meter_absurd"
    assert "no USB port carries" in str(caught.value)
    world.meter.heal()
    clock.advance(1000)
    assert meter.read().energy_mwh >= before


def test_meter_gone_from_the_bus_is_missing() -> None:
    clock, world, _ = charging_world()
    meter = open_meter({"type": "fnirsi"}, world.backend)
    meter.read()
    world.meter.remove()
    clock.advance(1000)
    with pytest.raises(MeterError) as caught:
        meter.read()
    assert caught.value.code == "meter_missing"
    with pytest.raises(MeterError) as caught:
        open_meter({"type": "fnirsi"}, world.backend)
    assert caught.value.code == "meter_missing"
    assert "FNB58" in str(caught.value)


def test_open_meter_by_ids_location_and_unknown_type() -> None:
    _, world, _ = charging_world()
    meter = open_meter(
        {"type": "fnirsi", "vendor_id": 0x2E3C, "product_id": 0x5558, "location": "1-2"},
        world.backend,
    )
    assert meter.read().voltage_mv > 0
    with pytest.raises(MeterError):
        open_meter({"type": "fnirsi", "location": "1-3"}, world.backend)
    with pytest.raises(UsbError) as caught:
        open_meter({"type": "shunt"}, world.backend)
    assert caught.value.code == "invalid_config"


# --- the Linux Type-C / USB-PD contract -------------------------------------------------


def typec_tree(root: Path, mode: str = "usb_power_delivery", partner: bool = True) -> Path:
    port = root / "sys" / "class" / "typec" / "port0"
    port.mkdir(parents=True)
    (port / "power_operation_mode").write_text(mode + "\n")
    (port / "power_role").write_text("[source] sink\n")
    if partner:
        (port / "port0-partner").mkdir()
    pd = root / "sys" / "class" / "usb_power_delivery" / "pd0"
    for position, volts, amps in ((1, "5000mV", "3000mA"), (2, "9000mV", "2000mA")):
        pdo = pd / "source-capabilities" / f"{position}:fixed_supply"
        pdo.mkdir(parents=True)
        (pdo / "voltage").write_text(volts + "\n")
        (pdo / "maximum_current").write_text(amps + "\n")
    (port / "usb_power_delivery").symlink_to(pd)
    return port


def test_typec_meter_integrates_the_pd_contract(tmp_path: Path) -> None:
    typec_tree(tmp_path)
    clock = SimulatedClock(START)
    meter = open_meter(
        {"type": "typec", "typec_port": "port0", "root": str(tmp_path), "pdo": 2}, clock=clock
    )
    assert isinstance(meter, TypecMeter)
    assert "not a measurement" in meter.description
    first = meter.read()
    assert (first.voltage_mv, first.current_ma, first.power_mw) == (9000, 2000, 18_000)
    clock.advance(1_800_000)  # half an hour at 18 W
    assert meter.read().energy_mwh == 9000


def test_typec_meter_type_c_current_modes_and_no_partner(tmp_path: Path) -> None:
    port = typec_tree(tmp_path, mode="1.5A")
    clock = SimulatedClock(START)
    meter = TypecMeter("port0", root=tmp_path, clock=clock)
    assert (meter.read().voltage_mv, meter.read().current_ma) == (5000, 1500)
    (port / "port0-partner").rmdir()
    assert meter.read().power_mw == 0


def test_typec_meter_prefers_the_power_supply_figures(tmp_path: Path) -> None:
    typec_tree(tmp_path)
    supply = tmp_path / "sys" / "class" / "power_supply" / "ucsi-source-psy-USBC000:001"
    supply.mkdir(parents=True)
    (supply / "online").write_text("1\n")
    (supply / "voltage_now").write_text("5000000\n")
    (supply / "current_now").write_text("2400000\n")
    meter = TypecMeter(
        "port0", root=tmp_path, clock=SimulatedClock(START), power_supply=supply.name
    )
    assert meter.read().power_mw == 12_000


def test_typec_meter_errors(tmp_path: Path) -> None:
    with pytest.raises(MeterError) as caught:
        TypecMeter("port0", root=tmp_path)
    assert caught.value.code == "meter_missing"
    port = typec_tree(tmp_path)
    pdo = tmp_path / "sys" / "class" / "usb_power_delivery" / "pd0" / "source-capabilities"
    (pdo / "1:fixed_supply" / "voltage").write_text("60000mV\n")
    meter = TypecMeter("port0", root=tmp_path, clock=SimulatedClock(START))
    with pytest.raises(MeterError) as caught:
        meter.read()
    assert caught.value.code == "meter_absurd"
    (port / "power_operation_mode").write_text("warp\n")
    with pytest.raises(MeterError) as caught:
        meter.read()
    assert caught.value.code == "meter_failed"
