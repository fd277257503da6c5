"""The trades of an account or a period, wherever the ledger keeps them: in memory, on disk
only (settled an hour of chain time ago), or forgotten by the state and kept in the home's
own trade history; found by index on SQLite; each once through a reorganisation; pruned
with the history the home keeps, never on an archive node."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from edge_controller.ledger import (
    Ledger,
    SqliteStore,
    Trade,
    account_trades,
    prune_history,
    state_digest,
    trades_starting,
)
from edge_controller.ledger.state import FINISHED_HOT_MS, MISSING, State
from edge_controller.ledger.store import TRADE_INDEXES, Commit, forgotten_trades
from edge_controller.ledger.trade_history import EVER

from .support import HOUR, START
from .trade_support import DAY, Street, in_memory

MONTH = 31 * DAY


def ids(trades: list[Trade]) -> list[str]:
    return sorted(t.id for t in trades)


def history_rows(ledger: Ledger) -> list[str]:
    store = ledger.store
    assert isinstance(store, SqliteStore)
    return [key for (key,) in store.db.execute("SELECT key FROM trade_history ORDER BY key")]


def test_the_indexes_read_the_fields_where_a_stored_trade_holds_them() -> None:
    table = State().trades
    trade = Trade("t", "o", "seller", "buyer", "r", "energy", 1, 2, 3, 4, 5, 6, 7)
    stored = json.loads(table.pack(trade))
    for field in ("buyer", "seller", "start"):
        assert f"json_extract(value, '$[{stored.index(getattr(trade, field))}]')" in TRADE_INDEXES


def test_trades_on_disk_only_are_found_by_account_and_start_as_in_memory(
    tmp_path: Path,
) -> None:
    on_disk, memory = Street(tmp_path), Street(None)
    for street in (on_disk, memory):
        street.january()
        street.later(FINISHED_HOT_MS + DAY)
    ledger = on_disk.ledger
    assert not any(in_memory(ledger, t.id) for t in account_trades(ledger, on_disk.bob.account))
    for account in (on_disk.alice, on_disk.bob, on_disk.carol):
        for window in (EVER, (START, START + 4 * 3_600_000), (START + DAY, START + MONTH)):
            found = account_trades(ledger, account.account, *window)
            assert ids(found) == ids(account_trades(memory.ledger, account.account, *window))
            for trade in found:
                assert trade == memory.ledger.state.trades.rows[trade.id]
    assert len(account_trades(ledger, on_disk.bob.account)) == 3
    assert len(list(trades_starting(ledger, START, START + DAY))) == 4
    # What a statement reads of the store: the account's rows, not the community's.
    store = ledger.store
    assert isinstance(store, SqliteStore)
    assert len(list(store.trade_rows(*EVER, account=on_disk.carol.account))) == 1
    ledger.close()


def test_only_a_trade_a_connected_block_removed_is_forgotten() -> None:
    state = State()
    table = state.trades
    settled = Trade("t", "o", "s", "b", "r", "energy", 1, 2, 3, 4, 5, 6, 7, status="settled")
    # Gone because the block that made it was disconnected: not kept.
    undone = Commit(head="", journal=[(table, "t", settled)])
    assert forgotten_trades(undone) == []
    # Removed by a connected block: kept, with the value it had.
    table.rows["t"] = settled
    table.delete("t")
    entries = list(state.journal)
    assert forgotten_trades(Commit(head="", connected=[(None, entries)], journal=entries)) == [  # type: ignore[list-item]
        (table, "t", settled)
    ]
    # Removed before it settled: not a statement's (no rule forgets running business).
    state.journal.clear()
    table.rows["t"] = Trade("t", "o", "s", "b", "r", "energy", 1, 2, 3, 4, 5, 6, 7)
    table.delete("t")
    entries = list(state.journal)
    assert forgotten_trades(Commit(head="", connected=[(None, entries)], journal=entries)) == []  # type: ignore[list-item]
    assert table.rows.get("t", MISSING) is MISSING


def test_a_forgotten_trade_stays_listed_once_through_a_reorganisation_and_a_restart(
    tmp_path: Path,
) -> None:
    street = Street(tmp_path, sealers=3, forget_after_ms=2 * DAY)
    bob = street.bob.account
    trades = street.january()  # Bob's first two end by 4 h after START, the others later
    street.later(FINISHED_HOT_MS + DAY)
    ledger = street.ledger
    before = ids(account_trades(ledger, bob))
    everyone = ids(list(trades_starting(ledger, START, START + DAY)))
    # A rival follows the same chain up to here, then seals in turn (heavier).
    rival = street.c.node()
    for block in street.blocks:
        assert rival.add_block(block).status == "connected"
    fork_time = street.c.now
    street.c.now = START + 2 * DAY + 4 * HOUR - 1_000
    street.seal(in_turn=False)  # two days after they ended: the rule forgets those two
    assert not any(t in ledger.state.trades.rows for t in trades[:2])
    assert history_rows(ledger) == sorted(trades[:2])
    assert ids(account_trades(ledger, bob)) == before
    street.c.now = fork_time + 1_000
    branch = [rival.build_block(k, now=street.c.now) for k in street.c.sealers if rival.in_turn(k)]
    assert branch[0] is not None and rival.add_block(branch[0]).status == "connected"
    # The reorganisation undoes the forgetting: the trades are the state's again, listed once.
    assert ledger.add_block(branch[0]).status == "connected"
    assert ledger.head.hash == rival.head.hash
    assert all(ledger.state.trades.rows[t].status == "settled" for t in trades)
    assert history_rows(ledger) == []
    assert ids(account_trades(ledger, bob)) == before
    assert state_digest(ledger.state) == state_digest(rival.state)
    # Forgotten on the winning branch too, all of them, and still listed after a restart.
    street.c.now = START + 3 * DAY
    street.seal()
    assert history_rows(ledger) == everyone
    ledger.close()
    again = street.open()
    assert ids(account_trades(again, bob)) == before
    assert ids(list(trades_starting(again, START, START + DAY))) == everyone
    again.close()


def test_forgotten_trades_go_with_the_history_the_home_keeps_and_stay_on_an_archive_node(
    tmp_path: Path,
) -> None:
    street = Street(tmp_path)  # forgets a week after a trade's end
    bob, carol = street.bob.account, street.carol.account
    trades = street.january()
    january = ids(list(trades_starting(street.ledger, START, START + DAY)))
    street.later(2 * MONTH)
    ledger = street.ledger
    assert not any(t in ledger.state.trades.rows for t in january)
    assert history_rows(ledger) == january
    # Carol trades again: a trade the state holds.
    start = street.c.now + HOUR
    street.settle(street.trade(street.carol, start), start, 4_000)
    # An archive node never prunes: its statements keep every trade.
    assert ids(account_trades(ledger, bob)) == sorted(trades)
    # Kept while within the history (by the end of each trade's window)...
    prune_history(ledger, 3 * MONTH)
    assert history_rows(ledger) == january
    # ...gone once past it; the trades the state still holds stay listed.
    prune_history(ledger, MONTH)
    assert history_rows(ledger) == []
    assert account_trades(ledger, bob) == []
    assert len(account_trades(ledger, carol)) == 1
    ledger.close()


def test_a_ledger_written_before_the_trade_history_gets_it_on_open(tmp_path: Path) -> None:
    street = Street(tmp_path)
    trades = street.january()
    street.later(FINISHED_HOT_MS + DAY)
    street.ledger.close()
    assert street.path is not None
    db = sqlite3.connect(street.path)
    for index in ("trades_by_buyer", "trades_by_seller", "trades_by_start"):
        db.execute(f"DROP INDEX {index}")
    db.execute("DROP TABLE trade_history")
    db.commit()
    db.close()
    ledger = street.open()
    assert ids(account_trades(ledger, street.bob.account)) == sorted(trades)
    assert history_rows(ledger) == []
    ledger.close()
