"""One home's edge controller: the parts of the app, built and wired together.

`Home` assembles; it decides nothing. It opens the ledger and the link to the community,
builds the ledger node, the trader, delivery, the owner's actions, the read views and the
events, injects them into each other, and runs their loops. The API reaches the parts
through it: `home.queries` for what it shows, `home.actions` for what the owner does,
`home.usb` for phone charging, `home.events` for the WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edge_controller import __version__
from edge_controller.aio import cancel_and_wait
from edge_controller.app.actions import OwnerActions
from edge_controller.app.building import open_building
from edge_controller.app.counters import CounterOffers
from edge_controller.app.delivery import Delivery
from edge_controller.app.events import Announcer, EventBus
from edge_controller.app.homeassistant import HomeAssistantRelay
from edge_controller.app.identity import load_or_create_key, secure_data_dir
from edge_controller.app.node import SYNC_INTERVAL_MS, LedgerNode, record_sender
from edge_controller.app.queries import Queries
from edge_controller.app.refused import RefusedRecords
from edge_controller.app.site import SiteDevice, site_device
from edge_controller.app.status import ledger_status, storage_status
from edge_controller.app.trading import Trader
from edge_controller.app.usb_parts import usb_charging
from edge_controller.building_config import BuildingConfig
from edge_controller.config import DeviceConfig, HomeConfig, UsbConfig
from edge_controller.devices import Clock, MqttDevice, SystemClock, serve_on_broker
from edge_controller.devices.sunspec import SunSpecDevice
from edge_controller.ledger import Genesis, HistorySettings, KeyPair, Ledger, block_limit
from edge_controller.market import MarketPolicy
from edge_controller.network import BrokerSettings, CommunityLink
from edge_controller.refusal import Refusal, Why
from edge_controller.usb.charging import UsbCharging

log = logging.getLogger(__name__)

API_VERSION = 1
SEAL_CHECK_MS = 250
# A stop waits this long for the broker to take the outbox (the rest waits for the next start).
STOP_FLUSH_S = 0.7


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
        rating_grace_ms: int = 86_400_000,
        usb: UsbConfig | None = None,
        usb_backend: Any = None,
        building: BuildingConfig | None = None,
        history: HistorySettings | None = None,
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        secure_data_dir(data_dir)
        self.genesis = genesis
        self.key = node_key
        self.account = node_key.account
        self.clock = clock or SystemClock()
        self.control_interval_ms = control_interval_ms
        self.device_broker = device_broker or community_broker
        self.link = CommunityLink(
            node_id=self.account,
            community_id=genesis.community_id,
            broker=community_broker,
            outbox_path=data_dir / "outbox.sqlite3",
            binder=record_sender,
            signer=node_key,
            # Known homes get inbound lanes of their own: strangers' floods cannot crowd them.
            known_sender=self._known_account,
        )
        # The ledger builds no block the link could not send, whatever genesis allows.
        message_limit = self.link.max_body_bytes()
        self.ledger = Ledger.open(
            data_dir / "ledger.sqlite3",
            genesis,
            clock=self.clock.now_ms,
            max_block_wire=block_limit(message_limit),
            # The node syncs the disk off its event loop before it acknowledges anything.
            deferred_sync=True,
            check_later=True,  # the runner checks the finished rows right after start
        )
        self.node = LedgerNode(
            ledger=self.ledger,
            link=self.link,
            genesis=genesis,
            key=node_key,
            meter_key=meter_key,
            clock=self.clock,
            # Unless told not to, a home seals whenever its key is in the set in force.
            sealer=sealer is not False,
            name=name,
            message_limit=message_limit,
            history=history,
        )
        self.devices: list[SiteDevice] = [site_device(c, self.clock) for c in devices]
        self.homeassistant = HomeAssistantRelay(self.devices, data_dir / "homeassistant.json")
        self.events = EventBus()
        self.refused = RefusedRecords(data_dir / "refused.sqlite3")
        self.queries = Queries(
            self.ledger, self.account, genesis.currency, self.devices, self.refused
        )
        self.announcer = Announcer(
            self.ledger, self.account, self.queries, self.events, self.clock, self.refused
        )
        self.node.accepted.append(self.announcer.record_accepted)
        self.trader = Trader(self.node, self.devices, policy or MarketPolicy(), name)
        self.delivery = Delivery(
            account=self.account,
            meter_public=meter_key.public_hex if meter_key else "",
            period_ms=settlement_period_ms,
            issue=self.node.issue,
            issue_as_meter=self.node.issue_as_meter,
            rules=genesis.consensus.rules,
            rating_grace_ms=rating_grace_ms,
        )
        self.actions = OwnerActions(
            self.node, self.trader, self.delivery, self.queries, self.events
        )
        self.counters = CounterOffers(self.node)
        self.usb_backend = usb_backend
        self.usb = (
            usb_charging(
                usb,
                usb_backend,
                self.clock,
                data_dir,
                self.ledger,
                self.node,
                self.delivery,
                self.events.publish,
            )
            if usb is not None
            else None
        )
        self.building = open_building(
            building, data_dir, self.devices, self.ledger, self.events.publish, lambda: self.usb
        )
        self._tasks: list[asyncio.Task[None]] = []

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
            rating_grace_ms=config.rating_grace_ms,
            usb=config.usb,
            usb_backend=usb_backend,
            building=config.building,
            history=config.history,
        )

    def _known_account(self, account: str) -> bool:
        # Looked up at each message: the link is built before the ledger it asks.
        return self.ledger.knows_account(account)

    @property
    def now(self) -> int:
        return self.clock.now_ms()

    @property
    def sealer(self) -> bool:
        return self.node.sealer

    def usb_or_refuse(self) -> UsbCharging:
        """USB charging, or a not-found refusal when the home has no `usb:` section."""
        if self.usb is None:
            raise Refusal("usb_not_configured", "this home has no usb: section", Why.NOT_FOUND)
        return self.usb

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and start the control, sealing and sync loops (returns at once)."""
        await self.link.start()
        self.announcer.check_prepaid(self.now)
        self._spawn(self._loop(self.control_interval_ms, self.control_cycle), "control")
        self._spawn(self._loop(SYNC_INTERVAL_MS, self.node.sync_tick), "sync")
        if self.node.willing:
            self._spawn(self._loop(SEAL_CHECK_MS, self.node.seal), "seal")
        if self.usb is not None:
            await self.usb.start()
        on_mqtt = [d.device for d in self.devices if isinstance(d.device, MqttDevice)]
        if on_mqtt:
            broker = self.device_broker
            self._spawn(
                serve_on_broker(
                    broker.host,
                    broker.port,
                    on_mqtt,
                    username=broker.username,
                    password=broker.password,
                ),
                "devices",
            )
        for polled in (d.device for d in self.devices if isinstance(d.device, SunSpecDevice)):
            self._spawn(polled.run(), f"sunspec-{polled.device_id}")

    async def switch_off(self) -> None:
        """The first step of stopping: every USB port off (and its loop stopped), so nothing
        is delivered unmetered while the rest of the home stops."""
        if self.usb is not None:
            await self.usb.stop()

    async def stop(self, flush_s: float = STOP_FLUSH_S) -> None:
        """USB ports off, loops stopped, the outbox flushed (at most `flush_s`, if the
        broker is up), offline said to the community, files closed."""
        if self.usb is not None:
            await self.usb.stop()
            self.usb.store.close()
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()
        await self.link.flush(flush_s)
        await self.link.stop()
        self.node.close()
        self.ledger.close()
        self.refused.close()
        if self.building is not None:
            self.building.close()

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

    async def control_cycle(self) -> None:
        """Read devices, let the market decide, drive devices for the trades that run."""
        now = self.now
        self.events.publish("telemetry", {"devices": self.queries.devices_view(now)}, now)
        self.announcer.tick(now)
        await self.trader.cycle(now)
        await self.delivery.cycle(self.ledger.state, self.devices, now)
        if self.building is not None:
            await self.building.cycle(now)

    def status(self) -> dict[str, Any]:
        """`GET status`: who this home is, its community, ledger, broker and peers."""
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
            **ledger_status(self.node),
            "storage": storage_status(self.node, self.data_dir),
            "time": self.now,
        }
