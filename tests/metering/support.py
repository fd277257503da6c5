"""Small builders for metering tests: one grid connection point per owner."""

from __future__ import annotations

from edge_controller.metering import (
    MeteringPoint,
    MeteringTree,
    PeriodFigures,
    SettlementPeriod,
    TapReading,
    period_containing,
)

MINUTE = 60_000


def minute(index: int) -> SettlementPeriod:
    """The index-th one-minute period after the epoch."""
    return period_containing(index * MINUTE, MINUTE)


def flat_figures(period: SettlementPeriod, energy: dict[str, tuple[int, int]]) -> PeriodFigures:
    """Figures where each owner has one point of their own on the grid: (import, export)."""
    tree = MeteringTree(tuple(MeteringPoint(f"tap-{owner}", owner) for owner in energy))
    return tree.figures(
        period,
        [TapReading(f"tap-{owner}", period, imp, exp) for owner, (imp, exp) in energy.items()],
    )
