"""Fake peers: a client on the community broker announces heads of invented nodes, far ahead
of everyone, unsigned or signed by keys nobody knows, thousands a second.

Before, every invented sender id became a peer for good; every home asked each one for
headers, each request written to the fsynced outbox (45,523 `get_headers` in 60 s), and
every home stayed at `synced: false`. Now a peer is a node that signed with the key its id
derives from; an unknown one is a bounded, rate-limited candidate whose claims count for
nothing until it delivers a block, and sync requests never touch the outbox.

Against real homes: three in-process `Home`s (sealers, with their APIs) on a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_controller.ledger import SyncNode
from edge_controller.ledger.sync import MAX_CANDIDATE_ASKS, MAX_CANDIDATES
from tests.attacks.hostile_support import Attacker, SyncListener
from tests.conftest import Mosquitto
from tests.edge.api_support import Street, running_street
from tests.ledger.support import Community

FLOOD_SECONDS = 6.0


@pytest.fixture
async def street(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Street]:
    async with running_street(tmp_path, mosquitto.port) as community:
        yield community


async def offer_to_block_s(street: Street) -> float:
    """Seconds from Sunny's offer to a block holding it in every home."""
    started = time.monotonic()
    offer = await street.sunny.offer(quantity=10)
    await street.in_a_block_everywhere(offer["id"], within=20)
    return time.monotonic() - started


async def test_fake_peers_flood_leaves_homes_synced_and_trading(
    street: Street, mosquitto: Mosquitto
) -> None:
    community = street.genesis.community_id
    homes = {home.account for home in street}
    listener = SyncListener(mosquitto.port, community, homes)
    await listener.start()
    try:
        calm = await offer_to_block_s(street)
        outbox_before = {h.name: h.link.stats().outbox_pending for h in street}
        attacker = Attacker(mosquitto.port, community)
        unsigned = asyncio.create_task(attacker.flood(FLOOD_SECONDS, "unsigned_heads", 1_000))
        signed = asyncio.create_task(attacker.flood(FLOOD_SECONDS, "signed_heads", 500))
        await asyncio.sleep(FLOOD_SECONDS / 2)
        flooded = await offer_to_block_s(street)
        await asyncio.gather(unsigned, signed)
        statuses = [await client.get("status") for client in street.clients.values()]
    finally:
        await listener.stop()
    fake_requests = sum(n for kind, n in listener.requests.items() if kind.endswith("to fake"))
    print(
        f"fake heads sent {attacker.sent}, sync messages {dict(listener.requests)}, "
        f"offer to block {calm:.2f} s calm, {flooded:.2f} s under the flood"
    )
    # Unsigned heads make no peer; each home asks at most a few candidates at a time, one
    # request each per timeout, so the fake peers get a bounded trickle, not thousands.
    homes_n = len(homes)
    timeouts = int(FLOOD_SECONDS * 1000 / 5_000) + 2
    assert fake_requests <= homes_n * MAX_CANDIDATE_ASKS * timeouts + homes_n * MAX_CANDIDATES
    for status in statuses:
        assert status["ledger"]["synced"] is True, status["ledger"]
        assert status["ledger"]["sync_progress"] == 1.0
    # Sync requests never go to the durable outbox.
    for home in street:
        assert home.link.stats().outbox_pending <= outbox_before[home.name] + 5
    # Offers reach blocks at normal speed (a block interval is 0.5 s; allow load).
    assert flooded < max(3 * calm, calm + 2.0), (calm, flooded)


def test_a_candidate_peer_counts_for_nothing_until_it_delivers() -> None:
    """The pure rule: unknown signed peers are capped, asked a few at a time, forgotten
    when they do not answer, and never make a node think it is behind."""
    community = Community(mode="poa", sealers=1)
    node = SyncNode(community.node(), "me")
    now = community.now
    asked = 0
    for i in range(500):
        head = {"type": "head", "height": 10**6, "hash": f"{i:064x}", "work": "f" * 40}
        asked += len(node.handle(f"ep{i:040x}", head, now + i))
    assert asked == MAX_CANDIDATE_ASKS
    assert len(node.peers) == MAX_CANDIDATES
    # Their heads make it neither behind nor answered: unknown until a member answers.
    progress = node.progress()
    assert progress.synced is None and not progress.ahead and progress.target == 0
    # An unsigned head makes no peer at all.
    unsigned = {"type": "head", "height": 1, "hash": "0" * 64, "work": "1"}
    assert node.handle("ep" + "f" * 40, unsigned, now, verified=False) == []
    assert len(node.peers) == MAX_CANDIDATES and node.rejected["unverified_peer"] == 1
    # Candidates that leave their requests unanswered, or fall silent, are forgotten.
    for step in range(1, 12):
        node.tick(now + 500 + step * 6_000)
    assert node.peers == {} and node.pruned >= MAX_CANDIDATES
