"""JSON views of ledger state, as the API returns them (and as the WebSocket pushes them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge_controller.ledger import Account, Block, Offer, Resource, Trade

# An account's display name as its registrar recorded it (a `member` record), or None.
Names = Callable[[str], str | None]


def no_names(_account: str) -> str | None:
    return None


def offer_view(
    offer: Offer, now: int, pending: bool = False, names: Names = no_names
) -> dict[str, Any]:
    status = offer.status
    if status == "open" and now >= offer.expires:
        status = "expired"
    view: dict[str, Any] = {
        "id": offer.id,
        "seller": offer.seller,
        "seller_name": names(offer.seller),
        "resource": offer.resource,
        "mode": offer.mode,
        "quantity": offer.quantity,
        "remaining": offer.remaining,
        "unit": "Wh" if offer.mode == "energy" else "W",
        "price": offer.price,
        "start": offer.start,
        "end": offer.end,
        "expires": offer.expires,
        "status": "pending" if pending else status,
        "private_to": list(offer.to),
        "request": offer.request or None,
        "time": offer.time,
    }
    if offer.to:
        view["to_names"] = [names(account) for account in offer.to]
    if offer.is_auction:
        view["auction"] = {
            "closes": offer.auction_closes,
            "cap": offer.auction_cap,
            "best_bid": offer.best_bid_price if offer.best_bidder else None,
            "best_bidder": offer.best_bidder or None,
            "best_bidder_name": names(offer.best_bidder) if offer.best_bidder else None,
        }
    return view


def trade_view(trade: Trade, me: str = "", names: Names = no_names) -> dict[str, Any]:
    return {
        "id": trade.id,
        "offer": trade.offer,
        "seller": trade.seller,
        "seller_name": names(trade.seller),
        "buyer": trade.buyer,
        "buyer_name": names(trade.buyer),
        "role": "seller" if me == trade.seller else "buyer" if me == trade.buyer else None,
        "resource": trade.resource,
        "mode": trade.mode,
        "quantity": trade.quantity,
        "price": trade.price,
        "start": trade.start,
        "end": trade.end,
        "energy_wh": trade.energy_wh,
        "cost": trade.cost,
        "status": trade.status,
        "delivered_wh": trade.delivered_wh,
        "paid": trade.paid,
        "refunded": trade.refunded,
        "buyer_measured_wh": None if trade.disputed_wh < 0 else trade.disputed_wh,
        "disputed": trade.disputed_wh >= 0,
        "buyer_rating": None if trade.buyer_rating < 0 else trade.buyer_rating,
        "seller_rating": None if trade.seller_rating < 0 else trade.seller_rating,
        "time": trade.time,
    }


def wallet_view(
    account_id: str, account: Account, currency: str, names: Names = no_names
) -> dict[str, Any]:
    return {
        "account": account_id,
        "account_name": names(account_id),
        "currency": currency,
        "balance": account.balance,
        "escrow": account.escrow,
        "energy_bought_wh": account.energy_in_wh,
        "energy_sold_wh": account.energy_out_wh,
        "energy_wh": account.energy_in_wh - account.energy_out_wh,
        "rating": {
            "average_x10": (account.rating_sum * 10 // account.rating_count)
            if account.rating_count
            else None,
            "count": account.rating_count,
        },
    }


def resource_view(resource: Resource, names: Names = no_names) -> dict[str, Any]:
    return {
        "id": resource.id,
        "kind": resource.kind,
        "owner": resource.owner,
        "owner_name": names(resource.owner),
        "power_w": resource.power_w,
        "capacity_wh": resource.capacity_wh,
        "available_wh": resource.available_wh,
        "committed_wh": resource.committed_wh,
        "metered": bool(resource.meter),
        "location": resource.location or None,
    }


def block_view(block: Block) -> dict[str, Any]:
    return {
        "height": block.height,
        "hash": block.hash,
        "prev": block.prev,
        "time": block.header.time,
        "sealer": block.header.sealer_account,
        "difficulty": block.header.difficulty,
        "bytes": block.wire_size(),
        "records": [{"id": r.id, "kind": r.kind, "account": r.account} for r in block.records],
    }
