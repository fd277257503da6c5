"""The block index and the best chain by height stay in memory only above the final height.

A SQLite-backed node keeps the index entries and best-chain hashes it decides forks with
(from the final height up, and a small cache); older ones are read from SQLite when asked.
These tests count what is held in memory (entries, not bytes) as blocks pass the final
height, and check that forks, lookups, a start and a reload answer as a node that keeps
everything in memory does.
"""

from __future__ import annotations

import sqlite3
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from edge_controller.ledger import Block, KeyPair, Ledger, Reason, Rejected, chain
from edge_controller.ledger import index as block_index
from edge_controller.ledger.genesis import SECOND_RULES
from edge_controller.ledger.store import SqliteStore

from .support import Community

BLOCKS = 240
CACHE = 16


def _next_key(c: Community, ledger: Ledger) -> KeyPair:
    return next(k for k in c.sealers if ledger.first_in_line(k))


@cache
def _poa_chain(count: int = 2 * BLOCKS) -> tuple[Community, tuple[Block, ...]]:
    """Three sealers taking turns on the latest rules; a top-up every fifth block."""
    c = Community(sealers=3)
    ledger = c.node()
    blocks = []
    for height in range(1, count + 1):
        if height % 5 == 0:
            ledger.submit(c.topup(c.key(f"home-{height % 7}"), height))
        c.now += 1_000
        block = ledger.build_block(_next_key(c, ledger), now=c.now)
        assert block is not None
        assert ledger.add_block(block).status == "connected"
        blocks.append(block)
    return c, tuple(blocks)


def _store(path: Path) -> SqliteStore:
    # No fsync per commit: these tests count entries, they do not test durability.
    return SqliteStore(path, synchronous="OFF")


def _fed(c: Community, path: Path, blocks: tuple[Block, ...] | list[Block]) -> Ledger:
    ledger = c.node(_store(path))
    for block in blocks:
        ledger.add_block(block, now=block.header.time)
    return ledger


def _held(ledger: Ledger) -> dict[str, int]:
    """What the node holds in memory of its chain's history, in entries."""
    return {
        "index": ledger.index.in_memory(),
        "main": ledger.main.in_memory(),
        "children": len(ledger.children),
        "tips": len(ledger.tips),
        "views": len(ledger.sealer_timeline._views),
    }


