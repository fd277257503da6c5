"""Helpers for the entity tests: an entry on the fake edge controller with every kind of
device and USB ports, or on a real demo home; one platform at a time for snapshots."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import aiohttp
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_p2p.const import DOMAIN

from .edge import EdgeHome, FakeEdge, until

FIXTURES = Path(__file__).parent / "fixtures"
# GET devices of a home with a battery, PV, a grid meter and a fuel cell (recorded).
SITE: dict[str, Any] = json.loads((FIXTURES / "site.json").read_text())
# GET usb as the USB contract gives it: two ports, a phone charging on port 1.
USB: dict[str, Any] = json.loads((FIXTURES / "usb.json").read_text())["usb"]


def now_ms() -> int:
    return int(dt_util.utcnow().timestamp() * 1000)


def with_site_and_usb(fake_edge: FakeEdge) -> FakeEdge:
    """The fake answers as a home with every kind of device and a USB hub."""
    fake_edge.responses["devices"] = copy.deepcopy(SITE["devices"])
    fake_edge.responses["policy"] = copy.deepcopy(SITE["policy"])
    fake_edge.responses["usb"] = copy.deepcopy(USB)
    # The recorded trade is made today's, so that "trades today" does not depend on the day.
    fake_edge.responses["trades"]["trades"][0]["time"] = now_ms() - 1000
    return fake_edge


@contextlib.asynccontextmanager
async def entry_on(
    hass: HomeAssistant,
    data: dict[str, Any],
    unique_id: str,
    platforms: list[Platform] | None = None,
    title: str = "Flat 3",
) -> AsyncIterator[MockConfigEntry]:
    """An entry set up with `platforms` only (all when None), its event stream connected;
    unloaded afterwards."""
    entry = MockConfigEntry(domain=DOMAIN, unique_id=unique_id, title=title, data=data)
    entry.add_to_hass(hass)
    with contextlib.ExitStack() as stack:
        if platforms is not None:
            stack.enter_context(patch("custom_components.energy_p2p.PLATFORMS", platforms))
        assert await hass.config_entries.async_setup(entry.entry_id)
        await until(hass, lambda: entry.runtime_data.coordinator.stream_connected)
        yield entry
        assert await hass.config_entries.async_unload(entry.entry_id)


@contextlib.asynccontextmanager
async def fake_entry(
    hass: HomeAssistant, fake_edge: FakeEdge, platforms: list[Platform] | None = None
) -> AsyncIterator[MockConfigEntry]:
    """An entry on the fake edge controller."""
    async with entry_on(hass, fake_edge.entry_data(), fake_edge.node_id, platforms) as entry:
        yield entry


@contextlib.asynccontextmanager
async def demo_entry(
    hass: HomeAssistant, home: EdgeHome, platforms: list[Platform] | None = None
) -> AsyncIterator[MockConfigEntry]:
    """An entry on a real demo home."""
    async with entry_on(hass, home.entry_data(), home.account, platforms, home.name) as entry:
        yield entry


def state_of(hass: HomeAssistant, entity_id: str) -> str:
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return current.state


def attributes_of(hass: HomeAssistant, entity_id: str) -> dict[str, Any]:
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return dict(current.attributes)


async def policy_of(home: EdgeHome) -> Any:
    """The policy as the edge controller itself answers it (not through Home Assistant)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://{home.host}:{home.port}/api/v1/policy",
            headers={"Authorization": f"Bearer {home.token}"},
        ) as response,
    ):
        return await response.json()


async def restore_policy(home: EdgeHome, policy: Any) -> None:
    """Put back a policy a test changed (the demo is shared by the whole session)."""
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"http://{home.host}:{home.port}/api/v1/policy",
            json=policy,
            headers={"Authorization": f"Bearer {home.token}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
