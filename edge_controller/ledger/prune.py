"""Bounded disk: a home keeps headers forever, the state, and block bodies for a history.

`prune_history` drops the bodies, undo data and record-id index rows of the oldest blocks
of the best chain, keeping their headers. (A replay of a record of a pruned block is still
refused by its signer's sequence: `stale_sequence` where an archive node says `duplicate`.)
A body stays while anything may still need it:

- **reorganisation and the start-up check**: every block above the final height, and the
  last `CHECK_BLOCKS` + 1 blocks (re-applied at each start);
- **statements**: every block whose time is within `history_ms` of the head's time (the
  owner's statements, 13 months by default);
- **settlement and disputes**: every block from the creation of the oldest trade not yet
  settled, and of the oldest offer still open. The rules decide settlement, disputes and
  ratings from the state (trades, meter readings), never from old bodies; these blocks
  are kept so a statement of a trade still running can show the records that made it.

The settled trades the rules forgot, kept in the home's trade history for its statements
(`trade_history.py`), go once their window ended before the kept history (by the end of
the trade's window: a statement lists a trade by its start, never later than its end).

Only a prefix of the chain is pruned (heights `base + 1` up to the cut), so a pruned node
is a node whose chain starts, as far as bodies go, at `base`. A node asked for a pruned
block answers `pruned` (`sync.py`) and the asker asks another peer; an `archive: true`
node never prunes. Each batch is one transaction: `kill -9` leaves whole batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .chain import CHECK_BLOCKS, Ledger
from .store import SqliteStore

DAY_MS = 86_400_000
# A month of statements: the mean Gregorian month, so 13 months is 395.7 days.
MONTH_MS = 2_629_746_000
DEFAULT_HISTORY_MONTHS = 13
# Blocks pruned per transaction: short enough that a block commit never waits long.
PRUNE_BATCH = 500
# How often a home looks for bodies to prune.
PRUNE_EVERY_MS = 600_000


@dataclass(frozen=True)
class HistorySettings:
    """`ledger:` in edge.yaml: how much of the chain a home keeps and how it joins.

    `history_months`: block bodies kept (the owner's statements; headers and the state are
    always kept). `archive`: keep every body and serve history to peers. `join`: how a home
    with an empty ledger starts: from a peer's snapshot at the latest final checkpoint
    (`snapshot`, falling back to a replay when no peer has one) or by replaying every
    block from genesis (`replay`)."""

    history_months: int = DEFAULT_HISTORY_MONTHS
    archive: bool = False
    join: Literal["snapshot", "replay"] = "snapshot"

    @property
    def history_ms(self) -> int:
        return self.history_months * MONTH_MS


def needed_from(ledger: Ledger, history_ms: int) -> int:
    """The lowest height whose body must stay: every block from it on is kept."""
    head = ledger.head
    keep_time = head.time - history_ms
    state = ledger.state
    for trade in state.trades.rows.values():
        if trade.status != "settled":
            keep_time = min(keep_time, trade.time)
    for offer in state.offers.rows.values():
        if offer.status == "open":
            keep_time = min(keep_time, offer.time)
    # Never above the final height, nor within the blocks checked again at start.
    limit = min(ledger.final_height, ledger.height - CHECK_BLOCKS - 1) + 1
    low, high = ledger.base_height + 1, max(limit, ledger.base_height + 1)
    # Block times never decrease along a chain: the first block at or after `keep_time`.
    while low < high:
        middle = (low + high) // 2
        if ledger.index[ledger.main[middle]].time >= keep_time:
            high = middle
        else:
            low = middle + 1
    return low


def prune_history(
    ledger: Ledger, history_ms: int, batch: int = PRUNE_BATCH, most: int | None = None
) -> int:
    """Prune the bodies no longer needed (see the module), a batch per transaction, at
    most `most` batches (None: all), and the forgotten trades past the history; returns
    how many blocks were pruned. Raises `StorageError` when the disk fails (the batches
    written stay pruned)."""
    store = ledger.store
    if not isinstance(store, SqliteStore):
        return 0
    store.prune_trade_history(ledger.head.time - history_ms)
    keep_from = needed_from(ledger, history_ms)
    pruned = batches = 0
    while ledger.base_height + 1 < keep_from and (most is None or batches < most):
        batches += 1
        first = ledger.base_height + 1
        last = min(keep_from - 1, first + batch - 1)
        hashes = ledger.main[first : last + 1]
        store.prune_bodies(hashes, last)
        ledger.base_height = last
        pruned += len(hashes)
    return pruned
