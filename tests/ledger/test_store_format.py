"""A home upgraded after a year keeps its data: a store written before state rows were
packed (row format 1: every row in its canonical form, undo data as text) opens, is
rewritten in place, holds the same state, and its node goes on from where it was."""

from __future__ import annotations

import json
import sqlite3
import zlib
from contextlib import closing
from pathlib import Path

from edge_controller.bench.ledger import BenchCommunity, signed_chain
from edge_controller.ledger import Ledger
from edge_controller.ledger.integrity import as_hex, fold
from edge_controller.ledger.state import State
from edge_controller.ledger.store import ROW_FORMAT
from edge_controller.ledger.verify import StoredChain

HOMES = 11


def _as_format_1(db: Path) -> None:
    """Turn a store into what a node before row format 2 wrote."""
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
    street = BenchCommunity.create(HOMES)
    blocks = list(signed_chain(street, 3_000))
    first, rest = blocks[:-6], blocks[-6:]
    db = tmp_path / "chain.db"
    ledger = Ledger.open(db, street.genesis)
    for block in first:
        ledger.add_block(block, now=block.header.time)
    ledger.close()
    with closing(sqlite3.connect(db)) as conn:
        packed = conn.execute("SELECT SUM(LENGTH(value)) FROM state").fetchone()[0]
    _as_format_1(db)
    with closing(sqlite3.connect(db)) as conn:
        canonical = conn.execute("SELECT SUM(LENGTH(value)) FROM state").fetchone()[0]
    assert packed < canonical * 0.9

    memory = Ledger(street.genesis)
    for block in first:
        memory.add_block(block, now=block.header.time)
    upgraded = Ledger.open(db, street.genesis)  # re-checks the last blocks over old undo data
    assert upgraded.height == len(first)
    assert upgraded.state.digest() == memory.state.digest()
    for block in rest:
        assert upgraded.add_block(block, now=block.header.time).status == "connected"
        memory.add_block(block, now=block.header.time)
    assert upgraded.state.digest() == memory.state.digest()
    upgraded.close()
    with closing(sqlite3.connect(db)) as conn:
        stored = conn.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone()
        assert stored == (str(ROW_FORMAT),)
    # Reopened once more (the digests stored again), and verified from genesis.
    Ledger.open(db, street.genesis).close()
    chain = StoredChain(db, street.genesis)
    report = chain.verify()
    chain.close()
    assert report.ok, report.as_dict()
