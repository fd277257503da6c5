"""A home upgraded after a year keeps its data: a store written before state rows were
packed (row format 1: every row in its canonical form, undo data as text) opens, is
rewritten in place, holds the same state, and its node goes on from where it was."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import zlib
from contextlib import closing
from pathlib import Path

import pytest

from edge_controller.bench.ledger import BenchCommunity, signed_chain
from edge_controller.ledger import Block, DamagedStore, Ledger
from edge_controller.ledger.integrity import as_hex, fold, row_hash
from edge_controller.ledger.state import State, is_finished
from edge_controller.ledger.store import ROW_FORMAT
from edge_controller.ledger.verify import StoredChain

HOMES = 11
ROOT = Path(__file__).resolve().parents[2]


def _as_format_2(db: Path) -> None:
    """Turn a store into what a node before row format 3 wrote: no mark of finished rows,
    no stored share of the digest."""
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DROP INDEX state_live")
        conn.execute("ALTER TABLE state DROP COLUMN cold")
        conn.execute("DELETE FROM meta WHERE key = 'cold'")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'rows'")


def _as_format_1(db: Path) -> None:
    """Turn a store into what a node before row format 2 wrote."""
    _as_format_2(db)
    tables = {t.name: t for t in State().tables()}
    with closing(sqlite3.connect(db)) as conn, conn:
        rows = conn.execute("SELECT tbl, key, value FROM state").fetchall()
        canonical = [
            (name, key, tables[name].encode(tables[name].unpack(key, value)))
            for name, key, value in rows
        ]
        conn.executemany(
            "UPDATE state SET value = ? WHERE tbl = ? AND key = ?",
            [(value, name, key) for name, key, value in canonical],
        )
        for block_hash, data in conn.execute("SELECT hash, data FROM undo").fetchall():
            undo = [
                (n, k, None if old is None else tables[n].encode(tables[n].unpack(k, old)))
                for n, k, old in json.loads(zlib.decompress(data))
            ]
            conn.execute(
                "UPDATE undo SET data = ? WHERE hash = ?",
                (json.dumps(undo, separators=(",", ":")), block_hash),
            )
        head = conn.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()[0]
        conn.execute("DELETE FROM digests")
        conn.execute("INSERT INTO digests VALUES (?, ?)", (head, as_hex(fold(canonical))))
        conn.execute("DELETE FROM meta WHERE key = 'rows'")


def test_a_store_of_the_old_row_format_opens_with_its_data_and_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    street, blocks = _written(db, blocks=6)
    first, rest = blocks[:-6], blocks[-6:]
    with closing(sqlite3.connect(db)) as conn:
        packed = conn.execute("SELECT SUM(LENGTH(value)) FROM state").fetchone()[0]
    _as_format_1(db)
    with closing(sqlite3.connect(db)) as conn:
        canonical = conn.execute("SELECT SUM(LENGTH(value)) FROM state").fetchone()[0]
    assert packed < canonical * 0.9

    memory = _in_memory(street, first)
    upgraded = Ledger.open(db, street.genesis)  # re-checks the last blocks over old undo data
    assert upgraded.height == len(first)
    assert upgraded.state.digest() == memory.state.digest()
    _goes_on_alike(upgraded, memory, rest)
    with closing(sqlite3.connect(db)) as conn:
        stored = conn.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone()
        assert stored == (str(ROW_FORMAT),)
    # Reopened once more (the digests stored again), and verified from genesis.
    Ledger.open(db, street.genesis).close()
    _verified_from_genesis(db, street)


def _in_memory(street: BenchCommunity, blocks: list[Block]) -> Ledger:
    """A ledger in memory that took `blocks`: what a store must agree with."""
    memory = Ledger(street.genesis)
    for block in blocks:
        memory.add_block(block, now=block.header.time)
    return memory


def _goes_on_alike(upgraded: Ledger, memory: Ledger, blocks: list[Block]) -> None:
    """`upgraded` takes `blocks` as `memory` does and ends in the same state; then closed."""
    for block in blocks:
        assert upgraded.add_block(block, now=block.header.time).status == "connected"
        memory.add_block(block, now=block.header.time)
    assert upgraded.state.digest() == memory.state.digest()
    upgraded.close()


def _verified_from_genesis(db: Path, street: BenchCommunity) -> None:
    chain = StoredChain(db, street.genesis)
    report = chain.verify()
    chain.close()
    assert report.ok, report.as_dict()


def _written(db: Path, blocks: int = 0) -> tuple[BenchCommunity, list[Block]]:
    """A node's store of 3,000 records of the trading street, less its last `blocks`."""
    street = BenchCommunity.create(HOMES)
    chain = list(signed_chain(street, 3_000))
    ledger = Ledger.open(db, street.genesis)
    for block in chain[: len(chain) - blocks]:
        ledger.add_block(block, now=block.header.time)
    ledger.close()
    return street, chain


