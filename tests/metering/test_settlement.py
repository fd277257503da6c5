"""Netting per owner per period, money that loses nothing to rounding, and prepaid cut-off."""

from __future__ import annotations

import pytest

from edge_controller.metering import (
    CutOff,
    MeteringError,
    Problem,
    Restore,
    SettlementBook,
    SettlementConfig,
    SettlementPeriod,
)

from .support import MINUTE, flat_figures, minute

CONFIG = SettlementConfig(period_ms=MINUTE, buy_price=300, sell_price=200, counterparty="grid")


def test_each_owner_nets_both_directions_within_the_period():
    figures = flat_figures(minute(0), {"ann": (700, 200), "bob": (100, 600), "cy": (250, 250)})
    _, settled = SettlementBook().settle(CONFIG, figures)
    # ann: 700 in - 200 out = 500 in  -> pays 500 * 300 / 1000 = 150
    # bob: 100 in - 600 out = 500 out -> gets 500 * 200 / 1000 = 100
    # cy:  250 in - 250 out = 0       -> nothing moves
    assert [(o.owner, o.net_wh, o.movement) for o in settled.owners] == [
        ("ann", 500, -150),
        ("bob", -500, 100),
        ("cy", 0, 0),
    ]
    # Energy and money balance against the grid in the same period.
    assert settled.counterparty_net_wh == -(500 - 500 + 0) == 0
    assert settled.counterparty_movement == 150 - 100 == 50


def test_remainders_are_carried_not_dropped():
    book = SettlementBook()
    movements = []
    carries = []
    for index in range(4):
        figures = flat_figures(minute(index), {"ann": (333, 0)})
        book, settled = book.settle(SettlementConfig(MINUTE, 250, 200), figures)
        movements.append(settled.owner("ann").movement)
        carries.append(settled.owner("ann").carry)
    # 333 Wh at 250/kWh is 83.25 milli-units a period; 0.25 is carried each time:
    #   -83.25 -> -83 carry -0.25; -83.50 -> -83 carry -0.50; -83.75 -> -83 carry -0.75;
    #   -84.00 -> -84 carry 0.   Four periods cost 4 * 83.25 = 333 exactly.
    assert movements == [-83, -83, -83, -84]
    assert carries == [-250, -500, -750, 0]
    assert sum(movements) == -(4 * 333 * 250) // 1000


def test_export_remainders_round_towards_zero_too():
    book = SettlementBook()
    movements = []
    for index in range(3):
        book, settled = book.settle(CONFIG, flat_figures(minute(index), {"bob": (0, 7)}))
        movements.append(settled.owner("bob").movement)
    # 7 Wh at 200/kWh = 1.4 a period: 1 (carry .4), 1.8 -> 1 (carry .8), 2.2 -> 2 (carry .2).
    assert movements == [1, 1, 2]
    assert book.carries["bob"] == 200
    assert 1000 * sum(movements) + book.carries["bob"] == 3 * 7 * 200


def test_a_prepaid_balance_crossing_zero_cuts_off_once_and_a_top_up_restores_once():
    book = SettlementBook().open_account("ann", 400)
    decisions = []
    balances = []
    # ann consumes 500 Wh a minute: 150 milli-units a minute against 400.
    for index in range(5):
        book, settled = book.settle(CONFIG, flat_figures(minute(index), {"ann": (500, 0)}))
        decisions.append(settled.decisions)
        balances.append(settled.owner("ann").balance)
    assert balances == [250, 100, -50, -200, -350]
    assert decisions == [(), (), (CutOff("ann", ("tap-ann",), minute(2)),), (), ()]
    # A top-up that still leaves the balance at or below zero restores nothing.
    book, nothing = book.top_up("ann", 350, minute(4))
    assert nothing == ()
    assert book.balances["ann"] == 0
    book, restored = book.top_up("ann", 1, minute(5))
    assert restored == (Restore("ann", ("tap-ann",), minute(5)),)
    book, again = book.top_up("ann", 1000, minute(5))
    assert again == ()
    # And a second crossing is a second, single cut-off.
    for index in range(6, 20):
        book, settled = book.settle(CONFIG, flat_figures(minute(index), {"ann": (500, 0)}))
        if settled.decisions:
            assert settled.decisions == (CutOff("ann", ("tap-ann",), minute(index)),)
            assert index == 12  # 1001 - 7 * 150 = -49: the seventh minute after the top-up
            break
    else:
        pytest.fail("the second crossing was not reported")


def test_exactly_zero_is_cut_off_and_an_export_credit_restores():
    book = SettlementBook().open_account("bob", 150)
    book, settled = book.settle(CONFIG, flat_figures(minute(0), {"bob": (500, 0)}))
    assert settled.owner("bob").balance == 0
    assert settled.decisions == (CutOff("bob", ("tap-bob",), minute(0)),)
    # Bob's PV earns 500 * 200 / 1000 = 100 while his loads are off.
    book, settled = book.settle(CONFIG, flat_figures(minute(1), {"bob": (0, 500)}))
    assert settled.decisions == (Restore("bob", ("tap-bob",), minute(1)),)


def test_an_account_opened_empty_is_cut_off_at_the_first_settlement():
    book = SettlementBook().open_account("cy", 0).open_account("dee", 10)
    # Someone else's top-up decides nothing for cy: only a settlement knows cy's points.
    book, decided = book.top_up("dee", 5, minute(0))
    assert decided == ()
    _, settled = book.settle(CONFIG, flat_figures(minute(0), {"cy": (0, 0)}))
    assert settled.decisions == (CutOff("cy", ("tap-cy",), minute(0)),)


def test_periods_are_settled_once_in_order_and_aligned():
    book, _ = SettlementBook().settle(CONFIG, flat_figures(minute(5), {"ann": (1, 0)}))
    with pytest.raises(MeteringError, match=Problem.ALREADY_SETTLED.value):
        book.settle(CONFIG, flat_figures(minute(5), {"ann": (1, 0)}))
    with pytest.raises(MeteringError, match=Problem.ALREADY_SETTLED.value):
        book.settle(CONFIG, flat_figures(minute(4), {"ann": (1, 0)}))
    book.settle(CONFIG, flat_figures(minute(9), {"ann": (1, 0)}))  # a gap is fine
    shifted = SettlementPeriod(minute(9).start_ms + 1, minute(9).end_ms + 1)
    with pytest.raises(MeteringError, match=Problem.WRONG_PERIOD.value):
        book.settle(CONFIG, flat_figures(shifted, {"ann": (1, 0)}))


def test_bad_accounts_and_amounts_are_refused():
    book = SettlementBook().open_account("ann", 10)
    with pytest.raises(MeteringError, match=Problem.DUPLICATE_ACCOUNT.value):
        book.open_account("ann", 10)
    with pytest.raises(MeteringError, match=Problem.BAD_AMOUNT.value):
        book.open_account("bob", -1)
    with pytest.raises(MeteringError, match=Problem.UNKNOWN_ACCOUNT.value):
        book.top_up("bob", 10, minute(0))
    with pytest.raises(MeteringError, match=Problem.BAD_AMOUNT.value):
        book.top_up("ann", 0, minute(0))
    with pytest.raises(MeteringError, match=Problem.BAD_CONFIG.value):
        SettlementConfig(buy_price=-1)
    with pytest.raises(MeteringError, match="cannot also be the counterparty"):
        SettlementBook().settle(CONFIG, flat_figures(minute(0), {"grid": (1, 0)}))
