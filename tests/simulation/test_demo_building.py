"""The demo's small building (Sunny House: a landlord, a PV roof and two tenants): its
planned configuration passes the one checker, its simulated taps are physical (the main
meter is the house plus the flats), and a real `Building` settles them minute by minute
without creating or losing a Wh; the relay of tenant B's flat switches its load off."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_controller.app.building import Building
from edge_controller.app.building_store import BuildingStore
from edge_controller.app.site import site_device
from edge_controller.devices import Command, Quantity, SimulatedClock
from edge_controller.ledger import Ledger
from edge_controller.simulation.building import BuildingTap
from edge_controller.simulation.plan import TOPIC_PREFIX, plan_homes
from tests.ledger.support import START, Community

MINUTE = 60_000


async def test_the_demo_building_settles_every_minute_and_conserves_energy(
    tmp_path: Path,
) -> None:
    start = START - START % MINUTE
    plan = plan_homes(3, start)[0]
    config = plan.building_config()
    assert config is not None and config.period_ms == MINUTE
    landlord = config.owner("landlord")
    assert landlord is not None and landlord.account == plan.key.account
    assert [h.building_config() for h in plan_homes(3, start)[1:]] == [None, None]

    clock = SimulatedClock(start)
    devices = [site_device(d, clock) for d in plan.devices]
    taps = {name: hw for name, hw, *_ in plan.hardware if isinstance(hw, BuildingTap)}
    assert set(taps) == {"main-meter", "roof-meter", "flat-a-meter", "flat-b-meter"}
    building = Building(
        config=config,
        devices=devices,
        ledger=Ledger(Community().genesis),
        store=BuildingStore(tmp_path / "building.sqlite3"),
        publish=lambda event, data, now: None,
        usb=lambda: None,
    )

    def report() -> dict[Quantity, Any]:
        # What each tap's MQTT simulator publishes, delivered to its device.
        for name, hardware in taps.items():
            hardware.advance_to(clock.now_ms())
            payload = {q.value: v for q, v in hardware.telemetry().items()}
            device = next(d for d in devices if d.id == name)
            topic = f"{TOPIC_PREFIX}/{plan.slug}/{name}/telemetry"
            assert device.device.receive(topic, json.dumps(payload).encode())
        return dict(taps["main-meter"].telemetry())

    main_before = report()
    assert building.book.balances == {"tenant-b": 2_000}
    assert await building.cycle(clock.now_ms()) is None  # first sight
    settled = []
    for _ in range(10):
        clock.advance(MINUTE)
        main_after = report()
        period = await building.cycle(clock.now_ms())
        assert period is not None
        settled.append(period)
    for period in settled:
        rows = period.owners
        assert {r.owner for r in rows} == {"landlord", "tenant-a", "tenant-b"}
        # Shared energy only moves between owners; every Wh in comes from one source.
        assert sum(r.shared_in_wh for r in rows) == sum(r.shared_out_wh for r in rows)
        for row in rows:
            assert row.shared_in_wh + row.grid_import_wh + row.p2p_in_wh == row.import_wh
    # The owners' nets add up to what the main meter counted over the ten minutes.
    net = sum(r.import_wh - r.export_wh for p in settled for r in p.owners)
    imported = Quantity.IMPORT_ENERGY_WH
    exported = Quantity.EXPORT_ENERGY_WH
    main_net = main_after[imported] - main_before[imported]
    main_net -= main_after[exported] - main_before[exported]
    assert net == main_net
    month = building.store.month("tenant-a", "2027-01")
    assert month is not None and month["periods"] == 10 and month["import_wh"] > 0

    # Tenant B's relay switches the flat's load off: its meter stops counting.
    flat_b = taps["flat-b-meter"]
    assert flat_b.obey(Command.START_STOP, 0)
    before = flat_b.telemetry()
    flat_b.advance_to(clock.now_ms() + 5 * MINUTE)
    assert flat_b.telemetry() == before
    assert not taps["main-meter"].obey(Command.START_STOP, 0)
    building.close()
