"""Trading: the market's decisions for this home, made into signed records.

Every control cycle the trader builds the market snapshot (what each device may sell,
this home's open offers, the community's requests and market conditions), lets the
automatic seller decide, applies the owner's acceptance criteria to neighbours' offers
(each once), answers buyers' counter-offers on our offers, and tells the ledger what our
storage holds so its energy rule checks sales against reality.
"""

from __future__ import annotations

import logging
from typing import Any

from edge_controller.app.counters import pending_counters
from edge_controller.app.node import LedgerNode
from edge_controller.app.queries import open_offers, pending_offer
from edge_controller.app.site import SiteContext, SiteDevice, grid_power
from edge_controller.app.spending import spent_today
from edge_controller.ledger import Offer, Record, Resource, energy_of, power_holds
from edge_controller.market import (
    Accept,
    AuctionTerms,
    AutoSeller,
    Counter,
    EnergyRequest,
    MarketConditions,
    MarketOffer,
    MarketPolicy,
    MarketSnapshot,
    OfferIntent,
    PowerHold,
    PublishOffer,
    Reject,
    ResourceReading,
    SellerStanding,
    WithdrawOffer,
    confirms_counter,
    evaluate_offer,
)
from edge_controller.refusal import Refusal

log = logging.getLogger(__name__)

# Market conditions (demand, supply, how much sells) are read over the last hour.
CONDITIONS_WINDOW_MS = 3_600_000


