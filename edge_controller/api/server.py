"""The edge controller's HTTP + WebSocket API, versioned under /api/v1/ (docs/api.md).

It only translates: requests become calls on the `Home`, results become JSON, and every
refusal becomes `{"error": {"code", "message"}}` with the right HTTP status. Every route
but the status page needs `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from edge_controller.api.bodies import (
    AcceptBody,
    BidBody,
    OfferBody,
    RateBody,
    RejectBody,
    RequestBody,
    UsbPairBody,
    UsbPortBody,
    UsbPurchaseBody,
)
from edge_controller.api.buildings import building_routes
from edge_controller.api.community import add_routes as add_community_routes
from edge_controller.api.counters import counter_routes
from edge_controller.api.homeassistant import add_routes as add_homeassistant_routes
from edge_controller.api.status_page import status_page
from edge_controller.app.events import Subscription
from edge_controller.app.home import Home
from edge_controller.market.checks import REQUIRED, ValidationError, from_dict
from edge_controller.refusal import Refusal, Why

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_BODY_BYTES = 64 * 1024
HOME_KEY: web.AppKey[Home] = web.AppKey("home", Home)
TOKEN_KEY: web.AppKey[str] = web.AppKey("token", str)
CLIENTS_KEY = web.AppKey[set[web.WebSocketResponse]]("clients")
# WebSockets still waiting for their token (the first message): closed on stop as well.
WAITING_KEY = web.AppKey[set[web.WebSocketResponse]]("waiting")
# Stopping tells every WebSocket client and closes it within this time, however many.
CLOSE_CLIENTS_S = 1.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> web.Response:
    error = {"code": code, "message": message, **(details or {})}
    return web.json_response({"error": error}, status=status)


# The one place a refusal's kind becomes an HTTP status.
HTTP_STATUS = {Why.INVALID: 422, Why.NOT_FOUND: 404, Why.CONFLICT: 409, Why.STORAGE: 507}


class BadRequest(Exception):
    """The HTTP request itself is unusable (not JSON, too large): refused before any
    action is tried."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@web.middleware
async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the bearer token, and turn every failure into the JSON error shape."""
    if request.path.startswith(PREFIX) and request.path != f"{PREFIX}/ws":
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return error_response(401, "unauthorized", "missing bearer token")
        if not same_token(header[7:].strip(), request.app[TOKEN_KEY]):
            return error_response(401, "unauthorized", "wrong token")
    try:
        return await handler(request)
    except Refusal as exc:
        return error_response(HTTP_STATUS[exc.why], exc.code, exc.message, exc.details)
    except BadRequest as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or "")
        raise
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        return error_response(500, "internal_error", "the edge controller hit an error")


def same_token(given: str, token: str) -> bool:
    """Whether `given` is the token, in constant time; any text may be given.

    `hmac.compare_digest` refuses non-ASCII str with a TypeError, so both are compared as
    bytes (surrogatepass: a header aiohttp decoded with surrogateescape encodes back)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")
    )


async def body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body ({} when there is none), or a 400/413 naming why not."""
    if request.content_length and request.content_length > MAX_BODY_BYTES:
        raise BadRequest(413, "too_large", f"request bodies are at most {MAX_BODY_BYTES} bytes")
    if not request.can_read_body:
        return {}
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        # A chunked body has no Content-Length: aiohttp stops reading at the limit.
        raise BadRequest(
            413, "too_large", f"request bodies are at most {MAX_BODY_BYTES} bytes"
        ) from None
    return parse_body(raw)


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request body's bytes as a JSON object whose text can be stored and signed.

    Refused with a 400 `invalid_json`: bytes that are not UTF-8, text that is not JSON,
    nesting deeper than the parser goes, integers beyond Python's 4,300 digits, strings
    holding lone surrogates (no UTF-8 for them, so no record could be signed)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest(400, "invalid_json", f"the body is not UTF-8: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(400, "invalid_json", f"the body is not JSON: {exc.msg}") from None
    except RecursionError:
        raise BadRequest(400, "invalid_json", "the body is nested too deeply") from None
    except ValueError as exc:
        # json's own limit on integer digits (int_max_str_digits) raises a plain ValueError.
        raise BadRequest(400, "invalid_json", f"the body is not usable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "invalid_json", "the body must be a JSON object")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            400, "invalid_json", "the body holds a lone surrogate (\\ud800-\\udfff)"
        ) from None
    except (RecursionError, ValueError):
        raise BadRequest(400, "invalid_json", "the body is nested too deeply") from None
    return data


B = TypeVar("B")


def read_body(kind: type[B], data: dict[str, Any]) -> B:
    """A request body read as `kind`; every mistake is named in one 422.

    The code is `missing_field` when fields are only missing, `invalid_field` otherwise;
    the message lists each mistake with its path."""
    try:
        return from_dict(kind, data)
    except ValidationError as error:
        missing = all(p.message == REQUIRED for p in error.problems)
        message = "; ".join(
            f"{p.path} is required" if p.message == REQUIRED else str(p) for p in error.problems
        )
        code = "missing_field" if missing else "invalid_field"
        raise Refusal(code, message, Why.INVALID) from None


async def read_request(request: web.Request, kind: type[B]) -> B:
    """The request's body read as `kind` (a 400, 413 or 422 when it is not one)."""
    return read_body(kind, await body(request))


