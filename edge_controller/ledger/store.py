"""Where a ledger keeps its blocks, its state and its pool: in memory, or in SQLite.

The ledger holds its working state in memory and hands storage one `Commit` per change of
the best chain. `SqliteStore` writes a commit in a single transaction (WAL, synchronous
FULL), so a `kill -9` at any instant leaves either the whole block applied or none of it,
and a block the node reported as accepted is on disk.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .block import Block, Header, parse_block
from .consensus import IndexEntry
from .records import Record
from .state import MISSING, JournalEntry, State, Table


@dataclass
class Commit:
    """One atomic change of the best chain: blocks off, blocks on, the rows they changed."""

    head: str
    new_blocks: list[tuple[Block, IndexEntry]] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    connected: list[tuple[Block, list[JournalEntry]]] = field(default_factory=list)
    journal: list[JournalEntry] = field(default_factory=list)

    def dirty_rows(self) -> dict[tuple[str, str], tuple[Table[Any], Any]]:
        """The final value of every row the commit touched (MISSING when deleted)."""
        rows: dict[tuple[str, str], tuple[Table[Any], Any]] = {}
        for table, key, _old in self.journal:
            rows[(table.name, key)] = (table, table.rows.get(key, MISSING))
        return rows


def first_writes(entries: list[JournalEntry]) -> list[JournalEntry]:
    """The first journal entry of each row: its value before the block, all undo needs."""
    seen: set[tuple[str, str]] = set()
    first = []
    for entry in entries:
        row = (entry[0].name, entry[1])
        if row not in seen:
            seen.add(row)
            first.append(entry)
    return first


@dataclass
class Snapshot:
    """What a store hands back when a ledger reopens it."""

    entries: list[IndexEntry]
    main: list[str]
    state_rows: Iterable[tuple[str, str, str]]
    pool: list[dict[str, Any]]


class Store(Protocol):
    def open(self, community: str) -> Snapshot | None: ...
    def put_block(self, block: Block, entry: IndexEntry) -> None: ...
    def mark_invalid(self, block_hash: str, reason: str) -> None: ...
    def get_block(self, block_hash: str) -> Block | None: ...
    def get_undo(self, block_hash: str, state: State) -> list[JournalEntry]: ...
    def commit(self, commit: Commit) -> None: ...
    def is_recorded(self, record_id: str) -> bool: ...
    def pool_add(self, record: Record, now: int) -> None: ...
    def pool_remove(self, record_ids: Iterable[str]) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    """A store that forgets everything when the process ends (simulations and tests)."""

    def __init__(self) -> None:
        self.blocks: dict[str, Block] = {}
        self.undo: dict[str, list[JournalEntry]] = {}
        self.recorded: set[str] = set()

    def open(self, community: str) -> Snapshot | None:
        return None

    def put_block(self, block: Block, entry: IndexEntry) -> None:
        self.blocks[block.hash] = block

    def mark_invalid(self, block_hash: str, reason: str) -> None:
        self.blocks.pop(block_hash, None)

    def get_block(self, block_hash: str) -> Block | None:
        return self.blocks.get(block_hash)

    def get_undo(self, block_hash: str, state: State) -> list[JournalEntry]:
        return self.undo[block_hash]

    def commit(self, commit: Commit) -> None:
        for block, entry in commit.new_blocks:
            self.put_block(block, entry)
        for block_hash in commit.disconnected:
            self.undo.pop(block_hash, None)
            self.recorded.difference_update(r.id for r in self.blocks[block_hash].records)
        for block, entries in commit.connected:
            self.undo[block.hash] = entries
            self.recorded.update(r.id for r in block.records)

    def is_recorded(self, record_id: str) -> bool:
        return record_id in self.recorded

    def pool_add(self, record: Record, now: int) -> None:
        pass

    def pool_remove(self, record_ids: Iterable[str]) -> None:
        pass

    def close(self) -> None:
        pass


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    hash TEXT PRIMARY KEY,
    prev TEXT NOT NULL,
    height INTEGER NOT NULL,
    header TEXT NOT NULL,
    sig TEXT NOT NULL,
    records TEXT NOT NULL,
    work TEXT NOT NULL,
    invalid TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS main (height INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    block TEXT NOT NULL,
    height INTEGER NOT NULL,
    kind TEXT NOT NULL,
    account TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_account ON records (account, height);
CREATE TABLE IF NOT EXISTS state (
    tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (tbl, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS undo (hash TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pool (id TEXT PRIMARY KEY, wire TEXT NOT NULL, added INTEGER NOT NULL);
"""


class StoreMismatch(RuntimeError):
    """The database belongs to another community than the genesis file given."""


