"""Timestamped telemetry values, so stale values can never pass for current ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sample(Generic[T]):
    """A value a device reported, when it was received, and how long it stays valid.

    `max_age_ms` is None for values that do not age, such as a power rating taken from
    the configuration.
    """

    value: T
    at_ms: int
    max_age_ms: int | None

    def age_ms(self, now_ms: int) -> int:
        """How long ago the value was received."""
        return now_ms - self.at_ms

    def fresh(self, now_ms: int) -> bool:
        """True while the value is young enough to act on."""
        return self.max_age_ms is None or self.age_ms(now_ms) <= self.max_age_ms

    def value_if_fresh(self, now_ms: int) -> T | None:
        """The value, or None once it is stale."""
        return self.value if self.fresh(now_ms) else None
