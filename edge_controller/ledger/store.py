"""Where a ledger keeps its blocks, its state and its pool: in memory, or in SQLite.

The ledger holds its working state in memory and hands storage one `Commit` per change of
the best chain. `SqliteStore` writes a commit in a single transaction (WAL, synchronous
FULL), so a `kill -9` at any instant leaves either the whole block applied or none of it,
and a block the node reported as accepted is on disk. Records a peer sent wait in memory and
are written with the next block's transaction: peers hold them too, so they need no fsync
of their own (the home's own records are written at once).

A write the disk refuses raises `StorageError` and leaves the file as it was; the store
remembers the failure (`failure`) until a later write succeeds. A block whose stored form
does not match its hash, or a file SQLite finds damaged, raises `DamagedStore`. With each
block of the best chain the store keeps the digest of the state after it (`integrity.py`).
Finished state rows are marked (`cold`) in the transaction that writes them, with their
share of the head's digest: a start reads only the others (`check_cold` the rest).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import sqlite3
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .block import Block, Header, parse_block, record_root
from .consensus import IndexEntry
from .errors import Rejected
from .integrity import MODULUS, REMEDY, DamagedStore, StorageError, row_hash, storage_error
from .records import Record
from .state import MISSING, JournalEntry, State, Table, Trade, closed_at, is_finished

log = logging.getLogger(__name__)
T = TypeVar("T")
# The `records` column of a block whose body this node does not keep (pruned, or below the
# snapshot it joined from): its header and signature stay, served to peers (`prune.py`).
PRUNED_BODY = "pruned"
# Headers a snapshot install stores per statement (it takes them as a stream).
INSTALL_CHUNK = 4_096
COLD_CACHE = 4_096
# How state rows are stored: 1 the canonical form, 2 packed (`Table.pack`), 3 packed with
# finished rows marked (`cold`) and their share of the digest kept; a store of an older
# format is rewritten when it is opened.
ROW_FORMAT = 3
# The rows a start reads: those not finished. Partial, so it stays as small as they are.
LIVE_INDEX = "CREATE INDEX IF NOT EXISTS state_live ON state (tbl, key) WHERE cold = 0"
# Rules 4 on: the chain time each closing row closed at (`state.closed_at`), so a sweep
# reads the rows due and nothing else. Partial: rows that never close take no room in it.
DUE_INDEX = "CREATE INDEX IF NOT EXISTS state_due ON state (due) WHERE due IS NOT NULL"
# A counter-offer closes with its offer: its close time is the offer's (0: offer forgotten).
_ACCEPTANCE_DUE = (
    "UPDATE state SET due = COALESCE((SELECT o.due FROM state AS o WHERE o.tbl = 'offers'"
    " AND o.key = json_extract(state.value, '$[0]')), 0) WHERE tbl = 'acceptances'"
)
# A snapshot's row as a store installs it: table, key, packed value, whether finished, and
# the chain time it closed at (`state.closed_at`; None: it does not close).
SnapshotRow = tuple[str, str, str, bool, int | None]
_UPSERT = "INSERT OR REPLACE INTO state (tbl, key, value, cold, due) VALUES (?, ?, ?, ?, ?)"
# Finished rows the check after start hashes between two looks at whether to stop.
CHECK_PAGE = 2_048
# Deferred sync: the WAL is checkpointed into the database once it is this large.
CHECKPOINT_BYTES = 8 * 1024 * 1024
# Where a trade's fields sit in its stored row (`Table.pack`: the fields less the id). Moving
# one would change every state digest, so these never move under a stored chain.
_TRADE_AT = {f.name: i - 1 for i, f in enumerate(dataclasses.fields(Trade))}
_BUYER, _SELLER, _START = (
    f"json_extract(value, '$[{_TRADE_AT[name]}]')" for name in ("buyer", "seller", "start")
)
# Trade rows only (partial), valid JSON only (a damaged row never fails a write or an open).
_TRADE_ROWS = "tbl = 'trades' AND json_valid(value)"
# A year of a community's trades is millions of rows: a statement finds one account's by
# these expression indexes over the stored rows, and decodes only those.
TRADE_INDEXES = f"""
CREATE INDEX IF NOT EXISTS trades_by_buyer ON state ({_BUYER}, {_START}) WHERE {_TRADE_ROWS};
CREATE INDEX IF NOT EXISTS trades_by_seller ON state ({_SELLER}, {_START}) WHERE {_TRADE_ROWS};
CREATE INDEX IF NOT EXISTS trades_by_start ON state ({_START}) WHERE {_TRADE_ROWS};
"""


@dataclass
class Commit:
    """One atomic change of the best chain: blocks off, blocks on, the rows they changed."""

    head: str
    new_blocks: list[tuple[Block, IndexEntry]] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    connected: list[tuple[Block, list[JournalEntry]]] = field(default_factory=list)
    journal: list[JournalEntry] = field(default_factory=list)
    # The state digest after each connected block (hex), by block hash.
    digests: dict[str, str] = field(default_factory=dict)

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


def forgotten_trades(commit: Commit) -> list[tuple[Table[Any], str, Trade]]:
    """The settled trades the commit's connected blocks removed from the state (a rule that
    forgets closed business), each with its value before: the home's trade history keeps
    them for its statements. A trade gone because its block was disconnected is not one:
    the chain that held it is no longer the best."""
    last: dict[str, tuple[Table[Any], Any]] = {}
    for _block, entries in commit.connected:
        for table, key, old in entries:
            if table.name == "trades":
                last[key] = (table, old)
    return [
        (table, key, old)
        for key, (table, old) in last.items()
        if old is not MISSING and old.status == "settled" and table.rows.get(key) is None
    ]


@dataclass
class Snapshot:
    """What a store hands back when a ledger reopens it."""

    entries: list[IndexEntry]
    main: list[str]
    # The rows not finished only: the finished ones are read when asked for.
    state_rows: Iterable[tuple[str, str, str]]
    pool: list[dict[str, Any]]
    # The height `entries` and `main` start at: those below it stay in storage until asked.
    main_from: int = 1
    # The finished rows' share of the state digest, as stored with the head.
    cold_digest: int = 0


class Store(Protocol):
    # Whether the store keeps state digests (the ledger computes them only then).
    keeps_digests: bool
    failure: StorageError | None

    def open(self, community: str, recent: int | None = None) -> Snapshot | None: ...
    def digest_of(self, block_hash: str) -> str | None: ...
    def set_digest(self, block_hash: str, digest: str) -> None: ...
    def probe(self) -> None: ...
    def put_block(self, block: Block, entry: IndexEntry) -> None: ...
    def mark_invalid(self, block_hash: str, reason: str) -> None: ...
    def get_block(self, block_hash: str) -> Block | None: ...
    def get_header(self, block_hash: str) -> tuple[Header, bytes] | None: ...
    def is_pruned(self, block_hash: str) -> bool: ...
    def base_height(self) -> int: ...
    def signed_headers(self, hashes: list[str]) -> dict[str, dict[str, Any]]: ...
    def get_undo(self, block_hash: str, state: State) -> list[JournalEntry]: ...
    def commit(self, commit: Commit) -> None: ...
    def is_recorded(self, record_id: str) -> bool: ...
    def record_ids(self, account: str, kinds: Collection[str]) -> list[str]: ...
    def pool_add(self, record: Record, now: int, durable: bool = True) -> None: ...
    def pool_remove(self, record_ids: Iterable[str]) -> None: ...
    @property
    def unsynced(self) -> bool: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    """A store that forgets everything when the process ends (simulations and tests)."""

    keeps_digests = False

    def __init__(self) -> None:
        self.blocks: dict[str, Block] = {}
        self.undo: dict[str, list[JournalEntry]] = {}
        self.recorded: set[str] = set()
        self.failure: StorageError | None = None
        # The settled trades the state forgot (`forgotten_trades`), by id: the statements'.
        self.trade_history: dict[str, Trade] = {}

    def open(self, community: str, recent: int | None = None) -> Snapshot | None:
        return None

    def digest_of(self, block_hash: str) -> str | None:
        return None

    def set_digest(self, block_hash: str, digest: str) -> None:
        pass

    def probe(self) -> None:
        pass

    def put_block(self, block: Block, entry: IndexEntry) -> None:
        self.blocks[block.hash] = block

    def mark_invalid(self, block_hash: str, reason: str) -> None:
        self.blocks.pop(block_hash, None)

    def get_block(self, block_hash: str) -> Block | None:
        return self.blocks.get(block_hash)

    def get_header(self, block_hash: str) -> tuple[Header, bytes] | None:
        block = self.blocks.get(block_hash)
        return None if block is None else (block.header, block.sig)

    def is_pruned(self, block_hash: str) -> bool:
        return False

    def base_height(self) -> int:
        return 0

    def signed_headers(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        found = (self.blocks.get(h) for h in hashes)
        return {b.hash: {"header": b.header.to_json(), "sig": b.sig.hex()} for b in found if b}

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
        history = self.trade_history
        for table, key, _old in commit.journal:
            if table.name == "trades" and key in history and table.rows.get(key) is not None:
                del history[key]  # back in the state: a reorganisation undid its forgetting
        history.update((key, old) for _table, key, old in forgotten_trades(commit))

    def is_recorded(self, record_id: str) -> bool:
        return record_id in self.recorded

    def record_ids(self, account: str, kinds: Collection[str]) -> list[str]:
        return [
            r.id
            for b in self.blocks.values()
            for r in b.records
            if r.account == account and r.kind in kinds and r.id in self.recorded
        ]

    def pool_add(self, record: Record, now: int, durable: bool = True) -> None:
        pass

    def pool_remove(self, record_ids: Iterable[str]) -> None:
        pass

    unsynced = False

    def sync(self) -> None:
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
CREATE INDEX IF NOT EXISTS blocks_by_height ON blocks (height);
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
    tbl TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    cold INTEGER NOT NULL DEFAULT 0,
    due INTEGER,
    PRIMARY KEY (tbl, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS undo (hash TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pool (id TEXT PRIMARY KEY, wire TEXT NOT NULL, added INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS digests (hash TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trade_history (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    buyer TEXT NOT NULL,
    seller TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS trade_history_by_buyer ON trade_history (buyer, start_ms);
CREATE INDEX IF NOT EXISTS trade_history_by_seller ON trade_history (seller, start_ms);
CREATE INDEX IF NOT EXISTS trade_history_by_start ON trade_history (start_ms);
CREATE INDEX IF NOT EXISTS trade_history_by_end ON trade_history (end_ms);
"""


