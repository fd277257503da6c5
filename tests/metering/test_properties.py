"""Properties over random trees, readings and settlements.

- The tree's owner figures telescope to the grid connection points (energy conserved), and
  sub-meters of the same owner never change them (no double counting).
- Settlement conserves energy and money across owners and the counterparty in every period,
  loses nothing to rounding over many periods, and cut-off / restore decisions alternate.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_controller.metering import (
    CutOff,
    MeteringPoint,
    MeteringTree,
    Restore,
    SettlementBook,
    SettlementConfig,
    TapReading,
)

from .support import MINUTE, flat_figures, minute

OWNERS = ("ann", "bob", "cy", "dee")
WH = st.integers(min_value=0, max_value=5_000)


@dataclass(frozen=True)
class RandomTree:
    tree: MeteringTree
    readings: dict[str, tuple[int, int]]


@st.composite
def random_trees(draw: st.DrawFn) -> RandomTree:
    count = draw(st.integers(min_value=1, max_value=14))
    points = []
    for index in range(count):
        # Each point hangs under an earlier one (or is a grid connection): never a cycle.
        parent = draw(st.one_of(st.none(), st.integers(0, index - 1))) if index else None
        points.append(
            MeteringPoint(
                f"p{index}", draw(st.sampled_from(OWNERS)), None if parent is None else f"p{parent}"
            )
        )
    readings = {p.id: (draw(WH), draw(WH)) for p in points}
    return RandomTree(MeteringTree(tuple(points)), readings)


@settings(max_examples=300, deadline=None)
@given(random_trees(), st.data())
def test_tree_figures_conserve_energy_and_never_double_count(
    case: RandomTree, data: st.DataObject
) -> None:
    period = minute(0)
    figures = case.tree.figures(
        period, [TapReading(p, period, i, e) for p, (i, e) in case.readings.items()]
    )
    assert sum(o.net_wh for o in figures.owners) == figures.grid_net_wh
    assert all(o.import_wh >= 0 and o.export_wh >= 0 for o in figures.owners)
    accounting = {f.point for f in figures.points}
    # Rewriting every sub-meter (a point under one of its own owner's points) changes nothing.
    changed = {
        p: case.readings[p] if p in accounting else (data.draw(WH), data.draw(WH))
        for p in case.readings
    }
    again = case.tree.figures(
        period, [TapReading(p, period, i, e) for p, (i, e) in changed.items()]
    )
    assert again == figures


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(OWNERS), st.tuples(WH, WH), min_size=1),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, 2_000),
    st.integers(0, 2_000),
)
def test_netting_conserves_energy_and_money(
    periods: list[dict[str, tuple[int, int]]], buy: int, sell: int
) -> None:
    config = SettlementConfig(period_ms=MINUTE, buy_price=buy, sell_price=sell)
    book = SettlementBook()
    moved = dict.fromkeys(OWNERS, 0)
    exact = dict.fromkeys(OWNERS, 0)
    for index, energy in enumerate(periods):
        book, settled = book.settle(config, flat_figures(minute(index), energy))
        assert sum(o.net_wh for o in settled.owners) + settled.counterparty_net_wh == 0
        assert sum(o.movement for o in settled.owners) + settled.counterparty_movement == 0
        for owner in settled.owners:
            assert owner.net_wh == owner.import_wh - owner.export_wh
            # A net consumer never receives money and a net supplier never pays.
            assert owner.movement <= 0 if owner.net_wh > 0 else owner.movement >= 0
            moved[owner.owner] += owner.movement
            price = buy if owner.net_wh > 0 else sell
            exact[owner.owner] -= owner.net_wh * price
    for name in OWNERS:
        carry = book.carries.get(name, 0)
        assert -1000 < carry < 1000
        assert 1000 * moved[name] + carry == exact[name]  # nothing lost to rounding


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 500),
    st.lists(
        st.one_of(
            st.tuples(st.just("use"), WH, WH),
            st.tuples(st.just("top_up"), st.integers(1, 800), st.just(0)),
        ),
        max_size=30,
    ),
)
def test_cut_off_and_restore_alternate_and_follow_the_balance(
    opening: int, steps: list[tuple[str, int, int]]
) -> None:
    config = SettlementConfig(period_ms=MINUTE, buy_price=300, sell_price=200)
    book = SettlementBook().open_account("ann", opening)
    off = False
    for index, (kind, first, second) in enumerate(steps):
        if kind == "use":
            book, settled = book.settle(
                config, flat_figures(minute(index), {"ann": (first, second)})
            )
            decisions = settled.decisions
        else:
            book, decisions = book.top_up("ann", first, minute(index))
        balance = book.balances["ann"]
        assert len(decisions) <= 1
        for decision in decisions:
            assert isinstance(decision, Restore if off else CutOff)
            off = not off
        assert off == (balance <= 0)
        assert off == ("ann" in book.cut)
