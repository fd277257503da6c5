"""CommunityLink: one node's MQTT connection to its community.

The app publishes records and blocks through the link; each is in the outbox on disk
before the call returns and leaves it after the broker's PUBACK. Sync messages and head
announcements are cheap to lose and asked again: they are signed with the node's key, sent
at once when connected (rate-limited per addressee) and never written to disk.
Inbound messages pass the defence (size, JSON, envelope, rate, duplicates, the app's
validator) before the app's handler sees them; every refusal is counted, and logged
once per reason per interval (`RefusalLog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import sqlite3
import ssl
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiomqtt

from edge_controller import __version__
from edge_controller.aio import cancel_and_wait
from edge_controller.network.defence import (
    Lanes,
    MessageRejectedError,
    RecentIds,
    RefusalLog,
    Rejection,
    SenderRateLimiter,
    TokenBucket,
    invalid_reason,
)
from edge_controller.network.envelope import (
    Envelope,
    EnvelopeAuth,
    JsonObject,
    NodeStatus,
    envelope_overhead,
    envelope_sender,
    parse_envelope,
    parse_json_object,
    parse_status,
    signed_bytes,
)
from edge_controller.network.outbox import Outbox, OutboxEntry
from edge_controller.network.settings import BrokerSettings, LinkLimits
from edge_controller.network.topics import BROADCAST_KINDS, CommunityTopics, MessageKind

log = logging.getLogger(__name__)
# What `publish` awaits beside the outbox write before a message may go out.
Readiness = Callable[[], Awaitable[None]]
# How many waiting messages a (re)connection loads from the outbox file at once.
MAX_RELOAD = 100_000


# Sync messages waiting in memory for the connection beyond this are dropped.
MAX_TRANSIENT_WAITING = 1_000


@dataclass(frozen=True)
class InboundMessage:
    """A record, block or sync message that passed the transport's checks.

    `auth` is the signature the envelope carried (None when unsigned), of `signed`."""

    kind: MessageKind
    message_id: str
    sender: str
    body: JsonObject
    auth: EnvelopeAuth | None = None
    signed: bytes = b""


class Signer(Protocol):
    """The node's key as the link needs it (a ledger `KeyPair` is one)."""

    @property
    def public_hex(self) -> str: ...
    def sign(self, message: bytes) -> bytes: ...


MessageHandler = Callable[[InboundMessage], Awaitable[None]]
# Returns None to accept the message, or the reason it is refused (e.g. "bad_signature").
Validator = Callable[[InboundMessage], Awaitable[str | None]]
# Returns the sender a message body proves (a record's signer's account), None when its
# kind proves none. A message claiming another sender is refused before it costs anything.
SenderBinder = Callable[[MessageKind, JsonObject], str | None]
PeerListener = Callable[[NodeStatus], Awaitable[None]]
# Whether the app knows a sender (e.g. an account of its ledger): known senders queue in
# lanes of their own, strangers share one lane per kind of message.
KnownSender = Callable[[str], bool]
ConnectionListener = Callable[[bool], Awaitable[None]]


@dataclass(frozen=True)
class LinkStats:
    """A snapshot of the link for the API and the dashboard."""

    connected: bool
    connections: int
    outbox_pending: int
    published: Counter[str]
    received: Counter[str]
    rejected: Counter[str]
    echoes: int
    # Why the last connection attempt or session ended, e.g. "Not authorized"; for the UI.
    last_error: str | None = None
    # The broker address in use (or tried next): "host:port".
    address: str = ""
    peers_online: list[str] = field(default_factory=list)
    # Sync messages not sent: no connection, or over the rate to their addressee.
    sync_dropped: int = 0