@pytest.fixture
def small_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache of 16 entries, so a few hundred blocks show whether memory grows."""
    monkeypatch.setattr(block_index, "COLD_ENTRIES", CACHE)
    monkeypatch.setattr(block_index, "COLD_HASHES", CACHE)


@pytest.mark.usefixtures("small_cache")
def test_index_entries_held_in_memory_stay_bounded_as_blocks_pass_the_final_height(
    tmp_path: Path,
) -> None:
    c, blocks = _poa_chain()
    ledger = _fed(c, tmp_path / "chain.db", blocks[:BLOCKS])
    at_half = _held(ledger)
    for block in blocks[BLOCKS:]:
        ledger.add_block(block, now=block.header.time)
    at_full = _held(ledger)
    # Read every old entry and hash once: the cache takes them, within its bound.
    for height in range(1, ledger.height + 1):
        assert ledger.index[ledger.main[height]].height == height
    after_reads = _held(ledger)
    window = ledger.height - ledger.final_height + 1
    assert window <= 4, (ledger.height, ledger.final_height)
    for held in (at_half, at_full, after_reads):
        assert held["index"] <= window + 1 + CACHE, held  # + genesis
        assert held["main"] <= window + CACHE, held
        assert held["children"] <= window + 1, held
        assert held["tips"] == 1, held
    assert at_full == at_half, (at_half, at_full)
    # A node without SQLite behind it keeps everything, as before.
    memory = c.node()
    for block in blocks:
        memory.add_block(block, now=block.header.time)
    assert memory.index.in_memory() == len(blocks) + 1
    assert memory.main.in_memory() == len(blocks) + 1
    assert ledger.head == memory.head and ledger.final_height == memory.final_height
    assert len(ledger.index) == len(memory.index)


@pytest.mark.usefixtures("small_cache")
def test_an_old_block_is_looked_up_by_hash_and_by_height_from_sqlite(tmp_path: Path) -> None:
    c, blocks = _poa_chain()
    ledger = _fed(c, tmp_path / "chain.db", blocks)
    memory = c.node()
    for block in blocks:
        memory.add_block(block, now=block.header.time)
    old = blocks[9]
    assert not ledger.index.holds(old.hash) and ledger.main.start > old.height
    statements: list[str] = []
    ledger.store.db.set_trace_callback(statements.append)  # type: ignore[attr-defined]
    assert ledger.main[old.height] == old.hash
    assert any("FROM main WHERE height" in s for s in statements), statements
    statements.clear()
    assert ledger.index[old.hash] == memory.index[old.hash]
    assert any("FROM blocks WHERE hash" in s for s in statements), statements
    assert old.hash in ledger.index and "f" * 64 not in ledger.index
    assert ledger.index.get("f" * 64) is None
    # Everything built on the index answers as the in-memory node does.
    assert ledger.block_at(old.height) == old
    assert ledger.signed_header(old.hash) == (old.header, old.sig)
    assert ledger.ancestor(ledger.head, old.height) == memory.index[old.hash]
    assert ledger.main[5:15] == memory.main[5:15] == [b.hash for b in blocks[4:14]]
    assert ledger.main[-3:] == memory.main[-3:]
    locator = [blocks[29].hash, blocks[9].hash]
    assert ledger.fork_point(locator) == 30
    assert ledger.headers_after(locator, 20) == memory.headers_after(locator, 20)
    assert ledger.signed_headers_after(locator, 20) == memory.signed_headers_after(locator, 20)
    assert ledger.locator() == memory.locator()
    assert [b.hash for b in ledger.iter_main(400)] == [b.hash for b in blocks[399:]]
    assert ledger.main == memory.main and list(ledger.main) == list(memory.main)
    assert set(ledger.index) == set(memory.index)


def _open_counting(
    c: Community, path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Ledger, dict[str, int]]:
    """Open the ledger at `path`, counting the index entries and hashes it reads."""
    reads = {"entries": 0, "lookups": 0, "hashes": 0}
    entries, lookup, hashes = (
        SqliteStore.index_entries,
        SqliteStore.index_entry,
        SqliteStore.main_hashes,
    )

    def counted_entries(store: SqliteStore, *args: Any) -> Any:
        found = entries(store, *args)
        reads["entries"] += len(found)
        return found

    def counted_lookup(store: SqliteStore, *args: Any) -> Any:
        reads["lookups"] += 1
        return lookup(store, *args)

    def counted_hashes(store: SqliteStore, *args: Any) -> Any:
        found = hashes(store, *args)
        reads["hashes"] += len(found)
        return found

    with monkeypatch.context() as patch:
        patch.setattr(SqliteStore, "index_entries", counted_entries)
        patch.setattr(SqliteStore, "index_entry", counted_lookup)
        patch.setattr(SqliteStore, "main_hashes", counted_hashes)
        ledger = c.node(_store(path))
    return ledger, reads


@pytest.mark.usefixtures("small_cache")
def test_a_reload_after_many_blocks_reads_only_the_window_and_answers_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, blocks = _poa_chain()
    path = tmp_path / "chain.db"
    before = _fed(c, path, blocks)
    head, digest, final = before.head, before.state_digest, before.final_height
    answers = (before.locator(), before.main[1:50], before.index[blocks[3].hash])
    before.close()
    ledger, reads = _open_counting(c, path, monkeypatch)
    depth = c.genesis.consensus.finality_depth
    # The start read the last finality_depth heights of the index, not the chain's 480.
    assert reads["entries"] <= depth + 1 and reads["hashes"] <= depth + 1, reads
    assert reads["lookups"] <= 16, reads
    assert ledger.head == head and ledger.state_digest == digest
    assert ledger.final_height == final
    assert (ledger.locator(), ledger.main[1:50], ledger.index[blocks[3].hash]) == answers
    window = ledger.height - ledger.final_height + 1
    assert ledger.index.in_memory() <= window + 1 + CACHE
    assert ledger.main.in_memory() <= window + CACHE
    assert ledger.tips == {head.hash} and len(ledger.children) <= window + 1
    # It follows the chain on from there as before.
    c.now = blocks[-1].header.time
    for _ in range(5):
        c.now += 1_000
        block = ledger.build_block(_next_key(c, ledger), now=c.now)
        assert block is not None and ledger.add_block(block).status == "connected"
    assert ledger.height == len(blocks) + 5


def _pow_chain(c: Community, ledger: Ledger, count: int) -> list[Block]:
    return [c.seal(ledger) for _ in range(count)]


def test_a_fork_within_the_window_reorganises_and_one_past_finality_is_refused(
    tmp_path: Path,
) -> None:
    c = Community(mode="pow", finality_depth=10, checkpoint_interval=0)
    source = c.node()
    blocks = _pow_chain(c, source, 200)
    path = tmp_path / "chain.db"
    ledger = _fed(c, path, blocks)
    assert ledger.final_height == 190 and ledger.index.floor == 190

    # A heavier branch from 5 below the head: followed, 5 blocks rolled back.
    rival = c.node()
    for block in blocks[:195]:
        rival.add_block(block, now=block.header.time)
    branch = _pow_chain(c, rival, 7)
    outcomes = [ledger.add_block(b, now=c.now) for b in branch]
    assert outcomes[-1].status == "connected" and max(o.reorg_depth for o in outcomes) == 5
    assert ledger.head.hash == branch[-1].hash and ledger.main[196] == branch[0].hash
    assert ledger.state.digest() == rival.state.digest()

    # A branch from block 100, long since below the final height and out of memory.
    attacker = c.node()
    for block in blocks[:100]:
        attacker.add_block(block, now=block.header.time)
    fork = _pow_chain(c, attacker, 3)
    assert not ledger.index.holds(fork[0].prev)
    with pytest.raises(Rejected) as refused:
        ledger.add_block(fork[0], now=c.now)
    assert refused.value.reason is Reason.REVERTS_FINAL
    assert fork[0].hash not in ledger.index
    assert ledger.reverts_final(fork[0].prev)
    # The same after a restart.
    ledger.close()
    reopened = c.node(_store(path))
    assert reopened.head.hash == branch[-1].hash
    with pytest.raises(Rejected) as again:
        reopened.add_block(fork[0], now=c.now)
    assert again.value.reason is Reason.REVERTS_FINAL


def test_a_database_without_the_height_index_gets_it_when_opened(tmp_path: Path) -> None:
    c, blocks = _poa_chain()
    path = tmp_path / "chain.db"
    ledger = _fed(c, path, blocks[:40])
    head = ledger.head
    ledger.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX blocks_by_height")
    reopened = c.node(_store(path))
    assert reopened.head == head
    with sqlite3.connect(path) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT hash FROM blocks WHERE height >= 30"
        ).fetchall()
    assert any("blocks_by_height" in str(row) for row in plan), plan


def test_the_sealer_timeline_is_seeded_at_start_without_a_walk_to_genesis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = Community(sealers=1)
    memory = c.node()
    founder, newcomer = c.sealers[0], c.key("newcomer")
    blocks = []
    memory.submit(c.sign(c.registrar, "sealer", key=newcomer.public_hex, action="add"))
    for _ in range(300):
        c.now += 2_000
        key = next(k for k in (founder, newcomer) if memory.first_in_line(k))
        block = memory.build_block(key, now=c.now)
        assert block is not None and memory.add_block(block).status == "connected"
        blocks.append(block)
    assert memory.sealer_set() == (founder.public_hex, newcomer.public_hex)
    path = tmp_path / "chain.db"
    _fed(c, path, blocks).close()
    ledger, reads = _open_counting(c, path, monkeypatch)
    # The change at height 1 is worked out over the few blocks that made it final.
    assert reads["lookups"] <= 32, reads
    assert ledger.sealer_set() == memory.sealer_set()
    for height in (1, 2, 3, 4, 150, 299, 300):
        entry = ledger.index[ledger.main[height]]
        assert ledger.sealer_timeline.in_force(entry) == memory.sealer_timeline.in_force(entry)
    c.now += 2_000
    key = next(k for k in (founder, newcomer) if ledger.first_in_line(k))
    block = ledger.build_block(key, now=c.now)
    assert block is not None and ledger.add_block(block).status == "connected"


def test_a_start_reads_further_back_when_the_final_height_is_below_its_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rules 2: the final height comes from the sealers alone; a window of 0 heights makes
    # the start read the head only, and find the final block two below it.
    monkeypatch.setattr(chain, "INDEX_WINDOW", 0)
    c = Community(sealers=3, rules=SECOND_RULES)
    source = c.node()
    blocks = []
    for _ in range(30):
        c.now += 1_000
        block = source.build_block(_next_key(c, source), now=c.now)
        assert block is not None and source.add_block(block).status == "connected"
        blocks.append(block)
    path = tmp_path / "chain.db"
    _fed(c, path, blocks).close()
    ledger = c.node(_store(path))
    assert ledger.head == source.head and ledger.final_height == source.final_height == 28
    assert ledger.index.floor == 28 and ledger.main.start == 28
    assert ledger.tips == {source.head.hash}
    assert ledger.index.holds(blocks[27].hash) and not ledger.index.holds(blocks[26].hash)
    c.now += 1_000
    block = ledger.build_block(_next_key(c, ledger), now=c.now)
    assert block is not None and ledger.add_block(block).status == "connected"
