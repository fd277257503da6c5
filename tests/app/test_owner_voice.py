"""The owner's voice: the home waits for the owner's rating before rating by itself, and a
seller who asks for it answers counter-offers by hand. Real ledger, fake link
(`test_rooms_alone.Street`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from edge_controller.app.counters import CounterOffers
from edge_controller.app.delivery import Delivery
from edge_controller.app.trading import Trader
from edge_controller.config import ConfigError, parse_config
from edge_controller.market import MarketPolicy, SellPolicy
from edge_controller.refusal import Refusal, Why
from tests.app.test_rooms_alone import Street
from tests.ledger.support import HOUR

GRACE_MS = 60_000


async def _nothing(*_: object, **__: object) -> None:
    raise AssertionError("no meter reading is signed here")


def settled_purchase(street: Street) -> str:
    """A trade our home bought from the neighbour, delivered and settled; its id."""
    community = street.community
    street.fund(
        community.topup(street.home_key),
        community.register("cell", street.neighbour),
    )
    offer = community.offer(street.neighbour, "cell", 1_000, expires=community.now + HOUR // 2)
    street.fund(offer)
    acceptance = community.accept(street.home_key, offer, 1_000)
    street.fund(acceptance)
    community.now += 3 * HOUR
    street.fund(
        community.sign(street.neighbour, "settlement", trade=acceptance.id, delivered_wh=1_000)
    )
    return acceptance.id


def delivery_of(street: Street) -> Delivery:
    return Delivery(
        account=street.home_key.account,
        meter_public="",
        period_ms=1_000,
        issue=street.node.issue,
        issue_as_meter=_nothing,
        rating_grace_ms=GRACE_MS,
    )


def ratings(street: Street) -> list[dict[str, object]]:
    return [r["body"] for r in street.link.records() if r["body"]["kind"] == "rating"]


async def test_the_home_rates_a_settled_trade_only_after_the_owners_grace_period() -> None:
    street = Street()
    trade_id = settled_purchase(street)
    delivery = delivery_of(street)
    now = street.clock.now_ms()
    await delivery.rate(street.ledger.state, now)
    await delivery.rate(street.ledger.state, now + GRACE_MS - 1)
    assert ratings(street) == []  # the owner may still rate it first
    await delivery.rate(street.ledger.state, now + GRACE_MS)
    (rating,) = ratings(street)
    assert rating["trade"] == trade_id and rating["score"] == 10
    await delivery.rate(street.ledger.state, now + 2 * GRACE_MS)
    assert len(ratings(street)) == 1  # once


async def test_the_owners_own_rating_wins_over_the_automatic_one() -> None:
    street = Street()
    trade_id = settled_purchase(street)
    delivery = delivery_of(street)
    now = street.clock.now_ms()
    await delivery.rate(street.ledger.state, now)
    await street.node.issue("rating", trade=trade_id, score=3, comment="late")
    street.fund()  # a block holds the owner's rating
    await delivery.rate(street.ledger.state, now + GRACE_MS)
    assert [r["score"] for r in ratings(street)] == [3]
    assert street.ledger.state.trades.rows[trade_id].buyer_rating == 3


class Seller:
    """Our home sells from its cell; the neighbour counters its offer."""

    def __init__(self, counter_offers: Literal["auto", "ask"]) -> None:
        self.street = street = Street()
        community = street.community
        policy = MarketPolicy(
            sell=SellPolicy(
                battery=None,
                pv=None,
                fuel_cell=None,
                counter_offers=counter_offers,  # type: ignore[arg-type]
            )
        )
        self.trader = Trader(street.node, [], policy)
        self.counters = CounterOffers(street.node)
        self.offer = community.offer(
            street.home_key, "cell", 2_000, price=300, expires=community.now + 10 * 60_000
        )
        street.fund(
            community.topup(street.neighbour),
            community.register("cell", street.home_key),
        )
        street.fund(self.offer)

    def counter(self, quantity: int, price: int) -> str:
        record = self.street.community.accept(
            self.street.neighbour, self.offer, quantity, price=price
        )
        self.street.fund(record)
        return record.id

    def answers(self) -> list[tuple[str, str]]:
        return [
            (r["body"]["kind"], r["body"].get("acceptance") or r["body"]["target"])
            for r in self.street.link.records()
            if r["body"]["kind"] in ("confirmation", "rejection")
        ]


async def test_asked_counter_offers_wait_for_the_owner_who_confirms_or_declines_them() -> None:
    seller = Seller("ask")
    generous, mean = seller.counter(500, 290), seller.counter(300, 100)
    now = seller.street.clock.now_ms()
    await seller.trader.answer_counters(now)
    assert seller.answers() == []  # neither answered by the policy: both wait for the owner
    listed = seller.counters.list(now)["counter_offers"]
    assert sorted((c["id"], c["price"], c["asking_price"], c["cost"]) for c in listed) == sorted(
        [(generous, 290, 300, 145), (mean, 100, 300, 30)]
    )
    # The owner sees who counters: by account, and by name once the registrar gave one.
    assert {c["buyer_name"] for c in listed} == {None}
    community = seller.street.community
    seller.street.fund(
        community.sign(
            community.registrar, "member", account=seller.street.neighbour.account, name="Flat 3"
        )
    )
    listed = seller.counters.list(now)["counter_offers"]
    assert [(c["buyer"], c["buyer_name"]) for c in listed] == [
        (seller.street.neighbour.account, "Flat 3")
    ] * 2
    confirmed = await seller.counters.confirm(generous)
    assert confirmed["trade"] == generous and confirmed["confirmation"] in seller.street.ledger.pool
    await seller.counters.decline(mean, "too low")
    assert sorted(seller.answers()) == [("confirmation", generous), ("rejection", mean)]
    # Answered (the answers still wait for a block): neither listed nor answered twice.
    assert seller.counters.list(now)["counter_offers"] == []
    with pytest.raises(Refusal) as twice:
        await seller.counters.confirm(mean)
    assert twice.value.code == "not_pending" and twice.value.why is Why.CONFLICT
    seller.street.fund()
    assert seller.street.ledger.state.trades.rows[generous].price == 290
    assert seller.street.ledger.state.acceptances.rows[mean].status == "rejected"


async def test_an_unknown_or_foreign_counter_offer_is_not_found() -> None:
    seller = Seller("ask")
    with pytest.raises(Refusal) as unknown:
        await seller.counters.decline("ab" * 32)
    assert unknown.value.code == "unknown_acceptance" and unknown.value.why is Why.NOT_FOUND


async def test_asked_counter_offers_are_declined_once_their_offer_expires() -> None:
    seller = Seller("ask")
    counter = seller.counter(500, 290)
    await seller.trader.answer_counters(seller.offer.body["expires"])
    assert seller.answers() == [("rejection", counter)]


async def test_by_default_the_policy_answers_counter_offers_at_once() -> None:
    seller = Seller("auto")
    generous, mean = seller.counter(500, 290), seller.counter(300, 100)
    await seller.trader.answer_counters(seller.street.clock.now_ms())
    assert sorted(seller.answers()) == [("confirmation", generous), ("rejection", mean)]


def test_edge_yaml_sets_the_rating_grace_a_day_by_default_and_names_a_bad_one(
    tmp_path: Path,
) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    document = {"name": "x", "genesis": str(genesis)}
    assert parse_config(document, base=tmp_path).rating_grace_ms == 86_400_000
    assert parse_config({**document, "rating_grace_s": 0}, base=tmp_path).rating_grace_ms == 0
    with pytest.raises(ConfigError) as bad:
        parse_config({**document, "rating_grace_s": -5}, base=tmp_path)
    assert "rating_grace_s" in str(bad.value)
