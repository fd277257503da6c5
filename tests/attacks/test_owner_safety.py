"""Issue 19, owner safety: the owner's token can no longer drain the wallet in one call,
the token never travels in a URL, the status page tells browsers to contain it, the data
directory is its owner's alone, and the sample configuration keeps the API on loopback.

Against real homes: the street of tests/edge (three `Home`s on a real Mosquitto, each
with its real API), spoken to over HTTP as a holder of the token would.
"""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_controller.app.identity import secure_data_dir
from edge_controller.config import parse_config
from edge_controller.market import (
    Accept,
    AcceptanceCriteria,
    DecisionReason,
    MarketOffer,
    OfferIntent,
    QuantityRange,
    Reject,
    SellerStanding,
    SpendingLimits,
    evaluate_offer,
)
from edge_controller.usb.store import UsbStore
from tests.conftest import Mosquitto
from tests.edge.api_support import TOP_UP, Street, eventually, running_street
from tests.edge.test_config import sample_document

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def street(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Street]:
    async with running_street(tmp_path, mosquitto.port) as community:
        yield community


async def test_one_call_cannot_drain_the_wallet(street: Street) -> None:
    # A colluding seller: 1 Wh at 10^8 per kWh is the buyer's whole wallet.
    greedy = await street.sunny.offer(quantity=1, price=100_000_000)
    await street.in_a_block_everywhere(greedy["id"])
    message = await street.flat.refused(
        "POST",
        f"offers/{greedy['id']}/accept",
        {"quantity": 1},
        status=409,
        code="price_above_ceiling",
    )
    assert "2000" in message
    # Nor as a counter-offer, nor by turning automatic buying loose in the same call.
    await street.flat.refused(
        "POST",
        f"offers/{greedy['id']}/accept",
        {"quantity": 1, "price": 99_000_000},
        status=409,
        code="price_above_ceiling",
    )
    loose = {"buy": {"auto_accept": True, "max_price": 1_000_000_000}}
    answer = await street.flat.call("PUT", "policy", loose)
    assert answer.status == 422 and answer.body["error"]["code"] == "invalid_policy"
    assert "buy.max_price" in answer.body["error"]["message"]
    # A price under the ceiling but a trade over the per-trade limit.
    dear = await street.sunny.offer(quantity=1_000, price=2_000)  # 2 000 milli-units
    await street.in_a_block_everywhere(dear["id"])
    tight = {"limits": {"price_ceiling": 2_000, "max_trade_cost": 1_000, "max_daily_cost": 1_500}}
    assert (await street.flat.call("PUT", "policy", tight)).status == 200
    await street.flat.refused(
        "POST", f"offers/{dear['id']}/accept", {}, status=409, code="trade_limit_exceeded"
    )
    bought = await street.flat.post(f"offers/{dear['id']}/accept", {"quantity": 500})
    await street.in_a_block_everywhere(bought["acceptance"])
    await street.flat.refused(
        "POST",
        f"offers/{dear['id']}/accept",
        {"quantity": 400},  # 800 more: 1 800 in a day, over 1 500
        status=409,
        code="daily_limit_exceeded",
    )
    wallet = await street.flat.get("wallet")
    # The one purchase within the limits is held in escrow until delivery; nothing else.
    assert (wallet["balance"], wallet["escrow"]) == (TOP_UP - 1_000, 1_000)
    print(f"drain: 0 of {TOP_UP} lost to a 10^8 per kWh offer; 1 000 spent within the limits")


async def test_automatic_buying_keeps_to_the_limits(street: Street) -> None:
    policy = {
        "buy": {"auto_accept": True, "max_price": 2_000, "energy": {"min": 1, "max": 5_000}},
        "limits": {"price_ceiling": 2_000, "max_trade_cost": 500, "max_daily_cost": 1_200},
    }
    assert (await street.flat.call("PUT", "policy", policy)).status == 200
    flat = street.homes["flat"]
    offers = []
    for _ in range(4):
        offer = await street.sunny.offer(quantity=400, price=2_000)  # 800 each in full
        offers.append(offer["id"])
        await street.in_a_block_everywhere(offer["id"])

        async def judged(offer_id: str = offer["id"]) -> bool:
            return offer_id in flat.trader._evaluated  # the trader judged it, once

        await eventually(judged, "Flat 2's automatic buyer to judge the offer")
    account = street.account("flat")

    async def settled_in() -> list[int]:
        trades = [t for t in flat.ledger.state.trades.rows.values() if t.buyer == account]
        pooled = [r for r in flat.ledger.pool.values() if r.account == account]
        return [t.cost for t in trades] if len(trades) == 3 and not pooled else []

    costs = await eventually(settled_in, "three automatic purchases in blocks")
    # Cut to 500 per trade, and to what was left of 1 200 a day; the fourth not at all.
    assert sorted(costs) == [200, 500, 500]
    assert sum(costs) == 1_200
    print(f"automatic buying: 4 offers of 800, bought {costs} (limit 500 per trade, 1 200 a day)")


