"""Offers and energy requests as the market sees them, mapped onto the ledger's records.

`OfferIntent.to_body()` is exactly the body the app signs as an `offer` record;
`MarketOffer` is a signed offer the ledger holds (ours or a neighbour's); `EnergyRequest` is a
consumer's signed `request` record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edge_controller.market.checks import Checks, Problem, ValidationError, from_dict, to_dict
from edge_controller.market.units import Mode, quantity_cost, quantity_energy_wh

OFFER_KIND = "offer"
REQUEST_KIND = "request"


@dataclass(frozen=True)
class AuctionTerms:
    """An offer sold by auction: bids close at `closes` (UTC ms), no bid above `cap`."""

    closes: int
    cap: int

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.cap >= 0, "cap", "must not be negative")
        checks.done()


@dataclass(frozen=True)
class OfferIntent:
    """What a seller proposes, before signing: the body of a ledger `offer` record.

    `quantity` is Wh in energy mode and W in capacity mode; `price` is milli-units per kWh;
    `start`/`end` bound delivery and `expires` ends acceptance (all UTC ms). `to` makes the
    offer private to those accounts; `request` names the energy request it answers.
    """

    resource: str
    mode: Mode
    quantity: int
    price: int
    start: int
    end: int
    expires: int
    to: tuple[str, ...] = ()
    request: str | None = None
    auction: AuctionTerms | None = None

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(bool(self.resource), "resource", "must not be empty")
        checks.require(self.quantity > 0, "quantity", "must be positive")
        checks.require(self.price >= 0, "price", "must not be negative")
        checks.require(self.start < self.end, "end", "must be after start")
        checks.require(self.expires <= self.end, "expires", "must not be after end")
        checks.require(len(set(self.to)) == len(self.to), "to", "lists an account twice")
        if self.auction is not None:
            checks.require(
                self.auction.closes <= self.expires, "auction.closes", "must not be after expires"
            )
            checks.require(
                self.auction.cap >= self.price, "auction.cap", "must not be below the price"
            )
        checks.done()

    @property
    def duration_ms(self) -> int:
        """Length of the delivery window."""
        return self.end - self.start

    @property
    def energy_wh(self) -> int:
        """Energy the offer stands for (capacity counted over the whole window)."""
        return quantity_energy_wh(self.mode, self.quantity, self.duration_ms)

    def cost(self, quantity: int | None = None, price: int | None = None) -> int:
        """Milli-units a buyer pays for `quantity` (default: all of it) at `price`."""
        return quantity_cost(
            self.mode,
            self.quantity if quantity is None else quantity,
            self.price if price is None else price,
            self.duration_ms,
        )

    def to_body(self) -> dict[str, object]:
        """The ledger `offer` record body; optional keys are left out when unused."""
        body = to_dict(self)
        for optional in ("to", "request", "auction"):
            if not body[optional]:
                del body[optional]
        return {"kind": OFFER_KIND, **body}

    @classmethod
    def from_body(cls, body: Mapping[str, object]) -> OfferIntent:
        """Read a ledger `offer` record body, or raise ValidationError."""
        return from_dict(cls, _without_kind(body, OFFER_KIND))


@dataclass(frozen=True)
class MarketOffer:
    """A signed offer the ledger holds: its id, the seller's account and the terms.

    `automatic` is set by the app on its own offers that came from an AutoSeller
    `PublishOffer`, so the seller withdraws only what it published itself.
    """

    offer_id: str
    seller: str
    terms: OfferIntent
    automatic: bool = False


@dataclass(frozen=True)
class EnergyRequest:
    """A consumer's signed `request` record: wanted quantity, highest price and window."""

    request_id: str
    requester: str
    mode: Mode
    quantity: int
    max_price: int
    start: int
    end: int
    expires: int

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(self.quantity > 0, "quantity", "must be positive")
        checks.require(self.max_price >= 0, "max_price", "must not be negative")
        checks.require(self.start < self.end, "end", "must be after start")
        checks.done()

    def to_body(self) -> dict[str, object]:
        """The ledger `request` record body."""
        body = to_dict(self)
        del body["request_id"], body["requester"]
        return {"kind": REQUEST_KIND, **body}

    @classmethod
    def from_body(
        cls, request_id: str, requester: str, body: Mapping[str, object]
    ) -> EnergyRequest:
        """Read a ledger `request` record body, or raise ValidationError."""
        fields = {**_without_kind(body, REQUEST_KIND), "request_id": request_id}
        return from_dict(cls, {**fields, "requester": requester})


def _without_kind(body: Mapping[str, object], kind: str) -> dict[str, object]:
    if body.get("kind") != kind:
        raise ValidationError([Problem("kind", f"expected {kind!r}")])
    return {key: value for key, value in body.items() if key != "kind"}
