"""Issue 18's money attacks against real homes: two in-process `Home`s (seller and buyer,
both sealers, latest rules) on a real Mosquitto, each serving its real API. The attacker is
a member: records signed with its own valid keys (the buyer's node key, the seller's meter
key, a second key of the seller's) and pushed through a home's API, from where MQTT carries
them to the other home and into blocks. Each test shows the attack refused with its reason
code by the homes; the same attacks succeed under the first rules in test_money_rules.py.

Both homes run their control cycle once, at start: every record here is the test's, except
the seller's settlement from the metered allocation (`POST settle`, the app's own path) and
the buyer's automatic judgement of an offer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from itertools import count
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from edge_controller.api import ApiServer
from edge_controller.app.home import Home
from edge_controller.ledger import (
    LATEST_RULES,
    Consensus,
    Genesis,
    KeyPair,
    Record,
    sign_record,
)
from edge_controller.market import AcceptanceCriteria, MarketPolicy, SpendingLimits
from edge_controller.network import BrokerSettings
from tests.edge.api_support import Client, buyer_policy, error_message, eventually, seller_policy
from tests.edge.delivery_support import start_mosquitto

pytestmark = pytest.mark.asyncio(loop_scope="module")

PERIOD_MS = 500  # the seller settles a metered sale 1.5 s after its window
POWER_W = 5_000  # each of the seller's fuel cells
TOP_UP = 1_000_000
PRICE = 1_000_000  # per kWh: 4 Wh cost 4 000 milli-units
LEAD_MS = 2_500  # a window opens this long after the offer, time for the trade to be sealed
WINDOW_MS = 3_000  # 5 kW for 3 s: 4.2 Wh, so a 4 Wh trade is the most a fuel cell sells


def dear_buyer_policy() -> MarketPolicy:
    """Buys by hand, with a price ceiling opened to `PRICE`: the owner's spending limits
    would refuse the acceptance, and the ledger's money rules are what these tests attack."""
    return replace(buyer_policy(), limits=SpendingLimits(price_ceiling=PRICE))


