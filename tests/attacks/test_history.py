"""Rewriting history as a sealer, against three real homes on a real Mosquitto broker.

The test holds two of the three sealer keys (as a majority of sealers colluding would) and
builds a private chain of thousands of blocks from genesis in a few seconds, then serves it
to the homes as a peer of the sync protocol; with one key it signs 20,000 siblings at one
height and hands them to a home through the path the network's messages take. The rules
that stop them are unit-tested in `test_history_rules.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge_controller.api import ApiServer
from edge_controller.app.home import Home
from edge_controller.ledger import (
    Block,
    Consensus,
    Genesis,
    KeyPair,
    Ledger,
    Record,
    State,
    in_turn_sealer,
    sign_record,
)
from edge_controller.network import BrokerSettings, InboundMessage, MessageKind
from tests.conftest import Mosquitto

from .history_support import ForkServer, Tip, feed, forge_chain, siblings

BLOCK_INTERVAL_MS = 200
SPACING_MS = BLOCK_INTERVAL_MS // 2
FORK_BLOCKS = 7_501
SIBLINGS = 20_000
PAYMENT = 600


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def until(check: Callable[[], Any], what: str, seconds: float = 30.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `seconds`."""
    async with asyncio.timeout(seconds):
        while not (result := check()):  # noqa: ASYNC110 - the conditions span several homes
            await asyncio.sleep(0.05)
    assert result, what
    return result


@dataclass
class Street:
    """Three sealing homes, a registrar, a buyer and the merchant (the third home)."""

    folder: Path
    broker: BrokerSettings
    registrar: KeyPair = field(default_factory=KeyPair.generate)
    buyer: KeyPair = field(default_factory=KeyPair.generate)
    keys: list[KeyPair] = field(default_factory=lambda: [KeyPair.generate() for _ in range(3)])
    homes: list[Home] = field(default_factory=list)
    _seq: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.genesis = Genesis(
            name="History Street",
            currency="TST",
            # Two hours of history: room for the forged chain to space its blocks.
            time=now_ms() - 2 * 3_600_000,
            registrars=(self.registrar.public_hex,),
            consensus=Consensus(
                mode="poa",
                block_interval_ms=BLOCK_INTERVAL_MS,
                sealers=tuple(k.public_hex for k in self.keys),
                confirmations=2,
            ),
        )

    @property
    def merchant(self) -> Home:
        return self.homes[2]

    async def start(self) -> None:
        for i, key in enumerate(self.keys):
            home = Home(
                name=f"home-{i}",
                data_dir=self.folder / f"home-{i}",
                genesis=self.genesis,
                node_key=key,
                community_broker=self.broker,
            )
            self.homes.append(home)
            await home.start()

    async def stop(self) -> None:
        for home in self.homes:
            await home.stop()

    def sign(self, key: KeyPair, kind: str, **fields: Any) -> Record:
        seq = self._seq[key.account] = self._seq.get(key.account, 0) + 1
        body = {"kind": kind, "seq": seq, "time": now_ms(), **fields}
        return sign_record(key, self.genesis.community_id, body)

    async def final_everywhere(self, record: Record) -> int:
        """Wait until every home holds `record` in a final block; returns that height."""

        def height_of(home: Home) -> int:
            if not home.ledger.is_recorded(record.id):
                return 0
            block = next(
                b for b in home.ledger.iter_main() if any(r.id == record.id for r in b.records)
            )
            return block.height if home.ledger.final_height >= block.height else 0

        heights = await until(
            lambda: all(height_of(h) for h in self.homes) and [height_of(h) for h in self.homes],
            f"record {record.id[:12]} final on every home",
        )
        assert len(set(heights)) == 1
        return int(heights[0])


