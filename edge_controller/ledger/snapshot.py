"""State snapshots: how a new home joins from a checkpoint instead of replaying the chain.

A node keeps, for its latest final checkpoint (and any newer one), the snapshot file its
`Checkpoints` wrote: the state's lines, whose SHA-256 is the checkpoint the block header
carries (`checkpoint.py`). It serves the file over the sync protocol in pieces that fit one
message:

- `get_snapshot` {block, offset}: "the snapshot of the checkpoint block `block`, from byte
  `offset`" (0, then each answer's `next`);
- `snapshot` {block, offset, next, total, rows}: the whole lines from `offset` to `next` of a
  file of `total` bytes, each line's row as JSON (`[table, key, fields]`);
- `no_snapshot` {block}: this node keeps no snapshot of that block (not a final checkpoint
  on its chain, or not kept): the asker asks another peer.

A joining home (`SnapshotJoin`) first fetches the signed header chain from a peer and
checks every header as a node checks a block's (parent, height, sealer's turn and spacing,
time, the sealer's signature); it picks the highest checkpoint that the header chain makes
final (a majority of the sealers sealed on it, or `finality_depth` blocks, rules 3), fetches
that snapshot from any peer, re-encodes each row canonically and hashes them as they come.
A snapshot whose digest is not the checkpoint (or whose rows are out of order, or not
rows) is refused (`bad_snapshot`) and asked of another peer. A matching one is installed
into the empty store in one transaction (the headers up to the block before the
checkpoint, without bodies, and the state), and the ledger then verifies forward from
there as any node does, starting with the checkpoint block itself.

The joiner's memory does not grow with the chain: it keeps the last `header_window`
headers' index entries (what the header checks, finality and the checkpoint's choice look
at) and spools every checked header to a scratch table in its folder, which the install
reads back as a stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .block import Header, block_message
from .chain import Ledger, genesis_entry
from .checkpoint import SNAPSHOT_SUFFIX, checkpoint_due, snapshot_name
from .consensus import (
    Ancestor,
    IndexEntry,
    authority_rules,
    block_work,
    check_header,
    final_by_depth,
    final_height,
    finality_quorum,
    proof_is_valid,
)
from .errors import Reason, Rejected
from .genesis import Genesis
from .integrity import as_hex, row_hash
from .state import State, closed_at_fields, finished_fields
from .store import SnapshotRow, SqliteStore

log = logging.getLogger(__name__)

Message = dict[str, Any]
Outgoing = tuple[str | None, Message]

# Room a `snapshot` answer takes besides its rows.
SNAPSHOT_FRAME_BYTES = 512
# The piece a node serves when its transport has no bound.
DEFAULT_PIECE_BYTES = 256 * 1024
# The largest snapshot a joining home takes (a year of a 50-home street is far less).
MAX_SNAPSHOT_BYTES = 16 * 1024**3
HEADERS_PAGE = 256
REQUEST_TIMEOUT_MS = 5_000
# A join that finds no peer to serve its checkpoint for this long replays the chain instead.
JOIN_PATIENCE_MS = 60_000
STAGING = "joining.tmp"
# The checked headers, spooled while the join lasts (a scratch SQLite table).
HEADER_SPOOL = "joining-headers.tmp"
# A snapshot line's canonical form (`checkpoint.row_line`), built once: `json.dumps` with
# these options builds an encoder per call, a fifth of a join's time.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- serving ---------------------------------------------------------------------------------


def serve_snapshot(ledger: Ledger, block_hash: str, offset: int, limit: int | None) -> Message:
    """The answer to `get_snapshot`: a piece of the snapshot of the checkpoint `block_hash`
    (a final checkpoint of our best chain whose file we keep), or `no_snapshot`."""
    none: Message = {"type": "no_snapshot", "block": block_hash}
    entry = ledger.index.get(block_hash)
    on_main = (
        entry is not None
        and entry.height < len(ledger.main)
        and ledger.main[entry.height] == block_hash
    )
    if entry is None or not on_main or entry.height > ledger.final_height:
        return none
    if not checkpoint_due(ledger.genesis, entry.height):
        return none
    path = ledger.checkpoints.snapshot_path(entry.height, entry.prev)
    if path is None:
        return none
    budget = (limit or DEFAULT_PIECE_BYTES + SNAPSHOT_FRAME_BYTES) - SNAPSHOT_FRAME_BYTES
    try:
        with path.open("rb") as snapshot:
            total = os.fstat(snapshot.fileno()).st_size
            if offset > total:
                return none
            if offset:
                # Pieces start at a line: an offset inside one is not one we gave out.
                snapshot.seek(offset - 1)
                if snapshot.read(1) != b"\n":
                    return none
            rows, used = [], 0
            for line in snapshot:
                if used + len(line) > budget:
                    break
                rows.append(json.loads(line))
                used += len(line)
    except (OSError, ValueError) as exc:
        log.warning("snapshot %s not served: %s", path.name, exc)
        return none
    if not rows and offset < total:
        return none  # a row larger than a message: no peer can take this snapshot from us
    return {
        "type": "snapshot",
        "block": block_hash,
        "offset": offset,
        "next": offset + used,
        "total": total,
        "rows": rows,
    }


def keep_snapshots(ledger: Ledger) -> None:
    """Keep the snapshot of the latest final checkpoint of the best chain and those of
    newer checkpoints; delete the rest (older ones, and those of abandoned branches)."""
    interval = ledger.genesis.consensus.checkpoint_interval
    if interval <= 0 or ledger.checkpoints.folder is None:
        return
    keep = set()
    final_checkpoint = ledger.final_height - ledger.final_height % interval
    for height in range(max(final_checkpoint, interval), ledger.height + 1, interval):
        keep.add(snapshot_name(height, ledger.main[height - 1]))
    # A checkpoint the next block will carry: written as the sealer builds it.
    next_height = ledger.height + 1
    if next_height % interval == 0:
        keep.add(snapshot_name(next_height, ledger.main[-1]))
    ledger.checkpoints.retire(keep)


# --- joining ---------------------------------------------------------------------------------


def header_window(genesis: Genesis) -> int:
    """How many of the latest header entries a join keeps in memory: enough that no check
    of a valid chain looks below them, so the window never refuses an honest chain.

    The checkpoint joined at is `final - final % interval`, and `final` is at least
    `head - finality_depth` (rules 3, without which there are no checkpoints): the
    checkpoint block and its base lie within `finality_depth + interval` of the head. A
    header's checks look back `retarget_window - 1` blocks (proof of work), `sealers // 2`
    (recent sealers) and at most `sealers` (spacing: within a spacing a sealer seals once);
    the sealers' finality walk meets its quorum within `sealers // 2 + 1` blocks."""
    c = genesis.consensus
    reach = c.finality_depth + max(c.checkpoint_interval, 0)
    lookback = c.retarget_window if c.mode == "pow" else len(c.sealers)
    return max(reach, lookback) + 1