def home_of(request: web.Request) -> Home:
    return request.app[HOME_KEY]


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


# --- reading -------------------------------------------------------------------------------


async def get_status(request: web.Request) -> web.Response:
    return ok(home_of(request).status())


async def get_devices(request: web.Request) -> web.Response:
    home = home_of(request)
    return ok({"devices": home.queries.devices_view(home.now)})


async def get_wallet(request: web.Request) -> web.Response:
    return ok(home_of(request).queries.wallet(request.query.get("account")))


async def get_offers(request: web.Request) -> web.Response:
    home = home_of(request)
    mine = request.query.get("mine") in ("1", "true")
    closed = request.query.get("all") in ("1", "true")
    return ok({"offers": home.queries.offers(home.now, mine=mine, include_closed=closed)})


async def get_offer(request: web.Request) -> web.Response:
    home = home_of(request)
    return ok(home.queries.offer(request.match_info["offer_id"], home.now))


async def get_trades(request: web.Request) -> web.Response:
    mine = request.query.get("all") not in ("1", "true")
    return ok({"trades": home_of(request).queries.trades(mine=mine)})


async def get_settlements(request: web.Request) -> web.Response:
    return ok({"settlements": home_of(request).queries.settlements()})


async def get_market(request: web.Request) -> web.Response:
    home = home_of(request)
    return ok(home.queries.market(home.now))


async def get_blocks(request: web.Request) -> web.Response:
    try:
        start = int(request.query["from"]) if "from" in request.query else None
        limit = min(100, max(1, int(request.query.get("limit", "20"))))
    except ValueError:
        raise Refusal("invalid_field", "from and limit must be integers", Why.INVALID) from None
    return ok({"blocks": home_of(request).queries.blocks(start, limit)})


