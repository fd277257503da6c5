"""An async client of the edge controller's HTTP + WebSocket API, version 1 (docs/api.md).

It knows nothing of Home Assistant: it takes an aiohttp session and imports nothing but
aiohttp and the standard library, so it is published as its own library (`energy-p2p-client`),
as Envoy's `pyenphase` is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias
from urllib.parse import quote

import aiohttp

_LOGGER = logging.getLogger(__name__)

# The edge controller's API version this client speaks (docs/api.md); fields are only ever
# added within a version, so any other version is refused.
API_VERSION: Final = 1
API_PATH: Final = "/api/v1"
# Reconnecting the event stream: 1 s, 2 s, 4 s, ... at most 60 s between attempts.
RECONNECT_MIN_DELAY = 1.0
RECONNECT_MAX_DELAY = 60.0

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)
# The server closes a WebSocket whose token it refused with this code (after an
# `error` event): the handshake itself always succeeds.
WS_CLOSE_UNAUTHORIZED = 4401
# Three of the server's 30 s heartbeats missed.
STREAM_SILENCE_TIMEOUT = 90.0
_WS_ENDED = frozenset(
    {
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSING,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR,
    }
)

JSON: TypeAlias = dict[str, Any]
EventHandler: TypeAlias = Callable[[str, Any], Awaitable[None]]
StateHandler: TypeAlias = Callable[[], Awaitable[None]]


class EnergyP2PError(Exception):
    """Any failure talking to the edge controller."""


class CannotConnect(EnergyP2PError):
    """The edge controller did not answer (down, unreachable, timed out)."""


class InvalidAuth(EnergyP2PError):
    """The edge controller refused the token (401)."""


class ApiError(EnergyP2PError):
    """The edge controller answered with an error: its machine-readable code and message."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class UnsupportedApiVersion(ApiError):
    """The edge controller speaks an API version this integration does not."""

    def __init__(self, version: object) -> None:
        super().__init__(
            "unsupported_api_version",
            f"the edge controller speaks API version {version}, this integration {API_VERSION}",
        )
        self.version = version


def check_api_version(status: JSON) -> None:
    """Raise `UnsupportedApiVersion` unless `status` (GET status) is API version 1."""
    if status.get("api_version") != API_VERSION:
        raise UnsupportedApiVersion(status.get("api_version"))


def reconnect_delay(attempt: int) -> float:
    """Seconds to wait before reconnect `attempt` (0-based): doubling, capped."""
    return float(min(RECONNECT_MAX_DELAY, RECONNECT_MIN_DELAY * 2 ** min(attempt, 16)))