@dataclass
class Street:
    """The homes, their API clients and the member keys the attacker signs with."""

    genesis: Genesis
    registrar: KeyPair
    homes: dict[str, Home]
    clients: dict[str, Client]
    keys: dict[str, KeyPair]
    meters: dict[str, KeyPair]
    shill: KeyPair = field(default_factory=KeyPair.generate)
    _seq: dict[str, count[int]] = field(default_factory=dict)

    def sign(self, key: KeyPair, kind: str, **fields: Any) -> dict[str, Any]:
        """A record of `kind` signed by `key` with its next sequence number, as JSON: a
        home's own keys take it from the home, which signs with them too."""
        owner = next((n for n in self.homes if key in (self.keys[n], self.meters[n])), None)
        if owner is not None:
            seq = self.homes[owner].node.next_seq(key)
        else:
            seq = next(self._seq.setdefault(key.public_hex, count(1)))
        body = {"kind": kind, "seq": seq, "time": now_ms(), **fields}
        record: Record = sign_record(key, self.genesis.community_id, body)
        return record.to_wire()

    def account(self, home: str) -> str:
        return self.homes[home].account

    async def refused(self, home: str, wire: dict[str, Any], code: str) -> str:
        """Push `wire` through `home`'s API, expect it refused with `code`; the message."""
        answer = await self.clients[home].call("POST", "records", wire)
        assert answer.status in (400, 404, 409), answer
        return error_message(answer, code)

    async def in_blocks(self, record_id: str) -> None:
        """Wait until both homes hold `record_id` in a block."""

        async def everywhere() -> bool:
            return all(h.ledger.is_recorded(record_id) for h in self.homes.values())

        await eventually(everywhere, f"record {record_id[:10]} in both homes' blocks")

    async def push(self, home: str, wire: dict[str, Any]) -> str:
        """Push `wire` through `home`'s API and wait until both homes hold it in a block."""
        record_id: str = (await self.clients[home].post("records", wire))["id"]
        await self.in_blocks(record_id)
        return record_id

    async def sale(self, resource: str, buyer: str, wh: int = 4) -> tuple[str, int, int]:
        """The seller offers `wh` of `resource` to `buyer` (a home, or the shill's account)
        over a window opening shortly; `buyer` accepts. Returns (trade, start, end)."""
        start = now_ms() + LEAD_MS
        end = start + WINDOW_MS
        to = self.account(buyer) if buyer in self.homes else self.shill.account
        offer = await self.clients["seller"].post(
            "offers",
            {
                "resource": resource,
                "mode": "energy",
                "quantity": wh,
                "price": PRICE,
                "start": start,
                "end": end,
                "expires": start,
                "to": [to],
            },
        )
        await self.in_blocks(offer["id"])
        if buyer in self.homes:
            trade_id = (await self.clients[buyer].post(f"offers/{offer['id']}/accept"))[
                "acceptance"
            ]
            await self.in_blocks(trade_id)
        else:
            acceptance = self.sign(self.shill, "acceptance", offer=offer["id"], quantity=wh)
            trade_id = await self.push("seller", acceptance)
        return trade_id, start, end

    async def read(self, resource: str, start: int, end: int, export_wh: int) -> str:
        """The seller's meter signs what `resource` exported over [start, end)."""
        reading = self.sign(
            self.meters["seller"],
            "meter_reading",
            resource=resource,
            start=start,
            end=end,
            export_wh=export_wh,
            import_wh=0,
        )
        return await self.push("seller", reading)

    async def ended(self, end: int) -> None:
        """Wait until both homes' chains have a block at or after `end`."""

        async def past() -> bool:
            return all(h.ledger.head.time >= end for h in self.homes.values())

        await eventually(past, "a block after the window's end")

    def trade(self, home: str, trade_id: str) -> Any:
        return self.homes[home].ledger.state.trades.rows[trade_id]


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def street(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Street]:
    folder = tmp_path_factory.mktemp("money")
    broker = start_mosquitto(folder)
    registrar = KeyPair.generate()
    keys = {"seller": KeyPair.generate(), "buyer": KeyPair.generate()}
    meters = {name: KeyPair.generate() for name in keys}
    genesis = Genesis(
        name="Money Street",
        currency="TST",
        time=now_ms() - 1_000,
        registrars=(registrar.public_hex,),
        consensus=Consensus(
            mode="poa",
            block_interval_ms=500,
            sealers=tuple(k.public_hex for k in keys.values()),
            confirmations=2,
        ),
    )
    assert genesis.consensus.rules == LATEST_RULES
    homes: dict[str, Home] = {}
    servers: list[ApiServer] = []
    clients: dict[str, Client] = {}
    async with aiohttp.ClientSession() as session:
        try:
            for name, key in keys.items():
                home = Home(
                    name=name,
                    data_dir=folder / name,
                    genesis=genesis,
                    node_key=key,
                    meter_key=meters[name],
                    community_broker=BrokerSettings(host="127.0.0.1", port=broker.port),
                    policy=seller_policy() if name == "seller" else dear_buyer_policy(),
                    # One control cycle, at start: the test says when anything happens.
                    control_interval_ms=3_600_000,
                    settlement_period_ms=PERIOD_MS,
                )
                homes[name] = home
                await home.start()
                server = ApiServer(home, f"token-of-{name}")
                await server.start()
                servers.append(server)
                clients[name] = Client(session, server.url, f"token-of-{name}")
            s = Street(genesis, registrar, homes, clients, keys, meters)
            setup = [
                s.sign(
                    registrar,
                    "registration",
                    resource=f"seller/fc-{n}",
                    owner=keys["seller"].account,
                    resource_kind="fuel_cell",
                    power_w=POWER_W,
                    capacity_wh=10_000,
                    meter=meters["seller"].public_hex,
                )
                for n in (1, 2, 3)
            ] + [s.sign(registrar, "topup", to=k.account, amount=TOP_UP) for k in keys.values()]
            for wire in setup:
                await s.push("seller", wire)
            yield s
        finally:
            for server in servers:
                await server.stop()
            for home in homes.values():
                await home.stop()
            broker.stop()


