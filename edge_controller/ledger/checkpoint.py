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
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .block import Block
from .errors import Reason, Rejected
from .genesis import THIRD_RULES, Genesis
from .state import State

log = logging.getLogger(__name__)

_LINE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
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


def state_digest(state: State) -> str:
    """The checkpoint digest of `state` (hex SHA-256 of its lines)."""
    digest = hashlib.sha256()
    for line in state_lines(state):
        digest.update(line)
    return digest.hexdigest()


def snapshot_name(height: int, parent: str) -> str:
    """The file of the snapshot a checkpoint at `height` (on block `parent`) names."""
    return f"{height:012d}-{parent}{SNAPSHOT_SUFFIX}"


class Checkpoints:
    """A ledger's checkpoints: computes the digest a block at a checkpoint height must
    carry and, given a folder, keeps the state snapshot of each checkpoint there."""

    def __init__(self, genesis: Genesis, folder: Path | None = None) -> None:
        self.genesis = genesis
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
        path = None if self.folder is None else self.folder / snapshot_name(height, parent)
        if path is None or path.exists():
            digest = state_digest(state)
        else:
            digest = write_snapshot(path, state)
        if len(self._digests) >= _CACHED:
            del self._digests[next(iter(self._digests))]
        self._digests[parent] = digest
        return digest

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


def write_snapshot(path: Path, state: State) -> str:
    """Write `state`'s lines to `path` atomically (a temporary file, fsynced, renamed: a
    kill at any instant leaves the whole file or none) and return their digest."""
    digest = hashlib.sha256()
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            for line in state_lines(state):
                digest.update(line)
                out.write(line)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        # A snapshot is a convenience for new homes: the block is checked all the same.
        log.warning("checkpoint snapshot %s not written: %s", path.name, exc)
        temporary.unlink(missing_ok=True)
        return state_digest(state)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return digest.hexdigest()
