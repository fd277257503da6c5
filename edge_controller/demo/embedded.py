"""`energy-p2p-edge demo`: a small community of simulated homes trading, with no setup.

One process runs an embedded MQTT broker (amqtt), a community with a registrar, and the
homes `edge_controller.simulation.plan` plans, each with its simulated world: devices that
speak MQTT exactly as real hardware would and, for the flat, a virtual USB hub whose phone
is plugged in through the simulation control topics. Each home serves the real API and
status page.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.broker import Broker

from edge_controller.aio import cancel_and_wait
from edge_controller.api import ApiServer
from edge_controller.api.community import COMMUNITY_KEY
from edge_controller.app.home import Home
from edge_controller.app.identity import load_or_create_token
from edge_controller.community import CommunityService
from edge_controller.demo.broker import demo_broker
from edge_controller.demo.community import (
    COMMUNITY_FILE,
    COMMUNITY_KIND,
    TOP_UP,
    DemoDataError,
    invite_new_homes,
    load_or_create_community,
    read_community,
)
from edge_controller.demo.phones import phone_buys_a_charge, plug_phones
from edge_controller.devices import SystemClock
from edge_controller.ledger import Genesis, KeyPair, StoreMismatch
from edge_controller.network import BrokerSettings
from edge_controller.processes import free_port
from edge_controller.runner import setup_logging
from edge_controller.simulation.plan import HomePlan, plan_homes
from edge_controller.simulation.world import SimulatedHome, serve_worlds

log = logging.getLogger(__name__)

# Short windows and metering periods, so a trade is delivered and settled in a few minutes.
SETTLEMENT_PERIOD_MS = 15_000


@dataclass
class RunningHome:
    """A demo home as it runs: its plan, the edge controller, its API and token."""

    plan: HomePlan
    home: Home
    api: ApiServer
    token: str
    community: CommunityService


class Demo:
    """The whole demo: broker, registrar, the homes and their simulated worlds."""

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
        self.worlds: list[SimulatedHome] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the broker, the homes and their simulated devices, then register the
        community. Raises `DemoDataError` when the data dir holds another community."""
        now = self.clock.now_ms()
        plans = plan_homes(self.count, now)
        genesis, new_homes = await asyncio.to_thread(self._load_or_create_community, plans, now)
        await asyncio.to_thread(
            invite_new_homes,
            self.data_dir,
            genesis,
            self.registrar,
            plans,
            new_homes,
            self.broker_port,
            now,
        )
        self.broker = demo_broker(self.broker_port)
        await self.broker.start()
        broker = BrokerSettings(host="127.0.0.1", port=self.broker_port)
        self.worlds = [plan.simulate(self.clock) for plan in plans]
        for i, (plan, world) in enumerate(zip(plans, self.worlds, strict=True)):
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
                    usb_backend=world.usb_backend,
                    building=plan.building_config(),
                )
            except (StoreMismatch, sqlite3.DatabaseError) as exc:
                raise DemoDataError(f"{folder}: {exc}") from None
            token = load_or_create_token(folder / "api-token")
            api = ApiServer(home, token, "127.0.0.1", self.api_port + i if self.api_port else 0)
            # The first home keeps the registrar's key: membership requests come to it.
            community = CommunityService(
                node=home.node,
                data_dir=folder,
                broker=broker,
                registrar_dir=self.data_dir if i == 0 else None,
                broker_dir=self.data_dir / "broker",
            )
            api.app[COMMUNITY_KEY] = community
            await home.start()
            await community.start()
            # One client connecting at a time: amqtt 0.12 can fail a connection that
            # arrives while another is being set up ("dictionary changed size").
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(home.link.wait_connected(), 10)
                await asyncio.wait_for(_devices_connected(home), 10)
            await api.start()
            self.running.append(RunningHome(plan, home, api, token, community))
        self._tasks.append(
            asyncio.create_task(serve_worlds("127.0.0.1", self.broker_port, self.worlds))
        )
        await _worlds_connected(self.worlds)
        # A person plugs the flat's phone in: a message on the simulation's control topics.
        for plan in plans:
            await plug_phones("127.0.0.1", self.broker_port, plan)
        await self._admit(new_homes)
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
            genesis = read_community(community_file)
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

    async def _admit(self, new_homes: set[str], timeout_s: float = 60.0) -> None:
        """The registrar approves, with an opening top-up, each membership request the
        new homes sent over the broker (and any request an earlier run left waiting), as
        `energy-p2p-edge community approve` does: the same path every street walks."""
        registrar = self.running[0].community
        expected = {r.home.account for r in self.running if r.plan.slug in new_homes}
        deadline = time.monotonic() + timeout_s
        while True:
            pending = registrar.requests()["requests"]
            arrived = {request["account"] for request in pending}
            if expected <= arrived or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        for request in pending:
            await registrar.approve(request["id"], topup=TOP_UP)
        missing = expected - arrived
        if missing:
            log.warning("no membership request from %s within %.0f s", sorted(missing), timeout_s)
        # Ready means able to trade: every admitted home's top-up is in a block.
        admitted = {request["account"] for request in pending}
        ledgers = [r.home.ledger for r in self.running]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(ledger.state.account(a).balance > 0 for ledger in ledgers for a in admitted):
                return
            await asyncio.sleep(0.05)
        log.warning(
            "the top-ups of %s were not in every home's ledger within %.0f s",
            sorted(admitted),
            timeout_s,
        )

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
                    # The page asks for the token: it is never put in a URL.
                    "status_page": f"{r.api.url}/",
                }
                for r in self.running
            ],
        }

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        for running in self.running:
            await running.api.stop()
            await running.community.stop()
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


async def _devices_connected(home: Home) -> None:
    """Until every device of `home` is on the broker (the adapter offers no event)."""
    for _ in range(400):
        if all(d.device.connected for d in home.devices):
            return
        await asyncio.sleep(0.05)


async def _worlds_connected(worlds: list[SimulatedHome]) -> None:
    """Until every simulated world is on the broker (control topics subscribed), 20 s at most."""
    for _ in range(400):
        if all(world.connected for world in worlds):
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
