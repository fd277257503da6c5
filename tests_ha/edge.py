"""Edge controllers for the tests: the REAL one (the demo, as a process) and what stands in
for it where a real one cannot produce the condition under test.

- `start_demo`: `python -m edge_controller demo` run by this same Python 3.14 (the edge
  controller and its dependencies are installed into the Home Assistant test environment
  by tests_ha/requirements.txt), from the checkout, in its own process.
- `LoopbackProxy`: a TCP forwarder in front of a real edge controller; stopping it makes
  the edge controller unreachable exactly as a home network losing it would, and starting
  it again (same port) brings it back. (The demo itself cannot be restarted on the same
  data: it writes a new community every start.)
- `FakeEdge`: an aiohttp server speaking the documented API subset with responses
  recorded from the real demo (fixtures/flat3.json), whose state a test sets and whose
  WebSocket events a test pushes: prepaid cut-off, another API version, a 500, ...
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from homeassistant.core import HomeAssistant

CHECKOUT = Path(__file__).resolve().parent.parent
RECORDED: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "flat3.json").read_text()
)


async def eventually[T](read: Callable[[], Awaitable[T]], within: float = 30) -> T:
    """The first truthy result of `read()`, polled every 0.2 s (for a live edge controller)."""
    deadline = time.monotonic() + within
    while not (result := await read()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing from {read} within {within} s")
        await asyncio.sleep(0.2)
    return result


async def until(hass: HomeAssistant, condition: Callable[[], bool], within: float = 20) -> None:
    """Let Home Assistant run until `condition()` holds.

    Counts its steps rather than reading a clock: tests may freeze the clock."""
    for _ in range(int(within / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
        await hass.async_block_till_done()
    assert condition(), f"{condition} did not hold within {within} s"


@dataclass(frozen=True)
class EdgeHome:
    """One home of a running edge controller: where its API is and its token."""

    name: str
    account: str
    host: str
    port: int
    token: str

    def entry_data(self, **changes: Any) -> dict[str, Any]:
        """Config entry data for this home."""
        return {"host": self.host, "port": self.port, "token": self.token, **changes}


@dataclass
class Demo:
    """A running `edge_controller demo` process and its homes."""

    process: subprocess.Popen[bytes]
    homes: list[EdgeHome]
    log: Path

    def stop(self) -> None:
        """Ctrl-C it, as a user would, and wait for it to finish."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_demo(directory: Path, homes: int = 3) -> Demo:
    """Start the real demo (simulated homes on an embedded broker) and wait for its API."""
    state_file = directory / "demo.json"
    log = directory / "demo.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge_controller",
                "demo",
                "--homes",
                str(homes),
                "--state-file",
                str(state_file),
                "--data-dir",
                str(directory / "homes"),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=CHECKOUT,  # the checkout's edge_controller, whatever is installed
            env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
        )
    deadline = time.monotonic() + 60
    while not state_file.exists() or not state_file.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the demo did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    state = json.loads(state_file.read_text())
    found = []
    for home in state["homes"]:
        host, port = home["url"].removeprefix("http://").rsplit(":", 1)
        found.append(EdgeHome(home["name"], home["account"], host, int(port), home["token"]))
    return Demo(process, found, log)


class LoopbackProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target`; `stop()` cuts every connection."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (on the same port as before, if it ran before)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
            self._server.close_clients()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.write_eof()


@dataclass
class FakeEdge:
    """The API subset the integration reads, answered from recorded responses."""

    token: str = "fake-token"
    responses: dict[str, Any] = field(
        default_factory=lambda: {k: copy.deepcopy(v) for k, v in RECORDED.items()}
    )
    # path (e.g. "market"), or method and path ("PUT policy") -> (HTTP status, JSON body)
    # to answer instead
    failures: dict[str, tuple[int, Any]] = field(default_factory=dict)
    # (method and path, JSON body) of every request with a body, e.g. ("POST offers", {...})
    bodies: list[tuple[str, Any]] = field(default_factory=list)
    port: int = 0
    requests: list[str] = field(default_factory=list)
    # How the WebSocket refuses a wrong token: as the real one ("event": an error event,
    # then close 4401), by close code alone ("close"), or at the handshake ("handshake": 401).
    ws_refusal: str = "event"
    _runner: web.AppRunner | None = None
    _sockets: set[web.WebSocketResponse] = field(default_factory=set)

    @property
    def node_id(self) -> str:
        """The node id the fake announces."""
        return str(self.responses["status"]["node_id"])

    def entry_data(self, **changes: Any) -> dict[str, Any]:
        """Config entry data for the fake."""
        return {"host": "127.0.0.1", "port": self.port, "token": self.token, **changes}

    async def start(self) -> None:
        """Serve on 127.0.0.1 (the same port as before, if it ran before)."""
        app = web.Application()
        app.router.add_get("/api/v1/ws", self._ws)
        app.router.add_route("*", "/api/v1/{path:.+}", self._http)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Go away: close every WebSocket and stop listening."""
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close_streams(self) -> None:
        """Close every WebSocket, as a stopping edge controller does first; REST still answers."""
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"shutting down")

    async def push(self, event: str, data: Any) -> None:
        """Send an event to every connected WebSocket client."""
        for ws in list(self._sockets):
            await ws.send_json({"event": event, "time": 0, "data": data})

    @property
    def clients(self) -> int:
        """How many WebSocket clients are connected."""
        return len(self._sockets)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _http(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.requests.append(f"{request.method} {path}")
        if request.can_read_body:
            self.bodies.append((f"{request.method} {path}", await request.json()))
        if not self._authorized(request):
            return _error(401, "unauthorized", "wrong token")
        failure = self.failures.get(f"{request.method} {path}") or self.failures.get(path)
        if failure is not None:
            status, body = failure
            if isinstance(body, str):
                return web.Response(status=status, text=body)
            return web.json_response(body, status=status)
        if request.method == "PUT" and path == "policy":
            self.responses["policy"] = await request.json()
            return web.json_response(self.responses["policy"])
        if request.method == "PUT" and path.startswith("usb/") and "usb" in self.responses:
            # As the real one: the port switched on or off for charging, answered with it.
            ports = self.responses["usb"]["ports"]
            port = next((p for p in ports if str(p["port"]) == path[4:]), None)
            if port is None:
                return _error(404, "unknown_port", f"no USB port {path[4:]}")
            port["enabled"] = bool((await request.json())["enabled"])
            return web.json_response(port)
        if request.method == "POST" and path == "settle":
            return web.json_response({"settled": []})
        key = path.replace("/", "_")
        if request.method != "GET" or key not in self.responses:
            return _error(404, "not_found", f"no {path}")
        return web.json_response(self.responses[key])

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request) and self.ws_refusal == "handshake":
            return _error(401, "unauthorized", "wrong token")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if not self._authorized(request):
            # As the real edge controller does: an error event, then close with 4401.
            if self.ws_refusal == "event":
                await ws.send_json({"event": "error", "data": {"code": "unauthorized"}})
            await ws.close(code=4401, message=b"unauthorized")
            return ws
        self._sockets.add(ws)
        try:
            await ws.send_json({"event": "hello", "time": 0, "data": self.responses["status"]})
            async for message in ws:
                if message.type is WSMsgType.TEXT and message.data == "ping":
                    await ws.send_str("pong")
        finally:
            self._sockets.discard(ws)
        return ws


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
