"""Automatic acceptance of neighbours' offers by the owner's criteria.

`evaluate_offer` turns one offer into one decision: `Accept` (possibly part of it),
`Counter` (a changed price and/or quantity), `Reject` (sent or silent) or `Defer` (leave
it to the owner). Every decision carries a `DecisionReason` code and a message for a person.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_controller.market.checks import Checks
from edge_controller.market.offers import MarketOffer, OfferIntent
from edge_controller.market.reasons import DecisionReason
from edge_controller.market.spending import SpendingLimits, over_limit
from edge_controller.market.units import HOURS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE

MAX_RATING = 10


@dataclass(frozen=True)
class QuantityRange:
    """How much to buy from one offer: at least `min`, at most `max` (Wh or W)."""

    min: int
    max: int

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.min > 0, "min", "must be positive")
        checks.require(self.max >= self.min, "max", f"must not be below min ({self.min})")
        checks.done()


@dataclass(frozen=True)
class AllowedHours:
    """Local hours [start_hour, end_hour) when delivery may happen; 22 -> 6 spans midnight."""

    start_hour: int
    end_hour: int

    def __post_init__(self) -> None:
        checks = Checks()
        for name in ("start_hour", "end_hour"):
            checks.require(0 <= getattr(self, name) < HOURS_PER_DAY, name, "must be 0..23")
        checks.require(self.start_hour != self.end_hour, "end_hour", "must differ from start")
        checks.done()

    def contains_hour(self, hour: int) -> bool:
        """Whether local `hour` is allowed."""
        return (hour - self.start_hour) % HOURS_PER_DAY < (
            self.end_hour - self.start_hour
        ) % HOURS_PER_DAY

    def covers(self, start_ms: int, end_ms: int, utc_offset_minutes: int) -> bool:
        """Whether every hour that the window [start_ms, end_ms) touches is allowed."""
        shift = utc_offset_minutes * MS_PER_MINUTE
        local_start, local_end = start_ms + shift, end_ms + shift
        slot = local_start - local_start % MS_PER_HOUR
        while slot < local_end:
            if not self.contains_hour((slot // MS_PER_HOUR) % HOURS_PER_DAY):
                return False
            slot += MS_PER_HOUR
        return True


@dataclass(frozen=True)
class AcceptanceCriteria:
    """The owner's rules for buying automatically.

    A `price` above `max_price` but within `counter_margin` gets a counter-offer at
    `max_price`. `energy` / `capacity` give the quantity range per mode (None: never buy
    that mode). `min_rating` is the lowest average seller rating (0..10); preferred
    sellers skip it, blocked sellers are always refused.
    """

    auto_accept: bool = False
    max_price: int = 300
    counter_margin: int = 0
    energy: QuantityRange | None = QuantityRange(100, 5_000)
    capacity: QuantityRange | None = None
    allowed_hours: AllowedHours | None = None
    min_rating: int = 0
    allow_unrated_sellers: bool = True
    preferred_sellers: tuple[str, ...] = ()
    blocked_sellers: tuple[str, ...] = ()
    announce_rejections: bool = False

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.max_price >= 0, "max_price", "must not be negative")
        checks.require(self.counter_margin >= 0, "counter_margin", "must not be negative")
        checks.require(0 <= self.min_rating <= MAX_RATING, "min_rating", "must be 0..10")
        both = sorted(set(self.preferred_sellers) & set(self.blocked_sellers))
        checks.require(not both, "blocked_sellers", f"also preferred: {', '.join(both)}")
        checks.done()


@dataclass(frozen=True)
class SellerStanding:
    """A seller's ratings as the ledger holds them (marks out of 10)."""

    ratings_sum: int = 0
    ratings_count: int = 0

    def average_at_least(self, rating: int) -> bool:
        """Whether the average mark is at least `rating`, without rounding."""
        return self.ratings_sum >= rating * self.ratings_count


@dataclass(frozen=True)
class Accept:
    """Accept `quantity` of the offer (less than all of it is a partial acceptance)."""

    quantity: int
    reason: DecisionReason
    message: str


@dataclass(frozen=True)
class Counter:
    """Answer with changed terms; a None field keeps the offer's own value."""

    price: int | None
    quantity: int | None
    reason: DecisionReason
    message: str


@dataclass(frozen=True)
class Reject:
    """Refuse the offer; a silent rejection is only logged, never sent to the seller."""

    reason: DecisionReason
    message: str
    silent: bool


@dataclass(frozen=True)
class Defer:
    """Leave the offer to the owner (auto-buy is off, or it is an auction to bid in)."""

    reason: DecisionReason
    message: str


AcceptanceDecision = Accept | Counter | Reject | Defer


