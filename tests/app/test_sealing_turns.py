"""Sealers take turns at every block, empty ones too: a sealer that is not first in line
steps in only for one that is offline, it does not race one that is up.

Each home's seal loop ticks at its own phase; here they tick in a fixed order at the same
instants, the worst case of that race: before, the first to tick took every heartbeat block
it was not barred from, so of three sealers one never sealed while the other two were up."""

from __future__ import annotations

from collections import Counter

from edge_controller.app.node import HEARTBEAT_BLOCKS, STEP_IN_BLOCKS, LedgerNode
from edge_controller.devices import SimulatedClock
from edge_controller.ledger import Ledger
from tests.app.test_rooms_alone import RecordingLink
from tests.ledger.support import Community

TICK_MS = 250


class Street:
    """Three sealers, each a node with its own ledger and clock; a sealed block reaches the
    others at once."""

    def __init__(self) -> None:
        self.community = Community(sealers=3)
        self.interval = self.community.genesis.consensus.block_interval_ms
        self.clock = SimulatedClock(self.community.now)
        self.ledgers: list[Ledger] = []
        self.nodes: list[LedgerNode] = []
        for key in self.community.sealers:
            ledger = Ledger(self.community.genesis, clock=self.clock.now_ms)
            self.ledgers.append(ledger)
            self.nodes.append(
                LedgerNode(
                    ledger=ledger,
                    link=RecordingLink(),
                    genesis=self.community.genesis,
                    key=key,
                    meter_key=None,
                    clock=self.clock,
                    sealer=True,
                )
            )

    async def run(self, blocks: int, up: list[int]) -> list[tuple[int, int]]:
        """Tick the seal loops of the homes `up`, in that order, until `blocks` more blocks
        are sealed; each block's (sealer's index, ms after its parent)."""
        sealed: list[tuple[int, int]] = []
        keys = [k.public_hex for k in self.community.sealers]
        while len(sealed) < blocks:
            self.clock.advance(TICK_MS)
            for i in up:
                parent = self.ledgers[i].head
                await self.nodes[i].seal()
                head = self.ledgers[i].head
                if head.hash == parent.hash:
                    continue
                block = self.ledgers[i].block_at(head.height)
                assert block is not None
                for other in self.ledgers:
                    if other is not self.ledgers[i]:
                        assert other.add_block(block).status == "connected"
                sealed.append((keys.index(head.sealer), head.time - parent.time))
        return sealed


async def test_three_sealers_each_seal_a_third_of_the_heartbeat_blocks() -> None:
    street = Street()
    await street.run(1, up=[0, 1, 2])  # the first block, an hour after the genesis
    sealed = await street.run(30, up=[0, 1, 2])
    assert Counter(i for i, _ in sealed) == {0: 10, 1: 10, 2: 10}
    # Each sealed by the first in line, after the heartbeat wait and no longer.
    assert {gap for _, gap in sealed} == {HEARTBEAT_BLOCKS * street.interval}


async def test_a_sealer_offline_is_stepped_in_for_and_the_other_two_keep_sealing() -> None:
    street = Street()
    await street.run(3, up=[0, 1, 2])
    sealed = await street.run(12, up=[0, 1])
    assert Counter(i for i, _ in sealed) == {0: 6, 1: 6}
    late = (HEARTBEAT_BLOCKS + STEP_IN_BLOCKS) * street.interval
    gaps = [gap for _, gap in sealed]
    # Where the offline sealer was first in line, the next stepped in after the longer wait.
    assert late in gaps and min(gaps) == HEARTBEAT_BLOCKS * street.interval
