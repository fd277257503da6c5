"""Stopping with WebSocket clients connected: SIGTERM ends an `energy-p2p-edge run` home
within 2 s, its charging USB port switched off first, every client told and closed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.edge.support import Community, wait_until

from .support import UsbEdgeProcess, add_usb, bearer, sigterm_and_wait

STOP_LIMIT_S = 2.0
CLIENTS = 5


async def follow(session: aiohttp.ClientSession, url: str, token: str | None) -> dict[str, Any]:
    """A client like Home Assistant's: reads every event until the server closes. Without
    a token it is one that has not yet sent its token as its first message."""
    seen: list[str] = []
    headers = bearer(token) if token is not None else {}
    async with session.ws_connect(f"{url}/api/v1/ws", headers=headers) as ws:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT and message.data.startswith("{"):
                seen.append(message.json()["event"])
        return {"events": seen, "close_code": ws.close_code}


async def test_sigterm_with_websocket_clients_stops_within_2_s_with_the_usb_port_off(
    tmp_path: Path, mosquitto: Any
) -> None:
    street = Community(tmp_path, ["flat"])
    config = street.config("flat", mosquitto.port)
    add_usb(config, watchdog_s=5)
    edge = UsbEdgeProcess(config, tmp_path / "flat.log")
    await asyncio.to_thread(edge.start)
    try:
        for record in (
            street.registrar_record(
                kind="registration",
                resource="test/usb-1",
                owner=street.account("flat"),
                resource_kind="usb_port",
                power_w=60,
                capacity_wh=1_000,
                available_wh=1_000,
                meter=street.meters["flat"].public_hex,
            ),
            street.topup("flat", 100_000),
        ):
            edge.post("records", record)
        code = await asyncio.to_thread(
            wait_until,
            lambda: edge.get("usb")["ports"][0]["attached"]["pairing_code"],
            what="the phone's pairing code",
        )
        await asyncio.to_thread(
            wait_until, lambda: edge.get("wallet")["balance"] > 0, what="the top-up sealed"
        )
        edge.post("usb/pair", {"code": code, "fund": 1_000})
        # The purchase needs the phone's wallet funded in a block: retried until it is.
        session_view = await asyncio.to_thread(
            wait_until,
            lambda: edge.post("usb/1/purchase", {"energy_wh": 5}),
            what="a purchase on port 1",
        )
        assert session_view["state"] == "charging"
        await asyncio.to_thread(
            wait_until, lambda: edge.get("usb")["ports"][0]["powered"], what="port 1 powered"
        )

        async with aiohttp.ClientSession() as http:
            followers = [
                asyncio.create_task(follow(http, edge.url, edge.token)) for _ in range(CLIENTS)
            ]
            # One more that never reads: the node must not wait for it either.
            silent = await http.ws_connect(f"{edge.url}/api/v1/ws", headers=bearer(edge.token))
            # And one that never sends its token: nor for it.
            knocking = asyncio.create_task(follow(http, edge.url, None))
            await asyncio.sleep(0.5)  # every client has its hello and some telemetry
            sent_at, took = await asyncio.to_thread(sigterm_and_wait, edge)
            clients = await asyncio.wait_for(asyncio.gather(*followers), 5)
            unauthenticated = await asyncio.wait_for(knocking, 5)
            await silent.close()
    finally:
        edge.stop()

    report = edge.usb_report()
    print(f"stop took {took:.2f} s; port off {report['off_at'] - sent_at:.3f} s after SIGTERM")
    assert edge.process is not None and edge.process.returncode == 0
    assert took < STOP_LIMIT_S
    assert report["powered"] is False
    assert 0 <= report["off_at"] - sent_at < 0.5
    assert report["after_off_mwh"] == 0
    for client in clients:
        assert client["events"][0] == "hello" and client["events"][-1] == "shutdown"
        assert client["close_code"] == 1001
    assert unauthenticated == {"events": [], "close_code": 1001}
