"""What this home has committed to spend, and the check of a purchase against the owner's
spending limits (`market/spending.py`): the same figures for the API and automatic buying.

Spent "today" is any 24 hours: trades bought in them (as of the block that made each),
counter-offers of ours still pending, auctions we lead, and acceptances and bids of ours
still in the pool. A figure that may not come to pay (an outbid bid still pooled) is
counted all the same: the limit errs on the side of the wallet.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection

from edge_controller.app.queries import pending_offer
from edge_controller.ledger import Acceptance, Block, Ledger, Offer, cost_of, energy_of
from edge_controller.market import DAY_MS, SpendingLimits, over_limit
from edge_controller.refusal import Refusal


def offer_cost(offer: Offer, quantity: int, price: int) -> int:
    """What buying `quantity` (Wh, or W over its window) of `offer` at `price` costs."""
    return cost_of(energy_of(offer.mode, quantity, offer.start, offer.end), price)


# The records a purchase is made with: a trade's id is its buyer's acceptance or bid.
PURCHASE_KINDS = ("acceptance", "bid")


class Purchases:
    """The trades of one account that may still count in its last 24 hours' spending.

    Found once from the account's own acceptance and bid records (the ledger's record index:
    what this home signed, never a scan of every trade the community made), then from each
    block connected. An id leaves once its trade is older than a day, or once no trade can
    come of it (an answered counter-offer, a bid outbid or closed); a reorganisation finds
    them again. So each figure costs the day's purchases, not the chain's age."""

    def __init__(self, ledger: Ledger, account: str) -> None:
        self.ledger = ledger
        self.account = account
        self._ids: set[str] | None = None
        ledger.events.connected.append(self._connected)
        ledger.events.disconnected.append(self._disconnected)

    def _connected(self, block: Block) -> None:
        if self._ids is not None:
            mine = self.account
            self._ids.update(
                r.id for r in block.records if r.account == mine and r.kind in PURCHASE_KINDS
            )

    def _disconnected(self, _block: Block) -> None:
        self._ids = None

    def bought_since(self, since: int, leading: Collection[str]) -> int:
        """Milli-units of the account's trades made at or after `since` (chain time);
        `leading` the ids of its bids that lead an open auction (a trade may come of them)."""
        state = self.ledger.state
        if self._ids is None:
            self._ids = set(self.ledger.store.record_ids(self.account, PURCHASE_KINDS))
        total, done = 0, []
        for trade_id in self._ids:
            trade = state.trades.get(trade_id)
            if trade is not None:
                if trade.time >= since:
                    total += trade.cost
                else:
                    done.append(trade_id)  # a trade's time never changes
            elif trade_id not in leading and not _pending(state.acceptances.rows.get(trade_id)):
                done.append(trade_id)
        self._ids.difference_update(done)
        return total


def _pending(acceptance: Acceptance | None) -> bool:
    return acceptance is not None and acceptance.status == "pending"


# One `Purchases` per ledger and account, made on first use and kept with the ledger.
_PURCHASES: weakref.WeakKeyDictionary[Ledger, dict[str, Purchases]] = weakref.WeakKeyDictionary()


def purchases(ledger: Ledger, account: str) -> Purchases:
    """The `Purchases` of `account` on `ledger`."""
    by_account = _PURCHASES.setdefault(ledger, {})
    found = by_account.get(account)
    if found is None:
        found = by_account[account] = Purchases(ledger, account)
    return found


def spent_today(ledger: Ledger, account: str, now: int) -> int:
    """Milli-units `account` committed to purchases in the 24 hours before `now`."""
    state = ledger.state
    leading = [
        o for o in state.offers.rows.values() if o.best_bidder == account and o.status == "open"
    ]
    total = purchases(ledger, account).bought_since(now - DAY_MS, {o.best_bid for o in leading})
    total += sum(o.best_bid_cost for o in leading)
    for acceptance in state.acceptances.rows.values():
        offer = state.offers.get(acceptance.offer)
        if acceptance.buyer == account and acceptance.status == "pending" and offer is not None:
            total += offer_cost(offer, acceptance.quantity, acceptance.price)
    for record in ledger.pool.values():
        if record.account != account or record.kind not in PURCHASE_KINDS:
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
