"""Port power through Linux sysfs (`usb.hub: {sysfs: "1-1.3"}`), chosen by configuration:
the checks on the setting, opening the hardware, and sessions on a sysfs hub (a temporary
/sys tree) with the virtual FNIRSI meter in front of the port."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from edge_controller.config import ConfigError, parse_config
from edge_controller.refusal import Refusal
from edge_controller.usb.charging import HardwareOpener, open_hardware
from edge_controller.usb.hub import SysfsPortPower

from .test_hub import plug_sysfs, sysfs_tree
from .usb_support import UsbRig, new_rig, overshoot_allowed_mwh, phone

HUB = "1-1"


def parse_usb(tmp_path: Path, usb: dict[str, Any]) -> Any:
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    base = {"name": "Flat 3", "genesis": str(genesis), "community_broker": {"port": 1883}}
    return parse_config({**base, "usb": usb}, "edge.yaml", tmp_path).usb


def problems(tmp_path: Path, usb: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as mistakes:
        parse_usb(tmp_path, usb)
    return "\n".join(mistakes.value.problems)


def test_the_sysfs_hub_is_a_configuration_choice_checked_with_clear_errors(
    tmp_path: Path,
) -> None:
    usb = parse_usb(tmp_path, {"hub": {"sysfs": "1-1.3", "sysfs_root": "/srv/sys"}, "reopen_s": 3})
    assert usb.hub_sysfs == "1-1.3" and usb.hub_sysfs_root == "/srv/sys"
    assert usb.settings.reopen_ms == 3_000
    plain = parse_usb(tmp_path, {"hub": {"vendor_id": 0x2109}})
    assert plain.hub_sysfs is None and plain.settings.reopen_ms == 10_000
    assert parse_usb(tmp_path, {"hub": {"sysfs": "usb2"}}).hub_sysfs == "usb2"

    both = problems(tmp_path, {"hub": {"sysfs": "1-1.3", "vendor_id": 0x2109, "product_id": 1}})
    assert "usb.hub.sysfs: names the hub by its sysfs path; leave out product_id, vendor_id" in both
    assert "usb.hub.sysfs:" in problems(tmp_path, {"hub": {"sysfs": "1-1.3", "location": "1-1"}})
    assert "usb.hub.sysfs: sysfs hub 'hub one' is not of the form" in problems(
        tmp_path, {"hub": {"sysfs": "hub one"}}
    )
    assert "usb.hub.sysfs_root: only goes with usb.hub.sysfs" in problems(
        tmp_path, {"hub": {"sysfs_root": "/srv/sys"}}
    )
    assert "usb.reopen_s" in problems(tmp_path, {"reopen_s": 0})


def test_open_hardware_picks_sysfs_port_power_and_reads_who_is_plugged_in(
    tmp_path: Path,
) -> None:
    devices = sysfs_tree(tmp_path, hub=HUB, ports=2)
    plug_sysfs(
        devices, HUB, 2, idVendor="18d1", idProduct="4ee7", serial="PHONE9",
        manufacturer="Google", product="Pixel 8",
    )  # fmt: skip
    hardware = open_hardware(
        HardwareOpener(
            hub_sysfs=HUB,
            hub_sysfs_root=str(tmp_path),
            meter={"type": "typec", "typec_port": "port0", "root": str(tmp_path)},
            meter_port=2,
        )
    )
    assert isinstance(hardware.hub, SysfsPortPower) and hardware.hub_error is None
    assert hardware.hub_description == "hub 1-1 (sysfs)"
    status = hardware.hub.ports()[1]
    assert status.connected and status.device is not None
    assert status.device.key == "18d1:4ee7:PHONE9" and status.device.product == "Pixel 8"
    hardware.hub.set_power(2, False)
    assert (devices / "1-1:1.0" / "1-1-port2" / "disable").read_text() == "1"
    # No meter could be opened: kept as the error to show, nothing raised.
    assert hardware.meters == {}
    assert hardware.meter_error is not None and hardware.meter_error.code == "meter_missing"

    missing = open_hardware(
        HardwareOpener(
            hub_sysfs="1-4",
            hub_sysfs_root=str(tmp_path),
            meter={"type": "typec", "root": str(tmp_path)},
        )
    )
    assert missing.hub is None and missing.hub_error is not None
    assert missing.hub_error.code == "hub_missing" and "1-4" in missing.hub_error.message
    assert missing.hub_description == "hub 1-4 (sysfs)"


def disable_file(tmp_path: Path, port: int) -> Path:
    return tmp_path / "sys/bus/usb/devices" / f"{HUB}:1.0" / f"{HUB}-port{port}" / "disable"


async def test_a_phone_buys_a_charge_on_a_sysfs_hub(tmp_path: Path, mosquitto: Any) -> None:
    devices = sysfs_tree(tmp_path, hub=HUB, ports=2)  # the kernel leaves ports powered
    plug_sysfs(
        devices, HUB, 1, idVendor="18d1", idProduct="4ee7", serial="PHONE1",
        manufacturer="Google", product="Pixel 8",
    )  # fmt: skip
    rig = new_rig(tmp_path / "rig", mosquitto.port)
    rig.usb_options = {"hub_sysfs": HUB, "hub_sysfs_root": str(tmp_path)}
    # The same phone behind the virtual meter; the test wires its VBUS to the sysfs port.
    rig.world.plug(1, phone())
    disable = disable_file(tmp_path, 1)

    async def step(seconds: int = 1) -> None:
        for _ in range(seconds):
            if disable.exists():  # an unplugged hub powers nothing
                rig.world.set_port_power(1, disable.read_text().strip() == "0")
            await rig.step()

    try:
        await rig.start()
        assert disable.read_text() == "1" and disable_file(tmp_path, 2).read_text() == "1"
        await step()
        view = rig.usb.view()
        assert view["hub"]["description"] == "hub 1-1 (sysfs)" and view["hub"]["switchable"]
        identity = view["ports"][0]["attached"]["identity"]
        assert identity["key"] == "18d1:4ee7:PHONE1" and identity["manufacturer"] == "Google"
        await rig.pair()
        session = await rig.usb.purchase(1, energy_wh=1)
        assert session["state"] == "charging" and disable.read_text() == "0"
        for _ in range(600):
            if rig.usb.ports[1].session is None:
                break
            await step()
        ended = rig.usb.view()["sessions"][0]
        assert ended["id"] == session["id"] and ended["reason"] == "delivered"
        assert 900 <= ended["delivered_mwh"] <= 1_000 + overshoot_allowed_mwh(1_000)
        assert disable.read_text() == "1"

        # The hub unplugged: its sysfs directory goes; back: every port off again.
        interface = devices / f"{HUB}:1.0"
        shutil.move(interface, tmp_path / "away")
        await step()
        assert rig.usb.view()["hub"]["error"]["code"] == "hub_missing"
        shutil.move(tmp_path / "away", interface)
        disable.write_text("0")
        await step(10)
        assert rig.usb.view()["hub"]["error"] is None and disable.read_text() == "1"
    finally:
        await rig.stop()


async def test_a_sysfs_hub_without_a_meter_refuses_purchases_clearly(
    tmp_path: Path, mosquitto: Any
) -> None:
    devices = sysfs_tree(tmp_path, hub=HUB, ports=1)
    plug_sysfs(devices, HUB, 1, idVendor="18d1", idProduct="4ee7", serial="PHONE1")
    rig: UsbRig = new_rig(tmp_path / "rig", mosquitto.port)
    rig.virtual_usb = False
    rig.usb_options = {
        "hub_sysfs": HUB,
        "hub_sysfs_root": str(tmp_path),
        "meter": (("root", str(tmp_path)), ("type", "typec"), ("typec_port", "port0")),
    }
    rig.settings = rig.settings.__class__(ports=(1,), resource_prefix="test")
    try:
        await rig.start()
        await rig.step()
        await rig.pair()
        view = rig.usb.view()
        assert view["meter"]["ok"] is False and view["meter"]["error"]["code"] == "meter_missing"
        with pytest.raises(Refusal) as refused:
            await rig.usb.purchase(1, energy_wh=1)
        assert refused.value.code == "meter_missing" and "port0" in refused.value.message
        assert disable_file(tmp_path, 1).read_text() == "1"
        assert not rig.chain_records(kind="offer")
    finally:
        await rig.stop()
