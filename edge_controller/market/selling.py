"""Threshold-triggered selling: telemetry and ledger facts in, offer decisions out.

The app calls `AutoSeller.decide(snapshot)` on every control cycle with fresh-or-not
readings, our open offers and neighbours' open requests, and turns the returned
`PublishOffer` / `WithdrawOffer` decisions into signed ledger records. Time only comes in
through `snapshot.now_ms`, so a test can step through minutes without sleeping.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge_controller.market.offers import AuctionTerms, EnergyRequest, MarketOffer, OfferIntent
from edge_controller.market.policy import SellPolicy, SellRule
from edge_controller.market.pricing import MarketConditions, offer_price
from edge_controller.market.readings import PERMILLE, ResourceReading
from edge_controller.market.reasons import DecisionReason
from edge_controller.market.units import Mode, sustainable_power_w


@dataclass(frozen=True)
class MarketSnapshot:
    """Everything the seller looks at in one control cycle.

    `open_offers`: our own offers still open (in the ledger or signed and waiting in the
    outbox, so a publish is seen on the next cycle, and without those we signed a cancel
    for, so a withdrawal is not repeated); `requests`: neighbours' open energy
    requests; `conditions`: recent market facts for demand pricing.
    """

    now_ms: int
    readings: tuple[ResourceReading, ...] = ()
    open_offers: tuple[MarketOffer, ...] = ()
    requests: tuple[EnergyRequest, ...] = ()
    conditions: MarketConditions = field(default_factory=MarketConditions)


@dataclass(frozen=True)
class PublishOffer:
    """Sign `intent` as an offer record and broadcast it."""

    intent: OfferIntent
    reason: DecisionReason
    message: str


@dataclass(frozen=True)
class WithdrawOffer:
    """Cancel our open offer `offer_id`."""

    offer_id: str
    reason: DecisionReason
    message: str


SellDecision = PublishOffer | WithdrawOffer


@dataclass
class _Trigger:
    """Hysteresis and delays for one resource.

    `above_since`: since when the enable condition has held; `below_since`: since when
    the disable condition (or stale telemetry) has held.
    """

    on: bool = False
    above_since: int | None = None
    below_since: int | None = None
    last_published_ms: int | None = None

    def observe(
        self, value: float | None, enable: float, disable: float, rule: SellRule, now_ms: int
    ) -> bool:
        """Track the signal; True when the end condition has held for the disable delay."""
        if value is not None and value > enable:
            self.above_since = now_ms if self.above_since is None else self.above_since
        else:
            self.above_since = None
        if value is None or value < disable:
            self.below_since = now_ms if self.below_since is None else self.below_since
        else:
            self.below_since = None
        ended = self.below_since is not None and now_ms - self.below_since >= rule.disable_delay_ms
        if ended:
            self.on = False
        elif self.above_since is not None and now_ms - self.above_since >= rule.enable_delay_ms:
            self.on = True
        return ended


class AutoSeller:
    """Decides, cycle by cycle, which offers this home publishes and withdraws."""

    def __init__(self, policy: SellPolicy, *, account: str) -> None:
        """`account` is this home's id, so its own energy requests are never answered."""
        self._policy = policy
        self._account = account
        self._triggers: dict[str, _Trigger] = {}
        self._answered: set[str] = set()

    @property
    def policy(self) -> SellPolicy:
        """The policy in force."""
        return self._policy

    def update_policy(self, policy: SellPolicy) -> None:
        """Apply an edited policy; running delays and the offer interval carry over."""
        self._policy = policy

    def decide(self, snapshot: MarketSnapshot) -> list[SellDecision]:
        """The offers to publish and withdraw now."""
        decisions: list[SellDecision] = []
        offers_by_resource: dict[str, list[MarketOffer]] = defaultdict(list)
        for offer in snapshot.open_offers:
            offers_by_resource[offer.terms.resource].append(offer)
        readings = sorted(snapshot.readings, key=lambda r: r.resource)
        for reading in readings:
            decisions.extend(
                self._threshold(reading, offers_by_resource[reading.resource], snapshot)
            )
        if self._policy.auto_sell and self._policy.answer_requests:
            decisions.extend(self._answer_requests(readings, offers_by_resource, snapshot))
        return decisions

    def _threshold(
        self, reading: ResourceReading, offers: list[MarketOffer], snapshot: MarketSnapshot
    ) -> list[SellDecision]:
        now = snapshot.now_ms
        ours = [o for o in offers if o.automatic and o.terms.request is None]
        rule = reading.rule(self._policy)
        if rule is None or not self._policy.auto_sell:
            self._triggers.pop(reading.resource, None)
            message = f"Automatic selling of {reading.resource} is off."
            return _withdraw(ours, DecisionReason.AUTO_SELL_OFF, message)

        trigger = self._triggers.setdefault(reading.resource, _Trigger())
        enable, disable = rule.thresholds
        policy = self._policy
        start = now + policy.delivery_lead_ms
        end = start + policy.delivery_window_ms
        value = reading.signal(start, end) if reading.fresh else None
        if trigger.observe(value, enable, disable, rule, now):
            if not reading.fresh:
                return _withdraw(
                    ours,
                    DecisionReason.TELEMETRY_STALE,
                    f"No fresh telemetry from {reading.resource}.",
                )
            return _withdraw(
                ours,
                DecisionReason.CONDITION_ENDED,
                f"{reading.resource} stayed below its disable threshold ({disable:g}).",
            )

        interval_passed = (
            trigger.last_published_ms is None
            or now - trigger.last_published_ms >= self._policy.min_offer_interval_ms
        )
        # `value` is None exactly when the telemetry is stale.
        if not (trigger.on and value is not None and not ours and interval_passed):
            return []
        mode = rule.offer_mode(reading.mode)
        quantity = available_quantity(reading, policy, mode, start, end, offers)
        if quantity < rule.min_offer:
            return []
        expires = now + policy.offer_validity_ms
        auction = None
        if policy.auction is not None:
            auction = AuctionTerms(closes=now + policy.auction.duration_ms, cap=policy.auction.cap)
        price = offer_price(policy.pricing, start, snapshot.conditions)
        if auction is not None:
            price = min(price, auction.cap)
        intent = OfferIntent(
            resource=reading.resource,
            mode=mode,
            quantity=quantity,
            price=price,
            start=start,
            end=end,
            expires=expires,
            to=policy.to,
            auction=auction,
        )
        trigger.last_published_ms = now
        reason, message = _publish_reason(reading, intent, value)
        return [PublishOffer(intent, reason, message)]

    def _answer_requests(
        self,
        readings: Sequence[ResourceReading],
        offers_by_resource: dict[str, list[MarketOffer]],
        snapshot: MarketSnapshot,
    ) -> list[SellDecision]:
        now = snapshot.now_ms
        open_ids = {r.request_id for r in snapshot.requests}
        # Forget requests that are gone, so the memory stays as small as the open set.
        self._answered &= open_ids
        answered_in_ledger = {
            o.terms.request for offers in offers_by_resource.values() for o in offers
        }
        decisions: list[SellDecision] = []
        for request in sorted(snapshot.requests, key=lambda r: (r.expires, r.request_id)):
            if (
                request.requester == self._account
                or request.request_id in self._answered
                or request.request_id in answered_in_ledger
                or request.expires <= now
                or request.end <= now
            ):
                continue
            price = offer_price(self._policy.pricing, request.start, snapshot.conditions)
            if price > request.max_price:
                continue
            decision = self._serve(request, price, readings, offers_by_resource, now)
            if decision is not None:
                self._answered.add(request.request_id)
                offers_by_resource[decision.intent.resource].append(
                    MarketOffer("", self._account, decision.intent, automatic=True)
                )
                decisions.append(decision)
        return decisions

    def _serve(
        self,
        request: EnergyRequest,
        price: int,
        readings: Sequence[ResourceReading],
        offers_by_resource: dict[str, list[MarketOffer]],
        now: int,
    ) -> PublishOffer | None:
        # A request whose window has begun can still be served for the rest of it.
        start = max(request.start, now)
        for reading in readings:
            rule = reading.rule(self._policy)
            if rule is None or not reading.fresh:
                continue
            offers = offers_by_resource[reading.resource]
            available = available_quantity(
                reading, self._policy, request.mode, start, request.end, offers
            )
            quantity = min(available, request.quantity)
            minimum = rule.min_offer if request.mode == reading.mode else 1
            if quantity < minimum:
                continue
            intent = OfferIntent(
                resource=reading.resource,
                mode=request.mode,
                quantity=quantity,
                price=price,
                start=start,
                end=request.end,
                expires=min(now + self._policy.offer_validity_ms, request.end),
                to=(request.requester,),
                request=request.request_id,
            )
            message = f"{reading.resource} answers request {request.request_id}."
            return PublishOffer(intent, DecisionReason.ANSWER_REQUEST, message)
        return None