async def test_no_token_in_a_url_and_a_page_that_browsers_contain(street: Street) -> None:
    flat = street.flat
    async with street.session.ws_connect(f"{flat.url}/api/v1/ws?token={flat.token}") as ws:
        await ws.send_json({"subscribe": "everything"})
        error = await ws.receive_json(timeout=5)
        assert error["data"]["code"] == "unauthorized"
        await ws.receive(timeout=5)
        assert ws.close_code == 4401
    answer = await flat.call("GET", f"status?token={flat.token}", token="")
    assert answer.status == 401
    async with street.session.get(f"{flat.url}/?token={flat.token}") as response:
        page = await response.text()
        headers = response.headers
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert flat.token not in page
    assert "sessionStorage" in page and "localStorage.setItem" not in page
    assert "?token=" not in page and 'onclick="' not in page and 'style="' not in page


async def test_the_data_directory_is_its_owners_alone(street: Street, tmp_path: Path) -> None:
    home = street.homes["flat"]
    assert stat.S_IMODE(home.data_dir.stat().st_mode) == 0o700
    databases = sorted(home.data_dir.glob("*.sqlite3*"))
    assert {p.name for p in databases} >= {"ledger.sqlite3", "outbox.sqlite3"}
    assert any(p.name.endswith("-wal") for p in databases)
    for path in databases:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # USB charging's file links phones' serial numbers to wallets.
    store = UsbStore(tmp_path / "usb" / "usb.sqlite3")
    store.close()
    for path in (tmp_path / "usb").glob("usb.sqlite3*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_an_older_install_is_narrowed_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "ledger.sqlite3").touch(mode=0o644)
    (data / "usb.sqlite3").touch(mode=0o644)
    data.chmod(0o755)
    secure_data_dir(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("ledger.sqlite3", "usb.sqlite3", "outbox.sqlite3"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name


def test_the_sample_configuration_binds_to_loopback(tmp_path: Path) -> None:
    sample = ROOT / "deploy" / "edge.yaml"
    config = parse_config(sample_document(tmp_path), "edge.yaml", tmp_path)
    assert config.api.host == "127.0.0.1"
    assert "Home Assistant" in sample.read_text() and "saddr" in sample.read_text()
    limits = config.policy.limits
    assert limits.price_ceiling >= config.policy.buy.max_price


def test_the_limits_cut_or_refuse_an_automatic_purchase() -> None:
    """The market's side alone: the same limits, decided without a home."""
    hour = 3_600_000
    terms = OfferIntent("b", "energy", 1_000, 2_000, 2 * hour, 3 * hour, 2 * hour)
    criteria = AcceptanceCriteria(auto_accept=True, max_price=2_000, energy=QuantityRange(1, 5_000))
    limits = SpendingLimits(price_ceiling=2_000, max_trade_cost=500, max_daily_cost=1_200)

    def decide(spent: int, price: int = 2_000) -> object:
        offer = MarketOffer("o", "seller", OfferIntent(**{**vars(terms), "price": price}))
        return evaluate_offer(
            criteria,
            offer,
            me="me",
            now_ms=hour,
            seller=SellerStanding(),
            limits=limits,
            spent_today=spent,
        )

    cut = decide(0)
    assert isinstance(cut, Accept) and cut.quantity == 250  # 500 at 2 000 per kWh
    last = decide(1_000)
    assert isinstance(last, Accept) and last.quantity == 100  # the 200 left of the day
    none = decide(1_200)
    assert isinstance(none, Reject) and none.reason is DecisionReason.DAILY_LIMIT
    loose = AcceptanceCriteria(auto_accept=True, max_price=10**9, energy=QuantityRange(1, 5_000))
    dear = evaluate_offer(
        loose,
        MarketOffer("o", "s", OfferIntent(**{**vars(terms), "price": 10**9})),
        me="me",
        now_ms=hour,
        seller=SellerStanding(),
        limits=limits,
    )
    assert isinstance(dear, Reject) and dear.reason is DecisionReason.PRICE_ABOVE_CEILING
