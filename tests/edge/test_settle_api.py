"""`POST settle`: the owner (Home Assistant's "Settle now" button) settles due sales at once.

Two real `Home`s on a real Mosquitto serve their real `ApiServer`s. The seller's control
cycle runs only once, at start, so the only settlement there can be is the one the test
asks for; its settlement period is half a second, so a sale is due seconds after its
window ends (its meter is silent: it is paid for what was metered, nothing).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge_controller.api import ApiServer
from edge_controller.app.home import Home
from edge_controller.ledger import Consensus, Genesis, KeyPair, sign_record
from edge_controller.market import MarketPolicy, SpendingLimits
from edge_controller.network import BrokerSettings
from tests.conftest import Mosquitto

from .api_support import Client, buyer_policy, error_message, eventually, seller_policy

FUEL_CELL = "seller/fuel-cell"
PERIOD_MS = 500
TOP_UP = 100_000
PRICE = 1_000_000  # per kWh: 5 kW for 2 s (2.8 Wh) costs 2 778 milli-units


def dear_buyer_policy() -> MarketPolicy:
    """Buys by hand, with spending limits that let it pay `PRICE`."""
    return replace(buyer_policy(), limits=SpendingLimits(price_ceiling=PRICE))


@dataclass
class Pair:
    seller: Client
    buyer: Client
    seller_home: Home


@pytest.fixture
async def pair(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Pair]:
    registrar = KeyPair.generate()
    keys = {"seller": KeyPair.generate(), "buyer": KeyPair.generate()}
    genesis = Genesis(
        name="Settle Street",
        currency="TST",
        time=int(time.time() * 1000) - 1_000,
        registrars=(registrar.public_hex,),
        consensus=Consensus(
            mode="poa",
            block_interval_ms=500,
            sealers=tuple(k.public_hex for k in keys.values()),
            confirmations=2,
        ),
    )
    broker = BrokerSettings(host="127.0.0.1", port=mosquitto.port)
    homes: dict[str, Home] = {}
    servers: list[ApiServer] = []
    clients: dict[str, Client] = {}
    async with aiohttp.ClientSession() as session:
        try:
            for slug, key in keys.items():
                home = Home(
                    name=slug,
                    data_dir=tmp_path / slug,
                    genesis=genesis,
                    node_key=key,
                    meter_key=KeyPair.generate(),
                    community_broker=broker,
                    policy=seller_policy() if slug == "seller" else dear_buyer_policy(),
                    # One control cycle, at start: no settlement but the one asked for.
                    control_interval_ms=3_600_000 if slug == "seller" else 250,
                    settlement_period_ms=PERIOD_MS,
                )
                homes[slug] = home
                await home.start()
                server = ApiServer(home, f"token-of-{slug}")
                await server.start()
                servers.append(server)
                clients[slug] = Client(session, server.url, f"token-of-{slug}")
            seq = iter(range(1, 100))

            def registrar_record(**body: Any) -> dict[str, Any]:
                full = {"seq": next(seq), "time": int(time.time() * 1000), **body}
                return sign_record(registrar, genesis.community_id, full).to_wire()

            for record in (
                registrar_record(
                    kind="registration",
                    resource=FUEL_CELL,
                    owner=homes["seller"].account,
                    resource_kind="fuel_cell",
                    power_w=5_000,
                    capacity_wh=0,
                    available_wh=0,
                ),
                *(
                    registrar_record(kind="topup", to=h.account, amount=TOP_UP)
                    for h in homes.values()
                ),
            ):
                await clients["seller"].post("records", record)

            async def registered() -> bool:
                for client in clients.values():
                    if (await client.get("wallet"))["balance"] != TOP_UP:
                        return False
                return all(FUEL_CELL in h.ledger.state.resources for h in homes.values())

            await eventually(registered, "both homes to hold the registration and top-ups")
            yield Pair(clients["seller"], clients["buyer"], homes["seller"])
        finally:
            for server in servers:
                await server.stop()
            for home in homes.values():
                await home.stop()


async def test_settle_needs_the_token(pair: Pair) -> None:
    answer = await pair.seller.call("POST", "settle", {}, token="wrong")
    assert answer.status == 401
    error_message(answer, "unauthorized")


async def test_settle_now_settles_a_due_sale_once_and_nothing_before_it_is_due(
    pair: Pair,
) -> None:
    now = (await pair.seller.get("status"))["time"]
    offer = await pair.seller.post(
        "offers",
        {
            "resource": FUEL_CELL,
            "mode": "capacity",
            "quantity": 5_000,
            "price": PRICE,
            "start": now + 3_000,
            "end": now + 5_000,
            "expires": now + 3_000,
        },
    )

    async def open_for_the_buyer() -> bool:
        offers = (await pair.buyer.get("offers"))["offers"]
        return any(o["id"] == offer["id"] and o["status"] == "open" for o in offers)

    await eventually(open_for_the_buyer, "the offer open in the buyer's home")
    trade_id = (await pair.buyer.post(f"offers/{offer['id']}/accept"))["acceptance"]

    async def trade_held() -> bool:
        return pair.seller_home.ledger.is_recorded(trade_id)

    await eventually(trade_held, "the trade in a block in the seller's home")
    # The window has not even ended: nothing is due.
    early = await pair.seller.call("POST", "settle")
    assert (early.status, early.body) == (200, {"settled": []})

    # A silent meter: due six grace periods (1.5 settlement periods each) after the end.
    due = now + 5_000 + 6 * (PERIOD_MS + PERIOD_MS // 2)
    await asyncio.sleep(max(0.0, (due - (await pair.seller.get("status"))["time"]) / 1000) + 0.3)
    answer = await pair.seller.call("POST", "settle")
    assert (answer.status, answer.body) == (200, {"settled": [trade_id]})

    async def settled_everywhere() -> bool:
        for client in (pair.seller, pair.buyer):
            trade = await client.trade(trade_id)
            if trade is None or trade["status"] != "settled":
                return False
        return True

    await eventually(settled_everywhere, "the trade settled in both homes")
    trade = await pair.buyer.trade(trade_id)
    assert trade is not None
    # Nothing was metered: nothing paid, the whole price refunded.
    assert trade["cost"] > 0
    assert (trade["delivered_wh"], trade["paid"], trade["refunded"]) == (0, 0, trade["cost"])
    again = await pair.seller.call("POST", "settle")
    assert (again.status, again.body) == (200, {"settled": []})
