"""The building's endpoints on a real `Home` and its real API application: the building,
an owner, a top-up, statements as JSON, CSV and PDF, and the market monitoring station.
The home is not started (no broker is needed): its building's cycle is run by the test
at each period boundary, as the control loop would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from edge_controller.api.server import create_app
from edge_controller.app.home import Home
from edge_controller.building_config import BuildingSection
from edge_controller.cli import main
from edge_controller.config import DeviceConfig
from edge_controller.devices import SimulatedClock
from edge_controller.devices.profiles import Quantity, simple_generic_profile
from edge_controller.devices.roles import Role
from edge_controller.market.checks import from_dict
from edge_controller.network import BrokerSettings
from tests.ledger.support import START, Community

TOKEN = "building-test-token"
QUARTER = 900_000
COUNTERS = (Quantity.IMPORT_ENERGY_WH, Quantity.EXPORT_ENERGY_WH)
METERS = ("main-meter", "flat-a-meter", "pv-meter")
BUILDING = {
    "owners": [{"id": "landlord", "name": "Mrs Landlord"}, {"id": "tenant-a", "prepaid": 1_000}],
    "taps": [
        {"id": "main", "owner": "landlord", "device": "main-meter"},
        {
            "id": "roof-pv",
            "owner": "landlord",
            "device": "pv-meter",
            "parent": "main",
            "shared": True,
        },
        {"id": "flat-a", "owner": "tenant-a", "device": "flat-a-meter", "parent": "main"},
    ],
    "sharing": {"key": "priority", "order": ["tenant-a"], "price": 100},
}


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[tuple[Home, TestClient[Any, Any]]]:
    community = Community()
    clock = SimulatedClock(START)
    devices = tuple(
        DeviceConfig(name, Role.METER, simple_generic_profile(name, COUNTERS)) for name in METERS
    )
    home = Home(
        name="Block A",
        data_dir=tmp_path / "data",
        genesis=community.genesis,
        node_key=community.sealers[0],
        community_broker=BrokerSettings("127.0.0.1", 1),
        devices=devices,
        clock=clock,
        building=from_dict(BuildingSection, BUILDING).config(),
    )
    client = TestClient(TestServer(create_app(home, TOKEN)))
    await client.start_server()
    yield home, client
    await client.close()
    home.ledger.close()
    home.refused.close()
    assert home.building is not None
    home.building.close()


def feed(home: Home, totals: dict[str, int]) -> None:
    for device in home.devices:
        value = totals.get(device.id, 0)
        counters = {
            "import_energy_wh": value if device.id != "pv-meter" else 0,
            "export_energy_wh": value if device.id == "pv-meter" else 0,
        }
        device.device.receive(f"{device.id}/telemetry", json.dumps(counters).encode())


async def get(client: TestClient[Any, Any], path: str) -> Any:
    async with client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.read()


async def test_the_building_its_owners_top_ups_statements_and_monitor_over_http(
    home: tuple[Home, TestClient[Any, Any]],
) -> None:
    house, client = home
    assert house.building is not None
    clock = house.clock
    assert isinstance(clock, SimulatedClock)
    clock.advance(QUARTER - clock.now_ms() % QUARTER)
    feed(house, {})
    await house.building.cycle(clock.now_ms())
    # Two quarters: PV 300 out, flat A 500 in, main 200 in; tenant A first in the order.
    for step in (1, 2):
        clock.advance(QUARTER)
        feed(house, {"main-meter": 200 * step, "flat-a-meter": 500 * step, "pv-meter": 300 * step})
        assert await house.building.cycle(clock.now_ms()) is not None
    status, view = await get(client, "/api/v1/building")
    assert status == 200
    tenant = next(o for o in view["owners"] if o["id"] == "tenant-a")
    # 2 x (200 x 0.3 + 300 x 0.1) = 180 paid from 1,000.
    assert (tenant["balance"], tenant["cut_off"], tenant["taps"]) == (820, False, ["flat-a"])
    assert tenant["month_to_date"]["shared_in_wh"] == 600
    assert view["sharing"] == {"key": "priority", "shares": {}, "order": ["tenant-a"]}

    async with client.post(
        "/api/v1/building/topup",
        json={"owner": "tenant-a", "amount": 180},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == 200
        assert (await response.json())["balance"] == 1_000
    async with client.post(
        "/api/v1/building/topup",
        json={"owner": "tenant-a", "amount": -5},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == 422

    month = "2027-01"
    status, data = await get(client, f"/api/v1/statements?owner=tenant-a&month={month}")
    assert status == 200
    part = data["building"]
    assert (part["grid_import_wh"], part["shared_in_wh"], part["movement"]) == (400, 600, -180)
    assert (part["opening_balance"], part["closing_balance"], part["topups"]) == (1_000, 1_000, 180)
    status, csv_text = await get(
        client, f"/api/v1/statements?owner=tenant-a&month={month}&format=csv"
    )
    assert status == 200 and b"Shared energy received,600,100," in csv_text
    status, pdf = await get(client, f"/api/v1/statements?owner=landlord&month={month}&format=pdf")
    assert status == 200 and pdf.startswith(b"%PDF")
    status, error = await get(client, "/api/v1/statements?owner=tenant-a&month=January")
    assert status == 422 and error["error"]["code"] == "invalid_field"
    status, error = await get(client, "/api/v1/statements?owner=tenant-a")
    assert status == 422 and error["error"]["code"] == "missing_field"
    status, error = await get(client, "/api/v1/building/owners/nobody")
    assert status == 404

    status, station = await get(client, "/api/v1/monitor?period=hour&count=3")
    assert status == 200 and len(station["periods"]) == 3
    assert station["totals"]["trades"] == 0 and station["pairs"] == []
    status, _ = await get(client, "/api/v1/monitor?period=year")
    assert status == 422


async def test_the_command_line_saves_a_statement_from_the_running_home(
    home: tuple[Home, TestClient[Any, Any]], tmp_path: Path
) -> None:
    house, client = home
    assert client.server.port is not None
    house.genesis.save(tmp_path / "genesis.json")
    (tmp_path / "token").write_text(TOKEN + "\n")
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "Block A",
                "genesis": "genesis.json",
                "data_dir": "data",
                "api": {"port": client.server.port, "token_file": str(tmp_path / "token")},
            }
        )
    )
    out = tmp_path / "a.csv"
    args = ["statement", "-c", str(config), "--owner", "tenant-a", "--month", "2027-01"]
    assert await asyncio.to_thread(main, [*args, "--format", "csv", "-o", str(out)]) == 0
    assert out.read_text().startswith("statement,tenant-a,tenant-a,2027-01,SUN")
    refused = [*args[:4], "nobody", "--month", "2027-01"]
    assert await asyncio.to_thread(main, refused) == 1
