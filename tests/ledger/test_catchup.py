"""Catching up with signature workers: blocks applied while the workers verify the next
ones end in the same chain, state, stored digests and refusals as one core applying them.

The speed is measured by `bench growth` (`catchup_records_per_s`), not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_controller.bench.ledger import BenchCommunity, signed_chain
from edge_controller.ledger import Block, Ledger, Reason, Rejected, SignaturePool
from edge_controller.ledger.chain import BlockResult

from .support import Community
from .test_blocks import forge

HOMES = 11
BATCH = 4


@pytest.fixture(scope="module")
def pool() -> Iterator[SignaturePool]:
    workers = SignaturePool(2)
    yield workers
    workers.close()


def _outcomes(outcomes: list[BlockResult | Rejected]) -> list[tuple[str, str]]:
    return [
        ("refused", o.reason.value) if isinstance(o, Rejected) else (o.status, o.block_hash)
        for o in outcomes
    ]


def _catch_up(ledger: Ledger, blocks: list[Any], now: int) -> list[tuple[str, str]]:
    seen = []
    for i in range(0, len(blocks), BATCH):
        seen += _outcomes(ledger.add_blocks(blocks[i : i + BATCH], now))
    return seen


def _stored_digests(ledger: Ledger) -> list[str | None]:
    return [ledger.store.digest_of(h) for h in ledger.main]


def test_catching_up_with_workers_stores_what_one_core_stores(
    tmp_path: Path, pool: SignaturePool
) -> None:
    street = BenchCommunity.create(HOMES)
    blocks = [b.to_wire() for b in signed_chain(street, 3_000)]
    now = blocks[-1]["header"]["time"] + 60_000
    alone = Ledger.open(tmp_path / "alone.db", street.genesis)
    helped = Ledger.open(tmp_path / "helped.db", street.genesis, signature_pool=pool)
    assert _catch_up(helped, blocks, now) == _catch_up(alone, blocks, now)
    assert helped.head.hash == alone.head.hash
    assert helped.state.digest() == alone.state.digest()
    assert helped.state_digest == alone.state_digest
    assert _stored_digests(helped) == _stored_digests(alone)
    digest = helped.state.digest()
    alone.close()
    helped.close()
    # Reopened, the stored state matches its digest (the node checks it at start).
    again = Ledger.open(tmp_path / "helped.db", street.genesis)
    assert again.state.digest() == digest
    again.close()


def _chain_with_a_bad_block(c: Community) -> tuple[list[Block], Block, Block]:
    """Three good blocks, then one whose record the rules refuse (an acceptance of an offer
    no block holds, validly signed) and one built on it."""
    ledger = c.node()
    seller, buyer = c.key("seller"), c.key("buyer")
    good = [
        c.seal(ledger, c.register("cell-1", seller), c.topup(buyer)),
        c.seal(ledger, c.offer(seller, "cell-1", 2_000)),
        c.seal(ledger, c.topup(seller)),
    ]
    never_sealed = c.offer(seller, "cell-1", 1_000)
    c.now += 1_000
    bad = forge(ledger, c.sealers[0], (c.accept(buyer, never_sealed, 500),))
    with pytest.raises(Rejected):
        ledger.add_block(bad)
    c.now += 1_000
    after = forge(ledger, c.sealers[0], parent=ledger.index[bad.hash])
    return good, bad, after


def test_a_block_the_rules_refuse_in_a_batch_is_refused_as_on_one_core(
    pool: SignaturePool,
) -> None:
    c = Community()
    good, bad, after = _chain_with_a_bad_block(c)
    batch = [b.to_wire() for b in (*good, bad, after)]
    alone = c.node()
    helped = Ledger(c.genesis, clock=lambda: c.now, signature_pool=pool)
    seen = _outcomes(helped.add_blocks(batch))
    assert seen == _outcomes(alone.add_blocks(batch))
    assert seen[3] == ("refused", Reason.INVALID_RECORD.value)
    assert helped.head.hash == alone.head.hash == good[-1].hash
    assert helped.state.digest() == alone.state.digest()
    assert helped.index[bad.hash].invalid == alone.index[bad.hash].invalid
    assert not helped.state.journal


def test_a_bad_signature_in_a_batch_is_refused_as_on_one_core(pool: SignaturePool) -> None:
    c = Community()
    good, _, _ = _chain_with_a_bad_block(c)
    batch = [b.to_wire() for b in good]
    sig = batch[1]["records"][0]["sig"]
    batch[1]["records"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    alone = c.node()
    helped = Ledger(c.genesis, clock=lambda: c.now, signature_pool=pool)
    seen = _outcomes(helped.add_blocks(batch))
    assert seen == _outcomes(alone.add_blocks(batch))
    assert seen[1] == ("refused", Reason.BAD_SIGNATURE.value)
    assert helped.head.hash == alone.head.hash == good[0].hash
    assert helped.state.digest() == alone.state.digest()


def test_a_batch_whose_first_block_loses_to_its_sibling_is_followed_as_on_one_core(
    pool: SignaturePool,
) -> None:
    """A block applied early is undone when its sibling in the same batch has more work."""
    c = Community(sealers=3)
    ledger = c.node()
    buyer = c.key("buyer")
    base = c.seal(ledger, c.topup(buyer))
    # Two sealers other than the base's: the one in turn seals the heavier block.
    others = [k for k in c.sealers if k.public_hex != base.header.sealer]
    in_turn, out_of_turn = sorted(others, key=lambda k: not ledger.in_turn(k))
    c.now += 10_000
    lighter = forge(ledger, out_of_turn, (c.topup(buyer),), time=c.now)
    heavier = forge(ledger, in_turn, time=c.now)
    assert lighter.header.difficulty < heavier.header.difficulty
    alone, helped = c.node(), Ledger(c.genesis, clock=lambda: c.now, signature_pool=pool)
    for node in (alone, helped):
        node.add_blocks([base.to_wire()])
    batch = [lighter.to_wire(), heavier.to_wire()]
    seen = _outcomes(helped.add_blocks(batch))
    assert seen == _outcomes(alone.add_blocks(batch))
    assert helped.head.hash == alone.head.hash == heavier.hash
    assert helped.state.digest() == alone.state.digest()
    assert not helped.state.journal


def test_a_worker_that_dies_leaves_the_node_to_verify_alone() -> None:
    street = BenchCommunity.create(HOMES)
    blocks = [b.to_wire() for b in signed_chain(street, 600)]
    now = blocks[-1]["header"]["time"] + 60_000
    workers = SignaturePool(1)
    try:
        workers._processes[0].kill()
        workers._processes[0].join()
        helped = Ledger(street.genesis, signature_pool=workers)
        alone = Ledger(street.genesis)
        assert _catch_up(helped, blocks, now) == _catch_up(alone, blocks, now)
        assert helped.head.hash == alone.head.hash
        assert helped.state.digest() == alone.state.digest()
    finally:
        workers.close()
