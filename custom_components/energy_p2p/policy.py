"""Changing the edge controller's market policy (`GET`/`PUT policy`, docs/api.md).

The edge controller keeps the policy; Home Assistant edits it by reading the whole
document, changing one part and writing the whole document back. These functions make
the changed document; none of them touches the one given. Money in Home Assistant is in
currency units (0.25 per kWh), in the API integer milli-units (250). The conversions
to and from the API's units live here for the whole integration.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any, Final

from homeassistant.util import dt as dt_util

from .energy_p2p_client import JSON

PRICING_KINDS: Final = ("fixed", "time_of_day", "demand")

# The disable threshold stays this far below the enable threshold when the policy has
# none yet to keep the gap of (the edge controller's defaults: 80/70 %, 1000/500 W).
DEFAULT_SOC_GAP: Final = 10
DEFAULT_SURPLUS_GAP: Final = 500
# A time-of-day price starts as the current price with a dearer evening peak.
EVENING_PEAK_HOURS: Final = (17, 21)
EVENING_PEAK_PERMILLE: Final = 1200


def to_milli(units: float) -> int:
    """Currency units (a float from the user) as the API's integer milli-units."""
    return round(units * 1000)


def to_ms(moment: datetime) -> int:
    """A datetime as the API's UTC milliseconds; a naive one is in Home Assistant's time zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt_util.get_default_time_zone())
    return int(moment.timestamp() * 1000)


def to_units(milli: object) -> float | None:
    """The API's integer milli-units (of money, Wh, W, V or A) as units; None if no figure."""
    whole = as_int(milli)
    return None if whole is None else whole / 1000


def as_int(value: object) -> int | None:
    """An integer of the API, None for anything else (a bool is no number here)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def section(policy: JSON, *path: str) -> Any:
    """The value at `path` in the policy, or None where a part is missing or null."""
    value: Any = policy
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _copy(policy: JSON) -> JSON:
    document = copy.deepcopy(policy)
    document.setdefault("sell", {})
    document.setdefault("buy", {})
    return document


def with_auto_sell(policy: JSON, on: bool) -> JSON:
    """The policy with automatic selling on or off."""
    document = _copy(policy)
    document["sell"]["auto_sell"] = on
    return document


def with_auto_buy(policy: JSON, on: bool) -> JSON:
    """The policy with automatic buying (accepting offers by the criteria) on or off."""
    document = _copy(policy)
    document["buy"]["auto_accept"] = on
    return document


def with_sell_soc(policy: JSON, enable_percent: int) -> JSON:
    """Sell battery energy above `enable_percent`; stop the same gap below it as before."""
    document = _copy(policy)
    battery = dict(document["sell"].get("battery") or {})
    gap = DEFAULT_SOC_GAP
    if isinstance(battery.get("enable_soc_percent"), int) and isinstance(
        battery.get("disable_soc_percent"), int
    ):
        gap = battery["enable_soc_percent"] - battery["disable_soc_percent"]
    battery["enable_soc_percent"] = enable_percent
    battery["disable_soc_percent"] = max(0, enable_percent - gap)
    document["sell"]["battery"] = battery
    return document


def with_reserve(policy: JSON, reserve_percent: int) -> JSON:
    """Never sell the lowest `reserve_percent` of the battery."""
    document = _copy(policy)
    battery = dict(document["sell"].get("battery") or {})
    battery["reserve_percent"] = reserve_percent
    document["sell"]["battery"] = battery
    return document


def with_surplus(policy: JSON, enable_w: int) -> JSON:
    """Sell PV surplus above `enable_w`; stop the same gap below it as before."""
    document = _copy(policy)
    pv = dict(document["sell"].get("pv") or {})
    gap = DEFAULT_SURPLUS_GAP
    if isinstance(pv.get("enable_surplus_w"), int) and isinstance(pv.get("disable_surplus_w"), int):
        gap = pv["enable_surplus_w"] - pv["disable_surplus_w"]
    pv["enable_surplus_w"] = enable_w
    pv["disable_surplus_w"] = max(0, enable_w - gap)
    document["sell"]["pv"] = pv
    return document


def min_sell_price(policy: JSON) -> int | None:
    """The lowest price the pricing asks (milli-units per kWh): a fixed price, or a
    demand price's floor; None for a time-of-day table (no single minimum to edit)."""
    pricing = section(policy, "sell", "pricing") or {}
    match pricing.get("kind"):
        case "fixed":
            return as_int(pricing.get("price"))
        case "demand":
            return as_int(pricing.get("floor"))
    return None


def with_min_sell_price(policy: JSON, price: int) -> JSON | None:
    """The policy asking at least `price`; None when its pricing has no single minimum."""
    document = _copy(policy)
    pricing = dict(document["sell"].get("pricing") or {"kind": "fixed"})
    match pricing.get("kind"):
        case "fixed":
            pricing["price"] = price
        case "demand":
            pricing["floor"] = price
            # Keep the document valid: floor <= reference <= ceiling.
            pricing["reference"] = max(price, as_int(pricing.get("reference")) or price)
            pricing["ceiling"] = max(pricing["reference"], as_int(pricing.get("ceiling")) or 0)
        case _:
            return None
    document["sell"]["pricing"] = pricing
    return document


def with_max_buy_price(policy: JSON, price: int) -> JSON:
    """Buy automatically only at `price` per kWh or less."""
    document = _copy(policy)
    document["buy"]["max_price"] = price
    return document


# The spending limits (milli-units): per kWh, per trade, over any 24 hours.
LIMITS: Final = ("price_ceiling", "max_trade_cost", "max_daily_cost")


def with_limit(policy: JSON, limit: str, value: int) -> JSON:
    """The policy with one spending limit changed (milli-units)."""
    document = _copy(policy)
    limits = dict(document.get("limits") or {})
    limits[limit] = value
    document["limits"] = limits
    return document


def current_price(policy: JSON) -> int:
    """What the pricing asks in ordinary hours (milli-units per kWh)."""
    pricing = section(policy, "sell", "pricing") or {}
    for key in ("price", "reference", "default_price"):
        value = as_int(pricing.get(key))
        if value is not None:
            return value
    return 250  # the edge controller's default price


def pricing_of_kind(policy: JSON, kind: str) -> JSON:
    """The policy priced by `kind`, starting from what it asks now: a fixed price; a time
    of day table with a dearer evening peak; a demand price between half and twice it."""
    document = _copy(policy)
    pricing = section(policy, "sell", "pricing") or {}
    if pricing.get("kind") == kind:
        return document
    price = current_price(policy)
    match kind:
        case "fixed":
            new: JSON = {"kind": "fixed", "price": price}
        case "time_of_day":
            start, end = EVENING_PEAK_HOURS
            new = {
                "kind": "time_of_day",
                "ranges": [
                    {
                        "start_hour": start,
                        "end_hour": end,
                        "price": price * EVENING_PEAK_PERMILLE // 1000,
                    }
                ],
                "default_price": price,
            }
        case _:  # "demand"
            new = {"kind": "demand", "floor": price // 2, "ceiling": price * 2, "reference": price}
    document["sell"]["pricing"] = new
    return document
