"""The API client against a real edge controller (the demo), and the error mapping for
answers a real one cannot be made to give on demand."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from custom_components.energy_p2p.energy_p2p_client import (
    ApiError,
    CannotConnect,
    EnergyP2PClient,
    InvalidAuth,
    UnsupportedApiVersion,
    reconnect_delay,
)
from custom_components.energy_p2p.energy_p2p_client import client as api

from .edge import EdgeHome, FakeEdge, eventually


def client_for(hass: HomeAssistant, home: EdgeHome, token: str | None = None) -> EnergyP2PClient:
    return EnergyP2PClient(async_get_clientsession(hass), home.host, home.port, token or home.token)


async def test_reads_every_endpoint_of_a_real_edge_controller(
    hass: HomeAssistant, socket_enabled: None, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[2]
    client = client_for(hass, home)

    status = await client.get_checked_status()
    assert status["node_id"] == home.account
    assert status["name"] == home.name == "Flat 3"
    assert status["community"]["currency"] == "DEMO"

    wallet = await client.get_wallet()
    assert wallet["account"] == home.account
    assert isinstance(wallet["balance"], int)
    assert isinstance(wallet["cut_off"], bool)
    other = await client.get_wallet(edge_demo[0].account)
    assert other["account"] == edge_demo[0].account

    devices = await client.get_devices()
    assert devices and all("role" in d for d in devices)
    assert isinstance(await client.get_offers(), list)
    assert isinstance(await client.get_offers(mine=True, include_closed=True), list)
    assert isinstance(await client.get_trades(), list)
    assert isinstance(await client.get_trades(include_others=True), list)
    assert isinstance(await client.get_settlements(), list)
    market = await client.get_market()
    assert {"volume_wh", "average_price", "last_price", "open_offers"} <= market.keys()

    # A fresh demo seals its first block within seconds.
    blocks = await eventually(lambda: client.get_blocks(limit=2))
    assert 1 <= len(blocks) <= 2
    assert [b["height"] for b in await client.get_blocks(start=1, limit=1)] == [1]


async def test_policy_round_trips_and_a_bad_one_is_refused_with_its_code(
    hass: HomeAssistant, socket_enabled: None, edge_demo: list[EdgeHome]
) -> None:
    client = client_for(hass, edge_demo[2])
    policy = await client.get_policy()
    # Writing back what is in force changes nothing for the other tests.
    assert await client.set_policy(policy) == policy

    with pytest.raises(ApiError) as refused:
        await client.set_policy({"buy": {"max_price": "cheap"}})
    assert refused.value.code == "invalid_policy"
    assert refused.value.status == 422
    assert "buy.max_price" in refused.value.message
    assert await client.get_policy() == policy


async def test_a_wrong_token_is_invalid_auth(
    hass: HomeAssistant, socket_enabled: None, edge_demo: list[EdgeHome]
) -> None:
    with pytest.raises(InvalidAuth):
        await client_for(hass, edge_demo[0], token="wrong").get_status()


async def test_nobody_listening_is_cannot_connect(
    hass: HomeAssistant, socket_enabled: None, unused_tcp_port: int
) -> None:
    client = EnergyP2PClient(async_get_clientsession(hass), "127.0.0.1", unused_tcp_port, "t")
    with pytest.raises(CannotConnect):
        await client.get_status()


async def test_ipv6_hosts_are_bracketed_in_the_url(hass: HomeAssistant) -> None:
    client = EnergyP2PClient(async_get_clientsession(hass), "fd00::7", 8780, "t")
    assert client.base_url == "http://[fd00::7]:8780/api/v1"


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (500, {"error": {"code": "internal_error", "message": "boom"}}, "internal_error"),
        (404, {"error": {"code": "unknown_offer", "message": "no offer"}}, "unknown_offer"),
        (502, "Bad Gateway", "http_error"),
        (200, "not json", "malformed_response"),
        (200, [1, 2], "malformed_response"),
    ],
)
async def test_error_answers_become_api_errors_with_their_code(
    hass: HomeAssistant,
    aioclient_mock: AiohttpClientMocker,
    status: int,
    body: Any,
    code: str,
) -> None:
    kwargs = {"json": body} if not isinstance(body, str) else {"text": body}
    aioclient_mock.get("http://edge:8780/api/v1/market", status=status, **kwargs)
    client = EnergyP2PClient(async_get_clientsession(hass), "edge", 8780, "t")
    with pytest.raises(ApiError) as error:
        await client.get_market()
    assert error.value.code == code


async def test_a_list_endpoint_without_its_list_is_malformed(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    aioclient_mock.get("http://edge:8780/api/v1/offers", json={"offers": None})
    client = EnergyP2PClient(async_get_clientsession(hass), "edge", 8780, "t")
    with pytest.raises(ApiError, match="offers"):
        await client.get_offers()


async def test_timeouts_are_cannot_connect(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    aioclient_mock.get("http://edge:8780/api/v1/status", exc=TimeoutError())
    client = EnergyP2PClient(async_get_clientsession(hass), "edge", 8780, "t")
    with pytest.raises(CannotConnect):
        await client.get_status()


async def test_another_api_version_is_refused(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    fake_edge.responses["status"]["api_version"] = 2
    client = EnergyP2PClient(
        async_get_clientsession(hass), "127.0.0.1", fake_edge.port, fake_edge.token
    )
    assert (await client.get_status())["api_version"] == 2
    with pytest.raises(UnsupportedApiVersion) as refused:
        await client.get_checked_status()
    assert refused.value.version == 2


def test_reconnect_delays_double_up_to_a_minute() -> None:
    assert [reconnect_delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert reconnect_delay(10_000) == 60


class Recorder:
    """Collects what the event stream reports."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.calls: list[str] = []
        self.changed = asyncio.Event()

    async def on_event(self, event: str, data: Any) -> None:
        self.events.append((event, data))
        self.changed.set()

    def reporter(self, name: str) -> Any:
        async def report() -> None:
            self.calls.append(name)
            self.changed.set()

        return report

    async def wait(self, predicate: Any, within: float = 20) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def stream(client: EnergyP2PClient, recorder: Recorder) -> None:
    await client.stream_events(
        recorder.on_event,
        recorder.reporter("connected"),
        recorder.reporter("disconnected"),
        recorder.reporter("auth_failed"),
    )


