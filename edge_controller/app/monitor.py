"""The market monitoring station of seed 000: community-wide volumes, prices and trends
per period, and who trades with whom, read from the ledger every home holds.

Trades count in the period their window starts in, at their agreed energy and price
(what was delivered once settled). Bounded whatever the ledger holds: at most
`MAX_PERIODS` periods and the `MAX_PAIRS` busiest pairs are returned.
"""

from __future__ import annotations

from typing import Any

from edge_controller.ledger import Ledger, trades_starting
from edge_controller.refusal import Refusal, Why

PERIODS = {"hour": 3_600_000, "day": 86_400_000, "week": 7 * 86_400_000}
MAX_PERIODS = 168
MAX_PAIRS = 50


def monitor(ledger: Ledger, now: int, period: str = "hour", count: int = 24) -> dict[str, Any]:
    """`GET monitor`: the last `count` periods of the community's trading."""
    if period not in PERIODS:
        raise Refusal("invalid_field", f"period must be one of {', '.join(PERIODS)}", Why.INVALID)
    if not 1 <= count <= MAX_PERIODS:
        raise Refusal("invalid_field", f"count must be 1..{MAX_PERIODS}", Why.INVALID)
    length = PERIODS[period]
    last_start = now - now % length
    first_start = last_start - (count - 1) * length
    buckets: list[dict[str, Any]] = [
        {"start": first_start + i * length, "trades": 0, "volume_wh": 0, "value": 0}
        for i in range(count)
    ]
    lows: list[int | None] = [None] * count
    highs: list[int | None] = [None] * count
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    traders: set[str] = set()
    # Every trade of the periods, those settled long ago (on disk only) included.
    for trade in trades_starting(ledger, first_start, last_start + length):
        index = (trade.start - first_start) // length
        settled = trade.status == "settled"
        energy = trade.delivered_wh if settled else trade.energy_wh
        value = trade.paid if settled else trade.cost
        bucket = buckets[index]
        bucket["trades"] += 1
        bucket["volume_wh"] += energy
        bucket["value"] += value
        low, high = lows[index], highs[index]
        lows[index] = trade.price if low is None else min(low, trade.price)
        highs[index] = trade.price if high is None else max(high, trade.price)
        pair = pairs.setdefault(
            (trade.seller, trade.buyer),
            {"seller": trade.seller, "buyer": trade.buyer, "trades": 0, "volume_wh": 0, "value": 0},
        )
        pair["trades"] += 1
        pair["volume_wh"] += energy
        pair["value"] += value
        traders.update((trade.seller, trade.buyer))
    for index, bucket in enumerate(buckets):
        volume = bucket["volume_wh"]
        bucket["average_price"] = bucket["value"] * 1000 // volume if volume else None
        bucket["min_price"], bucket["max_price"] = lows[index], highs[index]
    volume = sum(b["volume_wh"] for b in buckets)
    value = sum(b["value"] for b in buckets)
    busiest = sorted(pairs.values(), key=lambda p: (-p["volume_wh"], p["seller"], p["buyer"]))
    return {
        "period": period,
        "period_ms": length,
        "periods": buckets,
        "totals": {
            "trades": sum(b["trades"] for b in buckets),
            "volume_wh": volume,
            "value": value,
            "average_price": value * 1000 // volume if volume else None,
            "traders": len(traders),
        },
        "trend": _trend(buckets),
        "pairs": busiest[:MAX_PAIRS],
    }


def _trend(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest period against the one before: how volume and price moved."""
    if len(buckets) < 2:
        return {"volume_change_wh": None, "price_change": None}
    last, before = buckets[-1], buckets[-2]
    price_change = None
    if last["average_price"] is not None and before["average_price"] is not None:
        price_change = last["average_price"] - before["average_price"]
    return {
        "volume_change_wh": last["volume_wh"] - before["volume_wh"],
        "price_change": price_change,
    }
