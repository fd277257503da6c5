"""The virtual USB world: a real pyusb backend, phones with a CC/CV charge curve, faults."""

from __future__ import annotations

import pytest
import usb.backend
import usb.core

from edge_controller.devices.clock import SimulatedClock
from edge_controller.simulation import VirtualPhone, VirtualUsbWorld
from edge_controller.usb.hub import open_hub
from edge_controller.usb.meters import open_meter

START = 1_717_200_000_000
HOUR = 3_600_000


def phone(soc: float = 0.2, serial: str | None = "S1") -> VirtualPhone:
    return VirtualPhone(0x18D1, 0x4EE7, serial, "Google", "Pixel", battery_wh=15.0, soc=soc)


def test_pyusb_finds_the_hub_the_meter_and_plugged_phones() -> None:
    world = VirtualUsbWorld(SimulatedClock(START), ports=4)
    assert isinstance(world.backend, usb.backend.IBackend)
    world.plug(3, phone())

    found = {
        (d.idVendor, d.idProduct): d for d in usb.core.find(find_all=True, backend=world.backend)
    }
    assert (0x2109, 0x2817) in found and found[(0x2109, 0x2817)].bDeviceClass == 0x09
    assert (0x2E3C, 0x5558) in found  # the FNIRSI FNB58
    plugged = found[(0x18D1, 0x4EE7)]
    assert plugged.bus == 1 and plugged.port_numbers == (1, 3)
    assert plugged.parent.idProduct == 0x2817
    assert plugged.serial_number == "S1" and plugged.manufacturer == "Google"
    first_address = plugged.address

    world.unplug(3)
    assert usb.core.find(backend=world.backend, idVendor=0x18D1) is None
    with pytest.raises(usb.core.USBError):
        plugged.ctrl_transfer(0x80, 6, 0x0100, 0, 18)  # its handle is gone with it
    world.plug(3, phone())
    again = usb.core.find(backend=world.backend, idVendor=0x18D1)
    assert again.address != first_address  # re-enumerated


def test_phone_draws_nothing_while_its_port_is_off() -> None:
    clock = SimulatedClock(START)
    world = VirtualUsbWorld(clock)
    handset = phone(soc=0.3)
    world.plug(1, handset)
    hub = open_hub(backend=world.backend)
    hub.set_power(1, False)
    clock.advance(2 * HOUR)
    world.sync()
    assert handset.soc == 0.3 and handset.delivered_wh == 0.0

    hub.set_power(1, True)
    clock.advance(HOUR // 2)
    world.sync()
    assert handset.delivered_wh == pytest.approx(7.5, rel=0.01)  # 15 W for half an hour
    assert handset.soc == pytest.approx(0.3 + 7.5 * 0.9 / 15, rel=0.01)


def test_charge_curve_is_flat_then_tapers_and_stops_when_full() -> None:
    assert phone(soc=0.2).demand_w() == 15.0
    assert phone(soc=0.79).demand_w() == 15.0
    assert phone(soc=0.9).demand_w() == pytest.approx(7.5)
    assert 0.5 <= phone(soc=0.995).demand_w() <= 1.2
    assert phone(soc=1.0).demand_w() == 0.0

    clock = SimulatedClock(START)
    world = VirtualUsbWorld(clock)
    handset = phone(soc=0.95)
    world.plug(2, handset)
    clock.advance(10 * HOUR)
    world.sync()
    assert handset.soc == 1.0
    drawn = handset.delivered_wh
    assert drawn == pytest.approx(0.05 * 15 / 0.9, rel=0.01)
    clock.advance(HOUR)
    world.sync()
    assert handset.delivered_wh == drawn  # full: draws nothing more


def test_hub_that_keeps_vbus_on_shows_the_caveat() -> None:
    # Some hubs report a port off but leave VBUS on; the meter is what tells.
    clock = SimulatedClock(START)
    world = VirtualUsbWorld(clock, vbus_follows_power=False, meter_port=1)
    handset = phone()
    world.plug(1, handset)
    hub = open_hub(backend=world.backend)
    hub.set_power(1, False)
    assert hub.ports()[0].powered is False
    meter = open_meter({"type": "fnirsi"}, world.backend)
    assert meter.read().power_mw > 10_000
    clock.advance(60_000)
    world.sync()
    assert handset.delivered_wh > 0


def test_upstream_meter_sums_every_port() -> None:
    clock = SimulatedClock(START)
    world = VirtualUsbWorld(clock, meter_port=None)
    world.plug(1, phone(serial="A"))
    world.plug(4, phone(serial="B", soc=0.9))
    sample = open_meter({"type": "fnirsi"}, world.backend).read()
    assert sample.power_mw == pytest.approx(15_000 + 7_500, rel=0.01)


def test_world_rejects_impossible_setups() -> None:
    clock = SimulatedClock(START)
    with pytest.raises(ValueError):
        VirtualUsbWorld(clock, ports=0)
    with pytest.raises(ValueError):
        VirtualUsbWorld(clock, ports=2, meter_port=3)
    world = VirtualUsbWorld(clock)
    world.plug(1, phone())
    with pytest.raises(ValueError):
        world.plug(1, phone())
    with pytest.raises(ValueError):
        VirtualPhone(1, 2, None, soc=1.5)


def test_usb_pd_phone_draws_its_power_at_the_contract_voltage() -> None:
    # A 60 W device on a 20 V contract: 3 A through the meter, well inside its 6 A.
    clock = SimulatedClock(START)
    world = VirtualUsbWorld(clock, meter_port=1)
    tablet = VirtualPhone(
        0x18D1, 0x4EE7, "T1", battery_wh=40.0, soc=0.2, max_power_w=60.0, pd_voltage_mv=20_000
    )
    world.plug(1, tablet)
    meter = open_meter({"type": "fnirsi"}, world.backend)
    first = meter.read()
    assert 19_900 <= first.voltage_mv <= 20_100
    assert first.current_ma == pytest.approx(3_000, rel=0.01)
    assert first.power_mw == pytest.approx(60_000, rel=0.01)

    clock.advance(60_000)  # a minute at 60 W: 1 Wh, on the phone's side and the meter's
    later = meter.read()
    assert tablet.delivered_wh == pytest.approx(1.0, rel=0.01)
    assert later.energy_mwh == pytest.approx(1_000, rel=0.02)
    # The same CC/CV taper above 80 %, still at 20 V.
    tablet.soc = 0.9
    assert tablet.demand_w() == pytest.approx(30.0)
    assert 19_900 <= meter.read().voltage_mv <= 20_100


def test_usb_pd_contract_must_be_a_pd_voltage_within_5_amps() -> None:
    with pytest.raises(ValueError, match="USB-PD contract"):
        VirtualPhone(1, 2, None, pd_voltage_mv=12_345)
    with pytest.raises(ValueError, match="more than 5 A"):
        VirtualPhone(1, 2, None, max_power_w=60.0)  # 12 A at 5 V
    assert VirtualPhone(1, 2, None, max_power_w=100.0, pd_voltage_mv=20_000).voltage_v() < 20.1
