"""The Home Assistant test harness itself works: the pinned Home Assistant on Python 3.14
starts, custom integrations can be loaded from this checkout, and tests may talk to
processes on loopback (where the edge controller under test will listen)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from importlib.metadata import requires, version
from pathlib import Path

from homeassistant import loader
from homeassistant.const import __version__ as ha_version
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.setup import async_setup_component

import custom_components

CHECKOUT = Path(__file__).resolve().parent.parent


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_python_is_the_one_home_assistant_needs() -> None:
    # Home Assistant 2026.3 and newer require Python >= 3.14.2.
    assert sys.version_info >= (3, 14, 2)


def test_home_assistant_is_the_release_its_environment_names() -> None:
    # scripts/ha-test runs this suite on the current release, then (HA_VENV=min) on the
    # oldest one hacs.json declares, then (HA_VENV=newest) on the newest release, each from
    # its own requirements file.
    environment = os.environ.get("HA_VENV", "current")
    requirements = {
        "current": "requirements.txt",
        "min": "requirements-min.txt",
        "newest": "requirements-newest-nodeps.txt",
    }[environment]
    pin = re.search(
        r"^pytest-homeassistant-custom-component==(\S+)",
        (CHECKOUT / "tests_ha" / requirements).read_text(),
        re.MULTILINE,
    )
    assert pin is not None
    assert version("pytest-homeassistant-custom-component") == pin.group(1)
    # The plugin pins exactly one Home Assistant release.
    pinned = [
        r
        for r in requires("pytest-homeassistant-custom-component") or []
        if re.match(r"homeassistant\s*==", r)
    ]
    minimum = json.loads((CHECKOUT / "hacs.json").read_text())["homeassistant"]
    if environment == "newest":
        # A release newer than any plugin pins: the one requirements-newest.txt names.
        named = re.search(
            r"^homeassistant==(\S+)",
            (CHECKOUT / "tests_ha" / "requirements-newest.txt").read_text(),
            re.MULTILINE,
        )
        assert named is not None
        assert ha_version == named.group(1)
        assert _version_tuple(ha_version) > _version_tuple(pinned[0].split("==")[1])
        return
    # Elsewhere the plugin's release is the one running ...
    assert pinned == [f"homeassistant=={ha_version}"]
    # ... and it is the minimum this integration declares to HACS, or newer.
    if environment == "min":
        assert ha_version == minimum
    else:
        assert _version_tuple(ha_version) > _version_tuple(minimum)


async def test_core_starts(hass: HomeAssistant) -> None:
    assert hass.state is CoreState.running
    assert await async_setup_component(hass, "homeassistant", {})

    seen: list[str] = []
    hass.bus.async_listen("energy_p2p_probe", lambda event: seen.append(event.data["x"]))
    hass.bus.async_fire("energy_p2p_probe", {"x": "ok"})
    hass.states.async_set("sensor.energy_p2p_probe", "42", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    assert seen == ["ok"]
    state = hass.states.get("sensor.energy_p2p_probe")
    assert state is not None
    assert state.state == "42"


async def test_custom_integrations_come_from_this_checkout(
    hass: HomeAssistant, enable_custom_integrations: None
) -> None:
    assert str(CHECKOUT / "custom_components") in list(custom_components.__path__)
    # Scanning custom_components/ works (energy_p2p appears once it has a manifest).
    found = await loader.async_get_custom_components(hass)
    assert isinstance(found, dict)
    if (CHECKOUT / "custom_components" / "energy_p2p" / "manifest.json").exists():
        assert "energy_p2p" in found


async def test_loopback_is_reachable_through_home_assistants_http_client(
    hass: HomeAssistant, socket_enabled: None
) -> None:
    # Home Assistant's test plugin blocks sockets unless a test asks for `socket_enabled`,
    # and then allows only 127.0.0.1: enough for an edge controller process on loopback.
    # Home Assistant's own aiohttp session reaches it.
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with async_get_clientsession(hass).get(f"http://127.0.0.1:{port}/") as response:
            assert response.status == 200
            assert await response.text() == "ok"
    finally:
        server.close()
        await server.wait_closed()
