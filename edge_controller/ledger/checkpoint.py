"""State checkpoints: the digest of the whole ledger state, sealed into a block header.

Rules 3 on, the block at every height that is a multiple of genesis
`consensus.checkpoint_interval` carries in its header `checkpoint`: the digest of the state
its block starts from, that is the state after its parent (block h - 1). Every node
computes it when it applies the block and refuses a block whose checkpoint is missing or
wrong, and a block that carries one at any other height (`bad_checkpoint`).

The digest covers the state's logical content, not how a node keeps or stores it: one line
per row, `[table, key, row]` in canonical JSON (the row an object of its fields), then a
newline; tables in name order, each table's keys in code point order; SHA-256 of all lines.
The same lines, written to a file as the digest is computed, are the state snapshot a node
serves to a new home (`snapshot.py`): the snapshot's SHA-256 is the checkpoint.

A ledger on SQLite streams the lines from its `state` table in primary-key order (`tbl`,
`key`: SQLite compares TEXT as UTF-8 bytes, and UTF-8 byte order is code point order), so
no table's keys are ever sorted in memory; the rows a batch of blocks changed and has not
committed yet are merged in (`merged_lines`). A node computes the checkpoint the next
block carries as soon as its parent commits, on another thread (`CheckpointJob`: a
connection of its own, one read transaction on the committed state), so its event loop
goes on meanwhile; a ledger alone (tests, benchmarks, `ledger verify`) computes it when the
block needs it. Both give the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .block import Block
from .errors import Reason, Rejected
from .genesis import THIRD_RULES, Genesis
from .state import MISSING, State, Table

log = logging.getLogger(__name__)

_LINE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# For fields already in name order (`Table.stored_fields`) and no object inside: same bytes.
_ORDERED_LINE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_FIELDS: dict[type, tuple[str, ...]] = {}
SNAPSHOT_SUFFIX = ".snap"
# Digests a ledger remembers by the block they follow (the sealer's and its own apply).
_CACHED = 4


def checkpoint_due(genesis: Genesis, height: int) -> bool:
    """Whether the block at `height` carries a checkpoint (rules 3 on, every interval)."""
    c = genesis.consensus
    interval = c.checkpoint_interval
    return c.rules >= THIRD_RULES and interval > 0 and height > 0 and height % interval == 0


def row_fields(row: Any) -> dict[str, Any]:
    """A state row as the object of its fields (what a snapshot line holds)."""
    cls = type(row)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return {name: getattr(row, name) for name in names}


def row_line(table: str, key: str, row: Any) -> bytes:
    """One row's line of the digest and of a snapshot file."""
    return (_LINE.encode([table, key, row_fields(row)]) + "\n").encode()


def state_lines(state: State) -> Iterator[bytes]:
    """Every row of `state` as its line, in the digest's order."""
    for table in sorted(state.tables(), key=lambda t: t.name):
        rows = table.rows
        # Every row, also those only in storage (finished ones leave memory): the keys are
        # sorted, and each row is read again as its turn comes, so memory holds no table.
        for key in sorted(key for key, _ in table.items_all()):
            yield row_line(table.name, key, rows[key])


StoredRows = Iterable[tuple[str, str, str]]


def stored_lines(rows: StoredRows) -> Iterator[bytes]:
    """The lines of stored rows (`tbl`, `key`, packed value), in the order they come."""
    line = stored_line
    for name, key, text in rows:
        yield line(name, key, text)


@functools.cache
def _tables() -> dict[str, Table[Any]]:
    return {t.name: t for t in State().tables()}


def stored_line(name: str, key: str, text: str) -> bytes:
    """One stored row's line: the bytes `row_line` gives for the row it decodes to."""
    table = _tables().get(name)
    if table is None:
        raise ValueError(f"the state holds an unknown table {name!r}")
    return (_ORDERED_LINE.encode([name, key, table.stored_fields(key, text)]) + "\n").encode()


def merged_lines(rows: StoredRows, state: State) -> Iterator[bytes]:
    """`state`'s lines from its committed rows (`rows`, in key order) with the writes of
    its journal (made since the last commit) in their place: memory holds those only."""
    changed = sorted({(t.name, key): t for t, key, _old in state.journal}.items())
    position = 0
    for name, key, text in rows:
        place = (name, key)
        while position < len(changed) and changed[position][0] < place:
            yield from _changed_line(*changed[position])
            position += 1
        if position < len(changed) and changed[position][0] == place:
            yield from _changed_line(*changed[position])
            position += 1
            continue
        yield stored_line(name, key, text)
    for item in changed[position:]:
        yield from _changed_line(*item)


def _changed_line(place: tuple[str, str], table: Any) -> Iterator[bytes]:
    value = table.rows.get(place[1], MISSING)
    if value is not MISSING and value is not None:
        yield row_line(place[0], place[1], value)


