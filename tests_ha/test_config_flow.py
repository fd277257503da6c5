"""Every path of the config flow: by hand, by zeroconf, reauth, reconfigure, and each error.

The edge controller is the real demo wherever it can produce the condition (a wrong
token, a different node, nobody listening); the fake only for another API version and an
internal error.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest
from homeassistant.config_entries import SOURCE_USER, SOURCE_ZEROCONF
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_p2p.const import DEFAULT_PORT, DOMAIN

from .edge import EdgeHome, FakeEdge

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture(autouse=True)
def mock_setup_entry() -> Iterator[AsyncMock]:
    """The flow's result, not the entry's setup, is under test here."""
    with patch("custom_components.energy_p2p.async_setup_entry", return_value=True) as setup:
        yield setup


def discovery(home: EdgeHome, **properties: str) -> ZeroconfServiceInfo:
    """What zeroconf reports for `home` (its TXT records as docs/api.md lists them)."""
    txt = {
        "node_id": home.account,
        "name": home.name,
        "api_version": "1",
        "path": "/api/v1",
        "version": "0.1.0",
        **properties,
    }
    return ZeroconfServiceInfo(
        ip_address=ip_address(home.host),
        ip_addresses=[ip_address(home.host)],
        port=home.port,
        hostname="edge.local.",
        type="_energy-p2p._tcp.local.",
        name=f"{home.name}._energy-p2p._tcp.local.",
        properties={k: v for k, v in txt.items() if v},
    )


async def start_user_flow(hass: HomeAssistant) -> Any:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    return result


async def test_user_adds_a_real_edge_controller(
    hass: HomeAssistant, edge_demo: list[EdgeHome], mock_setup_entry: AsyncMock
) -> None:
    home = edge_demo[2]
    result = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], home.entry_data())
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Flat 3"
    assert result["data"] == home.entry_data()
    assert result["result"].unique_id == home.account
    assert len(mock_setup_entry.mock_calls) == 1


async def test_the_port_defaults_to_8780(hass: HomeAssistant) -> None:
    result = await start_user_flow(hass)
    schema = result["data_schema"].schema
    port = next(key for key in schema if key == CONF_PORT)
    assert port.default() == DEFAULT_PORT == 8780


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({CONF_TOKEN: "not-the-token"}, "invalid_auth"),
        ({CONF_PORT: "closed"}, "cannot_connect"),
    ],
)
async def test_user_errors_from_a_real_edge_controller_then_recovery(
    hass: HomeAssistant,
    edge_demo: list[EdgeHome],
    unused_tcp_port: int,
    change: dict[str, Any],
    error: str,
) -> None:
    home = edge_demo[0]
    if change.get(CONF_PORT) == "closed":
        change = {CONF_PORT: unused_tcp_port}
    result = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], home.entry_data(**change)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], home.entry_data())
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Sunny House"


@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        ({"api_version": 2}, "unsupported_api_version"),
        ({"failure": (500, {"error": {"code": "internal_error", "message": "x"}})}, "unknown"),
    ],
)
async def test_user_errors_a_real_edge_controller_cannot_be_made_to_give(
    hass: HomeAssistant, fake_edge: FakeEdge, breakage: dict[str, Any], error: str
) -> None:
    if "api_version" in breakage:
        fake_edge.responses["status"]["api_version"] = breakage["api_version"]
    else:
        fake_edge.failures["status"] = breakage["failure"]
    result = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], fake_edge.entry_data()
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}


async def test_user_cannot_add_the_same_edge_controller_twice(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[1]
    MockConfigEntry(domain=DOMAIN, unique_id=home.account, data=home.entry_data()).add_to_hass(hass)
    result = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], home.entry_data())
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_zeroconf_discovery_asks_for_the_token_and_adds_it(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[1]
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=discovery(home)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "zeroconf_confirm"
    assert result["description_placeholders"] == {
        "name": "Hydrogen House",
        "host": home.host,
        "port": str(home.port),
    }
    flow = hass.config_entries.flow.async_get(result["flow_id"])
    assert flow["context"]["title_placeholders"] == {"name": "Hydrogen House"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: "wrong"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: home.token}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Hydrogen House"
    assert result["data"] == home.entry_data()
    assert result["result"].unique_id == home.account


async def test_zeroconf_follows_a_known_edge_controller_to_its_new_address(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[1]
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=home.account,
        data=home.entry_data(**{CONF_HOST: "192.0.2.7", CONF_PORT: 8780}),
    )
    entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=discovery(home)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data == home.entry_data()


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        ({"api_version": "2"}, "unsupported_api_version"),
        ({"path": "/api/v2"}, "unsupported_api_version"),
        ({"node_id": ""}, "not_energy_p2p"),
    ],
)
async def test_zeroconf_aborts_for_what_it_cannot_talk_to(
    hass: HomeAssistant, edge_demo: list[EdgeHome], properties: dict[str, str], reason: str
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=discovery(edge_demo[0], **properties)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == reason


async def test_zeroconf_without_a_name_uses_the_host_name(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=discovery(edge_demo[0], name="")
    )
    assert result["description_placeholders"]["name"] == "edge"


async def test_reauth_takes_a_new_token(hass: HomeAssistant, edge_demo: list[EdgeHome]) -> None:
    home = edge_demo[0]
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id=home.account, title=home.name, data=home.entry_data(token="old")
    )
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["description_placeholders"] == {"name": "Sunny House"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: "still-wrong"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: home.token}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data == home.entry_data()


async def test_reauth_refuses_the_token_of_another_edge_controller(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[0]
    # The entry was made for another node that now answers at this address.
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="ep-someone-else", data=home.entry_data(token="old")
    )
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: home.token}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_node"
    assert entry.data[CONF_TOKEN] == "old"


async def test_reconfigure_moves_the_entry_to_a_new_address(
    hass: HomeAssistant, edge_demo: list[EdgeHome], unused_tcp_port: int
) -> None:
    home = edge_demo[2]
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=home.account,
        title=home.name,
        data=home.entry_data(port=unused_tcp_port),
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], home.entry_data(port=unused_tcp_port)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], home.entry_data())
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data == home.entry_data()


async def test_reconfigure_refuses_another_edge_controller(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home, other = edge_demo[0], edge_demo[1]
    entry = MockConfigEntry(domain=DOMAIN, unique_id=home.account, data=home.entry_data())
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], other.entry_data())
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_node"
    assert entry.data == home.entry_data()