class Trader:
    """Automatic selling and buying for one home, by its owner's market policy."""

    def __init__(
        self, node: LedgerNode, devices: list[SiteDevice], policy: MarketPolicy, name: str = ""
    ) -> None:
        self.node = node
        self.ledger = node.ledger
        self.account = node.account
        self.devices = devices
        self.policy = policy
        self.seller = AutoSeller(policy.sell, account=self.account)
        self.name = name
        self._evaluated: set[str] = set()  # neighbours' offers already judged, once each
        self._withdrawn: set[str] = set()  # our offers cancelled, until the ledger agrees
        self._automatic: set[str] = set()  # our offers the automatic seller made
        self._last_available: dict[str, int] = {}
        node.received.append(self.record_received)

    def set_policy(self, policy: MarketPolicy) -> None:
        """Trade by a new policy from now on; neighbours' open offers are judged again."""
        self.policy = policy
        self.seller.update_policy(policy.sell)
        self._evaluated.clear()

    def withdrawn(self, offer_id: str) -> None:
        """The owner cancelled one of our offers: the seller no longer counts it as open."""
        self._withdrawn.add(offer_id)

    async def record_received(self, record: Record) -> None:
        if record.kind == "offer" and record.account != self.account:
            # Decide at once: buyers should not wait for the next control cycle.
            await self.consider(pending_offer(self.ledger, record))

    async def cycle(self, now: int) -> None:
        """Sell, buy and answer counters by the policy, once."""
        readings = self.market_readings(now)
        await self.update_available_energy(now)
        # One read of the offer book serves both sides: ours for the seller, neighbours' to
        # judge (one arriving meanwhile is judged on arrival, `record_received`).
        offers = open_offers(self.ledger, now)
        snapshot = MarketSnapshot(
            now_ms=now,
            readings=tuple(readings),
            open_offers=tuple(self._own_open_offers(offers)),
            requests=tuple(self._open_requests(now)),
            conditions=self._conditions(now),
        )
        for decision in self.seller.decide(snapshot):
            try:
                if isinstance(decision, PublishOffer):
                    record = await self.node.issue("offer", **_offer_fields(decision.intent))
                    self._automatic.add(record.id)
                    log.info("%s: offered %s (%s)", self.name, record.id[:10], decision.message)
                elif isinstance(decision, WithdrawOffer):
                    self._withdrawn.add(decision.offer_id)
                    await self.node.issue("cancel", offer=decision.offer_id)
            except Refusal as exc:
                log.info("%s: market decision refused by the ledger: %s", self.name, exc)
        for offer in offers:
            if offer.seller != self.account and offer.id not in self._evaluated:
                await self.consider(offer)
        await self.answer_counters(now)

    # --- buying --------------------------------------------------------------------------

    async def consider(self, offer: Offer) -> None:
        """Apply the owner's acceptance criteria to a neighbour's offer, once."""
        if offer.id in self._evaluated or offer.seller == self.account:
            return
        self._evaluated.add(offer.id)
        state = self.ledger.state
        seller = state.account(offer.seller)
        now = self.node.clock.now_ms()
        decision = evaluate_offer(
            self.policy.buy,
            market_offer(offer),
            me=self.account,
            now_ms=now,
            seller=SellerStanding(seller.rating_sum, seller.rating_count),
            balance=state.account(self.account).balance,
            limits=self.policy.limits,
            spent_today=spent_today(self.ledger, self.account, now),
        )
        try:
            if isinstance(decision, Accept):
                await self.node.issue("acceptance", offer=offer.id, quantity=decision.quantity)
            elif isinstance(decision, Counter):
                await self.node.issue(
                    "acceptance",
                    offer=offer.id,
                    quantity=decision.quantity or offer.remaining,
                    price=decision.price if decision.price is not None else offer.price,
                )
            elif isinstance(decision, Reject) and not decision.silent:
                await self.node.issue("rejection", target=offer.id, reason=decision.message[:200])
        except Refusal as exc:
            log.info("%s: could not act on offer %s: %s", self.name, offer.id[:10], exc)

    # --- selling -------------------------------------------------------------------------

    async def answer_counters(self, now: int) -> None:
        """Confirm or decline buyers' counter-offers on our open offers, by the policy; with
        `counter_offers: ask` only those whose offer is over (the owner answers the rest)."""
        ask = self.policy.sell.counter_offers == "ask"
        for acceptance, offer in pending_counters(self.ledger, self.account):
            still_open = offer.status == "open" and now < offer.expires
            if ask and still_open:
                continue
            try:
                if still_open and confirms_counter(self.policy.sell, offer.price, acceptance.price):
                    await self.node.issue("confirmation", acceptance=acceptance.id)
                else:
                    await self.node.issue(
                        "rejection", target=acceptance.id, reason="counter-offer declined"
                    )
            except Refusal as exc:
                log.info("%s: could not answer counter %s: %s", self.name, acceptance.id[:10], exc)

    def owned_resource(self, device: SiteDevice) -> Resource | None:
        """The ledger resource a device backs, when this home owns it."""
        if not device.resource_id:
            return None
        resource = self.ledger.state.resources.get(device.resource_id)
        return resource if resource is not None and resource.owner == self.account else None

    def market_readings(self, now: int) -> list[ResourceReading]:
        """What each device may sell now, with what trades hold of its resource."""
        site = SiteContext(now=now, grid_power=grid_power(self.devices))
        readings = []
        for device in self.devices:
            resource = self.owned_resource(device)
            if resource is None:
                continue
            reading = device.market_reading(resource, self._power_holds(resource.id), site)
            if reading is not None:
                readings.append(reading)
        return readings

    def _power_holds(self, resource_id: str) -> tuple[PowerHold, ...]:
        """What the ledger's trades hold of a resource's rating, and when: the ledger books
        energy trades at their average power, and what they hold is not for sale again."""
        return tuple(PowerHold(*hold) for hold in power_holds(self.ledger.state, resource_id))

    async def update_available_energy(self, now: int) -> None:
        """Tell the ledger what energy our storage holds, when it changed by 2 % or more,
        so the ledger's energy rule checks sales against reality."""
        for device in self.devices:
            resource = self.owned_resource(device)
            if resource is None or resource.capacity_wh == 0:
                continue
            available = device.stored_wh(resource, now)
            if available is None:
                continue
            available = min(available, resource.capacity_wh)
            last = self._last_available.get(resource.id, resource.available_wh)
            if abs(available - last) * 50 < resource.capacity_wh:
                continue
            self._last_available[resource.id] = available
            try:
                await self.node.issue(
                    "resource_update", resource=resource.id, available_wh=available
                )
            except Refusal as exc:
                log.info("%s: resource update refused: %s", self.name, exc)

    def _own_open_offers(self, offers: list[Offer]) -> list[MarketOffer]:
        return [
            market_offer(o, automatic=o.id in self._automatic)
            for o in offers
            if o.seller == self.account and o.id not in self._withdrawn
        ]

    def _open_requests(self, now: int) -> list[EnergyRequest]:
        return [
            EnergyRequest(
                request_id=r.id,
                requester=r.buyer,
                mode=r.mode,  # type: ignore[arg-type]
                quantity=r.quantity,
                max_price=r.max_price,
                start=r.start,
                end=r.end,
                expires=r.expires,
            )
            for r in self.ledger.state.requests.rows.values()
            if now < r.expires
        ]

    def _conditions(self, now: int) -> MarketConditions:
        state = self.ledger.state
        since = now - CONDITIONS_WINDOW_MS
        offers = [o for o in state.offers.rows.values() if o.time >= since]
        supply = sum(energy_of(o.mode, o.quantity, o.start, o.end) for o in offers)
        demand = sum(
            energy_of(r.mode, r.quantity, r.start, r.end)
            for r in state.requests.rows.values()
            if r.expires >= since
        )
        sold = sum(1 for o in offers if o.remaining < o.quantity)
        permille = 1000 * sold // len(offers) if offers else 500
        return MarketConditions(demand_wh=demand, supply_wh=supply, acceptance_permille=permille)


def _offer_fields(intent: OfferIntent) -> dict[str, Any]:
    body = dict(intent.to_body())
    del body["kind"]
    return body


def market_offer(offer: Offer, automatic: bool = False) -> MarketOffer:
    """A ledger offer as the market sees it: its remaining quantity on its terms."""
    return MarketOffer(
        offer_id=offer.id,
        seller=offer.seller,
        terms=OfferIntent(
            resource=offer.resource,
            mode=offer.mode,  # type: ignore[arg-type]
            quantity=offer.remaining,
            price=offer.price,
            start=offer.start,
            end=offer.end,
            expires=offer.expires,
            to=offer.to,
            request=offer.request or None,
            auction=AuctionTerms(offer.auction_closes, offer.auction_cap)
            if offer.is_auction
            else None,
        ),
        automatic=automatic,
    )
