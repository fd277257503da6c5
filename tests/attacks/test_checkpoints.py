"""Checkpoints, snapshots and finality with real homes on a real Mosquitto broker (rules 3).

Three sealing homes run a street whose blocks carry a checkpoint every few blocks. A fourth
home starts with an empty ledger: it joins from a peer's snapshot (checked against the
checkpoint the signed, final header chain holds) and trades live. Then two sealers release
a private chain from genesis, valid in every block and heavier than the street's: every
home refuses it with `reverts_final`, the one that joined from the snapshot too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edge_controller.app.home import Home
from edge_controller.ledger import (
    Block,
    Consensus,
    Genesis,
    KeyPair,
    Ledger,
    Record,
    sign_record,
    state_digest,
)
from edge_controller.network import BrokerSettings
from tests.conftest import Mosquitto

from .history_support import ForkServer

BLOCK_INTERVAL_MS = 100
CHECKPOINT_INTERVAL = 4
FORK_BLOCKS = 120
TEST_BOUND_S = 90


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def until(check: Callable[[], Any], what: str, seconds: float = 30.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while not (result := check()):  # noqa: ASYNC110 - the conditions span several homes
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {seconds} s: {what}") from None
    return result


@dataclass
class Street:
    folder: Path
    broker: BrokerSettings
    registrar: KeyPair = field(default_factory=KeyPair.generate)
    keys: list[KeyPair] = field(default_factory=lambda: [KeyPair.generate() for _ in range(3)])
    homes: list[Home] = field(default_factory=list)
    _seq: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.genesis = Genesis(
            name="Checkpoint Street",
            currency="TST",
            time=now_ms() - 3_600_000,
            registrars=(self.registrar.public_hex,),
            consensus=Consensus(
                mode="poa",
                block_interval_ms=BLOCK_INTERVAL_MS,
                sealers=tuple(k.public_hex for k in self.keys),
                confirmations=2,
                checkpoint_interval=CHECKPOINT_INTERVAL,
            ),
        )

    async def add(self, name: str, key: KeyPair) -> Home:
        home = Home(
            name=name,
            data_dir=self.folder / name,
            genesis=self.genesis,
            node_key=key,
            community_broker=self.broker,
        )
        self.homes.append(home)
        await home.start()
        return home

    async def stop(self) -> None:
        for home in self.homes:
            await home.stop()

    def sign(self, key: KeyPair, kind: str, **fields: Any) -> Record:
        seq = self._seq[key.account] = self._seq.get(key.account, 0) + 1
        body = {"kind": kind, "seq": seq, "time": now_ms(), **fields}
        return sign_record(key, self.genesis.community_id, body)


@pytest.fixture
async def street(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Street]:
    s = Street(tmp_path, BrokerSettings(host=mosquitto.host, port=mosquitto.port))
    for i, key in enumerate(s.keys):
        await s.add(f"sealer-{i}", key)
    try:
        yield s
    finally:
        await s.stop()


def forge_valid_chain(street: Street, count: int) -> Ledger:
    """Two sealers' private chain from genesis, every block valid (checkpoints included),
    spaced as the rules ask, ending now: the attacker's own ledger holds it."""
    attacker = Ledger(street.genesis, clock=now_ms)
    step = BLOCK_INTERVAL_MS // 2 // 2 + 5  # two sealers in turn: each one's blocks spaced
    at = now_ms() - count * step - 1_000
    keys = street.keys[:2]
    blocks: list[Block] = []
    while len(blocks) < count:
        at += step
        key = keys[len(blocks) % 2]
        block = attacker.build_block(key, now=at)
        assert block is not None, f"the attacker could not seal block {len(blocks) + 1}"
        attacker.add_block(block, now=at)
        blocks.append(block)
    return attacker


async def test_a_new_home_joins_from_a_snapshot_trades_and_every_home_refuses_a_deep_fork(
    street: Street, tmp_path: Path
) -> None:
    async with asyncio.timeout(TEST_BOUND_S):
        await _scenario(street, tmp_path)


async def _scenario(street: Street, tmp_path: Path) -> None:
    sealer = street.homes[0]
    buyer = KeyPair.generate()
    await sealer.node.submit_signed(
        street.sign(street.registrar, "topup", to=buyer.account, amount=5_000).to_wire()
    )
    # Enough chain for a final checkpoint past the first: the street's snapshots exist.
    await until(
        lambda: all(h.ledger.final_height >= 3 * CHECKPOINT_INTERVAL for h in street.homes),
        "three checkpoints final on every sealer",
    )
    started = time.perf_counter()
    newcomer = await street.add("newcomer", KeyPair.generate())
    await until(
        lambda: (newcomer.status()["ledger"]["history"]["join"] or {}).get("phase") == "installed",
        "the newcomer installed a snapshot",
    )
    joined_s = time.perf_counter() - started
    history = newcomer.status()["ledger"]["history"]
    assert history["bodies_from"] > 1, history
    base = newcomer.ledger.base_height
    assert base % CHECKPOINT_INTERVAL == CHECKPOINT_INTERVAL - 1
    # Verified forward from the checkpoint, it follows the street.
    await until(lambda: newcomer.ledger.height >= sealer.ledger.height, "the newcomer caught up")

    # Live trading through the newcomer: a payment it signs reaches every chain.
    payment = street.sign(buyer, "transfer", to=newcomer.account, amount=700)
    await newcomer.node.submit_signed(payment.to_wire())
    await until(
        lambda: all(h.ledger.is_recorded(payment.id) for h in street.homes),
        "the newcomer's payment in every chain",
    )
    await until(
        lambda: len({h.ledger.head.hash for h in street.homes}) == 1,
        "one head on every home",
    )
    digests = {state_digest(h.ledger.state) for h in street.homes}
    assert len(digests) == 1, "the snapshot home's state differs from the replaying homes'"
    assert newcomer.ledger.block_at(base) is None  # it never fetched the old bodies

    # Two sealers release a valid private chain from genesis, heavier than the street's.
    attacker = forge_valid_chain(street, FORK_BLOCKS)
    assert attacker.head.work > max(h.ledger.head.work for h in street.homes)
    server = ForkServer(attacker, street.broker, tmp_path)
    await server.start()
    try:
        await server.announce()
        await until(
            lambda: all(h.node.sync.rejected["reverts_final"] for h in street.homes),
            "every home refused the deep fork",
        )
    finally:
        await server.stop()
    fork_first = attacker.main[1]
    for home in street.homes:
        assert fork_first not in home.ledger.index, home.name
        assert home.ledger.is_recorded(payment.id), home.name
        assert home.status()["rejected"]["sync"]["reverts_final"] >= 1, home.name
    print(
        f"snapshot join at checkpoint {base + 1} in {joined_s:.2f} s; a {FORK_BLOCKS}-block"
        f" fork refused by {len(street.homes)}/{len(street.homes)} homes"
    )
