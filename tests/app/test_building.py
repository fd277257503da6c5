"""A building runs on real parts: devices on their MQTT profiles (fed their counters as a
broker would), a real ledger with a real peer-to-peer trade, the SQLite book. Its periods,
its prepaid cut-off through a relay's command, and its statements are checked against
the ledger and against figures worked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_controller.app.building import Building
from edge_controller.app.building_store import BuildingStore
from edge_controller.app.monitor import monitor
from edge_controller.app.site import SiteDevice, site_device
from edge_controller.app.statements import statement, statement_csv, statement_pdf
from edge_controller.building_config import BuildingSection
from edge_controller.config import DeviceConfig
from edge_controller.devices import SimulatedClock
from edge_controller.devices.profiles import Command, Quantity, simple_generic_profile
from edge_controller.devices.roles import Role
from edge_controller.ledger import Ledger
from edge_controller.market.checks import from_dict
from edge_controller.metering import CommunityPeriod
from edge_controller.refusal import Refusal
from tests.ledger.support import HOUR, Community

QUARTER = 900_000
COUNTERS = (Quantity.IMPORT_ENERGY_WH, Quantity.EXPORT_ENERGY_WH)


class RecordingPublisher:
    """The device broker, reduced to what was published to it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.sent.append((topic, payload))


class Street:
    """Alice sells 3 kWh from her fuel cell to Bob, who is tenant A of the building."""

    def __init__(self, tmp_path: Path) -> None:
        c = self.c = Community()
        self.ledger: Ledger = c.node()
        alice, self.bob, meter = c.key("alice"), c.key("bob"), c.key("meter-a")
        c.seal(
            self.ledger,
            c.register("fc-a", alice, meter=meter.public_hex),
            c.topup(self.bob, 10_000_000),
        )
        self.window = c.now - c.now % QUARTER + 2 * HOUR
        offer = c.offer(alice, "fc-a", 4_000, price=300, start=self.window)
        acceptance = c.accept(self.bob, offer, 4_000)
        c.seal(self.ledger, offer, acceptance)
        c.now = self.window + HOUR
        reading = c.sign(
            meter,
            "meter_reading",
            resource="fc-a",
            start=self.window,
            end=self.window + HOUR,
            export_wh=3_000,
            import_wh=0,
        )
        c.seal(self.ledger, reading)
        c.seal(self.ledger, c.sign(alice, "settlement", trade=acceptance.id, delivered_wh=3_000))
        self.clock = SimulatedClock(self.window)
        self.devices: list[SiteDevice] = [
            site_device(
                DeviceConfig(name, Role.METER, simple_generic_profile(name, COUNTERS)), self.clock
            )
            for name in ("main-meter", "flat-a-meter", "flat-b-meter", "pv-meter")
        ]
        relay = DeviceConfig(
            "relay-b", Role.METER, simple_generic_profile("relay-b", (), (Command.START_STOP,))
        )
        self.devices.append(site_device(relay, self.clock))
        self.relay = RecordingPublisher()
        self.section = from_dict(
            BuildingSection,
            {
                "owners": [
                    {"id": "landlord"},
                    {"id": "tenant-a", "account": self.bob.account},
                    {"id": "tenant-b", "prepaid": 100},
                ],
                "taps": [
                    {"id": "main", "owner": "landlord", "device": "main-meter"},
                    {
                        "id": "roof-pv",
                        "owner": "landlord",
                        "device": "pv-meter",
                        "parent": "main",
                        "shared": True,
                    },
                    {
                        "id": "flat-a",
                        "owner": "tenant-a",
                        "device": "flat-a-meter",
                        "parent": "main",
                    },
                    {
                        "id": "flat-b",
                        "owner": "tenant-b",
                        "device": "flat-b-meter",
                        "parent": "main",
                        "cut_off": {"device": "relay-b"},
                    },
                ],
                "sharing": {"key": "dynamic", "price": 150},
            },
        )
        self.events: list[tuple[str, dict]] = []
        self.path = tmp_path / "building.sqlite3"
        self.totals = {
            "main-meter": [0, 0],
            "flat-a-meter": [0, 0],
            "flat-b-meter": [0, 0],
            "pv-meter": [0, 0],
        }

    async def building(self) -> Building:
        await self.devices[-1].device.on_connect(self.relay)
        return Building(
            config=self.section.config(),
            devices=self.devices,
            ledger=self.ledger,
            store=BuildingStore(self.path),
            publish=lambda event, data, now: self.events.append((event, data)),
            usb=lambda: None,
        )

    def feed(self, flows: dict[str, tuple[int, int]]) -> None:
        """Each meter's counters move by (import, export) Wh and are reported now."""
        for device in self.devices[:4]:
            total = self.totals[device.id]
            imported, exported = flows.get(device.id, (0, 0))
            total[0] += imported
            total[1] += exported
            payload = {"import_energy_wh": total[0], "export_energy_wh": total[1]}
            device.device.receive(f"{device.id}/telemetry", json.dumps(payload).encode())

    async def quarter(self, building: Building) -> CommunityPeriod | None:
        # Per quarter: PV 400 out, flat A 1,000 in, flat B 200 in, so main 800 in.
        self.clock.advance(QUARTER)
        self.feed(
            {
                "main-meter": (800, 0),
                "pv-meter": (0, 400),
                "flat-a-meter": (1_000, 0),
                "flat-b-meter": (200, 0),
            }
        )
        return await building.cycle(self.clock.now_ms())


