"""What the owner does through the API: offer, accept, counter, reject, cancel, bid,
request, rate, terminate, settle, and change the market policy.

Each action is a signed record the local ledger checks before it leaves the home; a
refusal names the ledger's reason.
"""

from __future__ import annotations

from typing import Any

from edge_controller.app.delivery import Delivery
from edge_controller.app.events import EventBus
from edge_controller.app.node import LedgerNode
from edge_controller.app.queries import Queries, find_offer
from edge_controller.app.spending import check_purchase, offer_cost
from edge_controller.app.trading import Trader
from edge_controller.market import MarketPolicy, ValidationError
from edge_controller.refusal import Refusal, Why

# Free text in signed records (a rejection's reason, a rating's comment) is cut to this.
MAX_TEXT = 200


class OwnerActions:
    """The owner's actions, each one signed record."""

    def __init__(
        self,
        node: LedgerNode,
        trader: Trader,
        delivery: Delivery,
        queries: Queries,
        events: EventBus,
    ) -> None:
        self.node = node
        self.ledger = node.ledger
        self.trader = trader
        self.delivery = delivery
        self.queries = queries
        self.events = events

    def _now(self) -> int:
        return self.node.clock.now_ms()

    async def create_offer(self, **fields: Any) -> dict[str, Any]:
        record = await self.node.issue("offer", **fields)
        return self.queries.offer(record.id, self._now())

    async def accept_offer(
        self, offer_id: str, quantity: int | None = None, price: int | None = None
    ) -> dict[str, Any]:
        offer = find_offer(self.ledger, offer_id)
        # Only a missing quantity means "all that remains"; 0 is refused by the ledger.
        fields: dict[str, Any] = {
            "offer": offer_id,
            "quantity": offer.remaining if quantity is None else quantity,
        }
        paying = offer.price if price is None else price
        self._within_limits(paying, offer_cost(offer, fields["quantity"], paying))
        if price is not None:
            fields["price"] = price
        record = await self.node.issue("acceptance", **fields)
        return {"acceptance": record.id, "conditional": price not in (None, offer.price)}

    async def reject_offer(self, offer_id: str, reason: str = "") -> dict[str, Any]:
        find_offer(self.ledger, offer_id)
        fields: dict[str, Any] = {"target": offer_id}
        if reason:
            fields["reason"] = reason[:MAX_TEXT]
        record = await self.node.issue("rejection", **fields)
        return {"rejection": record.id}

    async def cancel_offer(self, offer_id: str) -> dict[str, Any]:
        find_offer(self.ledger, offer_id)
        record = await self.node.issue("cancel", offer=offer_id)
        self.trader.withdrawn(offer_id)
        return {"cancel": record.id}

    async def bid(self, offer_id: str, price: int) -> dict[str, Any]:
        offer = find_offer(self.ledger, offer_id)
        # A bid holds what all that remains costs at its price.
        self._within_limits(price, offer_cost(offer, offer.remaining, price))
        record = await self.node.issue("bid", offer=offer_id, price=price)
        return {"bid": record.id}

    async def request_energy(self, **fields: Any) -> dict[str, Any]:
        # A request spends nothing yet; only a price no purchase could pay is refused.
        self._within_limits(fields["max_price"], 0)
        record = await self.node.issue("request", **fields)
        return {"request": record.id}

    async def rate_trade(self, trade_id: str, score: int, comment: str = "") -> dict[str, Any]:
        fields: dict[str, Any] = {"trade": trade_id, "score": score}
        if comment:
            fields["comment"] = comment[:MAX_TEXT]
        record = await self.node.issue("rating", **fields)
        return {"rating": record.id}

    async def terminate_trade(self, trade_id: str) -> dict[str, Any]:
        record = await self.node.issue("termination", trade=trade_id)
        return {"termination": record.id}

    async def settle_now(self) -> dict[str, Any]:
        """Settle every sale that is due now rather than at the next control cycle, and
        retry at once any settlement the ledger refused before."""
        settled = await self.delivery.settle(self.ledger.state, self._now(), retry_now=True)
        return {"settled": settled}

    async def submit_signed(self, wire: Any) -> dict[str, Any]:
        """Relay a record someone else signed (a registrar's registration or top-up)."""
        record = await self.node.submit_signed(wire)
        return {"id": record.id, "kind": record.kind}

    def _within_limits(self, price: int, cost: int) -> None:
        limits = self.trader.policy.limits
        check_purchase(self.ledger, self.node.account, limits, price, cost, self._now())

    def policy(self) -> dict[str, Any]:
        return self.trader.policy.to_dict()

    def set_policy(self, document: dict[str, Any]) -> dict[str, Any]:
        try:
            policy = MarketPolicy.from_dict(document)
        except ValidationError as exc:
            raise Refusal(
                "invalid_policy",
                "; ".join(f"{p.path}: {p.message}" for p in exc.problems),
                Why.INVALID,
            ) from None
        self.trader.set_policy(policy)
        self.events.publish("policy", policy.to_dict(), self._now())
        return policy.to_dict()
