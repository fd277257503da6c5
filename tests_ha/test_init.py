"""Setting up, unloading and reloading an entry; what happens when the edge controller
refuses, is missing, or speaks another API version; going away and coming back."""

from __future__ import annotations

import asyncio
import logging

import pytest
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_p2p.const import DOMAIN

from .edge import EdgeHome, FakeEdge, LoopbackProxy, until

pytestmark = pytest.mark.usefixtures("socket_enabled")

BALANCE = "sensor.flat_3_wallet_balance"


async def set_up(hass: HomeAssistant, unique_id: str, data: dict[str, object]) -> MockConfigEntry:
    entry = MockConfigEntry(domain=DOMAIN, unique_id=unique_id, title="Flat 3", data=data)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def ours_above_debug(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the integration logged above debug level."""
    return [
        r
        for r in caplog.records
        if r.name.startswith("custom_components.energy_p2p") and r.levelno > logging.DEBUG
    ]


async def test_set_up_unload_and_reload_against_a_real_edge_controller(
    hass: HomeAssistant,
    edge_demo: list[EdgeHome],
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    home = edge_demo[2]
    entry = await set_up(hass, home.account, home.entry_data())
    assert entry.state is ConfigEntryState.LOADED
    coordinator = entry.runtime_data.coordinator
    assert coordinator.data.node_id == home.account

    device = device_registry.async_get_device_by_identifier((DOMAIN, home.account), entry.entry_id)
    assert device is not None
    assert device.name == "Flat 3"
    assert device.manufacturer == "Energy P2P"
    assert device.sw_version == "0.1.0"
    assert device.serial_number == home.account
    assert device.configuration_url == f"http://{home.host}:{home.port}/"
    entities = er.async_entries_for_config_entry(entity_registry, entry.entry_id)
    # Flat 3 (a meter, no battery or PV): 29 entities of its own (the three spending
    # limits among them), 3 of the market monitoring station, and 9 per USB port.
    usb = coordinator.data.usb
    assert len(entities) == 29 + 3 + 9 * len(usb["ports"] if usb else [])
    assert all(e.unique_id.startswith(f"{home.account}_") for e in entities)

    # The event stream connects and reports.
    await until(hass, lambda: coordinator.stream_connected)

    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert hass.states.get(BALANCE) is not None

    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert hass.states.get(BALANCE).state == STATE_UNAVAILABLE


async def test_a_refused_token_asks_for_a_new_one(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[2]
    entry = await set_up(hass, home.account, home.entry_data(token="revoked"))
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [SOURCE_REAUTH]
    assert flows[0]["context"]["entry_id"] == entry.entry_id


async def test_an_absent_edge_controller_is_retried(
    hass: HomeAssistant, edge_demo: list[EdgeHome], unused_tcp_port: int
) -> None:
    home = edge_demo[2]
    entry = await set_up(hass, home.account, home.entry_data(port=unused_tcp_port))
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_another_api_version_is_not_set_up(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    fake_edge.responses["status"]["api_version"] = 2
    entry = await set_up(hass, fake_edge.node_id, fake_edge.entry_data())
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert "API version 2" in str(entry.reason)


async def test_entities_go_unavailable_when_the_edge_controller_goes_and_return_with_it(
    hass: HomeAssistant,
    edge_demo: list[EdgeHome],
    fast_reconnect: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    home = edge_demo[2]
    # The real edge controller, reached through a proxy the test can cut.
    proxy = LoopbackProxy(home.port)
    await proxy.start()
    try:
        entry = await set_up(hass, home.account, home.entry_data(port=proxy.port))
        coordinator = entry.runtime_data.coordinator
        await until(hass, lambda: coordinator.stream_connected)
        assert hass.states.get(BALANCE).state != STATE_UNAVAILABLE

        caplog.clear()
        caplog.set_level(logging.DEBUG)
        await proxy.stop()
        await until(hass, lambda: hass.states.get(BALANCE).state == STATE_UNAVAILABLE)
        # Still gone at the periodic resync: nothing more is logged above debug.
        await coordinator.async_refresh()
        await coordinator.async_refresh()
        await asyncio.sleep(0.5)  # several reconnect attempts
        gone = ours_above_debug(caplog)
        assert len(gone) == 1
        assert gone[0].levelno == logging.ERROR
        # The log names the home, not only where it was reached.
        assert home.name in gone[0].getMessage()

        caplog.clear()
        await proxy.start()
        await until(hass, lambda: hass.states.get(BALANCE).state != STATE_UNAVAILABLE)
        await until(hass, lambda: coordinator.stream_connected)
        back = ours_above_debug(caplog)
        assert len(back) == 1
        assert "recovered" in back[0].getMessage()
        float(hass.states.get(BALANCE).state)
        assert entry.state is ConfigEntryState.LOADED
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await proxy.stop()


async def test_entities_go_unavailable_as_soon_as_the_event_stream_closes(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    entry = await set_up(hass, fake_edge.node_id, fake_edge.entry_data())
    coordinator = entry.runtime_data.coordinator
    await until(hass, lambda: coordinator.stream_connected)

    # A stopping edge controller closes its WebSocket first; its REST API may still answer.
    await fake_edge.close_streams()
    # Well before the first reconnect (1 s) or any refresh could decide it.
    await until(hass, lambda: hass.states.get(BALANCE).state == STATE_UNAVAILABLE, within=0.5)
    # The reconnect reads everything again and brings the entities back.
    await until(hass, lambda: coordinator.stream_connected, within=10)
    assert hass.states.get(BALANCE).state != STATE_UNAVAILABLE
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize("refusal", ["event", "close", "handshake"])
async def test_a_token_refused_by_the_websocket_starts_reauth(
    hass: HomeAssistant, fake_edge: FakeEdge, fast_reconnect: None, refusal: str
) -> None:
    """However the WebSocket refuses the token (an error event and close 4401, close 4401
    alone, a 401 handshake), the stream stops and the user is asked for a new token."""
    fake_edge.ws_refusal = refusal
    entry = await set_up(hass, fake_edge.node_id, fake_edge.entry_data())
    coordinator = entry.runtime_data.coordinator
    await until(hass, lambda: coordinator.stream_connected)

    fake_edge.token = "rotated"
    await fake_edge.close_streams()
    await until(hass, lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)))
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [SOURCE_REAUTH]
    requests = len(fake_edge.requests)
    await asyncio.sleep(0.5)  # several reconnect delays: the stream has stopped for good
    assert fake_edge.clients == 0
    assert all(not r.endswith(" ws") for r in fake_edge.requests[requests:])


async def test_a_token_revoked_while_running_starts_reauth(
    hass: HomeAssistant, fake_edge: FakeEdge, fast_reconnect: None
) -> None:
    entry = await set_up(hass, fake_edge.node_id, fake_edge.entry_data())
    coordinator = entry.runtime_data.coordinator
    await until(hass, lambda: coordinator.stream_connected)

    fake_edge.token = "rotated"
    await fake_edge.stop()  # the WebSocket drops, and the token is refused from now on
    await fake_edge.start()
    await until(hass, lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)))
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [SOURCE_REAUTH]
    assert hass.states.get(BALANCE).state == STATE_UNAVAILABLE
