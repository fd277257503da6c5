"""A start reads only the state rows a node keeps in memory, and damage is still found.

Finished rows (closed offers, answered acceptances, settled trades, readings) are marked
in the store and not read at start; the start checks the rows it reads plus the finished
rows' stored share of the digest against the digest stored with the head, and the
finished rows themselves are hashed right after start (`check_after_start`, on a thread
in a running node), a damage there stopping the node as a damaged store at start does.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from edge_controller.bench.ledger import BenchCommunity, signed_chain
from edge_controller.ledger import FOURTH_RULES, DamagedStore, Ledger
from edge_controller.ledger.integrity import as_hex, row_hash
from edge_controller.ledger.state import State, closed_at_fields, finished_fields, is_finished
from edge_controller.ledger.store import SqliteStore
from tests.attacks.storage_support import edge_run

HOMES = 11


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BenchCommunity, Path]]:
    """A node's database after 3,000 records of the benchmark's trading street."""
    street = BenchCommunity.create(HOMES)
    db = tmp_path_factory.mktemp("start") / "chain.db"
    ledger = Ledger.open(db, street.genesis)
    for block in signed_chain(street, 3_000):
        ledger.add_block(block, now=block.header.time)
    ledger.close()
    yield street, db


@pytest.fixture
def db(written: tuple[BenchCommunity, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "ledger.sqlite3"
    shutil.copy(written[1], copy)
    return copy


def _rows(db: Path, columns: str = "tbl, key, value, cold") -> list[Any]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(f"SELECT {columns} FROM state").fetchall()


def _change(db: Path, sql: str, *args: object) -> None:
    with closing(sqlite3.connect(db)) as conn, conn:
        assert conn.execute(sql, args).rowcount == 1


def _first(db: Path, table: str, cold: int) -> str:
    return next(k for t, k, _, c in _rows(db) if t == table and c == cold)


def test_finished_rows_are_marked_and_their_share_of_the_digest_is_stored(db: Path) -> None:
    tables = {t.name: t for t in State().tables()}
    rows = _rows(db)
    for name, key, value, cold in rows:
        assert cold == is_finished(name, key, tables[name].unpack(key, value)), (name, key)
    finished = [r for r in rows if r[3]]
    assert len(finished) > len(rows) / 2  # most of a trading street's state is history
    share = sum(row_hash(name, key, value) for name, key, value, _ in finished)
    with closing(sqlite3.connect(db)) as conn:
        stored = conn.execute("SELECT value FROM meta WHERE key = 'cold'").fetchone()[0]
    assert stored == as_hex(share % (1 << 256))


def test_a_start_reads_only_the_rows_not_finished_and_holds_the_same_state(
    written: tuple[BenchCommunity, Path], db: Path
) -> None:
    street = written[0]
    store = SqliteStore(db)
    snapshot = store.open(street.genesis.community_id)
    assert snapshot is not None
    read = list(snapshot.state_rows)
    store.close()
    live = [(t, k, v) for t, k, v, c in _rows(db) if not c]
    assert sorted(read) == sorted(live)

    memory = Ledger(street.genesis)
    for block in signed_chain(BenchCommunity.create(HOMES), 3_000):  # the same blocks
        memory.add_block(block, now=block.header.time)
    ledger = Ledger.open(db, street.genesis, check_later=True)
    assert ledger.check_after_start() is True
    assert ledger.storage_failure is None
    assert ledger.state.digest() == memory.state.digest()
    ledger.close()


def test_damage_in_a_finished_row_is_found_after_start(
    written: tuple[BenchCommunity, Path], db: Path
) -> None:
    genesis = written[0].genesis
    key = _first(db, "trades", cold=1)
    _change(
        db,
        "UPDATE state SET value = replace(value, ',', ', ') WHERE tbl = 'trades' AND key = ?",
        key,
    )
    ledger = Ledger.open(db, genesis, check_later=True)  # not read at start
    with pytest.raises(DamagedStore, match="finished state rows differ") as raised:
        ledger.check_after_start()
    assert "restore the file from a backup" in raised.value.message
    assert ledger.storage_failure is not None
    assert ledger.storage_failure.code == "damaged_store"
    ledger.close()
    # A start that checks everything itself (tools, tests) refuses it at once.
    with pytest.raises(DamagedStore, match="finished state rows differ"):
        Ledger.open(db, genesis)


@pytest.mark.parametrize(
    ("table", "cold", "mark"),
    [("trades", 1, 0), ("accounts", 0, 1)],
    ids=["finished-row-marked-live", "live-row-marked-finished"],
)
def test_a_changed_mark_is_found_at_start(
    written: tuple[BenchCommunity, Path], db: Path, table: str, cold: int, mark: int
) -> None:
    key = _first(db, table, cold)
    _change(db, "UPDATE state SET cold = ? WHERE tbl = ? AND key = ?", mark, table, key)
    with pytest.raises(DamagedStore, match="stored state differs from the digest"):
        Ledger.open(db, written[0].genesis, check_later=True)


def test_a_changed_share_of_the_digest_is_found_at_start(
    written: tuple[BenchCommunity, Path], db: Path
) -> None:
    _change(db, "UPDATE meta SET value = ? WHERE key = 'cold'", as_hex(12345))
    with pytest.raises(DamagedStore, match="stored state differs from the digest"):
        Ledger.open(db, written[0].genesis, check_later=True)


def test_a_damaged_signature_in_a_reapplied_block_is_found_after_start(
    written: tuple[BenchCommunity, Path], db: Path
) -> None:
    with closing(sqlite3.connect(db)) as conn, conn:
        height, block_hash, records = conn.execute(
            "SELECT m.height, m.hash, b.records FROM main m JOIN blocks b ON b.hash = m.hash"
            " ORDER BY m.height DESC LIMIT 1"
        ).fetchone()
        wire = json.loads(records)
        sig = wire[0]["sig"]
        wire[0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
        conn.execute("UPDATE blocks SET records = ? WHERE hash = ?", (json.dumps(wire), block_hash))
    ledger = Ledger.open(db, written[0].genesis, check_later=True)
    with pytest.raises(DamagedStore, match=f"stored block {height} is invalid .bad_signature"):
        ledger.check_after_start()
    assert ledger.storage_failure is not None
    ledger.close()


def test_a_running_node_stops_with_one_line_on_a_damaged_finished_row(
    written: tuple[BenchCommunity, Path], db: Path
) -> None:
    """`energy-p2p-edge run` starts, finds the damage right after, and exits as it does
    on a store damaged at start: status 3, one line naming the remedy."""
    genesis = db.parent / "genesis.json"
    written[0].genesis.save(genesis)
    data = db.parent / "data"
    data.mkdir()
    shutil.move(db, data / "ledger.sqlite3")
    db = data / "ledger.sqlite3"
    key = _first(db, "offers", cold=1)
    _change(db, "UPDATE state SET value = value || ' ' WHERE tbl = 'offers' AND key = ?", key)
    result = edge_run(data, genesis, timeout=120)
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("ready "), result.stdout  # it had started
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("energy-p2p-edge: "), lines[-1]
    assert "finished state rows differ" in lines[-1] and "re-sync" in lines[-1]


def test_a_snapshot_installed_marks_its_finished_rows(
    written: tuple[BenchCommunity, Path], db: Path, tmp_path: Path
) -> None:
    """A home that joined from a snapshot starts as fast: the install marks the rows."""
    genesis = written[0].genesis
    source = Ledger.open(db, genesis)
    headers = []
    for block_hash in source.main[1:]:
        found = source.store.get_header(block_hash)
        assert found is not None
        headers.append((*found, source.index[block_hash].work))
    digest = source.store.digest_of(source.head.hash)
    assert digest is not None
    # Marked as a joiner marks them, with their close times: from the snapshot line's fields.
    tables = {t.name: t for t in State().tables()}
    rows = []
    for t, k, v, _ in _rows(db):
        fields = tables[t].stored_fields(k, v)
        rows.append((t, k, v, finished_fields(t, k, fields), closed_at_fields(t, fields)))
    joined = SqliteStore(tmp_path / "joined.db")
    joined.forgets = genesis.consensus.rules >= FOURTH_RULES
    joined.open(genesis.community_id)
    joined.install(headers, iter(rows), lambda: digest)
    joined.close()
    every = "tbl, key, value, cold, due"
    assert _rows(tmp_path / "joined.db", every) == _rows(db, every)  # the same marks and times
    with closing(sqlite3.connect(db)) as a, closing(sqlite3.connect(tmp_path / "joined.db")) as b:
        share = "SELECT value FROM meta WHERE key = 'cold'"
        assert a.execute(share).fetchone() == b.execute(share).fetchone()
    reopened = Ledger.open(tmp_path / "joined.db", genesis)  # every check at start passes
    assert reopened.state.digest() == source.state.digest()
    reopened.close()
    source.close()