class _HeaderSpool:
    """The checked signed headers of a join, with their cumulative work, in a scratch
    SQLite table in the join's folder; no fsync: an interrupted join starts again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute(
                "CREATE TABLE IF NOT EXISTS headers"
                " (height INTEGER PRIMARY KEY, header TEXT, sig BLOB, work TEXT)"
            )
            self._db = db
        return self._db

    def add(self, headers: list[tuple[Header, bytes, int]]) -> None:
        """Spool a page of checked headers (heights in order, after those spooled)."""
        if not headers:
            return
        db = self._open()
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO headers VALUES (?, ?, ?, ?)",
            (
                (h.height, json.dumps(h.to_json(), separators=(",", ":")), sig, str(work))
                for h, sig, work in headers
            ),
        )
        db.execute("COMMIT")

    def header(self, height: int) -> Header:
        """The spooled header at `height`."""
        row = (
            self._open()
            .execute("SELECT header FROM headers WHERE height = ?", (height,))
            .fetchone()
        )
        if row is None:
            raise Rejected(Reason.BAD_SNAPSHOT, f"header {height} is not among those checked")
        return Header.from_json(json.loads(row[0]))

    def below(self, height: int) -> Iterator[tuple[Header, bytes, int]]:
        """The spooled headers under `height`, lowest first, read as they are consumed."""
        rows = self._open().execute(
            "SELECT header, sig, work FROM headers WHERE height < ? ORDER BY height", (height,)
        )
        for header, sig, work in rows:
            yield Header.from_json(json.loads(header)), bytes(sig), int(work)

    def delete(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        with contextlib.suppress(OSError):
            self.path.unlink()


@dataclass
class _Peer:
    work: int = 0
    height: int = 0
    head: str = ""


@dataclass
class JoinStatus:
    """Where a join stands, for `GET status`."""

    phase: str  # "waiting", "headers", "snapshot", "installed" or "replay"
    headers: int = 0
    checkpoint: int = 0
    received_bytes: int = 0
    total_bytes: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SnapshotJoin:
    """A new home's join from a snapshot, transport-free like `SyncNode` (which hands it
    the heads, headers and snapshot pieces it hears while the join lasts)."""

    def __init__(self, ledger: Ledger, folder: Path, started: int) -> None:
        if not isinstance(ledger.store, SqliteStore) or ledger.height != 0:
            raise ValueError("a snapshot joins an empty SQLite ledger only")
        self.ledger = ledger
        self.genesis = ledger.genesis
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.phase = "headers"
        self.peers: dict[str, _Peer] = {}
        self.excluded: set[str] = set()
        self.asked: str = ""
        self.asked_at = -1
        self.progress_at = started
        self.refused: dict[str, int] = {}
        self.genesis_entry = genesis_entry(self.genesis)[1]
        self.window = header_window(self.genesis)
        self.spool = _HeaderSpool(folder / HEADER_SPOOL)
        self._restart_headers()
        # Until a peer shows a chain long enough to hold a checkpoint, the node syncs and
        # seals as usual (the first homes of a street); its first block ends the wait.
        self.phase = "waiting"
        self.target = 0
        self.target_hash = self.base_hash = self.target_checkpoint = ""
        self.received = 0
        self.total = 0

    # --- status ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.phase in ("installed", "replay")

    @property
    def active(self) -> bool:
        """Whether the join has begun and not ended (the node follows no blocks then)."""
        return self.phase in ("headers", "snapshot")

    def status(self) -> JoinStatus:
        return JoinStatus(
            self.phase,
            headers=self.entries[-1].height,
            checkpoint=self.target,
            received_bytes=self.received,
            total_bytes=self.total,
            refused=dict(self.refused),
        )

    # --- what the sync node hands over --------------------------------------------------------

    def on_head(self, peer: str, height: int, head: str, work: int, now: int) -> list[Outgoing]:
        """A peer's head: remembered; the first one tall enough to hold a checkpoint begins
        the join, unless the ledger has followed a block meanwhile."""
        if self.phase == "waiting":
            interval = self.genesis.consensus.checkpoint_interval
            if self.ledger.height > 0 or interval <= 0 or height < interval:
                # A young chain (or one this node already follows): replaying it is cheap.
                self._give_up()
                return []
            self.phase = "headers"
            self.progress_at = now
            log.info("snapshot join: a peer is at height %d; fetching its headers", height)
        self.peers[peer] = _Peer(work, height, head)
        return self._next(now)

    def tick(self, now: int) -> list[Outgoing]:
        """Re-ask after a timeout; give up for a full replay when nobody can serve."""
        if not self.active:
            if self.phase == "waiting" and self.ledger.height > 0:
                self._give_up()
            return []
        if self.asked and now - self.asked_at > REQUEST_TIMEOUT_MS:
            self._refuse(self.asked, "timeout")
        if now - self.progress_at > JOIN_PATIENCE_MS:
            log.info("snapshot join: no peer served a snapshot; replaying the chain instead")
            self._give_up()
            return []
        return self._next(now)

    def on_headers(self, peer: str, items: list[Any], now: int) -> list[Outgoing]:
        if peer != self.asked or self.phase != "headers":
            raise Rejected(Reason.UNASKED, "headers that were not asked for")
        self.asked = ""
        self.progress_at = now
        view = self.peers.get(peer)
        try:
            page = [self._take_header(item, now) for item in items]
            self.spool.add(page)
            reached = view is not None and self.entries[-1].hash == view.head
            if items and not reached:
                return self._next(now)
            self._choose_checkpoint()
        except Rejected:
            self._refuse(peer, "bad_header")
            self._restart_headers()
            raise
        return self._next(now)

    def on_snapshot(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        if peer != self.asked or self.phase != "snapshot":
            raise Rejected(Reason.UNASKED, "a snapshot piece that was not asked for")
        self.asked = ""
        if message["type"] == "no_snapshot":
            self._refuse(peer, "no_snapshot")
            return self._next(now)
        try:
            finished = self._take_piece(message)
        except Rejected:
            self._refuse(peer, Reason.BAD_SNAPSHOT.value)
            self._reset_staging()
            raise
        self.progress_at = now
        if finished:
            self._install()
            return []
        self.asked, self.asked_at = peer, now
        return [(peer, self._ask_piece())]

    # --- headers ----------------------------------------------------------------------------

    def _restart_headers(self) -> None:
        self.phase = "headers"
        # The latest `window` entries only (genesis first while the chain is shorter).
        self.entries: deque[IndexEntry] = deque([self.genesis_entry], maxlen=self.window)
        self.spool.delete()

    def _ancestor(self, _entry: IndexEntry, height: int) -> IndexEntry:
        offset = height - self.entries[0].height
        if offset < 0:
            # `header_window` keeps what a valid chain's checks need: only a chain no
            # honest peer serves gets here.
            raise Rejected(
                Reason.BAD_SNAPSHOT,
                f"the header chain's checks reach block {height}, more than the join's "
                f"window of {self.window} headers below its head",
            )
        return self.entries[offset]

    def _take_header(self, item: Any, now: int) -> tuple[Header, bytes, int]:
        """Check a header on the latest one; its entry joins the window, and it is
        returned with its signature and cumulative work for the spool."""
        if type(item) is not dict or set(item) != {"header", "sig"}:
            raise Rejected(Reason.MALFORMED, "headers: expected {header, sig} objects")
        header = Header.from_json(item["header"])
        sig_hex = item["sig"]
        if type(sig_hex) is not str or len(sig_hex) != 128:
            raise Rejected(Reason.MALFORMED, "headers: expected a 64-byte signature in hex")
        parent = self.entries[-1]
        block_hash = header.hash
        if header.prev != parent.hash:
            raise Rejected(Reason.UNKNOWN_PARENT, "headers do not form a chain from genesis")
        c = self.genesis.consensus
        if header.time > now + c.max_future_ms:
            raise Rejected(Reason.TIME_TOO_FAR_AHEAD, f"header {header.height} is from ahead")
        if c.mode == "pow" and not proof_is_valid(header):
            raise Rejected(Reason.BAD_PROOF, f"header {block_hash[:12]} lacks its proof")
        ancestor: Ancestor = self._ancestor
        check_header(self.genesis, header, block_hash, parent, ancestor)
        sig = bytes.fromhex(sig_hex)
        if not self.ledger.verifier.verify(header.sealer, sig, block_message(block_hash)):
            raise Rejected(Reason.BAD_BLOCK_SIGNATURE, f"header {header.height} is not signed")
        if checkpoint_due(self.genesis, header.height) != bool(header.checkpoint):
            raise Rejected(Reason.BAD_CHECKPOINT, f"header {header.height}: checkpoint misplaced")
        work = parent.work + block_work(self.genesis, header.difficulty)
        self.entries.append(
            IndexEntry(
                block_hash,
                header.prev,
                header.height,
                header.time,
                header.difficulty,
                header.sealer,
                work,
            )
        )
        return header, sig, work

    def _final_height(self) -> int:
        head = self.entries[-1]
        final = final_by_depth(self.genesis, head.height)
        if authority_rules(self.genesis):
            quorum = finality_quorum(self.genesis)
            final = max(final, final_height(head, quorum, self._ancestor))
        return final

    def _choose_checkpoint(self) -> None:
        """The highest checkpoint the header chain makes final; none: replay the chain."""
        interval = self.genesis.consensus.checkpoint_interval
        final = self._final_height()
        self.target = final - final % interval if interval > 0 else 0
        if self.target <= 0 or not checkpoint_due(self.genesis, self.target):
            log.info("snapshot join: no final checkpoint yet; replaying the chain")
            self._give_up()
            return
        head = self.entries[-1]
        self.target_hash = self._ancestor(head, self.target).hash
        self.base_hash = self._ancestor(head, self.target - 1).hash
        self.target_checkpoint = self.spool.header(self.target).checkpoint
        log.info(
            "snapshot join: %d headers checked, joining at checkpoint %d",
            head.height,
            self.target,
        )
        self.phase = "snapshot"
        self.excluded.clear()
        self._reset_staging()

    # --- the snapshot -------------------------------------------------------------------------

    def _reset_staging(self) -> None:
        self.received = self.total = 0
        self._digest = hashlib.sha256()
        self._last_row: tuple[str, str] | None = None
        with contextlib.suppress(OSError):
            (self.folder / STAGING).unlink()

    def _ask_piece(self) -> Message:
        return {
            "type": "get_snapshot",
            "block": self.target_hash,
            "offset": self.received,
        }

    def _take_piece(self, message: Message) -> bool:
        """Check a piece and add it to the staging file; True once the whole snapshot came
        and matched the checkpoint."""
        if message["block"] != self.target_hash:
            raise Rejected(Reason.BAD_SNAPSHOT, "a piece of another snapshot")
        total = message["total"]
        if message["offset"] != self.received or (self.total and total != self.total):
            raise Rejected(Reason.BAD_SNAPSHOT, "a piece out of place")
        if total > MAX_SNAPSHOT_BYTES:
            raise Rejected(Reason.BAD_SNAPSHOT, f"a snapshot of {total} bytes is too large")
        self.total = total
        lines = []
        for row in message["rows"]:
            lines.append(self._line(row))
        data = b"".join(lines)
        if message["next"] != self.received + len(data) or message["next"] > total:
            raise Rejected(Reason.BAD_SNAPSHOT, "the piece's rows are not its bytes")
        if not data and self.received < total:
            raise Rejected(Reason.BAD_SNAPSHOT, "an empty piece before the end")
        fd = os.open(self.folder / STAGING, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as staging:
            staging.write(data)
        self._digest.update(data)
        self.received += len(data)
        if self.received < total:
            return False
        expected = self.target_checkpoint
        if self._digest.hexdigest() != expected:
            raise Rejected(
                Reason.BAD_SNAPSHOT,
                f"the snapshot's digest {self._digest.hexdigest()[:16]} is not checkpoint "
                f"{expected[:16]} of block {self.target}",
            )
        return True

    def _line(self, row: Any) -> bytes:
        """A row's canonical line; rows must come in the digest's order, once each."""
        if type(row) is not list or len(row) != 3:
            raise Rejected(Reason.BAD_SNAPSHOT, "a row is [table, key, fields]")
        table, key, fields = row
        if type(table) is not str or type(key) is not str or type(fields) is not dict:
            raise Rejected(Reason.BAD_SNAPSHOT, "a row is [table, key, fields]")
        place = (table, key)
        if self._last_row is not None and place <= self._last_row:
            raise Rejected(Reason.BAD_SNAPSHOT, f"row {table}/{key[:16]} out of order")
        self._last_row = place
        try:
            return (_CANONICAL.encode(row) + "\n").encode()
        except (TypeError, ValueError) as exc:
            raise Rejected(Reason.BAD_SNAPSHOT, f"row {table}/{key[:16]}: {exc}") from None

    def _install(self) -> None:
        """Install the verified snapshot and the headers below it, then reload the ledger."""
        base = self.target - 1
        staging = self.folder / STAGING
        kept = self.folder / snapshot_name(self.target, self.base_hash)
        assert isinstance(self.ledger.store, SqliteStore)
        stored = _StoredRows(staging)
        try:
            # Streamed from the spool: the headers up to the base, never all in memory.
            self.ledger.store.install(self.spool.below(self.target), stored, stored.digest)
        except ValueError as exc:
            # The digest matched, so the sealers sealed these rows: this code cannot read them.
            raise Rejected(Reason.BAD_SNAPSHOT, f"its rows do not decode: {exc}") from None
        self.spool.delete()
        # Kept: this home serves the same snapshot to the next new home.
        os.replace(staging, kept)
        self.ledger.reload()
        # The installed state is the snapshot, whose digest is the checkpoint block's: the
        # block's check needs no second pass over the state.
        self.ledger.checkpoints.remember(self.base_hash, self.target_checkpoint)
        self.phase = "installed"
        log.info("snapshot join: state at block %d installed; verifying forward", base)

    def _give_up(self) -> None:
        self.phase = "replay"
        self.asked = ""
        self.spool.delete()
        with contextlib.suppress(OSError):
            (self.folder / STAGING).unlink()

    # --- whom to ask --------------------------------------------------------------------------

    def _refuse(self, peer: str, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1
        self.excluded.add(peer)
        if self.asked == peer:
            self.asked = ""

    def _next(self, now: int) -> list[Outgoing]:
        if self.done or self.asked:
            return []
        candidates = [
            (view.work, peer)
            for peer, view in self.peers.items()
            if peer not in self.excluded and view.work > self.genesis_entry.work
        ]
        if self.phase == "snapshot":
            candidates = [(w, p) for w, p in candidates if self.peers[p].height >= self.target]
        if not candidates:
            # Every peer tried once: try them again (a peer may have caught up since); the
            # join gives up for a replay when none helps for `JOIN_PATIENCE_MS`.
            self.excluded.clear()
            return []
        _, peer = max(candidates)
        self.asked, self.asked_at = peer, now
        if self.phase == "headers":
            locator = [self.entries[-1].hash]
            return [(peer, {"type": "get_headers", "locator": locator, "limit": HEADERS_PAGE})]
        return [(peer, self._ask_piece())]


class _StoredRows:
    """The rows of a verified snapshot file in the store's packed encoding, each with
    whether it is finished (a start skips it), read once, as the install stores them;
    `digest` is then the store's integrity digest of them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._total = 0

    def __iter__(self) -> Iterator[SnapshotRow]:
        tables = {t.name: t for t in State().tables()}
        total = 0
        loads = json.loads
        with self.path.open("rb") as snapshot:
            for line in snapshot:
                name, key, fields = loads(line)
                table = tables.get(name)
                if table is None:
                    raise ValueError(f"unknown table {name!r}")
                # The lines are canonical and hashed to the checkpoint already: packed
                # straight from their fields, no row built.
                packed = table.pack_fields(key, fields)
                # The store keeps rows packed, and its integrity digest sums them as stored.
                total += row_hash(name, key, packed)
                finished = finished_fields(name, key, fields)
                yield name, key, packed, finished, closed_at_fields(name, fields)
        self._total = total

    def digest(self) -> str:
        return as_hex(self._total % (1 << 256))


def snapshot_files(folder: Path) -> list[str]:
    """The snapshot files in `folder` (for status and tests)."""
    return sorted(p.name for p in folder.glob(f"*{SNAPSHOT_SUFFIX}"))