def evaluate_offer(
    criteria: AcceptanceCriteria,
    offer: MarketOffer,
    *,
    me: str,
    now_ms: int,
    seller: SellerStanding,
    balance: int | None = None,
    utc_offset_minutes: int = 0,
    limits: SpendingLimits | None = None,
    spent_today: int = 0,
) -> AcceptanceDecision:
    """Decide what the buyer `me` does with `offer` at `now_ms`.

    `seller` is the seller's standing from the ledger, `balance` the buyer's currency
    wallet in milli-units (None: do not check), `utc_offset_minutes` the home's offset
    for the allowed hours, `limits` the owner's spending limits with `spent_today` what
    the last 24 hours already spent (a purchase is cut to fit them, or refused).
    """
    terms = offer.terms
    addressed = me in terms.to
    # Public offers are broadcast to everyone: telling each seller "no" would be noise.
    silent = not (criteria.announce_rejections and addressed)

    if offer.seller == me:
        return Reject(DecisionReason.OWN_OFFER, "This is our own offer.", silent=True)
    if terms.to and not addressed:
        return Reject(
            DecisionReason.NOT_ADDRESSED_TO_US, "The offer is private to others.", silent=True
        )
    if offer.seller in criteria.blocked_sellers:
        return Reject(
            DecisionReason.SELLER_BLOCKED, f"Seller {offer.seller} is blocked.", silent=True
        )
    if terms.expires <= now_ms or terms.end <= now_ms:
        return Reject(DecisionReason.OFFER_EXPIRED, "The offer has expired.", silent=True)
    if terms.auction is not None:
        return Defer(DecisionReason.AUCTION_OFFER, "The offer is sold by auction: bid instead.")
    if not criteria.auto_accept:
        return Defer(DecisionReason.AUTO_BUY_OFF, "Automatic buying is off: the owner decides.")

    wanted = criteria.energy if terms.mode == "energy" else criteria.capacity
    if wanted is None:
        return Reject(DecisionReason.MODE_NOT_WANTED, f"We do not buy {terms.mode} offers.", silent)
    if criteria.allowed_hours is not None and not criteria.allowed_hours.covers(
        terms.start, terms.end, utc_offset_minutes
    ):
        return Reject(
            DecisionReason.OUTSIDE_ALLOWED_HOURS,
            "Delivery falls outside the allowed hours.",
            silent,
        )
    rejection = _check_rating(criteria, offer.seller, seller, silent)
    if rejection is not None:
        return rejection

    unit = "Wh" if terms.mode == "energy" else "W"
    quantity = min(terms.quantity, wanted.max)
    if quantity < wanted.min:
        return Reject(
            DecisionReason.QUANTITY_BELOW_MINIMUM,
            f"{terms.quantity} {unit} is below our minimum of {wanted.min} {unit}.",
            silent,
        )

    price = terms.price
    if price > criteria.max_price:
        if price - criteria.max_price > criteria.counter_margin:
            return Reject(
                DecisionReason.PRICE_ABOVE_MAXIMUM,
                f"Price {price} is above our maximum of {criteria.max_price} per kWh.",
                silent,
            )
        price = criteria.max_price

    if balance is not None:
        quantity = _affordable(terms, quantity, price, balance)
        if quantity < wanted.min:
            return Reject(
                DecisionReason.INSUFFICIENT_FUNDS,
                f"The wallet cannot pay for {wanted.min} {unit} at {price} per kWh.",
                silent,
            )
    if limits is not None:
        quantity = _affordable(terms, quantity, price, limits.budget(spent_today))
        # Cut to the budget, it fits unless the price or the smallest purchase is too much.
        cost = terms.cost(max(quantity, wanted.min), price)
        refused = over_limit(limits, price, cost, spent_today)
        if refused is not None:
            return Reject(refused.reason, f"Over the spending limits: {refused.message}.", silent)

    if price != terms.price:
        return Counter(
            price=price,
            quantity=quantity if quantity != terms.quantity else None,
            reason=DecisionReason.PRICE_NEGOTIABLE,
            message=(
                f"Price {terms.price} is above our maximum; we offer {price} per kWh "
                f"for {quantity} {unit}."
            ),
        )
    if quantity < terms.quantity:
        return Accept(
            quantity,
            DecisionReason.PARTIAL_QUANTITY,
            f"Accepting {quantity} of {terms.quantity} {unit} at {price} per kWh.",
        )
    return Accept(
        quantity, DecisionReason.MEETS_CRITERIA, f"Accepting {quantity} {unit} at {price} per kWh."
    )


def _check_rating(
    criteria: AcceptanceCriteria, seller_id: str, standing: SellerStanding, silent: bool
) -> Reject | None:
    if seller_id in criteria.preferred_sellers or criteria.min_rating == 0:
        return None
    if standing.ratings_count == 0:
        if criteria.allow_unrated_sellers:
            return None
        return Reject(DecisionReason.SELLER_UNRATED, "The seller has no ratings yet.", silent)
    if not standing.average_at_least(criteria.min_rating):
        return Reject(
            DecisionReason.SELLER_RATING_TOO_LOW,
            f"The seller's rating is below {criteria.min_rating} out of 10.",
            silent,
        )
    return None


def _affordable(terms: OfferIntent, quantity: int, price: int, balance: int) -> int:
    """The largest quantity up to `quantity` whose cost at `price` fits in `balance`."""
    if terms.cost(quantity, price) <= balance:
        return quantity
    low, high = 0, quantity
    while low < high:
        middle = (low + high + 1) // 2
        if terms.cost(middle, price) <= balance:
            low = middle
        else:
            high = middle - 1
    return low