class SqliteStore:
    """A ledger database file (SQLite, WAL). One writer: the node that owns it."""

    def __init__(self, path: Path | str, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the node acknowledges the block (power loss on a Pi
        # SD card included); NORMAL would survive kill -9 but not a power cut.
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.executescript(SCHEMA)
        self.community = ""

    def open(self, community: str) -> Snapshot | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'community'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('community', ?)", (community,))
            self.community = community
            return None
        if row[0] != community:
            raise StoreMismatch(
                f"{self.path} holds community {row[0]}, the genesis file is for {community}"
            )
        self.community = community
        entries = [
            _entry(h, json.loads(header), int(work), invalid)
            for h, header, work, invalid in self.db.execute(
                "SELECT hash, header, work, invalid FROM blocks ORDER BY height"
            )
        ]
        main = [h for (h,) in self.db.execute("SELECT hash FROM main ORDER BY height")]
        pool = [json.loads(w) for (w,) in self.db.execute("SELECT wire FROM pool ORDER BY added")]
        return Snapshot(entries=entries, main=main, state_rows=self._state_rows(), pool=pool)

    def _state_rows(self) -> Iterator[tuple[str, str, str]]:
        yield from self.db.execute("SELECT tbl, key, value FROM state")

    def put_block(self, block: Block, entry: IndexEntry) -> None:
        wire = block.to_wire()
        # Inside commit() this joins its transaction; alone it is a transaction of its own.
        self.db.execute(
            "INSERT OR IGNORE INTO blocks (hash, prev, height, header, sig, records, work)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                block.hash,
                block.prev,
                block.height,
                json.dumps(wire["header"], separators=(",", ":")),
                wire["sig"],
                json.dumps(wire["records"], separators=(",", ":")),
                str(entry.work),
            ),
        )

    def mark_invalid(self, block_hash: str, reason: str) -> None:
        self.db.execute(
            "UPDATE blocks SET invalid = ?, records = '[]' WHERE hash = ?", (reason, block_hash)
        )

    def get_block(self, block_hash: str) -> Block | None:
        row = self.db.execute(
            "SELECT header, sig, records FROM blocks WHERE hash = ?", (block_hash,)
        ).fetchone()
        if row is None:
            return None
        wire = {"header": json.loads(row[0]), "sig": row[1], "records": json.loads(row[2])}
        return parse_block(wire, self.community)

    def get_undo(self, block_hash: str, state: State) -> list[JournalEntry]:
        row = self.db.execute("SELECT data FROM undo WHERE hash = ?", (block_hash,)).fetchone()
        entries: list[JournalEntry] = []
        for name, key, old in json.loads(row[0]):
            table = state.table(name)
            entries.append((table, key, MISSING if old is None else table.decode(old)))
        return entries

    def commit(self, commit: Commit) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for block, entry in commit.new_blocks:
                self.put_block(block, entry)
            for block_hash in commit.disconnected:
                db.execute("DELETE FROM main WHERE hash = ?", (block_hash,))
                db.execute("DELETE FROM records WHERE block = ?", (block_hash,))
                db.execute("DELETE FROM undo WHERE hash = ?", (block_hash,))
            for block, entries in commit.connected:
                db.execute("INSERT OR REPLACE INTO main VALUES (?, ?)", (block.height, block.hash))
                db.executemany(
                    "INSERT INTO records VALUES (?, ?, ?, ?, ?)",
                    [(r.id, block.hash, block.height, r.kind, r.account) for r in block.records],
                )
                undo = [
                    (t.name, key, None if old is MISSING else t.encode(old))
                    for t, key, old in first_writes(entries)
                ]
                db.execute(
                    "INSERT INTO undo VALUES (?, ?)",
                    (block.hash, json.dumps(undo, separators=(",", ":"))),
                )
                db.executemany("DELETE FROM pool WHERE id = ?", [(r.id,) for r in block.records])
            upserts, deletes = [], []
            for (name, key), (table, value) in commit.dirty_rows().items():
                if value is MISSING:
                    deletes.append((name, key))
                else:
                    upserts.append((name, key, table.encode(value)))
            db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?, ?)", upserts)
            db.executemany("DELETE FROM state WHERE tbl = ? AND key = ?", deletes)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (commit.head,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def is_recorded(self, record_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM records WHERE id = ?", (record_id,)).fetchone()
        return row is not None

    def pool_add(self, record: Record, now: int) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO pool VALUES (?, ?, ?)",
            (record.id, json.dumps(record.to_wire(), separators=(",", ":")), now),
        )

    def pool_remove(self, record_ids: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM pool WHERE id = ?", [(i,) for i in record_ids])

    def close(self) -> None:
        self.db.close()


def _entry(block_hash: str, header_json: dict[str, Any], work: int, invalid: str) -> IndexEntry:
    header = Header.from_json(header_json)
    return IndexEntry(
        hash=block_hash,
        prev=header.prev,
        height=header.height,
        time=header.time,
        difficulty=header.difficulty,
        sealer=header.sealer,
        work=work,
        invalid=invalid,
    )
