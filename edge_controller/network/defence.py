"""Inbound defence: why a message is refused, per-sender rate limits and duplicate detection.

Everything here is pure and takes its clock as an argument, so the rules are tested
without a broker and without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

Clock = Callable[[], float]


class Rejection(StrEnum):
    """Reason codes of refused inbound messages, the keys of the rejection counter.

    A refusal by the app's validator is counted as ``invalid:<reason the app gave>``.
    """

    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"
    UNSUPPORTED_VERSION = "unsupported_version"
    KIND_MISMATCH = "kind_mismatch"
    ID_MISMATCH = "id_mismatch"
    SENDER_MISMATCH = "sender_mismatch"
    UNKNOWN_TOPIC = "unknown_topic"
    RATE_LIMITED = "rate_limited"
    DUPLICATE = "duplicate"
    NO_HANDLER = "no_handler"
    HANDLER_ERROR = "handler_error"
    VALIDATOR_ERROR = "validator_error"
    INBOUND_QUEUE_FULL = "inbound_queue_full"
    INTERNAL_ERROR = "internal_error"
    LANE_FULL = "lane_full"


def invalid_reason(app_reason: str) -> str:
    """Counter key of a message the app's validator refused."""
    return f"invalid:{app_reason}"


class MessageRejectedError(Exception):
    """An inbound message is refused; ``reason`` is counted, ``detail`` is only logged."""

    def __init__(self, reason: Rejection | str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class TokenBucket:
    """Allows ``burst`` messages at once and ``rate`` messages per second on average."""

    rate: float
    burst: float
    tokens: float
    updated: float
    # Remembers whether the last message was refused, so a flood logs once, not per message.
    limited: bool = False

    def take(self, now: float) -> bool:
        """Spend one token if there is one; refill first for the time passed since ``updated``."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def take_up_to(self, wanted: int, now: float) -> int:
        """Spend up to ``wanted`` whole tokens; how many were spent (0: wait `wait_s`)."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        taken = min(wanted, int(self.tokens))
        self.tokens -= taken
        return taken

    def wait_s(self) -> float:
        """Seconds until the next whole token, as of the last update."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


class SenderRateLimiter:
    """One token bucket per sender; the least recently seen senders are forgotten first.

    Forgetting keeps memory bounded when a peer invents sender ids; a forgotten sender
    starts again with a full bucket.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        max_senders: int = 4096,
        clock: Clock = time.monotonic,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate_per_second must be > 0 and burst >= 1")
        self.rate = rate_per_second
        self.burst = float(burst)
        self.max_senders = max_senders
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, sender: str) -> tuple[bool, bool]:
        """Whether a message of ``sender`` may pass, and whether this refusal starts a flood."""
        now = self._clock()
        bucket = self._buckets.get(sender)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self.burst, now)
            self._buckets[sender] = bucket
            if len(self._buckets) > self.max_senders:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(sender)
        allowed = bucket.take(now)
        starts_flood = not allowed and not bucket.limited
        bucket.limited = not allowed
        return allowed, starts_flood


@dataclass
class Lanes:
    """Counts of queued inbound messages per lane (a kind of message and a sender, or the
    strangers of a kind together), refusing a message whose lane or the queue is full."""

    per_sender: int
    strangers: int
    total: int
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    queued: int = 0

    def refusal(self, lane: tuple[str, str], stranger: bool) -> Rejection | None:
        """None when ``lane`` has room for one more message, else why it has none."""
        if self.queued >= self.total:
            return Rejection.INBOUND_QUEUE_FULL
        if self.counts.get(lane, 0) >= (self.strangers if stranger else self.per_sender):
            return Rejection.LANE_FULL
        return None

    def enter(self, lane: tuple[str, str]) -> None:
        """Take a place in ``lane`` (after `refusal` said there is one)."""
        self.counts[lane] = self.counts.get(lane, 0) + 1
        self.queued += 1

    def leave(self, lane: tuple[str, str]) -> None:
        """Give a place of ``lane`` back (its message was handled)."""
        count = self.counts.get(lane, 0) - 1
        if count > 0:
            self.counts[lane] = count
        else:
            self.counts.pop(lane, None)
        self.queued -= 1


class RecentIds:
    """The last ``capacity`` message ids handled, to drop redeliveries of at-least-once messages.

    An id is remembered only once its message was accepted, so a message refused for a
    reason that can pass later (the signer is not known yet) is looked at again when it
    comes back.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def forget(self, message_id: str) -> None:
        """Take ``message_id`` back: its message may be looked at again when it returns."""
        self._ids.pop(message_id, None)

    def remember(self, message_id: str) -> None:
        """Add ``message_id``, forgetting the oldest one when full."""
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


class RefusalLog:
    """Refusals logged without letting a flood write the disk full.

    The first refusal of each reason in an interval is logged at once with its detail;
    the rest are only counted, and `flush` (due `interval_s` after the first one held
    back) writes one line for them all, e.g. "refused 1,234 messages in the last 60 s:
    bad_signature 1,200, oversized 34". A flood of any size costs one line per reason
    and one summary per interval.
    """

    def __init__(
        self, logger: logging.Logger, interval_s: float = 60.0, clock: Clock = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._logged: set[str] = set()
        self._held: Counter[str] = Counter()
        self._since = clock()

    def refused(self, reason: str, message: str, level: int = logging.WARNING) -> bool:
        """Log (or count) one refusal; True when it is the first one held back, so the
        caller arranges a `flush` in `interval_s`."""
        if self._clock() - self._since >= self.interval_s:
            self.flush()
        if reason not in self._logged:
            self._logged.add(reason)
            if self.logger.isEnabledFor(level):
                self.logger.log(
                    level,
                    "%s; more refusals for %s are summed up every %d s",
                    message,
                    reason,
                    self.interval_s,
                )
            return False
        first_held = not self._held
        self._held[reason] += 1
        return first_held

    def flush(self) -> None:
        """Write the summary of the refusals held back, and start a new interval."""
        if self._held:
            total = sum(self._held.values())
            reasons = ", ".join(f"{reason} {n:,}" for reason, n in self._held.most_common())
            seconds = max(1, round(self._clock() - self._since))
            self.logger.warning(
                "refused %s more messages in the last %d s: %s", f"{total:,}", seconds, reasons
            )
        self._held.clear()
        self._logged.clear()
        self._since = self._clock()
