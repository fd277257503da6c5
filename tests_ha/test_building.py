"""A building's owners as devices with Energy-dashboard sensors, balance and cut-off; the
market monitoring station's sensors; the statement action. Answers recorded from a real
edge controller with a building (fixtures/building.json)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util

from custom_components.energy_p2p.const import DOMAIN

from .edge import EdgeHome, FakeEdge, until
from .entity_support import demo_entry, fake_entry

RECORDED: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "building.json").read_text()
)
TENANT = "sensor.flat_3_tenant_a"

pytestmark = pytest.mark.usefixtures("socket_enabled")


def with_building(fake_edge: FakeEdge) -> FakeEdge:
    for key in ("building", "monitor", "statements"):
        fake_edge.responses[key] = copy.deepcopy(RECORDED[key])
    return fake_edge


def state_of(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None, f"{entity_id} does not exist"
    return state.state


async def test_each_owner_is_a_device_with_energy_balance_and_cut_off(
    hass: HomeAssistant, fake_edge: FakeEdge, entity_registry: er.EntityRegistry
) -> None:
    with_building(fake_edge)
    async with fake_entry(hass, fake_edge, [Platform.SENSOR, Platform.BINARY_SENSOR]) as entry:
        devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        owners = {d.model_id: d for d in devices if d.model == "Building owner"}
        assert set(owners) == {"flat-a", "main, roof-pv"}
        assert owners["flat-a"].via_device_id is not None
        # Two quarters: 500 Wh each in, 300 of them shared, 200 from the grid.
        assert state_of(hass, f"{TENANT}_energy_in") == "1000"
        assert state_of(hass, f"{TENANT}_shared_energy_received") == "600"
        assert state_of(hass, f"{TENANT}_grid_import") == "400"
        state = hass.states.get(f"{TENANT}_energy_in")
        assert state is not None
        assert state.attributes["device_class"] == SensorDeviceClass.ENERGY
        assert state.attributes["state_class"] == SensorStateClass.TOTAL_INCREASING
        assert state.attributes["unit_of_measurement"] == "Wh"
        assert state_of(hass, f"{TENANT}_prepaid_balance") == "0.82"
        assert hass.states.get("sensor.flat_3_mrs_landlord_prepaid_balance") is None  # not prepaid
        assert state_of(hass, "binary_sensor.flat_3_tenant_a_cut_off") == STATE_OFF
        assert state_of(hass, "sensor.flat_3_mrs_landlord_energy_out") == "600"

        # The edge controller cuts the tenant off: the event changes the binary sensor.
        tenant = next(o for o in RECORDED["building"]["owners"] if o["id"] == "tenant-a")
        await fake_edge.push("building_cutoff", {**tenant, "balance": 0, "cut_off": True})
        await until(
            hass, lambda: state_of(hass, "binary_sensor.flat_3_tenant_a_cut_off") == STATE_ON
        )
        assert state_of(hass, f"{TENANT}_prepaid_balance") == "0.0"
        await fake_edge.push("building_restored", {**tenant, "balance": 500, "cut_off": False})
        await until(
            hass, lambda: state_of(hass, "binary_sensor.flat_3_tenant_a_cut_off") == STATE_OFF
        )

        # A building without the tenant: its entities become unavailable, the device goes.
        building = copy.deepcopy(RECORDED["building"])
        building["owners"] = [o for o in building["owners"] if o["id"] != "tenant-a"]
        await fake_edge.push("building", building)
        await until(hass, lambda: state_of(hass, f"{TENANT}_energy_in") == STATE_UNAVAILABLE)
        await entry.runtime_data.coordinator.async_refresh()
        await hass.async_block_till_done()
        devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        assert [d.model_id for d in devices if d.model == "Building owner"] == ["main, roof-pv"]


async def test_the_monitoring_station_sensors(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    with_building(fake_edge)
    monitor = fake_edge.responses["monitor"]
    monitor["periods"][-1].update(volume_wh=3_000, average_price=300, trades=1)
    monitor["totals"]["traders"] = 2
    async with fake_entry(hass, fake_edge, [Platform.SENSOR]):
        volume = hass.states.get("sensor.flat_3_community_volume_this_hour")
        assert volume is not None and volume.state == "3000"
        assert len(volume.attributes["periods"]) == 3
        assert state_of(hass, "sensor.flat_3_community_average_price_this_hour") == "0.3"
        assert state_of(hass, "sensor.flat_3_community_traders") == "2"


async def test_no_building_means_no_owner_devices(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    async with fake_entry(hass, fake_edge, [Platform.SENSOR]) as entry:
        assert entry.runtime_data.building is not None
        assert entry.runtime_data.building.data.building is None
        assert hass.states.get("sensor.flat_3_community_traders") is None


@pytest.mark.parametrize("kind", ["json", "csv", "pdf"])
async def test_the_statement_action_returns_the_statement(
    hass: HomeAssistant, fake_edge: FakeEdge, kind: str
) -> None:
    with_building(fake_edge)
    csv_text = "statement,tenant-a,tenant-a,2027-01,SUN\n"
    if kind != "json":
        body = csv_text.encode() if kind == "csv" else b"%PDF-1.3 recorded"
        fake_edge.failures["statements"] = (200, body.decode())
    async with fake_entry(hass, fake_edge, [Platform.SENSOR]) as entry:
        answer = await hass.services.async_call(
            DOMAIN,
            "get_statement",
            {
                "config_entry_id": entry.entry_id,
                "owner": "tenant-a",
                "month": "2027-01",
                "format": kind,
            },
            blocking=True,
            return_response=True,
        )
    assert answer is not None
    if kind == "json":
        assert answer["building"]["shared_in_wh"] == 600
        assert answer["building"]["closing_balance"] == 820
    elif kind == "csv":
        assert answer["csv"] == csv_text
    else:
        assert base64.b64decode(str(answer["pdf_base64"])).startswith(b"%PDF")
    assert "GET statements" in fake_edge.requests


async def test_a_refused_statement_is_the_users_to_fix(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    with_building(fake_edge)
    fake_edge.failures["statements"] = (
        404,
        {"error": {"code": "unknown_owner", "message": "nobody is not an owner"}},
    )
    async with fake_entry(hass, fake_edge, [Platform.SENSOR]) as entry:
        for kind in ("json", "pdf"):
            with pytest.raises(ServiceValidationError):
                await hass.services.async_call(
                    DOMAIN,
                    "get_statement",
                    {
                        "config_entry_id": entry.entry_id,
                        "owner": "nobody",
                        "month": "2027-01",
                        "format": kind,
                    },
                    blocking=True,
                    return_response=True,
                )


async def test_the_demos_building_shows_its_owners_and_statements(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    sunny = edge_demo[0]  # Sunny House: a landlord, a PV roof and two tenants
    platforms = [Platform.SENSOR, Platform.BINARY_SENSOR]
    async with demo_entry(hass, sunny, platforms) as entry:
        devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        owners = sorted(d.name or "" for d in devices if d.model == "Building owner")
        assert owners == ["Sunny House Landlord", "Sunny House Tenant A", "Sunny House Tenant B"]
        energy_in = hass.states.get("sensor.sunny_house_tenant_a_energy_in")
        assert energy_in is not None and energy_in.attributes["unit_of_measurement"] == "Wh"
        assert state_of(hass, "sensor.sunny_house_tenant_b_prepaid_balance") not in (
            "unknown",
            "unavailable",
        )
        assert state_of(hass, "binary_sensor.sunny_house_tenant_b_cut_off") in (STATE_ON, STATE_OFF)
        month = dt_util.utcnow().strftime("%Y-%m")
        answer = await hass.services.async_call(
            DOMAIN,
            "get_statement",
            {"config_entry_id": entry.entry_id, "owner": "landlord", "month": month},
            blocking=True,
            return_response=True,
        )
        assert answer is not None and answer["account"] == sunny.account
        assert answer["building"]["prices"]["shared"] == 150
