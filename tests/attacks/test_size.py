"""Blocks that always travel, attacked against real homes: `energy-p2p-edge run` processes
on a real Mosquitto broker.

Before, genesis allowed 2 MB blocks while the link carries 512 KiB messages: a flood of
`request` records made each sealer adopt a block it could neither publish nor serve (every
sealer ended on its own fork), and sync answers of up to 32 blocks were never sent (a home
that was away never caught up). Now a block is built to fit one message and sync answers
are paged by size.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_controller.ledger import BLOCKS_FRAME_BYTES, FIRST_RULES, MAX_BLOCK_BYTES
from edge_controller.network import LinkLimits
from edge_controller.network.envelope import envelope_overhead
from tests.conftest import Mosquitto
from tests.edge.support import Community, EdgeProcess, wait_until

from .size_support import Spammer, blocks_of, forget_session, refound, requests, spam_keys

pytestmark = pytest.mark.slow

LINK_LIMIT = LinkLimits().max_message_bytes


class Street:
    """Homes of one community as real processes, started and stopped by the test."""

    def __init__(self, folder: Path, broker: Mosquitto, names: list[str]) -> None:
        self.folder = folder
        self.broker = broker
        self.community = Community(folder, names)
        self.homes: dict[str, EdgeProcess] = {}

    def start(self, not_sealing: tuple[str, ...] = ()) -> None:
        for name in self.community.homes:
            path = self.community.config(name, self.broker.port)
            if name in not_sealing:
                document = yaml.safe_load(path.read_text())
                path.write_text(yaml.safe_dump({**document, "sealer": False}))
            self.homes[name] = EdgeProcess(path, self.folder / f"{name}.log").start()

    def stop(self) -> None:
        for home in self.homes.values():
            home.stop()

    def status(self, name: str) -> dict[str, Any]:
        ledger: dict[str, Any] = self.homes[name].get("status")["ledger"]
        return ledger

    def one_head(self, names: list[str]) -> str | None:
        """The head every named home shares once their pools are empty, else None."""
        ledgers = [self.status(n) for n in names]
        heads = {ledger["head"] for ledger in ledgers}
        empty = all(ledger["pool"] == 0 and ledger["height"] > 0 for ledger in ledgers)
        return heads.pop() if len(heads) == 1 and empty else None

    def unsent(self) -> list[str]:
        """Log lines of messages a home built but could not send."""
        return [
            line
            for home in self.homes.values()
            for line in home.log_path.read_text(errors="replace").splitlines()
            if "exceeds" in line or "would not fit" in line or "too large for one" in line
        ]


@pytest.fixture
def broker(mosquitto: Mosquitto) -> Iterator[Mosquitto]:
    """The test broker with the limits of the deployed one (deploy/mosquitto/street.conf):
    messages up to the link's limit, and a deep queue for a subscriber that falls behind."""
    mosquitto.stop()
    with mosquitto.config.open("a") as config:
        config.write(f"message_size_limit {LINK_LIMIT}\nmax_queued_messages 100000\n")
    mosquitto.start()
    yield mosquitto


@pytest.fixture
def street(tmp_path: Path, broker: Mosquitto) -> Iterator[Street]:
    made = Street(tmp_path, broker, ["north", "south", "east"])
    try:
        yield made
    finally:
        made.stop()


