"""Helpers for the delivery tests: simulated devices that remember every command they obey,
racks of them on the device broker, a WebSocket listener, and the ledger's meter readings.

Everything here runs in the test process; the homes are real `energy-p2p-edge run`
processes (`tests.edge.support.EdgeProcess`).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from edge_controller.devices import (
    Command,
    Quantity,
    SystemClock,
    serve_on_broker,
    simple_generic_profile,
)
from edge_controller.ledger import Genesis, StoredChain
from edge_controller.simulation import (
    BatteryModel,
    SimulatedHardware,
    SimulatedMqttDevice,
    TelemetryValue,
)
from tests.conftest import Mosquitto, free_port

BATTERY_QUANTITIES = (
    Quantity.SOC_PERCENT,
    Quantity.CAPACITY_WH,
    Quantity.BATTERY_POWER_W,
    Quantity.IMPORT_ENERGY_WH,
    Quantity.EXPORT_ENERGY_WH,
)
BATTERY_COMMANDS = (Command.BATTERY_SETPOINT_W,)
FUEL_CELL_QUANTITIES = (
    Quantity.POWER_W,
    Quantity.POWER_RATING_W,
    Quantity.STATE,
    Quantity.HYDROGEN_G,
    Quantity.FAULT_CODES,
    Quantity.EXPORT_ENERGY_WH,
)
FUEL_CELL_COMMANDS = (Command.SETPOINT_W, Command.START_STOP)
METER_QUANTITIES = (Quantity.POWER_W, Quantity.IMPORT_ENERGY_WH)


def now_ms() -> int:
    return SystemClock().now_ms()


def cost(energy_wh: int, price: int) -> int:
    """What `energy_wh` costs at `price` milli-units per kWh, in milli-units."""
    return energy_wh * price // 1000


# --- simulated devices ---------------------------------------------------------------------


@dataclass(frozen=True)
class Obeyed:
    """One command a simulated device carried out, and when (UTC ms)."""

    at_ms: int
    command: Command
    value: int


class Recording:
    """Wraps simulated hardware and remembers every command it is told to obey."""

    def __init__(self, hardware: SimulatedHardware) -> None:
        self.hardware = hardware
        self._commands: list[Obeyed] = []
        self._lock = threading.Lock()

    def advance_to(self, now_ms: int) -> None:
        self.hardware.advance_to(now_ms)

    def telemetry(self) -> Mapping[Quantity, TelemetryValue]:
        return self.hardware.telemetry()

    def obey(self, command: Command, value: int) -> bool:
        with self._lock:
            self._commands.append(Obeyed(now_ms(), command, value))
        return self.hardware.obey(command, value)

    @property
    def commands(self) -> list[Obeyed]:
        with self._lock:
            return list(self._commands)


class OvershootingBattery(BatteryModel):
    """A battery whose inverter discharges at twice the power it is asked for."""

    def obey(self, command: Command, value: int) -> bool:
        return super().obey(command, value * 2)


@dataclass
class Rig:
    """One simulated device of a home: its hardware, what it reports and obeys, and the
    ledger resource it backs."""

    home: str
    name: str
    role: str
    hardware: SimulatedHardware
    quantities: Sequence[Quantity]
    commands: Sequence[Command] = ()
    stale_after_s: int = 5
    recording: Recording = field(init=False)

    def __post_init__(self) -> None:
        self.recording = Recording(self.hardware)

    @property
    def resource(self) -> str:
        return f"{self.home}/{self.name}"

    @property
    def base_topic(self) -> str:
        return f"sim/{self.home}/{self.name}"

    def edge_device(self) -> dict[str, Any]:
        """The device's entry in its home's edge.yaml (the generic MQTT JSON profile)."""
        telemetry = f"{self.base_topic}/telemetry"
        return {
            "id": self.name,
            "role": self.role,
            "resource": self.resource,
            "stale_after_s": self.stale_after_s,
            "profile": {
                "profile": "generic",
                "telemetry": {
                    q.value: {"topic": telemetry, "path": q.value} for q in self.quantities
                },
                "commands": {
                    c.value: {
                        "topic": f"{self.base_topic}/cmd/{c.value}",
                        "payload": '{"value": $value}',
                    }
                    for c in self.commands
                },
            },
        }

    def simulator(self) -> SimulatedMqttDevice:
        profile = simple_generic_profile(self.base_topic, self.quantities, self.commands)
        return SimulatedMqttDevice(self.resource, self.recording, profile, SystemClock())


class Rack:
    """Simulated devices on the broker, served from their own thread and event loop; stop
    it and they fall silent at once, as a meter whose cable is pulled."""

    def __init__(self, port: int, rigs: Sequence[Rig]) -> None:
        self.port = port
        self.devices = [rig.simulator() for rig in rigs]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.task: asyncio.Task[None] | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(
            serve_on_broker(
                "127.0.0.1", self.port, self.devices, tick_interval_s=0.5, max_retry_s=1.0
            )
        )
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.task)
        self.loop.close()

    def start(self) -> Rack:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=10)


# --- the broker, for a whole module's community ---------------------------------------------


def start_mosquitto(folder: Path) -> Mosquitto:
    """A Mosquitto broker as the `mosquitto` fixture starts it, for a module-scoped street."""
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        raise RuntimeError("mosquitto is not installed: run scripts/ensure-system-packages")
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        f"user {getpass.getuser()}\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_inflight_messages 1000\n"
        "set_tcp_nodelay true\n"
    )
    broker = Mosquitto(port=port, config=config)
    broker.start()
    return broker


# --- the ledger as a home stored it ---------------------------------------------------------


@dataclass(frozen=True)
class StoredRecord:
    kind: str
    signer: str
    body: dict[str, Any]
    height: int


def stored_records(ledger_file: Path, genesis: Genesis) -> list[StoredRecord]:
    """Every record of a home's best chain, read from its SQLite ledger (read-only)."""
    chain = StoredChain(ledger_file, genesis)
    try:
        return [
            StoredRecord(r["body"]["kind"], r["signer"], r["body"], block.height)
            for block in chain.blocks()
            for r in block.wire["records"]
        ]
    finally:
        chain.db.close()


