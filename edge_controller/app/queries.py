"""The read views the API serves and the WebSocket pushes, over the ledger and its pool.

Open offers are read from two places: the ledger's state (sealed) and the pool (signed,
valid, not yet in a block), so an owner sees an offer the moment it is made. The offer
book functions here are the one reading of that, shared by trading and the owner's
actions.
"""

from __future__ import annotations

from typing import Any

from edge_controller.app.refused import RefusedRecords
from edge_controller.app.site import SiteDevice
from edge_controller.app.views import block_view, offer_view, resource_view, trade_view, wallet_view
from edge_controller.ledger import Ledger, Offer, Record, offer_of
from edge_controller.refusal import Refusal, Why

MARKET_WINDOW_MS = 24 * 3_600_000


def pending_offer(ledger: Ledger, record: Record) -> Offer:
    """The offer a record makes: as the ledger holds it, or as it will once sealed."""
    offer = ledger.state.offers.get(record.id)
    return offer if offer is not None else offer_of(record)


def open_offers(ledger: Ledger, now: int) -> list[Offer]:
    """Open offers in the ledger and in the pool (signed, not yet sealed), less those a
    pooled cancel withdraws."""
    offers = {
        o.id: o for o in ledger.state.offers.rows.values() if o.status == "open" and now < o.expires
    }
    for record in ledger.pool.values():
        if record.kind == "offer" and record.id not in offers and now < record.body["expires"]:
            offers[record.id] = pending_offer(ledger, record)
    cancelled = {r.body["offer"] for r in ledger.pool.values() if r.kind == "cancel"}
    return [o for o in offers.values() if o.id not in cancelled]


def find_offer(ledger: Ledger, offer_id: str) -> Offer:
    """An offer by id, sealed or pooled; a not-found refusal otherwise."""
    offer = ledger.state.offers.get(offer_id)
    if offer is not None:
        return offer
    record = ledger.pool.get(offer_id)
    if record is None or record.kind != "offer":
        raise Refusal("unknown_offer", f"no offer {offer_id}", Why.NOT_FOUND)
    return pending_offer(ledger, record)


class Queries:
    """What the home shows of the ledger, its devices and its wallet."""

    def __init__(
        self,
        ledger: Ledger,
        account: str,
        currency: str,
        devices: list[SiteDevice],
        refused: RefusedRecords | None = None,
    ) -> None:
        self.ledger = ledger
        self.account = account
        self.currency = currency
        self.devices = devices
        self.refused_records = refused

    def refused(self, since: int | None = None, limit: int = 100) -> dict[str, Any]:
        """`GET records/refused`: our records refused after they were acknowledged."""
        kept = self.refused_records
        if kept is None:
            return {"refused": [], "count": 0}
        return {"refused": kept.list(since, limit), "count": kept.count()}

    def devices_view(self, now: int) -> list[dict[str, Any]]:
        result = []
        for d in self.devices:
            resource = self.ledger.state.resources.get(d.resource_id)
            result.append(
                {
                    "id": d.id,
                    "role": d.role.value,
                    "standalone": d.role.standalone,
                    "resource": resource_view(resource) if resource else None,
                    "profile": d.config.profile.name,
                    "connected": d.device.connected,
                    "capabilities": list(d.capabilities.names()),
                    **d.device.snapshot(),
                }
            )
        return result

    def wallet(self, account: str | None = None) -> dict[str, Any]:
        who = account or self.account
        account_state = self.ledger.state.account(who)
        view = wallet_view(who, account_state, self.currency)
        if who == self.account:
            # Prepaid: cut off while the balance is spent (the announcer fires the hooks).
            view["cut_off"] = account_state.balance <= 0
        return view

    def offers(
        self, now: int, mine: bool = False, include_closed: bool = False
    ) -> list[dict[str, Any]]:
        ledger = self.ledger
        pooled = {r.id for r in ledger.pool.values() if r.kind == "offer"}
        if include_closed:
            offers = list(ledger.state.offers.values_all())
            offers += [
                pending_offer(ledger, r)
                for r in ledger.pool.values()
                if r.kind == "offer" and r.id not in ledger.state.offers
            ]
        else:
            offers = open_offers(ledger, now)
        views = [
            offer_view(o, now, pending=o.id in pooled and o.id not in ledger.state.offers)
            for o in offers
            if not mine or o.seller == self.account
        ]
        return sorted(views, key=lambda v: v["time"], reverse=True)

    def offer(self, offer_id: str, now: int) -> dict[str, Any]:
        sealed = self.ledger.state.offers.get(offer_id)
        if sealed is not None:
            return offer_view(sealed, now)
        return offer_view(find_offer(self.ledger, offer_id), now, pending=True)

    def trades(self, mine: bool = True, limit: int = 200) -> list[dict[str, Any]]:
        trades = [
            trade_view(t, self.account)
            for t in self.ledger.state.trades.values_all()
            if not mine or self.account in (t.buyer, t.seller)
        ]
        return sorted(trades, key=lambda t: t["time"], reverse=True)[:limit]

    def settlements(self, limit: int = 200) -> list[dict[str, Any]]:
        return [t for t in self.trades(limit=10_000) if t["status"] == "settled"][:limit]

    def market(self, now: int) -> dict[str, Any]:
        """Every community trade made (its acceptance in a block) in the last 24 h, whether
        it is still to be delivered, being delivered or settled, at its agreed energy and
        price; a capacity trade's energy is its power over its window (W x hours)."""
        since = now - MARKET_WINDOW_MS
        trades = sorted(
            (t for t in self.ledger.state.trades.values_all() if t.time >= since),
            key=lambda t: t.time,
        )
        volume = sum(t.energy_wh for t in trades)
        value = sum(t.cost for t in trades)
        return {
            "window_ms": MARKET_WINDOW_MS,
            "trades": len(trades),
            "volume_wh": volume,
            "average_price": (value * 1000 // volume) if volume else None,
            "last_price": trades[-1].price if trades else None,
            "open_offers": len(open_offers(self.ledger, now)),
            "history": [
                {"time": t.time, "price": t.price, "energy_wh": t.energy_wh} for t in trades[-50:]
            ],
        }

    def blocks(self, start: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
        top = self.ledger.height
        first = max(1, top - limit + 1) if start is None else max(1, start)
        return [
            block_view(b)
            for h in range(first, min(top, first + limit - 1) + 1)
            if (b := self.ledger.block_at(h)) is not None
        ]
