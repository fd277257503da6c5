"""Re-verify a stored chain from genesis, trusting nothing the node remembered.

`verify_chain` replays blocks one at a time with a fresh `Verifier` (no signature cache)
and a fresh `State`: every header against its parent, the record root, the block and record
signatures, the proof of work and every rule. It keeps no block in memory, only the small
`IndexEntry` per block that ancestor lookups need; the ids of the records seen so far and
the finished state rows (as a node keeps them) go to a temporary SQLite file, so its memory
does not grow with the chain and a Raspberry Pi can check a chain far larger than its RAM.

`StoredChain` reads a node's SQLite file read-only (a running node may keep writing) and
its `verify` also compares the replayed state with the state rows the node stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .block import parse_block, record_root
from .chain import genesis_entry, now_ms
from .checkpoint import Checkpoints
from .consensus import IndexEntry, block_work, check_block_size, check_header
from .errors import Reason, Rejected
from .genesis import FOURTH_RULES, Genesis
from .integrity import REMEDY, as_hex, row_hash
from .keys import Verifier
from .parallel import CHUNK, Job, SignaturePool
from .records import Record, signing_message
from .rules import BlockContext, apply_block
from .sealers import SealerView, changes_in, next_view, ruling
from .state import CLOSING, State, Table
from .store import closed_between

# Not a block's fault, so not a `Reason`: the stored state or index disagrees with the chain.
STATE_MISMATCH = "state_mismatch"
STORE_MISMATCH = "store_mismatch"
# SQLite cannot read part of the file (a damaged page): what was read before it is reported.
DAMAGED_FILE = "damaged_file"
# The database keeps no bodies below some height (`prune.py`, `snapshot.py`): not replayable.
PRUNED_CHAIN = "pruned"

Progress = Callable[[int, int], None]
"""Called after each verified block with (blocks verified, records verified)."""

StateRows = Callable[[], Iterable[tuple[str, str, str]]]
"""Produces the stored state as (table, key, encoded value) rows."""


@dataclass
class VerifyReport:
    """The outcome of replaying a chain: counts, the first failure if any, state digests."""

    blocks: int = 0
    records: int = 0
    head: str = ""
    bad_height: int | None = None
    bad_hash: str = ""
    reason: str = ""
    message: str = ""
    digest: str = ""
    stored_digest: str = ""
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every block and record is valid and the stored state agrees."""
        return not self.reason

    def as_dict(self) -> dict[str, Any]:
        """The JSON form `ledger verify --json` prints."""
        return {"ok": self.ok, **asdict(self)}


class ChainFileError(Exception):
    """The database cannot be read as a ledger of this community (a usage error)."""