def _no_delay(client: aiomqtt.Client) -> None:
    """Send small packets at once: paho leaves Nagle's algorithm on, which with delayed
    ACKs holds a record or an acceptance back for up to 40 ms."""
    paho_client = getattr(client, "_client", None)  # aiomqtt keeps its paho client private
    sock = paho_client.socket() if paho_client is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def reconnect_delay(
    attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before reconnect ``attempt`` (0-based): exponential, capped, jittered.

    Half the delay is fixed and half random, so homes that lost the broker together do
    not all return in the same instant, yet none hammers it.
    """
    ceiling = min(max_s, initial_s * 2.0 ** min(attempt, 32))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


# CONNACK refusals of a login: MQTT 3.1.1's codes 4 and 5, as paho's reason codes 134 and 135.
AUTH_REFUSED = frozenset({4, 5, 134, 135})


def auth_refused(error: aiomqtt.MqttError) -> bool:
    """Whether the broker refused the connection for its username or password."""
    if not isinstance(error, aiomqtt.MqttCodeError):
        return False
    rc = error.rc
    return (rc if isinstance(rc, int) else getattr(rc, "value", None)) in AUTH_REFUSED


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CommunityLink:
    """The node's transport to the other homes of one community over MQTT."""

    def __init__(
        self,
        *,
        node_id: str,
        community_id: str,
        broker: BrokerSettings,
        outbox_path: Path,
        limits: LinkLimits | None = None,
        validator: Validator | None = None,
        binder: SenderBinder | None = None,
        known_sender: KnownSender | None = None,
        version: str = __version__,
        signer: Signer | None = None,
    ) -> None:
        self.node_id = node_id
        self.topics = CommunityTopics(community_id)
        self.topics.status(node_id)  # refuses a node id that cannot be a topic level
        self.broker = broker
        self.limits = limits or LinkLimits()
        self.version = version
        self._validator = validator
        self._binder = binder
        self._signer = signer
        self._known_sender = known_sender
        limits = self.limits
        self._pacer = TokenBucket(
            limits.publish_rate, limits.publish_burst, limits.publish_burst, time.monotonic()
        )
        self._lanes = Lanes(limits.lane_per_sender, limits.lane_strangers, limits.inbound_queue)
        self._inbound: deque[tuple[tuple[str, str], InboundMessage]] = deque()
        self._inbound_ready = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._mqtt_queue: asyncio.Queue[aiomqtt.Message] | None = None
        self._outbox = Outbox(outbox_path)
        self._outbox_open = False
        self._outbox_pending = 0
        self._outbox_wakeup = asyncio.Event()
        self._queue: deque[OutboxEntry] = deque()
        # Message ids being written to the outbox, not yet queued (see `_enqueue`).
        self._held: set[str] = set()
        # Sequence numbers of the queued messages that are not in the outbox file.
        self._transient: set[int] = set()
        self._transient_seq = 0
        self._sync_dropped = 0
        self._send_limiter = SenderRateLimiter(
            self.limits.sync_rate_per_peer, self.limits.sync_burst_per_peer
        )
        # All addressees together: invented ids cannot multiply the per-peer allowance.
        self._send_total = SenderRateLimiter(
            self.limits.sync_rate_total, self.limits.sync_burst_total
        )
        self._refusal_log = RefusalLog(log, self.limits.refusal_log_interval_s)
        self._removals: set[asyncio.Task[None]] = set()
        self._outbox_empty = asyncio.Event()
        self._handlers: dict[MessageKind, MessageHandler] = {}
        self._peer_listeners: list[PeerListener] = []
        self._connection_listeners: list[ConnectionListener] = []
        self._rate_limiter = SenderRateLimiter(
            self.limits.rate_per_second, self.limits.rate_burst, self.limits.max_tracked_senders
        )
        # A known home's backlog (queued by the broker while we were away) arrives at once:
        # its burst is as large as its lane, its steady rate the same.
        self._known_rate_limiter = SenderRateLimiter(
            self.limits.rate_per_second,
            self.limits.lane_per_sender,
            self.limits.max_tracked_senders,
        )
        self._recent_ids = RecentIds(self.limits.recent_ids)
        # Broadcasts sent in another sender's name (a record our meter or a registrar
        # signed), so their echo is known as ours.
        self._relayed_ids = RecentIds(self.limits.recent_ids)
        self._peers: dict[str, NodeStatus] = {}
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._connections = 0
        # When the broker last acknowledged a QoS 1 message of ours (monotonic seconds).
        self._last_ack = 0.0
        # Which of the broker's addresses the link uses now (`BrokerSettings.addresses`).
        self._address_index = 0
        self._password_index = 0  # into `broker.passwords`: the one that worked last
        self._task: asyncio.Task[None] | None = None
        self._published: Counter[str] = Counter()
        self._received: Counter[str] = Counter()
        self._echoes = 0
        self._last_error: str | None = None
        self.rejections: Counter[str] = Counter()
        """Refused inbound messages by reason (``Rejection`` values and ``invalid:<reason>``)."""

    # -- the app's side ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the outbox and start connecting; returns at once, even if the broker is down."""
        if self._task is not None:
            raise RuntimeError("the link is already started")
        self._outbox_pending = await self._outbox.open()
        self._outbox_open = True
        self._note_outbox_level()
        if self._outbox_pending:
            log.info("outbox holds %d unsent messages", self._outbox_pending)
        self._task = asyncio.create_task(self._run(), name=f"mqtt-link-{self.node_id}")
        self._worker = asyncio.create_task(self._work(), name=f"mqtt-inbound-{self.node_id}")

    async def stop(self) -> None:
        """Say goodbye (retained ``offline``), disconnect and close the outbox.

        Messages not yet acknowledged by the broker stay in the outbox for the next start.
        """
        task, self._task = self._task, None
        if task is None:
            return
        client = self._client
        if client is not None and self.connected:
            try:
                await client.publish(
                    self.topics.status(self.node_id),
                    self._status(online=False).encode(),
                    qos=1,
                    retain=True,
                    timeout=2.0,
                )
            except aiomqtt.MqttError as error:
                log.warning("could not publish offline status: %s", error)
        worker, self._worker = self._worker, None
        await cancel_and_wait(task, *([worker] if worker is not None else []))
        if self._removals:
            await asyncio.gather(*self._removals, return_exceptions=True)
        await self._outbox.close()
        self._outbox_open = False

    async def flush(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the broker to acknowledge what the outbox holds, if
        it is connected; whether the outbox is empty. What is left is sent at the next start."""
        if self._outbox_pending and self.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._outbox_empty.wait()
        return self._outbox_pending == 0

    async def publish(
        self, kind: MessageKind, body: JsonObject, ready: Readiness | None = None
    ) -> str:
        """Broadcast a record or block; returns its message id once it is durably queued.

        `ready`: awaited while the outbox writes the message (the two fsyncs overlap); the
        message goes out only once both are done. When `ready` raises, the message is
        taken back out of the outbox and never sent, and its error propagates.
        Blocks are signed, so a receiver knows which node pushed one."""
        if kind not in BROADCAST_KINDS:
            raise ValueError(f"{kind} messages are not broadcast; use send_to for sync")
        topic = self.topics.broadcast(kind)
        # A body that proves its sender goes out in that sender's name, as peers require.
        sender = (self._binder(kind, body) if self._binder else None) or self.node_id
        if sender == self.node_id:
            return await self._enqueue(topic, self._envelope(kind, topic, body), ready)
        # Relayed in its signer's name: only records are, and they carry their signatures.
        envelope = Envelope.wrap(kind, sender, body)
        self._relayed_ids.remember(envelope.message_id)
        return await self._enqueue(topic, envelope, ready)

    async def send_to(self, node_id: str, body: JsonObject) -> str:
        """Send a signed sync message to one node, now or not at all: it is never written to
        the outbox, and is dropped (and counted) without a connection or over the rate
        allowed to its addressee. Returns its message id."""
        topic = self.topics.sync(node_id)
        envelope = self._envelope(MessageKind.SYNC, topic, body)
        allowed = self._send_limiter.allow(node_id)[0] and self._send_total.allow("")[0]
        return self._send_transient(topic, envelope, allowed)

    def announce(self, body: JsonObject) -> str:
        """Broadcast a signed message on the blocks topic (a head) the way `send_to` sends."""
        topic = self.topics.blocks
        return self._send_transient(topic, self._envelope(MessageKind.BLOCK, topic, body), True)

    def set_validator(self, validator: Validator) -> None:
        """Ask `validator` about every inbound message before its handler sees it."""
        self._validator = validator

    def on_message(self, kind: MessageKind, handler: MessageHandler) -> None:
        """Hand accepted messages of ``kind`` to ``handler`` (one handler per kind)."""
        if kind is MessageKind.STATUS:
            raise ValueError("node status arrives through on_peer_change")
        self._handlers[kind] = handler

    def on_peer_change(self, listener: PeerListener) -> None:
        """Call ``listener`` whenever another node comes online or goes offline."""
        self._peer_listeners.append(listener)

    def on_connection_change(self, listener: ConnectionListener) -> None:
        """Call ``listener(True)`` when connected to the broker, ``listener(False)`` when not."""
        self._connection_listeners.append(listener)

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up right now."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Wait until the broker connection is up (bound it with ``asyncio.timeout``)."""
        await self._connected.wait()

    async def wait_outbox_empty(self) -> None:
        """Wait until the broker acknowledged everything sent so far, e.g. before a planned stop.

        Bound it with ``asyncio.timeout``: while the broker is down this waits.
        """
        await self._outbox_empty.wait()

    def peers(self) -> dict[str, NodeStatus]:
        """The last known status of every other node, online or not."""
        return dict(self._peers)

    def online_peers(self) -> list[str]:
        """Ids of the other nodes whose retained status says online."""
        return sorted(node for node, status in self._peers.items() if status.online)

    def max_body_bytes(self) -> int:
        """The largest message body this link can send: the message limit less the envelope."""
        return self.limits.max_message_bytes - envelope_overhead(self.node_id)

    def stats(self) -> LinkStats:
        """Counters of what was sent, received and refused, and what waits in the outbox."""
        return LinkStats(
            connected=self.connected,
            connections=self._connections,
            outbox_pending=self._outbox_pending,
            published=Counter(self._published),
            received=Counter(self._received),
            rejected=Counter(self.rejections),
            echoes=self._echoes,
            last_error=self._last_error,
            address=f"{self._address[0]}:{self._address[1]}",
            peers_online=self.online_peers(),
            sync_dropped=self._sync_dropped,
        )

    # -- outbound -----------------------------------------------------------------------

    def _envelope(self, kind: MessageKind, topic: str, body: JsonObject) -> Envelope:
        envelope = Envelope.wrap(kind, self.node_id, body)
        if self._signer is None or kind is MessageKind.RECORD:
            # Records carry their signers' signatures already.
            return envelope
        signature = self._signer.sign(signed_bytes(topic, self.node_id, envelope.message_id))
        auth = EnvelopeAuth(self._signer.public_hex, signature)
        return Envelope(kind, envelope.message_id, self.node_id, body, auth)

    def _send_transient(self, topic: str, envelope: Envelope, allowed: bool) -> str:
        if not (allowed and self.connected and len(self._transient) < MAX_TRANSIENT_WAITING):
            self._sync_dropped += 1
            return envelope.message_id
        payload = envelope.encode()
        if len(payload) > self.limits.max_message_bytes:
            raise ValueError(f"message of {len(payload)} bytes exceeds the limit")
        # Negative numbers never meet the outbox's; they keep their place in the queue.
        self._transient_seq -= 1
        self._transient.add(self._transient_seq)
        self._queue.append(OutboxEntry(self._transient_seq, topic, envelope.message_id, payload))
        self._outbox_wakeup.set()
        return envelope.message_id

    async def _enqueue(self, topic: str, envelope: Envelope, ready: Readiness | None) -> str:
        if not self._outbox_open:
            raise RuntimeError("start the link before sending")
        payload = envelope.encode()
        if len(payload) > self.limits.max_message_bytes:
            raise ValueError(
                f"message of {len(payload)} bytes exceeds {self.limits.max_message_bytes}"
                " and would be refused by every peer"
            )
        message_id = envelope.message_id
        # In the file before it is queued here: a reconnection's reload must not send it
        # (it would go twice), nor before `ready`.
        self._held.add(message_id)
        adding = asyncio.ensure_future(self._outbox.add(topic, message_id, payload))
        release = True
        try:
            if ready is not None:
                try:
                    await ready()
                except Exception:
                    # Not ready: the message must not go out, now or after a restart.
                    release = await self._take_back(adding)
                    raise
            seq = await adding
        finally:
            if release:
                self._held.discard(message_id)
        if seq is not None:
            self._outbox_pending += 1
            self._note_outbox_level()
            # Sent from memory: the drain loop need not read back what was just written.
            self._queue.append(OutboxEntry(seq, topic, message_id, payload))
        self._outbox_wakeup.set()
        return message_id

    async def _take_back(self, adding: Awaitable[int | None]) -> bool:
        """Delete a message written to the outbox that must not go out; False when it
        stays in the file (the disk is failing): it is then held, never sent this run."""
        try:
            added = await adding
        except sqlite3.Error:
            return True  # never stored
        try:
            if added is not None:
                await self._outbox.withdraw(added)
        except sqlite3.Error as exc:
            log.warning("outbox: a message not ready stays in the file: %s", exc)
            return False
        return True

    def _note_outbox_level(self) -> None:
        if self._outbox_pending == 0:
            self._outbox_empty.set()
        else:
            self._outbox_empty.clear()

    def _drop_transient(self) -> None:
        """Forget the sync messages a lost connection left unsent: they are asked again."""
        self._sync_dropped += len(self._transient)
        self._transient.clear()
        self._queue = deque(entry for entry in self._queue if entry.seq > 0)

    async def _drain_outbox(self, client: aiomqtt.Client) -> None:
        # After a (re)connection the file is the truth: messages of a batch that failed are
        # still in it. Merged with what was queued meanwhile, in outbox order.
        stored = await self._outbox.pending(MAX_RELOAD)
        reloaded = [entry for entry in stored if entry.message_id not in self._held]
        merged = {entry.seq: entry for entry in [*reloaded, *self._queue] if entry.seq > 0}
        # Sync messages queued since this connection came up (answers to the retained
        # statuses, say) go first; those of the lost connection went with it.
        fresh = [entry for entry in self._queue if entry.seq < 0]
        self._queue = deque([*fresh, *(merged[seq] for seq in sorted(merged))])
        while True:
            await self._outbox_wakeup.wait()
            # Cleared before taking, so a message added meanwhile wakes us again.
            self._outbox_wakeup.clear()
            while self._queue:
                wanted = min(self.limits.outbox_batch, len(self._queue))
                size = self._pacer.take_up_to(wanted, time.monotonic())
                if size == 0:
                    # Paced below peers' per-sender limit: a burst is never rate limited.
                    await asyncio.sleep(self._pacer.wait_s())
                    continue
                batch = [self._queue.popleft() for _ in range(size)]
                await self._publish_batch(client, batch)

    async def _publish_batch(self, client: aiomqtt.Client, batch: list[OutboxEntry]) -> None:
        # paho writes the packets in call order, so the batch goes out in outbox order.
        # Sync messages go at QoS 0: the broker keeps none for an absent addressee.
        results = await asyncio.gather(
            *(
                client.publish(
                    entry.topic,
                    entry.payload,
                    qos=0 if entry.seq < 0 else 1,
                    timeout=self.limits.publish_timeout_s,
                )
                for entry in batch
            ),
            return_exceptions=True,
        )
        for entry in batch:
            self._transient.discard(entry.seq)
        sent = [entry for entry, result in zip(batch, results, strict=True) if result is None]
        acknowledged = [entry for entry in sent if entry.seq > 0]
        # Forgotten in the background: the next batch need not wait for this fsync. Should
        # the process die first, the message is sent again (receivers drop duplicates).
        removal = asyncio.create_task(self._outbox.remove([entry.seq for entry in acknowledged]))
        self._removals.add(removal)
        removal.add_done_callback(self._removals.discard)
        self._outbox_pending -= len(acknowledged)
        if acknowledged:
            self._last_ack = time.monotonic()
        self._note_outbox_level()
        for entry in sent:
            address = self.topics.parse(entry.topic)
            self._published[address.kind if address else "other"] += 1
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- connection ---------------------------------------------------------------------

    async def _run(self) -> None:
        # A lost or refused address is followed at once by the next one; the pause grows
        # only once every address of the broker was tried and none kept a session.
        attempt = 0
        tried = 0
        while True:
            connections_before = self._connections
            host, port = self._address
            try:
                await self._connect_and_serve()
            except aiomqtt.MqttError as error:
                self._last_error = str(error)
                if auth_refused(error) and self._next_password():
                    log.info("MQTT %s:%d refused a password; trying the next one", host, port)
                    continue
                log.warning("MQTT %s:%d: %s", host, port, error)
            except Exception as error:
                # A bug here must not end the node's networking for good: log and reconnect.
                self._last_error = repr(error)
                log.exception("MQTT link failed unexpectedly; reconnecting")
            finally:
                await self._set_connected(False)
                self._drop_transient()
            if self._connections != connections_before:
                attempt, tried = 0, 0
            addresses = self.broker.addresses
            self._address_index = (self._address_index + 1) % len(addresses)
            tried += 1
            if tried < len(addresses):
                delay = reconnect_delay(
                    0, self.limits.reconnect_initial_s, self.limits.reconnect_initial_s
                )
            else:
                delay = reconnect_delay(
                    attempt, self.limits.reconnect_initial_s, self.limits.reconnect_max_s
                )
                attempt += 1
                tried = 0
            host, port = self._address
            log.info("reconnecting to %s:%d in %.1f s", host, port, delay)
            await asyncio.sleep(delay)

    @property
    def _address(self) -> tuple[str, int]:
        return self.broker.addresses[self._address_index]

    def _next_password(self) -> bool:
        """Take the broker settings' next password; False once each was refused in turn
        (the first is taken again, after the usual pause)."""
        passwords = self.broker.passwords
        self._password_index = (self._password_index + 1) % len(passwords)
        return self._password_index != 0

    async def _connect_and_serve(self) -> None:
        # One time for the session's will and its online status, so a peer can tell this
        # session's will apart from a stale one of an earlier session (see _accept_status).
        session_ms = _now_ms()
        client = self._new_client(session_ms)
        async with client:
            self._client = client
            _no_delay(client)
            try:
                # Subscribed before saying online: peers answer "online" with sync requests,
                # sent once at QoS 0, which the broker drops for a topic nobody holds yet.
                await client.subscribe(
                    [(topic, 1) for topic in self.topics.subscriptions(self.node_id)]
                )
                await client.publish(
                    self.topics.status(self.node_id),
                    NodeStatus(self.node_id, True, self.version, session_ms).encode(),
                    qos=1,
                    retain=True,
                )
                self._connections += 1
                await self._set_connected(True)
                log.info("connected to %s:%d", *self._address)
                self._outbox_wakeup.set()
                self._last_ack = time.monotonic()
                await _first_failure(
                    self._read(client), self._drain_outbox(client), self._probe(client)
                )
            finally:
                self._client = None

    async def _probe(self, client: aiomqtt.Client) -> None:
        """Ends with an error when the broker stops acknowledging: a quiet connection sends
        an empty QoS 1 message to its own inbox now and then and must get its PUBACK."""
        interval = self.limits.probe_interval_s
        while True:
            await asyncio.sleep(max(0.0, self._last_ack + interval - time.monotonic()))
            if time.monotonic() - self._last_ack < interval:
                continue
            await client.publish(
                self.topics.sync(self.node_id), b"", qos=1, timeout=self.limits.publish_timeout_s
            )
            self._last_ack = time.monotonic()

    def _new_client(self, session_ms: int) -> aiomqtt.Client:
        broker = self.broker
        tls = None
        if broker.tls_ca_file is not None:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(broker.tls_ca_file),
                certfile=str(broker.tls_cert_file) if broker.tls_cert_file else None,
                keyfile=str(broker.tls_key_file) if broker.tls_key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        rejections = self.rejections
        link = self

        class CountingQueue(asyncio.Queue[aiomqtt.Message]):
            """aiomqtt drops a message when its queue is full; count it so it is not silent."""

            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(maxsize)
                link._mqtt_queue = self

            def put_nowait(self, item: aiomqtt.Message) -> None:
                if self.full():
                    rejections[Rejection.INBOUND_QUEUE_FULL] += 1
                super().put_nowait(item)

        host, port = self._address
        client = aiomqtt.Client(
            host,
            port,
            # 3.1.1, the version NATS's MQTT listener speaks too (it refuses MQTT 5).
            protocol=aiomqtt.ProtocolVersion.V311,
            username=broker.username,
            password=broker.passwords[self._password_index],
            identifier=broker.client_id or f"energy-p2p-{self.node_id}",
            # A persistent session: the broker keeps our subscriptions and queues QoS 1
            # messages for us while we are away.
            clean_session=False,
            will=aiomqtt.Will(
                self.topics.status(self.node_id),
                NodeStatus(self.node_id, False, self.version, session_ms).encode(),
                qos=1,
                retain=True,
            ),
            keepalive=broker.keepalive_s,
            timeout=broker.connect_timeout_s,
            tls_params=tls,
            queue_type=CountingQueue,
            max_queued_incoming_messages=self.limits.inbound_queue,
            max_inflight_messages=self.limits.outbox_batch,
        )
        # A full outbox batch is expected to be in flight; aiomqtt would warn above 10.
        client.pending_calls_threshold = self.limits.outbox_batch + 8
        return client

    def _status(self, *, online: bool) -> NodeStatus:
        return NodeStatus(self.node_id, online, self.version, _now_ms())

    async def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        if connected:
            self._connected.set()
        else:
            self._connected.clear()
        for listener in self._connection_listeners:
            try:
                await listener(connected)
            except Exception:
                log.exception("connection listener failed")

    # -- inbound ------------------------------------------------------------------------

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            await self._receive(str(message.topic), message.payload)
            # aiomqtt hands out one message per turn of the event loop, while the client
            # reads many per turn: the rest are sorted now, or a flood fills its queue.
            queue = self._mqtt_queue
            while queue is not None and not queue.empty():
                waiting = queue.get_nowait()
                await self._receive(str(waiting.topic), waiting.payload)

    async def _receive(self, topic: str, payload: bytes) -> None:
        try:
            await self._accept(topic, payload)
        except MessageRejectedError as rejected:
            self._count_rejection(rejected.reason, rejected.detail, topic)
        except Exception as error:
            # A bug met by one message must not drop the connection for everyone else.
            log.exception("unexpected error on a message on %s", topic)
            self._count_rejection(Rejection.INTERNAL_ERROR, repr(error), topic)

    def _count_rejection(
        self, reason: str, detail: str, topic: str, level: int = logging.WARNING
    ) -> None:
        self.rejections[reason] += 1
        if level < logging.INFO:
            log.log(level, "refused message on %s: %s (%s)", topic, reason, detail)
            return
        message = f"refused message on {topic}: {reason} ({detail})"
        if self._refusal_log.refused(reason, message, level):
            asyncio.get_running_loop().call_later(
                self.limits.refusal_log_interval_s, self._refusal_log.flush
            )

    async def _accept(self, topic: str, payload: bytes) -> None:
        address = self.topics.parse(topic)
        if address is None:
            raise MessageRejectedError(Rejection.UNKNOWN_TOPIC, "not a topic of this community")
        if address.kind is MessageKind.STATUS and address.node_id is not None:
            await self._accept_status(address.node_id, topic, payload)
            return
        if not payload and address.node_id == self.node_id:
            # Our own liveness probe (`_probe`) back through our inbox: nothing to hand on.
            return
        document = parse_json_object(payload, self.limits.max_message_bytes)
        sender = envelope_sender(document)
        claimed_id = document.get("id")
        if address.kind in BROADCAST_KINDS and (
            sender == self.node_id
            or (isinstance(claimed_id, str) and claimed_id in self._relayed_ids)
        ):
            # The broker echoes our own broadcasts back (MQTT 3.1.1 has no "no local").
            self._echoes += 1
            return
        if not self._bound(address.kind, sender, document, topic):
            return
        known = self._known_sender is not None and self._known_sender(sender)
        stranger = self._known_sender is not None and not known
        if not self._within_rate(sender, topic, known=known):
            return
        lane = (str(address.kind), "" if stranger else sender)
        # Checked before the costlier envelope checks, so a flood is shed cheaply.
        full = self._lanes.refusal(lane, stranger)
        if full is not None:
            self._count_rejection(full, f"{address.kind} from {sender}", topic, logging.DEBUG)
            return
        envelope = parse_envelope(document, address.kind)
        # Sync messages are requests and answers the app matches itself; a repeated
        # request is a legitimate retry, so only broadcasts are deduplicated.
        deduplicate = address.kind in BROADCAST_KINDS
        if deduplicate and envelope.message_id in self._recent_ids:
            self._count_rejection(
                Rejection.DUPLICATE, envelope.message_id[:16], topic, logging.DEBUG
            )
            return
        if address.kind not in self._handlers:
            raise MessageRejectedError(
                Rejection.NO_HANDLER, f"nothing handles {address.kind} messages"
            )
        self._lanes.enter(lane)
        if deduplicate:
            # Queued counts as seen: a redelivery meanwhile is not queued twice.
            self._recent_ids.remember(envelope.message_id)
        message = InboundMessage(
            address.kind,
            envelope.message_id,
            sender,
            envelope.body,
            envelope.auth,
            signed_bytes(topic, sender, envelope.message_id),
        )
        self._inbound.append((lane, message))
        self._inbound_ready.set()

    async def _work(self) -> None:
        """Hand queued messages to the app in arrival order, one at a time, letting the
        reader run between them so the broker's messages are sorted as they come."""
        while True:
            await self._inbound_ready.wait()
            self._inbound_ready.clear()
            while self._inbound:
                lane, message = self._inbound.popleft()
                topic = f"{message.kind} from {message.sender}"
                try:
                    await self._handle(message)
                except MessageRejectedError as rejected:
                    self._recent_ids.forget(message.message_id)
                    self._count_rejection(rejected.reason, rejected.detail, topic)
                except Exception as error:
                    self._recent_ids.forget(message.message_id)
                    log.exception("unexpected error on %s", topic)
                    self._count_rejection(Rejection.INTERNAL_ERROR, repr(error), topic)
                finally:
                    self._lanes.leave(lane)
                await asyncio.sleep(0)

    async def _handle(self, message: InboundMessage) -> None:
        handler = self._handlers[message.kind]
        if self._validator is not None:
            try:
                refusal = await self._validator(message)
            except Exception:
                log.exception("validator failed on message %s", message.message_id)
                raise MessageRejectedError(
                    Rejection.VALIDATOR_ERROR, "the validator raised"
                ) from None
            if refusal is not None:
                raise MessageRejectedError(
                    invalid_reason(refusal),
                    f"from {message.sender}, id {message.message_id[:16]}",
                )
        try:
            await handler(message)
        except Exception:
            log.exception("handler of %s messages failed on %s", message.kind, message.message_id)
            raise MessageRejectedError(Rejection.HANDLER_ERROR, "the handler raised") from None
        self._received[message.kind] += 1

    async def _accept_status(self, node_id: str, topic: str, payload: bytes) -> None:
        if not payload:
            # An empty retained message clears a node's status: it left the community.
            forgotten = self._peers.pop(node_id, None)
            if forgotten is not None and forgotten.online:
                await self._notify_peer(NodeStatus(node_id, False, forgotten.version, _now_ms()))
            return
        document = parse_json_object(payload, self.limits.max_message_bytes)
        if not self._within_rate(node_id, topic):
            return
        status = parse_status(document, node_id)
        if node_id == self.node_id:
            return
        previous = self._peers.get(node_id)
        if previous is not None and status.time_ms < previous.time_ms:
            # A persistent session can deliver a queued will of an earlier session after
            # the retained online status of the current one; older news is not news.
            log.debug("stale status of %s ignored", node_id)
            return
        self._peers[node_id] = status
        if previous is None or previous.online != status.online:
            await self._notify_peer(status)

    def _bound(self, kind: MessageKind, sender: str, document: JsonObject, topic: str) -> bool:
        """Whether a message claims the sender its body proves; a mismatch is counted and
        refused, so the rate limit counts verified senders and a rotating id buys nothing."""
        body = document.get("body")
        if self._binder is None or not isinstance(body, dict):
            return True
        proven = self._binder(kind, body)
        if proven is not None and proven != sender:
            # Counted, not logged at warning level: a flood must not write a line a message.
            detail = f"claims {sender[:24]!r}, signed by {proven[:24]!r}"
            self._count_rejection(Rejection.SENDER_MISMATCH, detail, topic, logging.DEBUG)
            return False
        return True

    def _within_rate(self, sender: str, topic: str, known: bool = False) -> bool:
        limiter = self._known_rate_limiter if known else self._rate_limiter
        allowed, _ = limiter.allow(sender)
        if not allowed:
            self._count_rejection(Rejection.RATE_LIMITED, f"sender {sender}", topic)
        return allowed

    async def _notify_peer(self, status: NodeStatus) -> None:
        log.info("peer %s is %s", status.node_id, "online" if status.online else "offline")
        for listener in self._peer_listeners:
            try:
                await listener(status)
            except Exception:
                log.exception("peer listener failed")


async def _first_failure(*jobs: Awaitable[None]) -> None:
    """Run jobs together until one ends; cancel the rest and re-raise its error."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # The one that ended re-raises below; only the others are stopped here.
        await cancel_and_wait(*(task for task in tasks if not task.done()))
    for task in done:
        task.result()
