"""Binary sensors: their states (snapshot); node online follows the edge controller and
its event stream and is never unavailable itself; phone attached follows the USB port."""

from __future__ import annotations

import pytest
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import snapshot_platform
from syrupy.assertion import SnapshotAssertion

from .edge import EdgeHome, FakeEdge, until
from .entity_support import USB, demo_entry, fake_entry, state_of, with_site_and_usb

pytestmark = pytest.mark.usefixtures("socket_enabled")

ONLINE = "binary_sensor.flat_3_online"


async def test_binary_sensors_snapshot(
    hass: HomeAssistant,
    fake_edge: FakeEdge,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.BINARY_SENSOR]) as entry:
        await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


@pytest.mark.usefixtures("fast_reconnect")
async def test_node_online_goes_off_not_unavailable_and_back_on(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    async with fake_entry(hass, fake_edge, [Platform.BINARY_SENSOR]) as entry:
        coordinator = entry.runtime_data.coordinator
        assert state_of(hass, ONLINE) == STATE_ON
        await fake_edge.stop()
        await until(hass, lambda: state_of(hass, ONLINE) == STATE_OFF)
        # Everything else is unavailable: the edge controller is gone.
        assert state_of(hass, "binary_sensor.flat_3_ledger_in_sync") == STATE_UNAVAILABLE
        assert not coordinator.last_update_success
        await fake_edge.start()  # same port: the stream reconnects and everything is read
        await until(hass, lambda: state_of(hass, ONLINE) == STATE_ON, within=30)
        assert state_of(hass, "binary_sensor.flat_3_ledger_in_sync") == STATE_ON


async def test_phone_attached_follows_the_port(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.BINARY_SENSOR]):
        assert state_of(hass, "binary_sensor.flat_3_usb_port_1_phone_attached") == STATE_ON
        assert state_of(hass, "binary_sensor.flat_3_usb_port_2_phone_attached") == STATE_OFF
        unplugged = {**USB["ports"][0], "attached": None, "session": None, "power_mw": 0}
        await fake_edge.push("usb", unplugged)
        await until(
            hass,
            lambda: state_of(hass, "binary_sensor.flat_3_usb_port_1_phone_attached") == STATE_OFF,
        )
        plugged = {**USB["ports"][1], "attached": USB["ports"][0]["attached"]}
        await fake_edge.push("usb", plugged)
        await until(
            hass,
            lambda: state_of(hass, "binary_sensor.flat_3_usb_port_2_phone_attached") == STATE_ON,
        )


async def test_a_real_edge_controller_is_online(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    async with demo_entry(hass, edge_demo[1], [Platform.BINARY_SENSOR]):
        assert state_of(hass, "binary_sensor.hydrogen_house_online") == STATE_ON
        assert state_of(hass, "binary_sensor.hydrogen_house_community_broker") == STATE_ON


async def test_ledger_in_sync_is_unknown_until_a_peer_answered(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    # A restarted edge controller that has heard no peer yet does not know.
    ledger = fake_edge.responses["status"]["ledger"]
    ledger.update(synced=None, sync_progress=None)
    async with fake_entry(hass, fake_edge, [Platform.BINARY_SENSOR]) as entry:
        assert state_of(hass, "binary_sensor.flat_3_ledger_in_sync") == STATE_UNKNOWN
        ledger.update(synced=False, sync_progress=0.5)  # a peer is ahead
        await entry.runtime_data.coordinator.async_refresh()
        assert state_of(hass, "binary_sensor.flat_3_ledger_in_sync") == STATE_OFF
        ledger.update(synced=True, sync_progress=1.0)
        await entry.runtime_data.coordinator.async_refresh()
        assert state_of(hass, "binary_sensor.flat_3_ledger_in_sync") == STATE_ON
