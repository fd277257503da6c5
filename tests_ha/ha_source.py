"""A REAL edge controller whose battery is Home Assistant entities: `energy-p2p-edge run`
(this same Python 3.14, the checkout's code) on an MQTT broker of its own (amqtt, in its
own process), one home in its own community sealing its own blocks, with a `homeassistant`
battery that follows no entity until the integration's options pick them.

The test plays the registrar (registration, top-ups) and a neighbour who buys (a signed
acceptance posted to the home), through the home's own `POST records`.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from edge_controller.ledger import Consensus, Genesis, KeyPair, sign_record

from .edge import CHECKOUT, EdgeHome

BATTERY = "ha-house/battery"
BROKER = """
import asyncio, sys
from amqtt.broker import Broker

async def main():
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{sys.argv[1]}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HaSourceHome:
    """The running home, its API, and the keys the test signs with."""

    folder: Path
    home: EdgeHome
    registrar: KeyPair
    buyer: KeyPair
    genesis: Genesis
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _seq: dict[str, int] = field(default_factory=dict)

    def signed(self, key: KeyPair, **body: Any) -> dict[str, Any]:
        """A record of `key` with its next sequence number, in its wire form."""
        self._seq[key.account] = self._seq.get(key.account, 0) + 1
        full = {"seq": self._seq[key.account], "time": int(time.time() * 1000), **body}
        return sign_record(key, self.genesis.community_id, full).to_wire()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """The home's API, as the test (not Home Assistant) calls it."""
        headers = {"Authorization": f"Bearer {self.home.token}"}
        url = f"http://{self.home.host}:{self.home.port}/api/v1/{path}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, json=body, headers=headers) as response,
        ):
            answer = await response.json(content_type=None)
            assert response.status < 300, (method, path, response.status, answer)
            return answer

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def start_home(folder: Path) -> HaSourceHome:
    """Write the community and the home's edge.yaml, start the broker and the home."""
    node, meter, registrar, buyer = (KeyPair.generate() for _ in range(4))
    data = folder / "ha-house"
    data.mkdir(parents=True)
    node.save(data / "node.key")
    meter.save(data / "meter.key")
    genesis = Genesis(
        name="Relay Street",
        currency="RLY",
        time=int(time.time() * 1000) - 1_000,
        registrars=(registrar.public_hex,),
        consensus=Consensus(mode="poa", block_interval_ms=1_000, sealers=(node.public_hex,)),
    )
    genesis.save(folder / "genesis.json")
    broker_port, api_port = free_port(), free_port()
    config = {
        "name": "HA House",
        "data_dir": str(data),
        "genesis": str(folder / "genesis.json"),
        "community_broker": {"host": "127.0.0.1", "port": broker_port},
        "api": {"host": "127.0.0.1", "port": api_port, "zeroconf": False},
        "control_interval_s": 1,
        "devices": [
            {
                "id": "battery",
                "role": "battery",
                "resource": BATTERY,
                "stale_after_s": 8,
                "profile": {"profile": "homeassistant"},
            }
        ],
        "policy": {
            "sell": {
                "battery": {
                    "enable_soc_percent": 60,
                    "disable_soc_percent": 50,
                    "reserve_percent": 20,
                    "enable_delay_ms": 0,
                    "min_offer_wh": 1,
                },
                "pv": None,
                "fuel_cell": None,
                "delivery_lead_ms": 0,
                "delivery_window_ms": 20_000,
                "offer_validity_ms": 20_000,
                "min_offer_interval_ms": 600_000,
                "answer_requests": False,
            },
            "buy": {"auto_accept": False},
        },
    }
    edge_yaml = folder / "edge.yaml"
    edge_yaml.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    home = HaSourceHome(
        folder,
        EdgeHome("HA House", node.account, "127.0.0.1", api_port, ""),
        registrar,
        buyer,
        genesis,
    )
    log = (folder / "edge.log").open("wb")
    home.processes.append(
        subprocess.Popen(
            [sys.executable, "-c", BROKER, str(broker_port)], stdout=log, stderr=subprocess.STDOUT
        )
    )
    home.processes.append(
        subprocess.Popen(
            [sys.executable, "-m", "edge_controller", "run", "-c", str(edge_yaml)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=CHECKOUT,
            env=env,
        )
    )
    token_file = data / "api-token"
    deadline = time.monotonic() + 60
    while not _listening(api_port) or not token_file.exists():
        if time.monotonic() > deadline or any(p.poll() is not None for p in home.processes):
            home.stop()
            raise RuntimeError(
                f"the edge controller did not start:\n{(folder / 'edge.log').read_text()[-3000:]}"
            )
        time.sleep(0.1)
    home.home = EdgeHome(
        "HA House", node.account, "127.0.0.1", api_port, token_file.read_text().strip()
    )
    return home


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def register(home: HaSourceHome) -> None:
    """The registrar certifies the battery (2 kW, 10 kWh, metered) and funds both homes."""
    meter = KeyPair.load(home.folder / "ha-house" / "meter.key")
    records = [
        home.signed(
            home.registrar,
            kind="registration",
            resource=BATTERY,
            owner=home.home.account,
            resource_kind="battery",
            power_w=2_000,
            capacity_wh=10_000,
            available_wh=9_000,
            meter=meter.public_hex,
        ),
        home.signed(home.registrar, kind="topup", to=home.home.account, amount=100_000),
        home.signed(home.registrar, kind="topup", to=home.buyer.account, amount=100_000),
    ]
    for record in records:
        await home.call("POST", "records", record)


def trade_power_w(offer: dict[str, Any]) -> int:
    """The power an energy offer's trade asks of the battery: its Wh over its window."""
    return math.ceil(offer["quantity"] * 3_600_000 / (offer["end"] - offer["start"]))


async def wait_for(check: Any, within: float = 30.0) -> Any:
    """The first truthy result of the coroutine function `check`, polled every 0.2 s."""
    deadline = time.monotonic() + within
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing from {check} within {within} s")
        await asyncio.sleep(0.2)
    return result


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