def _marks_agree(db: Path) -> int:
    """Check every row's mark and the stored share of the digest; the finished rows."""
    tables = {t.name: t for t in State().tables()}
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT tbl, key, value, cold FROM state").fetchall()
        share = conn.execute("SELECT value FROM meta WHERE key = 'cold'").fetchone()[0]
    for name, key, value, cold in rows:
        assert cold == is_finished(name, key, tables[name].unpack(key, value)), (name, key)
    finished = [(n, k, v) for n, k, v, c in rows if c]
    assert share == as_hex(sum(row_hash(*row) for row in finished) % (1 << 256))
    return len(finished)


def test_a_store_written_before_finished_rows_were_marked_opens_and_goes_on(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chain.db"
    street, blocks = _written(db, blocks=6)
    first, rest = blocks[:-6], blocks[-6:]
    _as_format_2(db)
    memory = _in_memory(street, first)

    upgraded = Ledger.open(db, street.genesis, check_later=True)
    assert upgraded.check_after_start() is True
    assert upgraded.state.digest() == memory.state.digest()
    _goes_on_alike(upgraded, memory, rest)
    assert _marks_agree(db) > 1_000
    Ledger.open(db, street.genesis).close()  # every check at start passes
    _verified_from_genesis(db, street)


def test_a_store_damaged_before_the_upgrade_is_refused_after_it(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    street, _ = _written(db)
    _as_format_2(db)
    with closing(sqlite3.connect(db)) as conn, conn:
        # A settled trade: finished, so a start after the upgrade reads it no more.
        conn.execute(
            "UPDATE state SET value = replace(value, ',', ', ')"
            " WHERE tbl = 'trades' AND key = (SELECT key FROM state WHERE tbl = 'trades'"
            " AND value LIKE '%settled%' LIMIT 1)"
        )
    with pytest.raises(DamagedStore, match="stored state differs from the digest"):
        Ledger.open(db, street.genesis, check_later=True)


_KILLED_UPGRADE = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from edge_controller.bench.ledger import BenchCommunity
    from edge_controller.ledger import Ledger, store
    real, seen = store.is_finished, []

    def is_finished(table, key, value):
        seen.append(key)
        if len(seen) == {at}:  # mid-way through the upgrade's transaction
            print("upgrading", flush=True)
            time.sleep(60)
        return real(table, key, value)

    store.is_finished = is_finished
    Ledger.open({db!r}, BenchCommunity.create({homes}).genesis)
    """
)


def test_an_upgrade_killed_half_way_leaves_the_old_store_whole(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    street, _ = _written(db)
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT COUNT(*) FROM state").fetchone()[0]
    _as_format_2(db)
    script = _KILLED_UPGRADE.format(root=str(ROOT), db=str(db), homes=HOMES, at=rows * 3 // 4)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "upgrading"
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with closing(sqlite3.connect(db)) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(state)")}
        assert "cold" not in columns  # the whole upgrade went with the kill
        assert conn.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone() == ("2",)
    ledger = Ledger.open(db, street.genesis)
    assert ledger.height > 0
    ledger.close()
    assert _marks_agree(db) > 1_000
