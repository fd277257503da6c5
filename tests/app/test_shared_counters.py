"""A Victron GX (or any hybrid system) is one device with one grid meter: a home configures
its battery and its PV as two devices on it, each backing a resource, and neither has
energy counters of its own. Before, each resource's reading claimed the whole grid meter:
the export counted twice, and the battery's reading was refused whenever the home exported
more than the battery's rating gives (the demo's `exceeds_rating` warnings), so its trade
went unmetered for that period. Now what the meter moved is divided between them."""

from __future__ import annotations

import json
import logging

import pytest

from edge_controller.app.delivery import Delivery, counters_of
from edge_controller.app.site import SiteDevice, site_device
from edge_controller.config import DeviceConfig
from edge_controller.devices import Quantity, simple_generic_profile
from edge_controller.devices.roles import Role
from edge_controller.ledger import allocated_export
from tests.app.test_rooms_alone import Street
from tests.ledger.support import HOUR

PERIOD_MS = 15 * 60_000
GX = simple_generic_profile("gx", (Quantity.IMPORT_ENERGY_WH, Quantity.EXPORT_ENERGY_WH))


def gx_devices(street: Street) -> list[SiteDevice]:
    return [
        site_device(DeviceConfig("battery", Role.BATTERY, GX, "home/battery"), street.clock),
        site_device(DeviceConfig("pv", Role.PV, GX, "home/pv"), street.clock),
    ]


def grid_meter_reads(
    street: Street, devices: list[SiteDevice], export_wh: int, import_wh: int
) -> None:
    """The GX publishes its grid counters; every device configured on it receives them."""
    street.community.now = street.clock.now_ms()
    payload = json.dumps({"export_energy_wh": export_wh, "import_energy_wh": import_wh})
    for d in devices:
        d.device.receive("gx/telemetry", payload.encode())


async def test_a_battery_and_pv_behind_one_grid_meter_share_its_export_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    street = Street()
    c, home = street.community, street.home_key
    meter = c.key("home meter")
    start = c.now - c.now % PERIOD_MS + HOUR
    street.fund(
        c.topup(street.neighbour),
        c.register("home/battery", home, "battery", 3_000, 5_000, meter=meter.public_hex),
        c.register("home/pv", home, "pv", 6_000, 0, meter=meter.public_hex),
    )
    # The neighbour buys 1.5 kWh of the battery over an hour: 375 Wh a quarter hour.
    offer = c.offer(home, "home/battery", 1_500, mode="energy", start=start)
    street.fund(offer)
    street.fund(c.accept(street.neighbour, offer, 1_500))
    [trade] = street.ledger.state.trades.rows.values()

    async def as_meter(kind: str, **fields: object) -> object:
        return await street.node.issue(kind, key=meter, **fields)

    delivery = Delivery(
        account=home.account,
        meter_public=meter.public_hex,
        period_ms=PERIOD_MS,
        issue=street.node.issue,
        issue_as_meter=as_meter,
    )
    devices = gx_devices(street)
    assert counters_of(devices[0]) == counters_of(devices[1])

    street.clock.advance(start - street.clock.now_ms())
    grid_meter_reads(street, devices, export_wh=10_000, import_wh=500)
    await delivery.read_meters(street.ledger.state, devices, street.clock.now_ms())
    # A quarter hour on, 1.2 kWh left the home (4.8 kW: more than the battery's 3 kW give).
    street.clock.advance(PERIOD_MS)
    grid_meter_reads(street, devices, export_wh=11_200, import_wh=500)
    with caplog.at_level(logging.WARNING):
        await delivery.read_meters(street.ledger.state, devices, street.clock.now_ms())
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    street.fund()

    state = street.ledger.state
    battery, pv = state.meters.get("home/battery"), state.meters.get("home/pv")
    assert battery is not None and pv is not None
    # The trade's 375 Wh to the battery; the other 825 Wh are the PV's, which sold nothing.
    assert (battery.export_wh, pv.export_wh) == (375, 825)
    assert battery.export_wh + pv.export_wh == 1_200
    assert allocated_export(state, trade, rules=c.genesis.consensus.rules) == 375
