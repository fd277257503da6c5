"""What a building's settlement keeps across restarts: the book (balances, carries, who is
cut off, how far it is settled), each owner's monthly totals, and the latest periods.

Storage is bounded whatever the period: one row per owner and month (statements read
them), and the newest `RECENT_PER_OWNER` periods per owner (the API shows them). A
period's rows, its month totals and the book after it are written in one transaction, so
a statement always equals the book.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_controller.ledger import private_file
from edge_controller.metering import CommunityPeriod, SettlementBook

RECENT_PER_OWNER = 200
# The monthly figures: the energy split and the money, summed from each period's rows.
MONTH_FIELDS = (
    "import_wh",
    "export_wh",
    "p2p_in_wh",
    "p2p_out_wh",
    "shared_in_wh",
    "shared_out_wh",
    "grid_import_wh",
    "grid_export_wh",
    "movement",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS book (
    owner TEXT PRIMARY KEY, balance INTEGER, carry INTEGER NOT NULL, cut TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS months (
    owner TEXT NOT NULL, month TEXT NOT NULL, periods INTEGER NOT NULL,
    {", ".join(f"{f} INTEGER NOT NULL" for f in MONTH_FIELDS)},
    topups INTEGER NOT NULL, opening INTEGER,
    PRIMARY KEY (owner, month)
);
CREATE TABLE IF NOT EXISTS recent (
    owner TEXT NOT NULL, start_ms INTEGER NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (owner, start_ms)
);
"""


def month_of(ms: int) -> str:
    """The UTC month ("2026-12") an instant falls in."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m")


class BuildingStore:
    """The building's book and figures in one SQLite file, readable by its owner only."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_file(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def book(self) -> SettlementBook:
        """The book as last saved (empty at first start)."""
        balances: dict[str, int] = {}
        carries: dict[str, int] = {}
        cut: dict[str, tuple[str, ...]] = {}
        for owner, balance, carry, points in self._db.execute(
            "SELECT owner, balance, carry, cut FROM book"
        ):
            if balance is not None:
                balances[owner] = balance
            carries[owner] = carry
            if points is not None:
                cut[owner] = tuple(json.loads(points))
        row = self._db.execute("SELECT value FROM meta WHERE key = 'settled_until'").fetchone()
        return SettlementBook(balances, carries, cut, row[0] if row else None)

    def save(self, book: SettlementBook, period: CommunityPeriod | None = None) -> None:
        """Keep the book, with the period that led to it (its rows and month totals)."""
        with self._transaction():
            if period is not None:
                self._add_period(book, period)
            self._save_book(book)

    def top_up(self, book: SettlementBook, owner: str, amount: int, at_ms: int) -> None:
        """Keep a top-up of `owner` with the book after it."""
        with self._transaction():
            self._month_row(owner, month_of(at_ms), book)
            self._db.execute(
                "UPDATE months SET topups = topups + ? WHERE owner = ? AND month = ?",
                (amount, owner, month_of(at_ms)),
            )
            self._save_book(book)

    def month(self, owner: str, month: str) -> dict[str, Any] | None:
        """`owner`'s totals for `month` ("2026-12"), or None when nothing was settled."""
        cursor = self._db.execute(
            f"SELECT periods, {', '.join(MONTH_FIELDS)}, topups, opening FROM months "
            "WHERE owner = ? AND month = ?",
            (owner, month),
        )
        row = cursor.fetchone()
        if row is None:
            return None
        names = ("periods", *MONTH_FIELDS, "topups", "opening")
        return dict(zip(names, row, strict=True))

    def recent(self, owner: str, limit: int = 96) -> list[dict[str, Any]]:
        """`owner`'s newest periods, newest first."""
        rows = self._db.execute(
            "SELECT row FROM recent WHERE owner = ? ORDER BY start_ms DESC LIMIT ?",
            (owner, min(limit, RECENT_PER_OWNER)),
        )
        return [json.loads(r[0]) for r in rows]

    def totals(self, owner: str) -> Mapping[str, int]:
        """`owner`'s figures over every month kept."""
        row = self._db.execute(
            f"SELECT {', '.join(f'COALESCE(SUM({f}), 0)' for f in MONTH_FIELDS)} "
            "FROM months WHERE owner = ?",
            (owner,),
        ).fetchone()
        return dict(zip(MONTH_FIELDS, row, strict=True))

    # --- writing -------------------------------------------------------------------------

    def _transaction(self) -> _Commit:
        self._db.execute("BEGIN")
        return _Commit(self._db)

    def _month_row(self, owner: str, month: str, book: SettlementBook) -> None:
        # The opening balance is the balance before the month's first change.
        opening = self._db.execute("SELECT balance FROM book WHERE owner = ?", (owner,)).fetchone()
        self._db.execute(
            f"INSERT OR IGNORE INTO months (owner, month, periods, {', '.join(MONTH_FIELDS)}, "
            f"topups, opening) VALUES (?, ?, 0, {', '.join('0' for _ in MONTH_FIELDS)}, 0, ?)",
            (owner, month, opening[0] if opening else book.balances.get(owner)),
        )

    def _add_period(self, book: SettlementBook, period: CommunityPeriod) -> None:
        month = month_of(period.period.start_ms)
        for row in period.owners:
            self._month_row(row.owner, month, book)
            self._db.execute(
                "UPDATE months SET periods = periods + 1, "
                + ", ".join(f"{f} = {f} + ?" for f in MONTH_FIELDS)
                + " WHERE owner = ? AND month = ?",
                (*(getattr(row, f) for f in MONTH_FIELDS), row.owner, month),
            )
            view = {"start": period.period.start_ms, "end": period.period.end_ms, **row.as_dict()}
            self._db.execute(
                "INSERT OR REPLACE INTO recent (owner, start_ms, row) VALUES (?, ?, ?)",
                (row.owner, period.period.start_ms, json.dumps(view)),
            )
            self._db.execute(
                "DELETE FROM recent WHERE owner = ? AND start_ms NOT IN (SELECT start_ms FROM "
                "recent WHERE owner = ? ORDER BY start_ms DESC LIMIT ?)",
                (row.owner, row.owner, RECENT_PER_OWNER),
            )

    def _save_book(self, book: SettlementBook) -> None:
        owners = set(book.balances) | set(book.carries)
        for owner in owners:
            cut = book.cut.get(owner)
            self._db.execute(
                "INSERT OR REPLACE INTO book (owner, balance, carry, cut) VALUES (?, ?, ?, ?)",
                (
                    owner,
                    book.balances.get(owner),
                    book.carries.get(owner, 0),
                    None if cut is None else json.dumps(list(cut)),
                ),
            )
        if book.settled_until_ms is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('settled_until', ?)",
                (book.settled_until_ms,),
            )


class _Commit:
    """Commits on a clean exit, rolls back when the block raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *rest: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
