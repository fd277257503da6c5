"""The read views the API serves and the WebSocket pushes, over the ledger and its pool.

Open offers are read from two places: the ledger's state (sealed) and the pool (signed,
valid, not yet in a block), so an owner sees an offer the moment it is made. The offer
book functions here are the one reading of that, shared by trading and the owner's
actions.
"""

from __future__ import annotations

from typing import Any

from edge_controller.app.counters import counters_by_offer
from edge_controller.app.refused import RefusedRecords
from edge_controller.app.site import SiteDevice
from edge_controller.app.views import block_view, offer_view, resource_view, trade_view, wallet_view
from edge_controller.ledger import (
    Ledger,
    Offer,
    Record,
    Trade,
    account_id,
    account_trades,
    offer_of,
)
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

    def name_of(self, account: str) -> str | None:
        """The display name the registrar gave `account` (a `member` record), or None."""
        member = self.ledger.state.members.get(account)
        return member.name if member is not None else None

    def refused(self, since: int | None = None, limit: int = 100) -> dict[str, Any]:
        """`GET records/refused`: our records refused after they were acknowledged."""
        kept = self.refused_records
        if kept is None:
            return {"refused": [], "count": 0}
        return {"refused": kept.list(since, limit), "count": kept.count()}

    def resources(self) -> list[dict[str, Any]]:
        """`GET resources`: every resource the ledger holds, device-backed or not."""
        rows = self.ledger.state.resources.rows
        return [self.resource(resource_id) for resource_id in sorted(rows)]

    def resource(self, resource_id: str) -> dict[str, Any]:
        """One resource: its registration, what it holds, and its open commitments by
        window (a capacity trade's power; an energy trade's energy and average power)."""
        state = self.ledger.state
        resource = state.resources.get(resource_id)
        if resource is None:
            raise Refusal(
                "unknown_resource", f"the ledger holds no resource {resource_id}", Why.NOT_FOUND
            )
        windows = []
        held = state.commitments.get(resource_id)
        for trade_id in held.trades if held is not None else ():
            trade = state.trades.get(trade_id)
            if trade is None or trade.status != "active":
                continue
            span = max(1, trade.end - trade.start)
            power = (
                trade.quantity if trade.mode == "capacity" else trade.energy_wh * 3_600_000 // span
            )
            windows.append(
                {
                    "trade": trade.id,
                    "mode": trade.mode,
                    "start": trade.start,
                    "end": trade.end,
                    "power_w": power,
                    "energy_wh": trade.energy_wh,
                }
            )
        windows.sort(key=lambda w: (w["start"], w["trade"]))
        return {
            **resource_view(resource, self.name_of),
            "meter": resource.meter or None,
            "registered_at": resource.registered_at,
            "committed": windows,
        }

    def members(self) -> list[dict[str, Any]]:
        """`GET members`: every account the community knows by role or record: named
        members, resource owners, sealers and registrars."""
        state, genesis = self.ledger.state, self.ledger.genesis
        # The set in force for the next block, not genesis': registrars add and remove them.
        sealers = {account_id(k) for k in self.ledger.sealer_set()}
        registrars = {account_id(k) for k in genesis.registrars}
        owned: dict[str, list[str]] = {}
        for resource in state.resources.rows.values():
            owned.setdefault(resource.owner, []).append(resource.id)
        accounts = set(state.members.rows) | set(owned) | sealers | registrars
        result = []
        for account in sorted(accounts):
            member = state.members.get(account)
            result.append(
                {
                    "account": account,
                    "name": member.name if member else None,
                    "status": member.status if member else None,
                    "resources": sorted(owned.get(account, [])),
                    "sealer": account in sealers,
                    "registrar": account in registrars,
                }
            )
        return result

    def devices_view(self, now: int) -> list[dict[str, Any]]:
        result = []
        for d in self.devices:
            resource = self.ledger.state.resources.get(d.resource_id)
            result.append(
                {
                    "id": d.id,
                    "role": d.role.value,
                    "standalone": d.role.standalone,
                    "resource": resource_view(resource, self.name_of) if resource else None,
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
        view = wallet_view(who, account_state, self.currency, self.name_of)
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
            offer_view(o, now, o.id in pooled and o.id not in ledger.state.offers, self.name_of)
            for o in offers
            if not mine or o.seller == self.account
        ]
        self._with_counters(views, now)
        return sorted(views, key=lambda v: v["time"], reverse=True)

    def offer(self, offer_id: str, now: int) -> dict[str, Any]:
        sealed = self.ledger.state.offers.get(offer_id)
        if sealed is not None:
            view = offer_view(sealed, now, names=self.name_of)
        else:
            view = offer_view(find_offer(self.ledger, offer_id), now, True, self.name_of)
        self._with_counters([view], now)
        return view

    def render_offer(self, offer: Offer, now: int, pending: bool = False) -> dict[str, Any]:
        """One offer as `GET offers` shows it (names; our offers' counter-offers waiting)."""
        view = offer_view(offer, now, pending, self.name_of)
        self._with_counters([view], now)
        return view

    def render_trade(self, trade: Trade) -> dict[str, Any]:
        """One trade as `GET trades` shows it."""
        return trade_view(trade, self.account, self.name_of)

    def _with_counters(self, views: list[dict[str, Any]], now: int) -> None:
        """Our offers show the counter-offers waiting for our answer (`counter_offers`)."""
        if not any(v["seller"] == self.account for v in views):
            return
        counters = counters_by_offer(self.ledger, self.account, now)
        for view in views:
            if view["seller"] == self.account:
                view["counter_offers"] = counters.get(view["id"], [])

    def trades(self, mine: bool = True, limit: int = 200) -> list[dict[str, Any]]:
        ledger = self.ledger
        # Ours by the store's index: not a decoding of the community's every trade.
        found = account_trades(ledger, self.account) if mine else ledger.state.trades.values_all()
        trades = [trade_view(t, self.account, self.name_of) for t in found]
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
