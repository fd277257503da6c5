"""The trades a home's statements and monitor list: every trade of a period, wherever it is.

A node holds in memory only the trades still to be delivered or settled (and those settled
within the last hour of chain time, `FINISHED_HOT_MS`); the others are rows in SQLite, and
a trade the rules have forgotten (closed business removed from the state) is kept in the
home's own trade history (`trade_history`, local: never part of a digest, a checkpoint or
a snapshot), for the history the home keeps (`prune.py`). These queries read all three:

- on SQLite, by the store's indexes over the stored trade rows (`SqliteStore.trade_rows`),
  so a statement decodes the owner's trades of its month, not the community's history; a
  trade in memory is taken from there (no decoding);
- in memory (simulations and tests), by a scan of the state and the forgotten trades.
"""

from __future__ import annotations

from collections.abc import Iterator

from .chain import Ledger
from .state import Trade
from .store import MemoryStore, SqliteStore

# The widest window a query can ask for: every trade there is.
EVER = (-(1 << 62), 1 << 62)


def account_trades(
    ledger: Ledger, account: str, start: int = EVER[0], end: int = EVER[1]
) -> list[Trade]:
    """The trades with `account` as buyer or seller whose window starts in [`start`,
    `end`): in the state (in memory or on disk) or forgotten by it and kept in the home's
    trade history; each once, in no particular order."""
    return list(_trades(ledger, start, end, account))


def trades_starting(ledger: Ledger, start: int, end: int) -> Iterator[Trade]:
    """Every trade of the community whose window starts in [`start`, `end`), as
    `account_trades` finds them, one at a time."""
    return _trades(ledger, start, end, None)


def _trades(ledger: Ledger, start: int, end: int, account: str | None) -> Iterator[Trade]:
    table = ledger.state.trades
    store = ledger.store
    if isinstance(store, SqliteStore):
        rows = table.rows
        for key, stored in store.trade_rows(start, end, account):
            # The rows in memory are the state's own (already decoded, and never older).
            trade = dict.get(rows, key)  # type: ignore[call-overload]
            yield trade if trade is not None else table.unpack(key, stored)
        return
    forgotten = store.trade_history if isinstance(store, MemoryStore) else {}
    for trade in table.values_all():
        if _matches(trade, start, end, account):
            yield trade
    for key, trade in list(forgotten.items()):
        if key not in table.rows and _matches(trade, start, end, account):
            yield trade


def _matches(trade: Trade, start: int, end: int, account: str | None) -> bool:
    return start <= trade.start < end and account in (None, trade.buyer, trade.seller)
