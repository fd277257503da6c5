"""Counter-offers on this home's offers: what the owner sees and answers by hand.

A buyer who accepts one of our offers at another price makes a counter-offer; the seller
confirms it (a trade at that price) or declines it. Who answers is the sell policy's
`counter_offers`: `auto` (the default) lets the trader confirm those at or above
`min_counter_permille` of the asking price and decline the rest at once; `ask` leaves each
one to the owner (`GET counter-offers`, confirm, decline) until its offer expires, when
the trader declines it so that the buyer knows.
"""

from __future__ import annotations

from typing import Any

from edge_controller.app.node import LedgerNode
from edge_controller.ledger import Acceptance, Ledger, Offer, cost_of, energy_of
from edge_controller.refusal import Refusal, Why

# Free text in a signed rejection is cut to this (the ledger's bound).
MAX_REASON = 200


def answered(ledger: Ledger, account: str) -> set[str]:
    """Counter-offers `account` has answered in records still waiting in the pool."""
    return {
        str(r.body.get("acceptance") or r.body.get("target"))
        for r in ledger.pool.values()
        if r.account == account and r.kind in ("confirmation", "rejection")
    }


def pending_counters(ledger: Ledger, account: str) -> list[tuple[Acceptance, Offer]]:
    """Counter-offers on `account`'s offers that wait for its answer, as the ledger holds
    them."""
    state = ledger.state
    done = answered(ledger, account)
    found = []
    for acceptance in state.acceptances.rows.values():
        if acceptance.status != "pending" or acceptance.id in done:
            continue
        offer = state.offers.get(acceptance.offer)
        if offer is not None and offer.seller == account:
            found.append((acceptance, offer))
    return found


def counter_view(ledger: Ledger, acceptance: Acceptance, offer: Offer, now: int) -> dict[str, Any]:
    """One counter-offer as the API shows it (money in milli-units, prices per kWh); the
    buyer also by the display name the registrar gave it (None for an unnamed account)."""
    energy = energy_of(offer.mode, acceptance.quantity, offer.start, offer.end)
    member = ledger.state.members.get(acceptance.buyer)
    return {
        "id": acceptance.id,
        "offer": offer.id,
        "buyer": acceptance.buyer,
        "buyer_name": member.name if member is not None else None,
        "quantity": acceptance.quantity,
        "unit": "Wh" if offer.mode == "energy" else "W",
        "price": acceptance.price,
        "asking_price": offer.price,
        "cost": cost_of(energy, acceptance.price),
        "expires": offer.expires,
        "open": offer.status == "open" and now < offer.expires,
    }


def counters_by_offer(ledger: Ledger, account: str, now: int) -> dict[str, list[dict[str, Any]]]:
    """The pending counter-offers of each of `account`'s offers (for the offer views)."""
    by_offer: dict[str, list[dict[str, Any]]] = {}
    for acceptance, offer in pending_counters(ledger, account):
        by_offer.setdefault(offer.id, []).append(counter_view(ledger, acceptance, offer, now))
    return by_offer


class CounterOffers:
    """The owner's answers to counter-offers on this home's offers."""

    def __init__(self, node: LedgerNode) -> None:
        self.node = node
        self.ledger = node.ledger
        self.account = node.account

    def list(self, now: int) -> dict[str, Any]:
        """`GET counter-offers`: those waiting for our answer."""
        pending = pending_counters(self.ledger, self.account)
        return {"counter_offers": [counter_view(self.ledger, a, o, now) for a, o in pending]}

    def _ours(self, counter_id: str) -> Acceptance:
        acceptance = self.ledger.state.acceptances.get(counter_id)
        offer = self.ledger.state.offers.get(acceptance.offer) if acceptance else None
        if acceptance is None or offer is None or offer.seller != self.account:
            raise Refusal(
                "unknown_acceptance",
                f"no counter-offer {counter_id} on this home's offers",
                Why.NOT_FOUND,
            )
        if counter_id in answered(self.ledger, self.account):
            raise Refusal(
                "not_pending",
                "this counter-offer is answered already; the answer waits for a block",
                Why.CONFLICT,
            )
        return acceptance

    async def confirm(self, counter_id: str) -> dict[str, Any]:
        """Take a counter-offer: a trade at the buyer's price (the ledger checks it)."""
        self._ours(counter_id)
        record = await self.node.issue("confirmation", acceptance=counter_id)
        return {"confirmation": record.id, "trade": counter_id}

    async def decline(self, counter_id: str, reason: str = "") -> dict[str, Any]:
        """Decline a counter-offer; the offer stays open for others."""
        self._ours(counter_id)
        fields: dict[str, Any] = {"target": counter_id}
        if reason:
            fields["reason"] = reason[:MAX_REASON]
        record = await self.node.issue("rejection", **fields)
        return {"rejection": record.id}
