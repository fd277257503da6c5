"""The app's parts run alone, on a real ledger and a link that only records what it is
given: no broker, no devices, no API. What the community would hear is what the fake
link was handed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from edge_controller.app.disk import LedgerDisk
from edge_controller.app.node import LedgerNode
from edge_controller.app.trading import Trader
from edge_controller.devices import SimulatedClock
from edge_controller.ledger import StorageError
from edge_controller.market import AcceptanceCriteria, MarketPolicy, QuantityRange, SellPolicy
from edge_controller.network import InboundMessage, LinkStats, MessageHandler, MessageKind
from edge_controller.refusal import Refusal, Why
from tests.ledger.support import Community


class RecordingLink:
    """The transport between homes, reduced to a list of what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[MessageKind | str, dict[str, Any]]] = []
        self.handlers: dict[MessageKind, MessageHandler] = {}

    async def publish(
        self,
        kind: MessageKind,
        body: dict[str, Any],
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> str:
        if ready is not None:
            await ready()
        self.sent.append((kind, body))
        return str(len(self.sent))

    async def send_to(self, node_id: str, body: dict[str, Any]) -> str:
        self.sent.append((node_id, body))
        return str(len(self.sent))

    def announce(self, body: dict[str, Any]) -> str:
        self.sent.append((MessageKind.BLOCK, body))
        return str(len(self.sent))

    def on_message(self, kind: MessageKind, handler: MessageHandler) -> None:
        self.handlers[kind] = handler

    def set_validator(self, validator: Any) -> None:
        pass

    def on_peer_change(self, listener: Any) -> None:
        pass

    def stats(self) -> LinkStats:
        raise NotImplementedError("not read by these tests")

    def records(self) -> list[dict[str, Any]]:
        return [body for kind, body in self.sent if kind is MessageKind.RECORD]


class Street:
    """A community with one home under test (a buyer and sealer) and a neighbour."""

    def __init__(self) -> None:
        self.community = Community()
        self.clock = SimulatedClock(self.community.now)
        self.home_key = self.community.sealers[0]
        self.neighbour = self.community.key("neighbour")
        self.ledger = self.community.node()
        self.link = RecordingLink()
        self.node = LedgerNode(
            ledger=self.ledger,
            link=self.link,
            genesis=self.community.genesis,
            key=self.home_key,
            meter_key=None,
            clock=self.clock,
            sealer=True,
        )

    def fund(self, *records: Any) -> None:
        self.community.seal(self.ledger, *records)
        self.clock.advance(self.community.now - self.clock.now_ms())

    async def from_neighbour(self, record: Any) -> None:
        message = InboundMessage(MessageKind.RECORD, "m1", self.neighbour.account, record.to_wire())
        await self.link.handlers[MessageKind.RECORD](message)


BUYER = MarketPolicy(
    sell=SellPolicy(auto_sell=False, battery=None, pv=None, fuel_cell=None),
    buy=AcceptanceCriteria(auto_accept=True, max_price=400, capacity=QuantityRange(100, 5_000)),
)


async def test_the_node_signs_checks_and_sends_a_record_and_refuses_what_the_ledger_refuses() -> (
    None
):
    street = Street()
    street.fund(street.community.topup(street.home_key, 5_000))
    record = await street.node.issue("transfer", to=street.neighbour.account, amount=1_000)
    assert record.id in street.ledger.pool
    assert [r["body"]["kind"] for r in street.link.records()] == ["transfer"]

    with pytest.raises(Refusal) as refused:
        await street.node.issue("transfer", to=street.neighbour.account, amount=10_000)
    assert refused.value.code == "insufficient_funds" and refused.value.why is Why.CONFLICT
    assert len(street.link.records()) == 1  # nothing refused reaches the community


async def test_a_neighbours_offer_is_judged_on_arrival_and_accepted_by_the_policy() -> None:
    street = Street()
    community = street.community
    trader = Trader(street.node, [], BUYER)
    street.fund(
        community.topup(street.home_key),
        community.register("cell", street.neighbour),
    )
    offer = community.offer(street.neighbour, "cell", 2_000, price=300)
    await street.from_neighbour(offer)
    (acceptance,) = street.link.records()
    assert acceptance["body"]["kind"] == "acceptance"
    assert acceptance["body"]["offer"] == offer.id and acceptance["body"]["quantity"] == 2_000
    # Judged once: the next control cycle does not answer the same offer again.
    await trader.cycle(street.clock.now_ms())
    assert len(street.link.records()) == 1


async def test_the_sealer_seals_the_pool_into_a_block_and_announces_it() -> None:
    street = Street()
    street.fund(street.community.topup(street.home_key, 5_000))
    await street.node.issue("transfer", to=street.neighbour.account, amount=1_000)
    height = street.ledger.height
    street.clock.advance(street.community.genesis.consensus.block_interval_ms)
    await street.node.seal()
    assert street.ledger.height == height + 1 and not street.ledger.pool
    blocks = [body for kind, body in street.link.sent if kind is MessageKind.BLOCK]
    assert len(blocks) == 2  # the block, then our new head


async def test_a_record_the_disk_did_not_take_is_refused_withdrawn_and_never_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    street = Street()
    street.fund(street.community.topup(street.home_key, 5_000))

    async def failing_fsync() -> None:
        raise StorageError("storage_failed", "fsync of the ledger failed")

    monkeypatch.setattr(street.node, "durable", failing_fsync)
    with pytest.raises(Refusal) as refused:
        await street.node.issue("transfer", to=street.neighbour.account, amount=1_000)
    assert refused.value.why is Why.STORAGE
    assert not street.ledger.pool and street.link.records() == []


class SlowDisk:
    """A ledger's disk whose fsync waits to be let go (it clears the flag as it starts)."""

    def __init__(self) -> None:
        self.unsynced = True
        self.started = threading.Event()
        self.release = threading.Event()
        self.syncs = 0

    def sync(self) -> None:
        self.unsynced = False
        self.started.set()
        self.release.wait(10)
        self.syncs += 1


async def test_a_write_a_running_sync_holds_is_durable_only_once_that_sync_ends() -> None:
    disk = SlowDisk()
    ledger_disk = LedgerDisk(disk)
    first = asyncio.create_task(ledger_disk.durable())
    assert await asyncio.to_thread(disk.started.wait, 10)
    # The flag is clear, but the fsync holding the write is not done: wait for it.
    second = asyncio.create_task(ledger_disk.durable())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not second.done()
    disk.release.set()
    await asyncio.gather(first, second)
    assert disk.syncs == 1
    # The finished sync holds nothing back: the next write gets a sync of its own.
    disk.unsynced = True
    await asyncio.wait_for(ledger_disk.durable(), 10)
    assert disk.syncs == 2
    ledger_disk.close()