async def test_a_buyer_cannot_settle_a_metered_delivery_for_nothing(street: Street) -> None:
    trade_id, start, end = await street.sale("seller/fc-1", "buyer")
    await street.read("seller/fc-1", start, end, 4)  # the meter shows full delivery
    await street.ended(end)
    buyer = street.keys["buyer"]
    nothing = street.sign(buyer, "settlement", trade=trade_id, delivered_wh=0)
    message = await street.refused("buyer", nothing, "below_metered")
    assert "4 Wh" in message
    # Nor by disputing it: a dispute needs the buyer's own registered meter behind it.
    dispute = street.sign(buyer, "dispute", trade=trade_id, measured_wh=0)
    await street.refused("buyer", dispute, "no_meter")
    # The seller settles from the ledger's allocation of its meter's readings.

    async def settled_by_the_seller() -> bool:
        answer = await street.clients["seller"].call("POST", "settle")
        assert answer.status == 200, answer
        return trade_id in answer.body["settled"]

    await eventually(settled_by_the_seller, "the seller's settlement from the meter")
    await street.in_blocks(trade_id)

    async def paid_everywhere() -> bool:
        return all(street.trade(h, trade_id).status == "settled" for h in street.homes)

    await eventually(paid_everywhere, "the trade settled in both homes")
    settled = street.trade("buyer", trade_id)
    assert (settled.paid, settled.refunded) == (settled.cost, 0) and settled.cost == 4_000
    await street.refused("buyer", nothing, "already_settled")


async def test_a_meter_cannot_invent_delivered_energy(street: Street) -> None:
    trade_id, _, end = await street.sale("seller/fc-2", "buyer")
    # 10^12 Wh over 15 s on a 5 kW fuel cell, ending with the trade's window.
    invented = street.sign(
        street.meters["seller"],
        "meter_reading",
        resource="seller/fc-2",
        start=end - 15_000,
        end=end,
        export_wh=10**12,
        import_wh=0,
    )
    message = await street.refused("seller", invented, "exceeds_rating")
    assert "at most 21 Wh" in message
    await street.ended(end)
    whole = street.sign(street.keys["seller"], "settlement", trade=trade_id, delivered_wh=4)
    await street.refused("seller", whole, "exceeds_metered")
    # What the rating allows over the period is taken, and shared pro rata: 21 Wh over
    # 15 s give the 3 s window 4 Wh, the trade.
    await street.read("seller/fc-2", end - 15_000, end, 21)
    await street.push("seller", whole)
    assert street.trade("buyer", trade_id).paid == 4_000


async def test_a_key_the_seller_funded_cannot_rate_it_up_for_automatic_buyers(
    street: Street,
) -> None:
    seller, shill = street.keys["seller"], street.shill
    await street.push("seller", street.sign(seller, "transfer", to=shill.account, amount=50_000))
    # Even a registrar's top-up of the second key does not clean the seller's money in it.
    await street.push("seller", street.sign(street.registrar, "topup", to=shill.account, amount=1))
    trade_id, start, end = await street.sale("seller/fc-3", "shill")
    await street.read("seller/fc-3", start, end, 4)
    await street.ended(end)
    await street.push("seller", street.sign(seller, "settlement", trade=trade_id, delivered_wh=4))
    wash = street.sign(shill, "rating", trade=trade_id, score=10)
    message = await street.refused("seller", wash, "not_independent")
    assert "funded by" in message
    await street.refused("buyer", wash, "not_independent")
    for home in street.homes.values():
        assert home.ledger.state.account(seller.account).rating_count == 0

    # The buyer's home buys automatically from sellers rated 8 or more: it turns the
    # seller's next offer down, as the seller has no rating that counts.
    policy = MarketPolicy(
        sell=buyer_policy().sell,
        buy=AcceptanceCriteria(
            auto_accept=True,
            min_rating=8,
            allow_unrated_sellers=False,
            announce_rejections=True,
        ),
    )
    answer = await street.clients["buyer"].call("PUT", "policy", policy.to_dict())
    assert answer.status == 200, answer
    decided: list[Record] = []
    street.homes["buyer"].node.accepted.append(decided.append)
    offer = await street.clients["seller"].post(
        "offers",
        {
            "resource": "seller/fc-3",
            "mode": "energy",
            "quantity": 4,
            "price": PRICE,
            "start": now_ms() + 60_000,
            "end": now_ms() + 63_000,
            "expires": now_ms() + 60_000,
            "to": [street.account("buyer")],
        },
    )

    async def judged() -> list[Record]:
        return [
            r
            for r in decided
            if r.body.get("target") == offer["id"] or r.body.get("offer") == offer["id"]
        ]

    decisions = await eventually(judged, "the buyer's automatic decision on the offer")
    assert [r.kind for r in decisions] == ["rejection"]
    assert "no ratings" in decisions[0].body["reason"]