async def get_refused(request: web.Request) -> web.Response:
    try:
        since = int(request.query["since"]) if "since" in request.query else None
        limit = min(1_000, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        raise Refusal("invalid_field", "since and limit must be integers", Why.INVALID) from None
    return ok(home_of(request).queries.refused(since, limit))


async def get_policy(request: web.Request) -> web.Response:
    return ok(home_of(request).actions.policy())


# --- acting --------------------------------------------------------------------------------


async def put_policy(request: web.Request) -> web.Response:
    return ok(home_of(request).actions.set_policy(await body(request)))


async def post_offer(request: web.Request) -> web.Response:
    offer = read_body(OfferBody, await body(request))
    home = home_of(request)
    # Only missing fields take defaults: an explicit 0 goes to the ledger, which refuses it.
    start = home.now + 60_000 if offer.start is None else offer.start
    end = start + 3_600_000 if offer.end is None else offer.end
    fields: dict[str, Any] = {
        "resource": offer.resource,
        "mode": offer.mode,
        "quantity": offer.quantity,
        "price": offer.price,
        "start": start,
        "end": end,
        "expires": min(start, end) if offer.expires is None else offer.expires,
    }
    for optional in ("to", "min_quantity", "request", "auction"):
        value = getattr(offer, optional)
        if value is not None:
            fields[optional] = value
    return ok(await home.actions.create_offer(**fields), status=201)


async def post_accept(request: web.Request) -> web.Response:
    accept = read_body(AcceptBody, await body(request))
    result = await home_of(request).actions.accept_offer(
        request.match_info["offer_id"], quantity=accept.quantity, price=accept.price
    )
    return ok(result, status=201)


async def post_reject(request: web.Request) -> web.Response:
    reason = read_body(RejectBody, await body(request)).reason or ""
    return ok(
        await home_of(request).actions.reject_offer(request.match_info["offer_id"], reason), 201
    )


async def post_cancel(request: web.Request) -> web.Response:
    return ok(
        await home_of(request).actions.cancel_offer(request.match_info["offer_id"]), status=201
    )


async def post_bid(request: web.Request) -> web.Response:
    price = read_body(BidBody, await body(request)).price
    return ok(await home_of(request).actions.bid(request.match_info["offer_id"], price), status=201)


async def post_request(request: web.Request) -> web.Response:
    wanted = read_body(RequestBody, await body(request))
    home = home_of(request)
    # Only missing fields take defaults: an explicit 0 goes to the ledger, which refuses it.
    start = home.now + 60_000 if wanted.start is None else wanted.start
    end = start + 3_600_000 if wanted.end is None else wanted.end
    result = await home.actions.request_energy(
        mode=wanted.mode,
        quantity=wanted.quantity,
        max_price=wanted.max_price,
        start=start,
        end=end,
        expires=start if wanted.expires is None else wanted.expires,
    )
    return ok(result, status=201)


async def post_rate(request: web.Request) -> web.Response:
    rating = read_body(RateBody, await body(request))
    result = await home_of(request).actions.rate_trade(
        request.match_info["trade_id"], rating.score, rating.comment or ""
    )
    return ok(result, status=201)


async def decline_reason(request: web.Request) -> str:
    """The optional `reason` of a counter-offer's decline (as a rejection's)."""
    return read_body(RejectBody, await body(request)).reason or ""


async def post_terminate(request: web.Request) -> web.Response:
    return ok(await home_of(request).actions.terminate_trade(request.match_info["trade_id"]), 201)


async def post_settle(request: web.Request) -> web.Response:
    return ok(await home_of(request).actions.settle_now())


def port_number(request: web.Request) -> int:
    text = request.match_info["port"]
    # ASCII digits only: "²" is a digit to str.isdigit, yet int() refuses it.
    if not (text.isascii() and text.isdigit()):
        raise Refusal("unknown_port", f"{text!r} is not a port number", Why.NOT_FOUND)
    return int(text)


async def get_usb(request: web.Request) -> web.Response:
    return ok(home_of(request).usb_or_refuse().view())


async def post_usb_purchase(request: web.Request) -> web.Response:
    purchase = read_body(UsbPurchaseBody, await body(request))
    result = (
        await home_of(request)
        .usb_or_refuse()
        .purchase(
            port_number(request),
            energy_wh=purchase.energy_wh,
            amount=purchase.amount,
            wallet=purchase.wallet,
        )
    )
    return ok(result, status=201)


async def post_usb_stop(request: web.Request) -> web.Response:
    return ok(await home_of(request).usb_or_refuse().stop_session(port_number(request)))


async def post_usb_pair(request: web.Request) -> web.Response:
    pair = read_body(UsbPairBody, await body(request))
    if pair.fund is not None and pair.fund < 1:
        raise Refusal("invalid_field", "fund must be at least 1", Why.INVALID)
    return ok(await home_of(request).usb_or_refuse().pair(pair.code, pair.fund), status=201)


async def put_usb_port(request: web.Request) -> web.Response:
    enabled = read_body(UsbPortBody, await body(request)).enabled
    return ok(await home_of(request).usb_or_refuse().set_enabled(port_number(request), enabled))


async def post_record(request: web.Request) -> web.Response:
    """Relay a record someone else signed (a registrar's certification or top-up)."""
    return ok(await home_of(request).actions.submit_signed(await body(request)), status=201)


# --- push ----------------------------------------------------------------------------------


async def websocket(request: web.Request) -> web.StreamResponse:
    """Push offers, trades, blocks, telemetry and wallet changes as they happen.

    Browsers cannot set headers on a WebSocket, so the token may also come as the first
    message `{"type": "auth", "token": ...}`; never in the URL, where logs and history
    would keep it: a `token` query parameter is refused at once, whatever else comes."""
    home = home_of(request)
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    token = request.app[TOKEN_KEY]
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if "token" in request.query:
        # Told now, not after waiting for a first message the client may never send.
        return await _unauthorized(ws, "a token in a URL is refused: send it in a header")
    if not same_token(given, token):
        first: Any = {}
        # Only a client that gave no token at all gets to send it as its first message.
        if not given:
            waiting = request.app[WAITING_KEY]
            waiting.add(ws)
            try:
                first = await ws.receive_json(timeout=10)
            except (TimeoutError, TypeError, ValueError, RecursionError):
                first = {}
            finally:
                waiting.discard(ws)
            if ws.closed:
                return ws  # closed while it waited: the home is stopping
        if not (isinstance(first, dict) and same_token(str(first.get("token", "")), token)):
            return await _unauthorized(ws, "wrong token")
    subscription = home.events.subscribe()
    clients = request.app[CLIENTS_KEY]
    clients.add(ws)
    await ws.send_json({"event": "hello", "time": home.now, "data": home.status()})
    sender = asyncio.create_task(_pump(ws, subscription))
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT and message.data == "ping":
                await ws.send_str("pong")
    finally:
        clients.discard(ws)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        home.events.unsubscribe(subscription)
    return ws


async def _unauthorized(ws: web.WebSocketResponse, message: str) -> web.WebSocketResponse:
    """Say why, then close with 4401 (the WebSocket's 401)."""
    await ws.send_json({"event": "error", "data": {"code": "unauthorized", "message": message}})
    await ws.close(code=4401, message=b"unauthorized")
    return ws


async def _pump(ws: web.WebSocketResponse, subscription: Subscription) -> None:
    while not ws.closed:
        event = await subscription.get()
        await ws.send_json(event)


async def close_clients(app: web.Application, now: int) -> int:
    """Tell every WebSocket client the node is stopping (a `shutdown` event), then close
    its connection (1001, going away); within `CLOSE_CLIENTS_S` whatever the clients do.
    A connection still waiting for its token is closed without a word: left open, it
    would hold the server's stop until its shutdown timeout. Returns how many clients
    there were (connections that had given their token)."""
    clients = app[CLIENTS_KEY].copy()
    waiting = app[WAITING_KEY].copy()

    async def close(ws: web.WebSocketResponse, told: bool) -> None:
        if told:
            with contextlib.suppress(Exception):
                await ws.send_json({"event": "shutdown", "time": now, "data": {"reconnect": True}})
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"stopping")

    if clients or waiting:
        tasks = [asyncio.ensure_future(close(ws, True)) for ws in clients]
        tasks += [asyncio.ensure_future(close(ws, False)) for ws in waiting]
        _, late = await asyncio.wait(tasks, timeout=CLOSE_CLIENTS_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return len(clients)


def create_app(home: Home, token: str) -> web.Application:
    """The aiohttp application serving one home."""
    app = web.Application(middlewares=[errors_and_auth], client_max_size=MAX_BODY_BYTES)
    app[HOME_KEY] = home
    app[TOKEN_KEY] = token
    app[CLIENTS_KEY] = set()
    app[WAITING_KEY] = set()
    r = app.router
    r.add_get("/", status_page)
    r.add_get(f"{PREFIX}/status", get_status)
    r.add_get(f"{PREFIX}/devices", get_devices)
    r.add_get(f"{PREFIX}/wallet", get_wallet)
    r.add_get(f"{PREFIX}/offers", get_offers)
    r.add_post(f"{PREFIX}/offers", post_offer)
    r.add_get(f"{PREFIX}/offers/{{offer_id}}", get_offer)
    r.add_post(f"{PREFIX}/offers/{{offer_id}}/accept", post_accept)
    r.add_post(f"{PREFIX}/offers/{{offer_id}}/reject", post_reject)
    r.add_post(f"{PREFIX}/offers/{{offer_id}}/cancel", post_cancel)
    r.add_post(f"{PREFIX}/offers/{{offer_id}}/bids", post_bid)
    r.add_post(f"{PREFIX}/requests", post_request)
    r.add_get(f"{PREFIX}/trades", get_trades)
    r.add_post(f"{PREFIX}/trades/{{trade_id}}/rate", post_rate)
    r.add_post(f"{PREFIX}/trades/{{trade_id}}/terminate", post_terminate)
    r.add_get(f"{PREFIX}/settlements", get_settlements)
    r.add_post(f"{PREFIX}/settle", post_settle)
    r.add_get(f"{PREFIX}/market", get_market)
    r.add_get(f"{PREFIX}/ledger/blocks", get_blocks)
    r.add_get(f"{PREFIX}/policy", get_policy)
    r.add_put(f"{PREFIX}/policy", put_policy)
    r.add_post(f"{PREFIX}/records", post_record)
    r.add_get(f"{PREFIX}/records/refused", get_refused)
    r.add_get(f"{PREFIX}/usb", get_usb)
    r.add_post(f"{PREFIX}/usb/pair", post_usb_pair)
    r.add_post(f"{PREFIX}/usb/{{port}}/purchase", post_usb_purchase)
    r.add_post(f"{PREFIX}/usb/{{port}}/stop", post_usb_stop)
    r.add_put(f"{PREFIX}/usb/{{port}}", put_usb_port)
    r.add_get(f"{PREFIX}/ws", websocket)
    r.add_routes(counter_routes(PREFIX, home_of, decline_reason))
    add_community_routes(app, PREFIX, home_of, body)
    add_homeassistant_routes(r, PREFIX, home_of, read_request)
    r.add_routes(building_routes(PREFIX, HOME_KEY, body))
    return app


class ApiServer:
    """Runs the API of one home on host:port until stopped."""

    def __init__(self, home: Home, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.home = home
        self.app = create_app(home, token)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        # Requests still running when it stops get this long; WebSockets are closed before.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Tell and close the WebSocket clients, then stop serving (about a second at most)."""
        if self._runner is not None:
            closed = await close_clients(self.app, self.home.now)
            if closed:
                log.info("closed %d WebSocket client(s)", closed)
            await self._runner.cleanup()
            self._runner = None
