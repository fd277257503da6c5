"""The home as a node of the community's ledger: it signs and submits records, takes in
records and blocks from neighbours, keeps in sync, and seals blocks when it may.

Every record, ours or a neighbour's, is checked by the local ledger before anything else
sees it; ours then go out through the link's durable outbox. Listeners hear each record
the node accepted (`accepted`, at once) and each record a neighbour sent (`received`,
awaited, so a buyer can answer an offer before the next control cycle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from edge_controller.app.disk import LedgerDisk
from edge_controller.app.history import History
from edge_controller.app.ordering import SequenceGate
from edge_controller.devices import Clock
from edge_controller.ledger import (
    Genesis,
    HistorySettings,
    KeyPair,
    Ledger,
    Outgoing,
    Reason,
    Record,
    Rejected,
    StorageError,
    SyncNode,
    account_id,
    parse_record,
    sign_record,
)
from edge_controller.network import (
    InboundMessage,
    JsonObject,
    LinkStats,
    MessageHandler,
    MessageKind,
    RefusalLog,
    Validator,
)
from edge_controller.refusal import Refusal, Why

log = logging.getLogger(__name__)

SYNC_INTERVAL_MS = 2_000
# Without records, a sealer still seals now and then so auctions close and time moves on.
HEARTBEAT_BLOCKS = 6
# A sealer not first in line waits this many intervals more: it steps in, it does not race.
STEP_IN_BLOCKS = 2
# A proof-of-work sealer tries this many nonces per attempt, off the event loop.
POW_ATTEMPTS = 200_000
# A home missing a signer's records asks the home that relayed the later ones for them
# (`get_records`); one answer holds this many at most.
GET_RECORDS = "get_records"
MAX_GAP_RECORDS = 64

_PUBLIC_KEY = re.compile(r"[0-9a-f]{64}\Z")


def record_sender(kind: MessageKind, body: JsonObject) -> str | None:
    """The sender a message proves: a record's signer's account (the node id of a home is
    its key's account), so its envelope must claim it. Only records prove one; a record
    naming no valid signer proves none that any claim could match (an empty id)."""
    if kind is not MessageKind.RECORD:
        return None
    signer = body.get("signer")
    if type(signer) is not str or not _PUBLIC_KEY.match(signer):
        return ""
    return account_id(signer)


class Link(Protocol):
    """What the node needs of the transport between homes (`CommunityLink` over MQTT)."""

    async def publish(
        self,
        kind: MessageKind,
        body: dict[str, Any],
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> str: ...
    async def send_to(self, node_id: str, body: dict[str, Any]) -> str: ...
    def announce(self, body: dict[str, Any]) -> str: ...
    def on_message(self, kind: MessageKind, handler: MessageHandler) -> None: ...
    def set_validator(self, validator: Validator) -> None: ...
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
        message_limit: int | None = None,
        history: HistorySettings | None = None,
    ) -> None:
        """`message_limit`: the largest message body the link sends (None: unbounded);
        sync answers are paged to it and no block larger is adopted. `history`: how much of
        the chain the home keeps and how it joins (`ledger:` in edge.yaml)."""
        self.ledger = ledger
        self.link = link
        self.genesis = genesis
        self.key = key
        self.meter_key = meter_key
        self.account = key.account
        self.clock = clock
        # Whether this home may seal at all (edge.yaml `sealer`); it seals while its key is
        # in the sealer set in force too (`sealer`).
        self.willing = sealer
        self.name = name
        self._disk = LedgerDisk(ledger)
        # Signature workers run only while catching up (idle, they cost a Pi memory); one
        # core fewer than the machine has: the catch-up's own thread needs one of its own.
        workers = (os.cpu_count() or 1) - 1
        self.sync = SyncNode(
            ledger, self.account, message_limit=message_limit, catch_up_workers=workers
        )
        self.history = History(
            ledger, self.sync, history or HistorySettings(), clock.now_ms(), name
        )
        # The outbox's last write failure (the ledger's store keeps its own), and since when.
        self.outbox_failure: StorageError | None = None
        self.storage_since: int | None = None
        self.gate = SequenceGate(ledger.pending_seq, max_jump=genesis.consensus.sequence_jump_limit)
        self.rejections: dict[str, int] = {}
        self._refusal_log = RefusalLog(log)
        self.accepted: list[Callable[[Record], None]] = []
        self.received: list[Callable[[Record], Awaitable[None]]] = []
        link.set_validator(self.check_message)
        link.on_message(MessageKind.RECORD, self.receive_record)
        link.on_message(MessageKind.BLOCK, self.receive_sync)
        link.on_message(MessageKind.SYNC, self.receive_sync)
        link.on_peer_change(self.peer_changed)

    @property
    def sealer(self) -> bool:
        """Whether this home seals now: it may, and its key is in the set in force for the
        next block (rules 3: the registrar adds and removes sealers as homes join)."""
        return self.willing and self.ledger.is_sealer(self.key.public_hex)

    # --- our records -----------------------------------------------------------------------

    def next_seq(self, key: KeyPair) -> int:
        """The next sequence number of `key`'s account, past the ledger and the pool."""
        pooled = [r.seq for r in self.ledger.pool.values() if r.account == key.account]
        return max([self.ledger.state.account(key.account).seq, *pooled]) + 1

    async def issue(self, kind: str, key: KeyPair | None = None, **fields: Any) -> Record:
        """Sign a record of `kind` with our key (or `key`), check it against the ledger,
        then send it to the community. Raises `Refusal` when the ledger refuses it."""
        return await self.issue_fields(kind, fields, key)

    async def issue_fields(
        self, kind: str, fields: dict[str, Any], key: KeyPair | None = None
    ) -> Record:
        """`issue` with the body's fields as a mapping (a `sealer` record has a `key`)."""
        [record] = await self.issue_all([{"kind": kind, **fields}], key)
        return record

    async def issue_all(
        self, bodies: list[dict[str, Any]], key: KeyPair | None = None
    ) -> list[Record]:
        """Sign records of `bodies` (each with its `kind`) with `key` (ours by default) and
        consecutive sequence numbers, and send them once the ledger took them all: when it
        refuses one, none is kept (`Ledger.submit_all`) and `Refusal` says why. (When
        the outbox fails part-way, those sent stay sent and the rest are taken back.)"""
        key = key or self.key
        seq, now = self.next_seq(key), self.clock.now_ms()
        try:
            records = [
                sign_record(key, self.ledger.community, {**b, "seq": seq + i, "time": now})
                for i, b in enumerate(bodies)
            ]
            self.ledger.submit_all(records, own=True)
        except Rejected as exc:
            raise Refusal.from_rejection(exc) from None
        except StorageError as exc:
            raise self._storage_refusal(exc) from None
        for i, record in enumerate(records):
            try:
                await self._relay(record)
            except Refusal:
                for unsent in records[i + 1 :]:
                    with contextlib.suppress(StorageError):
                        self.ledger.withdraw(unsent.id)
                raise
        return records

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
        except StorageError as exc:
            raise self._storage_refusal(exc) from None
        await self._relay(record)
        return record

    async def durable(self) -> None:
        """Wait until what the ledger wrote is on disk (`LedgerDisk.durable`)."""
        await self._disk.durable()

    def close(self) -> None:
        """Stop the catch-up workers, the checkpoint thread and the disk thread."""
        self.sync.stop_workers()
        self.history.close()
        self._disk.close()

    async def _relay(self, record: Record) -> None:
        """Send a record the ledger pooled once both the ledger (`durable`) and the outbox
        have it on disk, the two fsyncs overlapping; when either fails, take it back out of
        the pool, so a refused action is never done after all."""
        try:
            await self.link.publish(MessageKind.RECORD, record.to_wire(), ready=self.durable)
        except StorageError as exc:
            with contextlib.suppress(StorageError):
                self.ledger.withdraw(record.id)
            raise self._storage_refusal(exc) from None
        except sqlite3.Error as exc:
            failure = outbox_failure(exc)
            if self.outbox_failure is None:
                log.warning("%s: %s", self.name, failure.message)
            self.outbox_failure = failure
            try:
                self.ledger.withdraw(record.id)
            except StorageError:
                log.warning("%s: record %s stays pooled on disk", self.name, record.id[:12])
            raise self._storage_refusal(failure) from None
        self.outbox_failure = None
        self._accepted(record)

    def _storage_refusal(self, exc: StorageError) -> Refusal:
        self.storage_since = self.storage_since or self.clock.now_ms()
        return Refusal(exc.code, exc.message, Why.STORAGE)

    def _accepted(self, record: Record) -> None:
        for listener in self.accepted:
            listener(record)

    # --- neighbours' records and blocks ------------------------------------------------------

    async def check_message(self, message: InboundMessage) -> str | None:
        """The link's validator: a sync message, or anything on the blocks topic, must be
        signed by the key its sender id derives from (records carry their own signatures;
        an unsigned block push is taken as a block only, see `SyncNode.handle`)."""
        if message.kind is MessageKind.RECORD:
            return None
        auth = message.auth
        if auth is None:
            unsigned_block = message.kind is MessageKind.BLOCK and (
                message.body.get("type") == "block"
            )
            return None if unsigned_block else "unsigned"
        if account_id(auth.key) != message.sender:
            return "wrong_signer"
        if not self.ledger.verifier.verify(auth.key, auth.sig, message.signed):
            return "bad_signature"
        return None

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
            self.ledger.submit(record, received=True)
        except StorageError:
            return  # the store logged it; the sealer of a block carries the record to us
        except Rejected as exc:
            self.gate.refused(record)
            self._refused(sender, exc)
            return
        self._accepted(record)
        for listener in self.received:
            await listener(record)

    def _refused(self, sender: str, exc: Rejected) -> None:
        """Count a neighbour's refused record; logged once per reason per interval."""
        if exc.reason is Reason.DUPLICATE:
            return
        self.rejections[exc.reason.value] = self.rejections.get(exc.reason.value, 0) + 1
        if self._refusal_log.refused(
            exc.reason.value,
            f"{self.name}: record from {sender[:10]} refused: {exc}",
            logging.INFO,
        ):
            loop = asyncio.get_running_loop()
            loop.call_later(self._refusal_log.interval_s, self._refusal_log.flush)

    async def receive_sync(self, message: InboundMessage) -> None:
        if message.body.get("type") == GET_RECORDS:
            await self.answer_gap(message.sender, message.body)
            return
        await self.history.checkpoint_ready(message.body)
        verified, now = message.auth is not None, self.clock.now_ms()
        replies = self.sync.handle(message.sender, message.body, now, verified)
        # A head is announced only once its blocks are on disk.
        with contextlib.suppress(StorageError):  # the status shows it; the store retries
            await self.durable()
        await self._send(replies)
        await self._report_equivocations()
        if len(self.gate):
            # A block may have filled a held record's gap.
            await self.release_held(message.sender)

    async def _report_equivocations(self) -> None:
        """Record the evidence of a sealer that signed two blocks at one height, so every
        node suspends it (any node may; the first record in a block counts)."""
        for evidence in self.ledger.take_evidence():
            fields: dict[str, Any] = dict(evidence)
            if self.genesis.consensus.min_fee:
                fields["fee"] = self.genesis.consensus.min_fee
            try:
                await self.issue("equivocation", **fields)
            except Refusal as exc:
                log.info("%s: equivocation evidence not recorded: %s", self.name, exc)

    async def peer_changed(self, status: Any) -> None:
        # A status is unsigned: only a member's coming online is worth a request.
        if getattr(status, "online", False) and self.sync.is_member(status.node_id):
            await self._send(self.sync.request_headers(status.node_id, self.clock.now_ms()))

    async def sync_tick(self) -> None:
        """Ask peers for what we miss, answer what they asked (every `SYNC_INTERVAL_MS`);
        let held records go whose wait is over; when this home does not seal, drop the
        pooled records the chain refuses now (a sealer does so as it seals); and after a
        storage failure, see whether the disk takes writes again."""
        with contextlib.suppress(StorageError):  # still failing: the status says so
            self.ledger.retry_storage()
        await self._send(self.sync.tick(self.clock.now_ms()))
        await self.release_held()
        await self.ask_for_gaps()
        if not self.sealer and self.ledger.pool:
            self.ledger.prune_pool(self.clock.now_ms())
        self.history.tick(self.clock.now_ms())

    async def _send(self, outgoing: list[Outgoing]) -> None:
        for peer, message in outgoing:
            if peer is None:
                self.link.announce(message)
            else:
                await self.link.send_to(peer, message)

    # --- sealing -----------------------------------------------------------------------------

    async def seal(self) -> None:
        """Seal a block when it is our turn (proof of authority) or when we find one (work).

        Records wait one interval after the head, an empty block (a heartbeat) six; a sealer
        not first in line two more, so it steps in only for an offline one (for heartbeats
        too, or the sealer whose loop ticks first would take every one of them)."""
        ledger = self.ledger
        head = ledger.head
        interval = self.genesis.consensus.block_interval_ms
        now = self.clock.now_ms()
        if not self.sealer or self.history.waiting() or not ledger.can_seal(self.key, now):
            return
        wait = (1 if ledger.pool else HEARTBEAT_BLOCKS) * interval
        if not ledger.first_in_line(self.key):
            wait += STEP_IN_BLOCKS * interval
        if now < head.time + wait:
            return
        if self.genesis.consensus.mode == "pow":
            block = await asyncio.to_thread(ledger.build_block, self.key, now, POW_ATTEMPTS)
        else:
            block = ledger.build_block(self.key, now)
        if block is None or block.prev != ledger.head.hash:
            return
        if not self.sync.block_fits(block):
            # Adopted, it would strand us on a fork no peer can receive or ask us for.
            log.warning(
                "%s: own block of %d bytes would not fit one message; not adopted",
                self.name,
                block.wire_size(),
            )
            return
        try:
            ledger.add_block(block)
        except Rejected as exc:
            log.warning("%s: own block refused: %s", self.name, exc)
            return
        except StorageError:
            return  # not sealed: the store logged why, the status shows it
        try:
            await self.durable()
        except StorageError:
            return  # peers ask for it by its head once the disk takes it
        try:
            await self.link.publish(MessageKind.BLOCK, self.sync.block_message(block))
        except sqlite3.Error as exc:
            # Sealed and kept: peers ask for it by its head, which still goes out.
            self.outbox_failure = outbox_failure(exc)
        else:
            self.outbox_failure = None
        self.link.announce(self.sync.head_message(self.clock.now_ms()))


def outbox_failure(exc: sqlite3.Error) -> StorageError:
    """The outbox's SQLite failure as a storage failure of the home."""
    full = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
    code = "insufficient_storage" if full else "storage_failed"
    return StorageError(code, f"the outbox could not store a message ({exc})")