def available_quantity(
    reading: ResourceReading,
    policy: SellPolicy,
    mode: Mode,
    start: int,
    end: int,
    open_offers: Sequence[MarketOffer] = (),
) -> int:
    """What `reading`'s resource can still sell for delivery over [start, end).

    Wh in energy mode, W in capacity mode; what it can supply under its rule of `policy`
    (see `ResourceReading.supply`), minus what `open_offers` (of this resource) already
    promise.
    """
    duration_ms = end - start
    supply = reading.supply(policy, start, end)
    power, energy = supply.power_w, supply.energy_wh
    promised_wh = sum(o.terms.energy_wh for o in open_offers)
    if mode == "energy":
        return max(0, energy - promised_wh)
    promised_w = sum(
        o.terms.quantity
        if o.terms.mode == "capacity"
        else sustainable_power_w(o.terms.quantity, o.terms.duration_ms)
        for o in open_offers
    )
    # Power alone is not enough: the remaining energy must also last the whole window.
    power_from_energy = sustainable_power_w(max(0, energy - promised_wh), duration_ms)
    return max(0, min(power - promised_w, power_from_energy))


def _publish_reason(
    reading: ResourceReading, intent: OfferIntent, signal: float
) -> tuple[DecisionReason, str]:
    unit = "Wh" if intent.mode == "energy" else "W"
    return reading.publish_reason(f"{intent.quantity} {unit} at {intent.price} per kWh", signal)


def _withdraw(
    offers: Sequence[MarketOffer], reason: DecisionReason, message: str
) -> list[SellDecision]:
    return [WithdrawOffer(o.offer_id, reason, message) for o in offers]


def confirms_counter(policy: SellPolicy, asking_price: int, counter_price: int) -> bool:
    """Whether the seller confirms a buyer's counter-offer at `counter_price` by itself."""
    if not policy.auto_sell:
        return False
    return counter_price * PERMILLE >= asking_price * policy.min_counter_permille
