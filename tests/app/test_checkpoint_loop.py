"""A node computes the checkpoint its next block needs on a thread of its own as soon as the
parent commits: its event loop keeps running meanwhile, it seals no block until the digest
is there, and the block then carries the digest the state sorted in memory gives."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_controller.app.node import HEARTBEAT_BLOCKS, LedgerNode
from edge_controller.devices import SimulatedClock
from edge_controller.ledger import state_digest
from edge_controller.ledger.state import Vouched
from edge_controller.ledger.store import Commit, SqliteStore
from tests.app.test_rooms_alone import RecordingLink
from tests.ledger.snapshot_support import grow, sqlite_node
from tests.ledger.support import Community

INTERVAL = 4
# Enough rows that the digest takes many of the loop's turns (a second or so here).
ROWS = 60_000


async def test_the_loop_keeps_running_while_a_large_checkpoint_is_computed(
    tmp_path: Path,
) -> None:
    community = Community(sealers=1, checkpoint_interval=INTERVAL)
    ledger = sqlite_node(community, tmp_path, "home")
    grow(community, ledger, INTERVAL - 2)
    # A large state, committed as a block's rows would be.
    for i in range(ROWS):
        ledger.state.vouched.put(f"{i:012d}", Vouched(i))
    assert isinstance(ledger.store, SqliteStore)
    ledger.store.commit(Commit(head=ledger.head.hash, journal=list(ledger.state.journal)))
    ledger.state.journal.clear()
    clock = SimulatedClock(community.now)
    node = LedgerNode(
        ledger=ledger,
        link=RecordingLink(),
        genesis=community.genesis,
        key=community.sealers[0],
        meter_key=None,
        clock=clock,
        sealer=True,
    )
    interval = community.genesis.consensus.block_interval_ms

    def later() -> None:
        """Time for a heartbeat block, on the node's clock and the ledger's."""
        clock.advance(HEARTBEAT_BLOCKS * interval + 1)
        community.now = clock.now_ms()

    try:
        # The block before the checkpoint: its commit starts the digest of the state after it.
        later()
        await node.seal()
        assert ledger.height == INTERVAL - 1
        work = node.history.checkpoint
        assert not work.ready(), "the checkpoint after the new head is not being computed"
        ticks = 0
        sealed_meanwhile = False

        async def ticker() -> None:
            nonlocal ticks, sealed_meanwhile
            while not work.ready():
                ticks += 1
                await node.seal()
                sealed_meanwhile = sealed_meanwhile or ledger.height >= INTERVAL
                await asyncio.sleep(0)

        later()
        waiting = asyncio.create_task(node.history.checkpoint_ready({"type": "block"}))
        await asyncio.gather(ticker(), waiting)
        assert ticks >= 3, "the event loop did not run while the digest was computed"
        assert not sealed_meanwhile, "a block was sealed before its checkpoint was known"
        assert ledger.checkpoints.known(ledger.head.hash)
        expected = state_digest(ledger.state)
        await node.seal()
        assert ledger.height == INTERVAL
        block = ledger.block_at(INTERVAL)
        assert block is not None and block.header.checkpoint == expected
        assert ledger.checkpoints.snapshot_path(INTERVAL, block.prev) is not None
    finally:
        node.close()
        ledger.close()
