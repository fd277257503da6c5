"""Properties of a building's periods over random trees, flows, keys and trades: energy is
conserved (peer to peer + shared + grid = what each owner's taps measured, and the owners'
figures add up to the grid connection), no Wh is shared twice, and money balances."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_controller.metering import (
    CommunityConfig,
    MeteringPoint,
    MeteringTree,
    SettlementBook,
    SettlementConfig,
    Sharing,
    SharingKey,
    TapReading,
    settle_period,
    spread,
)

from .support import MINUTE, minute

OWNERS = ("ann", "bob", "cy", "dee")
FLOW = st.integers(min_value=-3_000, max_value=3_000)
KEYS = st.sampled_from(
    (
        Sharing(SharingKey.DYNAMIC),
        Sharing(SharingKey.STATIC, shares={"ann": 50, "bob": 30, "cy": 20}),
        Sharing(SharingKey.PRIORITY, order=("dee", "bob")),
    )
)


@st.composite
def building(draw: st.DrawFn) -> tuple[MeteringTree, dict[str, int]]:
    """A random tree whose readings are physical: each tap measures the net of its own
    loads or generation (`own`) plus everything downstream of it."""
    count = draw(st.integers(min_value=1, max_value=10))
    points = []
    for index in range(count):
        parent = draw(st.one_of(st.none(), st.integers(0, index - 1))) if index else None
        owner = draw(st.sampled_from(OWNERS))
        points.append(MeteringPoint(f"p{index}", owner, None if parent is None else f"p{parent}"))
    own = {p.id: draw(FLOW) for p in points}
    return MeteringTree(tuple(points)), own


@settings(max_examples=300, deadline=None)
@given(building(), KEYS, st.data())
def test_periods_conserve_energy_and_money_and_share_no_wh_twice(
    case: tuple[MeteringTree, dict[str, int]], key: Sharing, data: st.DataObject
) -> None:
    tree, own = case
    net = dict(own)
    for point in reversed(tree.points):  # children come after their parents
        if point.parent is not None:
            net[point.parent] += net[point.id]
    period = minute(0)
    readings = [TapReading(p, period, max(n, 0), max(-n, 0)) for p, n in net.items()]
    figures = tree.figures(period, readings)
    owners = [e.owner for e in figures.owners]
    shared_export = {o: data.draw(st.integers(0, 3_000)) for o in owners}
    p2p_in = {o: data.draw(st.integers(0, 1_000)) for o in owners}
    p2p_out = {o: data.draw(st.integers(0, 1_000)) for o in owners}
    config = CommunityConfig(
        SettlementConfig(period_ms=MINUTE, buy_price=317, sell_price=71),
        shared_price=149,
        sharing=key,
    )
    _, settled = settle_period(
        SettlementBook(),
        config,
        figures,
        shared_export=shared_export,
        p2p_in=p2p_in,
        p2p_out=p2p_out,
    )
    for row in settled.owners:
        parts = (row.p2p_in_wh, row.shared_in_wh, row.grid_import_wh)
        assert min(parts) >= 0 and sum(parts) == row.import_wh
        parts = (row.p2p_out_wh, row.shared_out_wh, row.grid_export_wh)
        assert min(parts) >= 0 and sum(parts) == row.export_wh
    shared_in = sum(r.shared_in_wh for r in settled.owners)
    assert shared_in == sum(r.shared_out_wh for r in settled.owners) <= settled.pool_wh
    assert sum(r.import_wh - r.export_wh for r in settled.owners) == figures.grid_net_wh
    assert sum(r.movement for r in settled.owners) + settled.counterparty_movement == 0
    for row in settled.owners:
        exact = (
            row.grid_export_wh * 71
            - row.grid_import_wh * 317
            + (row.shared_out_wh - row.shared_in_wh) * 149
        )
        assert row.movement * 1000 + row.carry == exact


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 100_000),
    st.integers(0, 50 * MINUTE),
    st.integers(1, 50 * MINUTE),
)
def test_a_trade_spread_over_periods_adds_up_to_its_energy(
    energy: int, start: int, length: int
) -> None:
    end = start + length
    parts = [spread(energy, start, end, minute(i)) for i in range(0, end // MINUTE + 2)]
    assert min(parts) >= 0 and sum(parts) == energy
