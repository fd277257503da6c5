"""energy-p2p-client against a small aiohttp server speaking the API's shapes (docs/api.md):
what each answer becomes, and how the event stream connects, reports and reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import energy_p2p_client
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from energy_p2p_client import (
    ApiError,
    CannotConnect,
    EnergyP2PClient,
    InvalidAuth,
    UnsupportedApiVersion,
    reconnect_delay,
)
from energy_p2p_client import client as client_module

TOKEN = "secret"


class Edge:
    """A stand-in edge controller: answers set per path, WebSocket scripts per connection."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {}
        self.seen: list[tuple[str, str, Any]] = []
        self.ws_scripts: list[list[Any]] = []
        self.ws_connections = 0
        app = web.Application()
        app.router.add_get("/api/v1/ws", self._ws)
        app.router.add_route("*", "/api/v1/{path:.*}", self._rest)
        self.server = TestServer(app, host="127.0.0.1", port=0)

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response(
                {"error": {"code": "unauthorized", "message": "bad token"}}, status=401
            )
        body = await request.json() if request.can_read_body else None
        self.seen.append((request.method, request.raw_path, body))
        status, payload = self.answers.get(request.match_info["path"], (404, None))
        if isinstance(payload, str):
            return web.Response(status=status, text=payload)
        return web.json_response(payload, status=status)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        script = self.ws_scripts[self.ws_connections] if self.ws_scripts else []
        self.ws_connections += 1
        for step in script:
            if isinstance(step, int):
                await ws.close(code=step)
                return ws
            await ws.send_json(step)
        await ws.close()
        return ws


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    stand_in = Edge()
    await stand_in.server.start_server()
    try:
        yield stand_in
    finally:
        await stand_in.server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def client_of(session: aiohttp.ClientSession, edge: Edge, token: str = TOKEN) -> EnergyP2PClient:
    assert edge.server.port is not None
    return EnergyP2PClient(session, "127.0.0.1", edge.server.port, token)


def test_the_package_names_its_version_and_is_typed() -> None:
    assert energy_p2p_client.__version__ == "0.1.0"
    assert (client_module.__file__ or "").endswith("client.py")
    source = client_module.__spec__.origin if client_module.__spec__ else None
    assert source is not None
    assert (Path(source).parent / "py.typed").exists()


async def test_reads_come_back_as_the_edge_controller_sent_them(
    session: aiohttp.ClientSession, edge: Edge
) -> None:
    edge.answers["status"] = (200, {"api_version": 1, "node_id": "ep1"})
    edge.answers["offers"] = (200, {"offers": [{"id": "o1"}, "not an object"]})
    client = client_of(session, edge)

    assert (await client.get_checked_status())["node_id"] == "ep1"
    assert await client.get_offers(mine=True, include_closed=True) == [{"id": "o1"}]
    assert edge.seen[-1][1] == "/api/v1/offers?mine=1&all=1"


async def test_another_api_version_is_refused(session: aiohttp.ClientSession, edge: Edge) -> None:
    edge.answers["status"] = (200, {"api_version": 2})
    with pytest.raises(UnsupportedApiVersion) as refused:
        await client_of(session, edge).get_checked_status()
    assert refused.value.version == 2


async def test_a_refusal_keeps_its_code_message_and_status(
    session: aiohttp.ClientSession, edge: Edge
) -> None:
    edge.answers["offers/o1/accept"] = (
        409,
        {"error": {"code": "offer_expired", "message": "offer o1 has expired"}},
    )
    with pytest.raises(ApiError) as refused:
        await client_of(session, edge).accept_offer("o1", quantity=500)
    assert (refused.value.code, refused.value.message, refused.value.status) == (
        "offer_expired",
        "offer o1 has expired",
        409,
    )
    assert edge.seen[-1] == ("POST", "/api/v1/offers/o1/accept", {"quantity": 500})


async def test_an_error_without_a_body_still_says_what_failed(
    session: aiohttp.ClientSession, edge: Edge
) -> None:
    edge.answers["market"] = (502, "gateway down")
    with pytest.raises(ApiError, match="HTTP 502 from GET market"):
        await client_of(session, edge).get_market()
    edge.answers["market"] = (200, "[1, 2]")
    with pytest.raises(ApiError, match="did not return an object"):
        await client_of(session, edge).get_market()


async def test_a_refused_token_is_invalid_auth(session: aiohttp.ClientSession, edge: Edge) -> None:
    with pytest.raises(InvalidAuth, match="bad token"):
        await client_of(session, edge, token="wrong").get_status()


async def test_no_answer_is_cannot_connect(session: aiohttp.ClientSession) -> None:
    # A port nothing listens on: bound, read back, closed.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(CannotConnect):
        await EnergyP2PClient(session, "127.0.0.1", port, TOKEN).get_status()


async def test_an_id_typed_by_a_user_stays_one_path_segment(
    session: aiohttp.ClientSession, edge: Edge
) -> None:
    edge.answers["offers/../policy/cancel"] = (200, {"cancel": "x"})
    await client_of(session, edge).cancel_offer("../policy")
    # Sent encoded: the server routes it to offers/{id}/cancel, never to policy.
    assert edge.seen[-1][1] == "/api/v1/offers/..%2Fpolicy/cancel"


def test_reconnect_delays_double_up_to_the_cap() -> None:
    assert [reconnect_delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


async def test_the_event_stream_reports_events_reconnects_and_stops_on_a_refused_token(
    session: aiohttp.ClientSession, edge: Edge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "RECONNECT_MIN_DELAY", 0.01)
    edge.ws_scripts = [
        # First connection: hello, one event, then the server goes away.
        [{"event": "hello", "data": {}}, {"event": "offer", "data": {"id": "o1"}}, "x"],
        # Second: hello, then the token is refused with the documented close code.
        [{"event": "hello", "data": {}}, client_module.WS_CLOSE_UNAUTHORIZED],
    ]
    edge.ws_scripts[0][-1] = {"event": "trade", "data": {"id": "t1"}}
    log: list[str] = []

    async def on_event(name: str, data: Any) -> None:
        log.append(f"{name}:{data['id']}")

    async def mark(what: str) -> None:
        log.append(what)

    await asyncio.wait_for(
        client_of(session, edge).stream_events(
            on_event,
            lambda: mark("connected"),
            lambda: mark("disconnected"),
            lambda: mark("auth_failed"),
        ),
        timeout=10,
    )
    assert log == [
        "connected",
        "offer:o1",
        "trade:t1",
        "disconnected",
        "connected",
        "auth_failed",
    ]
    assert edge.ws_connections == 2
