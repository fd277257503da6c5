"""A home with USB charging for tests: a real `Home` (real SQLite ledger, real Ed25519, its
link on a real Mosquitto) on a manual clock, its USB ports on the virtual USB world, and a
registrar that registers the port and tops the home up. Nothing runs by itself: `step`
moves the clock a second, runs one USB cycle and seals a block, so a whole charge is
driven second by second without sleeping."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_controller.app.home import Home
from edge_controller.config import UsbConfig
from edge_controller.devices import SimulatedClock, SystemClock
from edge_controller.ledger import Consensus, Genesis, KeyPair, Trade, sign_record
from edge_controller.network import BrokerSettings
from edge_controller.simulation import VirtualPhone, VirtualUsbWorld
from edge_controller.usb.charging import UsbCharging, UsbSettings

PRICE = 2_000  # milli-units per kWh
TOP_UP = 100_000
PORT_RESOURCE = "test/usb-1"
SETTLEMENT_PERIOD_MS = 15_000


def phone(
    serial: str = "PHONE1", max_power_w: float = 25.0, soc: float = 0.2, pd_voltage_mv: int = 5_000
) -> VirtualPhone:
    return VirtualPhone(
        0x18D1, 0x4EE7, serial, "Google", "Pixel 8", battery_wh=15.0, soc=soc,
        max_power_w=max_power_w, pd_voltage_mv=pd_voltage_mv,
    )  # fmt: skip


def overshoot_allowed_mwh(bought_mwh: int) -> float:
    """The issue's bound: at most 0.5 Wh or 1 %, whichever is larger."""
    return max(500.0, bought_mwh / 100)


@dataclass
class UsbRig:
    """One home with USB charging and the keys around it."""

    folder: Path
    broker_port: int
    clock: SimulatedClock
    world: VirtualUsbWorld
    key: KeyPair = field(default_factory=KeyPair.generate)
    meter: KeyPair = field(default_factory=KeyPair.generate)
    registrar: KeyPair = field(default_factory=KeyPair.generate)
    settings: UsbSettings = field(
        default_factory=lambda: UsbSettings(
            ports=(1, 2), price=PRICE, watchdog_ms=5_000, resource_prefix="test"
        )
    )
    # More UsbConfig fields (a sysfs hub, another meter); the virtual world is the default.
    usb_options: dict[str, Any] = field(default_factory=dict)
    # Whether the home finds its hub and meter on the virtual world's backend (else libusb).
    virtual_usb: bool = True
    home: Home | None = None
    _seq: int = 0

    def __post_init__(self) -> None:
        self.genesis = Genesis(
            name="USB Street",
            currency="TST",
            time=self.clock.now_ms() - 60_000,
            registrars=(self.registrar.public_hex,),
            consensus=Consensus(
                mode="poa", block_interval_ms=1_000, sealers=(self.key.public_hex,)
            ),
        )

    @property
    def usb(self) -> UsbCharging:
        assert self.home is not None and self.home.usb is not None
        return self.home.usb

    def build(self) -> Home:
        """A (new) Home on the rig's data folder, keys and virtual world; not started."""
        self.home = Home(
            name="USB Home",
            data_dir=self.folder / "home",
            genesis=self.genesis,
            node_key=self.key,
            meter_key=self.meter,
            community_broker=BrokerSettings(host="127.0.0.1", port=self.broker_port),
            clock=self.clock,
            settlement_period_ms=SETTLEMENT_PERIOD_MS,
            usb=UsbConfig(**{"settings": self.settings, "meter_port": 1, **self.usb_options}),
            usb_backend=self.world.backend if self.virtual_usb else None,
        )
        return self.home

    async def start(self, register: bool = True) -> Home:
        """Build and start the home's link and USB charging (no loops), then register."""
        home = self.build()
        await home.link.start()
        await self.usb.start(run=False)
        if register:
            await self.register()
        return home

    async def crash(self) -> None:
        """What a kill -9 leaves: files closed, nothing switched off, nothing ended."""
        assert self.home is not None
        await self.home.link.stop()
        self.home.ledger.close()
        self.usb.store.close()

    async def stop(self) -> None:
        if self.home is not None:
            await self.home.stop()

    def registrar_record(self, **body: Any) -> dict[str, Any]:
        self._seq += 1
        full = {"seq": self._seq, "time": self.clock.now_ms(), **body}
        return sign_record(self.registrar, self.genesis.community_id, full).to_wire()

    async def register(self) -> None:
        """The registrar certifies port 1 (metered by the home's meter key) and tops the
        home up; a block holds both."""
        assert self.home is not None
        for record in (
            self.registrar_record(
                kind="registration",
                resource=PORT_RESOURCE,
                owner=self.key.account,
                resource_kind="usb_port",
                power_w=60,
                capacity_wh=1_000,
                available_wh=1_000,
                meter=self.meter.public_hex,
            ),
            self.registrar_record(kind="topup", to=self.key.account, amount=TOP_UP),
        ):
            await self.home.node.submit_signed(record)
        await self.seal()

    async def seal(self) -> None:
        """Seal a block now if the pool holds anything (the clock moves a block interval)."""
        assert self.home is not None
        if self.home.ledger.pool:
            self.clock.advance(1_000)
            await self.home.node.seal()

    async def step(self, seconds: int = 1) -> None:
        """Each second: the clock moves, the USB cycle runs, a block is sealed."""
        assert self.home is not None
        for _ in range(seconds):
            self.clock.advance(1_000)
            await self.usb.tick()
            if self.home.ledger.pool:
                await self.home.node.seal()

    async def until_session_over(self, port: int = 1, limit_s: int = 2_000) -> dict[str, Any]:
        for _ in range(limit_s):
            if self.usb.ports[port].session is None:
                break
            await self.step()
        assert self.usb.ports[port].session is None, "the session did not end"
        return self.usb.view()["sessions"][0]

    async def pair(self, port: int = 1, fund: int = 1_000) -> str:
        """Pair the phone on `port` (by the code it shows), funded from the home."""
        code = self.usb.view()["ports"][port - 1]["attached"]["pairing_code"]
        assert code is not None
        paired = await self.usb.pair(code, fund)
        await self.seal()
        return str(paired["wallet"])

    def trade(self, trade_id: str) -> Trade:
        assert self.home is not None
        trade = self.home.ledger.state.trades.get(trade_id)
        assert trade is not None, f"trade {trade_id[:10]} is not in the chain"
        return trade

    def chain_records(self, **match: Any) -> list[dict[str, Any]]:
        """Bodies of the records in the chain, those whose fields equal `match`."""
        assert self.home is not None
        ledger = self.home.ledger
        bodies = []
        for height in range(1, ledger.height + 1):
            block = ledger.block_at(height)
            assert block is not None
            for record in block.records:
                if all(record.body.get(k) == v for k, v in match.items()):
                    bodies.append({**record.body, "signer": record.signer})
        return bodies


def new_rig(folder: Path, broker_port: int, **world: Any) -> UsbRig:
    clock = SimulatedClock(SystemClock().now_ms())
    return UsbRig(folder, broker_port, clock, VirtualUsbWorld(clock, **world))