def lines_digest(lines: Iterable[bytes]) -> str:
    """The hex SHA-256 of `lines`."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line)
    return digest.hexdigest()


def state_digest(state: State) -> str:
    """The checkpoint digest of `state` (hex SHA-256 of its lines)."""
    return lines_digest(state_lines(state))


def snapshot_name(height: int, parent: str) -> str:
    """The file of the snapshot a checkpoint at `height` (on block `parent`) names."""
    return f"{height:012d}-{parent}{SNAPSHOT_SUFFIX}"


class Checkpoints:
    """A ledger's checkpoints: computes the digest a block at a checkpoint height must
    carry and, given a folder, keeps the state snapshot of each checkpoint there."""

    def __init__(
        self,
        genesis: Genesis,
        folder: Path | None = None,
        stored: Callable[[], StoredRows] | None = None,
    ) -> None:
        """`stored`: the committed state rows in key order, when the ledger keeps them in
        SQLite (the digest then streams them); None: the state is sorted in memory."""
        self.genesis = genesis
        self._stored = stored
        c = genesis.consensus
        # A community without checkpoints has no snapshots to keep: no folder either.
        self.folder = folder if c.rules >= THIRD_RULES and c.checkpoint_interval > 0 else None
        self._digests: dict[str, str] = {}
        if self.folder is not None:
            folder = self.folder
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            # A snapshot half written when the node was killed: never served, started again.
            for stale in folder.glob("*.tmp"):
                stale.unlink(missing_ok=True)

    def due(self, height: int) -> bool:
        return checkpoint_due(self.genesis, height)

    def digest_after(self, parent: str, height: int, state: State) -> str:
        """The digest of `state`, the state after block `parent`, for the checkpoint of the
        block at `height`; written as a snapshot too when this ledger keeps them."""
        known = self._digests.get(parent)
        if known is not None:
            return known
        stored = self._stored

        def lines() -> Iterator[bytes]:
            return state_lines(state) if stored is None else merged_lines(stored(), state)

        digest = digest_and_snapshot(self._path(height, parent), lines)
        self.remember(parent, digest)
        return digest

    def known(self, parent: str) -> bool:
        """Whether the digest of the state after block `parent` is at hand."""
        return parent in self._digests

    def remember(self, parent: str, digest: str) -> None:
        """Keep the digest of the state after block `parent` (a `CheckpointJob`'s)."""
        if len(self._digests) >= _CACHED and parent not in self._digests:
            del self._digests[next(iter(self._digests))]
        self._digests[parent] = digest

    def job(self, database: Path, parent: str, height: int) -> CheckpointJob | None:
        """The work of the checkpoint of the block at `height` on `parent`, whose state is
        the one committed in `database`, for another thread (None: its digest is known)."""
        if parent in self._digests:
            return None
        return CheckpointJob(database, parent, self._path(height, parent))

    def _path(self, height: int, parent: str) -> Path | None:
        return None if self.folder is None else self.folder / snapshot_name(height, parent)

    def check(self, block: Block, state: State) -> None:
        """Raise `Rejected(BAD_CHECKPOINT)` unless `block`'s header carries the digest of
        `state` (the state after its parent) at a checkpoint height, and none elsewhere."""
        header = block.header
        if not self.due(header.height):
            if header.checkpoint:
                raise Rejected(
                    Reason.BAD_CHECKPOINT,
                    f"block {header.height} is not at a checkpoint height but carries one",
                )
            return
        expected = self.digest_after(header.prev, header.height, state)
        if header.checkpoint != expected:
            raise Rejected(
                Reason.BAD_CHECKPOINT,
                f"block {header.height} carries checkpoint {header.checkpoint[:16] or 'none'}"
                f", the state it starts from has {expected[:16]}",
            )

    def snapshot_path(self, height: int, parent: str) -> Path | None:
        """The snapshot file of the checkpoint at `height` on `parent`, if kept."""
        if self.folder is None:
            return None
        path = self.folder / snapshot_name(height, parent)
        return path if path.is_file() else None

    def retire(self, keep: set[str]) -> None:
        """Delete the snapshot files whose names are not in `keep`."""
        if self.folder is None:
            return
        for path in self.folder.glob(f"*{SNAPSHOT_SUFFIX}"):
            if path.name not in keep:
                with contextlib.suppress(OSError):
                    path.unlink()

    def files(self) -> list[str]:
        """The snapshot files kept, oldest checkpoint first."""
        if self.folder is None:
            return []
        return sorted(p.name for p in self.folder.glob(f"*{SNAPSHOT_SUFFIX}"))


@dataclass(frozen=True)
class CheckpointJob:
    """The checkpoint digest of the state committed after block `parent`, streamed from
    the ledger's SQLite file on a connection of its own inside one read transaction (WAL:
    the node's commits go on meanwhile), and its snapshot written to `path`. Touches no
    ledger memory: any thread may `run` it."""

    database: Path
    parent: str
    path: Path | None

    def run(self) -> str | None:
        """The digest; None when the committed head is no longer `parent` (the ledger
        moved on or reorganised first: the block then has its digest computed in line)."""
        db = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA query_only=1")
            db.execute("BEGIN")
            head = db.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()
            if head is None or head[0] != self.parent:
                return None

            def lines() -> Iterator[bytes]:
                return stored_lines(
                    db.execute("SELECT tbl, key, value FROM state ORDER BY tbl, key")
                )

            return digest_and_snapshot(self.path, lines)
        finally:
            db.close()


def digest_and_snapshot(path: Path | None, lines: Callable[[], Iterator[bytes]]) -> str:
    """The digest of `lines()`, written as the snapshot `path` too when it is not there
    yet; a snapshot the disk refuses is left out (the block is checked all the same)."""
    if path is not None and not path.exists():
        try:
            return write_lines(path, lines())
        except OSError as exc:
            log.warning("checkpoint snapshot %s not written: %s", path.name, exc)
    return lines_digest(lines())


def write_snapshot(path: Path, state: State) -> str:
    """Write `state`'s lines to `path` atomically and return their digest (the digest
    alone when the disk refuses the file)."""
    return digest_and_snapshot(path, lambda: state_lines(state))


def write_lines(path: Path, lines: Iterable[bytes]) -> str:
    """Write `lines` to `path` atomically (a temporary file of this thread's, fsynced,
    renamed: a kill at any instant leaves the whole file or none) and return their
    digest. Raises `OSError` when the disk refuses (no temporary file is left)."""
    digest = hashlib.sha256()
    temporary = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            for line in lines:
                digest.update(line)
                out.write(line)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return digest.hexdigest()
