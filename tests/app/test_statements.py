"""A home's statements and its market monitor read every trade of the period, not only the
ones still in memory: on a node, settled trades leave memory an hour of chain time after
they settle (`FINISHED_HOT_MS`), and a month later its statement must still list them."""

from __future__ import annotations

from pathlib import Path

from edge_controller.app.monitor import monitor
from edge_controller.app.statements import statement
from edge_controller.ledger import Ledger
from edge_controller.ledger.state import FINISHED_HOT_MS
from tests.ledger.support import HOUR
from tests.ledger.trade_support import DAY, FEBRUARY, INITIAL, Street, in_memory


def test_a_statement_lists_the_trades_settled_long_ago_on_a_node(tmp_path: Path) -> None:
    street = Street(tmp_path)
    bob_trades = street.january()
    street.later(FINISHED_HOT_MS + DAY)
    # Bob's open February trade is in February's statement, not in January's.
    street.later(FEBRUARY - street.c.now - HOUR)
    february = street.trade(street.bob, FEBRUARY + HOUR)
    ledger = street.ledger
    # What this test is about: the January trades are on disk only now.
    assert not any(in_memory(ledger, t) for t in bob_trades)
    bob = ledger.state.account(street.bob.account)
    for reading in (ledger, Ledger.open(tmp_path / "ledger.sqlite3", street.c.genesis)):
        data = statement(reading, "SUN", None, "", street.bob.account, "2027-01")
        p2p = data["p2p"]
        assert [t["id"] for t in p2p["trades"]] == bob_trades
        assert p2p["trade_count"] == 3 and p2p["open_trades"] == 0
        # To the Wh and the milli-unit of the ledger's own account.
        assert p2p["bought_wh"] == bob.energy_in_wh == 11_000
        assert p2p["bought_paid"] == 3_300 and p2p["refunded"] == 300
        assert INITIAL - bob.balance == 3_300 + 1_200  # February's cost is held in escrow
        assert bob.escrow == 1_200
        february_part = statement(reading, "SUN", None, "", street.bob.account, "2027-02")["p2p"]
        assert [t["id"] for t in february_part["trades"]] == [february]
        assert (february_part["open_trades"], february_part["open_value"]) == (1, 1_200)
        seller = statement(reading, "SUN", None, "", street.alice.account, "2027-01")["p2p"]
        assert seller["trade_count"] == 4 and seller["sold_wh"] == 15_000
        assert seller["sold_received"] == 3_300 + 800
    ledger.close()


def test_the_monitor_counts_the_trades_settled_long_ago_on_a_node(tmp_path: Path) -> None:
    street = Street(tmp_path)
    street.january()
    street.later(FINISHED_HOT_MS + HOUR)
    memory = Street(None)
    memory.january()
    memory.later(FINISHED_HOT_MS + HOUR)
    now = street.c.now
    on_disk = monitor(street.ledger, now, "day", 3)
    assert on_disk == monitor(memory.ledger, now, "day", 3)
    assert sum(p["trades"] for p in on_disk["periods"]) == 4
    assert sum(p["volume_wh"] for p in on_disk["periods"]) == 15_000
    street.ledger.close()


def test_a_statement_lists_the_trades_the_state_forgot_as_it_did_before(tmp_path: Path) -> None:
    months = ("2027-01", "2027-02")
    forgetting = {}
    for folder in (tmp_path, None):
        street = Street(folder)
        bob_trades = street.january()
        street.later(FINISHED_HOT_MS + DAY)
        bob = street.bob.account
        before = [statement(street.ledger, "SUN", None, "", bob, m) for m in months]
        # A week after they ended, the rules forget them: the state no longer holds them.
        street.later(7 * DAY)
        assert not any(t in street.ledger.state.trades.rows for t in bob_trades)
        after = [statement(street.ledger, "SUN", None, "", bob, m) for m in months]
        assert after == before
        assert after[0]["p2p"]["trade_count"] == 3 and after[0]["p2p"]["bought_wh"] == 11_000
        forgetting[folder is None] = after
    # In memory (simulations) the same as on a node.
    assert forgetting[True] == forgetting[False]
