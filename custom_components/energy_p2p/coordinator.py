"""Keeps what the edge controller shows: a full read on refresh, events as they arrive."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from homeassistant.core import CALLBACK_TYPE, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .const import DOMAIN, RESYNC_INTERVAL
from .energy_p2p_client import (
    JSON,
    ApiError,
    CannotConnect,
    EnergyP2PClient,
    InvalidAuth,
    UnsupportedApiVersion,
    check_api_version,
)
from .repairs import EdgeHealth

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant

    from . import EnergyP2PConfigEntry

_LOGGER = logging.getLogger(__name__)

# Offers in these states can still be accepted; the others leave the list.
LIVE_OFFER_STATUSES = frozenset({"pending", "open"})
# `GET usb` lists at most this many recent sessions, newest first.
USB_SESSIONS_KEPT = 20


@dataclass(frozen=True, slots=True)
class EnergyP2PState:
    """Everything the edge controller showed, as its API returned it (docs/api.md)."""

    status: JSON
    wallet: JSON
    devices: list[JSON] = field(default_factory=list)
    offers: list[JSON] = field(default_factory=list)
    trades: list[JSON] = field(default_factory=list)
    settlements: list[JSON] = field(default_factory=list)
    market: JSON = field(default_factory=dict)
    policy: JSON = field(default_factory=dict)
    # `GET usb`, or None when the edge controller has no USB charging (it answers 404).
    usb: JSON | None = None

    @property
    def node_id(self) -> str:
        """The edge controller's node id (its account)."""
        return str(self.status["node_id"])

    @property
    def currency(self) -> str:
        """The community currency's symbol."""
        return str(self.wallet.get("currency") or self.status["community"]["currency"])


class EnergyP2PCoordinator(DataUpdateCoordinator[EnergyP2PState]):
    """Reads the edge controller on refresh and applies its WebSocket events in between."""

    config_entry: EnergyP2PConfigEntry

    def __init__(
        self, hass: HomeAssistant, entry: EnergyP2PConfigEntry, client: EnergyP2PClient
    ) -> None:
        super().__init__(
            hass,
            _LOGGER,
            config_entry=entry,
            # What the coordinator's outage and recovery log lines name: the home.
            name=f"Energy P2P home {entry.title}",
            update_interval=RESYNC_INTERVAL,
        )
        self.client = client
        self.stream_connected = False
        self._event_listeners: list[EventListener] = []
        self.health = EdgeHealth(hass, entry)

    async def _async_update_data(self) -> EnergyP2PState:
        client = self.client
        try:
            asked = dt_util.utcnow()
            status = await client.get_status()
            answered = dt_util.utcnow()
            check_api_version(status)
            self.health.status_read(status, asked, answered)
            wallet, devices, offers, trades, settlements, market = await asyncio.gather(
                client.get_wallet(),
                client.get_devices(),
                client.get_offers(),
                client.get_trades(),
                client.get_settlements(),
                client.get_market(),
            )
            policy = await client.get_policy()
            usb = await self._async_get_usb()
            self.health.usb_read(usb)
        except InvalidAuth as exc:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth"
            ) from exc
        except UnsupportedApiVersion as exc:
            self.health.api_version_refused(exc.version)
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="unsupported_api_version",
                translation_placeholders={"version": str(exc.version)},
            ) from exc
        except (CannotConnect, ApiError) as exc:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"error": str(exc)},
            ) from exc
        return EnergyP2PState(
            status=status,
            wallet=wallet,
            devices=devices,
            offers=offers,
            trades=trades,
            settlements=settlements,
            market=market,
            policy=policy,
            usb=usb,
        )

    async def _async_get_usb(self) -> JSON | None:
        try:
            return await self.client.get_usb()
        except ApiError as exc:
            if exc.status == 404:
                return None  # no USB charging here (or an edge controller that predates it)
            raise

    @callback
    def async_apply(self, event: str, data: JSON) -> None:
        """Apply what the edge controller answered or pushed (an event's data) at once."""
        updated = apply_event(self.data, event, data)
        if updated is not self.data:
            # Not async_set_updated_data: that would postpone the periodic resync with
            # every telemetry event, i.e. forever.
            self.data = updated
            self.async_update_listeners()

    @callback
    def async_add_event_listener(self, listener: EventListener) -> CALLBACK_TYPE:
        """Call `listener(event, data, state before it)` after each WebSocket event."""
        self._event_listeners.append(listener)
        return lambda: self._event_listeners.remove(listener)

    # --- the event stream ------------------------------------------------------------------

    async def async_follow_events(self) -> None:
        """Follow the edge controller's events until the entry unloads."""
        await self.client.stream_events(
            self._on_event, self._on_connected, self._on_disconnected, self._on_auth_failed
        )

    async def _on_connected(self) -> None:
        # Events may have been missed while the stream was down: read everything again.
        # A refresh that succeeds after failures is what makes the entities available and
        # logs (once) that the edge controller is back. Only then is the stream "connected":
        # what its events change is the current state, not one a late refresh overwrites.
        await self.async_refresh()
        self.stream_connected = True
        self.async_update_listeners()

    async def _on_disconnected(self) -> None:
        self.stream_connected = False
        if self.data is None or not self.last_update_success:
            await self.async_refresh()  # nothing shown yet, or already unavailable
            return
        # A stopping edge controller closes its WebSocket first and may answer a refresh
        # for a while after: its entities go unavailable now (the coordinator logs it once,
        # by the home's name); the reconnect's refresh brings them back (logged once too).
        where = f"{self.client.host}:{self.client.port}"
        self.async_set_update_error(CannotConnect(f"the event stream from {where} closed"))

    async def _on_auth_failed(self) -> None:
        self.stream_connected = False
        await self.async_refresh()  # raises ConfigEntryAuthFailed inside: starts reauth

    async def _on_event(self, event: str, data: Any) -> None:
        if self.data is None or not isinstance(data, dict):
            return
        if event == "resync":
            # The edge controller dropped events this client was too slow for: what is
            # shown may be stale, so everything is read again.
            _LOGGER.debug("missed %s events; reading everything again", data.get("dropped"))
            await self.async_request_refresh()
            return
        if event == "record_rejected":
            _LOGGER.warning(
                "The ledger dropped our %s %s: %s (%s)",
                data.get("kind"),
                data.get("id"),
                data.get("message"),
                data.get("code"),
            )
            return
        before = self.data
        self.async_apply(event, data)
        if event == "block":
            self.health.ledger_seen(self.data.status, dt_util.utcnow())
        for listener in list(self._event_listeners):
            listener(event, data, before)


