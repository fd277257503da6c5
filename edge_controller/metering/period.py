"""Settlement periods: the fixed, aligned slices of time that readings and netting use."""

from __future__ import annotations

from dataclasses import dataclass

from edge_controller.metering.errors import MeteringError, Problem

MS_PER_SECOND = 1_000
MIN_PERIOD_MS = MS_PER_SECOND
# Seed 003 settles "every 30 minutes, every minute, or every second"; longer periods hide
# the short peaks the per-period netting is meant to price fairly.
MAX_PERIOD_MS = 30 * 60 * MS_PER_SECOND


@dataclass(frozen=True, order=True)
class SettlementPeriod:
    """The UTC milliseconds [start_ms, end_ms) one reading or one settlement covers."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        for name in ("start_ms", "end_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise MeteringError(Problem.BAD_PERIOD, f"{name} must be an integer ms")
        if self.end_ms <= self.start_ms:
            raise MeteringError(
                Problem.BAD_PERIOD,
                f"a period must end after it starts ({self.start_ms} .. {self.end_ms})",
            )

    @property
    def length_ms(self) -> int:
        """How long the period lasts."""
        return self.end_ms - self.start_ms

    def overlap_ms(self, start_ms: int, end_ms: int) -> int:
        """How many ms of [start_ms, end_ms) fall inside this period (0 when disjoint)."""
        return max(0, min(self.end_ms, end_ms) - max(self.start_ms, start_ms))


def check_period_length(length_ms: int) -> None:
    """Refuse a settlement period length outside one second .. thirty minutes."""
    if not isinstance(length_ms, int) or isinstance(length_ms, bool):
        raise MeteringError(Problem.BAD_CONFIG, "the period length must be an integer ms")
    if not MIN_PERIOD_MS <= length_ms <= MAX_PERIOD_MS:
        raise MeteringError(
            Problem.BAD_CONFIG,
            f"the period length must be {MIN_PERIOD_MS}..{MAX_PERIOD_MS} ms, got {length_ms}",
        )


def period_containing(at_ms: int, length_ms: int) -> SettlementPeriod:
    """The period of `length_ms` that holds `at_ms`; periods are aligned to the UTC epoch
    so every home cuts time at the same instants."""
    check_period_length(length_ms)
    start = at_ms - at_ms % length_ms
    return SettlementPeriod(start, start + length_ms)


def is_aligned(period: SettlementPeriod, length_ms: int) -> bool:
    """Whether `period` is exactly one epoch-aligned period of `length_ms`."""
    return period.length_ms == length_ms and period.start_ms % length_ms == 0
