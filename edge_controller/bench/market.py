"""The market benchmark: how fast a community of real edge controller processes trades.

`energy-p2p-edge bench market --homes 10 --json` starts a real MQTT broker (Mosquitto when
installed, otherwise the embedded amqtt broker), then `--homes` edge controller processes
(`energy-p2p-edge run`): half sellers, each with a simulated battery on the device broker
about to cross its selling threshold, half buyers that accept automatically. It measures:

- threshold crossing to offer: from the moment a battery first publishes a state of charge
  above the threshold to the offer its home signs (the selling delay set to zero, so this
  is the system's own latency: telemetry, the control cycle, signing);
- offer to acceptance: from a seller signing an offer to a neighbour signing the
  acceptance that becomes the trade (offers go out over MQTT, buyers decide on arrival);
- acceptance to block: from the acceptance being signed to the block that holds it;
- the resident memory of each home process at the end.

Times come from the signed records themselves (each carries its signer's clock; all
processes share this machine's clock) and from block headers, read from a home's ledger
file after the run, so the homes carry no instrumentation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from amqtt.broker import Broker

from edge_controller.devices import (
    Command,
    Quantity,
    SystemClock,
    serve_on_broker,
    simple_generic_profile,
)
from edge_controller.ledger import (
    Consensus,
    Genesis,
    KeyPair,
    StoredChain,
    parse_record,
    sign_record,
)
from edge_controller.processes import EdgeProcess, free_port
from edge_controller.simulation import BatteryModel, SimulatedMqttDevice

BATTERY = (Quantity.SOC_PERCENT, Quantity.CAPACITY_WH, Quantity.BATTERY_POWER_W)
THRESHOLD = 80
TOP_UP = 50_000_000


def percentile(values: list[int], share: float) -> int | None:
    """The `share` (0..1) percentile, nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


class WatchedBattery(SimulatedMqttDevice):
    """A simulated battery that notes when it first publishes a charge above the threshold."""

    crossed_ms: int | None = None

    async def publish_telemetry(self) -> None:
        await super().publish_telemetry()
        hardware = self.hardware
        if (
            self.crossed_ms is None
            and self.connected
            and isinstance(hardware, BatteryModel)
            and round(hardware.soc_percent) > THRESHOLD
        ):
            self.crossed_ms = self._clock.now_ms()


@dataclass
class Street:
    """The benchmark's community: genesis, registrar, keys and configuration files."""

    folder: Path
    homes: int
    broker_port: int
    registrar: KeyPair = field(default_factory=KeyPair.generate)
    keys: list[KeyPair] = field(default_factory=list)
    processes: list[EdgeProcess] = field(default_factory=list)
    seq: int = 0

    def __post_init__(self) -> None:
        self.keys = [KeyPair.generate() for _ in range(self.homes)]
        self.genesis = Genesis(
            name="Benchmark Street",
            currency="BEN",
            time=int(time.time() * 1000) - 1_000,
            registrars=(self.registrar.public_hex,),
            consensus=Consensus(
                mode="poa",
                block_interval_ms=1_000,
                sealers=tuple(k.public_hex for k in self.keys[:3]),
                confirmations=2,
            ),
        )
        self.genesis.save(self.folder / "genesis.json")
        for i, key in enumerate(self.keys):
            data = self.folder / f"home-{i}"
            data.mkdir()
            key.save(data / "node.key")
            seller = i % 2 == 0
            document: dict[str, Any] = {
                "name": f"home-{i}",
                "data_dir": str(data),
                "genesis": str(self.folder / "genesis.json"),
                "community_broker": {"host": "127.0.0.1", "port": self.broker_port},
                "api": {"host": "127.0.0.1", "port": free_port(), "zeroconf": False},
                "control_interval_s": 1,
                "devices": [self._battery(i)] if seller else [],
                "policy": self._seller_policy() if seller else self._buyer_policy(),
            }
            config = self.folder / f"home-{i}.yaml"
            config.write_text(yaml.safe_dump(document))
            self.processes.append(EdgeProcess(config, self.folder / f"home-{i}.log"))

    def _battery(self, i: int) -> dict[str, Any]:
        base = f"bench/home-{i}/battery"
        return {
            "id": "battery",
            "role": "battery",
            "resource": f"home-{i}/battery",
            "stale_after_s": 10,
            "profile": {
                "profile": "generic",
                "telemetry": {
                    q.value: {"topic": f"{base}/telemetry", "path": q.value} for q in BATTERY
                },
                "commands": {
                    "battery_setpoint_w": {
                        "topic": f"{base}/cmd/battery_setpoint_w",
                        "payload": '{"value": $value}',
                    }
                },
            },
        }

    @staticmethod
    def _seller_policy() -> dict[str, Any]:
        return {
            "sell": {
                "auto_sell": True,
                "battery": {
                    "enable_soc_percent": THRESHOLD,
                    "disable_soc_percent": 60,
                    "reserve_percent": 20,
                    "enable_delay_ms": 0,
                    "disable_delay_ms": 60_000,
                },
                "pv": None,
                "fuel_cell": None,
                "min_offer_interval_ms": 3_600_000,
                "delivery_lead_ms": 60_000,
                "delivery_window_ms": 900_000,
                "offer_validity_ms": 300_000,
            },
            "buy": {"auto_accept": False},
        }

    @staticmethod
    def _buyer_policy() -> dict[str, Any]:
        return {
            "sell": {"auto_sell": False, "battery": None, "pv": None, "fuel_cell": None},
            "buy": {
                "auto_accept": True,
                "max_price": 400,
                "energy": {"min": 10, "max": 100_000},
                "capacity": {"min": 10, "max": 100_000},
            },
        }

    def registrar_record(self, **body: Any) -> dict[str, Any]:
        self.seq += 1
        full = {"seq": self.seq, "time": int(time.time() * 1000), **body}
        return sign_record(self.registrar, self.genesis.community_id, full).to_wire()


