"""Whether what a ledger database holds is what the node wrote: storage failures and damage.

A ledger stores, with every block of its best chain, a digest of the state after it: the
sum modulo 2^256 of the SHA-256 of each state row (table, key, stored value). A sum can
be kept up to date per block from the rows the block changed, without reading the rest
of the state. The store also keeps the finished rows' share of it (rows marked `cold`),
so a start reads and hashes only the rows not finished and adds that share, and the
finished rows are hashed against their share right after start
(`Ledger.check_after_start`). A changed digit in any row changes the sum. It guards
against damage and edits of the file, not against someone who can rewrite the file and
its digests alike: only a replay of the signed blocks (`ledger verify`) answers that.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from typing import Any

from .state import MISSING, JournalEntry

MODULUS = 1 << 256
# SQLite's primary result codes for a disk that cannot take more, and for a damaged file.
_FULL = {sqlite3.SQLITE_FULL}
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
REMEDY = (
    "restore the file from a backup, or move it aside and start the node again to "
    "re-sync the chain from its peers"
)


class StorageError(Exception):
    """A write the ledger's storage could not make: nothing of it was kept.

    `code` is `insufficient_storage` (the disk is full) or `storage_failed` (read-only,
    I/O error, locked); the caller may try again once the cause is gone."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DamagedStore(StorageError):
    """The database holds something the node did not write (damage or an edit).

    Raised at start (the node must not run on it) and when a damaged block is read."""

    def __init__(self, message: str) -> None:
        super().__init__("damaged_store", message)


def storage_error(exc: sqlite3.Error, doing: str, path: Any) -> StorageError:
    """The `StorageError` for an SQLite failure while `doing` something with `path`."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _DAMAGED:
        return DamagedStore(f"{path} is damaged ({exc}) while {doing}: {REMEDY}")
    if primary in _FULL or "full" in str(exc):
        return StorageError(
            "insufficient_storage", f"the disk holding {path} is full ({doing} failed)"
        )
    return StorageError("storage_failed", f"{path}: {doing} failed: {exc}")


def row_hash(table: str, key: str, encoded: str) -> int:
    """One state row's share of the state digest."""
    digest = hashlib.sha256(f"{table}\0{key}\0{encoded}".encode()).digest()
    return int.from_bytes(digest, "big")


def fold(rows: Iterable[tuple[str, str, str]]) -> int:
    """The state digest of stored rows (table, key, encoded value), in any order."""
    total = 0
    for table, key, encoded in rows:
        total += row_hash(table, key, encoded)
    return total % MODULUS


def changed(digest: int, entries: Iterable[JournalEntry], forward: bool) -> int:
    """`digest` after the rows of `entries` (first writes: the value each row had before)
    took the values they have now (`forward`) or went back to those before (not)."""
    before = after = 0
    for table, key, old in entries:
        now = table.rows.get(key, MISSING)
        if old is not MISSING:
            before += row_hash(table.name, key, table.pack(old))
        if now is not MISSING:
            after += row_hash(table.name, key, table.pack(now))
    delta = after - before if forward else before - after
    return (digest + delta) % MODULUS


def as_hex(digest: int) -> str:
    """The digest as stored: 64 hex digits."""
    return f"{digest:064x}"
