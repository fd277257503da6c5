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

from edge_controller.app.queries import Queries, pending_offer
from edge_controller.app.views import block_view, offer_view, trade_view
from edge_controller.devices import Clock
from edge_controller.ledger import Block, Ledger, Record, Rejected

log = logging.getLogger(__name__)


class EventBus:
    """Fans events out to WebSocket subscribers; a slow subscriber loses its oldest events."""

    def __init__(self, queue_size: int = 256) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size
        self.history: deque[dict[str, Any]] = deque(maxlen=50)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def publish(self, event: str, data: dict[str, Any], time_ms: int) -> None:
        message = {"event": event, "time": time_ms, "data": data}
        self.history.append(message)
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(message)


class Announcer:
    """Publishes the ledger's changes that matter to this home's owner."""

    def __init__(
        self, ledger: Ledger, account: str, queries: Queries, bus: EventBus, clock: Clock
    ) -> None:
        self.ledger = ledger
        self.account = account
        self.queries = queries
        self.bus = bus
        self.clock = clock
        self.cutoff_hooks: list[Callable[[bool], None]] = []
        ledger.events.connected.append(self.block_connected)
        ledger.events.dropped.append(self.record_dropped)

    def record_accepted(self, record: Record) -> None:
        """A record entered the pool (ours or a neighbour's): an offer is shown at once."""
        if record.kind == "offer":
            now = self.clock.now_ms()
            offer = pending_offer(self.ledger, record)
            self.bus.publish("offer", offer_view(offer, now, pending=True), now)

    def record_dropped(self, record: Record, why: Rejected) -> None:
        if record.account == self.account:
            self.bus.publish(
                "record_rejected",
                {"id": record.id, "kind": record.kind, **why.as_dict()},
                self.clock.now_ms(),
            )

    def block_connected(self, block: Block) -> None:
        now = self.clock.now_ms()
        state = self.ledger.state
        mine = False
        self.bus.publish("block", block_view(block), now)
        for record in block.records:
            if record.account == self.account:
                mine = True
            trade = state.trades.get(record.id)
            if trade is None and record.kind in ("settlement", "termination"):
                trade = state.trades.get(str(record.body["trade"]))
            if trade is not None and self.account in (trade.buyer, trade.seller):
                mine = True
                self.bus.publish("trade", trade_view(trade, self.account), now)
            if record.kind == "offer":
                # Ours too: the owner's dashboard sees its offer go from pending to open.
                offer = state.offers.get(record.id)
                if offer is not None:
                    self.bus.publish("offer", offer_view(offer, now), now)
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
        if empty == self.queries.cut_off:
            return
        self.queries.cut_off = empty
        event = "prepaid_cutoff" if empty else "prepaid_restored"
        self.bus.publish(event, self.queries.wallet(), now)
        for hook in self.cutoff_hooks:
            try:
                hook(empty)
            except Exception:
                log.exception("cut-off hook failed")
