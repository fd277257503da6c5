"""Why the metering module refused an input: every refusal carries a reason code."""

from __future__ import annotations

from enum import StrEnum


class Problem(StrEnum):
    """Machine-readable reason codes for `MeteringError`."""

    # the tree
    DUPLICATE_POINT = "duplicate_point"
    UNKNOWN_PARENT = "unknown_parent"
    CYCLE = "cycle"
    UNKNOWN_POINT = "unknown_point"
    BAD_TRANSFER = "bad_transfer"
    # readings
    NEGATIVE = "negative"
    NOT_AN_INTEGER = "not_an_integer"
    WRONG_PERIOD = "wrong_period"
    DUPLICATE_READING = "duplicate_reading"
    MISSING_READING = "missing_reading"
    # periods and settlement
    BAD_PERIOD = "bad_period"
    BAD_CONFIG = "bad_config"
    ALREADY_SETTLED = "already_settled"
    UNKNOWN_ACCOUNT = "unknown_account"
    DUPLICATE_ACCOUNT = "duplicate_account"
    BAD_AMOUNT = "bad_amount"


class MeteringError(ValueError):
    """An input the metering or settlement logic cannot accept, with a reason code."""

    def __init__(self, problem: Problem, message: str) -> None:
        self.problem = problem
        self.message = message
        super().__init__(f"{problem.value}: {message}")


def require_count(value: int, what: str) -> None:
    """Refuse anything but a non-negative integer (Wh, milli-units, ms are never fractional)."""
    # bool is an int subclass; True Wh is a bug, not one watt-hour.
    if not isinstance(value, int) or isinstance(value, bool):
        raise MeteringError(Problem.NOT_AN_INTEGER, f"{what} must be an integer, not {value!r}")
    if value < 0:
        raise MeteringError(Problem.NEGATIVE, f"{what} must not be negative, got {value}")
