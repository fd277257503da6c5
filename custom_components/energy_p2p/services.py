"""The integration's actions: trade on the community market from automations and the card.

Money is given and returned in the community currency's units (0.25 per kWh) and sent to
the edge controller in its milli-units; energy is in Wh; times are datetimes, sent as UTC
milliseconds (docs/api.md).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

import probatio as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv

from .building_services import async_setup_building_services
from .const import DOMAIN
from .energy_p2p_client import JSON, ApiError
from .entity import async_call_edge
from .policy import to_milli, to_ms, to_units

if TYPE_CHECKING:
    from . import EnergyP2PConfigEntry

ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"

SERVICE_CREATE_OFFER: Final = "create_offer"
SERVICE_ACCEPT_OFFER: Final = "accept_offer"
SERVICE_REJECT_OFFER: Final = "reject_offer"
SERVICE_CANCEL_OFFER: Final = "cancel_offer"
SERVICE_REQUEST_ENERGY: Final = "request_energy"
SERVICE_BID: Final = "bid"
SERVICE_TERMINATE_TRADE: Final = "terminate_trade"
SERVICE_RATE_TRADE: Final = "rate_trade"
SERVICE_BUY_USB_CHARGE: Final = "buy_usb_charge"
SERVICE_PAIR_PHONE: Final = "pair_phone"
SERVICE_GET_WALLET: Final = "get_wallet"
SERVICE_GET_OFFERS: Final = "get_offers"
SERVICE_GET_TRADES: Final = "get_trades"

MODES: Final = ("energy", "capacity")
# Prefer selling from the battery: it is what "surplus" usually means.
DEFAULT_RESOURCE_KIND: Final = "battery"

_ENTRY: dict[vol.Marker, Any] = {vol.Required(ATTR_CONFIG_ENTRY_ID): cv.string}
_QUANTITY = vol.All(vol.Coerce(int), vol.Range(min=1))
_MONEY = vol.All(vol.Coerce(float), vol.Range(min=0))
_ID = vol.All(cv.string, vol.Length(min=1, max=200))

CREATE_OFFER_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        # Empty (what a blueprint's blank input gives) means the default resource.
        vol.Optional("resource"): vol.Any(None, vol.All(cv.string, vol.Length(max=200))),
        vol.Optional("mode", default="energy"): vol.In(MODES),
        vol.Required("quantity"): _QUANTITY,
        vol.Required("price"): _MONEY,
        vol.Optional("start"): cv.datetime,
        vol.Optional("end"): cv.datetime,
        vol.Optional("expires"): cv.datetime,
        vol.Optional("to"): vol.All(cv.ensure_list, [_ID]),
    }
)
ACCEPT_OFFER_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Required("offer_id"): _ID,
        vol.Optional("quantity"): _QUANTITY,
        vol.Optional("price"): _MONEY,
    }
)
REJECT_OFFER_SCHEMA = vol.Schema(
    {**_ENTRY, vol.Required("offer_id"): _ID, vol.Optional("reason"): vol.Length(max=200)}
)
CANCEL_OFFER_SCHEMA = vol.Schema({**_ENTRY, vol.Required("offer_id"): _ID})
REQUEST_ENERGY_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Optional("mode", default="energy"): vol.In(MODES),
        vol.Required("quantity"): _QUANTITY,
        vol.Required("max_price"): _MONEY,
        vol.Optional("start"): cv.datetime,
        vol.Optional("end"): cv.datetime,
    }
)
BID_SCHEMA = vol.Schema({**_ENTRY, vol.Required("offer_id"): _ID, vol.Required("price"): _MONEY})
TERMINATE_TRADE_SCHEMA = vol.Schema({**_ENTRY, vol.Required("trade_id"): _ID})
RATE_TRADE_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Required("trade_id"): _ID,
        vol.Required("score"): vol.All(vol.Coerce(int), vol.Range(min=0, max=10)),
        vol.Optional("comment"): vol.All(cv.string, vol.Length(max=200)),
    }
)
BUY_USB_CHARGE_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Required("port"): vol.All(vol.Coerce(int), vol.Range(min=1)),
        vol.Exclusive("energy_wh", "charge"): _QUANTITY,
        vol.Exclusive("amount", "charge"): vol.All(vol.Coerce(float), vol.Range(min=0.001)),
    }
)
PAIR_PHONE_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        # As the status page or the pairing code sensor shows it; stray spaces are typos.
        vol.Required("code"): vol.All(cv.string, str.strip, vol.Length(min=1, max=50)),
        vol.Optional("fund"): vol.All(vol.Coerce(float), vol.Range(min=0.001)),
    }
)
GET_WALLET_SCHEMA = vol.Schema(_ENTRY)
GET_OFFERS_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Optional("mine", default=False): cv.boolean,
        vol.Optional("include_closed", default=False): cv.boolean,
    }
)
GET_TRADES_SCHEMA = vol.Schema({**_ENTRY, vol.Optional("include_all", default=False): cv.boolean})

type Handler = Callable[[ServiceCall], Coroutine[Any, Any, ServiceResponse]]


class ExplainedSchema(vol.Schema):
    """An action's schema whose refusal says what is wrong wherever the action was called
    from: Home Assistant's REST API answers a bare "400: Bad Request" to a schema's
    `Invalid`, but passes a ServiceValidationError's message on."""

    def __call__(self, data: Any, **kwargs: Any) -> Any:
        """The validated data, or a ServiceValidationError naming the wrong field."""
        try:
            return super().__call__(data, **kwargs)
        except vol.Invalid as exc:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="invalid_input",
                translation_placeholders={"error": str(exc)},
            ) from exc


