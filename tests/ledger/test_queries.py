"""The ledger's read API: first-in-first-out allocation of metered energy to trades.

States are built row by row here: the queries read rows, whatever records made them.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_controller.ledger import (
    FIRST_RULES,
    LATEST_RULES,
    State,
    Trade,
)
from edge_controller.ledger import allocated_export as export_under
from edge_controller.ledger import allocated_import as import_under
from edge_controller.ledger.state import Commitments, MeterLog, MeterReading, evolve

MINUTE = 60_000


def allocated_export(state: State, t: Trade, rules: int = LATEST_RULES) -> int:
    return export_under(state, t, rules=rules)


def allocated_import(state: State, meter: str, t: Trade, rules: int = LATEST_RULES) -> int:
    return import_under(state, meter, t, rules=rules)


def trade(trade_id: str, start: int, end: int, wh: int, time: int = 0) -> Trade:
    return Trade(
        id=trade_id,
        offer=f"offer-{trade_id}",
        seller="seller",
        buyer="buyer",
        resource="bat-1",
        mode="energy",
        quantity=wh,
        price=100,
        start=start,
        end=end,
        energy_wh=wh,
        cost=wh // 10,
        time=time,
    )


def metered(
    trades: list[Trade], export: tuple[int, ...] = (), imported: tuple[int, ...] = ()
) -> State:
    """A state with `trades` made in this order on bat-1, whose meter (also the buyer's,
    for the import side) read `export` / `imported` Wh in successive minutes."""
    state = State()
    for t in trades:
        state.trades.put(t.id, t)
    state.resource_trades.put("bat-1", Commitments(tuple(t.id for t in trades)))
    minutes = max(len(export), len(imported))
    export = export or (0,) * minutes
    imported = imported or (0,) * minutes
    total = 0
    for i, (out, into) in enumerate(zip(export, imported, strict=True)):
        state.readings.put(
            f"bat-1#{i}", MeterReading(i * MINUTE, (i + 1) * MINUTE, out, into, total)
        )
        total += out
    if minutes:
        state.meters.put("bat-1", MeterLog(minutes, minutes * MINUTE, total, sum(imported)))
    return state


# Three trades on one battery, made in this order:
#   t1: minutes 0-3, 500 Wh     t2: 0 - 1.5 (ends mid-period 1), 300 Wh     t3: 1-4, 400 Wh
TRADES = [
    trade("t1", 0, 3 * MINUTE, 500, time=1),
    trade("t2", 0, 3 * MINUTE // 2, 300, time=2),
    trade("t3", MINUTE, 4 * MINUTE, 400, time=3),
]


def test_fifo_across_overlapping_trades() -> None:
    # minute 0: t1 takes all 400; minute 1: t1 its last 100, t2 at most 300 * 1/2 = 150,
    # t3 the 50 left; minute 2: nothing exported; minute 3: t3 its last 350 of 500.
    state = metered(TRADES, export=(400, 300, 0, 500))
    assert {t.id: allocated_export(state, t) for t in TRADES} == {"t1": 500, "t2": 150, "t3": 400}


def test_the_earlier_trade_wins_when_there_is_not_enough() -> None:
    early, late = trade("late", 0, MINUTE, 100), trade("early", 0, MINUTE, 100)
    state = metered([late, early], export=(120,))
    assert (allocated_export(state, late), allocated_export(state, early)) == (100, 20)


def test_the_buyer_side_allocates_import_by_time_then_id() -> None:
    # minute 0: t1 390; minute 1: t1 110, t2 min(300, 310 / 2 = 155) = 155, t3 310 - 265 = 45;
    # minute 3: t3 needs 355 of 800
    state = metered(TRADES, imported=(390, 310, 0, 800))
    assert {t.id: allocated_import(state, "bat-1", t) for t in TRADES} == {
        "t1": 500,
        "t2": 155,
        "t3": 400,
    }
    # Purchases made at the same instant: by id, so every home allocates alike.
    tied = [trade("b", 0, MINUTE, 100, time=3), trade("a", 0, MINUTE, 100, time=3)]
    state = metered(tied, imported=(120,))
    assert [allocated_import(state, "bat-1", t) for t in tied] == [20, 100]


def test_an_earlier_trade_reaches_a_later_one_through_a_trade_between_them() -> None:
    # t1 (minute 0-2) and t3 (minute 2-3) never overlap, but t2 (minute 1-3) does both:
    # t1 takes minute 1 from t2, so t2 still needs energy in minute 2 and takes it first.
    chain = [
        trade("t1", 0, 2 * MINUTE, 200, time=1),
        trade("t2", MINUTE, 3 * MINUTE, 100, time=2),
        trade("t3", 2 * MINUTE, 3 * MINUTE, 100, time=3),
    ]
    state = metered(chain, export=(100, 100, 100), imported=(100, 100, 100))
    assert [allocated_export(state, t) for t in chain] == [200, 100, 0]
    assert [allocated_import(state, "bat-1", t) for t in chain] == [200, 100, 0]


def test_no_readings_deliver_nothing() -> None:
    state = metered(TRADES)
    assert [allocated_export(state, t) for t in TRADES] == [0, 0, 0]


# One reading of 120 Wh over a minute. `a` (the whole minute) takes 60, `b` (its second
# half, made next) the other 60; nothing is left for `c` (the first half, made last).
ONE_READING = [
    trade("a", 0, MINUTE, 60, time=1),
    trade("b", MINUTE // 2, MINUTE, 60, time=2),
    trade("c", 0, MINUTE // 2, 60, time=3),
]


def test_trades_that_share_only_a_reading_still_share_it_first_in_first_out() -> None:
    state = metered(ONE_READING, export=(120,), imported=(120,))
    assert [allocated_export(state, t) for t in ONE_READING] == [60, 60, 0]
    assert [allocated_import(state, "bat-1", t) for t in ONE_READING] == [60, 60, 0]


def test_the_first_rules_hand_a_reading_out_twice_to_trades_that_meet_only_inside_it() -> None:
    # Kept so that chains founded on the first rules verify as they always did: `c` never
    # meets `b`'s window, so `b` is left out of its sharing and `c` is credited 60 again.
    state = metered(ONE_READING, export=(120,))
    assert [allocated_export(state, t, FIRST_RULES) for t in ONE_READING] == [60, 60, 60]


def test_sharing_reaches_back_across_a_reading_and_then_across_a_trade() -> None:
    # `c` meets `a` and `b` only inside reading 1 (minutes 1-2), and `a` starts in reading
    # 0: `a` takes 30 there, then 60 of reading 1, `b` the other 60 and nothing is left for
    # `c` (the first rules credit it 60 of reading 1 again).
    chain = [
        trade("a", MINUTE // 2, 3 * MINUTE // 2, 100, time=1),
        trade("b", MINUTE, 3 * MINUTE // 2, 60, time=2),
        trade("c", 3 * MINUTE // 2, 2 * MINUTE, 60, time=3),
    ]
    state = metered(chain, export=(60, 120))
    expected = _fifo_over_everything(chain, (60, 120))
    assert {t.id: allocated_export(state, t) for t in chain} == expected
    assert expected == {"a": 90, "b": 60, "c": 0}
    assert allocated_export(state, chain[2], FIRST_RULES) == 60


def _fifo_over_everything(trades: list[Trade], export: tuple[int, ...]) -> dict[str, int]:
    """The rule stated plainly: every reading, every trade, in the order they were made."""
    remaining = {t.id: t.energy_wh for t in trades}
    for i, wh in enumerate(export):
        start, end, available = i * MINUTE, (i + 1) * MINUTE, wh
        for t in trades:
            overlap = min(end, t.end) - max(start, t.start)
            if overlap > 0:
                taken = min(remaining[t.id], wh * overlap // MINUTE, available)
                remaining[t.id] -= taken
                available -= taken
    return {t.id: t.energy_wh - remaining[t.id] for t in trades}


@st.composite
def trades_and_export(draw: st.DrawFn, step: int = 1) -> tuple[list[Trade], tuple[int, ...]]:
    """Up to 8 one-minute readings and up to 6 trades whose windows start and end on
    multiples of `step` ms (MINUTE: on reading boundaries only)."""
    export = tuple(draw(st.lists(st.integers(0, 5_000), max_size=8)))
    last = 9 * MINUTE // step
    trades = []
    for index in range(draw(st.integers(min_value=1, max_value=6))):
        start = draw(st.integers(min_value=0, max_value=last - 1))
        end = draw(st.integers(min_value=start + 1, max_value=last))
        trades.append(trade(f"t{index}", start * step, end * step, draw(st.integers(0, 5_000))))
    return trades, export


def _check_against_the_whole_fifo(trades: list[Trade], export: tuple[int, ...], rules: int) -> None:
    state = metered(trades, export=export, imported=export)
    shares = {t.id: allocated_export(state, t, rules) for t in trades}
    assert shares == _fifo_over_everything(trades, export)
    assert all(0 <= shares[t.id] <= t.energy_wh for t in trades)
    assert sum(shares.values()) <= sum(export)
    # The buyer's side, with every purchase made in the order of the list, agrees.
    in_order = [evolve(t, time=i) for i, t in enumerate(trades)]
    bought = metered(in_order, export=export, imported=export)
    assert {t.id: allocated_import(bought, "bat-1", t, rules) for t in in_order} == shares


@settings(max_examples=400, deadline=None)
@given(trades_and_export(step=1_000))
def test_allocation_of_one_trade_is_its_share_of_the_whole_fifo(
    case: tuple[list[Trade], tuple[int, ...]],
) -> None:
    # Windows anywhere to the second: trades that meet only inside a reading included.
    _check_against_the_whole_fifo(*case, rules=LATEST_RULES)


@settings(max_examples=200, deadline=None)
@given(trades_and_export(step=MINUTE))
def test_the_first_rules_allocate_the_whole_fifo_on_reading_boundaries(
    case: tuple[list[Trade], tuple[int, ...]],
) -> None:
    _check_against_the_whole_fifo(*case, rules=FIRST_RULES)
