"""Sensor and binary-sensor states: the real demo's, and exact figures from recorded
responses; WebSocket events change them as they arrive; the periodic resync."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from homeassistant.const import STATE_OFF, STATE_ON, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.energy_p2p.const import DOMAIN, RESYNC_INTERVAL

from .edge import RECORDED, EdgeHome, FakeEdge, eventually, until
from .entity_support import USB, fake_entry, with_site_and_usb

pytestmark = pytest.mark.usefixtures("socket_enabled")


def now_ms() -> int:
    return int(dt_util.utcnow().timestamp() * 1000)


@pytest.fixture
async def entry(hass: HomeAssistant, fake_edge: FakeEdge) -> AsyncIterator[MockConfigEntry]:
    """An entry set up against the fake edge controller, its event stream connected.

    The recorded trade is made today's (the other recorded times stay as they were)."""
    fake_edge.responses["trades"]["trades"][0]["time"] = now_ms() - 1000
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id=fake_edge.node_id, title="Flat 3", data=fake_edge.entry_data()
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await until(hass, lambda: entry.runtime_data.coordinator.stream_connected)
    yield entry
    assert await hass.config_entries.async_unload(entry.entry_id)


def state(hass: HomeAssistant, entity_id: str) -> str:
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return current.state


def unit(hass: HomeAssistant, entity_id: str) -> Any:
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return current.attributes.get("unit_of_measurement")


