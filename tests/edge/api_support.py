"""A real in-process community for API tests: three `Home`s on a real Mosquitto, each with
its `ApiServer` on a loopback port, and a small aiohttp client that speaks to them as
Home Assistant will (bearer token, JSON bodies, the documented error shape)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from edge_controller.api import ApiServer
from edge_controller.app.home import Home
from edge_controller.config import DeviceConfig
from edge_controller.devices import (
    Command,
    Quantity,
    SystemClock,
    serve_on_broker,
    simple_generic_profile,
)
from edge_controller.ledger import Consensus, Genesis, KeyPair, sign_record
from edge_controller.market import AcceptanceCriteria, MarketPolicy, SellPolicy
from edge_controller.network import BrokerSettings
from edge_controller.simulation import BatteryModel, SimulatedMqttDevice

T = TypeVar("T")

TOP_UP = 100_000  # milli-units each home starts with
BATTERY = "sunny/battery"  # 5 kWh battery at 60 %: 3 000 Wh available to sell
FUEL_CELL = "sunny/fuel-cell"  # 5 kW fuel cell, sold as capacity
BATTERY_QUANTITIES = (Quantity.SOC_PERCENT, Quantity.CAPACITY_WH, Quantity.BATTERY_POWER_W)
BLOCK_INTERVAL_MS = 500


class ApiRefusal(AssertionError):
    """An API call answered with another status than the test expected."""


@dataclass
class Answer:
    status: int
    body: Any


@dataclass
class Client:
    """One home's API, reached over loopback with its bearer token."""

    session: aiohttp.ClientSession
    url: str
    token: str

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Any call; `token=""` sends no Authorization header at all."""
        sent = dict(headers or {})
        token = self.token if token is None else token
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            kwargs: dict[str, Any] = {"json": body}
        else:
            kwargs = {"data": data}
        async with self.session.request(
            method, f"{self.url}/api/v1/{path}", headers=sent, **kwargs
        ) as response:
            text = await response.text()
            try:
                parsed: Any = await response.json(content_type=None) if text else None
            except ValueError:
                parsed = text
            return Answer(response.status, parsed)

    async def get(self, path: str) -> Any:
        answer = await self.call("GET", path)
        if answer.status != 200:
            raise ApiRefusal(f"GET {path}: HTTP {answer.status} {answer.body}")
        return answer.body

    async def post(self, path: str, body: Any = None) -> Any:
        answer = await self.call("POST", path, {} if body is None else body)
        if answer.status != 201:
            raise ApiRefusal(f"POST {path}: HTTP {answer.status} {answer.body}")
        return answer.body

    async def refused(
        self, method: str, path: str, body: Any = None, *, status: int, code: str
    ) -> str:
        """Assert the call is refused with `status` and the documented error shape carrying
        `code`; return the message for people."""
        answer = await self.call(method, path, body)
        assert answer.status == status, f"{method} {path}: {answer.status} {answer.body}"
        return error_message(answer, code)

    async def offer(self, **fields: Any) -> dict[str, Any]:
        """POST offers from this home; defaults: 500 Wh of the battery at 300 per kWh."""
        body = {"resource": BATTERY, "mode": "energy", "quantity": 500, "price": 300, **fields}
        created: dict[str, Any] = await self.post("offers", body)
        return created

    async def offer_status(self, offer_id: str) -> str:
        offer = await self.get(f"offers/{offer_id}")
        return str(offer["status"])

    async def trade(self, trade_id: str) -> dict[str, Any] | None:
        trades = (await self.get("trades"))["trades"]
        return next((t for t in trades if t["id"] == trade_id), None)


def error_message(answer: Answer, code: str) -> str:
    """Check `answer` has exactly the documented error shape with `code`."""
    assert isinstance(answer.body, dict) and set(answer.body) == {"error"}, answer.body
    error = answer.body["error"]
    assert set(error) == {"code", "message"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    return str(error["message"])


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    what: str,
    within: float = 15.0,
    every: float = 0.1,
) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `within` s."""
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = await check()
        except ApiRefusal as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {within}s waiting for {what} (last: {last!r})")


def seller_policy() -> MarketPolicy:
    """Sells only what the owner offers by hand (no threshold rules, no request answers),
    and confirms buyers' counter-offers at 90 % of the asking price or more."""
    return MarketPolicy(
        sell=SellPolicy(
            auto_sell=True,
            battery=None,
            pv=None,
            fuel_cell=None,
            answer_requests=False,
            min_counter_permille=900,
        ),
        buy=AcceptanceCriteria(auto_accept=False),
    )


def buyer_policy() -> MarketPolicy:
    """Buys only by hand through the API, so every acceptance in a test is the test's."""
    return MarketPolicy(
        sell=SellPolicy(auto_sell=False, battery=None, pv=None, fuel_cell=None),
        buy=AcceptanceCriteria(auto_accept=False),
    )


