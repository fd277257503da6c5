"""`scripts/demo --state-dir DIR`, started a second time: the same community and the same
Home Assistant carry on. The owner logs in with the password of the first start, each home
keeps its one config entry (pointed at its address now), and the dashboard keeps the
owner's edits. A real Home Assistant and the real demo homes, each started twice."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from edge_controller.demo.hass import LOGIN_FILE, RunningHass, start_hass
from edge_controller.demo.hass_client import DASHBOARD_PATH, HassClient
from edge_controller.demo.layouts import EmbeddedCommunity
from edge_controller.processes import free_port


def _start(folder: Path) -> tuple[EmbeddedCommunity, RunningHass]:
    community = EmbeddedCommunity(folder / "community")
    community.start()
    try:
        return community, start_hass(folder / "home-assistant", community.homes, free_port())
    except BaseException:
        community.stop()
        raise


async def _entries_and_dashboard(hass: RunningHass) -> tuple[dict[str, str], str]:
    async with HassClient(hass.url) as client:
        client.token = hass.token
        entries = await client.entries()
        assert all(e["state"] == "loaded" for e in entries), entries
        [config] = await client.ws([{"type": "lovelace/config", "url_path": DASHBOARD_PATH}])
        return {e["title"]: e["entry_id"] for e in entries}, config["title"]


async def _retitle_dashboard(hass: RunningHass, title: str) -> None:
    async with HassClient(hass.url) as client:
        client.token = hass.token
        [config] = await client.ws([{"type": "lovelace/config", "url_path": DASHBOARD_PATH}])
        await client.ws(
            [
                {
                    "type": "lovelace/config/save",
                    "url_path": DASHBOARD_PATH,
                    "config": {**config, "title": title},
                }
            ]
        )


def test_a_kept_state_dir_carries_on(tmp_path: Path) -> None:
    community, hass = _start(tmp_path)
    try:
        first_login = hass.login
        first_entries, _ = asyncio.run(_entries_and_dashboard(hass))
        assert len(first_entries) == 3
        # The owner edits the dashboard; the next start must not undo it.
        asyncio.run(_retitle_dashboard(hass, "Our street"))
        first_urls = {h.name: h.url for h in community.homes}
    finally:
        hass.child.stop()
        community.stop()
    # Only its owner may read the password it keeps.
    kept = tmp_path / "home-assistant" / LOGIN_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    community, hass = _start(tmp_path)
    try:
        assert hass.login == first_login
        entries, title = asyncio.run(_entries_and_dashboard(hass))
        assert entries == first_entries  # the same entries, none added twice
        assert title == "Our street"
        # The homes' API ports are new on each start: the entries follow them.
        assert {h.name: h.url for h in community.homes} != first_urls
    finally:
        hass.child.stop()
        community.stop()
