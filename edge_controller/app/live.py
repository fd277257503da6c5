"""Offers and trades pushed on every change of what `GET offers` and `GET trades` show.

`LiveBook` remembers the view it last pushed of each open offer and of each of the home's
recent trades. After each block (connected or disconnected), each pooled record and each
control cycle it works out which offers and trades may have changed, renders them as the
API does, and publishes only those whose view differs: a counter-offer confirmed, an
auction closed, an offer sold or partly sold, cancelled or expired, a trade settled (once).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from edge_controller.app.queries import Queries, open_offers, pending_offer
from edge_controller.ledger import Block, Ledger, Offer, Record

# Statuses in which GET offers lists an offer (a client drops the others).
LISTED = frozenset({"pending", "open"})
# How many of the home's trades' last views are kept to compare against: a trade older than
# this that changes is pushed again, which is harmless; memory stays bounded.
TRADES_KEPT = 1000

Publish: TypeAlias = Callable[[str, dict[str, Any], int], None]


class LiveBook:
    """Pushes `offer` and `trade` events for exactly the views that changed."""

    def __init__(self, ledger: Ledger, account: str, publish: Publish, queries: Queries) -> None:
        self.ledger = ledger
        self.account = account
        self.publish = publish
        # Views rendered exactly as the API renders them (names, counter-offers waiting).
        self.queries = queries
        self._offers: dict[str, dict[str, Any]] = {}  # listed offers, as last pushed
        self._trades: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._auctions = self._open_auctions()
        self._seeded = False

    # --- what may have changed --------------------------------------------------------------

    def pooled(self, record: Record, now: int) -> None:
        """A record entered the pool: a new offer shows as pending, a cancel withdraws one."""
        if record.kind == "offer":
            self._push_offer(
                self.queries.render_offer(pending_offer(self.ledger, record), now, True), now
            )
        elif record.kind == "cancel":
            offer_id = str(record.body["offer"])
            if offer_id in self._offers:
                # GET offers leaves out an offer a pooled cancel withdraws.
                self._push_offer({**self._offers[offer_id], "status": "cancelled"}, now)

    def block(self, block: Block, now: int) -> bool:
        """A block was connected or disconnected: every offer and trade its records touch
        (and every auction it may have closed) is rendered again. Whether one of the home's
        trades changed."""
        offers, trades = self._touched(block.records)
        auctions = self._open_auctions()
        state = self.ledger.state
        for offer_id in set(self._auctions) - set(auctions):
            offers.add(offer_id)
            offer = state.offers.get(offer_id)
            if offer is not None and offer.best_bid:
                trades.add(offer.best_bid)
        self._auctions = auctions
        for offer_id in sorted(offers):
            offer = self._offer(offer_id)
            if offer is not None:
                pending = offer_id not in state.offers
                self._push_offer(self.queries.render_offer(offer, now, pending), now)
        changed = False
        for trade_id in sorted(trades):
            trade = state.trades.get(trade_id)
            if trade is not None and self.account in (trade.buyer, trade.seller):
                changed = self._push_trade(self.queries.render_trade(trade), now) or changed
        return changed

    def tick(self, now: int) -> None:
        """Each control cycle: offers that expired, or left the pool unsealed, leave the list."""
        if not self._seeded:
            # What GET offers listed before this process started pushing (a restart).
            self._seeded = True
            for listed in open_offers(self.ledger, now):
                pending = listed.id not in self.ledger.state.offers
                self._offers.setdefault(listed.id, self.queries.render_offer(listed, now, pending))
        for offer_id, shown in list(self._offers.items()):
            offer = self._offer(offer_id)
            if offer is None:
                self._push_offer({**shown, "status": "withdrawn"}, now)
            elif now >= offer.expires:
                self._push_offer(self.queries.render_offer(offer, now), now)

    # --- rendering and comparing ------------------------------------------------------------

    def _push_offer(self, view: dict[str, Any], now: int) -> None:
        offer_id = view["id"]
        if view == self._offers.get(offer_id):
            return
        if view["status"] in LISTED:
            self._offers[offer_id] = view
        else:
            self._offers.pop(offer_id, None)
        self.publish("offer", view, now)

    def _push_trade(self, view: dict[str, Any], now: int) -> bool:
        trade_id = view["id"]
        if self._trades.get(trade_id) == view:
            return False
        self._trades[trade_id] = view
        self._trades.move_to_end(trade_id)
        while len(self._trades) > TRADES_KEPT:
            self._trades.popitem(last=False)
        self.publish("trade", view, now)
        return True

    def _offer(self, offer_id: str) -> Offer | None:
        offer = self.ledger.state.offers.get(offer_id)
        if offer is not None:
            return offer
        record = self.ledger.pool.get(offer_id)
        return pending_offer(self.ledger, record) if record and record.kind == "offer" else None

    def _touched(self, records: Iterable[Record]) -> tuple[set[str], set[str]]:
        """The offers and trades these records may have changed."""
        state = self.ledger.state
        offers: set[str] = set()
        trades: set[str] = set()
        for record in records:
            body = record.body
            if record.kind == "offer":
                offers.add(record.id)
            elif record.kind in ("acceptance", "cancel", "bid"):
                offers.add(str(body["offer"]))
                trades.add(record.id)  # an acceptance at the offer's price is the trade
            elif record.kind == "confirmation":
                # A confirmed counter-offer: the trade takes the acceptance's id.
                acceptance = state.acceptances.get(str(body["acceptance"]))
                trades.add(str(body["acceptance"]))
                if acceptance is not None:
                    offers.add(acceptance.offer)
            elif record.kind == "rejection":
                # A declined counter-offer leaves the seller's offer's waiting list.
                target = str(body["target"])
                acceptance = state.acceptances.get(target)
                offers.add(acceptance.offer if acceptance is not None else target)
            elif "trade" in body:
                trades.add(str(body["trade"]))
        return offers, trades

    def _open_auctions(self) -> tuple[str, ...]:
        index = self.ledger.state.open_auctions.get("")
        return index.offers if index is not None else ()
