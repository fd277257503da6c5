"""Rules 4 on: closed business is forgotten, so the state holds what is open and recent.

Without this rule every settled trade, closed offer, expired request and meter reading
stays in the state for ever: a year of a 50-home street is tens of gigabytes on every home,
and every checkpoint hashes all of it. From rules 4 on, a row leaves the state once genesis
`consensus.forget_after_ms` of chain time has passed since it closed (`state.closed_at`):

- a trade from the end of its window, settled: one nobody settled by then is settled by
  the ledger, for what its meter delivered to it (`rules.settle_overdue`), so no payment
  waits on readings that are gone;
- an offer (whatever its status) from the last of its expiry, window end and auction close;
- a request from the later of its expiry and window end;
- a meter reading a week after its period (the longest window a trade may have: a
  dispute reads the buyer's meter back that far);
- a counter-offer (acceptance) with its offer.

A trade or reading the allocation of its resource's meter still needs stays: the sweep
first trims the resource's allocation list (`resource_trades`) as a new trade would
(`queries.allocation_horizon`), and keeps the trades still on it and the readings after its
horizon. So allocation gives every open trade what it gave before: no energy is paid twice.
What is forgotten closed long ago: a record that names it is refused as one naming an
unknown trade, offer, request or counter-offer. The blocks that made it are history
(`prune.py`), and a home keeps the forgotten trades for its statements outside the state
(`trade_history.py`).

The sweep runs at the start of every block, before its records, on every node alike.
Which rows it forgets is a function of the state alone; how a node finds them is not: a
store indexes each row's close time (`SqliteStore.closed_rows`) and the state notes the
rows written since its last commit (`State.index_closing`), so a sweep costs what it
forgets, not the size of the state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .genesis import Genesis
from .queries import allocation_horizon
from .state import Commitments, State, Table, Trade


def forget_closed(
    state: State, genesis: Genesis, now: int, settle: Callable[[State, Trade], None]
) -> int:
    """At the start of a block (`begin_block`), rules 4 on: settle the trades overdue
    (`settle`), then delete the rows that closed `forget_after_ms` or more before `now` and
    nothing needs; returns how many went."""
    c = genesis.consensus
    rules, before = c.rules, now - c.forget_after_ms
    candidates = sorted(state.closed_candidates(before))
    for name, key in candidates:
        if name == "trades":
            trade = state.trades.rows.get(key)
            if trade is not None and trade.status != "settled" and trade.end <= before:
                settle(state, trade)
    horizons: dict[str, int] = {}
    chosen: list[tuple[Table[Any], str]] = []
    # Decided on the state before any of them goes, so the order cannot change the outcome.
    for name, key in candidates:
        table = state.table(name)
        row = table.rows.get(key)
        if row is None:
            continue
        closed = state.closed_time(name, row)
        if closed is None or closed > before:
            continue
        if name == "trades":
            _trimmed(state, row.resource, now, rules, horizons)
            if row.status != "settled" or _listed(state, row.resource, key):
                continue
        elif name == "readings":
            resource = key.rpartition("#")[0]
            if row.end > _trimmed(state, resource, now, rules, horizons):
                continue
        chosen.append((table, key))
    for table, key in chosen:
        table.delete(key)
    return len(chosen)


def _trimmed(state: State, resource: str, now: int, rules: int, seen: dict[str, int]) -> int:
    """The allocation horizon of `resource`, its list trimmed to it (once per sweep)."""
    horizon = seen.get(resource)
    if horizon is not None:
        return horizon
    index = state.resource_trades.get(resource)
    trades = [state.trades.rows[t] for t in index.trades] if index else []
    horizon = seen[resource] = allocation_horizon(state, resource, trades, now, rules)
    kept = tuple(t.id for t in trades if t.end > horizon)
    if index is not None and kept != index.trades:
        if kept:
            state.resource_trades.put(resource, Commitments(kept))
        else:
            state.resource_trades.delete(resource)
    return horizon


def _listed(state: State, resource: str, trade: str) -> bool:
    index = state.resource_trades.get(resource)
    return index is not None and trade in index.trades