def wallet_in_units(wallet: JSON) -> JSON:
    """GET wallet with `balance` and `escrow` in currency units."""
    return {**wallet, **{k: to_units(wallet.get(k)) for k in ("balance", "escrow")}}


def offer_in_units(offer: JSON) -> JSON:
    """An offer with its price (and auction cap / best bid) in currency units per kWh."""
    result = {**offer, "price": to_units(offer.get("price"))}
    if isinstance(auction := offer.get("auction"), dict):
        result["auction"] = {
            **auction,
            **{k: to_units(auction.get(k)) for k in ("cap", "best_bid")},
        }
    return result


def trade_in_units(trade: JSON) -> JSON:
    """A trade with its price, cost, payment and refund in currency units."""
    return {**trade, **{k: to_units(trade.get(k)) for k in ("price", "cost", "paid", "refunded")}}


def session_in_units(session: JSON) -> JSON:
    """A USB session with its price, cost, payment and refund in currency units."""
    money = ("price", "cost", "paid", "refunded")
    return {**session, **{k: to_units(session[k]) for k in money if k in session}}


def loaded_entry(hass: HomeAssistant, call: ServiceCall) -> EnergyP2PConfigEntry:
    """The loaded Energy P2P entry the call names; a translated error otherwise."""
    entry_id = call.data[ATTR_CONFIG_ENTRY_ID]
    entry = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_found",
            translation_placeholders={"entry_id": entry_id},
        )
    if entry.state is not ConfigEntryState.LOADED:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_loaded",
            translation_placeholders={"title": entry.title},
        )
    loaded: EnergyP2PConfigEntry = entry
    return loaded


def default_resource(entry: EnergyP2PConfigEntry) -> str:
    """The resource an offer sells when none is named: the battery, else the first one."""
    resources = [
        device["resource"]
        for device in entry.runtime_data.coordinator.data.devices
        if isinstance(device.get("resource"), dict) and device["resource"].get("id")
    ]
    for resource in resources:
        if resource.get("kind") == DEFAULT_RESOURCE_KIND:
            return str(resource["id"])
    if resources:
        return str(resources[0]["id"])
    raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_resource")