async def test_a_building_settles_its_periods_and_cuts_off_and_restores_once(
    tmp_path: Path,
) -> None:
    street = Street(tmp_path)
    building = await street.building()
    street.feed({})
    assert await building.cycle(street.clock.now_ms()) is None  # first sight: nothing measured
    settled = [await street.quarter(building) for _ in range(4)]
    assert all(p is not None for p in settled)
    first = settled[0]
    assert first is not None
    # Bob's 3 kWh arrive evenly over the hour: 750 Wh a quarter of flat A's 1,000. The
    # landlord's 400 Wh of PV is shared by consumption: A 250, B 200 -> 222.2 and 177.8;
    # the leftover Wh goes to B's larger remainder.
    a, b = first.owner("tenant-a"), first.owner("tenant-b")
    assert (a.p2p_in_wh, a.shared_in_wh, a.grid_import_wh) == (750, 222, 28)
    assert (b.p2p_in_wh, b.shared_in_wh, b.grid_import_wh) == (0, 178, 22)
    assert first.owner("landlord").shared_out_wh == 400
    # B pays 22 x 0.3 + 178 x 0.15 = 33.3 a quarter from 100: 67, 34, 1, then -33.
    cut = [e for e, _ in street.events if e == "building_cutoff"]
    assert cut == ["building_cutoff"]
    decisions = [(d.owner, type(d).__name__) for p in settled if p for d in p.decisions]
    assert decisions == [("tenant-b", "CutOff")]
    assert street.relay.sent == [("relay-b/cmd/start_stop", b'{"value": 0}')]
    assert building.book.balances["tenant-b"] == -33
    view = await building.top_up("tenant-b", 50, street.clock.now_ms())
    assert (view["balance"], view["cut_off"]) == (17, False)
    await building.top_up("tenant-b", 50, street.clock.now_ms())
    assert street.relay.sent[1:] == [("relay-b/cmd/start_stop", b'{"value": 1}')]
    assert [e for e, _ in street.events if e.startswith("building_")] == [
        "building_cutoff",
        "building_restored",
    ]
    # A restart keeps the book: nothing is settled twice and nothing fires again.
    building.close()
    again = await street.building()
    assert again.book.balances["tenant-b"] == 67
    assert again.book.settled_until_ms == street.clock.now_ms()
    assert street.relay.sent[2:] == []
    with pytest.raises(Refusal) as refused:
        await again.top_up("landlord", 10, street.clock.now_ms())
    assert refused.value.code == "not_prepaid"


