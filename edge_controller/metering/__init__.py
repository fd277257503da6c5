"""Metering and settlement: pure, deterministic logic with no I/O (seed 003, issue 4).

The app feeds it meter readings and ledger facts and acts on what it returns:
- `MeteringTree(points).figures(period, readings)` -> `PeriodFigures`: each owner's energy
  with other owners' downstream flows subtracted and no double counting (FIG. 7);
  `tree.transfer(point, owner, effective_ms)` records a change of owner.
- `SettlementBook.settle(config, figures)` -> new book + `PeriodSettlement`: per-owner net
  energy, money movements with carried remainders, and `CutOff` / `Restore` decisions;
  `open_account` and `top_up` manage prepaid balances.
- `allocate(readings, trades)` -> `Allocation`: metered export shared among overlapping
  trades first-in-first-out; `find_disputes(seller, buyer_wh, tolerance)` -> `Dispute`s.
"""

from edge_controller.metering.allocation import (
    Allocation,
    Dispute,
    DisputeReason,
    PeriodAllocation,
    Share,
    Tolerance,
    Trade,
    TradeDelivery,
    allocate,
    find_disputes,
)
from edge_controller.metering.errors import MeteringError, Problem
from edge_controller.metering.period import (
    MAX_PERIOD_MS,
    MIN_PERIOD_MS,
    SettlementPeriod,
    is_aligned,
    period_containing,
)
from edge_controller.metering.settlement import (
    CutOff,
    Decision,
    OwnerSettlement,
    PeriodSettlement,
    Restore,
    SettlementBook,
    SettlementConfig,
)
from edge_controller.metering.tree import (
    Direction,
    MeteringPoint,
    MeteringTree,
    Owner,
    OwnerEnergy,
    PeriodFigures,
    PointFigure,
    Reading,
    Transfer,
)

__all__ = [
    "MAX_PERIOD_MS",
    "MIN_PERIOD_MS",
    "Allocation",
    "CutOff",
    "Decision",
    "Direction",
    "Dispute",
    "DisputeReason",
    "MeteringError",
    "MeteringPoint",
    "MeteringTree",
    "Owner",
    "OwnerEnergy",
    "OwnerSettlement",
    "PeriodAllocation",
    "PeriodFigures",
    "PeriodSettlement",
    "PointFigure",
    "Problem",
    "Reading",
    "Restore",
    "SettlementBook",
    "SettlementConfig",
    "SettlementPeriod",
    "Share",
    "Tolerance",
    "Trade",
    "TradeDelivery",
    "Transfer",
    "allocate",
    "find_disputes",
    "is_aligned",
    "period_containing",
]