type EventListener = Callable[[str, JSON, EnergyP2PState], None]


def apply_event(state: EnergyP2PState, event: str, data: JSON) -> EnergyP2PState:
    """The state after one WebSocket event; `state` itself if the event changes nothing."""
    match event:
        case "block":
            return _apply_block(state, data)
        case "offer":
            return replace(state, offers=_upsert_offer(state.offers, data))
        case "trade":
            return replace(state, trades=_upsert(state.trades, data))
        case "wallet":
            return replace(state, wallet=data)
        case "prepaid_cutoff":
            return replace(state, wallet={**data, "cut_off": True})
        case "prepaid_restored":
            return replace(state, wallet={**data, "cut_off": False})
        case "telemetry":
            devices = data.get("devices")
            if isinstance(devices, list):
                return replace(state, devices=devices)
        case "policy":
            return replace(state, policy=data)
        case "market":
            return replace(state, market=data)
        case "usb":
            return _apply_usb_port(state, data)
        case "usb_session":
            return _apply_usb_session(state, data)
    return state


def _apply_usb_port(state: EnergyP2PState, port: JSON) -> EnergyP2PState:
    if state.usb is None or not isinstance(port.get("port"), int):
        return state  # the next full read brings the USB section
    others = [p for p in state.usb.get("ports", []) if p.get("port") != port["port"]]
    ports = sorted([*others, port], key=lambda p: int(p.get("port", 0)))
    return replace(state, usb={**state.usb, "ports": ports})


def _apply_usb_session(state: EnergyP2PState, data: JSON) -> EnergyP2PState:
    session = data.get("session")
    if state.usb is None or not isinstance(session, dict):
        return state
    sessions = _upsert(state.usb.get("sessions", []), session)[:USB_SESSIONS_KEPT]
    ports = [
        {**p, "session": session} if p.get("port") == session.get("port") else p
        for p in state.usb.get("ports", [])
    ]
    return replace(state, usb={**state.usb, "ports": ports, "sessions": sessions})


def _apply_block(state: EnergyP2PState, block: JSON) -> EnergyP2PState:
    ledger = state.status.get("ledger", {})
    height = block.get("height")
    if not isinstance(height, int) or height < ledger.get("height", 0):
        return state
    ledger = {**ledger, "height": height, "head": block.get("hash"), "head_time": block["time"]}
    return replace(state, status={**state.status, "ledger": ledger})


def _upsert(rows: list[JSON], row: JSON) -> list[JSON]:
    """`rows` with `row` replacing the one of the same id, or first (newest first)."""
    others = [r for r in rows if r.get("id") != row.get("id")]
    return [row, *others]


def _upsert_offer(offers: list[JSON], offer: JSON) -> list[JSON]:
    if offer.get("status") in LIVE_OFFER_STATUSES:
        return _upsert(offers, offer)
    return [o for o in offers if o.get("id") != offer.get("id")]