class EnergyP2PClient:
    """The edge controller's API at `host:port`, authenticated with `token`."""

    def __init__(self, session: aiohttp.ClientSession, host: str, port: int, token: str) -> None:
        self._session = session
        self.host = host
        self.port = port
        self._token = token
        self.base_url = f"http://{_url_host(host)}:{port}{API_PATH}"

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: JSON | None = None,
    ) -> JSON:
        try:
            async with self._session.request(
                method,
                f"{self.base_url}/{path}",
                params=params,
                json=body,
                headers=self._headers,
                timeout=REQUEST_TIMEOUT,
            ) as response:
                try:
                    payload: Any = await response.json(content_type=None)
                except ValueError:
                    payload = None
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CannotConnect(f"{method} {path}: {exc!r}") from exc
        if status == 401:
            raise InvalidAuth(_error_message(payload, "unauthorized"))
        if status >= 400:
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                raise ApiError(str(error.get("code")), str(error.get("message")), status)
            raise ApiError("http_error", f"HTTP {status} from {method} {path}", status)
        if not isinstance(payload, dict):
            raise ApiError("malformed_response", f"{method} {path} did not return an object")
        return payload

    async def get_status(self) -> JSON:
        """`GET status`: the node, its community, ledger, broker and peers."""
        return await self._request("GET", "status")

    async def get_checked_status(self) -> JSON:
        """`GET status`, refusing an edge controller with another API version."""
        status = await self.get_status()
        check_api_version(status)
        return status

    async def get_wallet(self, account: str | None = None) -> JSON:
        """`GET wallet`: this home's wallet, or `account`'s."""
        return await self._request("GET", "wallet", {"account": account} if account else None)

    async def get_devices(self) -> list[JSON]:
        """`GET devices`: the devices with their latest readings."""
        return _list(await self._request("GET", "devices"), "devices")

    async def get_offers(self, mine: bool = False, include_closed: bool = False) -> list[JSON]:
        """`GET offers`: open offers (or all), newest first."""
        params = {"mine": "1"} if mine else {}
        if include_closed:
            params["all"] = "1"
        return _list(await self._request("GET", "offers", params or None), "offers")

    async def get_trades(self, include_others: bool = False) -> list[JSON]:
        """`GET trades`: our trades (or the community's), newest first."""
        params = {"all": "1"} if include_others else None
        return _list(await self._request("GET", "trades", params), "trades")

    async def get_settlements(self) -> list[JSON]:
        """`GET settlements`: our settled trades."""
        return _list(await self._request("GET", "settlements"), "settlements")

    async def get_market(self) -> JSON:
        """`GET market`: trades, volume and prices over the last 24 hours."""
        return await self._request("GET", "market")

    async def get_blocks(self, start: int | None = None, limit: int | None = None) -> list[JSON]:
        """`GET ledger/blocks`: the newest blocks, or `limit` from height `start`."""
        params = {}
        if start is not None:
            params["from"] = str(start)
        if limit is not None:
            params["limit"] = str(limit)
        return _list(await self._request("GET", "ledger/blocks", params or None), "blocks")

    async def get_policy(self) -> JSON:
        """`GET policy`: the owner's market policy."""
        return await self._request("GET", "policy")

    async def set_policy(self, policy: JSON) -> JSON:
        """`PUT policy`: returns the policy in force (`ApiError` `invalid_policy` if bad)."""
        return await self._request("PUT", "policy", body=policy)

    async def get_ha_entities(self) -> JSON:
        """`GET homeassistant/entities`: the edge controller's Home Assistant devices, the
        entities each follows and every entity to relay (`watched`)."""
        return await self._request("GET", "homeassistant/entities")

    async def set_ha_entities(self, devices: JSON) -> JSON:
        """`PUT homeassistant/entities`: the entities and services the owner picked, by
        device id."""
        return await self._request("PUT", "homeassistant/entities", body={"devices": devices})

    async def relay_states(self, states: list[JSON], results: list[JSON]) -> JSON:
        """`POST homeassistant/states`: relayed entity states and how the last service calls
        went; answers with the service calls to carry out now."""
        body = {"states": states, "results": results}
        return await self._request("POST", "homeassistant/states", body=body)

    async def get_usb(self) -> JSON:
        """`GET usb`: the USB charging hub, meter, ports and recent sessions (404: none)."""
        return await self._request("GET", "usb")

    async def set_usb_port(self, port: int, enabled: bool) -> JSON:
        """`PUT usb/{port}`: switch a USB port on or off for sale; returns the port."""
        return await self._request("PUT", f"usb/{port}", body={"enabled": enabled})

    async def settle(self) -> JSON:
        """`POST settle`: settle every due sale now; {`settled`: [trade ids]}."""
        return await self._request("POST", "settle", body={})

    async def get_building(self) -> JSON:
        """`GET building`: taps, owners, balances and cut-offs (404: no building)."""
        return await self._request("GET", "building")

    async def get_monitor(self) -> JSON:
        """`GET monitor`: the community's volumes, prices, trends and trading pairs."""
        return await self._request("GET", "monitor")

    async def get_statement(self, owner: str, month: str) -> JSON:
        """`GET statements`: an owner's statement of a month ("2026-12") as JSON."""
        return await self._request("GET", "statements", {"owner": owner, "month": month})

    async def get_statement_file(self, owner: str, month: str, kind: str) -> bytes:
        """`GET statements` as `kind` ("csv" or "pdf"): the file's bytes."""
        params = {"owner": owner, "month": month, "format": kind}
        try:
            async with self._session.get(
                f"{self.base_url}/statements",
                params=params,
                headers=self._headers,
                timeout=REQUEST_TIMEOUT,
            ) as response:
                content = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CannotConnect(f"GET statements: {exc!r}") from exc
        if status == 401:
            raise InvalidAuth("unauthorized")
        if status >= 400:
            raise ApiError("http_error", f"HTTP {status} from GET statements", status)
        return content

    # --- acting: each returns the edge controller's 201 answer (docs/api.md, "Acting") ----

    async def create_offer(self, offer: JSON) -> JSON:
        """`POST offers`: sign and publish an offer; returns it (`status: pending`)."""
        return await self._request("POST", "offers", body=offer)

    async def accept_offer(
        self, offer_id: str, quantity: int | None = None, price: int | None = None
    ) -> JSON:
        """`POST offers/{id}/accept`: {`acceptance` (the trade id), `conditional`}."""
        body: JSON = {}
        if quantity is not None:
            body["quantity"] = quantity
        if price is not None:
            body["price"] = price
        return await self._request("POST", f"offers/{_segment(offer_id)}/accept", body=body)

    async def reject_offer(self, offer_id: str, reason: str | None = None) -> JSON:
        """`POST offers/{id}/reject`: {`rejection`}."""
        body: JSON = {"reason": reason} if reason else {}
        return await self._request("POST", f"offers/{_segment(offer_id)}/reject", body=body)

    async def cancel_offer(self, offer_id: str) -> JSON:
        """`POST offers/{id}/cancel` (our own offers only): {`cancel`}."""
        return await self._request("POST", f"offers/{_segment(offer_id)}/cancel", body={})

    async def bid(self, offer_id: str, price: int) -> JSON:
        """`POST offers/{id}/bids`: {`bid`}."""
        return await self._request(
            "POST", f"offers/{_segment(offer_id)}/bids", body={"price": price}
        )

    async def request_energy(self, request: JSON) -> JSON:
        """`POST requests`: {`request`}."""
        return await self._request("POST", "requests", body=request)

    async def rate_trade(self, trade_id: str, score: int, comment: str | None = None) -> JSON:
        """`POST trades/{id}/rate`: {`rating`}."""
        body: JSON = {"score": score}
        if comment:
            body["comment"] = comment
        return await self._request("POST", f"trades/{_segment(trade_id)}/rate", body=body)

    async def confirm_counter_offer(self, counter_id: str) -> JSON:
        """`POST counter-offers/{id}/confirm`: {`confirmation`, `trade`}."""
        path = f"counter-offers/{_segment(counter_id)}/confirm"
        return await self._request("POST", path, body={})

    async def decline_counter_offer(self, counter_id: str, reason: str | None = None) -> JSON:
        """`POST counter-offers/{id}/decline`: {`rejection`}."""
        body: JSON = {"reason": reason} if reason else {}
        path = f"counter-offers/{_segment(counter_id)}/decline"
        return await self._request("POST", path, body=body)

    async def terminate_trade(self, trade_id: str) -> JSON:
        """`POST trades/{id}/terminate`: {`termination`}."""
        return await self._request("POST", f"trades/{_segment(trade_id)}/terminate", body={})

    async def buy_usb_charge(
        self, port: int, energy_wh: int | None = None, amount: int | None = None
    ) -> JSON:
        """`POST usb/{port}/purchase` with `energy_wh` or `amount`: the USB session."""
        body: JSON = {"energy_wh": energy_wh} if energy_wh is not None else {"amount": amount}
        return await self._request("POST", f"usb/{port}/purchase", body=body)

    async def pair_phone(self, code: str, fund: int | None = None) -> JSON:
        """`POST usb/pair`: bind the phone showing `code` to a new wallet, funded with
        `fund` milli-units from the home's account; {`phone`, `wallet`}."""
        body: JSON = {"code": code}
        if fund is not None:
            body["fund"] = fund
        return await self._request("POST", "usb/pair", body=body)

    async def join_community(self, invitation: str, name: str | None = None) -> JSON:
        """`POST community/join` on an edge controller of no community yet."""
        body: JSON = {"invitation": invitation}
        if name:
            body["name"] = name
        return await self._request("POST", "community/join", body=body)

    async def get_membership(self) -> JSON:
        """`GET community/membership`: whether this home is a member, and a registrar's."""
        return await self._request("GET", "community/membership")

    async def get_membership_requests(self) -> list[JSON]:
        """`GET community/requests`: the requests waiting for the registrar."""
        return _list(await self._request("GET", "community/requests"), "requests")

    async def approve_membership(self, request_id: str, topup: int = 0) -> JSON:
        """`POST community/requests/{id}/approve` with an opening top-up (milli-units)."""
        path = f"community/requests/{_segment(request_id)}/approve"
        return await self._request("POST", path, body={"topup": topup})

    async def deny_membership(self, request_id: str, reason: str = "") -> JSON:
        """`POST community/requests/{id}/deny`."""
        path = f"community/requests/{_segment(request_id)}/deny"
        return await self._request("POST", path, body={"reason": reason})

    async def stream_events(
        self,
        on_event: EventHandler,
        on_connected: StateHandler,
        on_disconnected: StateHandler,
        on_auth_failed: StateHandler,
    ) -> None:
        """Follow `GET ws` until cancelled, reconnecting with capped exponential backoff.

        `on_connected` runs after each `hello` (the caller should re-read what it shows:
        events may have been missed), `on_disconnected` once when a connection is lost (or the
        first cannot be made), `on_auth_failed` when the token is refused
        (the stream then ends). Every other event goes to `on_event(event, data)`.
        """
        attempt = 0
        connected: bool | None = None  # unknown until the first attempt
        while True:
            try:
                async with self._session.ws_connect(
                    f"{self.base_url}/ws", headers=self._headers
                ) as ws:
                    while True:
                        # The server pings every 30 s and sends telemetry every control
                        # cycle: this much silence means the connection is dead.
                        message = await ws.receive(timeout=STREAM_SILENCE_TIMEOUT)
                        if message.type in _WS_ENDED:
                            break
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            continue
                        try:
                            event = message.json()
                        except ValueError:
                            continue  # `pong`, or something that is not an event
                        if not isinstance(event, dict):
                            continue
                        name, data = event.get("event"), event.get("data")
                        if name == "error" and _is_unauthorized(data):
                            await on_auth_failed()
                            return
                        if name == "hello":
                            attempt = 0
                            connected = True
                            await on_connected()
                        elif isinstance(name, str):
                            await on_event(name, data)
                    if ws.close_code == WS_CLOSE_UNAUTHORIZED:
                        await on_auth_failed()
                        return
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401:
                    await on_auth_failed()
                    return
                _LOGGER.debug("event stream handshake failed: %s", exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                _LOGGER.debug("event stream failed: %r", exc)
            if connected is not False:
                connected = False
                await on_disconnected()
            delay = reconnect_delay(attempt)
            attempt += 1
            _LOGGER.debug("event stream reconnecting in %.0f s", delay)
            await asyncio.sleep(delay)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _segment(value: str) -> str:
    """`value` as one path segment: an id typed by a user cannot reach another endpoint."""
    return quote(value, safe="")


def _list(payload: JSON, key: str) -> list[JSON]:
    value = payload.get(key)
    if not isinstance(value, list):
        raise ApiError("malformed_response", f"the answer has no list {key!r}")
    return [item for item in value if isinstance(item, dict)]


def _error_message(payload: Any, default: str) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message", default))
    return default


def _is_unauthorized(data: Any) -> bool:
    return isinstance(data, dict) and data.get("code") == "unauthorized"
