"""`energy-p2p-edge demo`: a small community of simulated homes trading, with no setup.

One process runs an embedded MQTT broker (amqtt), a community with a registrar, and N homes
whose devices are simulators speaking MQTT exactly as real hardware would: a PV + battery
home whose battery is about to cross its selling threshold, a hydrogen fuel-cell home with
free capacity to sell, and consumer homes that buy by their owners' criteria. Each home
serves the real API and status page. The simulated sun is at local noon whatever the hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amqtt.broker import Broker

from edge_controller.aio import cancel_and_wait
from edge_controller.api import ApiServer
from edge_controller.bench.processes import free_port
from edge_controller.config import DeviceConfig, UsbConfig, VirtualPhoneConfig
from edge_controller.devices import (
    Command,
    Quantity,
    SystemClock,
    serve_on_broker,
    simple_generic_profile,
)
from edge_controller.home import Home, load_or_create_key, load_or_create_token
from edge_controller.ledger import Consensus, Genesis, KeyPair, Rejected, sign_record
from edge_controller.ledger.store import StoreMismatch
from edge_controller.market import (
    AcceptanceCriteria,
    BatterySellRule,
    FixedPrice,
    FuelCellSellRule,
    MarketPolicy,
    QuantityRange,
    SellPolicy,
)
from edge_controller.network import BrokerSettings
from edge_controller.refusal import Refusal
from edge_controller.runner import setup_logging
from edge_controller.simulation import (
    BatteryModel,
    FuelCellModel,
    HouseholdLoad,
    PvInverter,
    SimulatedHardware,
    SimulatedMqttDevice,
    SimulatedSite,
)
from edge_controller.usb.sessions import UsbSettings

log = logging.getLogger(__name__)

TOP_UP = 200_000  # milli-units: 200 units of the community currency per home
# What a data dir keeps so that the next start continues the same community: this file
# (the genesis), the registrar's key beside it, and each home's keys in its own folder.
COMMUNITY_FILE = "demo-community.json"
COMMUNITY_KIND = "energy-p2p demo community"
REGISTRAR_KEY = "registrar.key"
NODE_KEY = "node.key"
METER_KEY = "meter.key"
# Short windows and metering periods, so a trade is delivered and settled in a few minutes.
SETTLEMENT_PERIOD_MS = 15_000
# The consumer's phone: a USB-PD fast-charging phone buys 1 Wh (about a minute at 60 W on a
# 20 V contract), paid from a wallet the flat funds when the phone is paired.
USB_PRICE = 2_000  # milli-units per kWh
USB_CHARGE_WH = 1
USB_WALLET_FUND = 1_000

SITE_QUANTITIES = (
    Quantity.GRID_POWER_W,
    Quantity.IMPORT_ENERGY_WH,
    Quantity.EXPORT_ENERGY_WH,
    Quantity.SOC_PERCENT,
    Quantity.CAPACITY_WH,
    Quantity.BATTERY_POWER_W,
    Quantity.POWER_W,
    Quantity.EXPORT_LIMIT_W,
)
METER_QUANTITIES = (Quantity.POWER_W, Quantity.IMPORT_ENERGY_WH)
FUEL_CELL_QUANTITIES = (
    Quantity.POWER_W,
    Quantity.POWER_RATING_W,
    Quantity.STATE,
    Quantity.HYDROGEN_G,
    Quantity.FAULT_CODES,
    Quantity.EXPORT_ENERGY_WH,
)


@dataclass
class ResourcePlan:
    id: str
    kind: str
    power_w: int
    capacity_wh: int
    available_wh: int


@dataclass
class HomePlan:
    """One demo home: who it is, what hardware it has, how its owner trades."""

    name: str
    slug: str
    hardware: list[tuple[str, SimulatedHardware, Sequence[Quantity], Sequence[Command]]]
    devices: list[DeviceConfig]
    resources: list[ResourcePlan]
    policy: MarketPolicy
    usb: UsbConfig | None = None
    key: KeyPair = field(default_factory=KeyPair.generate)
    meter: KeyPair = field(default_factory=KeyPair.generate)


def demo_sell_policy(**rules: Any) -> SellPolicy:
    """Short windows and delays so a newcomer sees trades within a minute."""
    return SellPolicy(
        auto_sell=True,
        battery=rules.get("battery"),
        pv=None,
        fuel_cell=rules.get("fuel_cell"),
        pricing=FixedPrice(rules.get("price", 280)),
        min_offer_interval_ms=60_000,
        delivery_lead_ms=10_000,
        delivery_window_ms=90_000,
        offer_validity_ms=45_000,
    )


def consumer_policy(max_price: int = 350) -> MarketPolicy:
    return MarketPolicy(
        sell=SellPolicy(auto_sell=False, battery=None, pv=None, fuel_cell=None),
        buy=AcceptanceCriteria(
            auto_accept=True,
            max_price=max_price,
            counter_margin=50,
            energy=QuantityRange(50, 2_000),
            capacity=QuantityRange(100, 2_000),
        ),
    )


def plan_homes(count: int, now: int) -> list[HomePlan]:
    """The demo's homes: PV + battery, fuel cell, then consumers (and more batteries)."""
    utc_hour = (now // 3_600_000) % 24
    offset = float(12 - utc_hour)  # local noon, so the simulated sun shines
    homes: list[HomePlan] = []
    for i in range(count):
        kind = ("solar", "hydrogen", "consumer")[i] if i < 3 else ("consumer", "solar")[i % 2]
        slug = f"{kind}-{i + 1}"
        if kind == "solar":
            site = SimulatedSite(
                PvInverter(6_000, start_ms=now, utc_offset_hours=offset),
                BatteryModel(5_000, start_ms=now, soc_percent=80.1, max_discharge_w=3_000),
                HouseholdLoad(8_000, start_ms=now, utc_offset_hours=offset, seed=i),
                start_ms=now,
            )
            # Charging from the midday surplus: the battery crosses 80 % within a minute.
            site.battery.setpoint_w = 2_500
            profile = simple_generic_profile(
                f"demo/{slug}/site",
                SITE_QUANTITIES,
                (Command.BATTERY_SETPOINT_W, Command.EXPORT_LIMIT_W),
            )
            homes.append(
                HomePlan(
                    name=f"Sunny House {i + 1}" if i else "Sunny House",
                    slug=slug,
                    hardware=[
                        (
                            "site",
                            site,
                            SITE_QUANTITIES,
                            (Command.BATTERY_SETPOINT_W, Command.EXPORT_LIMIT_W),
                        )
                    ],
                    devices=[
                        DeviceConfig("battery", "battery", profile, f"{slug}/battery", 15_000),
                        DeviceConfig("pv", "pv", profile, f"{slug}/pv", 15_000),
                        DeviceConfig("grid", "grid_meter", profile, "", 15_000),
                    ],
                    resources=[
                        ResourcePlan(f"{slug}/battery", "battery", 3_000, 5_000, 3_970),
                        ResourcePlan(f"{slug}/pv", "pv", 6_000, 0, 0),
                    ],
                    policy=MarketPolicy(
                        sell=demo_sell_policy(
                            battery=BatterySellRule(
                                enable_soc_percent=80,
                                disable_soc_percent=75,
                                reserve_percent=40,
                                enable_delay_ms=3_000,
                                disable_delay_ms=10_000,
                                min_offer_wh=20,
                            ),
                            price=260,
                        ),
                        buy=AcceptanceCriteria(auto_accept=False),
                    ),
                )
            )
        elif kind == "hydrogen":
            cell = FuelCellModel(5_000, 1_500.0, start_ms=now, warmup_ms=5_000)
            cell.start()
            commands = (Command.SETPOINT_W, Command.START_STOP)
            profile = simple_generic_profile(
                f"demo/{slug}/fuel-cell", FUEL_CELL_QUANTITIES, commands
            )
            homes.append(
                HomePlan(
                    name="Hydrogen House",
                    slug=slug,
                    hardware=[("fuel-cell", cell, FUEL_CELL_QUANTITIES, commands)],
                    devices=[
                        DeviceConfig("fuel-cell", "fuel_cell", profile, f"{slug}/fuel-cell", 15_000)
                    ],
                    resources=[
                        ResourcePlan(f"{slug}/fuel-cell", "fuel_cell", 5_000, 25_000, 25_000)
                    ],
                    policy=MarketPolicy(
                        sell=demo_sell_policy(
                            fuel_cell=FuelCellSellRule(
                                enable_free_w=1_000,
                                disable_free_w=500,
                                reserve_wh=2_000,
                                enable_delay_ms=5_000,
                                disable_delay_ms=10_000,
                                min_offer_w=500,
                            ),
                            price=320,
                        ),
                        buy=AcceptanceCriteria(auto_accept=False),
                    ),
                )
            )
        else:
            # The flat's own meter (an EV charging at midday): its import is what the
            # flat's home compares with the seller's export for each trade.
            load = HouseholdLoad(110_000, start_ms=now, utc_offset_hours=offset, seed=i)
            profile = simple_generic_profile(f"demo/{slug}/meter", METER_QUANTITIES)
            homes.append(
                HomePlan(
                    name=f"Flat {i + 1}",
                    slug=slug,
                    hardware=[("meter", load, METER_QUANTITIES, ())],
                    devices=[DeviceConfig("meter", "meter", profile, f"{slug}/meter", 15_000)],
                    resources=[
                        ResourcePlan(f"{slug}/meter", "meter", 0, 0, 0),
                        *(
                            [ResourcePlan(f"{slug}/usb-1", "usb_port", 60, 1_000, 1_000)]
                            if i == 2
                            else []
                        ),
                    ],
                    policy=consumer_policy(max_price=340 if i % 2 else 300),
                    usb=demo_usb(slug) if i == 2 else None,
                )
            )
    return homes


def demo_usb(slug: str) -> UsbConfig:
    """A virtual hub with one charging port, a meter in front of it, and a phone plugged
    in a few seconds after start: a 60 W USB-PD device at 20 V, so 1 Wh takes a minute."""
    return UsbConfig(
        settings=UsbSettings(ports=(1,), price=USB_PRICE, watchdog_ms=5_000, resource_prefix=slug),
        virtual=True,
        virtual_ports=4,
        virtual_phones=(
            VirtualPhoneConfig(
                port=1,
                serial="DEMO0001",
                soc=0.2,
                max_power_w=60.0,
                pd_voltage_mv=20_000,
                plug_after_ms=3_000,
            ),
        ),
        meter_port=1,
    )


class DemoDataError(Exception):
    """The data dir holds something the demo cannot continue from."""


def load_or_create_community(
    folder: Path,
    plans: list[HomePlan],
    now: int,
    genesis: Genesis | None,
    genesis_file: Path,
    block_interval_ms: int = 2_000,
) -> tuple[Genesis, KeyPair, set[str]]:
    """The community in `folder`: its registrar key (`REGISTRAR_KEY`) and each home's keys
    (`<slug>/NODE_KEY`, `<slug>/METER_KEY`), created when missing, given to `plans`.
    `genesis` is the one the caller read from `genesis_file` (named in errors), or None
    for a new "Demo Street" genesis, which the caller saves in its own format. Returns the
    genesis, the registrar and the slugs of the homes whose keys are new this start: only
    they get a top-up. Raises `DemoDataError` when the keys are not those the genesis names."""
    new_homes: set[str] = set()
    try:
        if genesis is not None:
            # A sealer's lost key cannot be replaced: the genesis names it for good.
            for plan in plans[: len(genesis.consensus.sealers)]:
                if not (folder / plan.slug / NODE_KEY).exists():
                    raise DemoDataError(f"{folder / plan.slug / NODE_KEY} is missing")
        registrar = load_or_create_key(folder / REGISTRAR_KEY)
        for plan in plans:
            if not (folder / plan.slug / NODE_KEY).exists():
                new_homes.add(plan.slug)
            plan.key = load_or_create_key(folder / plan.slug / NODE_KEY)
            plan.meter = load_or_create_key(folder / plan.slug / METER_KEY)
    except (OSError, ValueError) as exc:
        raise DemoDataError(f"{folder}: cannot read or write a key: {exc}") from None
    if genesis is None:
        genesis = Genesis(
            name="Demo Street",
            currency="DEMO",
            currency_name="Demo Street credits",
            time=now - 1_000,
            registrars=(registrar.public_hex,),
            consensus=Consensus(
                mode="poa",
                block_interval_ms=block_interval_ms,
                sealers=tuple(p.key.public_hex for p in plans[:3]),
                confirmations=2,
            ),
        )
        return genesis, registrar, new_homes
    if registrar.public_hex not in genesis.registrars:
        raise DemoDataError(
            f"{folder / REGISTRAR_KEY} is not the registrar of the community in {genesis_file}"
        )
    for plan, sealer in zip(plans, genesis.consensus.sealers, strict=False):
        if plan.key.public_hex != sealer:
            raise DemoDataError(
                f"{folder / plan.slug / NODE_KEY} is not the key the community in"
                f" {genesis_file} names as sealer"
            )
    return genesis, registrar, new_homes


def registrar_bodies(
    plan: HomePlan, top_up: bool, registered: Callable[[str], bool] = lambda _: False
) -> list[dict[str, Any]]:
    """The registrar's record bodies for one home: its wallet's top-up when `top_up`, and
    a registration of each of its resources not `registered` yet."""
    bodies: list[dict[str, Any]] = []
    if top_up:
        bodies.append({"kind": "topup", "to": plan.key.account, "amount": TOP_UP})
    for r in plan.resources:
        if registered(r.id):
            continue
        bodies.append(
            {
                "kind": "registration",
                "resource": r.id,
                "owner": plan.key.account,
                "resource_kind": r.kind,
                "power_w": r.power_w,
                "capacity_wh": r.capacity_wh,
                "available_wh": r.available_wh,
                "meter": plan.meter.public_hex,
                "location": f"Demo Street {plan.slug}",
            }
        )
    return bodies


@dataclass
class RunningHome:
    plan: HomePlan
    home: Home
    api: ApiServer
    token: str


class Demo:
    """The whole demo: broker, registrar, simulators and homes."""

    def __init__(
        self, homes: int = 3, data_dir: Path | None = None, broker_port: int = 0, api_port: int = 0
    ) -> None:
        self.count = homes
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="energy-p2p-demo-")
            data_dir = Path(self._tmp.name)
        self.data_dir = data_dir
        self.broker_port = broker_port or free_port()
        self.api_port = api_port
        self.clock = SystemClock()
        self.registrar = KeyPair.generate()
        self.broker: Broker | None = None
        self.running: list[RunningHome] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the broker, the homes and their simulated devices, then register the
        community. Raises `DemoDataError` when the data dir holds another community."""
        now = self.clock.now_ms()
        plans = plan_homes(self.count, now)
        genesis, new_homes = await asyncio.to_thread(self._load_or_create_community, plans, now)
        self.broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.broker_port}"}},
                # Only what the demo needs: anonymous clients on loopback. amqtt's defaults
                # also load its $SYS statistics plugin, which nobody here reads.
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )
        await self.broker.start()
        broker = BrokerSettings(host="127.0.0.1", port=self.broker_port)
        for i, plan in enumerate(plans):
            folder = self.data_dir / plan.slug
            try:
                home = Home(
                    name=plan.name,
                    data_dir=folder,
                    genesis=genesis,
                    node_key=plan.key,
                    meter_key=plan.meter,
                    community_broker=broker,
                    devices=tuple(plan.devices),
                    policy=plan.policy,
                    clock=self.clock,
                    control_interval_ms=1_000,
                    settlement_period_ms=SETTLEMENT_PERIOD_MS,
                    usb=plan.usb,
                )
            except (StoreMismatch, sqlite3.DatabaseError) as exc:
                raise DemoDataError(f"{folder}: {exc}") from None
            token = load_or_create_token(folder / "api-token")
            api = ApiServer(home, token, "127.0.0.1", self.api_port + i if self.api_port else 0)
            await home.start()
            # One client connecting at a time: amqtt 0.12 can fail a connection that
            # arrives while another is being set up ("dictionary changed size").
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(home.link.wait_connected(), 10)
                await asyncio.wait_for(_devices_connected(home), 10)
            await api.start()
            self.running.append(RunningHome(plan, home, api, token))
        simulators = [
            SimulatedMqttDevice(
                f"{p.slug}/{name}",
                hw,
                simple_generic_profile(f"demo/{p.slug}/{name}", q, c),
                self.clock,
            )
            for p in plans
            for name, hw, q, c in p.hardware
        ]
        if simulators:
            self._tasks.append(
                asyncio.create_task(
                    serve_on_broker("127.0.0.1", self.broker_port, simulators, tick_interval_s=1.0)
                )
            )

        await self._register_community(genesis, new_homes)
        for running in self.running:
            if running.home.usb is not None:
                self._tasks.append(asyncio.create_task(phone_buys_a_charge(running.home)))

    def _load_or_create_community(
        self, plans: list[HomePlan], now: int
    ) -> tuple[Genesis, set[str]]:
        """The community the data dir holds (`COMMUNITY_FILE`), created on first start."""
        folder = self.data_dir
        community_file = folder / COMMUNITY_FILE
        genesis: Genesis | None = None
        if community_file.exists():
            genesis = _read_community(community_file)
        elif folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise DemoDataError(
                f"{folder} is not a demo community ({COMMUNITY_FILE} is missing) nor an empty"
                " folder: give --data-dir an empty or new folder"
            )
        created = genesis is None
        genesis, self.registrar, new_homes = load_or_create_community(
            folder, plans, now, genesis, community_file
        )
        if created:
            # Written last and whole: a community file always has its keys beside it.
            tmp = community_file.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({"kind": COMMUNITY_KIND, "genesis": genesis.to_json()}, indent=2) + "\n"
            )
            tmp.replace(community_file)
            log.info("demo community %s created in %s", genesis.community_id, folder)
        else:
            log.info("demo community %s continues from %s", genesis.community_id, folder)
        return genesis, new_homes

    def _registrar_next_seq(self) -> int:
        """After the registrar's highest sequence any home's ledger or pool holds."""
        account = self.registrar.account
        seqs = [0]
        for running in self.running:
            ledger = running.home.ledger
            seqs.append(ledger.state.account(account).seq)
            seqs.extend(r.seq for r in ledger.pool.values() if r.account == account)
        return max(seqs) + 1

    def _is_registered(self, resource_id: str) -> bool:
        """Whether a home's ledger holds `resource_id`, or a pool its registration: a
        second registration would reset the resource's available energy."""
        for running in self.running:
            ledger = running.home.ledger
            if ledger.state.resources.get(resource_id) is not None:
                return True
            if any(
                r.body["kind"] == "registration" and r.body["resource"] == resource_id
                for r in ledger.pool.values()
            ):
                return True
        return False

    async def _register_community(self, genesis: Genesis, new_homes: set[str]) -> None:
        """The registrar certifies every resource not yet registered and tops up each new
        home's wallet once (a restart must not print money again)."""
        relay = self.running[0].home
        seq = self._registrar_next_seq() - 1
        for running in self.running:
            plan = running.plan
            bodies = registrar_bodies(plan, plan.slug in new_homes, self._is_registered)
            for body in bodies:
                seq += 1
                record = sign_record(
                    self.registrar,
                    genesis.community_id,
                    {"seq": seq, "time": self.clock.now_ms(), **body},
                )
                await relay.submit_signed(record.to_wire())

    def state(self) -> dict[str, Any]:
        """What scripts need to reach each home: its API URL and token."""
        return {
            "broker": {"host": "127.0.0.1", "port": self.broker_port},
            "homes": [
                {
                    "name": r.plan.name,
                    "slug": r.plan.slug,
                    "account": r.home.account,
                    "url": r.api.url,
                    "token": r.token,
                    "status_page": f"{r.api.url}/?token={r.token}",
                }
                for r in self.running
            ],
        }

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        for running in self.running:
            await running.api.stop()
            await running.home.stop()
        if self.broker is not None:
            await self.broker.shutdown()
        if self._tmp is not None:
            self._tmp.cleanup()


