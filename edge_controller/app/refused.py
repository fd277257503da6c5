"""The home's own records the ledger refused after the API acknowledged them.

An action returns once its record is in the local ledger and the outbox; it can still fail
later (another home bought the offer first, a block made it stale). Each such record is
kept here, with its reason and when it was refused, so the owner can find out what was
lost (`GET records/refused`) even after a restart. The list is bounded: the newest
`limit` stay.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from edge_controller.ledger import private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS refused (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    time INTEGER NOT NULL
)
"""


class RefusedRecords:
    """A bounded, persisted list of our records refused after acknowledgement."""

    def __init__(self, path: Path, limit: int = 1_000) -> None:
        self.limit = limit
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # It names what the owner did and lost: its owner alone reads it.
        private_file(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A process restart keeps every commit; only a power cut may lose the last ones.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def add(
        self, record_id: str, kind: str, seq: int, code: str, message: str, time_ms: int
    ) -> None:
        """Keep one refused record (once: a record refused again keeps its first entry)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO refused (id, kind, seq, code, message, time)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (record_id, kind, seq, code, message, time_ms),
        )
        if cursor.rowcount == 1:
            self._db.execute(
                "DELETE FROM refused WHERE n <= (SELECT max(n) FROM refused) - ?", (self.limit,)
            )

    def count(self) -> int:
        """How many refused records are kept."""
        return int(self._db.execute("SELECT count(*) FROM refused").fetchone()[0])

    def list(self, since: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest refused records first (at most `limit`), refused at or after `since`."""
        rows = self._db.execute(
            "SELECT id, kind, seq, code, message, time FROM refused WHERE time >= ?"
            " ORDER BY n DESC LIMIT ?",
            (since or 0, limit),
        )
        return [
            {"id": i, "kind": k, "seq": s, "code": c, "message": m, "time": t}
            for i, k, s, c, m, t in rows
        ]

    def close(self) -> None:
        """Close the file; the list stays in it for the next start."""
        self._db.close()