@pytest.fixture
async def street(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Street]:
    s = Street(tmp_path, BrokerSettings(host=mosquitto.host, port=mosquitto.port))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def test_a_private_fork_of_thousands_of_blocks_is_refused_and_the_payment_stays(
    street: Street, tmp_path: Path
) -> None:
    merchant = street.merchant.account
    topup = street.sign(street.registrar, "topup", to=street.buyer.account, amount=1_000)
    payment = street.sign(street.buyer, "transfer", to=merchant, amount=PAYMENT)
    await street.homes[0].node.submit_signed(topup.to_wire())
    await street.homes[0].node.submit_signed(payment.to_wire())
    paid_at = await street.final_everywhere(payment)

    # Two sealers forge a chain from genesis that spends the buyer's money elsewhere.
    theft = street.sign(
        street.buyer, "transfer", to=KeyPair.generate().account, amount=1_000, seq=1
    )
    started = time.perf_counter()
    step = SPACING_MS // 2 + 1  # two sealers in turn: each one's blocks are `SPACING_MS` apart
    genesis_hash = street.homes[0].ledger.main[0]
    fork = forge_chain(
        street.genesis,
        street.keys[:2],
        Tip(genesis_hash, 0, now_ms() - FORK_BLOCKS * step - 1_000),
        FORK_BLOCKS,
        step_ms=step,
        records=(topup, theft),
        carry_at=-1,
        state=State(),
    )
    forged_s = time.perf_counter() - started
    attacker = Ledger(street.genesis)
    outcomes = feed(attacker, fork, now_ms(), batch=256)
    assert attacker.height == FORK_BLOCKS, [o for o in outcomes if not hasattr(o, "status")][:1]
    honest_work = max(h.ledger.head.work for h in street.homes)
    assert attacker.head.work > 10 * honest_work

    server = ForkServer(attacker, street.broker, tmp_path)
    await server.start()
    try:
        await server.announce()
        await until(
            lambda: all(h.node.sync.rejected["reverts_final"] for h in street.homes),
            "every home refused the forged chain",
        )
        heights = [h.ledger.height for h in street.homes]
        # The community carries on past the refusal, on its own chain.
        await until(
            lambda: all(
                h.ledger.height > x + 2 for h, x in zip(street.homes, heights, strict=True)
            ),
            "the honest chain growing after the release",
        )
        await server.announce()
    finally:
        await server.stop()

    for home in street.homes:
        assert home.ledger.is_recorded(payment.id), home.name
        assert not home.ledger.is_recorded(theft.id), home.name
        assert home.ledger.state.account(merchant).balance == PAYMENT, home.name
        assert fork[0].hash not in home.ledger.index, home.name
        status = home.status()
        assert status["ledger"]["final_height"] >= paid_at
        assert status["rejected"]["sync"]["reverts_final"] >= 1
        # A refused head is not asked for again at every announcement.
        assert server.asked.get(home.account, 0) <= 3, server.asked
    # GET status says how far the chain is final.
    api = ApiServer(street.merchant, "token")
    await api.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{api.url}/api/v1/status", headers={"Authorization": "Bearer token"}
            ) as answer,
        ):
            body = await answer.json()
        assert answer.status == 200 and body["ledger"]["final_height"] >= paid_at
    finally:
        await api.stop()
    print(
        f"forged {FORK_BLOCKS} blocks (work {attacker.head.work} against"
        f" {honest_work}) in {forged_s:.2f} s; refused by 3/3 homes, payment at height"
        f" {paid_at} final"
    )


async def test_twenty_thousand_siblings_are_dropped_and_the_sealer_is_suspended(
    street: Street,
) -> None:
    target = street.merchant
    cheat = street.keys[0]
    await until(lambda: target.ledger.height >= 3, "a few blocks")

    def slot_open() -> Tip | None:
        head = target.ledger.head
        if head.sealer == cheat.public_hex or now_ms() < head.time + SPACING_MS:
            return None
        return Tip(head.hash, head.height, head.time)

    parent = await until(slot_open, "a head the cheat may seal on")
    weight = 2 if in_turn_sealer(street.genesis, parent.height + 1) == cheat.public_hex else 1
    at = max(now_ms(), parent.time + SPACING_MS)
    indexed = len(target.ledger.index)

    async def hand_over(blocks: list[Block]) -> None:
        for block in blocks:
            message = {"type": "block", "block": block.to_wire()}
            # The path a block message takes once the link has let it in.
            await target.node.receive_sync(
                InboundMessage(MessageKind.BLOCK, block.hash, "attacker", message)
            )

    # The first two at once, while their parent is still above the final height.
    blocks = siblings(parent, cheat, weight, 2, at)
    started = time.perf_counter()
    await hand_over(blocks)
    spent = time.perf_counter() - started
    more = siblings(parent, cheat, weight, SIBLINGS - 2, at, first_nonce=2)
    blocks.extend(more)
    started = time.perf_counter()
    await hand_over(more)
    spent += time.perf_counter() - started
    kept = len(target.ledger.index) - indexed
    dropped = target.node.sync.rejected["equivocation"]
    # At most the first sibling joins the tree (plus honest blocks sealed meanwhile).
    assert sum(1 for b in blocks if b.hash in target.ledger.index) <= 1
    assert all(target.ledger.block(b.hash) is None for b in blocks[1::500])
    assert dropped >= SIBLINGS - 1 - target.node.sync.rejected["reverts_final"]
    # The evidence becomes a record; once in a block every home suspends the cheat.
    await until(
        lambda: all(cheat.account in h.ledger.state.suspended for h in street.homes),
        "the cheat suspended on every home",
    )
    suspended_at = street.homes[0].ledger.state.suspended.rows[cheat.account].height
    heights = [h.ledger.height for h in street.homes]
    await until(
        lambda: all(h.ledger.final_height > x for h, x in zip(street.homes, heights, strict=True)),
        "finality moving on without the cheat",
    )
    for home in street.homes:
        later = [b for b in home.ledger.iter_main(suspended_at + 1)]
        assert all(b.header.sealer != cheat.public_hex for b in later), home.name
    print(
        f"{SIBLINGS} siblings in {spent:.2f} s ({SIBLINGS / spent:.0f}/s) through a home's"
        f" sync path; {kept} blocks indexed meanwhile; cheat suspended at {suspended_at}"
    )