def verify_chain(
    genesis: Genesis,
    blocks: Iterable[dict[str, Any]],
    progress: Progress | None = None,
    *,
    now: int | None = None,
    stored_state: StateRows | None = None,
    workers: int | None = None,
    stored_digest: str | None = None,
) -> VerifyReport:
    """Replay `blocks` (JSON form, heights 1, 2, ... of one chain) from genesis.

    Stops at the first invalid block and names it with its reason code. When every block
    is valid and `stored_state` is given (rows in table, key order), the replayed state
    digest is compared with theirs, and their sum digest with `stored_digest` (the one the
    node stored with its head, when it did). `now` (UTC ms, default the wall clock) bounds block
    times. Record signatures are checked by `workers` worker processes (default: one per
    CPU; Ed25519 verification holds the GIL, so threads would not help) while the rules run.
    """
    started = time.perf_counter()
    now = now_ms() if now is None else now
    workers = workers or _usable_cpus()
    report = VerifyReport()
    pool = SignaturePool(workers) if workers > 1 else None
    try:
        replay = _Replay(genesis, now, pool)
        report.head = replay.entries[0].hash
        for wire in blocks:
            height = replay.entries[-1].height + 1
            try:
                block_hash, count = replay.block(wire)
            except _BadBlock as bad:
                report.bad_height, report.bad_hash = height, bad.block_hash
                report.reason, report.message = bad.reason.value, bad.message
                break
            report.blocks += 1
            report.records += count
            report.head = block_hash
            if progress is not None:
                progress(report.blocks, report.records)
    finally:
        if pool is not None:
            pool.close()
    report.digest = replay.digest()
    replay.close()
    if report.ok and stored_state is not None:
        # The replayed state goes first, so only one state is ever in memory.
        del replay
        _compare_stored_state(report, stored_state(), stored_digest)
    report.elapsed_s = time.perf_counter() - started
    return report


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the CPUs this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _BadBlock(Exception):
    """A block failed a check; carries its hash (if it parsed) and the reason."""

    def __init__(self, block_hash: str, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.block_hash, self.reason, self.message = block_hash, reason, message


class _Replay:
    """The verifier's whole memory: the state, one index entry per block, the record ids."""

    def __init__(self, genesis: Genesis, now: int, pool: SignaturePool | None) -> None:
        self.genesis = genesis
        self.community = genesis.community_id
        self.now = now
        self.pool = pool
        # No signature cache: every signature is checked exactly once here, so remembering
        # the good ones would only cost memory.
        self.verifier = Verifier(cache_size=0)
        self.block_verifier = self.verifier
        self.state = State()
        self.checkpoints = Checkpoints(genesis)
        # The best chain only, so the ancestor at height h is simply entries[h].
        self.entries: list[IndexEntry] = [genesis_entry(genesis)[1]]
        self._spill_dir = tempfile.TemporaryDirectory(prefix="energy-p2p-verify-")
        # A scratch file: nothing in it must survive a crash, so no journal and no fsync.
        self.spill = sqlite3.connect(Path(self._spill_dir.name) / "replay.db")
        self.spill.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE state (tbl TEXT, key TEXT, value TEXT, due INTEGER,"
            " PRIMARY KEY (tbl, key)) WITHOUT ROWID;"
            "CREATE INDEX state_due ON state (due) WHERE due IS NOT NULL;"
            "CREATE TABLE recorded (id BLOB PRIMARY KEY) WITHOUT ROWID;"
        )
        self.state.keep_cold(self._load_row, self._scan_rows)
        if genesis.consensus.rules >= FOURTH_RULES:
            self.state.closed_query = self._closed_rows
        # Rules 3: the sealer set in force for the next block, and the changes on their way.
        self.sealers = SealerView(genesis.consensus.sealers)

    def _load_row(self, table: Table[Any], key: str) -> Any:
        row = self.spill.execute(
            "SELECT value FROM state WHERE tbl = ? AND key = ?", (table.name, key)
        ).fetchone()
        return None if row is None else table.decode(row[0])

    def _scan_rows(self, table: Table[Any]) -> Iterator[tuple[str, Any]]:
        rows = self.spill.execute("SELECT key, value FROM state WHERE tbl = ?", (table.name,))
        for key, value in rows.fetchall():
            yield key, table.decode(value)

    def _closed_rows(self, low: int | None, high: int) -> list[tuple[int, str, str]]:
        return closed_between(self.spill, low, high)

    def ancestor(self, _entry: IndexEntry, height: int) -> IndexEntry:
        return self.entries[height]

    def is_recorded(self, record_id: str) -> bool:
        return self._recorded_any([bytes.fromhex(record_id)])

    def _recorded_any(self, ids: Sequence[bytes]) -> bool:
        marks = ",".join("?" * len(ids))
        query = f"SELECT 1 FROM recorded WHERE id IN ({marks}) LIMIT 1"
        return bool(ids) and self.spill.execute(query, ids).fetchone() is not None

    def _spill_block(self, ids: list[bytes], time_ms: int) -> None:
        """Write the block's rows and record ids to the scratch file; the rows a node
        would keep on disk only then leave memory."""
        journal, state = self.state.journal, self.state
        forgets = state.closed_query is not None
        written: dict[tuple[str, str], tuple[Table[Any], str]] = {}
        for table, key, _old in journal:
            if table.finished is not None or (forgets and table.name in CLOSING):
                written[(table.name, key)] = (table, key)
        rows, gone = [], []
        for table, key in written.values():
            # Written by this block: in memory, or gone (a deleted key reads as None).
            value = table.rows.get(key)
            if value is None:
                gone.append((table.name, key))
                continue
            due = state.closed_time(table.name, value) if forgets else None
            rows.append((table.name, key, table.encode(value), due))
        self.spill.executemany("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)", rows)
        # Rules 4 forget rows: the scratch file must not hand them back.
        self.spill.executemany("DELETE FROM state WHERE tbl = ? AND key = ?", gone)
        self.spill.executemany("INSERT INTO recorded VALUES (?)", [(i,) for i in ids])
        self.state.evict(journal, time_ms)

    def digest(self) -> str:
        """`State.digest` of the replayed state, read back in key order from the scratch
        file for the tables it holds, so no table is sorted in memory."""
        h = hashlib.sha256()
        for table in sorted(self.state.tables(), key=lambda t: t.name):
            if table.finished is None:
                for key in sorted(table.rows):
                    h.update(f"{table.name}\0{key}\0{table.encode(table.rows[key])}\n".encode())
                continue
            self.spill.executemany(
                "INSERT OR REPLACE INTO state (tbl, key, value) VALUES (?, ?, ?)",
                [(table.name, k, table.encode(v)) for k, v in table.rows.items()],
            )
            rows = self.spill.execute(
                "SELECT key, value FROM state WHERE tbl = ? ORDER BY key", (table.name,)
            )
            for key, value in rows:
                h.update(f"{table.name}\0{key}\0{value}\n".encode())
        return h.hexdigest()

    def close(self) -> None:
        """Remove the scratch file."""
        self.spill.close()
        self._spill_dir.cleanup()

    def block(self, wire: dict[str, Any]) -> tuple[str, int]:
        """Check and apply one block; returns its hash and record count or raises _BadBlock."""
        limits = self.genesis.consensus
        parent = self.entries[-1]
        block_hash = ""
        try:
            block = parse_block(wire, self.community)
            block_hash = block.hash
            if block.prev != parent.hash:
                raise Rejected(Reason.UNKNOWN_PARENT, f"its parent is not block {parent.height}")
            check_block_size(limits, block)
            if block.header.time > self.now + limits.max_future_ms:
                raise Rejected(Reason.TIME_TOO_FAR_AHEAD, "the block's time is in the future")
            if record_root([r.id for r in block.records]) != block.header.root:
                raise Rejected(Reason.BAD_RECORD_ROOT, "the record root does not match")
            # Also the proof of work: `block_hash` is recomputed from the header just parsed.
            ruling_genesis = ruling(self.genesis, self.sealers.sealers)
            check_header(ruling_genesis, block.header, block_hash, parent, self.ancestor)
            block.check_signature(self.block_verifier)
            ids = [bytes.fromhex(r.id) for r in block.records]
            fresh = set(ids)
            if len(fresh) < len(ids) or self._recorded_any(ids):
                twice = next(
                    i
                    for i, raw in enumerate(ids)
                    if self._recorded_any([raw]) or ids.index(raw) < i
                )
                raise Rejected(
                    Reason.DUPLICATE, f"record {block.records[twice].id[:12]} is recorded twice"
                )
            signatures = self._check_signatures(block.records)
            ctx = BlockContext(
                genesis=self.genesis,
                height=block.height,
                time=block.header.time,
                sealer=block.header.sealer_account,
                is_recorded=self.is_recorded,
            )
            rule_error: Rejected | None = None
            try:
                self.checkpoints.check(block, self.state)
                apply_block(self.state, block.records, ctx)
            except Rejected as exc:
                rule_error = exc
            # As a node does: a bad signature is the block's fault before any rule.
            self._first_bad_signature(block.records, signatures)
            if rule_error is not None:
                raise rule_error
        except Rejected as exc:
            # The journal holds this block's writes only (it is cleared after every valid
            # block), so this leaves the state of the valid chain before the bad block.
            self.state.revert(0)
            raise _BadBlock(block_hash, exc.reason, exc.message) from None
        self._spill_block(ids, block.header.time)
        # Undo data is what a node needs for reorgs; a verifier never rolls back.
        self.state.journal.clear()
        entry = IndexEntry(
            hash=block_hash,
            prev=block.prev,
            height=block.height,
            time=block.header.time,
            difficulty=block.header.difficulty,
            sealer=block.header.sealer,
            work=parent.work + block_work(self.genesis, block.header.difficulty),
        )
        self.entries.append(entry)
        changes = changes_in(self.genesis, block.records)
        if changes or self.sealers.pending or self.sealers.scheduled:
            self.sealers = next_view(self.sealers, entry, changes, self.ancestor)
        return block_hash, len(block.records)

    def _check_signatures(self, records: Sequence[Record]) -> _Results | None:
        """Start checking the records' signatures on the workers (None: no workers)."""
        if self.pool is None:
            return None
        checks = [
            (r.signer, r.sig, signing_message(self.community, r.signer, r.body_bytes))
            for r in records
        ]
        jobs = self.pool.submit(checks, size=max(CHUNK, -(-len(checks) // self.pool.workers)))
        return _Results([future for _, future in jobs])

    def _first_bad_signature(self, records: Sequence[Record], started: _Results | None) -> None:
        """Raise for the first record, in block order, whose signature is bad."""
        results = started.results() if started is not None else None
        for i, record in enumerate(records):
            if results is None or not results[i]:
                record.verify(self.community, self.verifier)


class _Results:
    """The workers' answers for one block, in record order."""

    def __init__(self, futures: list[Job]) -> None:
        self.futures = futures

    def results(self) -> list[bool]:
        return [good for future in self.futures for good in future.result()]


def _compare_stored_state(
    report: VerifyReport, rows: Iterable[tuple[str, str, str]], head_digest: str | None = None
) -> None:
    """Set `report.stored_digest` to the `State.digest()` of the stored rows, decoding each
    row and encoding it again one at a time (a second `State` would double the memory),
    and flag a mismatch with the replayed digest, or with the digest stored with the head."""
    tables = {table.name: table for table in State().tables()}
    digest = hashlib.sha256()
    total = 0
    for name, key, value in rows:
        total += row_hash(name, key, value)
        try:
            table = tables[name]
            encoded = table.encode(table.unpack(key, value))
        except (KeyError, ValueError, TypeError) as exc:
            report.reason = STATE_MISMATCH
            report.message = f"stored state row {name}/{key} is unreadable: {exc!r}"
            return
        digest.update(f"{name}\0{key}\0{encoded}\n".encode())
    report.stored_digest = digest.hexdigest()
    if report.stored_digest != report.digest:
        report.reason = STATE_MISMATCH
        report.message = (
            "the state stored in the database differs from the replayed chain "
            f"(stored {report.stored_digest[:16]}, replayed {report.digest[:16]})"
        )
    elif head_digest is not None and head_digest != as_hex(total % (1 << 256)):
        report.reason = STATE_MISMATCH
        report.message = "the state digest stored with the head differs from the stored state"


@dataclass(frozen=True)
class StoredBlock:
    """One block of the best chain as the database holds it."""

    height: int
    hash: str
    wire: dict[str, Any]


class StoredChain:
    """A ledger database opened read-only: its best chain and its state rows."""

    def __init__(self, path: Path | str, genesis: Genesis) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ChainFileError(f"{self.path}: no such ledger database")
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None)
            row = self.db.execute("SELECT value FROM meta WHERE key = 'community'").fetchone()
        except sqlite3.DatabaseError as exc:
            damaged = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_CORRUPT
            raise ChainFileError(
                f"{self.path} is damaged ({exc}): {REMEDY}"
                if damaged
                else f"{self.path}: not a ledger database ({exc})"
            ) from None
        if row is None:
            raise ChainFileError(f"{self.path}: the ledger database has no community yet")
        if row[0] != genesis.community_id:
            self.db.close()
            raise ChainFileError(
                f"{self.path} holds community {row[0]}, "
                f"the genesis file is for {genesis.community_id}"
            )
        self.genesis = genesis

    def block_count(self) -> int:
        """How many blocks the best chain has after genesis."""
        (count,) = self.db.execute("SELECT COUNT(*) FROM main").fetchone()
        return int(count)

    def head(self) -> str:
        """The best chain's tip as the node last committed it ('' before the first block)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()
        return str(row[0]) if row else ""

    def blocks(self, start: int = 0) -> Iterator[StoredBlock]:
        """The best chain's blocks from height `start`, read one at a time."""
        for height, block_hash, header, sig, records in self.db.execute(
            "SELECT m.height, m.hash, b.header, b.sig, b.records"
            " FROM main m JOIN blocks b ON b.hash = m.hash"
            " WHERE m.height >= ? ORDER BY m.height",
            (start,),
        ):
            wire = {"header": _json_or_text(header), "sig": sig, "records": _json_or_text(records)}
            yield StoredBlock(height=height, hash=block_hash, wire=wire)

    def state_rows(self) -> Iterator[tuple[str, str, str]]:
        """The state the node stored, as (table, key, encoded value) in table, key order
        (SQLite compares UTF-8 bytes, which orders like Python compares strings)."""
        yield from self.db.execute("SELECT tbl, key, value FROM state ORDER BY tbl, key")

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Verify the stored best chain, then the stored state and head against it.

        All of it is read in one transaction: a node may keep writing while it is checked,
        and the chain, the state and the head must come from the same moment."""
        self.db.execute("BEGIN")
        counted = VerifyReport()
        base = self.base_height()
        if base:
            self.db.execute("COMMIT")
            counted.reason = PRUNED_CHAIN
            counted.message = (
                f"{self.path} keeps block bodies from height {base + 1} on only (pruned, or "
                "joined from a snapshot): a replay from genesis needs an archive node's ledger"
            )
            return counted

        def counting(blocks: int, records: int) -> None:
            counted.blocks, counted.records = blocks, records
            if progress is not None:
                progress(blocks, records)

        try:
            head = self.head()
            report = verify_chain(
                self.genesis,
                (block.wire for block in self.blocks()),
                counting,
                stored_state=self.state_rows,
                stored_digest=self.head_digest(head),
            )
        except sqlite3.DatabaseError as exc:
            counted.reason = DAMAGED_FILE
            counted.message = (
                f"{self.path} is damaged after block {counted.blocks} ({exc}): {REMEDY}"
            )
            return counted
        finally:
            # A read transaction: ending it cannot lose anything, even on a damaged file.
            with contextlib.suppress(sqlite3.DatabaseError):
                self.db.execute("COMMIT")
        if report.ok and head and head != report.head:
            report.reason = STORE_MISMATCH
            report.message = f"the stored head {head[:16]} is not the last block of the chain"
        return report

    def base_height(self) -> int:
        """The height below which the database keeps no block bodies (0: all kept)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'base'").fetchone()
        return int(row[0]) if row else 0

    def head_digest(self, head: str) -> str | None:
        """The state digest the node stored with its head (None: none stored)."""
        try:
            row = self.db.execute("SELECT state FROM digests WHERE hash = ?", (head,)).fetchone()
        except sqlite3.OperationalError:  # a database written before digests existed
            return None
        return None if row is None else str(row[0])

    def close(self) -> None:
        self.db.close()


def _json_or_text(text: str) -> Any:
    # A column that is not JSON any more is handed on as text, so the block's shape check
    # rejects it as malformed and the report names the block instead of crashing.
    try:
        return json.loads(text)
    except ValueError:
        return text
