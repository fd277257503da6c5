"""The home as a node of the community's ledger: it signs and submits records, takes in
records and blocks from neighbours, keeps in sync, and seals blocks when it may.

Every record, ours or a neighbour's, is checked by the local ledger before anything else
sees it; ours then go out through the link's durable outbox. Listeners hear each record
the node accepted (`accepted`, at once) and each record a neighbour sent (`received`,
awaited, so a buyer can answer an offer before the next control cycle).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from edge_controller.app.ordering import SequenceGate
from edge_controller.devices import Clock
from edge_controller.ledger import (
    Genesis,
    KeyPair,
    Ledger,
    Outgoing,
    Reason,
    Record,
    Rejected,
    SyncNode,
    parse_record,
    sign_record,
)
from edge_controller.network import InboundMessage, LinkStats, MessageHandler, MessageKind
from edge_controller.refusal import Refusal, Why

log = logging.getLogger(__name__)

SYNC_INTERVAL_MS = 2_000
# Without records, a sealer still seals now and then so auctions close and time moves on.
HEARTBEAT_BLOCKS = 6
# A proof-of-work sealer tries this many nonces per attempt, off the event loop.
POW_ATTEMPTS = 200_000
# A home missing a signer's records asks the home that relayed the later ones for them
# (`get_records`); one answer holds this many at most.
GET_RECORDS = "get_records"
MAX_GAP_RECORDS = 64


class Link(Protocol):
    """What the node needs of the transport between homes (`CommunityLink` over MQTT)."""

    async def publish(self, kind: MessageKind, body: dict[str, Any]) -> str: ...
    async def send_to(self, node_id: str, body: dict[str, Any]) -> str: ...
    def on_message(self, kind: MessageKind, handler: MessageHandler) -> None: ...
    def on_peer_change(self, listener: Callable[[Any], Awaitable[None]]) -> None: ...
    def stats(self) -> LinkStats: ...


class LedgerNode:
    """Signs, submits, receives, syncs and seals for one home."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        link: Link,
        genesis: Genesis,
        key: KeyPair,
        meter_key: KeyPair | None,
        clock: Clock,
        sealer: bool,
        name: str = "",
    ) -> None:
        self.ledger = ledger
        self.link = link
        self.genesis = genesis
        self.key = key
        self.meter_key = meter_key
        self.account = key.account
        self.clock = clock
        self.sealer = sealer
        self.name = name
        self.sync = SyncNode(ledger, self.account)
        self.gate = SequenceGate(ledger.pending_seq)
        self.rejections: dict[str, int] = {}
        self.accepted: list[Callable[[Record], None]] = []
        self.received: list[Callable[[Record], Awaitable[None]]] = []
        link.on_message(MessageKind.RECORD, self.receive_record)
        link.on_message(MessageKind.BLOCK, self.receive_sync)
        link.on_message(MessageKind.SYNC, self.receive_sync)
        link.on_peer_change(self.peer_changed)

    # --- our records -----------------------------------------------------------------------

    def next_seq(self, key: KeyPair) -> int:
        """The next sequence number of `key`'s account, past the ledger and the pool."""
        account = key.account
        pooled = [r.seq for r in self.ledger.pool.values() if r.account == account]
        return max([self.ledger.state.account(account).seq, *pooled]) + 1

    async def issue(self, kind: str, key: KeyPair | None = None, **fields: Any) -> Record:
        """Sign a record of `kind` with our key (or `key`), check it against the ledger,
        then send it to the community. Raises `Refusal` when the ledger refuses it."""
        key = key or self.key
        body = {"kind": kind, "seq": self.next_seq(key), "time": self.clock.now_ms(), **fields}
        try:
            record = sign_record(key, self.ledger.community, body)
            self.ledger.submit(record)
        except Rejected as exc:
            raise Refusal.from_rejection(exc) from None
        await self._relay(record)
        return record

    async def issue_as_meter(self, kind: str, **fields: Any) -> Record:
        """Sign with the home's meter key (meter readings)."""
        if self.meter_key is None:
            raise Refusal("no_meter_key", "this home has no meter key", Why.CONFLICT)
        return await self.issue(kind, key=self.meter_key, **fields)

    async def submit_signed(self, wire: Any) -> Record:
        """Take a record someone else signed (e.g. a registrar's certification) and relay it."""
        try:
            record = self.ledger.submit(wire)
        except Rejected as exc:
            raise Refusal.from_rejection(exc) from None
        await self._relay(record)
        return record

    async def _relay(self, record: Record) -> None:
        await self.link.publish(MessageKind.RECORD, record.to_wire())
        self._accepted(record)

    def _accepted(self, record: Record) -> None:
        for listener in self.accepted:
            listener(record)

    # --- neighbours' records and blocks ------------------------------------------------------

    async def receive_record(self, message: InboundMessage) -> None:
        """A neighbour's record: checked (its signature first), then submitted, unless its
        signer's sequence has a gap before it: then it waits in the gate for the gap."""
        ledger = self.ledger
        try:
            record = parse_record(message.body, ledger.community)
            if record.id in ledger.pool:
                return
            record.verify(ledger.community, ledger.verifier)
        except Rejected as exc:
            self._refused(message.sender, exc)
            return
        now = self.clock.now_ms()
        waiting = self.gate.holding(record.account)
        for ready in self.gate.offer(record, now, message.sender):
            await self._take(message.sender, ready)
        await self.release_held(message.sender)
        if not waiting and self.gate.holding(record.account):
            await self.ask_for_gaps(record.account)

    async def ask_for_gaps(self, account: str | None = None) -> None:
        """Ask the relaying homes for the records held ones wait for (of `account`, or all)."""
        for peer, signer, first, gap_end in self.gate.gaps():
            if peer and (account is None or signer == account):
                last = min(gap_end, first + MAX_GAP_RECORDS - 1)
                body = {"type": GET_RECORDS, "account": signer, "first": first, "last": last}
                await self.link.send_to(peer, body)

    async def answer_gap(self, peer: str, body: dict[str, Any]) -> None:
        """Send `peer` the pooled records it asked for (a signer's sequences first..last)."""
        account, first, last = body.get("account"), body.get("first"), body.get("last")
        if not (isinstance(account, str) and type(first) is int and type(last) is int):
            self._refused(peer, Rejected(Reason.MALFORMED, "get_records: account, first, last"))
            return
        wanted = [
            r for r in self.ledger.pool.values() if r.account == account and first <= r.seq <= last
        ]
        for record in sorted(wanted, key=lambda r: r.seq)[:MAX_GAP_RECORDS]:
            await self.link.send_to(peer, self.sync.record_message(record.to_wire()))

    async def release_held(self, sender: str = "") -> None:
        """Submit the held records whose gap filled (or that waited long enough)."""
        while ready := self.gate.ready(self.clock.now_ms()):
            for record in ready:
                await self._take(sender, record)

    async def _take(self, sender: str, record: Record) -> None:
        try:
            self.ledger.submit(record)
        except Rejected as exc:
            self.gate.refused(record)
            self._refused(sender, exc)
            return
        self._accepted(record)
        for listener in self.received:
            await listener(record)

    def _refused(self, sender: str, exc: Rejected) -> None:
        if exc.reason is not Reason.DUPLICATE:
            self.rejections[exc.reason.value] = self.rejections.get(exc.reason.value, 0) + 1
            log.info("%s: record from %s refused: %s", self.name, sender[:10], exc)

    async def receive_sync(self, message: InboundMessage) -> None:
        if message.body.get("type") == GET_RECORDS:
            await self.answer_gap(message.sender, message.body)
            return
        await self._send(self.sync.handle(message.sender, message.body, self.clock.now_ms()))
        if len(self.gate):
            # A block may have filled a held record's gap.
            await self.release_held(message.sender)

    async def peer_changed(self, status: Any) -> None:
        if getattr(status, "online", False):
            await self._send(self.sync.request_headers(status.node_id, self.clock.now_ms()))

    async def sync_tick(self) -> None:
        """Ask peers for what we miss, answer what they asked (every `SYNC_INTERVAL_MS`);
        let held records go whose wait is over; and, when this home does not seal, drop
        the pooled records the chain refuses now (a sealer does so as it seals)."""
        await self._send(self.sync.tick(self.clock.now_ms()))
        await self.release_held()
        await self.ask_for_gaps()
        if not self.sealer and self.ledger.pool:
            self.ledger.prune_pool(self.clock.now_ms())

    async def _send(self, outgoing: list[Outgoing]) -> None:
        for peer, message in outgoing:
            if peer is None:
                await self.link.publish(MessageKind.BLOCK, message)
            else:
                await self.link.send_to(peer, message)

    # --- sealing -----------------------------------------------------------------------------

    async def seal(self) -> None:
        """Seal a block when it is our turn (proof of authority) or when we find one (work).

        An out-of-turn sealer waits three intervals, so it only steps in when the in-turn
        sealer is offline; empty blocks are sealed only as a slow heartbeat."""
        ledger = self.ledger
        head = ledger.head
        interval = self.genesis.consensus.block_interval_ms
        now = self.clock.now_ms()
        if not self.sealer or not ledger.can_seal(self.key):
            return
        wait = interval if ledger.in_turn(self.key) else 3 * interval
        if now < head.time + wait:
            return
        if not ledger.pool and now < head.time + HEARTBEAT_BLOCKS * interval:
            return
        if self.genesis.consensus.mode == "pow":
            block = await asyncio.to_thread(ledger.build_block, self.key, now, POW_ATTEMPTS)
        else:
            block = ledger.build_block(self.key, now)
        if block is None or block.prev != ledger.head.hash:
            return
        try:
            ledger.add_block(block)
        except Rejected as exc:
            log.warning("%s: own block refused: %s", self.name, exc)
            return
        await self.link.publish(MessageKind.BLOCK, self.sync.block_message(block))
        await self.link.publish(MessageKind.BLOCK, self.sync.head_message())

    # --- what the API reads ------------------------------------------------------------------

    def ledger_status(self) -> dict[str, Any]:
        """The ledger, sync and broker parts of `GET status`."""
        progress = self.sync.progress()
        head = self.ledger.head
        stats = self.link.stats()
        return {
            "ledger": {
                "height": head.height,
                "head": head.hash,
                "head_time": head.time,
                "synced": progress.synced,
                "sync_progress": round(progress.fraction, 4),
                "pool": len(self.ledger.pool),
                "sealer": self.sealer,
            },
            "broker": {
                "connected": stats.connected,
                "outbox_pending": stats.outbox_pending,
                "last_error": stats.last_error,
            },
            "peers": stats.peers_online,
            "rejected": {
                "transport": dict(stats.rejected),
                "records": dict(self.rejections),
                "sync": dict(self.sync.rejected),
            },
        }
