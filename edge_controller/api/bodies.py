"""The request bodies the API takes, declared as dataclasses and read by the one checker.

Each field's type is checked here; what the values mean (a known mode, a price the ledger
accepts) is for the app and the ledger to say. Fields the API does not know are ignored,
as clients such as Home Assistant may send more than an endpoint reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class OfferBody:
    """`POST /offers`: what to sell; a missing window starts in a minute and lasts an hour."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    resource: str
    mode: str
    quantity: int
    price: int
    start: int | None = None
    end: int | None = None
    expires: int | None = None
    to: list[Any] | None = None
    min_quantity: int | None = None
    request: str | None = None
    auction: dict[str, Any] | None = None


@dataclass(frozen=True)
class AcceptBody:
    """`POST /offers/{id}/accept`: all that remains at the asking price unless given."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    quantity: int | None = None
    price: int | None = None


@dataclass(frozen=True)
class RejectBody:
    """`POST /offers/{id}/reject`."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    reason: str | None = None


@dataclass(frozen=True)
class BidBody:
    """`POST /offers/{id}/bids`."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    price: int


@dataclass(frozen=True)
class RequestBody:
    """`POST /requests`: energy wanted; a missing window starts in a minute, lasts an hour."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    mode: str
    quantity: int
    max_price: int
    start: int | None = None
    end: int | None = None
    expires: int | None = None


@dataclass(frozen=True)
class RateBody:
    """`POST /trades/{id}/rate`."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    score: int
    comment: str | None = None


@dataclass(frozen=True)
class UsbPurchaseBody:
    """`POST /usb/{port}/purchase`: an amount of energy or of money, from a wallet."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    energy_wh: int | None = None
    amount: int | None = None
    wallet: str | None = None


@dataclass(frozen=True)
class UsbPairBody:
    """`POST /usb/pair`: the code a phone shows, and what to fund its wallet with."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    code: str
    fund: int | None = None


@dataclass(frozen=True)
class UsbPortBody:
    """`PUT /usb/{port}`."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    enabled: bool
