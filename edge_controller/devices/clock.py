"""Time for devices and simulators: UTC milliseconds from a clock the tests can drive."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of the current time in UTC milliseconds."""

    def now_ms(self) -> int:
        """The current time, UTC milliseconds since the Unix epoch."""
        ...


class SystemClock:
    """The real wall clock."""

    def now_ms(self) -> int:
        """The current wall-clock time, UTC milliseconds since the Unix epoch."""
        return time.time_ns() // 1_000_000


class SimulatedClock:
    """A clock that moves only when told to, so tests need no sleeping."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        """The simulated time, UTC milliseconds."""
        return self._now_ms

    def advance(self, ms: int) -> int:
        """Move time forward by `ms` milliseconds and return the new time."""
        if ms < 0:
            raise ValueError("a clock does not run backwards")
        self._now_ms += ms
        return self._now_ms

    def set(self, now_ms: int) -> None:
        """Jump to `now_ms`, which must not be earlier than the current time."""
        if now_ms < self._now_ms:
            raise ValueError("a clock does not run backwards")
        self._now_ms = now_ms
