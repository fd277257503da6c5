"""Blocks that always travel, proved on the ledger alone (fast): sizes counted as they go on
the wire, genesis refusing blocks the transport could not carry, sealers building none,
and sync answers paged by size. `test_size.py` performs the attacks against real homes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from edge_controller.app.node import LedgerNode
from edge_controller.devices import SimulatedClock
from edge_controller.ledger import (
    BLOCKS_FRAME_BYTES,
    FIRST_RULES,
    MAX_BLOCK_BYTES,
    TRANSPORT_MESSAGE_BYTES,
    Block,
    Consensus,
    Genesis,
    Ledger,
    Reason,
    Rejected,
    block_limit,
    record_root,
    seal,
)
from edge_controller.ledger.block import MAX_HEADER_BYTES, Header
from edge_controller.ledger.canonical import canonical_bytes
from edge_controller.ledger.sync import Message, SyncNode
from edge_controller.network import LinkLimits, MessageKind, canonical_json
from edge_controller.network.envelope import envelope_overhead
from tests.app.test_rooms_alone import RecordingLink
from tests.ledger.support import Community

from .size_support import message_bytes, requests, spam_keys

LINK_LIMIT = LinkLimits().max_message_bytes
NODE_ID = "ep" + "0" * 40


def first_rules_community(**consensus: Any) -> Community:
    """A community founded before the size rule: genesis allows 2 MB blocks."""
    return Community(rules=FIRST_RULES, max_block_bytes=2_000_000, **consensus)


def fill_pool(community: Community, ledger: Ledger, records: int, keys: int = 50) -> None:
    for record in requests(community.community, spam_keys(keys), records // keys, community.now):
        ledger.submit(record)


def drain(community: Community, ledger: Ledger, max_block_wire: int | None) -> list[Block]:
    """Seal blocks from the pool until it is empty; returns them."""
    blocks = []
    while ledger.pool:
        community.now += 5_000
        key = community.sealers[len(blocks) % len(community.sealers)]
        ledger.max_block_wire = max_block_wire
        block = ledger.build_block(key, now=community.now)
        assert block is not None and block.records
        assert ledger.add_block(block).status == "connected"
        blocks.append(block)
    return blocks


# --- sizes as they travel --------------------------------------------------------------------


def test_a_blocks_bytes_on_the_wire_are_counted_exactly() -> None:
    community = Community()
    ledger = community.node()
    fill_pool(community, ledger, 40, keys=4)
    ledger.submit(community.sign(community.registrar, "topup", to=NODE_ID, amount=5, memo="né €"))
    (block,) = drain(community, ledger, None)
    assert len(block.records) == 41
    for record in block.records:
        assert record.wire_size == len(canonical_json(record.to_wire()))
    assert block.wire_size() == len(canonical_json(block.to_wire()))
    assert block.wire_size() == len(canonical_bytes(block.to_wire()))
    empty = seal(replace(block.header, root=record_root([])), (), community.sealers[0])
    assert empty.wire_size() == len(canonical_json(empty.to_wire()))
    # Every number at its bound, and a checkpoint (rules 3, at checkpoint heights).
    longest = Header(
        2**53, "f" * 64, "f" * 64, 2**53, 256, 2**64 - 1, "f" * 64, checkpoint="f" * 64
    )
    assert len(canonical_json(longest.to_json())) == MAX_HEADER_BYTES


def test_the_largest_block_the_latest_rules_allow_fits_one_message_with_room_to_spare() -> None:
    assert TRANSPORT_MESSAGE_BYTES == LINK_LIMIT
    # Node ids are topic levels of at most 128 characters.
    for sender in (NODE_ID, "x" * 128):
        body_limit = LINK_LIMIT - envelope_overhead(sender)
        assert block_limit(body_limit) >= MAX_BLOCK_BYTES
        assert MAX_BLOCK_BYTES + BLOCKS_FRAME_BYTES + envelope_overhead(sender) <= LINK_LIMIT


def test_a_genesis_on_the_latest_rules_asking_for_blocks_that_cannot_travel_is_refused() -> None:
    genesis = Community().genesis.to_json()
    genesis["consensus"]["max_block_bytes"] = 2_000_000
    with pytest.raises(Rejected) as refused:
        Genesis.from_json(genesis)
    assert refused.value.reason is Reason.OVERSIZE
    assert "max_block_bytes: 2000000 is more than 520192" in refused.value.message
    with pytest.raises(Rejected, match="could never be sent"):
        Consensus(max_block_bytes=MAX_BLOCK_BYTES + 1)
    genesis["consensus"]["max_block_bytes"] = MAX_BLOCK_BYTES
    assert Genesis.from_json(genesis).consensus.max_block_bytes == MAX_BLOCK_BYTES
    assert Consensus().max_block_bytes == MAX_BLOCK_BYTES  # what `energy-p2p-edge genesis` writes
    # A community founded before keeps its 2 MB genesis, and its id.
    old = first_rules_community().genesis
    assert Genesis.from_json(old.to_json()) == old


# --- building: no block that could not be sent -----------------------------------------------


def test_on_the_first_rules_a_sealer_builds_no_block_larger_than_a_message() -> None:
    community = first_rules_community()
    ledger = community.node()
    fill_pool(community, ledger, 5_000)
    # The attack as it was: 5,000 requests fill one block that no message can carry.
    unbounded = ledger.build_block(community.sealers[0], now=community.now + 5_000)
    assert unbounded is not None and len(unbounded.records) == 5_000
    assert unbounded.wire_size() > LINK_LIMIT

    budget = block_limit(LINK_LIMIT - envelope_overhead(NODE_ID))
    blocks = drain(community, ledger, budget)
    assert sum(len(b.records) for b in blocks) == 5_000
    sizes = [b.wire_size() for b in blocks]
    assert max(sizes) <= budget
    # Full blocks: the next record would not have fitted.
    assert min(sizes[:-1]) > budget - 1_000
    for block in blocks:
        pushed = message_bytes(
            MessageKind.BLOCK, NODE_ID, {"type": "block", "block": block.to_wire()}
        )
        assert pushed <= LINK_LIMIT


def test_on_the_latest_rules_a_block_is_sized_on_the_wire_and_a_larger_one_is_refused() -> None:
    community = Community(max_block_bytes=20_000)
    sealer_ledger, peer = community.node(), community.node()
    fill_pool(community, sealer_ledger, 200, keys=40)
    pooled = list(sealer_ledger.pool.values())
    community.now += 5_000
    block = sealer_ledger.build_block(community.sealers[0], now=community.now)
    assert block is not None
    assert 20_000 - MAX_HEADER_BYTES - 400 < block.wire_size() <= 20_000
    assert peer.add_block(block).status == "connected"

    # The same height, sealed by hand with every pooled record: over the limit.
    header = replace(block.header, root=record_root([r.id for r in pooled]))
    oversized = seal(header, tuple(pooled), community.sealers[0])
    with pytest.raises(Rejected) as refused:
        community.node().add_block(oversized)
    assert refused.value.reason is Reason.OVERSIZE
    assert "at most 5000 and 20000" in refused.value.message


async def test_a_node_does_not_adopt_its_own_block_when_it_could_not_send_it() -> None:
    community = first_rules_community()
    ledger = community.node()  # built without a transport budget: only the node guards
    clock = SimulatedClock(community.now)
    link = RecordingLink()
    node = LedgerNode(
        ledger=ledger,
        link=link,
        genesis=community.genesis,
        key=community.sealers[0],
        meter_key=None,
        clock=clock,
        sealer=True,
        message_limit=100_000,
    )
    fill_pool(community, ledger, 500, keys=10)
    community.now += 60_000
    clock.set(community.now)
    await node.seal()
    assert ledger.height == 0 and not link.sent

    ledger.max_block_wire = block_limit(100_000)
    await node.seal()
    assert ledger.height == 1 and link.sent
    assert all(len(canonical_json(body)) <= 100_000 for _, body in link.sent)


# --- sync answers paged by size ----------------------------------------------------------------


def catch_up(source: Ledger, target: Ledger, limit: int | None, now: int) -> list[Message]:
    """Let `target` sync from `source` over a transport of `limit` bytes; every message."""
    a = SyncNode(source, "a", member=lambda _: True, message_limit=limit)
    b = SyncNode(target, "b", member=lambda _: True, message_limit=limit)
    nodes = {"a": a, "b": b}
    queue: list[tuple[str, str, Message]] = [("a", "b", a.head_message(now))]
    seen: list[Message] = []
    while queue:
        src, dst, message = queue.pop(0)
        seen.append(message)
        assert len(seen) < 1_000, "sync did not finish"
        for to, reply in nodes[dst].handle(src, message, now):
            queue.append((dst, to or src, reply))
    return seen


def test_sync_answers_are_paged_to_the_message_limit_and_the_asker_catches_up() -> None:
    community = Community(max_block_bytes=20_000)
    source = community.node()
    fill_pool(community, source, 900, keys=150)
    blocks = drain(community, source, None)
    assert len(blocks) >= 15 and min(b.wire_size() for b in blocks[:-1]) > 15_000

    # Before paging, one answer carried every block asked for: far over a 64 KB transport.
    before = catch_up(source, community.node(), None, community.now)
    assert max(len(canonical_json(m)) for m in before) > 64_000

    limit = 64_000
    target = community.node()
    messages = catch_up(source, target, limit, community.now)
    assert target.head.hash == source.head.hash
    assert max(len(canonical_json(m)) for m in messages) <= limit
    pages = [len(m["blocks"]) for m in messages if m["type"] == "blocks"]
    assert sum(pages) == len(blocks) and min(pages) >= 1 and max(pages) == 3

    # A limit that holds one block at a time still gets there, one block a page.
    small = community.node()
    messages = catch_up(source, small, 21_000, community.now)
    assert small.head.hash == source.head.hash
    assert {len(m["blocks"]) for m in messages if m["type"] == "blocks"} == {1}
    assert max(len(canonical_json(m)) for m in messages) <= 21_000


def test_headers_are_paged_to_the_message_limit_too() -> None:
    community = Community()
    source = community.node()
    for i in range(30):
        community.seal(source, community.topup(community.key(f"home-{i}"), 1), sealer=0)
    target = community.node()
    messages = catch_up(source, target, 4_000, community.now)
    assert target.head.hash == source.head.hash
    assert max(len(canonical_json(m)) for m in messages) <= 4_000
    pages = [len(m["headers"]) for m in messages if m["type"] == "headers"]
    assert len(pages) >= 4 and sum(pages) == 30


def test_a_block_too_large_for_any_message_is_not_answered_rather_than_sent_oversized() -> None:
    community = first_rules_community()
    source = community.node()
    fill_pool(community, source, 300, keys=10)
    (big,) = drain(community, source, None)
    responder = SyncNode(source, "a", message_limit=big.wire_size() - 1)
    assert responder.handle("b", {"type": "get_blocks", "hashes": [big.hash]}, 0) == []
    assert not responder.block_fits(big)