async def run_demo(
    homes: int,
    state_file: Path | None,
    duration_s: float | None,
    data_dir: Path | None = None,
    api_port: int = 0,
) -> int:
    """Run the demo until Ctrl-C (or for `duration_s`); prints each home's URL and token."""
    demo = Demo(homes, data_dir=data_dir, api_port=api_port)
    try:
        await demo.start()
    except DemoDataError:
        await demo.stop()
        raise
    state = demo.state()
    print(
        f"Energy P2P demo: {len(demo.running)} homes on an embedded broker "
        f"(127.0.0.1:{demo.broker_port}). Ctrl-C stops it.\n"
    )
    for h in state["homes"]:
        print(f"  {h['name']:<16} {h['url']}   token {h['token']}")
        print(f"  {'':<16} status page: {h['status_page']}")
    print(flush=True)
    if state_file is not None:
        await asyncio.to_thread(state_file.write_text, json.dumps(state, indent=2) + "\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    reported: set[str] = set()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            _report_trades(demo, reported)
            if duration_s is not None and time.monotonic() - started >= duration_s:
                break
    finally:
        print("stopping the demo...", flush=True)
        await demo.stop()
    return 0


def _read_community(path: Path) -> Genesis:
    """The genesis of the demo community kept in `path`, or `DemoDataError` saying why not."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DemoDataError(f"{path} is not a demo community file: {exc}") from None
    if type(data) is not dict or data.get("kind") != COMMUNITY_KIND:
        raise DemoDataError(f"{path} is not a demo community file (no kind {COMMUNITY_KIND!r})")
    try:
        return Genesis.from_json(data.get("genesis"))
    except Rejected as exc:
        raise DemoDataError(f"{path}: bad genesis: {exc}") from None


async def phone_buys_a_charge(home: Home) -> None:
    """The owner pairs the phone that was plugged in (funding its wallet from the home)
    and it buys a charge, as soon as the port's registration and the top-up are in."""
    usb = home.usb
    assert usb is not None
    for _ in range(240):
        await asyncio.sleep(0.5)
        port = usb.ports[1]
        try:
            if port.pairing_code is not None:
                paired = await usb.pair(port.pairing_code, USB_WALLET_FUND)
                log.info("%s: phone %s paired with wallet %s", home.name, *paired.values())
            if port.device is not None and port.pairing_code is None:
                session = await usb.purchase(1, energy_wh=USB_CHARGE_WH)
                print(
                    f"usb: a phone on {home.name}'s port 1 buys {USB_CHARGE_WH} Wh"
                    f" (trade {str(session['trade'])[:10]})",
                    flush=True,
                )
                return
        except Refusal as exc:
            # Registration or top-up not in the ledger yet: try again shortly.
            log.debug("%s: phone cannot buy yet: %s", home.name, exc.message)


async def _devices_connected(home: Home) -> None:
    """Until every device of `home` is on the broker (the adapter offers no event)."""
    for _ in range(400):
        if all(d.device.connected for d in home.devices):
            return
        await asyncio.sleep(0.05)


def _report_trades(demo: Demo, reported: set[str]) -> None:
    """Print each new trade, and each settlement, once."""
    names = {r.home.account: r.plan.name for r in demo.running}
    for trade in demo.running[0].home.ledger.state.trades.rows.values():
        buyer = names.get(trade.buyer, trade.buyer[:10])
        seller = names.get(trade.seller, trade.seller[:10])
        if trade.id not in reported:
            reported.add(trade.id)
            unit = "Wh" if trade.mode == "energy" else "W"
            print(
                f"trade: {buyer} buys {trade.energy_wh} Wh from {seller} at"
                f" {trade.price / 1000:.3f} per kWh ({trade.mode}, {trade.quantity} {unit})",
                flush=True,
            )
        if trade.status == "settled" and f"{trade.id}:settled" not in reported:
            reported.add(f"{trade.id}:settled")
            dispute = (
                f", disputed: {buyer} measured {trade.disputed_wh} Wh"
                if (trade.disputed_wh >= 0)
                else ""
            )
            print(
                f"settled: {seller} delivered {trade.delivered_wh} of {trade.energy_wh} Wh"
                f" to {buyer}; paid {trade.paid / 1000:.3f}, refunded"
                f" {trade.refunded / 1000:.3f}{dispute}",
                flush=True,
            )


def demo_main(
    homes: int,
    state_file: Path | None = None,
    duration_s: float | None = None,
    data_dir: Path | None = None,
    api_port: int = 0,
    verbose: bool = False,
) -> int:
    """`energy-p2p-edge demo`: check the arguments, then run the demo until Ctrl-C."""
    if not 3 <= homes <= 12:
        print("energy-p2p-edge: error: --homes must be from 3 to 12", file=sys.stderr)
        return 2
    setup_logging(verbose)
    try:
        return asyncio.run(run_demo(homes, state_file, duration_s, data_dir, api_port))
    except DemoDataError as exc:
        print(f"energy-p2p-edge: error: {exc}", file=sys.stderr)
        return 2
