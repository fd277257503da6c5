"""The repair issue for a USB charging hub that cannot switch its ports' power: raised
when the edge controller reports one, gone when it reports a hub that switches."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_p2p.const import DOMAIN
from custom_components.energy_p2p.repairs import SWITCHING_HUBS_URL

from .edge import FakeEdge
from .entity_support import fake_entry, with_site_and_usb

pytestmark = pytest.mark.usefixtures("socket_enabled")

GANGED = {
    "description": "hub 05e3:0610 on bus 1 port 1.2",
    "switchable": False,
    "error": {
        "code": "no_port_power",
        "message": "hub 05e3:0610 switches all ports together (ganged power)",
    },
}
SWITCHING = {"description": "hub 2109:2817 on bus 1 port 1.3", "switchable": True, "error": None}


def hub_issue(hass: HomeAssistant, entry: MockConfigEntry) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, f"usb_hub_not_switchable_{entry.entry_id}")


async def read_hub(edge: FakeEdge, entry: MockConfigEntry, hub: dict[str, Any]) -> None:
    """The edge controller reports `hub` at the next full read."""
    edge.responses["usb"]["hub"] = hub
    await entry.runtime_data.coordinator.async_refresh()


async def test_a_ganged_hub_raises_an_issue_that_a_switching_hub_clears(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    edge = with_site_and_usb(fake_edge)
    edge.responses["usb"]["hub"] = GANGED
    async with fake_entry(hass, edge, [Platform.SENSOR]) as entry:
        raised = hub_issue(hass, entry)
        assert raised is not None
        assert not raised.is_fixable  # no flow: the owner must change the hardware
        assert raised.severity is ir.IssueSeverity.ERROR
        assert raised.learn_more_url == SWITCHING_HUBS_URL
        assert raised.translation_placeholders == {
            "title": "Flat 3",
            "hub": "hub 05e3:0610 on bus 1 port 1.2",
            "reason": "hub 05e3:0610 switches all ports together (ganged power)",
        }
        # The owner plugged in a hub that switches each port: the next read clears it.
        await read_hub(edge, entry, SWITCHING)
        assert hub_issue(hass, entry) is None
        # A hub that says it cannot switch, without saying why, is the same problem.
        await read_hub(edge, entry, {**SWITCHING, "switchable": False})
        raised = hub_issue(hass, entry)
        assert raised is not None
        assert (raised.translation_placeholders or {})["reason"] == "no per-port power switching"


async def test_a_missing_hub_or_no_usb_at_all_raises_no_hub_issue(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    edge = with_site_and_usb(fake_edge)
    edge.responses["usb"]["hub"] = GANGED
    async with fake_entry(hass, edge, [Platform.SENSOR]) as entry:
        assert hub_issue(hass, entry) is not None
        # Unplugged: not switchable either, but another hub would not help.
        missing = {
            "description": "hub 05e3:0610 on bus 1 port 1.2",
            "switchable": False,
            "error": {"code": "hub_missing", "message": "the hub left the bus"},
        }
        await read_hub(edge, entry, missing)
        assert hub_issue(hass, entry) is None
        await read_hub(edge, entry, GANGED)
        assert hub_issue(hass, entry) is not None
        # The edge controller no longer sells USB charging (GET usb is 404): no hub, no issue.
        del edge.responses["usb"]
        await entry.runtime_data.coordinator.async_refresh()
        assert entry.runtime_data.coordinator.data.usb is None
        assert hub_issue(hass, entry) is None


async def test_removing_the_edge_controller_removes_its_hub_issue(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    edge = with_site_and_usb(fake_edge)
    edge.responses["usb"]["hub"] = GANGED
    async with fake_entry(hass, edge, [Platform.SENSOR]) as entry:
        assert hub_issue(hass, entry) is not None
    assert await hass.config_entries.async_remove(entry.entry_id)
    assert hub_issue(hass, entry) is None