async def test_the_event_stream_of_a_real_edge_controller_pushes_telemetry(
    hass: HomeAssistant, socket_enabled: None, edge_demo: list[EdgeHome]
) -> None:
    recorder = Recorder()
    task = asyncio.create_task(stream(client_for(hass, edge_demo[0]), recorder))
    try:
        await recorder.wait(lambda: any(e == "telemetry" for e, _ in recorder.events))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert recorder.calls == ["connected"]
    telemetry = next(d for e, d in recorder.events if e == "telemetry")
    assert {d["role"] for d in telemetry["devices"]} >= {"pv", "battery"}


async def test_the_event_stream_reports_a_refused_token_and_ends(
    hass: HomeAssistant, socket_enabled: None, edge_demo: list[EdgeHome]
) -> None:
    recorder = Recorder()
    async with asyncio.timeout(20):
        await stream(client_for(hass, edge_demo[0], token="wrong"), recorder)
    assert recorder.calls == ["auth_failed"]


async def test_the_event_stream_reconnects_after_the_edge_controller_returns(
    hass: HomeAssistant, fake_edge: FakeEdge, fast_reconnect: None
) -> None:
    recorder = Recorder()
    client = EnergyP2PClient(
        async_get_clientsession(hass), "127.0.0.1", fake_edge.port, fake_edge.token
    )
    task = asyncio.create_task(stream(client, recorder))
    try:
        await recorder.wait(lambda: recorder.calls == ["connected"])
        await fake_edge.push("wallet", {"balance": 1})
        await fake_edge.push("not-an-event", None)
        await recorder.wait(lambda: len(recorder.events) == 2)

        await fake_edge.stop()
        await recorder.wait(lambda: recorder.calls == ["connected", "disconnected"])
        await asyncio.sleep(0.5)  # several failed attempts: still one "disconnected"
        await fake_edge.start()
        await recorder.wait(lambda: recorder.calls[-1] == "connected")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert recorder.calls == ["connected", "disconnected", "connected"]
    assert recorder.events[0] == ("wallet", {"balance": 1})


async def test_the_first_failed_connection_is_reported_once(
    hass: HomeAssistant, socket_enabled: None, unused_tcp_port: int, fast_reconnect: None
) -> None:
    recorder = Recorder()
    client = EnergyP2PClient(async_get_clientsession(hass), "127.0.0.1", unused_tcp_port, "t")
    task = asyncio.create_task(stream(client, recorder))
    try:
        await recorder.wait(lambda: bool(recorder.calls))
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert recorder.calls == ["disconnected"]
    assert api.RECONNECT_MAX_DELAY == 0.2
