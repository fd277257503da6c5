"""Per-port power switching through hub class requests (as uhubctl does) and through sysfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_controller.devices.clock import SimulatedClock
from edge_controller.simulation import VirtualPhone, VirtualUsbWorld
from edge_controller.usb.hub import SysfsPortPower, UsbHub, open_hub, parse_location
from edge_controller.usb.types import (
    HubMissing,
    NoPortPowerControl,
    PortUnavailable,
    UsbError,
    UsbIdentity,
)

START = 1_717_200_000_000


def pixel(serial: str | None = "29311FDH2001AB", strings_fail: bool = False) -> VirtualPhone:
    return VirtualPhone(0x18D1, 0x4EE7, serial, "Google", "Pixel 7", strings_fail=strings_fail)


@pytest.fixture
def world() -> VirtualUsbWorld:
    return VirtualUsbWorld(SimulatedClock(START), ports=4)


def test_switches_one_port_off_and_on_and_reads_it_back(world: VirtualUsbWorld) -> None:
    hub = open_hub(backend=world.backend)
    assert hub.port_count == 4
    assert all(status.powered for status in hub.ports())  # hubs power ports at enumeration

    hub.set_power(3, False)
    assert [status.powered for status in hub.ports()] == [True, True, False, True]
    assert world.powered(3) is False and world.vbus(3) is False

    hub.set_power(3, True)
    assert hub.ports()[2].powered is True
    assert world.vbus(3) is True


def test_tells_who_is_plugged_into_which_port(world: VirtualUsbWorld) -> None:
    world.plug(2, pixel())
    world.plug(4, VirtualPhone(0x04E8, 0x6860, None, "SAMSUNG", "Galaxy"))
    hub = open_hub(backend=world.backend)

    statuses = {status.port: status for status in hub.ports()}
    assert statuses[1].connected is False and statuses[1].device is None
    assert statuses[2].connected is True
    assert statuses[2].device == UsbIdentity(0x18D1, 0x4EE7, "29311FDH2001AB", "Google", "Pixel 7")
    assert statuses[2].device.key == "18d1:4ee7:29311FDH2001AB"
    # A phone without a serial number is still recognised by vendor and product.
    assert statuses[4].device is not None
    assert statuses[4].device.serial is None
    assert statuses[4].device.key == "04e8:6860:-"

    world.unplug(2)
    after = hub.ports()[1]
    assert after.connected is False and after.device is None


def test_a_phone_that_refuses_its_strings_is_identified_by_vendor_and_product(
    world: VirtualUsbWorld,
) -> None:
    world.plug(1, pixel(strings_fail=True))
    device = open_hub(backend=world.backend).ports()[0].device
    assert device == UsbIdentity(0x18D1, 0x4EE7, None, None, None)
    assert device.key == "18d1:4ee7:-"


def test_unpowered_phone_stays_identified(world: VirtualUsbWorld) -> None:
    world.plug(1, pixel())
    hub = open_hub(backend=world.backend)
    hub.set_power(1, False)
    status = hub.ports()[0]
    assert (status.powered, status.connected) == (False, True)
    assert status.device is not None and status.device.serial == "29311FDH2001AB"


@pytest.mark.parametrize(("switching", "words"), [("ganged", "ganged"), ("none", "no power")])
def test_hub_without_per_port_power_is_refused_with_a_clear_message(
    world: VirtualUsbWorld, switching: str, words: str
) -> None:
    world.hub_without_port_power(switching)
    with pytest.raises(NoPortPowerControl) as caught:
        open_hub(backend=world.backend)
    assert caught.value.code == "no_port_power"
    assert words in str(caught.value)
    assert "uhubctl" in str(caught.value)
    assert "hub 2109:2817 on bus 1 port 1" in str(caught.value)


def test_ganged_hub_from_the_constructor_flag() -> None:
    world = VirtualUsbWorld(SimulatedClock(START), per_port_power=False)
    with pytest.raises(NoPortPowerControl):
        open_hub(backend=world.backend)


def test_usb3_hub_uses_the_superspeed_descriptor_and_power_bit() -> None:
    world = VirtualUsbWorld(SimulatedClock(START), ports=7, usb3=True)
    hub = open_hub(backend=world.backend)
    assert hub.port_count == 7
    hub.set_power(7, False)
    assert hub.ports()[6].powered is False
    assert world.vbus(7) is False


def test_finds_the_hub_by_location_and_ids(world: VirtualUsbWorld) -> None:
    assert open_hub(location="1-1", backend=world.backend).location == "1-1"
    hub = open_hub(vendor_id=0x2109, product_id=0x2817, backend=world.backend)
    assert hub.description == "hub 2109:2817 on bus 1 port 1"
    with pytest.raises(HubMissing) as caught:
        open_hub(location="1-1.3", backend=world.backend)
    assert caught.value.code == "hub_missing"
    assert "1-1.3" in str(caught.value)
    with pytest.raises(HubMissing):
        open_hub(vendor_id=0x05E3, backend=world.backend)


def test_rejects_a_malformed_location() -> None:
    assert parse_location("1-1.3") == (1, (1, 3))
    with pytest.raises(UsbError) as caught:
        parse_location("bus one")
    assert caught.value.code == "invalid_config"


def test_unknown_port_is_unavailable(world: VirtualUsbWorld) -> None:
    hub = open_hub(backend=world.backend)
    for port in (0, 5):
        with pytest.raises(PortUnavailable) as caught:
            hub.set_power(port, True)
        assert caught.value.code == "port_unavailable"


def test_hub_class_is_used_unchanged_on_a_found_device(world: VirtualUsbWorld) -> None:
    import usb.core

    device = usb.core.find(backend=world.backend, idVendor=0x2109, idProduct=0x2817)
    hub = UsbHub(device)
    hub.set_power(1, False)
    assert world.powered(1) is False


# --- sysfs (Linux >= 6.0) ---------------------------------------------------------------


def sysfs_tree(root: Path, hub: str = "1-1", ports: int = 4, with_disable: bool = True) -> Path:
    devices = root / "sys" / "bus" / "usb" / "devices"
    interface = devices / (f"{hub[3:]}-0:1.0" if hub.startswith("usb") else f"{hub}:1.0")
    for port in range(1, ports + 1):
        port_dir = interface / f"{hub}-port{port}"
        port_dir.mkdir(parents=True)
        if with_disable:
            (port_dir / "disable").write_text("0\n")
    return devices


def plug_sysfs(devices: Path, hub: str, port: int, **files: str) -> None:
    child_name = f"{hub[3:]}-{port}" if hub.startswith("usb") else f"{hub}.{port}"
    child = devices / child_name
    child.mkdir()
    for name, value in files.items():
        (child / name).write_text(value + "\n")
    interface = devices / (f"{hub[3:]}-0:1.0" if hub.startswith("usb") else f"{hub}:1.0")
    (interface / f"{hub}-port{port}" / "device").symlink_to(child)


def test_sysfs_switches_ports_through_the_disable_files(tmp_path: Path) -> None:
    devices = sysfs_tree(tmp_path)
    plug_sysfs(
        devices, "1-1", 2, idVendor="18d1", idProduct="4ee7", serial="ABC", product="Pixel 7"
    )
    power = SysfsPortPower("1-1", root=tmp_path)
    assert power.port_count == 4
    assert power.description == "hub 1-1 (sysfs)"

    power.set_power(2, False)
    disable = devices / "1-1:1.0" / "1-1-port2" / "disable"
    assert disable.read_text() == "1"
    statuses = power.ports()
    assert [s.powered for s in statuses] == [True, False, True, True]
    assert statuses[1].connected is True
    assert statuses[1].device == UsbIdentity(0x18D1, 0x4EE7, "ABC", None, "Pixel 7")
    assert statuses[0].connected is False and statuses[0].device is None

    power.set_power(2, True)
    assert disable.read_text() == "0"
    with pytest.raises(PortUnavailable):
        power.set_power(5, True)


def test_sysfs_root_hub_ports(tmp_path: Path) -> None:
    devices = sysfs_tree(tmp_path, hub="usb2", ports=2)
    plug_sysfs(devices, "usb2", 1, idVendor="04e8", idProduct="6860")
    power = SysfsPortPower("usb2", root=tmp_path)
    device = power.ports()[0].device
    assert device is not None and device.key == "04e8:6860:-"


def test_sysfs_without_disable_files_or_hub_is_reported(tmp_path: Path) -> None:
    with pytest.raises(HubMissing):
        SysfsPortPower("1-1", root=tmp_path)
    sysfs_tree(tmp_path, with_disable=False)
    with pytest.raises(NoPortPowerControl) as caught:
        SysfsPortPower("1-1", root=tmp_path)
    assert "6.0" in str(caught.value)
