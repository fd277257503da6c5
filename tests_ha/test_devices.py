"""Devices: the edge controller, and under it each inverter, battery, fuel cell and USB
port it reports; devices that disappear are removed with their entities, devices that
appear are added; a user may delete a stale device but not a current one."""

from __future__ import annotations

import copy

import pytest
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from syrupy.assertion import SnapshotAssertion

from custom_components.energy_p2p import async_remove_config_entry_device
from custom_components.energy_p2p.const import DOMAIN
from custom_components.energy_p2p.sensor import USB_SESSION_STATES

from .edge import EdgeHome, FakeEdge, eventually, until
from .entity_support import SITE, demo_entry, fake_entry, state_of, with_site_and_usb

pytestmark = pytest.mark.usefixtures("socket_enabled")


def devices_of(registry: dr.DeviceRegistry, entry_id: str) -> dict[str, dr.DeviceEntry]:
    """The entry's devices by name."""
    return {str(d.name): d for d in dr.async_entries_for_config_entry(registry, entry_id)}


async def test_the_device_hierarchy(
    hass: HomeAssistant,
    fake_edge: FakeEdge,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.SENSOR]) as entry:
        devices = devices_of(device_registry, entry.entry_id)
        assert sorted(devices) == [
            "Flat 3",
            "Flat 3 PV inverter",
            "Flat 3 USB port 1",
            "Flat 3 USB port 2",
            "Flat 3 battery",
            "Flat 3 fuel cell",
        ]
        edge = devices.pop("Flat 3")
        assert edge.via_device_id is None
        assert all(d.via_device_id == edge.id for d in devices.values())
        assert [devices_of(device_registry, entry.entry_id)[n] for n in sorted(devices)] == (
            snapshot
        )


async def test_a_device_that_disappears_is_removed_and_one_that_appears_added(
    hass: HomeAssistant,
    fake_edge: FakeEdge,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    edge = with_site_and_usb(fake_edge)
    async with fake_entry(hass, edge, [Platform.SENSOR, Platform.SWITCH]) as entry:
        coordinator = entry.runtime_data.coordinator
        fuel_cell = edge.responses["devices"]["devices"].pop()
        port_2 = edge.responses["usb"]["ports"].pop()
        await coordinator.async_refresh()
        await hass.async_block_till_done()
        names = set(devices_of(device_registry, entry.entry_id))
        assert "Flat 3 fuel cell" not in names
        assert "Flat 3 USB port 2" not in names
        for entity_id in (
            "sensor.flat_3_fuel_cell_hydrogen",
            "switch.flat_3_usb_port_2_open_for_charging",
        ):
            assert entity_registry.async_get(entity_id) is None
            assert hass.states.get(entity_id) is None
        assert state_of(hass, "sensor.flat_3_battery_state_of_charge") == "80"

        # They come back (over the event stream, for the fuel cell): devices and entities.
        edge.responses["usb"]["ports"].append(port_2)
        await coordinator.async_refresh()
        devices = [*edge.responses["devices"]["devices"], fuel_cell]
        await fake_edge.push("telemetry", {"devices": devices})
        await until(hass, lambda: hass.states.get("sensor.flat_3_fuel_cell_hydrogen") is not None)
        assert state_of(hass, "sensor.flat_3_fuel_cell_hydrogen") == "1499"
        assert state_of(hass, "switch.flat_3_usb_port_2_open_for_charging") == "off"
        assert len(devices_of(device_registry, entry.entry_id)) == 6

        # The edge controller going away is not its devices going away.
        fake_edge.failures["status"] = (500, {"error": {"code": "internal_error", "message": "x"}})
        await coordinator.async_refresh()
        assert len(devices_of(device_registry, entry.entry_id)) == 6
        assert state_of(hass, "sensor.flat_3_fuel_cell_hydrogen") == "unavailable"
        del fake_edge.failures["status"]


async def test_two_devices_of_a_kind_are_told_apart_by_their_ids(
    hass: HomeAssistant, fake_edge: FakeEdge, device_registry: dr.DeviceRegistry
) -> None:
    edge = with_site_and_usb(fake_edge)
    second = {**copy.deepcopy(SITE["devices"]["devices"][0]), "id": "garage"}
    edge.responses["devices"]["devices"].append(second)
    async with fake_entry(hass, edge, [Platform.SENSOR]) as entry:
        names = set(devices_of(device_registry, entry.entry_id))
        assert {"Flat 3 battery battery", "Flat 3 battery garage"} <= names
        assert state_of(hass, "sensor.flat_3_battery_garage_state_of_charge") == "80"


async def test_a_kind_of_device_the_integration_has_no_name_for_is_named_by_its_role(
    hass: HomeAssistant, fake_edge: FakeEdge, device_registry: dr.DeviceRegistry
) -> None:
    # The edge controller says which devices stand alone; a role new to the integration
    # (here a heat pump) needs no release of the integration to appear.
    edge = with_site_and_usb(fake_edge)
    heat_pump = {
        "id": "hp",
        "role": "heat_pump",
        "standalone": True,
        "capabilities": ["power_meter"],
        "power_w": {"value": 1_200, "age_s": 1, "fresh": True},
    }
    meter = {"id": "main", "role": "grid_meter", "standalone": False, "capabilities": []}
    edge.responses["devices"]["devices"] += [heat_pump, meter]
    async with fake_entry(hass, edge, [Platform.SENSOR]) as entry:
        names = set(devices_of(device_registry, entry.entry_id))
        assert "Flat 3 heat pump" in names
        assert state_of(hass, "sensor.flat_3_heat_pump_power") == "1200"
        assert not any("main" in n or "grid" in n for n in names)


async def test_a_user_may_delete_a_stale_device_but_not_a_current_one(
    hass: HomeAssistant, fake_edge: FakeEdge, device_registry: dr.DeviceRegistry
) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.SENSOR]) as entry:
        current = devices_of(device_registry, entry.entry_id)
        for device in current.values():
            assert not await async_remove_config_entry_device(hass, entry, device)
        # A device another install left behind (not reported by this edge controller).
        stale = device_registry.async_get_or_create(
            config_entry_id=entry.entry_id, identifiers={(DOMAIN, "ep-elsewhere_device_x")}
        )
        assert await async_remove_config_entry_device(hass, entry, stale)
    # Not loaded: what it reports is unknown, so any of its devices may go.
    assert await async_remove_config_entry_device(hass, entry, current["Flat 3 battery"])


