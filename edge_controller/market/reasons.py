"""Machine-readable reason codes for every market decision (logged, returned by the API)."""

from __future__ import annotations

from enum import StrEnum


class DecisionReason(StrEnum):
    """Why the market decided what it did; the value is the stable code the API returns."""

    # Selling
    BATTERY_ABOVE_THRESHOLD = "battery_above_threshold"
    PV_SURPLUS_ABOVE_THRESHOLD = "pv_surplus_above_threshold"
    FUEL_CELL_CAPACITY_FREE = "fuel_cell_capacity_free"
    ANSWER_REQUEST = "answer_request"
    CONDITION_ENDED = "condition_ended"
    TELEMETRY_STALE = "telemetry_stale"
    AUTO_SELL_OFF = "auto_sell_off"

    # Buying
    MEETS_CRITERIA = "meets_criteria"
    PARTIAL_QUANTITY = "partial_quantity"
    PRICE_NEGOTIABLE = "price_above_maximum_negotiable"
    PRICE_ABOVE_MAXIMUM = "price_above_maximum"
    QUANTITY_BELOW_MINIMUM = "quantity_below_minimum"
    MODE_NOT_WANTED = "mode_not_wanted"
    OUTSIDE_ALLOWED_HOURS = "outside_allowed_hours"
    OFFER_EXPIRED = "offer_expired"
    SELLER_RATING_TOO_LOW = "seller_rating_too_low"
    SELLER_UNRATED = "seller_unrated"
    SELLER_BLOCKED = "seller_blocked"
    NOT_ADDRESSED_TO_US = "not_addressed_to_us"
    OWN_OFFER = "own_offer"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    AUTO_BUY_OFF = "auto_buy_off"
    AUCTION_OFFER = "auction_offer"
    # The owner's spending limits (market/spending.py)
    PRICE_ABOVE_CEILING = "price_above_ceiling"
    TRADE_LIMIT = "trade_limit_exceeded"
    DAILY_LIMIT = "daily_limit_exceeded"