async def test_sensors_show_the_edge_controllers_figures_in_user_units(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    # Recorded: balance 199985 and escrow 15 milli-DEMO, one trade of 50 Wh at 300 per kWh,
    # one open offer, ledger height 4, two peers online.
    assert state(hass, "sensor.flat_3_wallet_balance") == "199.985"
    assert unit(hass, "sensor.flat_3_wallet_balance") == "DEMO"
    assert state(hass, "sensor.flat_3_escrow") == "0.015"
    assert state(hass, "sensor.flat_3_energy_bought") == "0.0"
    assert unit(hass, "sensor.flat_3_energy_bought") == "kWh"
    assert state(hass, "sensor.flat_3_energy_sold") == "0.0"
    assert state(hass, "sensor.flat_3_market_average_price") == "0.3"
    assert unit(hass, "sensor.flat_3_market_average_price") == "DEMO/kWh"
    assert state(hass, "sensor.flat_3_market_last_price") == "0.3"
    assert state(hass, "sensor.flat_3_market_volume") == "50"
    assert unit(hass, "sensor.flat_3_market_volume") == "Wh"
    assert state(hass, "sensor.flat_3_open_offers") == "1"
    assert state(hass, "sensor.flat_3_trades_today") == "1"
    assert state(hass, "sensor.flat_3_ledger_height") == "4"
    assert state(hass, "sensor.flat_3_peers_online") == "2"
    assert state(hass, "sensor.flat_3_last_block") == "2026-11-22T03:02:45+00:00"
    assert state(hass, "binary_sensor.flat_3_ledger_in_sync") == STATE_ON
    assert state(hass, "binary_sensor.flat_3_prepaid_cut_off") == STATE_OFF
    assert state(hass, "binary_sensor.flat_3_community_broker") == STATE_ON


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities_snapshot(
    hass: HomeAssistant,
    fake_edge: FakeEdge,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Every sensor of a home with every kind of device and a USB hub: how it is
    registered (unique id, category, device and state class, translation key, unit) and
    its state, from recorded responses."""
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.SENSOR]) as entry:
        await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


async def test_device_readings_in_user_units(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    # Recorded: the site's PV makes 5996 W, exports 3145 W to the grid, the battery is at
    # 80 % of 5000 Wh charging at 2500 W (3970 Wh stored, 1970 Wh above the policy's 40 %
    # reserve: what is there to sell); the fuel cell runs at 2000 W with
    # 1499 g of hydrogen (25 kWh to sell); a phone draws 9.65 W on USB port 1.
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.SENSOR]):
        assert state(hass, "sensor.flat_3_grid_power") == "-3145"
        assert state(hass, "sensor.flat_3_pv_inverter_power") == "5996"
        assert state(hass, "sensor.flat_3_battery_state_of_charge") == "80"
        assert state(hass, "sensor.flat_3_battery_power") == "2500"
        assert state(hass, "sensor.flat_3_battery_available_to_sell") == "1.97"
        assert unit(hass, "sensor.flat_3_battery_available_to_sell") == "kWh"
        assert state(hass, "sensor.flat_3_fuel_cell_power") == "2000"
        assert state(hass, "sensor.flat_3_fuel_cell_hydrogen") == "1499"
        assert unit(hass, "sensor.flat_3_fuel_cell_hydrogen") == "g"
        assert state(hass, "sensor.flat_3_fuel_cell_state") == "running"
        # 25 kWh of hydrogen, 50 Wh of it already sold.
        assert state(hass, "sensor.flat_3_fuel_cell_available_to_sell") == "24.95"
        assert state(hass, "sensor.flat_3_usb_port_1_power") == "9.65"
        assert state(hass, "sensor.flat_3_usb_port_1_session_energy") == "1.234"
        assert state(hass, "sensor.flat_3_usb_port_1_session") == "charging"
        assert state(hass, "sensor.flat_3_usb_port_2_power") == "0.0"
        assert state(hass, "sensor.flat_3_usb_port_2_session_energy") == "0.0"
        assert state(hass, "sensor.flat_3_usb_port_2_session") == "idle"
        # Voltage and current are there for the curious: disabled until enabled.
        assert hass.states.get("sensor.flat_3_usb_port_1_voltage") is None


async def test_available_to_sell_is_above_the_reserve_and_not_yet_sold(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    edge = with_site_and_usb(fake_edge)
    battery = edge.responses["devices"]["devices"][0]
    battery["resource"]["committed_wh"] = 500
    edge.responses["policy"]["sell"]["battery"]["reserve_percent"] = 20
    async with fake_entry(hass, edge, [Platform.SENSOR]) as entry:
        # 3970 Wh stored, 1000 Wh kept (20 % of 5000 Wh), 500 Wh already sold.
        assert state(hass, "sensor.flat_3_battery_available_to_sell") == "2.47"
        coordinator = entry.runtime_data.coordinator
        policy = {**coordinator.data.policy}
        policy["sell"] = {**policy["sell"], "battery": {"reserve_percent": 90}}
        coordinator.async_apply("policy", policy)
        await hass.async_block_till_done()
        # Below the reserve: nothing to sell, never a negative amount.
        assert state(hass, "sensor.flat_3_battery_available_to_sell") == "0.0"


async def test_stale_and_odd_readings_are_unknown(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    edge = with_site_and_usb(fake_edge)
    battery, pv, grid, fuel_cell = edge.responses["devices"]["devices"]
    battery["soc_percent"]["fresh"] = False
    fuel_cell["state"]["value"] = "exploded"
    del fuel_cell["resource"]
    async with fake_entry(hass, edge, [Platform.SENSOR]) as entry:
        assert state(hass, "sensor.flat_3_battery_state_of_charge") == "unknown"
        assert state(hass, "sensor.flat_3_fuel_cell_state") == "unknown"
        # No ledger resource behind it (yet): nothing known to sell.
        assert state(hass, "sensor.flat_3_fuel_cell_available_to_sell") == "unknown"
        # Telemetry from a home whose grid meter stopped reporting its power.
        grid_without_power = {k: v for k, v in grid.items() if k != "grid_power_w"}
        devices = [battery, pv, {**grid_without_power, "power_w": grid["power_w"]}, fuel_cell]
        await fake_edge.push("telemetry", {"devices": devices})
        await until(hass, lambda: entry.runtime_data.coordinator.data.devices == devices)
        assert state(hass, "sensor.flat_3_grid_power") == "unknown"


async def test_usb_events_change_the_port_sensors(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.SENSOR]):
        port = USB["ports"][0]
        session = {**port["session"], "delivered_mwh": 2500}
        await fake_edge.push("usb", {**port, "power_mw": 4000, "session": session})
        await until(hass, lambda: state(hass, "sensor.flat_3_usb_port_1_power") == "4.0")
        assert state(hass, "sensor.flat_3_usb_port_1_session_energy") == "2.5"
        ended = {**session, "state": "ended", "reason": "delivered", "ended": now_ms()}
        await fake_edge.push("usb_session", {"phase": "ended", "session": ended})
        await until(hass, lambda: state(hass, "sensor.flat_3_usb_port_1_session") == "ended")
        odd = {**ended, "state": "exploded", "delivered_mwh": None}
        await fake_edge.push("usb_session", {"phase": "ended", "session": odd})
        await until(hass, lambda: state(hass, "sensor.flat_3_usb_port_1_session") == "unknown")
        assert state(hass, "sensor.flat_3_usb_port_1_session_energy") == "unknown"


async def test_usb_events_without_usb_or_a_port_number_change_nothing(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    # The recorded home has no USB (GET usb is 404): its events wait for the next full read.
    coordinator = entry.runtime_data.coordinator
    assert coordinator.data.usb is None
    before = coordinator.data
    await fake_edge.push("usb", USB["ports"][0])
    await fake_edge.push("usb_session", {"phase": "started", "session": USB["sessions"][0]})
    await fake_edge.push("wallet", {**RECORDED["wallet"], "balance": 3})
    await until(hass, lambda: state(hass, "sensor.flat_3_wallet_balance") == "0.003")
    assert coordinator.data.usb is None
    assert coordinator.data.status is before.status


async def test_a_wallet_event_changes_the_balance_at_once(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    wallet = {**RECORDED["wallet"], "balance": 123456, "energy_bought_wh": 1500}
    await fake_edge.push("wallet", wallet)
    await until(hass, lambda: state(hass, "sensor.flat_3_wallet_balance") == "123.456")
    assert state(hass, "sensor.flat_3_energy_bought") == "1.5"


async def test_a_resync_event_reads_everything_again(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    # Events were dropped for a slow client: the wallet changed and no event said so.
    fake_edge.responses["wallet"] = {**RECORDED["wallet"], "balance": 777000}
    await fake_edge.push("resync", {"dropped": 12})
    await until(hass, lambda: state(hass, "sensor.flat_3_wallet_balance") == "777.0")


async def test_prepaid_cut_off_and_restored(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    empty = {**RECORDED["wallet"], "balance": 0, "cut_off": True}
    await fake_edge.push("prepaid_cutoff", empty)
    await until(hass, lambda: state(hass, "binary_sensor.flat_3_prepaid_cut_off") == STATE_ON)
    assert state(hass, "sensor.flat_3_wallet_balance") == "0.0"

    topped_up = {**RECORDED["wallet"], "balance": 5000, "cut_off": False}
    await fake_edge.push("prepaid_restored", topped_up)
    await until(hass, lambda: state(hass, "binary_sensor.flat_3_prepaid_cut_off") == STATE_OFF)
    assert state(hass, "sensor.flat_3_wallet_balance") == "5.0"


async def test_a_block_advances_the_ledger_and_an_older_one_does_not(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    block = {**RECORDED["ledger_blocks"]["blocks"][-1], "height": 9, "time": 1795316600000}
    await fake_edge.push("block", block)
    await until(hass, lambda: state(hass, "sensor.flat_3_ledger_height") == "9")
    assert state(hass, "sensor.flat_3_last_block") == "2026-11-22T03:03:20+00:00"

    await fake_edge.push("block", {**block, "height": 3, "time": 1795316500000})
    await fake_edge.push("wallet", {**RECORDED["wallet"], "balance": 1})  # arrives after it
    await until(hass, lambda: state(hass, "sensor.flat_3_wallet_balance") == "0.001")
    assert state(hass, "sensor.flat_3_ledger_height") == "9"


async def test_offers_open_and_close_with_their_events(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    offer = {**RECORDED["offers"]["offers"][0], "id": "new-offer", "status": "open"}
    await fake_edge.push("offer", offer)
    await until(hass, lambda: state(hass, "sensor.flat_3_open_offers") == "2")
    await fake_edge.push("offer", {**offer, "status": "pending"})  # the same offer again
    await fake_edge.push("offer", {**offer, "status": "sold"})
    await until(hass, lambda: state(hass, "sensor.flat_3_open_offers") == "1")


async def test_trades_today_counts_new_trades_once(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    recorded = RECORDED["trades"]["trades"][0]
    trade = {**recorded, "id": "new-trade", "time": now_ms()}
    await fake_edge.push("trade", trade)
    await until(hass, lambda: state(hass, "sensor.flat_3_trades_today") == "2")
    await fake_edge.push("trade", {**trade, "status": "settled"})
    yesterday = dt_util.start_of_local_day() - timedelta(hours=1)
    await fake_edge.push(
        "trade", {**recorded, "id": "yesterday", "time": int(yesterday.timestamp() * 1000)}
    )
    await fake_edge.push("wallet", {**RECORDED["wallet"], "balance": 2})
    await until(hass, lambda: state(hass, "sensor.flat_3_wallet_balance") == "0.002")
    assert state(hass, "sensor.flat_3_trades_today") == "2"
    trades = entry.runtime_data.coordinator.data.trades
    assert [t["id"] for t in trades][:2] == ["yesterday", "new-trade"]
    assert trades[1]["status"] == "settled"


async def test_telemetry_and_policy_events_replace_what_they_carry(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    coordinator = entry.runtime_data.coordinator
    devices = [{**RECORDED["devices"]["devices"][0], "connected": False}]
    await fake_edge.push("telemetry", {"devices": devices})
    policy = {**RECORDED["policy"], "bidding": {"enabled": True}}
    await fake_edge.push("policy", policy)
    await until(hass, lambda: coordinator.data.policy == policy)
    assert coordinator.data.devices == devices


async def test_rejected_records_are_logged_and_odd_events_ignored(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    fake_edge: FakeEdge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    coordinator = entry.runtime_data.coordinator
    before = coordinator.data
    await fake_edge.push(
        "record_rejected",
        {"id": "abc", "kind": "offer", "code": "exceeds_capacity", "message": "too much"},
    )
    await fake_edge.push("wallet", "not an object")
    await fake_edge.push("telemetry", {"devices": "not a list"})
    await fake_edge.push("something_new", {"x": 1})
    await until(hass, lambda: "exceeds_capacity" in caplog.text)
    assert "The ledger dropped our offer abc: too much (exceeds_capacity)" in caplog.text
    assert coordinator.data is before


async def test_the_periodic_resync_rereads_what_events_missed(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    # A change no event carried (a missed event), while other events keep arriving.
    fake_edge.responses["wallet"]["balance"] = 42000
    requests = len(fake_edge.requests)
    await fake_edge.push("telemetry", RECORDED["devices"])
    await until(hass, lambda: True)
    assert len(fake_edge.requests) == requests  # events are applied, not fetched
    async_fire_time_changed(hass, dt_util.utcnow() + RESYNC_INTERVAL + timedelta(seconds=1))
    await until(hass, lambda: state(hass, "sensor.flat_3_wallet_balance") == "42.0")


async def test_a_failing_endpoint_makes_the_entities_unavailable(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    fake_edge.failures["market"] = (500, {"error": {"code": "internal_error", "message": "x"}})
    await entry.runtime_data.coordinator.async_refresh()
    assert state(hass, "sensor.flat_3_wallet_balance") == "unavailable"
    del fake_edge.failures["market"]
    await entry.runtime_data.coordinator.async_refresh()
    assert state(hass, "sensor.flat_3_wallet_balance") == "199.985"


async def test_a_real_edge_controllers_entities(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[0]
    # Once the demo has sealed blocks and its homes see each other.
    probe = MockConfigEntry(domain=DOMAIN, unique_id=home.account, data=home.entry_data())
    probe.add_to_hass(hass)
    assert await hass.config_entries.async_setup(probe.entry_id)
    await hass.async_block_till_done()
    coordinator = probe.runtime_data.coordinator

    async def settled() -> bool:
        await coordinator.async_refresh()
        ledger = coordinator.data.status["ledger"]
        return ledger["height"] >= 1 and len(coordinator.data.status["peers"]) == 2

    await eventually(settled)
    await hass.async_block_till_done()
    assert float(state(hass, "sensor.sunny_house_wallet_balance")) >= 0
    assert unit(hass, "sensor.sunny_house_wallet_balance") == "DEMO"
    assert int(state(hass, "sensor.sunny_house_ledger_height")) >= 1
    assert state(hass, "sensor.sunny_house_peers_online") == "2"
    assert state(hass, "binary_sensor.sunny_house_community_broker") == STATE_ON
    assert state(hass, "binary_sensor.sunny_house_prepaid_cut_off") in (STATE_ON, STATE_OFF)
    assert unit(hass, "sensor.sunny_house_energy_sold") == "kWh"
    assert state(hass, "sensor.sunny_house_last_block") != "unknown"
    assert await hass.config_entries.async_unload(probe.entry_id)


async def test_a_failing_usb_section_makes_the_entities_unavailable(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    # 404 is "no USB charging here"; any other failure is the edge controller failing.
    fake_edge.failures["usb"] = (500, {"error": {"code": "internal_error", "message": "x"}})
    await entry.runtime_data.coordinator.async_refresh()
    assert state(hass, "sensor.flat_3_wallet_balance") == "unavailable"
    del fake_edge.failures["usb"]
    await entry.runtime_data.coordinator.async_refresh()
    assert state(hass, "sensor.flat_3_wallet_balance") == "199.985"
