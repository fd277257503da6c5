"""Joining a community and admitting a home from Home Assistant, on real edge controllers:
the demo's first home keeps the registrar's key; a new edge controller of no community
yet is added by the config flow, which gives it the registrar's invitation; its request
shows on the registrar's home as a repair issue whose fix flow approves it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from homeassistant.config_entries import SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_p2p.const import DOMAIN
from custom_components.energy_p2p.membership import ISSUE_MEMBERSHIP, MembershipRequests
from custom_components.energy_p2p.repairs import async_create_fix_flow

from .edge import CHECKOUT, EdgeHome, eventually, until

pytestmark = pytest.mark.usefixtures("socket_enabled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(home: EdgeHome, method: str, path: str, body: Any = None) -> Any:
    """The edge controller's API, as a script would call it."""
    request = urllib.request.Request(
        f"http://{home.host}:{home.port}/api/v1/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {home.token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def newcomer(tmp_path: Path) -> Iterator[EdgeHome]:
    """An edge controller whose edge.yaml names no community: it waits for an invitation."""
    port = free_port()
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {"name": "Garden Flat", "data_dir": str(tmp_path / "data"),
             "api": {"port": port, "zeroconf": False}}
        )
    )  # fmt: skip
    log = (tmp_path / "edge.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_controller", "run", "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=CHECKOUT,
        env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
    )
    token_file = tmp_path / "data" / "api-token"
    try:
        for _ in range(300):
            if token_file.exists() and token_file.read_text().strip():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    pass
            assert process.poll() is None, (tmp_path / "edge.log").read_text()
            time.sleep(0.1)
        yield EdgeHome("Garden Flat", "", "127.0.0.1", port, token_file.read_text().strip())
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def test_a_home_joins_from_home_assistant_and_the_registrar_approves_it(
    hass: HomeAssistant, edge_demo: list[EdgeHome], newcomer: EdgeHome
) -> None:
    registrar_home = edge_demo[0]
    invitation = await hass.async_add_executor_job(
        api, registrar_home, "POST", "community/invitations", {"home": "Garden Flat"}
    )

    # The config flow finds an edge controller of no community and asks for the invitation.
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], newcomer.entry_data()
    )
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "join"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"invitation": "EP2P1:not-an-invitation"}
    )
    assert result["errors"] == {"base": "malformed_invitation"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"invitation": invitation["text"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    assert result["title"] == "Garden Flat"
    joined = await hass.async_add_executor_job(api, newcomer, "GET", "status")
    assert result["result"].unique_id == joined["node_id"]

    # The registrar's home: the request is a repair issue; its fix flow approves it.
    entry = MockConfigEntry(
        domain=DOMAIN, title=registrar_home.name, data=registrar_home.entry_data()
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    registry = ir.async_get(hass)

    def issue() -> ir.IssueEntry | None:
        for (domain, issue_id), found in registry.issues.items():
            names = found.translation_placeholders or {}
            ours = domain == DOMAIN and issue_id.startswith(ISSUE_MEMBERSHIP)
            if ours and names.get("name") == "Garden Flat":
                return found
        return None

    async def requested() -> bool:
        await MembershipRequests(hass, entry.entry_id, entry.runtime_data.client).refresh()
        return issue() is not None

    await eventually(requested, within=30)
    found = issue()
    assert found is not None
    flow = await async_create_fix_flow(hass, found.issue_id, found.data)
    flow.hass = hass
    step = await flow.async_step_init()
    assert step["type"] is FlowResultType.MENU
    step = await flow.async_step_approve()
    assert step["type"] is FlowResultType.FORM
    step = await flow.async_step_approve({"topup": 25})
    assert step["type"] is FlowResultType.CREATE_ENTRY

    async def named() -> bool:
        members = await hass.async_add_executor_job(api, newcomer, "GET", "members")
        return any(m["name"] == "Garden Flat" for m in members["members"])

    await eventually(named, within=30)
    wallet = await hass.async_add_executor_job(api, newcomer, "GET", "wallet")
    assert wallet["balance"] == 25_000 and wallet["account_name"] == "Garden Flat"
    await until(hass, lambda: issue() is None)
    await hass.config_entries.async_unload(entry.entry_id)


async def test_a_request_denied_or_already_decided_and_a_home_that_is_no_registrar(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    registrar_home, neighbour = edge_demo[0], edge_demo[1]
    entry = MockConfigEntry(domain=DOMAIN, title=neighbour.name, data=neighbour.entry_data())
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    registry = ir.async_get(hass)
    # Not the registrar's home: no membership issues, and no requests to poll.
    assert not [i for (_, i) in registry.issues if i.startswith(ISSUE_MEMBERSHIP)]

    registrar = MockConfigEntry(
        domain=DOMAIN, title=registrar_home.name, data=registrar_home.entry_data()
    )
    registrar.add_to_hass(hass)
    assert await hass.config_entries.async_setup(registrar.entry_id)
    await hass.async_block_till_done()
    # A request decided elsewhere meanwhile: the edge controller refuses, the flow says why.
    data = {"entry_id": registrar.entry_id, "request_id": "0123456789abcdef"}
    flow = await async_create_fix_flow(hass, f"{ISSUE_MEMBERSHIP}_x", data)
    flow.hass = hass
    step = await flow.async_step_deny()
    assert step["type"] is FlowResultType.FORM
    step = await flow.async_step_deny({"reason": "not our street"})
    assert step["type"] is FlowResultType.ABORT and step["reason"] == "refused"
    # An entry that is not loaded cannot decide anything.
    gone = await async_create_fix_flow(hass, f"{ISSUE_MEMBERSHIP}_y", {"entry_id": "nope"})
    gone.hass = hass
    step = await gone.async_step_approve({"topup": 1})
    assert step["type"] is FlowResultType.ABORT and step["reason"] == "not_loaded"
    for loaded in (entry, registrar):
        await hass.config_entries.async_unload(loaded.entry_id)
