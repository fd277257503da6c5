"""What this home has committed to spend, and the check of a purchase against the owner's
spending limits (`market/spending.py`): the same figures for the API and automatic buying.

Spent "today" is any 24 hours: trades bought in them (as of the block that made each),
counter-offers of ours still pending, auctions we lead, and acceptances and bids of ours
still in the pool. A figure that may not come to pay (an outbid bid still pooled) is
counted all the same: the limit errs on the side of the wallet.
"""

from __future__ import annotations

from edge_controller.app.queries import pending_offer
from edge_controller.ledger import Ledger, Offer, cost_of, energy_of
from edge_controller.market import DAY_MS, SpendingLimits, over_limit
from edge_controller.refusal import Refusal


def offer_cost(offer: Offer, quantity: int, price: int) -> int:
    """What buying `quantity` (Wh, or W over its window) of `offer` at `price` costs."""
    return cost_of(energy_of(offer.mode, quantity, offer.start, offer.end), price)


def spent_today(ledger: Ledger, account: str, now: int) -> int:
    """Milli-units `account` committed to purchases in the 24 hours before `now`."""
    state = ledger.state
    since = now - DAY_MS
    total = sum(t.cost for t in state.trades.values_all() if t.buyer == account and t.time >= since)
    for acceptance in state.acceptances.rows.values():
        offer = state.offers.get(acceptance.offer)
        if acceptance.buyer == account and acceptance.status == "pending" and offer is not None:
            total += offer_cost(offer, acceptance.quantity, acceptance.price)
    total += sum(
        o.best_bid_cost
        for o in state.offers.rows.values()
        if o.best_bidder == account and o.status == "open"
    )
    for record in ledger.pool.values():
        if record.account != account or record.kind not in ("acceptance", "bid"):
            continue
        pooled = state.offers.get(record.body["offer"]) or _pooled_offer(ledger, record.body)
        if pooled is None:
            continue
        price = record.body.get("price", pooled.price)
        quantity = record.body.get("quantity", pooled.remaining)
        total += offer_cost(pooled, quantity, price)
    return total


def _pooled_offer(ledger: Ledger, body: dict[str, object]) -> Offer | None:
    record = ledger.pool.get(str(body["offer"]))
    return pending_offer(ledger, record) if record is not None and record.kind == "offer" else None


def check_purchase(
    ledger: Ledger, account: str, limits: SpendingLimits, price: int, cost: int, now: int
) -> None:
    """Raise a `Refusal` naming the limit a purchase at `price` for `cost` would break."""
    refused = over_limit(limits, price, cost, spent_today(ledger, account, now))
    if refused is not None:
        raise Refusal(refused.reason.value, f"over the spending limits: {refused.message}")
