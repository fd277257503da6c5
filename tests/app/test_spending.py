"""What a home spent in the last 24 hours (its spending limits' figure) comes from its own
purchases, not from a scan of every trade the community ever made, and stays exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_controller.app.spending import offer_cost, purchases, spent_today
from edge_controller.ledger import Ledger, SqliteStore
from edge_controller.market import DAY_MS
from tests.ledger.support import HOUR, Community


def every_trade(ledger: Ledger, account: str, now: int) -> int:
    """The figure as a scan of every trade and open commitment (what it must equal)."""
    state = ledger.state
    total = sum(
        t.cost for t in state.trades.values_all() if t.buyer == account and t.time >= now - DAY_MS
    )
    for acceptance in state.acceptances.values_all():
        if acceptance.buyer == account and acceptance.status == "pending":
            offer = state.offers.rows[acceptance.offer]
            total += offer_cost(offer, acceptance.quantity, acceptance.price)
    total += sum(
        o.best_bid_cost
        for o in state.offers.values_all()
        if o.best_bidder == account and o.status == "open"
    )
    return total


@pytest.fixture(params=["sqlite", "memory"])
def street(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Community, Ledger]:
    community = Community()
    store = SqliteStore(tmp_path / "ledger.db") if request.param == "sqlite" else None
    ledger = community.node(store)
    seller, buyer, rival = (community.key(n) for n in ("seller", "buyer", "rival"))
    community.seal(
        ledger,
        community.register("cell", seller, power_w=100_000, capacity_wh=1_000_000),
        community.topup(buyer, 50_000_000),
        community.topup(rival, 50_000_000),
    )
    return community, ledger


def test_the_day_s_purchases_are_counted_exactly_and_older_ones_leave(
    street: tuple[Community, Ledger],
) -> None:
    c, ledger = street
    seller, buyer, rival = c.key("seller"), c.key("buyer"), c.key("rival")
    me = buyer.account

    def check() -> int:
        figure = spent_today(ledger, me, c.now)
        assert figure == every_trade(ledger, me, c.now)
        return figure

    assert check() == 0
    # Bought at the offer's price; a counter-offer confirmed; one declined; a rival's buy.
    first = c.offer(seller, "cell", 2_000, expires=c.now + 3 * HOUR, start=c.now + 3 * HOUR)
    c.seal(ledger, first)
    bought = c.accept(buyer, first, 500)
    countered = c.accept(buyer, first, 500, price=250)
    declined = c.accept(buyer, first, 500, price=100)
    c.seal(ledger, bought, countered, declined, c.accept(rival, first, 200))
    pending = check()
    assert pending > 0
    c.seal(
        ledger,
        c.sign(seller, "confirmation", acceptance=countered.id),
        c.sign(seller, "rejection", target=declined.id),
    )
    assert check() < pending  # the declined counter-offer no longer counts
    # An auction: outbid, then leading, then won when it closes.
    closes = c.now + 60_000
    auction = c.offer(
        seller,
        "cell",
        1_000,
        mode="energy",
        start=c.now + 2 * HOUR,
        auction={"closes": closes, "cap": 900},
    )
    c.seal(ledger, auction)
    c.seal(ledger, c.sign(buyer, "bid", offer=auction.id, price=300))
    c.seal(ledger, c.sign(rival, "bid", offer=auction.id, price=400))
    c.seal(ledger, c.sign(buyer, "bid", offer=auction.id, price=500))
    leading = check()
    c.now = closes
    c.seal(ledger)
    assert ledger.state.offers.rows[auction.id].status == "sold"
    assert check() == leading  # the bid it led with is now the trade
    tracked = len(purchases(ledger, me)._ids or ())

    # A day later the first purchases no longer count, and the home stops looking at them.
    c.now += DAY_MS - 30_000
    c.seal(ledger)
    later = c.offer(seller, "cell", 1_000, expires=c.now + HOUR)
    c.seal(ledger, later)
    bought_later = c.accept(buyer, later, 1_000)
    c.seal(ledger, bought_later)
    auction_won = ledger.state.trades.rows[ledger.state.offers.rows[auction.id].best_bid]
    assert check() == ledger.state.trades.rows[bought_later.id].cost + auction_won.cost
    c.now += HOUR
    c.seal(ledger)
    assert check() == every_trade(ledger, me, c.now)
    assert len(purchases(ledger, me)._ids or ()) < tracked


def test_a_home_started_again_finds_its_purchases_in_the_record_index(tmp_path: Path) -> None:
    c = Community()
    ledger = c.node(SqliteStore(tmp_path / "ledger.db"))
    seller, buyer = c.key("seller"), c.key("buyer")
    c.seal(ledger, c.register("cell", seller), c.topup(buyer, 10_000_000))
    offers = [c.offer(seller, "cell", 100, expires=c.now + HOUR) for _ in range(5)]
    c.seal(ledger, *offers)
    c.seal(ledger, *(c.accept(buyer, o, 100) for o in offers))
    before = spent_today(ledger, buyer.account, c.now)
    assert before > 0
    ledger.close()
    again = c.node(SqliteStore(tmp_path / "ledger.db"))
    assert spent_today(again, buyer.account, c.now) == before
    again.close()
