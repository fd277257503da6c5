"""SunSpec over Modbus TCP against a real pymodbus server whose register map pysunspec2
builds from the SunSpec model definitions: `devices probe` finds the models and prints a
`devices:` entry that `edge.yaml` takes; a home reads power, state of charge and energy,
writes the storage setpoint during a trade and the owner's settings back after it, and
carries on after the server restarts; a device without the named models, or a register
answering with a Modbus exception, is a clear message and never an offer."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from edge_controller.app.delivery import Delivery
from edge_controller.app.site import BatterySite, PvSite, SiteContext, site_device
from edge_controller.config import parse_config
from edge_controller.devices import SimulatedClock
from edge_controller.devices.sunspec import SunSpecDevice
from edge_controller.ledger import Commitments, Resource, State, Trade

from .sunspec_support import SunSpecServer, hybrid_inverter

ROOT = Path(__file__).resolve().parents[2]
SELLER = "ep" + "5e" * 20
NOON = 1_780_000_000_000
WINDOW_MS = 60_000
BATTERY = Resource("home/battery", "battery", SELLER, 3_000, 10_000, 8_000)


@pytest.fixture
async def inverter() -> AsyncIterator[SunSpecServer]:
    server = SunSpecServer(hybrid_inverter())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def home_devices(port: int, clock: SimulatedClock, tmp_path: Path, **battery: object) -> list:
    """The devices of an `edge.yaml` with the SunSpec entries, as a home builds them."""
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    document = {
        "name": "Sunspec House",
        "genesis": str(genesis),
        "devices": [
            {
                "id": "inverter",
                "role": "pv",
                "resource": "home/pv",
                "profile": {
                    "profile": "sunspec",
                    "host": "127.0.0.1",
                    "port": port,
                    "models": [103],
                },
            },
            {
                "id": "battery",
                "role": "battery",
                "resource": "home/battery",
                "profile": {
                    "profile": "sunspec",
                    "host": "127.0.0.1",
                    "port": port,
                    "models": [124, 802],
                    **battery,
                },
            },
        ],
    }
    config = parse_config(document, "edge.yaml", tmp_path)
    return [site_device(c, clock) for c in config.devices]


def one_trade_state() -> State:
    """A running sale of 25 Wh from the battery: 1 500 W for 60 s."""
    state = State()
    state.resources.put(BATTERY.id, BATTERY)
    trade = Trade(
        id="t1",
        offer="o1",
        seller=SELLER,
        buyer="ep" + "b0" * 20,
        resource=BATTERY.id,
        mode="energy",
        quantity=25,
        price=300,
        start=NOON,
        end=NOON + WINDOW_MS,
        energy_wh=25,
        cost=7,
        time=NOON - 1_000,
    )
    state.trades.put(trade.id, trade)
    state.commitments.put(BATTERY.id, Commitments((trade.id,)))
    return state


async def _nothing(*_args: object, **_fields: object) -> None:
    return None


async def test_probe_finds_the_models_and_prints_an_entry_edge_yaml_takes(
    inverter: SunSpecServer, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge_controller",
        "devices",
        "probe",
        f"127.0.0.1:{inverter.port}",
        "--unit",
        "1",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    for line in ("Fronius", "Symo GEN24 10.0 Plus", "31234567", "103", "124", "802", "203"):
        assert line in text
    entry = yaml.safe_load(text[text.index("devices:") :])
    assert [d["role"] for d in entry["devices"]] == ["pv", "battery", "grid_meter"]
    assert entry["devices"][1]["profile"]["models"] == [124, 802]
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    config = parse_config({"name": "x", "genesis": str(genesis), **entry}, "edge.yaml", tmp_path)
    assert [d.id for d in config.devices] == ["fronius-pv", "fronius-battery", "fronius-grid-meter"]


async def test_probe_of_something_that_is_not_sunspec_says_so(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_controller", "devices", "probe", "127.0.0.1:1",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert "no Modbus TCP device answers at 127.0.0.1:1" in err.decode()
    assert "Traceback" not in err.decode()


async def test_a_home_reads_drives_and_hands_back_a_sunspec_battery(
    inverter: SunSpecServer, tmp_path: Path
) -> None:
    clock = SimulatedClock(NOON - 5_000)
    pv, battery = home_devices(inverter.port, clock, tmp_path)
    assert isinstance(pv, PvSite) and isinstance(battery, BatterySite)
    for d in (pv, battery):
        assert isinstance(d.device, SunSpecDevice)
        await d.device.poll()
    site = SiteContext(now=clock.now_ms(), grid_power=None)
    reading = pv.market_reading(Resource("home/pv", "pv", SELLER, 5_000, 0, 0), (), site)
    assert reading is not None and reading.pv_w == 2_345 and reading.fresh
    assert pv.capabilities.energy_meter is not None
    assert pv.capabilities.energy_meter.export_wh().value == 1_234_567  # type: ignore[union-attr]
    stored = battery.market_reading(BATTERY, (), site)
    assert stored is not None and stored.soc_percent == 82 and stored.capacity_wh == 10_000
    assert battery.capabilities.battery.power_w().value == 1_500  # type: ignore[union-attr]

    # During the trade: discharge at 1 500 W, 30 % of WChaMax (5 000 W), with a revert timer.
    state, seller = one_trade_state(), Delivery(SELLER, "", 15_000, _nothing, _nothing)
    clock.set(NOON + 10_000)
    await seller.drive(state, [battery], clock.now_ms())
    assert inverter.point(124, "StorCtl_Mod") == 2  # discharge limit in force
    assert inverter.point(124, "OutWRte") == 3_000  # 30.00 % (InOutWRte_SF = -2)
    assert inverter.point(124, "InOutWRte_RvrtTms") == 120

    # The server restarts in the middle: the next poll connects again.
    await inverter.stop()
    await battery.device.poll()  # type: ignore[attr-defined]
    assert "failed" in battery.device.snapshot()["problem"]
    await inverter.start()
    await battery.device.poll()  # type: ignore[attr-defined]
    assert battery.device.connected and battery.device.snapshot()["problem"] is None

    # After the trade: the owner's own settings, not 0 W.
    clock.set(NOON + WINDOW_MS + 1_000)
    await seller.drive(state, [battery], clock.now_ms())
    assert inverter.point(124, "StorCtl_Mod") == 0
    assert inverter.point(124, "OutWRte") == 10_000
    assert inverter.point(124, "InOutWRte_RvrtTms") == 0


async def test_a_device_without_the_named_models_is_a_clear_message_and_no_offer(
    inverter: SunSpecServer, tmp_path: Path
) -> None:
    clock = SimulatedClock(NOON)
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    config = parse_config(
        {
            "name": "x",
            "genesis": str(genesis),
            "devices": [
                {
                    "id": "der",
                    "role": "pv",
                    "resource": "home/pv",
                    "profile": {
                        "profile": "sunspec",
                        "host": "127.0.0.1",
                        "port": inverter.port,
                        "models": [701],
                    },
                }
            ],
        },
        "edge.yaml",
        tmp_path,
    )
    device = site_device(config.devices[0], clock)
    await device.device.poll()  # type: ignore[attr-defined]
    problem = device.device.snapshot()["problem"]
    assert "has no model 701 (it has 1, 103, 124, 802, 203)" in problem
    assert not device.device.connected
    site = SiteContext(now=clock.now_ms(), grid_power=None)
    assert device.market_reading(Resource("home/pv", "pv", SELLER, 5_000, 0, 0), (), site) is None


async def test_a_register_answering_with_an_exception_leaves_only_stale_values(
    inverter: SunSpecServer, tmp_path: Path
) -> None:
    clock = SimulatedClock(NOON)
    _, battery = home_devices(inverter.port, clock, tmp_path)
    await battery.device.poll()  # type: ignore[attr-defined]
    assert battery.market_reading(BATTERY, (), SiteContext(clock.now_ms(), None)).fresh  # type: ignore[union-attr]

    inverter.broken.add(inverter.address(124) + 10)
    clock.advance(31_000)
    await battery.device.poll()  # type: ignore[attr-defined]
    problem = battery.device.snapshot()["problem"]
    assert "answered with Modbus exception 2 (illegal data address)" in problem
    reading = battery.market_reading(BATTERY, (), SiteContext(clock.now_ms(), None))
    assert reading is not None and not reading.fresh  # the last value is too old to sell on
    assert battery.stored_wh(BATTERY, clock.now_ms()) is None

    inverter.broken.clear()
    await battery.device.poll()  # type: ignore[attr-defined]
    assert battery.market_reading(BATTERY, (), SiteContext(clock.now_ms(), None)).fresh  # type: ignore[union-attr]


def test_sunspec_settings_mistakes_are_named_with_their_path(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    document = {
        "name": "x",
        "genesis": str(genesis),
        "devices": [
            {
                "id": "a",
                "role": "pv",
                "profile": {"profile": "sunspec", "host": "h", "models": [999]},
            },
            {
                "id": "b",
                "role": "pv",
                "profile": {"profile": "sunspec", "models": [103], "unit": 300},
            },
        ],
    }
    with pytest.raises(Exception) as info:
        parse_config(document, "edge.yaml", tmp_path)
    problems = "\n".join(info.value.problems)  # type: ignore[attr-defined]
    assert "devices[0].profile.models[0]: model 999 is not read" in problems
    assert "devices[1].profile.host: required" in problems
    assert "devices[1].profile.unit" in problems


async def test_overlapping_trades_never_ask_the_battery_for_more_than_its_rating(
    inverter: SunSpecServer, tmp_path: Path
) -> None:
    clock = SimulatedClock(NOON + 10_000)
    _, battery = home_devices(inverter.port, clock, tmp_path)
    await battery.device.poll()  # type: ignore[attr-defined]
    state = one_trade_state()
    second = replace(state.trades.rows["t1"], id="t2", offer="o2", quantity=40, energy_wh=40)
    state.trades.put("t2", second)
    state.commitments.put(BATTERY.id, Commitments(("t1", "t2")))
    # Re-registered at 2 kW after both were booked: 1.5 kW + 2.4 kW is asked, 2 kW is driven.
    state.resources.put(BATTERY.id, replace(BATTERY, power_w=2_000))
    seller = Delivery(SELLER, "", 15_000, _nothing, _nothing)
    await seller.drive(state, [battery], clock.now_ms())
    assert inverter.point(124, "OutWRte") == 4_000  # 40.00 % of 5 kW = 2 kW
