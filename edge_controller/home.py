"""One home's edge controller: devices, market and ledger wired together in one asyncio process.

`Home` is the app of the architecture picture. Devices report telemetry; every control
cycle the market decides what to offer and what to buy; decisions become signed records
that go into the local ledger (which says at once whether they are valid) and out to the
community through the durable outbox; blocks and sync messages from other homes go into
the ledger through the sync protocol. The API calls the public methods below and nothing
else; the WebSocket hears `EventBus` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_controller import __version__
from edge_controller.aio import cancel_and_wait
from edge_controller.config import DeviceConfig, HomeConfig, UsbConfig
from edge_controller.delivery import Delivery
from edge_controller.devices import (
    Clock,
    DeviceCapabilities,
    FuelCellState,
    MqttDevice,
    SystemClock,
    capabilities_of,
    serve_on_broker,
)
from edge_controller.ledger import Block, Genesis, KeyPair, Ledger, Reason, Record, Rejected
from edge_controller.ledger.records import sign_record
from edge_controller.ledger.rules import energy_of, offer_of, power_holds
from edge_controller.ledger.state import Offer as LedgerOffer
from edge_controller.ledger.sync import Outgoing, SyncNode
from edge_controller.market import (
    Accept,
    AuctionTerms,
    AutoSeller,
    BatteryReading,
    Counter,
    EnergyRequest,
    FuelCellReading,
    MarketConditions,
    MarketPolicy,
    MarketSnapshot,
    Offer,
    OfferIntent,
    PowerHold,
    PublishOffer,
    PvReading,
    Reading,
    Reject,
    SellerStanding,
    ValidationError,
    WithdrawOffer,
    confirms_counter,
    evaluate_offer,
)
from edge_controller.network import BrokerSettings, CommunityLink, InboundMessage, MessageKind
from edge_controller.refusal import Refusal, Why
from edge_controller.usb.sessions import UsbCharging, open_hardware
from edge_controller.usb.store import UsbStore
from edge_controller.views import (
    block_view,
    offer_view,
    resource_view,
    trade_view,
    wallet_view,
)

log = logging.getLogger(__name__)

API_VERSION = 1
SYNC_INTERVAL_MS = 2_000
# Without records, a sealer still seals now and then so auctions close and time moves on.
HEARTBEAT_BLOCKS = 6
MARKET_WINDOW_MS = 24 * 3_600_000


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


@dataclass
class HomeDevice:
    """A configured device and the capabilities its profile gives it."""

    config: DeviceConfig
    device: MqttDevice
    capabilities: DeviceCapabilities


def load_or_create_key(path: Path) -> KeyPair:
    """The key at `path`, generated (mode 0600) on first start."""
    if path.exists():
        return KeyPair.load(path)
    key = KeyPair.generate()
    key.save(path)
    log.info("created a new key %s (account %s)", path, key.account)
    return key


def load_or_create_token(path: Path) -> str:
    """The API bearer token at `path`, generated on first start (32 random bytes)."""
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


class Home:
    """The edge controller of one home."""

    def __init__(
        self,
        *,
        name: str,
        data_dir: Path,
        genesis: Genesis,
        node_key: KeyPair,
        community_broker: BrokerSettings,
        meter_key: KeyPair | None = None,
        device_broker: BrokerSettings | None = None,
        devices: tuple[DeviceConfig, ...] = (),
        policy: MarketPolicy | None = None,
        clock: Clock | None = None,
        sealer: bool | None = None,
        control_interval_ms: int = 2_000,
        settlement_period_ms: int = 300_000,
        usb: UsbConfig | None = None,
        usb_backend: Any = None,
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.genesis = genesis
        self.key = node_key
        self.meter_key = meter_key
        self.account = node_key.account
        self.clock = clock or SystemClock()
        self.ledger = Ledger.open(data_dir / "ledger.sqlite3", genesis, clock=self.clock.now_ms)
        self.sync = SyncNode(self.ledger, self.account)
        self.link = CommunityLink(
            node_id=self.account,
            community_id=genesis.community_id,
            broker=community_broker,
            outbox_path=data_dir / "outbox.sqlite3",
        )
        self.device_broker = device_broker or community_broker
        self.devices = [
            HomeDevice(c, d, capabilities_of(d))
            for c in devices
            for d in [MqttDevice(c.id, c.profile, self.clock, stale_after_ms=c.stale_after_ms)]
        ]
        self.policy = policy or MarketPolicy()
        self.seller = AutoSeller(self.policy.sell, account=self.account)
        consensus = genesis.consensus
        in_genesis = consensus.mode == "pow" or node_key.public_hex in consensus.sealers
        self.sealer = in_genesis if sealer is None else sealer and in_genesis
        self.control_interval_ms = control_interval_ms
        self.events = EventBus()
        self.delivery = Delivery(
            account=self.account,
            meter_public=meter_key.public_hex if meter_key else "",
            period_ms=settlement_period_ms,
            issue=self.issue,
            issue_as_meter=self._issue_as_meter,
        )
        # Prepaid cut-off: fired once when our balance reaches zero, once when it recovers.
        self.cut_off = False
        self.cutoff_hooks: list[Callable[[bool], None]] = []
        self.rejections: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._evaluated: set[str] = set()
        self._cancelled: set[str] = set()
        self._automatic: set[str] = set()
        self._last_available: dict[str, int] = {}
        self.usb_backend = usb_backend
        self.usb = self._usb_charging(usb) if usb is not None else None
        self.ledger.events.connected.append(self._on_block_connected)
        self.ledger.events.dropped.append(self._on_record_dropped)
        self.link.on_message(MessageKind.RECORD, self._on_record_message)
        self.link.on_message(MessageKind.BLOCK, self._on_sync_message)
        self.link.on_message(MessageKind.SYNC, self._on_sync_message)
        self.link.on_peer_change(self._on_peer_change)

    @classmethod
    def from_config(
        cls, config: HomeConfig, clock: Clock | None = None, usb_backend: Any = None
    ) -> Home:
        """A home from its checked configuration; creates keys on first start. `usb_backend`
        is the pyusb backend its USB hub and meter are found on (libusb when None)."""
        return cls(
            name=config.name,
            data_dir=config.data_dir,
            genesis=Genesis.load(config.genesis),
            node_key=load_or_create_key(config.path(config.node_key)),
            meter_key=load_or_create_key(config.path(config.meter_key)),
            community_broker=config.community_broker,
            device_broker=config.device_broker,
            devices=config.devices,
            policy=config.policy,
            clock=clock,
            sealer=config.sealer,
            control_interval_ms=config.control_interval_ms,
            settlement_period_ms=config.settlement_period_ms,
            usb=config.usb,
            usb_backend=usb_backend,
        )

    def _usb_charging(self, config: UsbConfig) -> UsbCharging:
        """USB-PD charging on the configured hub and meter, found on `usb_backend`."""
        # A backend handed in (not libusb) runs on this home's clock, and so do its meters.
        opener = config.opener(
            self.usb_backend, self.clock if self.usb_backend is not None else None
        )
        return UsbCharging(
            settings=config.settings,
            hardware=open_hardware(opener),
            store=UsbStore(self.data_dir / "usb.sqlite3"),
            wallet_dir=self.data_dir / "usb-wallets",
            ledger=self.ledger,
            issue=self.issue,
            meters_signer=self.delivery,
            publish=self.events.publish,
            clock=self.clock,
            seller=self.account,
            meter_public=self.meter_key.public_hex if self.meter_key else "",
        )

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and start the control, sealing and sync loops (returns at once)."""
        await self.link.start()
        self._check_prepaid(self.now)
        self._spawn(self._loop(self.control_interval_ms, self.control_cycle), "control")
        self._spawn(self._loop(SYNC_INTERVAL_MS, self._sync_tick), "sync")
        if self.sealer:
            self._spawn(self._loop(250, self._maybe_seal), "seal")
        if self.usb is not None:
            await self.usb.start()
        if self.devices:
            broker = self.device_broker
            self._spawn(
                serve_on_broker(
                    broker.host,
                    broker.port,
                    [d.device for d in self.devices],
                    username=broker.username,
                    password=broker.password,
                ),
                "devices",
            )

    async def stop(self) -> None:
        """Stop the loops, say offline to the community and close the ledger."""
        if self.usb is not None:
            await self.usb.stop()
            self.usb.store.close()
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()
        await self.link.stop()
        self.ledger.close()

    def _spawn(self, coroutine: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.ensure_future(coroutine))
        self._tasks[-1].set_name(f"{self.name}-{name}")

    async def _loop(self, interval_ms: int, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await step()
            except Exception:
                log.exception("%s: %s failed; continuing", self.name, step.__name__)
            await asyncio.sleep(interval_ms / 1000)

    @property
    def now(self) -> int:
        return self.clock.now_ms()

    # --- signing and sending records ------------------------------------------------------

    def _next_seq(self, key: KeyPair) -> int:
        account = key.account
        pooled = [r.seq for r in self.ledger.pool.values() if r.account == account]
        return max([self.ledger.state.account(account).seq, *pooled]) + 1

    async def issue(self, kind: str, key: KeyPair | None = None, **fields: Any) -> Record:
        """Sign a record of `kind` with our key (or `key`), check it against the ledger,
        then send it to the community. Raises `Refusal` when the ledger refuses it."""
        key = key or self.key
        body = {"kind": kind, "seq": self._next_seq(key), "time": self.now, **fields}
        try:
            record = sign_record(key, self.ledger.community, body)
            self.ledger.submit(record)
        except Rejected as exc:
            raise Refusal.from_rejection(exc) from None
        await self.link.publish(MessageKind.RECORD, record.to_wire())
        self._announce_record(record)
        return record

    async def _issue_as_meter(self, kind: str, **fields: Any) -> Record:
        if self.meter_key is None:
            raise Refusal("no_meter_key", "this home has no meter key", Why.CONFLICT)
        return await self.issue(kind, key=self.meter_key, **fields)

    async def submit_signed(self, wire: Any) -> Record:
        """Take a record someone else signed (e.g. a registrar's certification) and relay it."""
        try:
            record = self.ledger.submit(wire)
        except Rejected as exc:
            raise Refusal.from_rejection(exc) from None
        await self.link.publish(MessageKind.RECORD, record.to_wire())
        self._announce_record(record)
        return record

    def _announce_record(self, record: Record) -> None:
        if record.kind == "offer":
            offer = self._pending_offer(record)
            self.events.publish("offer", offer_view(offer, self.now, pending=True), self.now)

    # --- inbound --------------------------------------------------------------------------

    async def _on_record_message(self, message: InboundMessage) -> None:
        try:
            record = self.ledger.submit(message.body)
        except Rejected as exc:
            if exc.reason is not Reason.DUPLICATE:
                self._count(exc.reason.value)
                log.info("%s: record from %s refused: %s", self.name, message.sender[:10], exc)
            return
        self._announce_record(record)
        if record.kind == "offer" and record.account != self.account:
            # Decide at once: buyers should not wait for the next control cycle.
            await self._consider_offer(self._pending_offer(record))

    async def _on_sync_message(self, message: InboundMessage) -> None:
        await self._send(self.sync.handle(message.sender, message.body, self.now))

    async def _on_peer_change(self, status: Any) -> None:
        if getattr(status, "online", False):
            await self._send(self.sync.request_headers(status.node_id, self.now))

    async def _send(self, outgoing: list[Outgoing]) -> None:
        for peer, message in outgoing:
            if peer is None:
                await self.link.publish(MessageKind.BLOCK, message)
            else:
                await self.link.send_to(peer, message)

    async def _sync_tick(self) -> None:
        await self._send(self.sync.tick(self.now))

    def _count(self, reason: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def _on_record_dropped(self, record: Record, why: Rejected) -> None:
        if record.account == self.account:
            self.events.publish(
                "record_rejected",
                {"id": record.id, "kind": record.kind, **why.as_dict()},
                self.now,
            )

    def _on_block_connected(self, block: Block) -> None:
        now = self.now
        self.events.publish("block", block_view(block), now)
        mine = False
        for record in block.records:
            if record.account == self.account:
                mine = True
            trade = self.ledger.state.trades.get(record.id)
            if trade is not None and self.account in (trade.buyer, trade.seller):
                mine = True
                self.events.publish("trade", trade_view(trade, self.account), now)
            elif record.kind in ("settlement", "termination"):
                trade = self.ledger.state.trades.get(str(record.body["trade"]))
                if trade is not None and self.account in (trade.buyer, trade.seller):
                    mine = True
                    self.events.publish("trade", trade_view(trade, self.account), now)
            if record.kind == "offer":
                # Ours too: the owner's dashboard sees its offer go from pending to open.
                offer = self.ledger.state.offers.get(record.id)
                if offer is not None:
                    self.events.publish("offer", offer_view(offer, now), now)
        if block.records:
            # Any community trade or offer may have changed the market summary: the
            # dashboard's chart follows it here rather than at its next full read.
            self.events.publish("market", self.market(), now)
        if mine or any(
            r.kind in ("topup", "transfer") and r.body.get("to") == self.account
            for r in block.records
        ):
            self.events.publish("wallet", self.wallet(), now)
            self._check_prepaid(now)

    def _check_prepaid(self, now: int) -> None:
        """Fire the cut-off hooks once when the balance reaches zero, and once when a
        top-up lifts it again (a prepaid load, a USB port, an automation)."""
        empty = self.ledger.state.account(self.account).balance <= 0
        if empty == self.cut_off:
            return
        self.cut_off = empty
        self.events.publish("prepaid_cutoff" if empty else "prepaid_restored", self.wallet(), now)
        for hook in self.cutoff_hooks:
            try:
                hook(empty)
            except Exception:
                log.exception("%s: cut-off hook failed", self.name)

    # --- sealing --------------------------------------------------------------------------

    async def _maybe_seal(self) -> None:
        """Seal a block when it is our turn (proof of authority) or when we find one (work).

        An out-of-turn sealer waits three intervals, so it only steps in when the in-turn
        sealer is offline; empty blocks are sealed only as a slow heartbeat."""
        ledger = self.ledger
        head = ledger.head
        interval = self.genesis.consensus.block_interval_ms
        now = self.now
        if not ledger.can_seal(self.key):
            return
        wait = interval if ledger.in_turn(self.key) else 3 * interval
        if now < head.time + wait:
            return
        if not ledger.pool and now < head.time + HEARTBEAT_BLOCKS * interval:
            return
        if self.genesis.consensus.mode == "pow":
            block = await asyncio.to_thread(ledger.build_block, self.key, now, 200_000)
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

    # --- the control cycle ----------------------------------------------------------------

    async def control_cycle(self) -> None:
        """Read devices, let the market decide, turn decisions into signed records."""
        now = self.now
        readings = self._market_readings(now)
        self.events.publish("telemetry", {"devices": self.devices_view(now)}, now)
        await self._update_available_energy(now)
        snapshot = MarketSnapshot(
            now_ms=now,
            readings=tuple(readings),
            open_offers=tuple(self._own_open_offers(now)),
            requests=tuple(self._open_requests(now)),
            conditions=self._conditions(now),
        )
        for decision in self.seller.decide(snapshot):
            try:
                if isinstance(decision, PublishOffer):
                    record = await self.issue("offer", **_offer_fields(decision.intent))
                    self._automatic.add(record.id)
                    log.info("%s: offered %s (%s)", self.name, record.id[:10], decision.message)
                elif isinstance(decision, WithdrawOffer):
                    self._cancelled.add(decision.offer_id)
                    await self.issue("cancel", offer=decision.offer_id)
            except Refusal as exc:
                log.info("%s: market decision refused by the ledger: %s", self.name, exc)
        for offer in self._others_open_offers(now):
            if offer.id not in self._evaluated:
                await self._consider_offer(offer)
        await self._answer_counters(now)
        await self.delivery.cycle(self.ledger.state, self.devices, now)

    async def _answer_counters(self, now: int) -> None:
        """Confirm or decline buyers' counter-offers on our open offers, by the policy."""
        pending_answers = {
            str(r.body.get("acceptance") or r.body.get("target"))
            for r in self.ledger.pool.values()
            if r.account == self.account and r.kind in ("confirmation", "rejection")
        }
        for acceptance in list(self.ledger.state.acceptances.rows.values()):
            if acceptance.status != "pending" or acceptance.id in pending_answers:
                continue
            offer = self.ledger.state.offers.get(acceptance.offer)
            if offer is None or offer.seller != self.account:
                continue
            try:
                if (
                    offer.status == "open"
                    and now < offer.expires
                    and confirms_counter(self.policy.sell, offer.price, acceptance.price)
                ):
                    await self.issue("confirmation", acceptance=acceptance.id)
                else:
                    await self.issue(
                        "rejection", target=acceptance.id, reason="counter-offer declined"
                    )
            except Refusal as exc:
                log.info("%s: could not answer counter %s: %s", self.name, acceptance.id[:10], exc)

    async def _consider_offer(self, offer: LedgerOffer) -> None:
        """Apply the owner's acceptance criteria to a neighbour's offer, once."""
        if offer.id in self._evaluated or offer.seller == self.account:
            return
        self._evaluated.add(offer.id)
        seller = self.ledger.state.account(offer.seller)
        decision = evaluate_offer(
            self.policy.buy,
            _market_offer(offer),
            me=self.account,
            now_ms=self.now,
            seller=SellerStanding(seller.rating_sum, seller.rating_count),
            balance=self.ledger.state.account(self.account).balance,
        )
        try:
            if isinstance(decision, Accept):
                await self.issue("acceptance", offer=offer.id, quantity=decision.quantity)
            elif isinstance(decision, Counter):
                await self.issue(
                    "acceptance",
                    offer=offer.id,
                    quantity=decision.quantity or offer.remaining,
                    price=decision.price if decision.price is not None else offer.price,
                )
            elif isinstance(decision, Reject) and not decision.silent:
                await self.issue("rejection", target=offer.id, reason=decision.message[:200])
        except Refusal as exc:
            log.info("%s: could not act on offer %s: %s", self.name, offer.id[:10], exc)

    def _resource_of(self, device: HomeDevice) -> Any:
        if not device.config.resource:
            return None
        resource = self.ledger.state.resources.get(device.config.resource)
        return resource if resource is not None and resource.owner == self.account else None

    def _power_holds(self, resource_id: str) -> tuple[PowerHold, ...]:
        """What the ledger's trades hold of a resource's rating, and when: the ledger books
        energy trades at their average power, and what they hold is not for sale again."""
        return tuple(PowerHold(*hold) for hold in power_holds(self.ledger.state, resource_id))

    def _market_readings(self, now: int) -> list[Reading]:
        readings: list[Reading] = []
        grid = next((d for d in self.devices if d.capabilities.grid_meter), None)
        grid_meter = grid.capabilities.grid_meter if grid else None
        grid_reading = grid_meter.power_w() if grid_meter else None
        for device in self.devices:
            resource = self._resource_of(device)
            if resource is None:
                continue
            caps = device.capabilities
            if device.config.role == "battery" and caps.battery is not None:
                soc, capacity = caps.battery.soc_percent(), caps.battery.capacity_wh()
                if soc is None or capacity is None:
                    continue
                readings.append(
                    BatteryReading(
                        resource=resource.id,
                        soc_percent=float(soc.value),
                        capacity_wh=capacity.value,
                        max_discharge_w=resource.power_w,
                        fresh=soc.fresh(now) and capacity.fresh(now),
                        committed_wh=resource.committed_wh,
                        held=self._power_holds(resource.id),
                    )
                )
            elif device.config.role == "fuel_cell" and caps.fuel_cell is not None:
                energy = caps.fuel_cell.available_energy_wh()
                state = caps.fuel_cell.state()
                faults = caps.fuel_cell.fault_codes()
                if energy is None:
                    continue
                readings.append(
                    FuelCellReading(
                        resource=resource.id,
                        power_rating_w=resource.power_w,
                        available_energy_wh=max(0, energy.value - resource.committed_wh),
                        fresh=energy.fresh(now),
                        held=self._power_holds(resource.id),
                        fault=bool(faults and faults.value)
                        or bool(state and state.value is FuelCellState.FAULT),
                    )
                )
            elif device.config.role == "pv" and caps.power_meter is not None:
                pv = caps.power_meter.power_w()
                if pv is None:
                    continue
                export = None
                load = 0
                fresh = pv.fresh(now)
                if grid_reading is not None:
                    export = max(0, -grid_reading.value)
                    load = max(0, pv.value + grid_reading.value)
                    fresh = fresh and grid_reading.fresh(now)
                readings.append(
                    PvReading(
                        resource=resource.id,
                        pv_w=pv.value,
                        load_w=load,
                        fresh=fresh,
                        grid_export_w=export,
                        held=self._power_holds(resource.id),
                    )
                )
        return readings

    async def _update_available_energy(self, now: int) -> None:
        """Tell the ledger what energy our storage holds, when it changed by 2 % or more,
        so the ledger's energy rule checks sales against reality."""
        for device in self.devices:
            resource = self._resource_of(device)
            if resource is None or resource.capacity_wh == 0:
                continue
            caps = device.capabilities
            available: int | None = None
            if caps.battery is not None:
                soc = caps.battery.soc_percent()
                if soc is not None and soc.fresh(now):
                    available = resource.capacity_wh * soc.value // 100
            elif caps.fuel_cell is not None:
                energy = caps.fuel_cell.available_energy_wh()
                if energy is not None and energy.fresh(now):
                    available = energy.value
            if available is None:
                continue
            available = min(available, resource.capacity_wh)
            last = self._last_available.get(resource.id, resource.available_wh)
            if abs(available - last) * 50 < resource.capacity_wh:
                continue
            self._last_available[resource.id] = available
            try:
                await self.issue("resource_update", resource=resource.id, available_wh=available)
            except Refusal as exc:
                log.info("%s: resource update refused: %s", self.name, exc)

    def _pending_offer(self, record: Record) -> LedgerOffer:
        offer = self.ledger.state.offers.get(record.id)
        if offer is not None:
            return offer
        return offer_of(record)

    def _all_open_offers(self, now: int) -> list[LedgerOffer]:
        """Open offers in the ledger and in the pool (signed, not yet sealed)."""
        offers = {
            o.id: o
            for o in self.ledger.state.offers.rows.values()
            if o.status == "open" and now < o.expires
        }
        for record in self.ledger.pool.values():
            if record.kind == "offer" and record.id not in offers and now < record.body["expires"]:
                offers[record.id] = self._pending_offer(record)
        cancelled = {r.body["offer"] for r in self.ledger.pool.values() if r.kind == "cancel"}
        return [o for o in offers.values() if o.id not in cancelled]

    def _own_open_offers(self, now: int) -> list[Offer]:
        return [
            _market_offer(o, automatic=o.id in self._automatic)
            for o in self._all_open_offers(now)
            if o.seller == self.account and o.id not in self._cancelled
        ]

    def _others_open_offers(self, now: int) -> list[LedgerOffer]:
        return [o for o in self._all_open_offers(now) if o.seller != self.account]

    def _open_requests(self, now: int) -> list[EnergyRequest]:
        return [
            EnergyRequest(
                request_id=r.id,
                requester=r.buyer,
                mode=r.mode,  # type: ignore[arg-type]
                quantity=r.quantity,
                max_price=r.max_price,
                start=r.start,
                end=r.end,
                expires=r.expires,
            )
            for r in self.ledger.state.requests.rows.values()
            if now < r.expires
        ]

    def _conditions(self, now: int) -> MarketConditions:
        since = now - 3_600_000
        supply = sum(
            energy_of(o.mode, o.quantity, o.start, o.end)
            for o in self.ledger.state.offers.rows.values()
            if o.time >= since
        )
        demand = sum(
            energy_of(r.mode, r.quantity, r.start, r.end)
            for r in self.ledger.state.requests.rows.values()
            if r.expires >= since
        )
        offers = [o for o in self.ledger.state.offers.rows.values() if o.time >= since]
        sold = sum(1 for o in offers if o.remaining < o.quantity)
        permille = 1000 * sold // len(offers) if offers else 500
        return MarketConditions(demand_wh=demand, supply_wh=supply, acceptance_permille=permille)

    # --- what the API reads -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        progress = self.sync.progress()
        head = self.ledger.head
        stats = self.link.stats()
        return {
            "api_version": API_VERSION,
            "node_id": self.account,
            "account": self.account,
            "name": self.name,
            "version": __version__,
            "community": {
                "id": self.genesis.community_id,
                "name": self.genesis.name,
                "currency": self.genesis.currency,
                "consensus": self.genesis.consensus.mode,
            },
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
            "time": self.now,
        }

    def devices_view(self, now: int | None = None) -> list[dict[str, Any]]:
        now = self.now if now is None else now
        result = []
        for d in self.devices:
            snapshot = d.device.snapshot()
            resource = self.ledger.state.resources.get(d.config.resource)
            result.append(
                {
                    "id": d.config.id,
                    "role": d.config.role,
                    "resource": resource_view(resource) if resource else None,
                    "profile": d.config.profile.name,
                    "connected": d.device.connected,
                    "capabilities": list(d.capabilities.names()),
                    **snapshot,
                }
            )
        return result

    def wallet(self, account: str | None = None) -> dict[str, Any]:
        who = account or self.account
        view = wallet_view(who, self.ledger.state.account(who), self.genesis.currency)
        if who == self.account:
            view["cut_off"] = self.cut_off
        return view

    def offers(self, mine: bool = False, include_closed: bool = False) -> list[dict[str, Any]]:
        now = self.now
        pooled = {r.id for r in self.ledger.pool.values() if r.kind == "offer"}
        if include_closed:
            offers = list(self.ledger.state.offers.rows.values())
            offers += [
                self._pending_offer(r)
                for r in self.ledger.pool.values()
                if r.kind == "offer" and r.id not in self.ledger.state.offers
            ]
        else:
            offers = self._all_open_offers(now)
        views = [
            offer_view(o, now, pending=o.id in pooled and o.id not in self.ledger.state.offers)
            for o in offers
            if not mine or o.seller == self.account
        ]
        return sorted(views, key=lambda v: v["time"], reverse=True)

    def offer(self, offer_id: str) -> dict[str, Any]:
        offer = self.ledger.state.offers.get(offer_id)
        if offer is None:
            record = self.ledger.pool.get(offer_id)
            if record is None or record.kind != "offer":
                raise Refusal("unknown_offer", f"no offer {offer_id}", Why.NOT_FOUND)
            return offer_view(self._pending_offer(record), self.now, pending=True)
        return offer_view(offer, self.now)

    def trades(self, mine: bool = True, limit: int = 200) -> list[dict[str, Any]]:
        trades = [
            trade_view(t, self.account)
            for t in self.ledger.state.trades.rows.values()
            if not mine or self.account in (t.buyer, t.seller)
        ]
        return sorted(trades, key=lambda t: t["time"], reverse=True)[:limit]

    def settlements(self, limit: int = 200) -> list[dict[str, Any]]:
        return [t for t in self.trades(limit=10_000) if t["status"] == "settled"][:limit]

    def market(self) -> dict[str, Any]:
        """Every community trade made (its acceptance in a block) in the last 24 h, whether
        it is still to be delivered, being delivered or settled, at its agreed energy and
        price; a capacity trade's energy is its power over its window (W x hours)."""
        since = self.now - MARKET_WINDOW_MS
        trades = sorted(
            (t for t in self.ledger.state.trades.rows.values() if t.time >= since),
            key=lambda t: t.time,
        )
        volume = sum(t.energy_wh for t in trades)
        value = sum(t.cost for t in trades)
        return {
            "window_ms": MARKET_WINDOW_MS,
            "trades": len(trades),
            "volume_wh": volume,
            "average_price": (value * 1000 // volume) if volume else None,
            "last_price": trades[-1].price if trades else None,
            "open_offers": len(self._all_open_offers(self.now)),
            "history": [
                {"time": t.time, "price": t.price, "energy_wh": t.energy_wh} for t in trades[-50:]
            ],
        }

    def blocks(self, start: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
        top = self.ledger.height
        first = max(1, top - limit + 1) if start is None else max(1, start)
        return [
            block_view(b)
            for h in range(first, min(top, first + limit - 1) + 1)
            if (b := self.ledger.block_at(h)) is not None
        ]

    def get_policy(self) -> dict[str, Any]:
        return self.policy.to_dict()

    def set_policy(self, document: dict[str, Any]) -> dict[str, Any]:
        try:
            policy = MarketPolicy.from_dict(document)
        except ValidationError as exc:
            raise Refusal(
                "invalid_policy",
                "; ".join(f"{p.path}: {p.message}" for p in exc.problems),
                Why.INVALID,
            ) from None
        self.policy = policy
        self.seller.update_policy(policy.sell)
        self._evaluated.clear()
        self.events.publish("policy", policy.to_dict(), self.now)
        return policy.to_dict()

    # --- what the API does ----------------------------------------------------------------

    async def create_offer(self, **fields: Any) -> dict[str, Any]:
        record = await self.issue("offer", **fields)
        return self.offer(record.id)

    async def accept_offer(
        self, offer_id: str, quantity: int | None = None, price: int | None = None
    ) -> dict[str, Any]:
        offer = self._find_offer(offer_id)
        # Only a missing quantity means "all that remains"; 0 is refused by the ledger.
        fields: dict[str, Any] = {
            "offer": offer_id,
            "quantity": offer.remaining if quantity is None else quantity,
        }
        if price is not None:
            fields["price"] = price
        record = await self.issue("acceptance", **fields)
        return {"acceptance": record.id, "conditional": price not in (None, offer.price)}

    async def reject_offer(self, offer_id: str, reason: str = "") -> dict[str, Any]:
        self._find_offer(offer_id)
        fields: dict[str, Any] = {"target": offer_id}
        if reason:
            fields["reason"] = reason[:200]
        record = await self.issue("rejection", **fields)
        return {"rejection": record.id}

    async def cancel_offer(self, offer_id: str) -> dict[str, Any]:
        self._find_offer(offer_id)
        record = await self.issue("cancel", offer=offer_id)
        self._cancelled.add(offer_id)
        return {"cancel": record.id}

    async def bid(self, offer_id: str, price: int) -> dict[str, Any]:
        record = await self.issue("bid", offer=offer_id, price=price)
        return {"bid": record.id}

    async def request_energy(self, **fields: Any) -> dict[str, Any]:
        record = await self.issue("request", **fields)
        return {"request": record.id}

    async def rate_trade(self, trade_id: str, score: int, comment: str = "") -> dict[str, Any]:
        fields: dict[str, Any] = {"trade": trade_id, "score": score}
        if comment:
            fields["comment"] = comment[:200]
        record = await self.issue("rating", **fields)
        return {"rating": record.id}

    async def terminate_trade(self, trade_id: str) -> dict[str, Any]:
        record = await self.issue("termination", trade=trade_id)
        return {"termination": record.id}

    async def settle_now(self) -> dict[str, Any]:
        """Settle every sale that is due now rather than at the next control cycle, and
        retry at once any settlement the ledger refused before."""
        settled = await self.delivery.settle(self.ledger.state, self.now, retry_now=True)
        return {"settled": settled}

    # --- USB charging -----------------------------------------------------------------------

    def _usb_or_refuse(self) -> UsbCharging:
        if self.usb is None:
            raise Refusal("usb_not_configured", "this home has no usb: section", Why.NOT_FOUND)
        return self.usb

    def usb_view(self) -> dict[str, Any]:
        return self._usb_or_refuse().view()

    async def usb_purchase(
        self,
        port: int,
        energy_wh: int | None = None,
        amount: int | None = None,
        wallet: str | None = None,
    ) -> dict[str, Any]:
        usb = self._usb_or_refuse()
        return await usb.purchase(port, energy_wh, amount, wallet)

    async def usb_stop(self, port: int) -> dict[str, Any]:
        usb = self._usb_or_refuse()
        return await usb.stop_session(port)

    async def usb_pair(self, code: str, fund: int | None = None) -> dict[str, Any]:
        usb = self._usb_or_refuse()
        return await usb.pair(code, fund)

    async def usb_set_port(self, port: int, enabled: bool) -> dict[str, Any]:
        usb = self._usb_or_refuse()
        return await usb.set_enabled(port, enabled)

    def _find_offer(self, offer_id: str) -> LedgerOffer:
        offer = self.ledger.state.offers.get(offer_id)
        if offer is None:
            record = self.ledger.pool.get(offer_id)
            if record is None or record.kind != "offer":
                raise Refusal("unknown_offer", f"no offer {offer_id}", Why.NOT_FOUND)
            offer = self._pending_offer(record)
        return offer


def _offer_fields(intent: OfferIntent) -> dict[str, Any]:
    body = dict(intent.to_body())
    del body["kind"]
    return body


def _market_offer(offer: LedgerOffer, automatic: bool = False) -> Offer:
    return Offer(
        offer_id=offer.id,
        seller=offer.seller,
        terms=OfferIntent(
            resource=offer.resource,
            mode=offer.mode,  # type: ignore[arg-type]
            quantity=offer.remaining,
            price=offer.price,
            start=offer.start,
            end=offer.end,
            expires=offer.expires,
            to=offer.to,
            request=offer.request or None,
            auction=AuctionTerms(offer.auction_closes, offer.auction_cap)
            if offer.is_auction
            else None,
        ),
        automatic=automatic,
    )