@dataclass
class Street:
    """Sunny House (a battery and a fuel cell, sells by hand), Flat 2 and Corner House
    (buy by hand): all three seal blocks every 0.5 s in turn."""

    folder: Path
    broker_port: int
    session: aiohttp.ClientSession
    registrar: KeyPair = field(default_factory=KeyPair.generate)
    homes: dict[str, Home] = field(default_factory=dict)
    servers: dict[str, ApiServer] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)
    battery: BatteryModel | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _seq: int = 0

    @property
    def sunny(self) -> Client:
        return self.clients["sunny"]

    @property
    def flat(self) -> Client:
        return self.clients["flat"]

    @property
    def corner(self) -> Client:
        return self.clients["corner"]

    def account(self, name: str) -> str:
        return self.homes[name].account

    async def start(self) -> None:
        clock = SystemClock()
        now = clock.now_ms()
        keys = {name: KeyPair.generate() for name in ("sunny", "flat", "corner")}
        self.genesis = Genesis(
            name="API Street",
            currency="TST",
            time=now - 1_000,
            registrars=(self.registrar.public_hex,),
            consensus=Consensus(
                mode="poa",
                block_interval_ms=BLOCK_INTERVAL_MS,
                sealers=tuple(k.public_hex for k in keys.values()),
                confirmations=2,
            ),
        )
        # The battery sits at 60 % of 5 kWh, neither charging nor discharging.
        self.battery = BatteryModel(5_000, start_ms=now, soc_percent=60.0)
        profile = simple_generic_profile(
            "sim/sunny/battery", BATTERY_QUANTITIES, (Command.BATTERY_SETPOINT_W,)
        )
        simulator = SimulatedMqttDevice("battery", self.battery, profile, clock)
        self._tasks.append(
            asyncio.create_task(
                serve_on_broker(
                    "127.0.0.1",
                    self.broker_port,
                    [simulator],
                    tick_interval_s=0.5,
                    max_retry_s=1.0,
                )
            )
        )
        broker = BrokerSettings(host="127.0.0.1", port=self.broker_port)
        names = {"sunny": "Sunny House", "flat": "Flat 2", "corner": "Corner House"}
        for slug, name in names.items():
            devices: tuple[DeviceConfig, ...] = ()
            if slug == "sunny":
                devices = (DeviceConfig("battery", "battery", profile, BATTERY, 10_000),)
            home = Home(
                name=name,
                data_dir=self.folder / slug,
                genesis=self.genesis,
                node_key=keys[slug],
                meter_key=KeyPair.generate(),
                community_broker=broker,
                devices=devices,
                policy=seller_policy() if slug == "sunny" else buyer_policy(),
                clock=clock,
                control_interval_ms=250,
            )
            token = f"token-of-{slug}"
            server = ApiServer(home, token)
            self.homes[slug] = home
            await home.start()
            await server.start()
            self.servers[slug] = server
            self.clients[slug] = Client(self.session, server.url, token)
        await self._register()

    def registrar_record(self, **body: Any) -> dict[str, Any]:
        """A record signed by the community's registrar, in its wire form."""
        self._seq += 1
        full = {"seq": self._seq, "time": int(time.time() * 1000), **body}
        return sign_record(self.registrar, self.genesis.community_id, full).to_wire()

    async def _register(self) -> None:
        """The registrar certifies Sunny's resources and tops every wallet up, relayed
        through Sunny's `POST records`; then wait until every home's ledger holds it all."""
        sunny = self.account("sunny")
        records = [
            self.registrar_record(
                kind="registration",
                resource=BATTERY,
                owner=sunny,
                resource_kind="battery",
                power_w=3_000,
                capacity_wh=5_000,
                available_wh=3_000,
            ),
            self.registrar_record(
                kind="registration",
                resource=FUEL_CELL,
                owner=sunny,
                resource_kind="fuel_cell",
                power_w=5_000,
                capacity_wh=0,
                available_wh=0,
            ),
            *(self.registrar_record(kind="topup", to=h.account, amount=TOP_UP) for h in self),
        ]
        for record in records:
            relayed = await self.sunny.post("records", record)
            assert relayed["kind"] == record["body"]["kind"]

        async def everyone_registered() -> bool:
            for client in self.clients.values():
                if (await client.get("wallet"))["balance"] != TOP_UP:
                    return False
            devices = await self.sunny.get("devices")
            return devices["devices"][0]["resource"] is not None and all(
                FUEL_CELL in h.ledger.state.resources for h in self
            )

        await eventually(everyone_registered, "every home to hold the registrations and top-ups")

    def __iter__(self) -> Any:
        return iter(self.homes.values())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for slug, server in self.servers.items():
            await server.stop()
            await self.homes[slug].stop()

    async def in_a_block_everywhere(self, record_id: str, within: float = 15.0) -> None:
        """Wait until every home's ledger holds `record_id` in a block."""

        async def held() -> bool:
            return all(h.ledger.is_recorded(record_id) for h in self)

        await eventually(held, f"record {record_id[:12]} in a block in every home", within)


@contextlib.asynccontextmanager
async def running_street(folder: Path, broker_port: int) -> AsyncIterator[Street]:
    """The street of homes with their APIs, started on the broker at `broker_port` and
    stopped when the block ends."""
    async with aiohttp.ClientSession() as session:
        community = Street(folder, broker_port, session)
        try:
            await community.start()
            yield community
        finally:
            await community.stop()