def test_a_flood_of_requests_no_longer_forks_every_sealer_off_on_its_own(street: Street) -> None:
    # The community of the attack: founded on the first rules, whose genesis allows 2 MB
    # blocks; three sealers, 1 s blocks.
    community = street.community
    refound(community, rules=FIRST_RULES, max_block_bytes=2_000_000)
    street.start()
    names = list(community.homes)
    north = street.homes["north"]
    north.post("records", community.topup("north", 1_000))
    # The flood comes from members: the community funded each of its keys. A stranger's
    # records share one inbound lane that sheds a flood, so only members can fill blocks
    # for certain, and they are the attack the size bound must hold against.
    keys = spam_keys(120)
    for key in keys:
        north.post("records", community.registrar_record(kind="topup", to=key.account, amount=1))
    wait_until(lambda: street.one_head(names), timeout=60, what="the flood's keys funded")
    assert all(north.get(f"wallet?account={key.account}")["balance"] == 1 for key in keys)

    # 6,000 requests (2.3 MB of records) from 120 keys, each in its signer's name.
    spam = requests(community.genesis.community_id, keys, 50, int(time.time() * 1000))
    spammer = Spammer(street.broker.port, community.genesis.community_id)
    began = time.monotonic()
    try:
        spammer.push(spam)
    finally:
        spammer.close()
    # Honest records sent during the flood still reach blocks, at every home.
    for name in names:
        street.homes[name].post("records", community.topup(name, 777))
    head = wait_until(
        lambda: street.one_head(names), timeout=120, what="one chain holding every record"
    )
    absorbed = time.monotonic() - began

    blocks = blocks_of(north)
    assert blocks[-1]["hash"] == head
    requested = sum(1 for b in blocks for r in b["records"] if r["kind"] == "request")
    assert requested == len(spam)
    largest = max(blocks, key=lambda b: b["bytes"])
    # With its sync message and envelope around it, it fits the link's message.
    assert largest["bytes"] + BLOCKS_FRAME_BYTES + envelope_overhead(north.account) <= LINK_LIMIT
    assert len(largest["records"]) > 1_000  # the flood did fill blocks to the bound
    for name in names:
        assert north.get(f"wallet?account={community.account(name)}")["balance"] == 777 + (
            1_000 if name == "north" else 0
        )
    assert street.unsent() == []
    print(
        f"\nfigure: {len(spam)} requests held; largest block {largest['bytes']} bytes, "
        f"{len(largest['records'])} records; {len(blocks)} blocks; one chain after {absorbed:.1f} s"
    )


def test_a_home_away_while_the_largest_blocks_are_sealed_catches_up(street: Street) -> None:
    # A community on the latest rules: its genesis allows the largest blocks that travel.
    community = street.community
    sealers = tuple(community.keys[n].public_hex for n in ("north", "south"))
    # No minimum balance: the blocks, not the cost of a record, are under test here.
    refound(community, sealers=sealers, block_interval_ms=4_000, min_balance=0)
    assert community.genesis.consensus.max_block_bytes == MAX_BLOCK_BYTES
    street.start(not_sealing=("east",))
    east = street.homes["east"]
    north = street.homes["north"]
    north.post("records", community.topup("east", 1_000))
    wait_until(lambda: street.status("east")["height"] > 0, what="east to follow the chain")
    east.stop()

    # Enough requests for four blocks at the size bound, sent faster than blocks are sealed
    # (4 s blocks: on a busy machine the flood may straddle a seal, so three must be full).
    spam = requests(community.genesis.community_id, spam_keys(120), 50, int(time.time() * 1000))
    spammer = Spammer(street.broker.port, community.genesis.community_id)
    try:
        spammer.push(spam)
    finally:
        spammer.close()
    north.post("records", community.topup("east", 5))
    head = wait_until(
        lambda: street.one_head(["north", "south"]), timeout=120, what="the sealers to agree"
    )
    blocks = blocks_of(north)
    full = [b for b in blocks if b["bytes"] > MAX_BLOCK_BYTES - 1_000]
    assert len(full) >= 3, [b["bytes"] for b in blocks]
    assert max(b["bytes"] for b in blocks) <= MAX_BLOCK_BYTES

    # What the broker queued for east meanwhile is gone: only sync can bring it back.
    forget_session(street.broker.port, east.account)
    restarted = time.monotonic()
    east.start()

    def caught_up() -> bool:
        ledger = street.status("east")
        return bool(ledger["synced"] and ledger["head"] == head)

    wait_until(caught_up, timeout=60, what="the away home to catch up")
    catch_up_s = time.monotonic() - restarted
    assert east.get("wallet")["balance"] == 1_005
    assert street.status("east")["height"] == len(blocks)
    assert street.unsent() == []
    megabytes = sum(b["bytes"] for b in blocks) / 1e6
    print(
        f"\nfigure: away home caught up {len(blocks)} blocks ({len(full)} at the bound, "
        f"{megabytes:.1f} MB) in {catch_up_s:.1f} s after restart"
    )
