"""The event stream keeps a listener's offers and trades equal to GET offers and GET trades:
after every pooled record, block and control cycle, a client that applies the events the
way Home Assistant does (docs/api.md, "Push") holds what the API would answer."""

from __future__ import annotations

from typing import Any

from edge_controller.app.events import Announcer, EventBus
from edge_controller.app.queries import Queries
from edge_controller.ledger import Block, Ledger, Record
from tests.ledger.support import HOUR, Community

LISTED = {"pending", "open"}


class Clock:
    def __init__(self, community: Community) -> None:
        self.community = community

    def now_ms(self) -> int:
        return self.community.now


class Follower:
    """What a client holds after applying each event, as the integration's coordinator does."""

    def __init__(self, queries: Queries, now: int) -> None:
        self.offers = {o["id"]: o for o in queries.offers(now)}
        self.trades = {t["id"]: t for t in queries.trades()}
        self.events: list[tuple[str, dict[str, Any]]] = []

    def apply(self, event: str, data: dict[str, Any]) -> None:
        self.events.append((event, data))
        if event == "offer":
            if data["status"] in LISTED:
                self.offers[data["id"]] = data
            else:
                self.offers.pop(data["id"], None)
        elif event == "trade":
            self.trades[data["id"]] = data


class Street:
    """A seller's fuel cell, and the home under test: the buyer."""

    def __init__(self) -> None:
        self.community = Community()
        self.seller = self.community.key("seller")
        self.buyer = self.community.key("buyer")
        self.ledger: Ledger = self.community.node()
        self.queries = Queries(self.ledger, self.buyer.account, "SUN", [])
        self.bus = EventBus()
        self.announcer = Announcer(
            self.ledger, self.buyer.account, self.queries, self.bus, Clock(self.community)
        )
        self.seal(
            self.community.register("cell", self.seller),
            self.community.topup(self.buyer, 10_000_000),
        )
        self.follower = Follower(self.queries, self.community.now)
        self.bus.history.clear()

    def pool(self, record: Record) -> None:
        self.ledger.submit(record)
        self.announcer.record_accepted(record)
        self.follow()

    def seal(self, *records: Record) -> Block:
        block = self.community.seal(self.ledger, *records)
        if hasattr(self, "follower"):
            self.follow()
        return block

    def tick(self) -> None:
        self.announcer.tick(self.community.now)
        self.follow()

    def follow(self) -> None:
        for message in self.bus.history:
            self.follower.apply(message["event"], message["data"])
        self.bus.history.clear()
        self.assert_agrees()

    def assert_agrees(self) -> None:
        now = self.community.now
        assert self.follower.offers == {o["id"]: o for o in self.queries.offers(now)}
        assert self.follower.trades == {t["id"]: t for t in self.queries.trades()}

    def pushed(self, event: str, item_id: str) -> list[dict[str, Any]]:
        return [d for e, d in self.follower.events if e == event and d["id"] == item_id]


def test_offers_follow_every_change_and_trades_include_confirmed_counter_offers() -> None:
    street = Street()
    community = street.community
    offer = community.offer(street.seller, "cell", 3_000, expires=community.now + 2 * HOUR)
    street.pool(offer)
    assert [o["status"] for o in street.pushed("offer", offer.id)] == ["pending"]
    street.seal(offer)
    assert street.follower.offers[offer.id]["status"] == "open"

    # A sale at the offer's price: the remaining amount goes down at once.
    bought = community.accept(street.buyer, offer, 1_000)
    street.seal(bought)
    assert street.follower.offers[offer.id]["remaining"] == 2_000
    assert street.follower.trades[bought.id]["status"] == "active"

    # A counter-offer makes no trade until the seller confirms it; then it is one.
    counter = community.accept(street.buyer, offer, 1_000, price=250)
    street.seal(counter)
    assert counter.id not in street.follower.trades
    street.seal(community.sign(street.seller, "confirmation", acceptance=counter.id))
    assert street.follower.trades[counter.id]["price"] == 250
    assert street.follower.offers[offer.id]["remaining"] == 1_000

    # Unsold, it expires: it leaves the list at the next control cycle.
    community.now = offer.body["expires"]
    street.tick()
    assert offer.id not in street.follower.offers
    assert street.pushed("offer", offer.id)[-1]["status"] == "expired"


def test_a_sold_out_or_cancelled_offer_leaves_the_list() -> None:
    street = Street()
    community = street.community
    sold = community.offer(street.seller, "cell", 1_000)
    withdrawn = community.offer(street.seller, "cell", 1_000, price=400)
    street.seal(sold, withdrawn)
    street.seal(community.accept(street.buyer, sold, 1_000))
    assert street.pushed("offer", sold.id)[-1]["status"] == "sold"
    cancel = community.sign(street.seller, "cancel", offer=withdrawn.id)
    street.pool(cancel)  # withdrawn from the list the moment the cancel is pooled
    assert withdrawn.id not in street.follower.offers
    street.seal(cancel)
    assert street.pushed("offer", withdrawn.id)[-1]["status"] == "cancelled"


def test_a_settled_trade_is_pushed_once() -> None:
    street = Street()
    community = street.community
    offer = community.offer(street.seller, "cell", 1_000, start=community.now + 5_000)
    street.seal(offer)
    bought = community.accept(street.buyer, offer, 1_000)
    street.seal(bought)
    community.now += 2 * HOUR
    street.seal(community.sign(street.buyer, "settlement", trade=bought.id, delivered_wh=1_000))
    street.seal()
    street.tick()
    settled = [t for t in street.pushed("trade", bought.id) if t["status"] == "settled"]
    assert len(settled) == 1
    assert settled[0]["paid"] == settled[0]["cost"] > 0
