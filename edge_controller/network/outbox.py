"""The outbox: every message the node creates is on disk before anyone is told it is sent.

A message is written (and fsynced: WAL with ``synchronous=FULL``) before ``publish``
returns, published when the broker is reachable, and deleted only after the broker's
PUBACK. A broker outage or a ``kill -9`` therefore loses nothing acknowledged; at worst a
message is sent twice, which receivers absorb because its id is the hash of its body.
That is also why a deletion after a PUBACK is not fsynced on its own.

The SQLite calls block, so the async methods run them in a worker thread; one lock
serialises them because a single connection is shared between those threads.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    message_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    UNIQUE (topic, message_id)
)
"""


@dataclass(frozen=True)
class OutboxEntry:
    """One message waiting for the broker's acknowledgement, in creation order (``seq``)."""

    seq: int
    topic: str
    message_id: str
    payload: bytes


class Outbox:
    """A durable FIFO of messages to publish, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    async def open(self) -> int:
        """Open (or create) the file; returns how many messages are still waiting."""
        return await asyncio.to_thread(self._open)

    async def add(self, topic: str, message_id: str, payload: bytes) -> int | None:
        """Store a message durably; its place in the queue, or None when the same message
        is already waiting."""
        return await asyncio.to_thread(self._add, topic, message_id, payload)

    async def pending(self, limit: int) -> list[OutboxEntry]:
        """The oldest ``limit`` waiting messages."""
        return await asyncio.to_thread(self._pending, limit)

    async def remove(self, seqs: Sequence[int]) -> None:
        """Forget messages the broker acknowledged (not fsynced: lost, they go out again)."""
        if seqs:
            await asyncio.to_thread(self._remove, list(seqs), "NORMAL")

    async def withdraw(self, seq: int) -> None:
        """Take back a message that must never go out: deleted durably."""
        await asyncio.to_thread(self._remove, [seq], "FULL")

    async def count(self) -> int:
        """How many messages are waiting."""
        return await asyncio.to_thread(self._count)

    async def close(self) -> None:
        """Close the file; waiting messages stay in it for the next start."""
        await asyncio.to_thread(self._close)

    def _open(self) -> int:
        with self._lock:
            if self._db is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Autocommit mode: each statement below is its own durable transaction.
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute(_SCHEMA)
                self._db = db
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the outbox is not open")
        return self._db

    def _add(self, topic: str, message_id: str, payload: bytes) -> int | None:
        with self._lock:
            cursor = self._connection().execute(
                "INSERT OR IGNORE INTO outbox (topic, message_id, payload, created_ms)"
                " VALUES (?, ?, ?, ?)",
                (topic, message_id, payload, time.time_ns() // 1_000_000),
            )
            return cursor.lastrowid if cursor.rowcount == 1 else None

    def _pending(self, limit: int) -> list[OutboxEntry]:
        with self._lock:
            rows = self._connection().execute(
                "SELECT seq, topic, message_id, payload FROM outbox ORDER BY seq LIMIT ?",
                (limit,),
            )
            return [OutboxEntry(int(s), str(t), str(m), bytes(p)) for s, t, m, p in rows]

    def _remove(self, seqs: list[int], synchronous: str) -> None:
        with self._lock:
            db = self._connection()
            # One statement, so one transaction for the whole batch. NORMAL: no fsync of
            # its own (in WAL mode the next add's fsync, or a checkpoint's, covers it).
            placeholders = ",".join("?" * len(seqs))
            try:
                db.execute(f"PRAGMA synchronous={synchronous}")
                db.execute(f"DELETE FROM outbox WHERE seq IN ({placeholders})", seqs)
            except sqlite3.OperationalError as exc:
                if synchronous == "FULL":
                    raise
                # A full disk: the messages stay and go out again (receivers drop repeats).
                log.warning("outbox: %d sent messages not forgotten: %s", len(seqs), exc)
            finally:
                db.execute("PRAGMA synchronous=FULL")

    def _count(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT count(*) FROM outbox").fetchone()[0])

    def _close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
