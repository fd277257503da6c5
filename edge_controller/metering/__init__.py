"""Metering and settlement: pure, deterministic logic with no I/O (seed 003, issue 4).

The app feeds it meter readings and ledger facts and acts on what it returns:
- `MeteringTree(points).figures(period, readings)` -> `PeriodFigures`: each owner's energy
  with other owners' downstream flows subtracted and no double counting (FIG. 7);
  `tree.transfer(point, owner, effective_ms)` records a change of owner.
- `SettlementBook.settle(config, figures)` -> new book + `PeriodSettlement`: per-owner net
  energy, money movements with carried remainders, and `CutOff` / `Restore` decisions;
  `open_account` and `top_up` manage prepaid balances.
- `settle_period(book, CommunityConfig, figures, shared_export=, p2p_in=, p2p_out=)` ->
  new book + `CommunityPeriod`: a building's or community's period with peer-to-peer,
  shared (`Sharing`: static, dynamic or priority key) and grid energy side by side.
- `divide_counted(counted_wh, asked_wh, most_wh)`: what one meter counted for several
  resources (a GX's battery and PV behind its grid meter), divided so none counts twice.
- `Tolerance.allowed_wh(seller_wh, buyer_wh)`: how far a seller's and a buyer's figures
  for a trade may differ before the buyer disputes it. (How metered energy is shared among
  trades is a ledger rule: `edge_controller.ledger.allocated_export` / `allocated_import`.)
"""

from edge_controller.metering.community import (
    CommunityConfig,
    CommunityPeriod,
    OwnerPeriod,
    settle_period,
    spread,
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
    Money,
    OwnerSettlement,
    PeriodSettlement,
    Restore,
    SettlementBook,
    SettlementConfig,
)
from edge_controller.metering.shared_meter import divide_counted
from edge_controller.metering.sharing import Sharing, SharingKey, pro_rata
from edge_controller.metering.tolerance import Tolerance
from edge_controller.metering.tree import (
    MeteringPoint,
    MeteringTree,
    Owner,
    OwnerEnergy,
    PeriodFigures,
    PointFigure,
    TapReading,
    Transfer,
)

__all__ = [
    "MAX_PERIOD_MS",
    "MIN_PERIOD_MS",
    "CommunityConfig",
    "CommunityPeriod",
    "CutOff",
    "Decision",
    "MeteringError",
    "MeteringPoint",
    "MeteringTree",
    "Money",
    "Owner",
    "OwnerEnergy",
    "OwnerPeriod",
    "OwnerSettlement",
    "PeriodFigures",
    "PeriodSettlement",
    "PointFigure",
    "Problem",
    "Restore",
    "SettlementBook",
    "SettlementConfig",
    "SettlementPeriod",
    "Sharing",
    "SharingKey",
    "TapReading",
    "Tolerance",
    "Transfer",
    "divide_counted",
    "is_aligned",
    "period_containing",
    "pro_rata",
    "settle_period",
    "spread",
]
