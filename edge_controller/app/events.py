"""What the home tells its listeners (the WebSocket, Home Assistant), and when.

`EventBus` fans events out; `Announcer` turns what the ledger does (a block connected, a
record accepted or dropped) into the events an owner follows, and keeps the prepaid
cut-off: hooks fire once when the home's balance reaches zero and once when it recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from edge_controller.app.live import LiveBook
from edge_controller.app.queries import Queries
from edge_controller.app.refused import RefusedRecords
from edge_controller.app.views import block_view
from edge_controller.devices import Clock
from edge_controller.ledger import Block, Ledger, Reason, Record, Rejected

log = logging.getLogger(__name__)


class Subscription:
    """One listener's queue of events. When it falls behind, its oldest events are dropped
    and counted; the next thing it reads is a `resync` event with that count, so a client
    learns that it missed events and re-reads instead of trusting a partial picture."""

    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)
        self.dropped = 0
        self._held: dict[str, Any] | None = None

    def put(self, message: dict[str, Any]) -> None:
        """Queue an event, dropping (and counting) the oldest when the queue is full."""
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
                self.dropped += 1
        self._queue.put_nowait(message)

    async def get(self) -> dict[str, Any]:
        """The next event; a `resync` {`dropped`} first if events were dropped since."""
        if self._held is not None:
            message, self._held = self._held, None
            return message
        message = await self._queue.get()
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            # The event taken comes next: it is newer than everything that was dropped.
            self._held = message
            return {"event": "resync", "time": message["time"], "data": {"dropped": dropped}}
        return message

    def qsize(self) -> int:
        """How many events wait."""
        return self._queue.qsize() + (self._held is not None)


class EventBus:
    """Fans events out to WebSocket subscribers; a slow subscriber loses its oldest events
    and is told how many (`resync`)."""

    def __init__(self, queue_size: int = 256) -> None:
        self._subscribers: set[Subscription] = set()
        self._queue_size = queue_size
        self.history: deque[dict[str, Any]] = deque(maxlen=50)

    def subscribe(self) -> Subscription:
        """A new subscription; every event published from now on reaches it."""
        subscription = Subscription(self._queue_size)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to `subscription`."""
        self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        """How many listeners follow the events."""
        return len(self._subscribers)

    def publish(self, event: str, data: dict[str, Any], time_ms: int) -> None:
        """Send an event to every subscriber."""
        message = {"event": event, "time": time_ms, "data": data}
        self.history.append(message)
        for subscription in self._subscribers:
            subscription.put(message)


class Announcer:
    """Publishes the ledger's changes that matter to this home's owner."""

    def __init__(
        self,
        ledger: Ledger,
        account: str,
        queries: Queries,
        bus: EventBus,
        clock: Clock,
        refused: RefusedRecords | None = None,
    ) -> None:
        self.ledger = ledger
        self.refused = refused
        self.account = account
        self.queries = queries
        self.bus = bus
        self.clock = clock
        self.cutoff_hooks: list[Callable[[bool], None]] = []
        self._cut_off = False  # what the hooks were last told
        self.book = LiveBook(ledger, account, bus.publish, queries)
        ledger.events.connected.append(self.block_connected)
        ledger.events.disconnected.append(self.block_disconnected)
        ledger.events.dropped.append(self.record_dropped)

    def record_accepted(self, record: Record) -> None:
        """A record entered the pool (ours or a neighbour's): an offer is shown at once, a
        cancel withdraws one at once."""
        self.book.pooled(record, self.clock.now_ms())

    def tick(self, now: int) -> None:
        """Each control cycle: expired offers leave the owner's list."""
        self.book.tick(now)

    def block_disconnected(self, block: Block) -> None:
        """A reorganisation undid a block: what its records changed is shown again."""
        self.book.block(block, self.clock.now_ms())

    def record_dropped(self, record: Record, why: Rejected) -> None:
        """One of our records left the pool refused: kept in the refused list and announced."""
        if record.account != self.account or why.reason is Reason.DUPLICATE:
            return  # a duplicate is in the chain already: nothing was lost
        now = self.clock.now_ms()
        if self.refused is not None:
            self.refused.add(record.id, record.kind, record.seq, why.reason.value, why.message, now)
        self.bus.publish(
            "record_rejected", {"id": record.id, "kind": record.kind, **why.as_dict()}, now
        )

    def block_connected(self, block: Block) -> None:
        now = self.clock.now_ms()
        self.bus.publish("block", block_view(block), now)
        # Every offer and trade the block changed, once each (ours go from pending to open).
        traded = self.book.block(block, now)
        mine = traded or any(r.account == self.account for r in block.records)
        if block.records:
            # Any community trade or offer may have changed the market summary: the
            # dashboard's chart follows it here rather than at its next full read.
            self.bus.publish("market", self.queries.market(now), now)
        if mine or any(
            r.kind in ("topup", "transfer") and r.body.get("to") == self.account
            for r in block.records
        ):
            self.bus.publish("wallet", self.queries.wallet(), now)
            self.check_prepaid(now)

    def check_prepaid(self, now: int) -> None:
        """Fire the cut-off hooks once when the balance reaches zero, and once when a
        top-up lifts it again (a prepaid load, a USB port, an automation)."""
        empty = self.ledger.state.account(self.account).balance <= 0
        if empty == self._cut_off:
            return
        self._cut_off = empty
        event = "prepaid_cutoff" if empty else "prepaid_restored"
        self.bus.publish(event, self.queries.wallet(), now)
        for hook in self.cutoff_hooks:
            try:
                hook(empty)
            except Exception:
                log.exception("cut-off hook failed")