async def test_statements_reconcile_with_the_ledger_and_the_book(tmp_path: Path) -> None:
    street = Street(tmp_path)
    building = await street.building()
    street.feed({})
    await building.cycle(street.clock.now_ms())
    settled = [p for p in [await street.quarter(building) for _ in range(4)] if p]
    await building.top_up("tenant-b", 50, street.clock.now_ms())
    month = "2027-01"
    data = statement(street.ledger, "SUN", building, "", "tenant-a", month)
    part = data["building"]
    for field in ("import_wh", "p2p_in_wh", "shared_in_wh", "grid_import_wh", "movement"):
        assert part[field] == sum(getattr(p.owner("tenant-a"), field) for p in settled)
    assert (part["import_wh"], part["p2p_in_wh"]) == (4_000, 3_000)
    # Peer to peer, to the Wh and the milli-unit of the ledger's own accounts.
    bob = street.ledger.state.account(street.bob.account)
    p2p = data["p2p"]
    assert p2p["bought_wh"] == bob.energy_in_wh == 3_000
    assert p2p["bought_paid"] == 10_000_000 - bob.balance == 900
    assert p2p["refunded"] == 300 and p2p["trade_count"] == 1
    assert data["fees"] == 0
    # A prepaid owner's month closes at the book's balance.
    tenant_b = statement(street.ledger, "SUN", building, "", "tenant-b", month)["building"]
    assert tenant_b["opening_balance"] == 100
    assert tenant_b["closing_balance"] == building.book.balances["tenant-b"] == 17
    assert tenant_b["topups"] == 50
    text = statement_csv(data)
    assert "Grid import,112,300," in text and "Peer-to-peer bought (settled),3000,,-900" in text
    assert statement_pdf(data).startswith(b"%PDF")
    with pytest.raises(Refusal):
        statement(street.ledger, "SUN", building, "", "tenant-a", "2027-13")
    with pytest.raises(Refusal):
        statement(street.ledger, "SUN", building, "", "stranger", month)


def test_the_monitoring_station_shows_volumes_prices_and_who_trades_with_whom(
    tmp_path: Path,
) -> None:
    street = Street(tmp_path)
    alice = street.c.key("alice").account
    station = monitor(street.ledger, street.window + HOUR, "hour", 4)
    hours = [(p["trades"], p["volume_wh"], p["average_price"]) for p in station["periods"]]
    # The trade's window starts an hour back: settled at 3,000 Wh for 900 (300 per kWh).
    assert hours == [(0, 0, None), (0, 0, None), (1, 3_000, 300), (0, 0, None)]
    assert station["pairs"] == [
        {
            "seller": alice,
            "buyer": street.bob.account,
            "trades": 1,
            "volume_wh": 3_000,
            "value": 900,
        }
    ]
    assert station["totals"]["traders"] == 2
    assert station["trend"] == {"volume_change_wh": -3_000, "price_change": None}


async def test_counters_first_seen_late_in_a_period_do_not_bill_that_period(
    tmp_path: Path,
) -> None:
    street = Street(tmp_path)
    building = await street.building()
    street.clock.advance(2 * QUARTER // 3)  # started two thirds into a quarter hour
    street.feed({})
    assert await building.cycle(street.clock.now_ms()) is None
    street.clock.advance(QUARTER // 3)
    street.feed({"main-meter": (300, 0), "flat-a-meter": (200, 0), "flat-b-meter": (100, 0)})
    # The quarter that just ended was measured for a third only: nobody is billed for it.
    assert await building.cycle(street.clock.now_ms()) is None
    assert building.book.settled_until_ms is None
    assert await street.quarter(building) is not None
    building.close()
