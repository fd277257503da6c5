"""SQLite storage of USB charging: which phone is bound to which wallet, every session
and each port's meter cursor.

WAL with `synchronous=FULL`: a row is on disk when a call returns, so a kill -9 loses
nothing the API acknowledged, and a restart finds sessions left open to end and settle.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from edge_controller.ledger import private_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (
    phone TEXT PRIMARY KEY,
    wallet TEXT NOT NULL,
    vendor_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    serial TEXT,
    manufacturer TEXT,
    product TEXT,
    bound_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    port INTEGER NOT NULL,
    resource TEXT NOT NULL,
    phone TEXT NOT NULL,
    wallet TEXT NOT NULL,
    offer TEXT,
    trade TEXT,
    state TEXT NOT NULL,
    bought_mwh INTEGER NOT NULL,
    delivered_mwh INTEGER NOT NULL,
    meter_start_mwh INTEGER,
    counter_start_wh INTEGER NOT NULL,
    price INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    by_amount INTEGER NOT NULL,
    paid INTEGER,
    refunded INTEGER,
    started INTEGER NOT NULL,
    ended INTEGER,
    reason TEXT,
    error_code TEXT,
    error_message TEXT,
    settled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions (started);
CREATE TABLE IF NOT EXISTS ports (
    port INTEGER PRIMARY KEY,
    enabled INTEGER NOT NULL DEFAULT 1,
    counter_wh INTEGER NOT NULL DEFAULT 0,
    cursor_ms INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True, slots=True)
class Binding:
    """A phone bound to a wallet whose key this edge controller keeps."""

    phone: str
    wallet: str
    vendor_id: int
    product_id: int
    serial: str | None
    manufacturer: str | None
    product: str | None
    bound_at: int


@dataclass(slots=True)
class SessionRow:
    """One charging session as stored; the port it runs on holds it while it charges."""

    id: str
    port: int
    resource: str
    phone: str
    wallet: str
    state: str
    bought_mwh: int
    price: int
    cost: int
    by_amount: bool
    started: int
    offer: str | None = None
    trade: str | None = None
    delivered_mwh: int = 0
    meter_start_mwh: int | None = None
    counter_start_wh: int = 0
    paid: int | None = None
    refunded: int | None = None
    ended: int | None = None
    reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    settled: bool = False

    @property
    def open(self) -> bool:
        """Still charging or still to be ended (port off, records to sign)."""
        return self.state in ("starting", "charging")


@dataclass(frozen=True, slots=True)
class PortCursor:
    """What has been signed for a port's resource: its counter (Wh) up to `cursor_ms`."""

    counter_wh: int
    cursor_ms: int


_SESSION_COLUMNS = [f.name for f in fields(SessionRow)]


class UsbStore:
    """Bindings, sessions and port settings in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # It links phones' serial numbers to wallets: its owner alone reads it.
        private_file(path)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # --- bindings -------------------------------------------------------------------------

    def bind(self, binding: Binding) -> None:
        with self._lock:
            self.db.execute(
                "INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    binding.phone,
                    binding.wallet,
                    binding.vendor_id,
                    binding.product_id,
                    binding.serial,
                    binding.manufacturer,
                    binding.product,
                    binding.bound_at,
                ),
            )

    def binding(self, phone: str) -> Binding | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM bindings WHERE phone = ?", (phone,)).fetchone()
        return Binding(*row) if row else None

    def wallets(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self.db.execute("SELECT wallet FROM bindings")}

    # --- sessions -------------------------------------------------------------------------

    def save_session(self, row: SessionRow) -> None:
        values = asdict(row)
        values["by_amount"] = int(row.by_amount)
        values["settled"] = int(row.settled)
        names = ", ".join(_SESSION_COLUMNS)
        marks = ", ".join(f":{c}" for c in _SESSION_COLUMNS)
        with self._lock:
            self.db.execute(f"INSERT OR REPLACE INTO sessions ({names}) VALUES ({marks})", values)

    def update_delivered(self, session_id: str, delivered_mwh: int) -> None:
        """The once-a-second write while charging: only the delivered energy changes."""
        with self._lock:
            self.db.execute(
                "UPDATE sessions SET delivered_mwh = ? WHERE id = ?", (delivered_mwh, session_id)
            )

    def delete_session(self, session_id: str) -> None:
        with self._lock:
            self.db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def _rows(self, where: str, args: tuple[object, ...] = ()) -> list[SessionRow]:
        names = ", ".join(_SESSION_COLUMNS)
        with self._lock:
            rows = self.db.execute(f"SELECT {names} FROM sessions {where}", args).fetchall()
        result = []
        for row in rows:
            values = dict(zip(_SESSION_COLUMNS, row, strict=True))
            values["by_amount"] = bool(values["by_amount"])
            values["settled"] = bool(values["settled"])
            result.append(SessionRow(**values))
        return result

    def session(self, session_id: str) -> SessionRow | None:
        rows = self._rows("WHERE id = ?", (session_id,))
        return rows[0] if rows else None

    def open_sessions(self) -> list[SessionRow]:
        """Sessions a crash or restart left starting or charging."""
        return self._rows("WHERE state IN ('starting', 'charging') ORDER BY started")

    def unsettled_sessions(self) -> list[SessionRow]:
        """Ended sessions whose settlement is not yet seen in a block."""
        return self._rows(
            "WHERE state IN ('ended', 'failed') AND settled = 0 AND trade IS NOT NULL"
        )

    def recent_sessions(self, limit: int = 20) -> list[SessionRow]:
        return self._rows("ORDER BY started DESC, rowid DESC LIMIT ?", (limit,))

    # --- ports ----------------------------------------------------------------------------

    def port_enabled(self, port: int) -> bool:
        with self._lock:
            row = self.db.execute("SELECT enabled FROM ports WHERE port = ?", (port,)).fetchone()
        return bool(row[0]) if row else True

    def set_port_enabled(self, port: int, enabled: bool) -> None:
        with self._lock:
            self.db.execute(
                "INSERT INTO ports (port, enabled) VALUES (?, ?)"
                " ON CONFLICT (port) DO UPDATE SET enabled = excluded.enabled",
                (port, int(enabled)),
            )

    def cursor(self, port: int) -> PortCursor | None:
        with self._lock:
            row = self.db.execute(
                "SELECT counter_wh, cursor_ms FROM ports WHERE port = ?", (port,)
            ).fetchone()
        return PortCursor(row[0], row[1]) if row and row[1] else None

    def set_cursor(self, port: int, cursor: PortCursor) -> None:
        with self._lock:
            self.db.execute(
                "INSERT INTO ports (port, counter_wh, cursor_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (port) DO UPDATE SET counter_wh = excluded.counter_wh,"
                " cursor_ms = excluded.cursor_ms",
                (port, cursor.counter_wh, cursor.cursor_ms),
            )