async def test_a_real_edge_controllers_devices(
    hass: HomeAssistant, edge_demo: list[EdgeHome], device_registry: dr.DeviceRegistry
) -> None:
    sunny, hydrogen = edge_demo[0], edge_demo[1]
    async with demo_entry(hass, sunny, [Platform.SENSOR]) as entry:
        names = set(devices_of(device_registry, entry.entry_id))
        assert {"Sunny House", "Sunny House battery", "Sunny House PV inverter"} <= names
        assert 0 <= float(state_of(hass, "sensor.sunny_house_battery_state_of_charge")) <= 100
        assert float(state_of(hass, "sensor.sunny_house_pv_inverter_power")) >= 0
        assert state_of(hass, "sensor.sunny_house_grid_power") not in ("unknown", "unavailable")
    async with demo_entry(hass, hydrogen, [Platform.SENSOR]) as entry:
        names = set(devices_of(device_registry, entry.entry_id))
        assert names >= {"Hydrogen House", "Hydrogen House fuel cell"}
        assert float(state_of(hass, "sensor.hydrogen_house_fuel_cell_hydrogen")) > 0
        assert state_of(hass, "sensor.hydrogen_house_fuel_cell_state") in (
            "off",
            "starting",
            "running",
            "stopping",
        )
        coordinator = entry.runtime_data.coordinator

        async def registered() -> bool:
            # Once the registrar's registration of the fuel cell is in the ledger.
            await coordinator.async_refresh()
            await hass.async_block_till_done()
            available = state_of(hass, "sensor.hydrogen_house_fuel_cell_available_to_sell")
            return available not in ("unknown", "unavailable") and float(available) > 0

        await eventually(registered)


async def test_a_real_edge_controllers_usb_port(
    hass: HomeAssistant, edge_demo: list[EdgeHome], device_registry: dr.DeviceRegistry
) -> None:
    home = edge_demo[2]  # the demo's Flat 3 has a USB hub with a phone on port 1
    platforms = [Platform.SENSOR, Platform.BINARY_SENSOR, Platform.SWITCH]
    async with demo_entry(hass, home, platforms) as entry:
        usb = entry.runtime_data.coordinator.data.usb
        assert usb is not None
        ports = [p["port"] for p in usb["ports"]]
        names = set(devices_of(device_registry, entry.entry_id))
        assert {f"Flat 3 USB port {port}" for port in ports} <= names
        assert state_of(hass, "switch.flat_3_usb_port_1_open_for_charging") == "on"
        assert state_of(hass, "binary_sensor.flat_3_usb_port_1_phone_attached") in ("on", "off")
        assert state_of(hass, "sensor.flat_3_usb_port_1_session") in USB_SESSION_STATES
        assert float(state_of(hass, "sensor.flat_3_usb_port_1_power")) >= 0
