"""A device a running trade needs but the home cannot reach (its device broker not up yet
after a restart, or gone) is not sent commands that can only fail: the home says so once
the device has been unreachable for 30 s, not at every start-up, and drives it as soon as
it is back. Before, every restart during a trade logged `device command failed: fuel-cell
is not connected` for the first control cycle."""

from __future__ import annotations

import logging

import pytest

from edge_controller.app.delivery import UNREACHABLE_WARN_MS, Delivery
from edge_controller.app.site import site_device
from edge_controller.config import DeviceConfig
from edge_controller.devices import Command, Quantity, simple_generic_profile
from edge_controller.devices.adapter import MqttDevice
from edge_controller.devices.roles import Role
from tests.app.test_building import RecordingPublisher
from tests.app.test_rooms_alone import Street
from tests.ledger.support import HOUR

CELL = simple_generic_profile(
    "cell", (Quantity.POWER_W, Quantity.STATE), (Command.SETPOINT_W, Command.START_STOP)
)


async def test_an_unreachable_device_is_waited_for_quietly_then_named_once_then_driven(
    caplog: pytest.LogCaptureFixture,
) -> None:
    street = Street()
    c, home = street.community, street.home_key
    start = c.now + HOUR
    street.fund(c.topup(street.neighbour), c.register("home/cell", home, power_w=5_000))
    offer = c.offer(home, "home/cell", 2_000, start=start)
    street.fund(offer)
    street.fund(c.accept(street.neighbour, offer, 2_000))
    delivery = Delivery(
        account=home.account,
        meter_public="",
        period_ms=900_000,
        issue=street.node.issue,
        issue_as_meter=street.node.issue_as_meter,
    )
    cell = site_device(DeviceConfig("cell", Role.FUEL_CELL, CELL, "home/cell"), street.clock)
    assert isinstance(cell.device, MqttDevice)
    state = street.ledger.state

    caplog.set_level(logging.INFO, logger="edge_controller")
    for seconds in (0, 1, 29):
        await delivery.drive(state, [cell], start + seconds * 1000)
    assert not caplog.records, "a start-up's first cycles are no warning"
    await delivery.drive(state, [cell], start + UNREACHABLE_WARN_MS)
    await delivery.drive(state, [cell], start + UNREACHABLE_WARN_MS + 10_000)
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert "cell has not been reachable for 30 s" in warning.getMessage()

    broker = RecordingPublisher()
    await cell.device.on_connect(broker)
    await delivery.drive(state, [cell], start + 45_000)
    assert [topic for topic, _ in broker.sent] == ["cell/cmd/start_stop", "cell/cmd/setpoint_w"]
    assert "cell is reachable again" in caplog.records[1].getMessage()