def _times(data: dict[str, Any], *names: str) -> JSON:
    """The datetimes among `names` that the call gave, as UTC ms; `end` must follow `start`."""
    times = {name: to_ms(data[name]) for name in names if name in data}
    if "start" in times and "end" in times and times["end"] <= times["start"]:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="end_before_start")
    return times


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions (once, in `async_setup`: they exist while no entry is loaded)."""

    async def create_offer(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        data = call.data
        offer: JSON = {
            "resource": data.get("resource") or default_resource(entry),
            "mode": data["mode"],
            "quantity": data["quantity"],
            "price": to_milli(data["price"]),
            **_times(data, "start", "end", "expires"),
        }
        if data.get("to"):
            offer["to"] = data["to"]
        created = await async_call_edge(entry, entry.runtime_data.client.create_offer(offer))
        # Shown at once; the rest (acceptances, trades) arrives as WebSocket events.
        entry.runtime_data.coordinator.async_apply("offer", created)
        return offer_in_units(created)

    async def accept_offer(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        price = call.data.get("price")
        accepted = await async_call_edge(
            entry,
            entry.runtime_data.client.accept_offer(
                call.data["offer_id"],
                quantity=call.data.get("quantity"),
                price=None if price is None else to_milli(price),
            ),
        )
        return accepted

    async def reject_offer(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        client = entry.runtime_data.client
        return await async_call_edge(
            entry, client.reject_offer(call.data["offer_id"], call.data.get("reason"))
        )

    async def cancel_offer(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        cancelled = await async_call_edge(
            entry, entry.runtime_data.client.cancel_offer(call.data["offer_id"])
        )
        return cancelled

    async def request_energy(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        data = call.data
        request: JSON = {
            "mode": data["mode"],
            "quantity": data["quantity"],
            "max_price": to_milli(data["max_price"]),
            **_times(data, "start", "end"),
        }
        return await async_call_edge(entry, entry.runtime_data.client.request_energy(request))

    async def bid(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        client = entry.runtime_data.client
        return await async_call_edge(
            entry, client.bid(call.data["offer_id"], to_milli(call.data["price"]))
        )

    async def terminate_trade(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        terminated = await async_call_edge(
            entry, entry.runtime_data.client.terminate_trade(call.data["trade_id"])
        )
        return terminated

    async def rate_trade(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        client = entry.runtime_data.client
        return await async_call_edge(
            entry,
            client.rate_trade(call.data["trade_id"], call.data["score"], call.data.get("comment")),
        )

    async def buy_usb_charge(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        energy_wh, amount = call.data.get("energy_wh"), call.data.get("amount")
        if energy_wh is None and amount is None:
            raise ServiceValidationError(
                translation_domain=DOMAIN, translation_key="energy_or_amount"
            )
        session = await async_call_edge(
            entry,
            entry.runtime_data.client.buy_usb_charge(
                call.data["port"],
                energy_wh=energy_wh,
                amount=None if amount is None else to_milli(amount),
            ),
        )
        return session_in_units(session)

    async def pair_phone(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        code, fund = call.data["code"], call.data.get("fund")
        try:
            return await async_call_edge(
                entry,
                entry.runtime_data.client.pair_phone(
                    code, None if fund is None else to_milli(fund)
                ),
            )
        except ServiceValidationError as exc:
            # No phone shows the code: mistyped, or the phone was unplugged or paired.
            cause = exc.__cause__
            if isinstance(cause, ApiError) and cause.code == "unknown_code":
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="unknown_code",
                    translation_placeholders={"code": code},
                ) from cause
            raise

    async def get_wallet(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        wallet = await async_call_edge(entry, entry.runtime_data.client.get_wallet())
        return wallet_in_units(wallet)

    async def get_offers(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        offers = await async_call_edge(
            entry,
            entry.runtime_data.client.get_offers(
                mine=call.data["mine"], include_closed=call.data["include_closed"]
            ),
        )
        return {
            "currency": entry.runtime_data.coordinator.data.currency,
            "offers": [offer_in_units(offer) for offer in offers],
        }

    async def get_trades(call: ServiceCall) -> ServiceResponse:
        entry = loaded_entry(hass, call)
        trades = await async_call_edge(
            entry, entry.runtime_data.client.get_trades(include_others=call.data["include_all"])
        )
        return {
            "currency": entry.runtime_data.coordinator.data.currency,
            "trades": [trade_in_units(trade) for trade in trades],
        }

    actions: tuple[tuple[str, Handler, vol.Schema], ...] = (
        (SERVICE_CREATE_OFFER, create_offer, CREATE_OFFER_SCHEMA),
        (SERVICE_ACCEPT_OFFER, accept_offer, ACCEPT_OFFER_SCHEMA),
        (SERVICE_REJECT_OFFER, reject_offer, REJECT_OFFER_SCHEMA),
        (SERVICE_CANCEL_OFFER, cancel_offer, CANCEL_OFFER_SCHEMA),
        (SERVICE_REQUEST_ENERGY, request_energy, REQUEST_ENERGY_SCHEMA),
        (SERVICE_BID, bid, BID_SCHEMA),
        (SERVICE_TERMINATE_TRADE, terminate_trade, TERMINATE_TRADE_SCHEMA),
        (SERVICE_RATE_TRADE, rate_trade, RATE_TRADE_SCHEMA),
        (SERVICE_BUY_USB_CHARGE, buy_usb_charge, BUY_USB_CHARGE_SCHEMA),
        (SERVICE_PAIR_PHONE, pair_phone, PAIR_PHONE_SCHEMA),
    )
    for name, handler, schema in actions:
        # The edge controller's answer (the offer, the trade id, the USB session) for
        # automations that want it; nothing needs to ask for it.
        hass.services.async_register(
            DOMAIN,
            name,
            handler,
            schema=ExplainedSchema(schema),
            supports_response=SupportsResponse.OPTIONAL,
        )
    reads: tuple[tuple[str, Handler, vol.Schema], ...] = (
        (SERVICE_GET_WALLET, get_wallet, GET_WALLET_SCHEMA),
        (SERVICE_GET_OFFERS, get_offers, GET_OFFERS_SCHEMA),
        (SERVICE_GET_TRADES, get_trades, GET_TRADES_SCHEMA),
    )
    for name, handler, schema in reads:
        hass.services.async_register(
            DOMAIN,
            name,
            handler,
            schema=ExplainedSchema(schema),
            supports_response=SupportsResponse.ONLY,
        )
    async_setup_building_services(hass)