def chain_verifies(ledger_file: Path, genesis: Genesis) -> tuple[bool, str]:
    """Whether every block, signature and the stored state of a home's ledger check out."""
    chain = StoredChain(ledger_file, genesis)
    try:
        report = chain.verify()
        return report.ok, report.message
    finally:
        chain.db.close()


# --- the WebSocket, as Home Assistant hears it ----------------------------------------------


class WebSocketListener:
    """Collects every event a home pushes on `GET /api/v1/ws`, on its own thread."""

    def __init__(self, url: str, token: str) -> None:
        self.url = f"{url}/api/v1/ws"
        self.token = token
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.task: asyncio.Task[None] | None = None
        self.hello = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self._listen())
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.task)
        self.loop.close()

    async def _listen(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(self.url, headers=headers) as ws,
        ):
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data)
                with self._lock:
                    self._events.append(event)
                if event.get("event") == "hello":
                    self.hello.set()

    def start(self, timeout: float = 10.0) -> WebSocketListener:
        self.thread.start()
        if not self.hello.wait(timeout):
            raise TimeoutError(f"no hello on {self.url}")
        return self

    def events(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._events if e.get("event") == name]

    def stop(self) -> None:
        if self.task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=10)


def sleep_until(at_ms: int) -> None:
    """Sleep until the wall clock reads `at_ms`."""
    delay = (at_ms - now_ms()) / 1000
    if delay > 0:
        time.sleep(delay)


def process_alive(process: subprocess.Popen[str] | None) -> bool:
    return process is not None and process.poll() is None