def _start_broker(folder: Path) -> tuple[int, Any]:
    """A Mosquitto process when installed, else None (the caller embeds amqtt)."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    port = free_port()
    if binary is None:
        return port, None
    config = folder / "mosquitto.conf"
    # Small MQTT packets must not wait for Nagle's algorithm (40 ms with delayed ACKs).
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n")
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return port, process
        time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


async def _run(homes: int, offers: int, folder: Path, say: Any) -> dict[str, Any]:
    broker_port, mosquitto = _start_broker(folder)
    embedded = None
    if mosquitto is None:
        embedded = Broker(
            {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{broker_port}"}}}
        )
        await embedded.start()
    street = Street(folder, homes, broker_port)
    clock = SystemClock()
    batteries: list[WatchedBattery] = []
    simulators: asyncio.Task[None] | None = None
    try:
        for process in street.processes:
            process.launch()
        for process in street.processes:
            await asyncio.to_thread(process.wait_ready, 60)
        say(f"{homes} homes running on {'Mosquitto' if mosquitto else 'amqtt'}")
        relay = street.processes[0]
        for i, key in enumerate(street.keys):
            await asyncio.to_thread(
                relay.call,
                "POST",
                "records",
                street.registrar_record(kind="topup", to=key.account, amount=TOP_UP),
            )
            if i % 2 == 0:
                registration = street.registrar_record(
                    kind="registration",
                    resource=f"home-{i}/battery",
                    owner=key.account,
                    resource_kind="battery",
                    # As large as the simulated battery's 10 MW: the threshold offer (about
                    # 0.5 MWh over its hour) and the 3 kW offers by hand must fit together.
                    power_w=10_000_000,
                    capacity_wh=1_000_000,
                    available_wh=790_000,
                )
                await asyncio.to_thread(relay.call, "POST", "records", registration)
        await _wait_for(
            lambda: all(p.call("GET", "wallet")["balance"] == TOP_UP for p in street.processes), 60
        )
        # Batteries below the threshold, charging: each crosses it within a few seconds.
        for i in range(0, homes, 2):
            model = BatteryModel(
                1_000_000, start_ms=clock.now_ms(), soc_percent=79.9, max_charge_w=10_000_000
            )
            model.setpoint_w = 6_000_000 + 600_000 * i  # staggered crossings
            profile = simple_generic_profile(
                f"bench/home-{i}/battery", BATTERY, (Command.BATTERY_SETPOINT_W,)
            )
            batteries.append(WatchedBattery(f"battery-{i}", model, profile, clock))
        simulators = asyncio.create_task(
            serve_on_broker("127.0.0.1", broker_port, batteries, tick_interval_s=0.1)
        )
        sellers = street.processes[0::2]
        await _wait_for(lambda: all(b.crossed_ms for b in batteries), 60)
        say("every battery crossed its threshold")
        # Offers by hand through the API, spread over the sellers, at a steady pace.
        now = clock.now_ms()
        for n in range(offers):
            seller = sellers[n % len(sellers)]
            start = now + 120_000 + (n // len(sellers)) * 60_000
            body = {
                "resource": f"home-{street.processes.index(seller)}/battery",
                "mode": "energy",
                "quantity": 50,
                "price": 250,
                "start": start,
                "end": start + 60_000,
                "expires": start,
            }
            await asyncio.to_thread(seller.call, "POST", "offers", body)
            await asyncio.sleep(0.05)
        say(f"{offers} offers published")
        db = folder / "home-1" / "ledger.sqlite3"
        await _wait_for(lambda: _trades_in(db, street.genesis) >= offers, 120)
        rss = [p.rss_mb() for p in street.processes]
        figures = _latencies(db, street.genesis, batteries, street)
    finally:
        if simulators is not None:
            simulators.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await simulators
        for process in street.processes:
            await asyncio.to_thread(process.stop)
        if embedded is not None:
            await embedded.shutdown()
        if mosquitto is not None:
            mosquitto.terminate()
            mosquitto.wait()
    return {
        **figures,
        "homes": homes,
        "broker": "mosquitto" if mosquitto else "amqtt",
        "rss_mb": round(sorted(rss)[len(rss) // 2], 1),
        "rss_mb_max": round(max(rss), 1),
    }


async def _wait_for(check: Any, seconds: float) -> None:
    """Poll `check` (blocking, run in a thread) until true, for at most `seconds`."""
    async with asyncio.timeout(seconds):
        while True:
            with contextlib.suppress(OSError, ValueError):
                if await asyncio.to_thread(check):
                    return
            await asyncio.sleep(0.25)


def _trades_in(db: Path, genesis: Genesis) -> int:
    chain = StoredChain(db, genesis)
    try:
        return sum(
            1
            for block in chain.blocks(1)
            for r in block.wire["records"]
            if r["body"]["kind"] == "acceptance"
        )
    finally:
        chain.db.close()


def _latencies(
    db: Path, genesis: Genesis, batteries: list[WatchedBattery], street: Street
) -> dict[str, Any]:
    chain = StoredChain(db, genesis)
    offers: dict[tuple[str, str], int] = {}
    offer_time: dict[str, int] = {}
    to_accept: list[int] = []
    to_block: list[int] = []
    threshold: list[int] = []
    crossed = {f"home-{i * 2}/battery": b.crossed_ms for i, b in enumerate(batteries)}
    try:
        for block in chain.blocks(1):
            block_time = block.wire["header"]["time"]
            for wire in block.wire["records"]:
                body = wire["body"]
                if body["kind"] == "offer":
                    record = parse_record(wire, genesis.community_id)
                    offer_time[record.id] = body["time"]
                    crossing = crossed.get(body["resource"])
                    key = (body["resource"], "threshold")
                    if crossing and key not in offers and body["time"] >= crossing:
                        offers[key] = body["time"]
                        threshold.append(body["time"] - crossing)
                elif body["kind"] == "acceptance" and body["offer"] in offer_time:
                    to_accept.append(body["time"] - offer_time[body["offer"]])
                    to_block.append(block_time - body["time"])
    finally:
        chain.db.close()
    return {
        "offers_accepted": len(to_accept),
        "threshold_to_offer_ms_p50": percentile(threshold, 0.5),
        "threshold_to_offer_ms_p99": percentile(threshold, 0.99),
        "offer_to_accept_ms_p50": percentile(to_accept, 0.5),
        "offer_to_accept_ms_p99": percentile(to_accept, 0.99),
        "accept_to_block_ms_p50": percentile(to_block, 0.5),
        "accept_to_block_ms_p99": percentile(to_block, 0.99),
    }


def run_market_benchmark(
    homes: int = 10, offers: int = 200, show_progress: bool = False
) -> dict[str, Any]:
    """Run the market benchmark and return its figures (what `bench market` prints)."""

    def say(line: str) -> None:
        if show_progress:
            sys.stderr.write(f"{line}\n")

    with tempfile.TemporaryDirectory(prefix="energy-p2p-market-") as tmp:
        figures = asyncio.run(_run(homes, offers, Path(tmp), say))
    figures["date"] = time.strftime("%Y-%m-%d", time.gmtime())
    figures["machine"] = f"{os.uname().sysname} {os.uname().machine}, {os.cpu_count()} cores"
    return figures
