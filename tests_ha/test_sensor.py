"""Sensor and binary-sensor states: the real demo's, and exact figures from recorded
responses; WebSocket events change them as they arrive; the periodic resync."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.energy_p2p.const import DOMAIN, RESYNC_INTERVAL

from .edge import RECORDED, EdgeHome, FakeEdge, eventually, until

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


async def test_entities_snapshot(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Every entity: how it is registered (unique id, category, device and state class,
    translation key, unit) and its state, from the recorded responses."""
    described = {}
    for registered in er.async_entries_for_config_entry(entity_registry, entry.entry_id):
        current = hass.states.get(registered.entity_id)
        assert current is not None
        attributes = dict(current.attributes)
        described[registered.entity_id] = {
            "unique_id": registered.unique_id.removeprefix(f"{entry.unique_id}_"),
            "translation_key": registered.translation_key,
            "entity_category": registered.entity_category,
            "device_class": registered.original_device_class,
            "state": "(today)" if "trades_today" in registered.entity_id else current.state,
            "attributes": attributes,
        }
    assert described == snapshot


async def test_a_wallet_event_changes_the_balance_at_once(
    hass: HomeAssistant, entry: MockConfigEntry, fake_edge: FakeEdge
) -> None:
    wallet = {**RECORDED["wallet"], "balance": 123456, "energy_bought_wh": 1500}
    await fake_edge.push("wallet", wallet)
    await until(hass, lambda: state(hass, "sensor.flat_3_wallet_balance") == "123.456")
    assert state(hass, "sensor.flat_3_energy_bought") == "1.5"


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
