"""What a sealer who wants to rewrite history does: forge a private chain fast, sign many
siblings at one height, and serve them to homes as a peer of the sync protocol would."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_controller.ledger import (
    MAX_BLOCKS,
    Block,
    Genesis,
    Header,
    KeyPair,
    Ledger,
    Record,
    State,
    SyncNode,
    checkpoint_due,
    in_turn_sealer,
    record_root,
    seal,
    state_digest,
)
from edge_controller.ledger.rules import BlockContext, apply_block
from edge_controller.network import BrokerSettings, CommunityLink, InboundMessage, MessageKind


@dataclass(frozen=True)
class Tip:
    """Where a forged chain goes on from: a block's hash, height and time."""

    hash: str
    height: int
    time: int


def forge_chain(
    genesis: Genesis,
    keys: list[KeyPair],
    parent: Tip,
    count: int,
    step_ms: int,
    records: Iterable[Record] = (),
    carry_at: int = 0,
    state: State | None = None,
) -> list[Block]:
    """`count` blocks on `parent`, sealed by `keys` in rotation, `step_ms` apart (0: all
    with the parent's time), block number `carry_at` (0: the first, -1: the last) carrying
    `records`. Signed, never validated: the attacker needs no node of its own to make them.
    `state`: the state after `parent`; given, the blocks carry the checkpoints rules 3 ask
    (the records applied to it as the chain goes)."""
    blocks: list[Block] = []
    prev, height, at = parent.hash, parent.height, parent.time
    carried, carrier = tuple(records), carry_at % count
    for i in range(count):
        height += 1
        at += step_ms
        key = keys[i % len(keys)]
        records = carried if i == carrier else ()
        weight = 2 if in_turn_sealer(genesis, height) == key.public_hex else 1
        checkpoint = ""
        if state is not None:
            if checkpoint_due(genesis, height):
                checkpoint = state_digest(state)
            context = BlockContext(genesis, height, at, key.account)
            apply_block(state, records, context)
        header = Header(
            height=height,
            prev=prev,
            root=record_root([r.id for r in records]),
            time=at,
            difficulty=weight,
            nonce=0,
            sealer=key.public_hex,
            checkpoint=checkpoint,
        )
        block = seal(header, tuple(records), key)
        blocks.append(block)
        prev = block.hash
    return blocks


def siblings(
    parent: Tip, key: KeyPair, weight: int, count: int, at: int, first_nonce: int = 0
) -> list[Block]:
    """`count` different blocks `key` signs at one height on `parent` (they differ by nonce,
    counted from `first_nonce`)."""
    return [
        seal(
            Header(
                height=parent.height + 1,
                prev=parent.hash,
                root=record_root([]),
                time=at,
                difficulty=weight,
                nonce=n,
                sealer=key.public_hex,
            ),
            (),
            key,
        )
        for n in range(first_nonce, first_nonce + count)
    ]


def feed(ledger: Ledger, blocks: list[Block], now: int, batch: int = MAX_BLOCKS) -> list[Any]:
    """Hand `blocks` to `ledger` in the sync protocol's batches; every outcome, in order."""
    outcomes: list[Any] = []
    for i in range(0, len(blocks), batch):
        outcomes.extend(ledger.add_blocks(blocks[i : i + batch], now))
    return outcomes


@dataclass
class ForkServer:
    """An attacker's node on the broker: it announces the head of its private chain and
    answers `get_headers` and `get_blocks` from it, as an honest peer would."""

    ledger: Ledger
    broker: BrokerSettings
    folder: Path
    key: KeyPair = field(default_factory=KeyPair.generate)
    asked: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sync = SyncNode(self.ledger, self.key.account)
        self.link = CommunityLink(
            node_id=self.key.account,
            community_id=self.ledger.community,
            broker=self.broker,
            outbox_path=self.folder / "attacker-outbox.sqlite3",
            # It signs its heads and answers as any node does: unsigned, no home asks it.
            signer=self.key,
        )
        self.link.on_message(MessageKind.SYNC, self._answer)
        self.link.on_message(MessageKind.BLOCK, self._answer)

    _ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.link.start()
        # A head goes out only over a live connection, as a node's does.
        async with asyncio.timeout(10):
            await self.link.wait_connected()
        self._ticker = asyncio.create_task(self._announce_every(2.0))

    async def announce(self) -> None:
        self.link.announce(self.sync.head_message(time.time_ns() // 1_000_000))

    async def _announce_every(self, seconds: float) -> None:
        # As a node announces its head each sync tick: a home busy when one arrived asks later.
        while True:
            await asyncio.sleep(seconds)
            await self.announce()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.link.stop()

    async def _answer(self, message: InboundMessage) -> None:
        body = message.body
        if isinstance(body, dict) and body.get("type") == "get_headers":
            self.asked[message.sender] = self.asked.get(message.sender, 0) + 1
        now = time.time_ns() // 1_000_000
        for peer, reply in self.sync.handle(message.sender, body, now):
            if peer is not None and reply["type"] in ("headers", "blocks"):
                await self.link.send_to(peer, reply)