def closed_between(
    db: sqlite3.Connection, low: int | None, high: int
) -> list[tuple[int, str, str]]:
    """(closed at, table, key) of the rows of `db`'s `state` table whose `due` is after
    `low` (None: any) and at or before `high`, by the partial index on `due`."""
    if low is None:
        return db.execute("SELECT due, tbl, key FROM state WHERE due <= ?", (high,)).fetchall()
    sql = "SELECT due, tbl, key FROM state WHERE due > ? AND due <= ?"
    return db.execute(sql, (low, high)).fetchall()


class StoreMismatch(RuntimeError):
    """The database belongs to another community than the genesis file given."""


class SqliteStore:
    """A ledger database file (SQLite, WAL). One writer: the node that owns it."""

    keeps_digests = True

    def __init__(
        self, path: Path | str, synchronous: str = "FULL", deferred_sync: bool = False
    ) -> None:
        """`deferred_sync`: commits reach the operating system (they survive `kill -9`)
        but not the disk's platter until `sync` (power loss), which the node calls off its
        event loop before it acknowledges anything; checkpoints are then `sync`'s too."""
        self.path = Path(path)
        self.deferred_sync = deferred_sync
        # Whether something was written since the last `sync`.
        self._unsynced = False
        self._checkpointer: sqlite3.Connection | None = None
        self.failure: StorageError | None = None
        self.community = ""
        # Peers' pooled records not yet written: they go with the next commit.
        self._pool_buffer: dict[str, tuple[Record, int]] = {}
        # Recently read rows that live in storage only (settled trades a resource's
        # allocation still reads), bounded; a commit drops the rows it rewrites.
        self._cold: OrderedDict[tuple[str, str], Any] = OrderedDict()
        # The finished rows' share of the state digest (meta 'cold'), as last committed.
        self._cold_digest = 0
        # Rules 4 on (set by the ledger): each closing row's close time is kept and indexed.
        self.forgets = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            private_file(self.path)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before the node acknowledges the block (power loss on
            # a Pi SD card included); NORMAL would survive kill -9 but not a power cut.
            self.db.execute(f"PRAGMA synchronous={'OFF' if deferred_sync else synchronous}")
            if deferred_sync:
                # Checkpoints move the WAL into the file: only `sync` runs them, durably.
                self.db.execute("PRAGMA wal_autocheckpoint=0")
            self.db.executescript(SCHEMA + TRADE_INDEXES)
            if "due" not in {row[1] for row in self.db.execute("PRAGMA table_info(state)")}:
                # A store written before rules 4: its rows never close (`forgets` stays off).
                self.db.execute("ALTER TABLE state ADD COLUMN due INTEGER")
            self.db.execute(DUE_INDEX)
        except sqlite3.Error as exc:
            raise storage_error(exc, "opening the ledger", self.path) from None
        except OSError as exc:
            raise StorageError("storage_failed", f"{self.path}: {exc.strerror}") from None

    @property
    def unsynced(self) -> bool:
        """Whether a write awaits `sync`."""
        return self._unsynced

    def sync(self) -> None:
        """Make every write so far durable (deferred mode; otherwise each already is):
        fsync the WAL, and once it has grown, checkpoint it into the database on a
        connection of its own that syncs fully. Safe to call from another thread."""
        if not self._unsynced:
            return
        self._unsynced = False
        wal = f"{self.path}-wal"
        try:
            fd = os.open(wal, os.O_RDONLY)
            try:
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > CHECKPOINT_BYTES:
                if self._checkpointer is None:
                    self._checkpointer = sqlite3.connect(
                        self.path, isolation_level=None, check_same_thread=False
                    )
                    self._checkpointer.execute("PRAGMA synchronous=FULL")
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except FileNotFoundError:
            return
        except (OSError, sqlite3.Error) as exc:
            self._unsynced = True
            self.failure = StorageError("storage_failed", f"{self.path}: syncing failed: {exc}")
            raise self.failure from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back on any error."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _write(self, doing: str, action: Callable[[], T]) -> T:
        """Run a write; a failure becomes `StorageError` and is remembered until a write
        succeeds again."""
        self._unsynced = True
        try:
            result = action()
        except sqlite3.Error as exc:
            error = storage_error(exc, doing, self.path)
            if self.failure is None or self.failure.code != error.code:
                log.warning("ledger storage: %s", error.message)
            self.failure = error
            raise error from None
        if self.failure is not None and not isinstance(self.failure, DamagedStore):
            log.warning("ledger storage works again (%s)", doing)
            self.failure = None
        return result

    def _read(self, doing: str, action: Callable[[], T]) -> T:
        """Run a read; a damaged file becomes `DamagedStore` (and is remembered)."""
        try:
            return action()
        except sqlite3.Error as exc:
            error = storage_error(exc, doing, self.path)
            if isinstance(error, DamagedStore):
                self.failure = error
            raise error from None

    def open(self, community: str, recent: int | None = None) -> Snapshot | None:
        """The stored ledger of `community` (None: a new one, now created). `recent`: read
        the index and best chain of the last `recent` heights only (None: all of them);
        the rest is read on demand (`index_entry`, `main_hashes`)."""
        return self._read("reading the ledger", lambda: self._open(community, recent))

    def _open(self, community: str, recent: int | None) -> Snapshot | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'community'").fetchone()
        if row is None:
            self._write("creating the ledger", lambda: self._create(community))
            self.community = community
            return None
        if row[0] != community:
            raise StoreMismatch(
                f"{self.path} holds community {row[0]}, the genesis file is for {community}"
            )
        self.community = community
        stored_format = self._row_format()
        if stored_format < ROW_FORMAT:
            self._write(
                "upgrading the ledger's state rows", lambda: self._upgrade_rows(stored_format)
            )
        cold = self.db.execute("SELECT value FROM meta WHERE key = 'cold'").fetchone()
        try:
            self._cold_digest = int(cold[0], 16) if cold else 0
        except ValueError:
            raise DamagedStore(
                f"{self.path}: the finished rows' digest is unreadable ({cold[0]!r}); {REMEDY}"
            ) from None
        (top,) = self.db.execute("SELECT COALESCE(MAX(height), 0) FROM main").fetchone()
        start = 1 if recent is None else max(1, top - recent)
        entries = self.index_entries(start)
        main = self.main_hashes(start, top + 1)
        pool = [json.loads(w) for (w,) in self.db.execute("SELECT wire FROM pool ORDER BY added")]
        return Snapshot(
            entries=entries,
            main=main,
            state_rows=self._state_rows(),
            pool=pool,
            main_from=start,
            cold_digest=self._cold_digest,
        )

    def _create(self, community: str) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO meta VALUES ('community', ?)", (community,))
        self.db.execute("INSERT INTO meta VALUES ('rows', ?)", (str(ROW_FORMAT),))
        self.db.execute(LIVE_INDEX)
        self.db.execute("COMMIT")

    def _row_format(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone()
        return 1 if row is None else int(row[0])

    def _upgrade_rows(self, stored_format: int) -> None:
        """Bring a store's state rows to the current row format, in one transaction (a
        kill leaves the old format whole): rows of format 1 (canonical) are rewritten
        packed, and the digests stored with blocks, which summed the old form, go (the
        next start stores the head's again from the rows); every finished row is marked
        `cold` and the finished rows' share of the digest is stored."""
        with self._transaction() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(state)")}
            if "cold" not in columns:
                db.execute("ALTER TABLE state ADD COLUMN cold INTEGER NOT NULL DEFAULT 0")
            db.execute(LIVE_INDEX)
            tables = {t.name: t for t in State().tables()}
            after, count, cold, cold_digest = ("", ""), 0, 0, 0
            # In pages, so a year's state is never in memory at once.
            while rows := db.execute(
                "SELECT tbl, key, value FROM state WHERE (tbl, key) > (?, ?)"
                " ORDER BY tbl, key LIMIT 2000",
                after,
            ).fetchall():
                changes = []
                for name, key, value in rows:
                    try:
                        table = tables[name]
                        row = table.unpack(key, value)
                    except (KeyError, TypeError, ValueError):
                        # Left as it is, not finished: the start that follows names it.
                        continue
                    # A packed row stays byte for byte as stored: damage stays visible.
                    stored = table.pack(row) if stored_format < 2 else value
                    finished = is_finished(name, key, row)
                    if finished:
                        cold += 1
                        cold_digest += row_hash(name, key, stored)
                    if finished or stored != value:
                        changes.append((stored, int(finished), name, key))
                db.executemany(
                    "UPDATE state SET value = ?, cold = ? WHERE tbl = ? AND key = ?", changes
                )
                after, count = (rows[-1][0], rows[-1][1]), count + len(rows)
            if stored_format < 2:
                db.execute("DELETE FROM digests")
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('cold', ?)", (f"{cold_digest % MODULUS:064x}",)
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('rows', ?)", (str(ROW_FORMAT),))
        log.info(
            "ledger storage: %d state rows brought to row format %d (%d finished, read only "
            "when asked for)",
            count,
            ROW_FORMAT,
            cold,
        )

    def _state_rows(self) -> Iterator[tuple[str, str, str]]:
        try:
            yield from self.db.execute("SELECT tbl, key, value FROM state WHERE cold = 0")
        except sqlite3.Error as exc:
            raise storage_error(exc, "reading the state", self.path) from None

    def state_in_order(self) -> Iterator[tuple[str, str, str]]:
        """Every stored state row, packed, in primary-key order (table, then key, as UTF-8
        bytes: code point order), one at a time (a checkpoint streams them)."""
        try:
            yield from self.db.execute("SELECT tbl, key, value FROM state ORDER BY tbl, key")
        except sqlite3.Error as exc:
            raise storage_error(exc, "reading the state", self.path) from None

    def check_cold(self, stop: threading.Event | None = None) -> bool:
        """Hash every finished state row (those a start does not read) and compare the sum
        with their share of the digest stored with the head, on a connection of its own
        (safe on another thread while the node writes: one read transaction). Returns
        False when `stop` was set before the end (nothing concluded). Raises
        `DamagedStore`, remembered in `failure` and logged with the remedy, on a
        difference."""
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._check_failed(storage_error(exc, "checking the state", self.path)) from None
        total, stored = 0, -1
        try:
            db.execute("BEGIN")
            row = db.execute("SELECT value FROM meta WHERE key = 'cold'").fetchone()
            with contextlib.suppress(ValueError):  # unreadable: -1 matches no sum
                stored = int(row[0], 16) if row else 0
            cursor = db.execute("SELECT tbl, key, value FROM state WHERE cold = 1")
            while page := cursor.fetchmany(CHECK_PAGE):
                if stop is not None and stop.is_set():
                    return False
                for name, key, value in page:
                    total += row_hash(name, key, value)
        except sqlite3.Error as exc:
            raise self._check_failed(storage_error(exc, "checking the state", self.path)) from None
        finally:
            db.close()
        if total % MODULUS != stored:
            raise self._check_failed(
                DamagedStore(
                    f"{self.path}: the stored finished state rows differ from their part of the "
                    f"digest stored with the head (a row was changed or damaged); {REMEDY}"
                )
            )
        return True

    def _check_failed(self, error: StorageError) -> StorageError:
        if isinstance(error, DamagedStore):
            log.error("ledger storage: %s", error.message)
            self.failure = error
        return error

    def load_row(self, table: Table[Any], key: str) -> Any:
        """A state row kept in storage only, decoded (None: no such row)."""
        cache = self._cold
        cached = cache.get((table.name, key))
        if cached is not None:
            cache.move_to_end((table.name, key))
            return cached
        row = self._read(
            "reading the state",
            lambda: self.db.execute(
                "SELECT value FROM state WHERE tbl = ? AND key = ?", (table.name, key)
            ).fetchone(),
        )
        if row is None:
            return None
        value = table.unpack(key, row[0])
        cache[(table.name, key)] = value
        if len(cache) > COLD_CACHE:
            cache.popitem(last=False)
        return value

    def scan_rows(self, table: Table[Any]) -> Iterator[tuple[str, Any]]:
        """Every stored row of `table`, decoded one at a time (queries over history)."""
        cursor = self._read(
            "reading the state",
            lambda: self.db.execute("SELECT key, value FROM state WHERE tbl = ?", (table.name,)),
        )
        # One row at a time: a year of settled trades is never in memory at once.
        for key, value in cursor:
            yield key, table.unpack(key, value)

    def index_entry(self, block_hash: str) -> IndexEntry | None:
        """The index entry of a stored block (None: not stored)."""
        row = self._read(
            "reading the block index",
            lambda: self.db.execute(
                "SELECT height, header, work, invalid FROM blocks WHERE hash = ?", (block_hash,)
            ).fetchone(),
        )
        return None if row is None else self._index_row(block_hash, *row)

    def index_entries(self, low: int, high: int | None = None) -> list[IndexEntry]:
        """The index entries of the stored blocks at heights `low` up to `high` (excluded;
        None: all above), on every branch, by height."""
        rows = self._read(
            "reading the block index",
            lambda: self.db.execute(
                "SELECT hash, height, header, work, invalid FROM blocks"
                " WHERE height >= ? AND height < ? ORDER BY height",
                (low, (1 << 62) if high is None else high),
            ).fetchall(),
        )
        return [self._index_row(*row) for row in rows]

    def _index_row(
        self, block_hash: str, height: int, header: str, work: str, invalid: str
    ) -> IndexEntry:
        try:
            return _entry(block_hash, json.loads(header), int(work), invalid)
        except (ValueError, KeyError, TypeError, Rejected) as exc:
            raise self._damaged(height, block_hash, f"its header does not parse ({exc})") from None

    def main_hashes(self, low: int, high: int) -> list[str]:
        """The best chain's block hashes at heights `low` up to `high` (excluded, at most
        the head's height + 1). Raises `DamagedStore` when one is missing."""
        hashes = [
            h
            for (h,) in self._read(
                "reading the best chain",
                lambda: self.db.execute(
                    "SELECT hash FROM main WHERE height >= ? AND height < ? ORDER BY height",
                    (low, high),
                ).fetchall(),
            )
        ]
        if len(hashes) != max(0, high - low):
            error = DamagedStore(
                f"{self.path}: the best chain lacks blocks between heights {low} and"
                f" {high - 1}; {REMEDY}"
            )
            self.failure = error
            raise error
        return hashes

    def count_blocks_below(self, height: int) -> int:
        """How many blocks are stored below `height` (on every branch)."""
        row = self._read(
            "reading the block index",
            lambda: self.db.execute(
                "SELECT COUNT(*) FROM blocks WHERE height < ?", (height,)
            ).fetchone(),
        )
        return int(row[0])

    def block_hashes_below(self, height: int) -> Iterator[str]:
        """The hashes of the blocks stored below `height`, one at a time."""
        cursor = self._read(
            "reading the block index",
            lambda: self.db.execute("SELECT hash FROM blocks WHERE height < ?", (height,)),
        )
        for (block_hash,) in cursor:
            yield block_hash

    def put_block(self, block: Block, entry: IndexEntry) -> None:
        self._write("storing a block", lambda: self._put_block(block, entry))

    def _put_block(self, block: Block, entry: IndexEntry) -> None:
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
        self._write(
            "marking a block invalid",
            lambda: self.db.execute(
                "UPDATE blocks SET invalid = ?, records = '[]' WHERE hash = ?",
                (reason, block_hash),
            ),
        )

    def get_block(self, block_hash: str) -> Block | None:
        row = self._read(
            "reading a block",
            lambda: self.db.execute(
                "SELECT header, sig, records, height FROM blocks WHERE hash = ?", (block_hash,)
            ).fetchone(),
        )
        if row is None or row[2] == PRUNED_BODY:
            return None
        try:
            wire = {"header": json.loads(row[0]), "sig": row[1], "records": json.loads(row[2])}
            block = parse_block(wire, self.community)
        except (ValueError, Rejected) as exc:
            raise self._damaged(row[3], block_hash, f"it no longer parses ({exc})") from None
        # The hash covers the header and the header's root the records: a changed byte in
        # either is damage, and the block must not be used or served to peers.
        if block.hash != block_hash:
            raise self._damaged(row[3], block_hash, "its header does not match its hash")
        if record_root([r.id for r in block.records]) != block.header.root:
            raise self._damaged(row[3], block_hash, "its records do not match its header")
        return block

    def get_header(self, block_hash: str) -> tuple[Header, bytes] | None:
        """A block's header and sealer signature, whether or not its body is kept."""
        row = self._read(
            "reading a header",
            lambda: self.db.execute(
                "SELECT header, sig, height FROM blocks WHERE hash = ?", (block_hash,)
            ).fetchone(),
        )
        if row is None:
            return None
        try:
            header = Header.from_json(json.loads(row[0]))
            sig = bytes.fromhex(row[1])
        except (ValueError, Rejected) as exc:
            raise self._damaged(row[2], block_hash, f"its header does not parse ({exc})") from None
        if header.hash != block_hash:
            raise self._damaged(row[2], block_hash, "its header does not match its hash")
        return header, sig

    def is_pruned(self, block_hash: str) -> bool:
        """Whether the block is known but its body is not kept here."""
        row = self._read(
            "reading a block",
            lambda: self.db.execute(
                "SELECT records = ? FROM blocks WHERE hash = ?", (PRUNED_BODY, block_hash)
            ).fetchone(),
        )
        return bool(row and row[0])

    def base_height(self) -> int:
        """The highest block of the best chain below which no body or undo data is kept
        (0: everything from genesis is)."""
        row = self._read(
            "reading the ledger",
            lambda: self.db.execute("SELECT value FROM meta WHERE key = 'base'").fetchone(),
        )
        return int(row[0]) if row else 0

    def signed_headers(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        """The stored {header, sig} of each of `hashes` it holds, from the header column
        (a peer asking for headers costs no block read)."""
        marks = ",".join("?" * len(hashes))
        rows = self._read(
            "reading headers",
            lambda: self.db.execute(
                f"SELECT hash, header, sig FROM blocks WHERE hash IN ({marks}) AND invalid = ''",
                hashes,
            ).fetchall(),
        )
        return {h: {"header": json.loads(header), "sig": sig} for h, header, sig in rows}

    def _damaged(self, height: int, block_hash: str, what: str) -> DamagedStore:
        error = DamagedStore(f"{self.path}: block {height} {block_hash[:16]}: {what}; {REMEDY}")
        if self.failure is None:
            log.error("ledger storage: %s", error.message)
        self.failure = error
        return error

    def get_undo(self, block_hash: str, state: State) -> list[JournalEntry]:
        row = self._read(
            "reading undo data",
            lambda: self.db.execute(
                "SELECT data FROM undo WHERE hash = ?", (block_hash,)
            ).fetchone(),
        )
        entries: list[JournalEntry] = []
        try:
            data = row[0]
            # Compressed since row format 2; text in a store written before.
            text = zlib.decompress(data) if isinstance(data, bytes) else data
            for name, key, old in json.loads(text):
                table = state.table(name)
                entries.append((table, key, MISSING if old is None else table.unpack(key, old)))
        except (TypeError, ValueError, KeyError, zlib.error) as exc:
            raise DamagedStore(
                f"{self.path}: the undo data of block {block_hash[:16]} is unreadable ({exc!r}); "
                f"{REMEDY}"
            ) from None
        return entries

    def digest_of(self, block_hash: str) -> str | None:
        """The state digest stored with a block of the best chain (None: none stored)."""
        row = self._read(
            "reading a state digest",
            lambda: self.db.execute(
                "SELECT state FROM digests WHERE hash = ?", (block_hash,)
            ).fetchone(),
        )
        return None if row is None else str(row[0])

    def set_digest(self, block_hash: str, digest: str) -> None:
        """Store the state digest of a block (a database written before digests existed)."""
        self._write(
            "storing a state digest",
            lambda: self.db.execute(
                "INSERT OR REPLACE INTO digests VALUES (?, ?)", (block_hash, digest)
            ),
        )

    def probe(self) -> None:
        """One small durable write, to learn whether the disk takes writes again."""
        self._write(
            "writing",
            lambda: self.db.execute("INSERT OR REPLACE INTO meta VALUES ('probe', '')"),
        )

    def commit(self, commit: Commit) -> None:
        self._write("storing blocks", lambda: self._commit(commit))

    def _commit(self, commit: Commit) -> None:
        with self._transaction() as db:
            for block, entry in commit.new_blocks:
                self._put_block(block, entry)
            for block_hash in commit.disconnected:
                db.execute("DELETE FROM main WHERE hash = ?", (block_hash,))
                db.execute("DELETE FROM records WHERE block = ?", (block_hash,))
                db.execute("DELETE FROM undo WHERE hash = ?", (block_hash,))
                db.execute("DELETE FROM digests WHERE hash = ?", (block_hash,))
            buffered = self._pool_buffer
            db.executemany(
                "INSERT OR IGNORE INTO pool VALUES (?, ?, ?)",
                [
                    (i, json.dumps(r.to_wire(), separators=(",", ":")), t)
                    for i, (r, t) in buffered.items()
                ],
            )
            # A node catching up has no pool: its records' deletes would all miss.
            pooled = db.execute("SELECT 1 FROM pool LIMIT 1").fetchone() is not None
            for block, entries in commit.connected:
                db.execute("INSERT OR REPLACE INTO main VALUES (?, ?)", (block.height, block.hash))
                db.executemany(
                    "INSERT INTO records VALUES (?, ?, ?, ?, ?)",
                    [(r.id, block.hash, block.height, r.kind, r.account) for r in block.records],
                )
                undo = [
                    (t.name, key, None if old is MISSING else t.pack(old))
                    for t, key, old in first_writes(entries)
                ]
                # Read back only for a reorganisation: compressed, a third of its size.
                data = zlib.compress(json.dumps(undo, separators=(",", ":")).encode(), 6)
                db.execute("INSERT INTO undo VALUES (?, ?)", (block.hash, data))
                if pooled:
                    db.executemany(
                        "DELETE FROM pool WHERE id = ?", [(r.id,) for r in block.records]
                    )
            db.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?)", commit.digests.items())
            upserts, deletes = [], []
            # The finished rows' share of the digest: their stored values out, the new in.
            cold_digest = self._cold_digest
            for table, key, old in first_writes(commit.journal):
                if old is not MISSING and is_finished(table.name, key, old):
                    cold_digest -= row_hash(table.name, key, table.pack(old))
            for (name, key), (table, value) in commit.dirty_rows().items():
                self._cold.pop((name, key), None)
                if value is MISSING:
                    deletes.append((name, key))
                    continue
                packed = table.pack(value)
                finished = is_finished(name, key, value)
                if finished:
                    cold_digest += row_hash(name, key, packed)
                due = closed_at(name, value) if self.forgets else None
                upserts.append((name, key, packed, int(finished), due))
            cold_digest %= MODULUS
            db.executemany(_UPSERT, upserts)
            db.executemany("DELETE FROM state WHERE tbl = ? AND key = ?", deletes)
            if self.forgets and any(row[0] == "acceptances" for row in upserts):
                db.executemany(
                    f"{_ACCEPTANCE_DUE} AND key = ?",
                    [(row[1],) for row in upserts if row[0] == "acceptances"],
                )
            self._keep_history(db, commit, upserts)
            if cold_digest != self._cold_digest:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('cold', ?)", (f"{cold_digest:064x}",)
                )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (commit.head,))
        self._cold_digest = cold_digest
        buffered.clear()

    def closed_rows(self, low: int | None, high: int) -> list[tuple[int, str, str]]:
        """Rules 4 on: (closed at, table, key) of the stored rows that closed after `low`
        (None: ever) and at or before `high`: what a sweep may forget (`forget.py`)."""
        return self._read("reading the closed rows", lambda: closed_between(self.db, low, high))

    def _keep_history(
        self,
        db: sqlite3.Connection,
        commit: Commit,
        upserts: list[tuple[str, str, str, int, int | None]],
    ) -> None:
        """Local, never hashed nor served: the settled trades the commit's blocks forgot go
        to `trade_history`; one back in the state (a reorganisation undid its forgetting)
        leaves it, so a statement lists each trade once."""
        if db.execute("SELECT 1 FROM trade_history LIMIT 1").fetchone() is not None:
            db.executemany(
                "DELETE FROM trade_history WHERE key = ?",
                [(key,) for name, key, *_ in upserts if name == "trades"],
            )
        db.executemany(
            "INSERT OR REPLACE INTO trade_history VALUES (?, ?, ?, ?, ?, ?)",
            [
                (key, table.pack(old), old.buyer, old.seller, old.start, old.end)
                for table, key, old in forgotten_trades(commit)
            ],
        )

    def trade_rows(
        self, start: int, end: int, account: str | None = None
    ) -> Iterator[tuple[str, str]]:
        """(id, stored row) of every trade whose window starts in [`start`, `end`) with
        `account` as buyer or seller (None: anyone's): the state's, finished or not, then
        those of the trade history the state no longer holds, each once. Found by index:
        what a statement decodes is its own trades, not the community's history."""
        # Named indexes: the planner, without statistics, would read every trade row.
        state = (
            "SELECT key, value FROM state INDEXED BY trades_by_{index}"
            f" WHERE {_TRADE_ROWS} AND {_START} >= ? AND {_START} < ?"
        )
        history = (
            "SELECT key, value FROM trade_history h WHERE start_ms >= ? AND start_ms < ?"
            " AND NOT EXISTS (SELECT 1 FROM state s WHERE s.tbl = 'trades' AND s.key = h.key)"
        )
        queries: list[tuple[str, tuple[int | str, ...]]]
        if account is None:
            queries = [(state.format(index="start"), (start, end)), (history, (start, end))]
        else:
            sides = (
                (state.format(index="buyer"), _BUYER),
                (state.format(index="seller"), _SELLER),
                (history, "buyer"),
                (history, "seller"),
            )
            queries = [(f"{sql} AND {column} = ?", (start, end, account)) for sql, column in sides]
        # A trade with the account on both sides would come twice.
        seen: set[str] = set()
        for sql, parameters in queries:
            for key, value in self._read(
                "reading trades", partial(self.db.execute, sql, parameters)
            ):
                if account is not None:
                    if key in seen:
                        continue
                    seen.add(key)
                yield key, value

    def prune_trade_history(self, ended_before: int) -> int:
        """Drop the forgotten trades of the history whose window ended before
        `ended_before` (past the history the home keeps); returns how many."""
        cursor = self._write(
            "pruning the trade history",
            lambda: self.db.execute("DELETE FROM trade_history WHERE end_ms < ?", (ended_before,)),
        )
        return cursor.rowcount

    def is_recorded(self, record_id: str) -> bool:
        row = self._read(
            "reading the record index",
            lambda: self.db.execute("SELECT 1 FROM records WHERE id = ?", (record_id,)).fetchone(),
        )
        return row is not None

    def record_ids(self, account: str, kinds: Collection[str]) -> list[str]:
        """The ids of the best chain's records signed by `account` of `kinds` (the record
        index, by account: what one home signed, not the community's history)."""
        marks = ", ".join("?" * len(kinds))
        return self._read(
            "reading the record index",
            lambda: [
                record_id
                for (record_id,) in self.db.execute(
                    f"SELECT id FROM records WHERE account = ? AND kind IN ({marks})",
                    (account, *kinds),
                )
            ],
        )

    def pool_add(self, record: Record, now: int, durable: bool = True) -> None:
        """Keep a pooled record. `durable`: on disk before this returns (the home's own
        records); otherwise (a peer's, which peers still hold) it is written with the next
        block's transaction, so receiving a record costs no fsync."""
        if not durable:
            self._pool_buffer[record.id] = (record, now)
            return
        wire = json.dumps(record.to_wire(), separators=(",", ":"))
        self._write(
            "storing a record",
            lambda: self.db.execute(
                "INSERT OR IGNORE INTO pool VALUES (?, ?, ?)", (record.id, wire, now)
            ),
        )

    def pool_remove(self, record_ids: Iterable[str]) -> None:
        ids = [(i,) for i in record_ids]
        for (record_id,) in ids:
            self._pool_buffer.pop(record_id, None)
        self._write(
            "removing pooled records",
            lambda: self.db.executemany("DELETE FROM pool WHERE id = ?", ids),
        )

    def prune_bodies(self, hashes: list[str], base: int) -> None:
        """Drop the bodies and undo data of `hashes` (blocks of the best chain up to height
        `base`, all final), keeping their headers, in one transaction: a kill leaves
        either the whole batch pruned or none of it."""
        self._write("pruning blocks", lambda: self._prune(hashes, base))

    def _prune(self, hashes: list[str], base: int) -> None:
        with self._transaction() as db:
            rows = [(PRUNED_BODY, h) for h in hashes]
            db.executemany("UPDATE blocks SET records = ? WHERE hash = ?", rows)
            db.executemany("DELETE FROM undo WHERE hash = ?", [(h,) for h in hashes])
            # State digests too, but the base's: the block after it is checked against it.
            db.executemany("DELETE FROM digests WHERE hash = ?", [(h,) for h in hashes[:-1]])
            # Their record ids too (a replayed old record is still refused by its signer's
            # sequence, `stale_sequence` rather than `duplicate`; the index would grow
            # without bound), by height in one pass: the index has no column of blocks.
            db.execute("DELETE FROM records WHERE height <= ?", (base,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('base', ?)", (str(base),))

    def install(
        self,
        headers: Iterable[tuple[Header, bytes, int]],
        rows: Iterable[SnapshotRow],
        digest: Callable[[], str],
    ) -> None:
        """Install a snapshot into an empty ledger: the headers of the best chain up to its
        base (bodies not kept), the state after the base (packed rows, each with whether
        it is finished and when it closed, stored as they come), and its integrity digest
        (asked once `rows` are stored); in one transaction, so a kill leaves either the
        whole snapshot or an empty ledger."""
        self._write("installing a snapshot", lambda: self._install(headers, rows, digest))

    def _install(
        self,
        headers: Iterable[tuple[Header, bytes, int]],
        rows: Iterable[SnapshotRow],
        digest: Callable[[], str],
    ) -> None:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM main LIMIT 1").fetchone() is not None:
                raise StorageError("storage_failed", f"{self.path} already holds a chain")
            head, base = "", 0
            chunks = iter(headers)
            # In chunks: a year of headers is millions of rows, more than a Pi's memory.
            while chunk := list(itertools.islice(chunks, INSTALL_CHUNK)):
                blocks, main = [], []
                for header, sig, work in chunk:
                    head, base = header.hash, header.height
                    header_json = json.dumps(header.to_json(), separators=(",", ":"))
                    blocks.append((head, header.prev, base, header_json, sig.hex(), str(work)))
                    main.append((base, head))
                db.executemany(
                    "INSERT OR REPLACE INTO blocks (hash, prev, height, header, sig, records, work)"
                    f" VALUES (?, ?, ?, ?, ?, '{PRUNED_BODY}', ?)",
                    blocks,
                )
                db.executemany("INSERT INTO main VALUES (?, ?)", main)
            cold = _ColdShare(rows, self.forgets)
            db.executemany(_UPSERT.replace(" OR REPLACE", ""), cold)
            if self.forgets:
                db.execute(_ACCEPTANCE_DUE)
            cold_digest = cold.total % MODULUS
            db.execute("INSERT OR REPLACE INTO meta VALUES ('cold', ?)", (f"{cold_digest:064x}",))
            db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?)", (head, digest()))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (head,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('base', ?)", (str(base),))
        self._cold_digest = cold_digest

    def close(self) -> None:
        """Write the peers' records still buffered (a clean stop keeps its pool) and close."""
        if self._pool_buffer:
            rows = [
                (i, json.dumps(r.to_wire(), separators=(",", ":")), t)
                for i, (r, t) in self._pool_buffer.items()
            ]
            with contextlib.suppress(sqlite3.Error):
                self.db.executemany("INSERT OR IGNORE INTO pool VALUES (?, ?, ?)", rows)
        if self._checkpointer is not None:
            self._checkpointer.close()
        # The last connection to close checkpoints the WAL: that one must sync fully.
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA synchronous=FULL")
        self.db.close()


def private_file(path: Path) -> None:
    """Make `path` (and the WAL files SQLite keeps beside it) readable by its owner only,
    creating it empty when missing: SQLite gives its WAL files the database file's mode."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists() and name.stat().st_mode & 0o077:
            os.chmod(name, 0o600)


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


class _ColdShare:
    """Snapshot rows passed on as they are stored, summing the finished ones' share of the
    integrity digest (`total`) on the way."""

    def __init__(self, rows: Iterable[SnapshotRow], forgets: bool) -> None:
        self.rows = rows
        self.forgets = forgets
        self.total = 0

    def __iter__(self) -> Iterator[tuple[str, str, str, bool, int | None]]:
        forgets = self.forgets
        for name, key, packed, finished, due in self.rows:
            if finished:
                self.total += row_hash(name, key, packed)
            yield name, key, packed, finished, due if forgets else None
